"""systemd's notify protocol without libsystemd: READY=1, WATCHDOG=1 from the loop, STOPPING=1."""

from __future__ import annotations

import logging
import os
import socket

from tornado.ioloop import PeriodicCallback

log = logging.getLogger(__name__)


class Notifier:
    """Does nothing when NOTIFY_SOCKET is unset (a terminal, supervisor, tests)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        self.watchdog_s: float | None = None
        if usec and usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._ping: PeriodicCallback | None = None

    def send(self, state: str) -> bool:
        if not self.address:
            return False
        addr = self.address
        if addr.startswith("@"):  # abstract namespace socket
            addr = "\0" + addr[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(addr)
                sock.sendall(state.encode("ascii"))
        except OSError as err:
            log.warning("sd_notify %s failed: %s", state.split("\n", maxsplit=1)[0], err)
            return False
        return True

    def ready(self) -> None:
        self.send("READY=1\nSTATUS=serving")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def start_watchdog(self) -> None:
        """Ping from a callback on the event loop itself: a hung loop stops pinging, and systemd kills it."""
        if self.watchdog_s is None or not self.address:
            return
        self._ping = PeriodicCallback(lambda: self.send("WATCHDOG=1"), self.watchdog_s / 2 * 1000)
        self._ping.start()

    def stop_watchdog(self) -> None:
        if self._ping is not None:
            self._ping.stop()
