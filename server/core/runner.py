"""Runs every source on its own interval: blocking fetches in the thread pool, results back on the loop.

One source's failure, hang or bug never touches another source or the loop. Failures back off
exponentially (capped at interval × 8) and honour Retry-After; logs say when a source fails and when
it recovers, not on every retry.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.core.hub import Hub
from server.core.source import Source, SourceError
from server.core.timeutil import iso

log = logging.getLogger(__name__)

FIRST_RETRY_MAX_S = 10.0  # the first retry comes quickly (a blip), then doubles
BACKOFF_CAP_FACTOR = 8
JITTER_FRACTION = 0.1


@dataclass
class SourceHealth:
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    next_run: float | None = None
    consecutive_failures: int = 0
    runs: int = 0
    failures: int = 0
    last_duration_s: float | None = None


def backoff_delay_s(interval_s: float, failures: int, retry_after_s: float | None = None) -> float:
    """Delay before the next try after `failures` consecutive failures (≥ 1)."""
    base = min(interval_s, FIRST_RETRY_MAX_S)
    delay = min(base * 2 ** (failures - 1), interval_s * BACKOFF_CAP_FACTOR)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


class SourceRunner:
    def __init__(
        self,
        hub: Hub,
        executor: concurrent.futures.Executor,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.hub = hub
        self.executor = executor
        self.clock = clock
        self.rng = rng or random.Random()
        self.sources: dict[str, Source] = {}
        self._deliver: dict[str, Callable[[Any], None]] = {}
        self.health: dict[str, SourceHealth] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._inflight: dict[str, tuple[float, concurrent.futures.Future[Any]]] = {}  # (started, future)
        self._wakeups: dict[str, asyncio.Event] = {}
        self._loop_of_tasks: asyncio.AbstractEventLoop | None = None
        self._started = False

    def add(self, source: Source, deliver: Callable[[Any], None] | None = None) -> None:
        """Run `source` on its interval. Its result goes to `deliver` (e.g. the reading path, for a sensor's
        Reading) or, by default, is a {topic: data} dict published to the hub as is."""
        if source.name in self.sources:
            raise ValueError(f"duplicate source name {source.name!r}")
        self.sources[source.name] = source
        if deliver is not None:
            self._deliver[source.name] = deliver
        self.health[source.name] = SourceHealth()
        for topic in source.topics:
            self.hub.declare(topic, source.max_age_s)
        if self._started:
            self._start_one(source)

    async def start(self) -> None:
        self._started = True
        self._loop_of_tasks = asyncio.get_running_loop()
        for source in self.sources.values():
            self._start_one(source)

    def _start_one(self, source: Source) -> None:
        self._wakeups[source.name] = asyncio.Event()
        self._tasks[source.name] = asyncio.get_running_loop().create_task(self._loop(source))

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
        self._started = False

    def trigger(self, name: str) -> None:
        """Run a source now (e.g. after a config change or from a test). On the loop thread."""
        event = self._wakeups.get(name)
        if event is not None:
            event.set()

    def trigger_from_thread(self, name: str) -> None:
        """trigger() from any thread: a source's own worker has a result for the topic (a calendar feed that came
        in after the poll that started it had returned). Before start() or after stop(), nothing happens."""
        loop = self._loop_of_tasks
        if loop is not None and self._started:
            try:
                loop.call_soon_threadsafe(self.trigger, name)
            except RuntimeError:
                pass  # the loop has closed: the server is stopping

    def _jitter(self, delay_s: float) -> float:
        return delay_s * (1 + self.rng.uniform(-JITTER_FRACTION, JITTER_FRACTION))

    async def _loop(self, source: Source) -> None:
        health = self.health[source.name]
        # Spread the first runs so that sources do not all hit the executor at the same instant.
        delay = self.rng.uniform(0, min(1.0, source.interval_s / 10))
        while True:
            health.next_run = self.clock() + delay
            try:
                await asyncio.wait_for(self._wakeups[source.name].wait(), timeout=delay)
            except TimeoutError:
                pass
            self._wakeups[source.name].clear()
            delay = await self.run_once(source)

    async def run_once(self, source: Source) -> float:
        """Fetch once, publish the outcome; return the delay until the next run."""
        health = self.health[source.name]
        inflight = self._inflight.get(source.name)
        started = time.monotonic()
        retry_after: float | None = None
        try:
            if inflight is not None and not inflight[1].done():
                # A previous fetch is still stuck in its thread (hung bus, dead socket): do not stack another.
                stuck_s = time.monotonic() - inflight[0]
                raise SourceError(f"still waiting for a read that started {stuck_s:.0f} s ago (hung?)")
            future = self.executor.submit(source.fetch)
            self._inflight[source.name] = (started, future)
            try:
                result = await asyncio.wait_for(asyncio.wrap_future(future), timeout=source.timeout_s)
            except TimeoutError as err:
                raise SourceError(f"no answer within {source.timeout_s:.0f} s") from err
        except SourceError as err:
            retry_after = err.retry_after_s
            self._failed(source, health, err.message, err.status)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug in a source: report it as that source's error, keep the loop alive
            if health.consecutive_failures == 0:
                log.exception("source %s crashed", source.name)
            self._failed(source, health, f"internal error: {type(err).__name__}", "error", logged=True)
        else:
            self._succeeded(source, health, result)
        finally:
            health.runs += 1
            health.last_duration_s = time.monotonic() - started
        if health.consecutive_failures:
            return self._jitter(backoff_delay_s(source.interval_s, health.consecutive_failures, retry_after))
        return self._jitter(source.interval_s)

    def _succeeded(self, source: Source, health: SourceHealth, result: Any) -> None:
        if health.consecutive_failures:
            log.info("source %s recovered after %d failures", source.name, health.consecutive_failures)
        health.consecutive_failures = 0
        health.last_success = self.clock()
        deliver = self._deliver.get(source.name)
        if deliver is not None:
            deliver(result)
            return
        if not isinstance(result, dict):
            self._failed(source, health, "internal error: fetch returned no topics", "error")
            return
        for topic, data in result.items():
            self.hub.publish(topic, data)

    def _failed(self, source: Source, health: SourceHealth, message: str, status: str, logged: bool = False) -> None:
        health.consecutive_failures += 1
        health.failures += 1
        changed = message != health.last_error
        health.last_error = message
        health.last_error_at = self.clock()
        if not logged and (health.consecutive_failures == 1 or changed):
            log.warning("source %s failed: %s", source.name, message)
        if health.consecutive_failures >= source.failures_before_error:
            for topic in source.topics:
                self.hub.publish_error(topic, message, status)

    def health_report(self) -> dict[str, dict[str, Any]]:
        tz = self.hub.tz
        return {
            name: {
                "last_success": iso(h.last_success, tz),
                "last_error": h.last_error,
                "last_error_at": iso(h.last_error_at, tz),
                "failing": h.consecutive_failures > 0,
                "next_run": iso(h.next_run, tz),
                "consecutive_failures": h.consecutive_failures,
            }
            for name, h in self.health.items()
        }
