"""Display power, the rules: a schedule, PIR motion and a manual override decide; pure, every input an argument.

Rules, in order:
  manual "on"/"off" (POST /api/display, kept across restarts)  →  that, until "auto" is posted
  outside the on_at..off_at window (local time)                →  off
  motion_timeout_min > 0: motion in the last N minutes         →  on, else off ("no motion for N min");
                          the PIR failing                      →  on (better lit than dark by mistake)
  otherwise                                                    →  on

The shell around them (server/display/controller.py) feeds them the clock and the PIR and switches the screen.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from server.config import DisplayConfig


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
