"""Display power: a schedule, PIR motion and a manual override decide; a backend switches; topic `display` says so.

Rules, in order:
  manual "on"/"off" (POST /api/display, kept across restarts)  →  that, until "auto" is posted
  outside the on_at..off_at window (local time)                →  off
  motion_timeout_min > 0: motion in the last N minutes         →  on, else off ("no motion for N min");
                          the PIR failing                      →  on (better lit than dark by mistake)
  otherwise                                                    →  on
The backend is asked to switch only when the decision changes; the state is then read back, and a screen
that does not follow (or was switched from outside) is reported and switched again. `display` data is
{"power": "on" | "off", "reason": str, "mode": "auto" | "on" | "off"}, where power is always what the screen
was last read back as, never what was asked. When switching fails (the command fails, or the read-back
disagrees or never settles) the topic's status is error with the reason, /healthz's "display" section is
degraded (and so Home Assistant's Problem sensor); the next good switch or read-back clears it.

    python -m server.display probe [--config PATH]    which backends work on this machine
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tornado.ioloop import PeriodicCallback

from server.config import DisplayConfig
from server.core.atomic import atomic_write_bytes
from server.core.hub import WAITING, Hub, TopicState
from server.core.jsonutil import dumpb
from server.display.backends import BACKEND_NAMES, Backend, DisplayError, NoSession, make_backend

log = logging.getLogger(__name__)

TOPIC = "display"
MOTION_TOPIC = "gpio/motion"
MODES = ("auto", "on", "off")
STATE_FILE = "display.json"
TICK_S = 5.0  # schedule and motion timeouts are checked this often
RETRY_S = 60.0  # a failed switch is tried again after this long
# At boot the server starts before the wall's Wayland session (autologin, then the compositor): until the screen
# has answered once, and for this long after start, "no session" is the topic's `waiting`, tried again every tick,
# not an error held for RETRY_S. Generous: a slow SD card and a first boot's setup delay the session.
SESSION_WAIT_S = 180.0
READBACK_POLL_S = 2.0


# ------------------------------------------------------------------------------------------ deciding


@dataclass(frozen=True)
class Decision:
    power: bool
    reason: str


@dataclass
class Motion:
    """What the PIR said last (topic gpio/motion), in epoch seconds."""

    active: bool = False
    last_at: float | None = None  # last motion start or end
    failing: bool = False


def parse_hhmm(text: str) -> dt.time:
    hours, minutes = text.split(":")
    return dt.time(int(hours), int(minutes))


def in_window(now: dt.time, on_at: dt.time, off_at: dt.time) -> bool:
    """Is `now` in [on_at, off_at)? The window may run past midnight (on 18:00, off 02:00)."""
    if on_at < off_at:
        return on_at <= now < off_at
    return now >= on_at or now < off_at


def decide(
    mode: str,
    now: float,
    *,
    now_local: dt.time,
    config: DisplayConfig,
    motion: Motion,
    started_at: float,
) -> Decision:
    """The power the screen should have now, and why. Pure: every input is an argument."""
    if mode == "on":
        return Decision(True, "manual: on")
    if mode == "off":
        return Decision(False, "manual: off")
    schedule = ""
    if config.on_at is not None and config.off_at is not None:
        on_at, off_at = parse_hhmm(config.on_at), parse_hhmm(config.off_at)
        if not in_window(now_local, on_at, off_at):
            return Decision(False, f"schedule: off until {config.on_at}")
        schedule = f"schedule: on until {config.off_at}"
    timeout_s = config.motion_timeout_min * 60
    if timeout_s > 0:
        if motion.failing:
            return Decision(True, "motion sensor unavailable: kept on")
        if motion.active:
            return Decision(True, "motion")
        if motion.last_at is not None and now - motion.last_at < timeout_s:
            return Decision(True, "motion")
        if motion.last_at is None and now - started_at < timeout_s:
            return Decision(True, "start-up")
        return Decision(False, f"no motion for {config.motion_timeout_min:g} min")
    return Decision(True, schedule or "always on")


# ------------------------------------------------------------------------------------------ switching


class DisplayController:
    """Owns the mode, applies decisions through the backend (in the executor), publishes `display`."""

    def __init__(
        self,
        hub: Hub,
        config: DisplayConfig,
        backend: Backend | None,
        *,
        tz: dt.tzinfo,
        run_blocking: Callable[..., Any],
        state_path: Path,
        clock: Callable[[], float] = time.time,
        tick_s: float = TICK_S,
    ) -> None:
        self.hub = hub
        self.config = config
        self.backend = backend
        self.tz = tz
        self.run_blocking = run_blocking  # fn, *args -> awaitable (the executor)
        self.state_path = state_path
        self.clock = clock
        self.tick_s = tick_s
        self.mode = "auto"
        self.motion = Motion()
        self.started_at = clock()
        self.read_back: bool | None = None  # what the screen last said it shows (None: never read)
        self.published: Decision | None = None
        self.failed_at: float | None = None  # last failed switch (retried after RETRY_S)
        self.failed_for: Decision | None = None
        self.verified_at = 0.0
        self.waiting_for_session = False  # logged once while the boot's session is not up yet
        self._lock = asyncio.Lock()
        self._callbacks: list[PeriodicCallback] = []
        self._tasks: set[asyncio.Task[None]] = set()
        hub.declare(TOPIC, None)  # a state, not a measurement: never stale

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.mode = self._load_mode()
        if self.backend is None:
            self.hub.publish(TOPIC, {"power": "on", "reason": "not switched (display.backend: none)", "mode": "auto"})
            return
        self.hub.add_listener(self.on_topic)
        await self.evaluate()
        cb = PeriodicCallback(self.tick, self.tick_s * 1000)
        cb.start()
        self._callbacks.append(cb)

    async def stop(self) -> None:
        for cb in self._callbacks:
            cb.stop()

    def _load_mode(self) -> str:
        try:
            mode = json.loads(self.state_path.read_text())["mode"]
        except (OSError, ValueError, KeyError, TypeError):
            return "auto"
        return mode if mode in MODES else "auto"

    # ---------------------------------------------------------------- inputs

    def on_topic(self, topic: str, state: TopicState) -> None:
        """Hub listener (loop thread): PIR edges re-evaluate at once instead of at the next tick."""
        if topic != MOTION_TOPIC:
            return
        data = state.data or {}
        if state.status == "ok" and isinstance(data.get("motion"), bool):
            self.motion = Motion(active=data["motion"], last_at=self.clock(), failing=False)
        elif state.status != WAITING:  # nothing yet is not a failure: the start-up timer covers it
            self.motion.failing = True
        task = asyncio.ensure_future(self.evaluate())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def set_mode(self, mode: str) -> dict[str, Any]:
        """Manual override from the API: "on", "off" or back to "auto". Persisted across restarts."""
        if mode not in MODES:
            raise ValueError(mode)
        if mode != self.mode:
            log.info("display mode: %s → %s (manual)", self.mode, mode)
            self.mode = mode
            blob = dumpb({"mode": mode})
            await self.run_blocking(atomic_write_bytes, self.state_path, blob)
        await self.evaluate()
        return self.report()

    def report(self) -> dict[str, Any]:
        state = self.hub.get(TOPIC)
        data = (state.data if state else None) or {}
        return {
            "mode": self.mode,
            "power": data.get("power"),
            "reason": data.get("reason"),
            "status": state.status if state else "unavailable",
            "error": state.error if state else None,
        }

    # ---------------------------------------------------------------- evaluation

    def decision(self) -> Decision:
        now = self.clock()
        local = dt.datetime.fromtimestamp(now, self.tz).time()
        return decide(
            self.mode, now, now_local=local, config=self.config, motion=self.motion, started_at=self.started_at
        )

    async def tick(self) -> None:
        now = self.clock()
        verify = now - self.verified_at >= self.config.verify_interval_s
        await self.evaluate(verify=verify)

    async def evaluate(self, verify: bool = False) -> None:
        backend = self.backend
        if backend is None:
            return
        async with self._lock:
            decision = self.decision()
            now = self.clock()
            if self.failed_at is not None and now - self.failed_at < RETRY_S and decision == self.failed_for:
                return  # a failed switch waits before the next try (the error stays on the topic)
            if decision.power != self.read_back or self.failed_at is not None:
                await self._switch(backend, decision)
            elif verify:
                await self._verify(backend, decision)
            elif decision != self.published:
                self._publish(decision)

    async def _switch(self, backend: Backend, decision: Decision) -> None:
        word = "on" if decision.power else "off"
        try:
            await self.run_blocking(backend.set_power, decision.power)
        except NoSession as err:
            if self.read_back is None and self.clock() - self.started_at < SESSION_WAIT_S:
                self._wait_for_session(err)
                return
            self._fail(decision, f"{backend.name}: could not switch the screen {word}: {err}")
            return
        except DisplayError as err:
            await self._read_quietly(backend)  # what the screen shows now, for the topic's data
            self._fail(decision, f"{backend.name}: could not switch the screen {word}: {err}")
            return
        try:
            actual = await self._read_settled(backend)
        except DisplayError as err:
            self._fail(decision, f"{backend.name}: switched the screen {word}, but cannot read it back: {err}")
            return
        self.verified_at = self.clock()
        if self.waiting_for_session:
            log.info("display: the wall session is up")
            self.waiting_for_session = False
        if actual is None:
            wait = f"{self.config.readback_wait_s:g} s"
            self._fail(decision, f"{backend.name}: asked to switch the screen {word}, but after {wait} it is not")
            return
        self.read_back = actual
        if actual != decision.power:
            shown = "on" if actual else "off"
            self._fail(decision, f"{backend.name}: asked to switch the screen {word}, but it reads back {shown}")
            return
        if self.failed_at is not None:
            log.info("display: switching works again (%s)", backend.name)
        self.failed_at = self.failed_for = None
        log.info("display %s (%s)", word, decision.reason)
        self._publish(decision)

    def _wait_for_session(self, err: NoSession) -> None:
        """Boot, before the wall session is up: the topic stays `waiting` (nothing read yet); the next tick tries."""
        if not self.waiting_for_session:
            log.info("display: waiting for the wall session (%s)", err)
            self.waiting_for_session = True

    async def _read_quietly(self, backend: Backend) -> None:
        """After a failed switch: read the real state if the backend can tell; a failing read changes nothing."""
        try:
            actual = await self.run_blocking(backend.read_power)
        except DisplayError:
            return
        if actual is not None:
            self.read_back = actual

    async def _read_settled(self, backend: Backend) -> bool | None:
        """Read back; a TV "in transition" is asked again until readback_wait_s has passed."""
        deadline = time.monotonic() + self.config.readback_wait_s
        while True:
            actual = await self.run_blocking(backend.read_power)
            if actual is not None or time.monotonic() >= deadline:
                return actual
            await asyncio.sleep(READBACK_POLL_S)

    async def _verify(self, backend: Backend, decision: Decision) -> None:
        self.verified_at = self.clock()
        try:
            actual = await self.run_blocking(backend.read_power)
        except DisplayError as err:
            self._fail(decision, f"{backend.name}: cannot read the screen state: {err}")
            return
        if actual is not None and actual != decision.power:
            # Switched from outside (a TV remote, a swayidle left running): the wall follows its own rules.
            log.warning(
                "display: the screen is %s but should be %s (%s); switching it again",
                "on" if actual else "off",
                "on" if decision.power else "off",
                decision.reason,
            )
            self.read_back = actual
            await self._switch(backend, decision)
        elif decision != self.published:
            self._publish(decision)

    def _publish(self, decision: Decision) -> None:
        """The screen does as decided (read back): the decision's reason with the power read back."""
        self.published = decision
        power = "on" if self.read_back else "off"
        self.hub.publish(TOPIC, {"power": power, "reason": decision.reason, "mode": self.mode})

    def _fail(self, decision: Decision, message: str) -> None:
        """An error on the topic; its data is the state last read back (never the one asked for), if any."""
        if self.failed_at is None:
            log.error("%s", message)  # once per failure, not once per retry
        self.failed_at = self.clock()
        self.failed_for = decision
        self.published = None
        data = None
        if self.read_back is not None:
            word = "on" if decision.power else "off"
            reason = f"switching {word} failed ({decision.reason})"
            data = {"power": "on" if self.read_back else "off", "reason": reason, "mode": self.mode}
        self.hub.publish_error(TOPIC, message, data=data)

    def health(self) -> dict[str, Any]:
        """The /healthz "display" section (also Home Assistant's Problem sensor): degraded while the topic is."""
        state = self.hub.get(TOPIC)
        data = (state.data if state else None) or {}
        report: dict[str, Any] = {
            "status": "ok",
            "backend": self.backend.name if self.backend is not None else "none",
            "power": data.get("power"),
            "mode": self.mode,
        }
        if state is not None and state.status == "error":
            report.update(status="degraded", error=state.error)
        return report


