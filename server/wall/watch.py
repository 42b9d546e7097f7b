"""The wall watchdog: the kiosk page must keep saying that it renders; when it goes dark, escalate step by step.

The page sends {"type": "heartbeat", "role": "wall", "version", "rendered_at"} over /ws every 30 s. While the
screen should be on (topic `display`) and no heartbeat came for wall.silence_s:
  1. ask the page to reload           (hub.send_command {"type": "reload"} to the wall clients)
  2. restart the browser              (wall.restart_command, wall.browser_restarts times, wall.step_wait_s apart)
  3. reboot                           (wall.reboot_command), at most once per wall.reboot_min_interval_h and
                                      never within wall.reboot_min_uptime_min of boot: a wall that stays dark
                                      after a reboot gets browser restarts, not a reboot loop
A heartbeat ends the escalation. Every step is logged and kept (data_dir/wallwatch.json, also across the
reboot) and shown in /healthz under "wall". With wall.enabled false the watchdog only reports.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tornado.ioloop import PeriodicCallback

from server.config import WallConfig
from server.core.atomic import atomic_write_bytes
from server.core.commands import command_env, run_command
from server.core.hub import Hub, TopicState
from server.core.jsonutil import dumpb
from server.core.timeutil import iso

log = logging.getLogger(__name__)

STATE_FILE = "wallwatch.json"
HISTORY_KEEP = 20
HEALTH_HISTORY = 10
SUPPRESSED_WAIT_FACTOR = 5  # after a suppressed reboot, browser restarts come this many step_wait_s apart


def uptime_s() -> float:
    """Seconds since boot (CLOCK_BOOTTIME counts suspend too, and needs no /proc)."""
    return time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))


class WallWatch:
    """Heartbeats in, escalation steps out. Lives on the event-loop thread; commands run in the executor."""

    def __init__(
        self,
        hub: Hub,
        config: WallConfig,
        *,
        tz: dt.tzinfo,
        run_blocking: Callable[..., Any],
        state_path: Path,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        uptime: Callable[[], float] = uptime_s,
    ) -> None:
        self.hub = hub
        self.config = config
        self.tz = tz
        self.run_blocking = run_blocking
        self.state_path = state_path
        self.clock = clock
        self.monotonic = monotonic
        self.uptime = uptime
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_KEEP)
        self.reboots: list[float] = []  # epoch seconds of the reboots this watchdog asked for
        self.last_beat: dict[str, Any] | None = None
        self.last_beat_mono: float | None = None
        self.started_mono = monotonic()
        self.anchor_mono = self.started_mono  # silence counts from here (start-up, or the screen coming on)
        self.display_on = True
        self.level = 0  # 0: fine; 1: reload asked; 2: browser restarted; 3: reboot tried
        self.restarts = 0
        self.next_step_mono = 0.0
        self.last_suppressed: str | None = None
        self._busy = False
        self._callback: PeriodicCallback | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._load()
        self.hub.add_heartbeat_listener(self.on_heartbeat)
        self.hub.add_listener(self.on_topic)
        state = self.hub.get("display")
        if state is not None:
            self.display_on = self._screen_on(state)
        self._callback = PeriodicCallback(self.check, self.config.check_interval_s * 1000)
        self._callback.start()
        if self.config.enabled:
            log.info("wall watchdog on: %s s without a heartbeat starts the escalation", f"{self.config.silence_s:g}")

    async def stop(self) -> None:
        if self._callback is not None:
            self._callback.stop()

    def _load(self) -> None:
        try:
            doc = json.loads(self.state_path.read_text())
            self.reboots = [float(t) for t in doc.get("reboots", [])][-HISTORY_KEEP:]
            self.history.extend(h for h in doc.get("history", []) if isinstance(h, dict))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as err:
            # A torn file must not disable the reboot guard for good: assume a reboot just happened.
            log.error("wallwatch state %s unreadable (%s); treating the last reboot as recent", self.state_path, err)
            self.reboots = [self.clock()]

    async def _save(self) -> None:
        blob = dumpb({"reboots": self.reboots, "history": list(self.history)})
        try:
            await self.run_blocking(atomic_write_bytes, self.state_path, blob)
        except OSError as err:
            log.error("cannot save %s: %s", self.state_path, err.strerror)

    # ---------------------------------------------------------------- inputs

    def on_heartbeat(self, client_id: int, message: dict[str, Any]) -> None:
        if message.get("role") != "wall":
            return
        self.last_beat_mono = self.monotonic()
        self.last_beat = {
            "received_at": self.clock(),
            "version": str(message.get("version"))[:64] if message.get("version") is not None else None,
            "rendered_at": str(message.get("rendered_at"))[:64] if message.get("rendered_at") is not None else None,
        }
        if self.level > 0:
            last = self.history[-1]["step"] if self.history else "?"
            self._record("recovered", f"the wall page is back (last step: {last})", level=logging.INFO)
            self.level = self.restarts = 0
            self.last_suppressed = None

    @staticmethod
    def _screen_on(state: TopicState) -> bool:
        # Only a screen known to be off excuses silence; unknown or failing → expect the page.
        return not (state.status == "ok" and (state.data or {}).get("power") == "off")

    def on_topic(self, topic: str, state: TopicState) -> None:
        if topic != "display":
            return
        on = self._screen_on(state)
        if on and not self.display_on:
            self.anchor_mono = self.monotonic()  # a page behind a dark screen may have paused: count afresh
        if not on and self.level > 0:
            self.level = self.restarts = 0  # a switched-off wall is not a dark wall
        self.display_on = on

    # ---------------------------------------------------------------- escalation

    def silent_s(self) -> float:
        last = max(self.last_beat_mono or self.started_mono, self.anchor_mono)
        return self.monotonic() - last

    def _due(self) -> bool:
        now = self.monotonic()
        if self.level == 0:
            if self.last_beat_mono is None and now - self.started_mono < self.config.startup_grace_s:
                return False  # the browser is still starting (a cold Pi takes a minute)
            return self.silent_s() >= self.config.silence_s
        return now >= self.next_step_mono

    async def check(self) -> None:
        if not self.config.enabled or not self.display_on or self._busy or not self._due():
            return
        self._busy = True
        try:
            await self._next_step()
        finally:
            self._busy = False

    async def _next_step(self) -> None:
        silent = self.silent_s()
        if self.level == 0:
            self.level = 1
            reached = self.hub.send_command({"type": "reload"}, role="wall")
            if reached:
                self._record("reload", f"no heartbeat for {silent:.0f} s; asked {reached} wall page(s) to reload")
                self.next_step_mono = self.monotonic() + self.config.step_wait_s
                await self._save()
                return
            self._record(
                "reload", f"no heartbeat for {silent:.0f} s and no wall page connected: restarting the browser"
            )
        if self.restarts < self.config.browser_restarts:
            await self._restart_browser(self.config.step_wait_s)
            return
        allowed, why = self.reboot_allowed()
        if allowed:
            await self._reboot()
            return
        if why != self.last_suppressed:
            self._record("reboot_suppressed", why)
            self.last_suppressed = why
        await self._restart_browser(self.config.step_wait_s * SUPPRESSED_WAIT_FACTOR)

    async def _restart_browser(self, wait_s: float) -> None:
        self.level = max(self.level, 2)
        self.restarts += 1
        attempt = self.restarts
        # Recorded before the command, as the reboot is: a command that blocks until the browser is back
        # (`supervisorctl restart`) lets the page's first heartbeat in while it runs, and that heartbeat must
        # find this step already in the history ("recovered (last step: restart_browser)"), not precede it.
        self._record("restart_browser", f"attempt {attempt}: {' '.join(self.config.restart_command)}")
        await self._save()
        ok, detail = await self._run(self.config.restart_command)
        if not ok:
            self._record("restart_browser", f"attempt {attempt} failed: {detail}", failed=True)
            await self._save()
        self.next_step_mono = self.monotonic() + wait_s

    def reboot_allowed(self) -> tuple[bool, str]:
        """The guard against crash and reboot loops: (allowed, why not)."""
        up_min = self.uptime() / 60
        if up_min < self.config.reboot_min_uptime_min:
            return False, (
                f"up only {up_min:.0f} min (no reboot within {self.config.reboot_min_uptime_min:g} min of boot)"
            )
        if self.reboots:
            last = max(self.reboots)
            age_h = (self.clock() - last) / 3600
            if age_h < 0:
                # No RTC on a Pi: until NTP syncs, "now" can be earlier than the recorded reboot.
                return False, "the last reboot is dated in the future (clock not synced yet?)"
            if age_h < self.config.reboot_min_interval_h:
                return False, (
                    f"the last one was {age_h:.1f} h ago (at most one per {self.config.reboot_min_interval_h:g} h)"
                )
        return True, ""

    async def _reboot(self) -> None:
        self.level = 3
        # Recorded and flushed *before* the command: if the reboot happens, the guard must know next boot.
        self.reboots = [*self.reboots, self.clock()][-HISTORY_KEEP:]
        self._record("reboot", f"the wall stayed dark after {self.restarts} browser restart(s): rebooting")
        await self._save()
        ok, detail = await self._run(self.config.reboot_command)
        if not ok:
            self._record("reboot", f"reboot failed: {detail}", failed=True)
            await self._save()
        self.next_step_mono = self.monotonic() + self.config.step_wait_s * SUPPRESSED_WAIT_FACTOR

    async def _run(self, argv: tuple[str, ...]) -> tuple[bool, str]:
        shown = " ".join(argv)
        status, out, err = await self.run_blocking(
            run_command, list(argv), command_env(), self.config.command_timeout_s
        )
        if status is None:
            return False, f"{shown}: no answer within {self.config.command_timeout_s:g} s"
        if status != 0:
            lines = (err or out).strip().splitlines()
            return False, f"{shown}: exit {status}: {lines[-1][:200] if lines else 'no message'}"
        return True, shown

    def _record(self, step: str, detail: str, *, failed: bool = False, level: int = logging.WARNING) -> None:
        entry = {"at": iso(self.clock(), self.tz), "step": step, "detail": detail}
        if failed:
            entry["failed"] = True
        self.history.append(entry)
        log.log(logging.ERROR if failed else level, "wall: %s: %s", step, detail)

    # ---------------------------------------------------------------- report

    def health(self) -> dict[str, Any]:
        silent = self.silent_s() if self.last_beat_mono is not None else None
        dark = (
            self.config.enabled
            and self.display_on
            and (self.level > 0 or (silent is not None and silent >= self.config.silence_s))
        )
        day_ago = self.clock() - 86400
        beat = self.last_beat or {}
        return {
            "status": "degraded" if dark else "ok",
            "enabled": self.config.enabled,
            "screen_on": self.display_on,
            "last_heartbeat": iso(beat.get("received_at"), self.tz),
            "version": beat.get("version"),
            "rendered_at": beat.get("rendered_at"),
            "silent_s": round(silent, 1) if silent is not None else None,
            "escalation": ("none", "page reload asked", "browser restarted", "reboot asked")[self.level],
            "browser_restarts": self.restarts,
            "reboots_24h": sum(1 for t in self.reboots if t >= day_ago),
            "history": list(self.history)[-HEALTH_HISTORY:],
        }
