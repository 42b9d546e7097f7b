"""iCalendar feeds (Google, iCloud, Outlook, Nextcloud private links) → topic `calendar`, one feed failing alone.

Fetching happens here, with the shared HTTP policy and conditional GET (ETag / Last-Modified), so an unchanged
feed costs one 304. The feeds are fetched at the same time, each in a thread of its own with its own deadline, so
one that trickles delays no other. Parsing and recurrence expansion run in a short-lived child process
(server/sources/calendar_ics.py, driven by calendar_reader.py) that is fed the download as it arrives, so that
neither the parser libraries nor a multi-MB feed ever live in the server: the server keeps only each feed's
occurrences in a window a week longer than the one shown. One reader runs at a time (its memory limit is sized
for the server and one reader under the unit's MemoryHigh).

A feed URL is a capability (whoever has it reads the calendar): it is registered as a secret with the HTTP
client (scrubbed from every message and log line), and messages name the calendar, never the address.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from server.config import CalendarConfig
from server.core.atomic import atomic_write_bytes
from server.core.source import SourceError, TransientError, stale_after_s
from server.sources.calendar_reader import PARSE_TIMEOUT_S, READER_LIMITS, Reader, ReaderError, ReaderLimits
from server.sources.http import HttpClient, HttpResponse, parse_retry_after

log = logging.getLogger(__name__)

SOURCE = "calendar"
EXTRA_DAYS = 7  # expanded beyond the shown window, so a week of day changes needs no re-parse (304s suffice)
GATHER_S = 10.0  # a poll publishes the feeds read by then; one that takes longer is published when it is done
ACCEPT = "text/calendar, text/plain;q=0.5, */*;q=0.1"
CACHE_FILE_NAME = "calendar_cache.json"  # each feed's last good occurrences, for a restart while a feed fails


def fetch_url(url: str) -> str:
    """`webcal://` (and `webcals://`) only means "subscribe": the same resource is served over https."""
    scheme, sep, rest = url.partition("://")
    return f"https://{rest}" if sep and scheme.lower() in ("webcal", "webcals") else url


def url_secrets(url: str) -> list[str]:
    """The parts of a feed URL that carry its token: the whole URL, and its path and query when they are long
    enough to hold one (Nextcloud's "?export" is not a secret, and scrubbing the word everywhere would hurt)."""
    parts = urlsplit(fetch_url(url))
    return [url, fetch_url(url), *(part for part in (parts.path, parts.query) if len(part) >= 12)]


@dataclass
class FeedState:
    """What the server keeps per feed: its last good occurrences and the validators that got them."""

    events: list[dict[str, Any]] | None = None  # None: never read
    first: dt.date | None = None  # the local days the events were expanded for
    last: dt.date | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    read_at: float | None = None
    not_before_s: float = 0.0  # the feed's server asked us to wait (Retry-After on 429 / 503)
    unreadable: int = 0  # of the kept read: events left out because they could not be read
    too_many: int = 0  # ... repeating events with more occurrences than the reader takes
    refused: tuple[bytes, str] | None = None  # (digest, reason) of a body over a reader limit: not read again

    def left_out(self) -> tuple[int, str | None]:
        """How many events the wall leaves out of this feed, and why, in words."""
        reasons = []
        if self.unreadable:
            reasons.append(f"{self.unreadable} could not be read")
        if self.too_many:
            reasons.append(f"{self.too_many} with more occurrences than the wall can take")
        return self.unreadable + self.too_many, "; ".join(reasons) or None


def status_message(response: HttpResponse) -> str | None:
    """A non-2xx answer in words a person can act on; None for 2xx."""
    code = response.status
    if 200 <= code < 300:
        return None
    if code in (404, 410):
        return f"the link answers {code}: was the calendar's private address reset? Put the new one in its secret"
    if code in (401, 403):
        return (
            f"the link answers {code}: the calendar is no longer shared, or its private address was reset "
            "(put the new one in its secret)"
        )
    if code == 429:
        return "the calendar server answers 429 (too many requests); will retry later"
    if code >= 500:
        return f"the calendar server answers {code} (a problem on its side); will retry"
    return f"the link answers HTTP {code}: check the calendar's address"


class CalendarSource:
    """Polls every configured feed (Source protocol); publishes the merged, windowed, sorted occurrences."""

    name = SOURCE
    topics = (SOURCE,)
    failures_before_error = 1

    def __init__(
        self,
        config: CalendarConfig,
        timezone: str,
        *,
        base_url: str | None = None,
        rerun: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        parse_timeout_s: float = PARSE_TIMEOUT_S,
        reader_limits: ReaderLimits = READER_LIMITS,
        gather_s: float = GATHER_S,
        data_dir: str | None = None,
    ) -> None:
        self.config = config
        self.zone = config.timezone or timezone
        self.tz = ZoneInfo(self.zone)
        self.interval_s = config.interval_s
        self.max_age_s = stale_after_s(config.max_age_s, config.interval_s)
        # One client per feed: each download runs in its own thread, and a session is not shared between threads.
        self.clients = [
            HttpClient(SOURCE, read_timeout_s=30.0, deadline_s=config.timeout_s, max_body_bytes=config.max_bytes)
            for _ in config.calendars
        ]
        # Demo mode: the stand-in serves feed i at {base_url}/{i}.ics instead of the configured address.
        self.urls = [
            f"{base_url.rstrip('/')}/{i}.ics" if base_url else fetch_url(feed.url)
            for i, feed in enumerate(config.calendars)
        ]
        for client in self.clients:
            for feed in config.calendars:
                for secret in url_secrets(feed.url):
                    client.add_secret(secret)
        self.parse_timeout_s = parse_timeout_s
        self.reader_limits = reader_limits
        self.gather_s = gather_s
        # Downloads run side by side; readers one after another.
        self.timeout_s = config.timeout_s + len(config.calendars) * parse_timeout_s + 5.0
        self.clock = clock
        self.states = [FeedState() for _ in config.calendars]
        self._reading = threading.Lock()  # one reader at a time: the server and one reader fit the unit's memory
        # A feed still being read when its poll returned asks, when done, for a run that only publishes.
        self.rerun = rerun
        self._lock = threading.Condition()  # guards the four below; notified when a feed's read ends
        self._in_flight: set[int] = set()
        self._gathering = 0  # polls waiting for their feeds now
        self._publish_only = False  # the next fetch() was asked for by a late feed: publish, start nothing
        # A demo run in a real data_dir must not replace the real calendars' saved events.
        cache_name = f"demo_{CACHE_FILE_NAME}" if base_url else CACHE_FILE_NAME
        self.cache_path = Path(data_dir) / cache_name if data_dir else None
        self._load_cache()

    # -- the Source protocol

    def fetch(self) -> dict[str, dict]:
        """Start a read of every feed not being read (nor asked by its server to wait), each in its own thread;
        return once all are done or gather_s has passed, whichever is first (later: when a first feed is read,
        if none ever was). A feed that takes longer is published when it is done (see rerun), so one that
        trickles delays no other."""
        now_s = self.clock()
        today = dt.datetime.fromtimestamp(now_s, self.tz).date()
        last_shown = today + dt.timedelta(days=self.config.days - 1)
        with self._lock:
            publish_only, self._publish_only = self._publish_only, False
            if not publish_only:
                for i, state in enumerate(self.states):
                    if i in self._in_flight or now_s < state.not_before_s:
                        continue  # (a feed asked to wait keeps its events and its error until the wait is over)
                    thread = threading.Thread(
                        target=self._poll, args=(i, today, last_shown), name=f"calendar-{i}", daemon=True
                    )
                    thread.start()  # (RuntimeError if no thread can be had: the runner reports it)
                    self._in_flight.add(i)
            self._gathering += 1
            try:
                deadline_s = time.monotonic() + self.gather_s
                while self._in_flight:
                    left_s = deadline_s - time.monotonic()
                    if left_s <= 0 and any(state.events is not None for state in self.states):
                        break
                    self._lock.wait(max(left_s, 0.5))
            finally:
                self._gathering -= 1
            if all(state.events is None for state in self.states):
                reasons = "; ".join(
                    f"{f.name}: {s.error}" for f, s in zip(self.config.calendars, self.states, strict=True)
                )
                raise TransientError(f"no calendar could be read ({reasons})")
            return {SOURCE: self.topic_data(now_s)}

    def topic_data(self, now_s: float) -> dict[str, Any]:
        """The topic: occurrences not yet ended that start before local midnight `days` days after today."""
        today = dt.datetime.fromtimestamp(now_s, self.tz).date()
        window_end_s = self._midnight_s(today + dt.timedelta(days=self.config.days))
        keyed: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        for index, (feed, state) in enumerate(zip(self.config.calendars, self.states, strict=True)):
            for item in state.events or ():
                start_s, end_s = self._span_s(item)
                if end_s <= now_s or start_s >= window_end_s:
                    continue
                event = {**item, "calendar": feed.name}
                keyed.append(((start_s, not item["all_day"], end_s, item["title"], index), event))
        keyed.sort(key=lambda pair: pair[0])
        return {"events": [event for _, event in keyed], "calendars": self._entries()}

    def health(self) -> dict[str, Any]:
        """/healthz section: degraded while a feed fails (its link may need replacing); never an address. Events
        left out (unreadable, too many occurrences) are counted per calendar but degrade nothing: no person on
        this side can mend them."""
        entries = self._entries()
        failing = [f"{e['name']}: {e['error']}" for e in entries if e["error"]]
        return {
            "status": "degraded" if failing else "ok",
            "error": "; ".join(failing) or None,
            "skipped": sum(e["skipped"] for e in entries),
            "calendars": entries,
        }

    def _entries(self) -> list[dict[str, Any]]:
        """Each calendar's `calendars` entry: the topic's and /healthz's."""
        entries = []
        for feed, state in zip(self.config.calendars, self.states, strict=True):
            skipped, reason = state.left_out()
            entries.append(
                {
                    "name": feed.name,
                    "status": "error" if state.error else "ok",
                    "error": state.error,
                    "skipped": skipped,
                    "skipped_reason": reason,
                }
            )
        return entries

    # -- one feed

    def _poll(self, index: int, today: dt.date, last: dt.date) -> None:
        """One feed, in its own thread: whatever happens here stays this feed's error."""
        feed, state = self.config.calendars[index], self.states[index]
        kept = state.events
        message: str | None = None
        try:
            self._refresh(index, today, last)
        except SourceError as err:
            message = self._calendar_message(err.message)
        except Exception as err:  # a bug: this feed's error, logged once; the other feeds go on
            message = f"internal error: {type(err).__name__}"
            if state.error != message:
                log.exception("calendar %s: reading failed", feed.name)
        with self._lock:
            if message is not None:
                if state.error != message:
                    log.warning("calendar %s: %s", feed.name, message)
                state.error = message
            if state.events is not kept:
                self._save_cache()  # only after a new read: a 304 writes nothing (the SD card lasts)
            self._in_flight.discard(index)
            self._lock.notify_all()
            late = not self._gathering and self.rerun is not None
            if late:
                self._publish_only = True
        if late and self.rerun is not None:
            self.rerun()

    def _refresh(self, index: int, today: dt.date, last: dt.date) -> None:
        feed, state, client = self.config.calendars[index], self.states[index], self.clients[index]
        covered = state.first is not None and state.first <= today and state.last is not None and state.last >= last
        headers = {"Accept": ACCEPT}
        if covered:
            # Only when the kept occurrences cover the days to show: a 304 then means "nothing to do".
            if state.etag:
                headers["If-None-Match"] = state.etag
            if state.last_modified:
                headers["If-Modified-Since"] = state.last_modified
        expand_to = last + dt.timedelta(days=EXTRA_DAYS)
        started: list[Reader] = []  # the reader a 2xx answer's body goes to, chunk by chunk as it arrives

        def sink(status: int, _headers: Mapping[str, str]) -> Callable[[bytes], object] | None:
            if not 200 <= status < 300:
                return None  # an error page is small and read here
            started.append(Reader(self.zone, today, expand_to, self.reader_limits))
            return started[0].write

        try:
            try:
                response = client.request("GET", self.urls[index], headers=headers, sink=sink)
            except TransientError as err:
                if "bytes" in err.message and ("limit is" in err.message or "more than" in err.message):
                    raise TransientError(f"{err.message} (raise sources.calendar.max_bytes)") from None
                raise
            if response.status == 304 and covered:
                state.error = None
                state.read_at = self.clock()
                return
            problem = status_message(response)
            if problem is not None:
                wait_s = parse_retry_after(response.headers.get("Retry-After"), self.clock())
                if wait_s is not None and response.status in (429, 503):
                    state.not_before_s = self.clock() + wait_s  # this feed only; the others are polled as usual
                raise TransientError(problem)
            reader = started[0]
            if state.refused is not None and state.refused[0] == reader.digest.digest():
                raise TransientError(state.refused[1])  # the same bytes a limit stopped: the same answer, no CPU
            with self._reading:
                result = reader.finish(self.parse_timeout_s)
        except ReaderError as err:
            if err.limit and started:
                state.refused = (started[0].digest.digest(), err.message)
            raise TransientError(err.message) from None
        finally:
            for reader in started:
                reader.abort()  # a download that failed, a body not read again (after finish(): nothing left)
        events = [e for e in result["events"] if isinstance(e, dict)]
        unreadable, too_many = result.get("unreadable"), result.get("too_many")
        state.unreadable = unreadable if isinstance(unreadable, int) else 0
        state.too_many = too_many if isinstance(too_many, int) else 0
        log.log(
            logging.INFO if state.error is not None or state.events is None else logging.DEBUG,
            "calendar %s: read (%s events in the file, %s left out, %d occurrences in the next %d days; "
            "reader peak %s kB)",
            feed.name,
            result.get("scanned", "?"),
            state.left_out()[0],
            len(events),
            (expand_to - today).days + 1,
            result.get("peak_rss_kb", "?"),
        )
        state.events, state.first, state.last = events, today, expand_to
        state.etag = response.headers.get("ETag")
        state.last_modified = response.headers.get("Last-Modified")
        state.error = state.refused = None
        state.read_at = self.clock()

    # -- the last good occurrences on disk (window-sized: they do not grow with a feed's history)

    def _load_cache(self) -> None:
        if self.cache_path is None:
            return
        try:
            saved = json.loads(self.cache_path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            log.warning("calendar: ignoring %s (%s)", self.cache_path.name, type(err).__name__)
            return
        feeds = saved.get("feeds") if isinstance(saved, dict) and saved.get("zone") == self.zone else None
        for feed, state in zip(self.config.calendars, self.states, strict=True):
            entry = feeds.get(feed.name) if isinstance(feeds, dict) else None
            try:
                events = [e for e in entry["events"] if isinstance(e, dict)]
                first, last = dt.date.fromisoformat(entry["first"]), dt.date.fromisoformat(entry["last"])
                for e in events:
                    self._span_s(e)  # every kept event must be readable, or none is used
                unreadable, too_many = int(entry.get("unreadable", 0)), int(entry.get("too_many", 0))
            except (TypeError, KeyError, ValueError):
                continue
            state.events, state.first, state.last = events, first, last  # no validators: the next GET is whole
            state.unreadable, state.too_many = unreadable, too_many

    def _save_cache(self) -> None:
        if self.cache_path is None:
            return
        feeds = {
            feed.name: {
                "events": s.events,
                "first": s.first.isoformat(),
                "last": s.last.isoformat(),
                "unreadable": s.unreadable,
                "too_many": s.too_many,
            }
            for feed, s in zip(self.config.calendars, self.states, strict=True)
            if s.events is not None and s.first is not None and s.last is not None
        }
        try:
            blob = json.dumps({"zone": self.zone, "feeds": feeds}, ensure_ascii=False).encode("utf-8")
            atomic_write_bytes(self.cache_path, blob, mode=0o600)  # titles and places are private
        except OSError as err:
            log.warning("calendar: cannot write %s (%s)", self.cache_path.name, err.strerror or err)

    # -- helpers

    def _calendar_message(self, message: str) -> str:
        text = self.clients[0].scrub(message) if self.clients else message  # each client knows every address
        prefix = f"{SOURCE}: "
        return text[len(prefix) :] if text.startswith(prefix) else text

    def _midnight_s(self, day: dt.date) -> float:
        return dt.datetime.combine(day, dt.time(), self.tz).timestamp()

    def _span_s(self, item: dict[str, Any]) -> tuple[float, float]:
        if item["all_day"]:
            return (
                self._midnight_s(dt.date.fromisoformat(item["start"])),
                self._midnight_s(dt.date.fromisoformat(item["end"])),
            )
        return dt.datetime.fromisoformat(item["start"]).timestamp(), dt.datetime.fromisoformat(item["end"]).timestamp()