# ------------------------------------------------------------------------------------------ probe


def probe(config: DisplayConfig, environ: dict[str, str] | None = None, sysfs_root: str = "/sys") -> list[str]:
    """One line per backend: does reading the screen state work here? Switches nothing."""
    lines = []
    for name in BACKEND_NAMES:
        backend = make_backend(name, config, environ, sysfs_root)
        mark = "*" if name == config.backend else " "
        try:
            state = backend.read_power()
        except DisplayError as err:
            lines.append(f"{mark} {name:<10} no: {err}")
            continue
        shown = "in transition" if state is None else ("on" if state else "off")
        lines.append(f"{mark} {name:<10} works: the screen is {shown}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.display", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["probe"])
    parser.add_argument("--config", default="config.yaml", help="read display settings from here (if it exists)")
    args = parser.parse_args(argv)
    config = DisplayConfig()
    if os.path.exists(args.config):
        from server.config import ConfigError, load_config

        try:
            # demo=True: unset ${SECRETS} become placeholders; only the display section is used here.
            config = load_config(args.config, demo=True).display
        except ConfigError as err:
            print(f"config error: {err}", file=sys.stderr)
            return 2
    lines = probe(config)
    print("Display backends on this machine (* = configured in display.backend):")
    print("\n".join(lines))
    return 0 if any(" works:" in line for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
