"""One feature contract: every part of a running Homeboard is started, stopped and asked for its health alike.

The assembly (server/homeboard.py) lists its parts once, in dependency order. They are started in that order and
stopped in the reverse; a part that fails to stop is logged and the others are stopped all the same (a failed
flush must not hang the shutdown or leave the history open). A part's health is its /healthz section, and one
rule, `verdict`, reads those sections for /healthz's status and for Home Assistant's problem sensor alike.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Health = dict[str, Any]  # a /healthz section: its "status" other than "ok" (if it has one) is a problem
SOURCES = "sources"  # the runner's section: one report per source, each failing one a problem of its own


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Part:
    """One piece of a running Homeboard as the assembly sees it. `name` is its /healthz section (when it reports
    health); a part with nothing to start or stop leaves that out."""

    name: str
    start: Callable[[], Awaitable[None]] = _nothing
    stop: Callable[[], Awaitable[None]] = _nothing
    health: Callable[[], Health] | None = None


class Parts:
    """The assembly's parts in dependency order: started in order, stopped in reverse, asked for health."""

    def __init__(self, parts: Iterable[Part]) -> None:
        self.parts = tuple(parts)
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"two parts with one name: {names}")

    async def start(self) -> None:
        for part in self.parts:
            await part.start()

    async def stop(self) -> None:
        for part in reversed(self.parts):
            try:
                await part.stop()
            except Exception:  # keep stopping the rest: a failed flush is logged, not a hang
                log.exception("stopping %s failed", part.name)

    def health(self) -> dict[str, Health]:
        """Every part's section, in the parts' order. A check that raises is itself a degraded section, never a
        500 (and never a crash of Home Assistant's 5-second check)."""
        sections: dict[str, Health] = {}
        for part in self.parts:
            if part.health is None:
                continue
            try:
                sections[part.name] = part.health()
            except Exception as err:
                sections[part.name] = {"status": "degraded", "error": f"health check failed: {type(err).__name__}"}
        return sections


@dataclass(frozen=True)
class Verdict:
    problems: tuple[str, ...]  # "name: what is wrong", the sources' first, then by section name

    @property
    def status(self) -> str:
        return "degraded" if self.problems else "ok"


def verdict(sections: Mapping[str, Any], ignore: Collection[str] = ()) -> Verdict:
    """The one health rule: each failing source ("weather: <its last error>") and each section whose status is
    other than ok ("history: <its error, or its status>") is a problem. `ignore`: sections left out."""
    problems: list[str] = []
    for name in sorted(sections, key=lambda n: (n != SOURCES, n)):
        report = sections[name]
        if name in ignore or not isinstance(report, dict):
            continue
        if report.get("status") not in (None, "ok"):
            problems.append(f"{name}: {report.get('error') or report.get('status')}")
        elif name == SOURCES:
            failing = (item for item in sorted(report.items()) if isinstance(item[1], dict) and item[1].get("failing"))
            problems += [f"{source}: {h['last_error']}" for source, h in failing]
    return Verdict(tuple(problems))
