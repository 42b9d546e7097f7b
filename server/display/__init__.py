"""The screen: its power backends (wlopm, cec, backlight, ...) and the controller (schedule, motion, API)."""
