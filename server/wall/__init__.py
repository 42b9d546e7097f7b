"""The wall watchdog: reload, browser restart, guarded reboot when the kiosk page stops sending heartbeats."""
