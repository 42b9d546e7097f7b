"""Display power, the shell: applies what server/display/decide.py decides through a backend; topic `display`.

The backend is asked to switch only when the decision changes; the state is then read back, and a screen
that does not follow (or was switched from outside) is reported and switched again. `display` data is
{"power": "on" | "off", "reason": str, "mode": "auto" | "on" | "off"}, where power is always what the screen
was last read back as, never what was asked. When switching fails (the command fails, or the read-back
disagrees or never settles) the topic's status is error with the reason, /healthz's "display" section is
degraded (and so Home Assistant's Problem sensor); the next good switch or read-back clears it.
GET/POST /api/display is server/web/display.py; `python -m server.display probe` is server/display/__main__.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tornado.ioloop import PeriodicCallback

from server.config import DisplayConfig
from server.core.atomic import atomic_write_bytes
from server.core.hub import WAITING, Hub, TopicState
from server.core.jsonutil import dumpb
from server.display.backends import Backend, DisplayError, NoSession
from server.display.decide import Decision, Motion, decide

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
