"""The calendar reader: an iCalendar feed → occurrences in one time zone. Runs as a short-lived child process.

The server never imports icalendar / recurring-ical-events itself: measured with bench/bench_calendar.py, parsing a
5 MB feed in the server process costs 3 MB of imports and leaves it 11 MB larger for good, where this child costs
the server nothing that stays. CalendarSource runs this module as
`python -m server.sources.calendar_ics --zone Europe/Stockholm --from 2026-12-01 --until 2026-12-12` with the
ICS on stdin, and reads one compact JSON object from stdout (see main()).

A feed is hostile input, so the reader is bounded on its own: memory and CPU limits set on itself before it reads
a byte (setrlimit), the parser sees only the pre-selected, reduced events (server/sources/calendar_text.py) and
at most MAX_PARSE_EVENTS of them, a repeating event is expanded lazily and stops at MAX_OCCURRENCES (and after a
bounded number of steps from its DTSTART), and titles and places are clipped. Within those bounds, any error in
one event or one series leaves that event out, counted, and the rest shows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import resource
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from server.sources.calendar_text import (
    MAX_TEXT_CHARS,
    FeedError,
    Selection,
    check_feed,
    is_zone_name,
    place_tzids,
    select,
    split_property,
)

# The reader's limits. The memory limit keeps the server and one reader under the unit's MemoryHigh (192 MB:
# systemd/homeboard.service) with the server at its usual 40-50 MB; a 20 MB feed (sources.calendar.max_bytes)
# of real history reads in well under half of it. Measured with bench/bench_calendar.py.
MEMORY_LIMIT_BYTES = 128 * 2**20  # address space (RLIMIT_AS) and data (RLIMIT_DATA) of the reader
CPU_LIMIT_S = 30  # RLIMIT_CPU: 20 MB of history takes 1.3 s here (x86-64 VM), the worst hostile feed 7 s; a Pi is
# several times slower
MAX_OCCURRENCES = 3000  # per feed: a FREQ=MINUTELY rule must not flood the server and the page
# dateutil walks a rule from its DTSTART, whatever the window: a FREQ=MINUTELY rule begun five years ago is 2.6
# million steps (about 4 µs each here) before its first occurrence in view. Every series first gets FIRST_ROUND_STEPS
# (a daily one begun in 1960 needs 25,000); those that need more get up to MAX_SERIES_STEPS each afterwards, while
# the feed's MAX_TOTAL_STEPS last, so the usual events are all expanded before any rule gone wild.
FIRST_ROUND_STEPS = 25_000
MAX_SERIES_STEPS = 250_000  # an hourly rule begun 28 years ago
MAX_TOTAL_STEPS = 500_000  # for the second round, about 2 s here

EXIT_FEED_ERROR = 3  # {"error": ...} on stdout: the file as a whole cannot be read
EXIT_NO_MEMORY = 4  # {"error": ...}: over MEMORY_LIMIT_BYTES


@dataclass
class Expansion:
    events: list[dict[str, Any]]
    unreadable: int  # events (a series counts once) that could not be read: left out, the rest shown
    too_many: int  # repeating events not shown in full: more occurrences than the reader takes
    scanned: int  # VEVENTs in the feed
    parsed: int  # VEVENTs handed to the parser after pre-selection


# ---------------------------------------------------------------- one occurrence → the topic's shape


_CONTROL = dict.fromkeys([*range(32), 127], " ")


def _text(value: Any) -> str | None:
    """A title or place for one line on the wall: control characters as spaces, runs of space as one, at most
    MAX_TEXT_CHARS (a longer one ends in "…")."""
    text = " ".join(str(value).translate(_CONTROL).split()) if value is not None else ""
    if not text:
        return None
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1].rstrip() + "…"


def _to_zone(value: dt.datetime, tz: dt.tzinfo, floating_tz: dt.tzinfo) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=floating_tz)  # a floating time: the same wall time where it is read
    return value.astimezone(tz).replace(microsecond=0)


def floating_zone(header: list[str], tz: dt.tzinfo) -> dt.tzinfo:
    """Where floating times are: the feed's X-WR-TIMEZONE (IANA or a Windows name, as CLDR maps it), else `tz`.

    Only floating times: unlike x_wr_timezone.to_standard (which recurring_ical_events.of applies), a UTC
    DTSTART keeps its UTC time through a DST change, as RFC 5545 §3.8.5.3 says.
    """
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    for line in header:
        name, value = split_property(line)
        if name == "X-WR-TIMEZONE":
            value = WINDOWS_TO_OLSON.get(value.strip().strip('"'), value.strip().strip('"'))
            return ZoneInfo(value) if is_zone_name(value) else tz
    return tz


def occurrence(component: Any, tz: dt.tzinfo, floating_tz: dt.tzinfo | None = None) -> dict[str, Any] | None:
    """One expanded VEVENT → the topic's event shape (without `calendar`); None when cancelled."""
    if str(component.get("STATUS", "")).strip().upper() == "CANCELLED":
        return None
    start = component.decoded("DTSTART")
    if "DTEND" in component:
        end = component.decoded("DTEND")
    elif "DURATION" in component:
        end = start + component.decoded("DURATION")
    else:
        end = start  # RFC 5545 §3.6.1: a DATE lasts one day (fixed below), a DATE-TIME ends when it starts
    location = _text(component.get("LOCATION"))
    title = _text(component.get("SUMMARY")) or ""
    if not isinstance(start, dt.datetime):
        end_day = end.date() if isinstance(end, dt.datetime) else end
        if end_day <= start:
            end_day = start + dt.timedelta(days=1)  # DTEND = DTSTART exists in the wild: one day
        return {
            "title": title,
            "start": start.isoformat(),
            "end": end_day.isoformat(),
            "all_day": True,
            "location": location,
        }
    if not isinstance(end, dt.datetime):
        end = dt.datetime.combine(end, dt.time(), start.tzinfo)
    start_z, end_z = _to_zone(start, tz, floating_tz or tz), _to_zone(end, tz, floating_tz or tz)
    end_z = max(end_z, start_z)
    return {
        "title": title,
        "start": start_z.isoformat(timespec="seconds"),
        "end": end_z.isoformat(timespec="seconds"),
        "all_day": False,
        "location": location,
    }


# ---------------------------------------------------------------- parse


def _calendar_text(selection: Selection, events: list[str], *, timezones: bool = True) -> str:
    lines = ["BEGIN:VCALENDAR", *selection.header, *(selection.timezones if timezones else ()), *events]
    return "\r\n".join(block.strip("\r\n") for block in [*lines, "END:VCALENDAR"]) + "\r\n"


def parse(selection: Selection, events: list[str]) -> tuple[Any, int]:
    """The calendar of `events`; when the whole does not parse, of every event that parses on its own. Also the
    count of events left out."""
    import icalendar

    try:
        return icalendar.Calendar.from_ical(_calendar_text(selection, events)), 0
    except MemoryError:
        raise
    except Exception:  # noqa: S110 - find the events that break it, below
        pass
    good: list[str] = []
    for block in events:
        try:
            icalendar.Calendar.from_ical(_calendar_text(selection, [block], timezones=False))
        except MemoryError:
            raise
        except Exception:  # noqa: S112 - any parser failure means "this event cannot be read": leave it out
            continue
        good.append(block)
    try:
        return icalendar.Calendar.from_ical(_calendar_text(selection, good)), len(events) - len(good)
    except MemoryError:
        raise
    except Exception as err:
        raise FeedError(f"the calendar file could not be read ({type(err).__name__})") from None


# ---------------------------------------------------------------- lazy, bounded expansion


class TooManySteps(Exception):
    """A rule used up its steps (see StepBudget) without reaching the window's end."""


@dataclass
class StepBudget:
    """Steps the series being expanded may still take (the rules of one series share it)."""

    left: int = 0


class IncompatibleLibrary(BaseException):
    """recurring-ical-events changed what this reader builds on. A BaseException: the library's own
    skip-bad-series (which swallows Exception) must not hide it as one bad series after another."""


class _LazyRule:
    """A dateutil rule whose between() walks it lazily and stops at the span's end.

    dateutil's own between() builds a list of every occurrence in the span, and the library creates its rules with
    cache=True, which keeps every occurrence ever computed: FREQ=SECONDLY over two weeks is 1.2 million of them.
    Here a rule is walked from DTSTART keeping nothing, and gives up when the budget is spent.
    """

    def __init__(self, rule: Any, budget: StepBudget) -> None:
        from dateutil.rrule import rrule

        self._rule = rule.replace(cache=False) if isinstance(rule, rrule) else rule
        self._budget = budget
        self.until = getattr(rule, "until", None)  # set by recurring-ical-events on its rules
        self.string = getattr(rule, "string", None)

    def between(self, after: Any, before: Any, inc: bool = False) -> Iterator[Any]:
        budget = self._budget
        for value in self._rule:
            budget.left -= 1
            if budget.left < 0:
                raise TooManySteps
            if value > before or (value == before and not inc):
                return
            if value > after or (value == after and inc):
                yield value


def _series_class(budget: StepBudget) -> type:
    import recurring_ical_events

    class LazyRules(recurring_ical_events.Series.RecurrenceRules):
        def __init__(self, core: Any) -> None:
            super().__init__(core)
            rules = getattr(self, "rrules", None)
            if not isinstance(rules, list):
                raise IncompatibleLibrary(importlib.metadata.version("recurring-ical-events"))
            self.rrules = [_LazyRule(rule, budget) for rule in rules]

    class LazySeries(recurring_ical_events.Series):
        RecurrenceRules = LazyRules

    return LazySeries


def _sort_key(value: dt.date, tz: dt.tzinfo, floating_tz: dt.tzinfo) -> float:
    """An occurrence's start as a number: an all-day one from local midnight, a floating one in its zone."""
    if not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time(), tz).timestamp()
    return (value if value.tzinfo else value.replace(tzinfo=floating_tz)).timestamp()


def _occurrences(series: Any, lo: dt.date, hi: dt.date, tz: dt.tzinfo, floating_tz: dt.tzinfo) -> list[Any]:
    """One series' occurrences in lo..hi as (start as a number, occurrence); one more than MAX_OCCURRENCES at most
    (enough to know it was cut)."""
    found: list[tuple[float, Any]] = []
    for occ in series.between(lo, hi):
        found.append((_sort_key(occ.start, tz, floating_tz), occ))
        if len(found) > MAX_OCCURRENCES:
            break
    return found


def fair_share(found: list[list[tuple[float, Any]]], total: int) -> list[tuple[float, int, Any]]:
    """At most `total` occurrences, by start: each series' soonest first, level by level (every series' first,
    then every series' second, ...; the soonest decide within a level). A series with fewer occurrences than the
    level keeps all of its own, so only a rule gone wild is cut: a FREQ=SECONDLY typo must not push a feed's real
    events off the wall."""
    ranked: list[tuple[int, float, int, Any]] = []
    for index, occurrences in enumerate(found):
        occurrences.sort(key=lambda pair: pair[0])
        ranked.extend((rank, key, index, occ) for rank, (key, occ) in enumerate(occurrences))
    if len(ranked) > total:
        ranked.sort(key=lambda item: item[:2])
        del ranked[total:]
    return sorted(((key, index, occ) for _, key, index, occ in ranked), key=lambda item: item[0])


def expand_selection(selection: Selection, zone: str, first: dt.date, last: dt.date) -> Expansion:
    """Occurrences overlapping the local days first..last (inclusive), in `zone`, by start; at most
    MAX_OCCURRENCES (see fair_share). Raises FeedError when the file as a whole is unusable or over a limit."""
    import recurring_ical_events

    tz = ZoneInfo(zone)
    floating_tz = floating_zone(selection.header, tz)
    events = place_tzids(selection.events, selection.timezones, first.year)
    calendar, unreadable = parse(selection, events)
    unreadable += selection.unreadable

    class Query(recurring_ical_events.CalendarQuery):
        # One broken series (a bad RRULE, an UNTIL dateutil refuses) must never hide the rest of the feed.
        suppressed_errors = [Exception]  # noqa: RUF012 - the library's own class attribute

    budget = StepBudget()
    components = [recurring_ical_events.ComponentsWithName("VEVENT", series=_series_class(budget))]
    try:
        query = Query(calendar, skip_bad_series=True, components=components)
    except IncompatibleLibrary as err:
        raise FeedError(f"the installed recurring-ical-events {err} is not one this reader was tested with") from None
    except MemoryError:
        raise
    except Exception as err:  # a calendar the library refuses as a whole (CALSCALE other than GREGORIAN)
        raise FeedError(f"the calendar's events could not be expanded ({type(err).__name__})") from None
    # A series the library could not even build (no DTSTART, a date it cannot compare) is left out silently:
    # count the UIDs as the library groups them.
    uids = {str(c.get("UID", id(c))) for c in calendar.walk("VEVENT")}
    unreadable += len(uids) - len(query.series)

    lo, hi = first - dt.timedelta(days=1), last + dt.timedelta(days=2)
    found: list[list[tuple[float, Any]]] = [[] for _ in query.series]  # per series: (start as a number, occurrence)
    too_many: set[int] = set()

    def run(index: int, steps: int) -> bool:
        """Expand one series within `steps`; False when they did not suffice."""
        nonlocal unreadable
        budget.left = steps
        try:
            found[index] = _occurrences(query.series[index], lo, hi, tz, floating_tz)
        except TooManySteps:
            return False
        except MemoryError:
            raise
        except Exception:  # this series only: the others are shown
            unreadable += 1
        return True

    later = [index for index in range(len(query.series)) if not run(index, FIRST_ROUND_STEPS)]
    total_left = MAX_TOTAL_STEPS
    for index in later:
        steps = min(MAX_SERIES_STEPS, total_left)
        if not run(index, steps):
            too_many.add(index)
        total_left -= steps - max(budget.left, 0)
    kept = fair_share(found, MAX_OCCURRENCES)
    counts = Counter(index for _, index, _ in kept)
    too_many.update(index for index, occurrences in enumerate(found) if len(occurrences) > counts[index])

    result: list[dict[str, Any]] = []
    broken: set[int] = set()
    for _, index, occ in kept:
        try:
            item = occurrence(occ.as_component(False), tz, floating_tz)
        except MemoryError:
            raise
        except Exception:  # e.g. an end past year 9999: this event only
            broken.add(index)
            continue
        if item is not None:
            result.append(item)
    return Expansion(
        events=result,
        unreadable=unreadable + len(broken),
        too_many=len(too_many - broken),
        scanned=selection.scanned,
        parsed=len(selection.events),
    )


def expand(body: bytes, zone: str, first: dt.date, last: dt.date) -> Expansion:
    """check, select, expand: occurrences overlapping the local days first..last (inclusive) in `zone`."""
    check_feed(body)
    return expand_selection(select(body, first, last), zone, first, last)


# ---------------------------------------------------------------- child process


def limit_self(memory_bytes: int, cpu_s: int) -> None:
    """The reader's own limits, set before it reads a byte of the feed. Lowering a limit needs no privilege;
    Python's setrlimit is glibc's prlimit64 system call, which the unit's system call filter allows (its
    ~@resources denies only the older setrlimit call)."""
    for kind in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
        resource.setrlimit(kind, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a reader killed by a limit leaves no core file behind


def peak_rss_kb() -> int | None:
    """This process's peak resident memory since it started this program (VmHWM; getrusage's maxrss would
    include the parent's memory at the fork)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _answer(out: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n")


def main(argv: list[str] | None = None) -> int:
    """ICS on stdin → one JSON line on stdout: {"events", "unreadable", "too_many", "scanned", "parsed",
    "peak_rss_kb"}, or {"error", "limit"} with exit status 3 (the file) or 4 (out of memory)."""
    parser = argparse.ArgumentParser(prog="python -m server.sources.calendar_ics", description=__doc__)
    parser.add_argument("--zone", required=True, help="IANA zone for timed events and floating times")
    parser.add_argument("--from", dest="first", required=True, type=dt.date.fromisoformat, help="first local day")
    parser.add_argument("--until", dest="last", required=True, type=dt.date.fromisoformat, help="last local day")
    parser.add_argument("--memory-mb", type=int, default=MEMORY_LIMIT_BYTES // 2**20, help="RLIMIT_AS and _DATA")
    parser.add_argument("--cpu-s", type=int, default=CPU_LIMIT_S, help="RLIMIT_CPU (SIGXCPU)")
    args = parser.parse_args(argv)
    limit_self(args.memory_mb * 2**20, args.cpu_s)
    warnings.simplefilter("ignore")  # the parser's warnings (a guessed TZID) are not the server's to log
    try:
        selection = _read_selection(args.first, args.last)  # the body is freed when this returns
        result = expand_selection(selection, args.zone, args.first, args.last)
    except FeedError as err:
        _answer({"error": str(err), "limit": err.limit, "peak_rss_kb": peak_rss_kb()})
        return EXIT_FEED_ERROR
    except MemoryError:
        _answer({"error": f"reading the calendar needs more than {args.memory_mb} MB of memory"})
        return EXIT_NO_MEMORY
    _answer(
        {
            "events": result.events,
            "unreadable": result.unreadable,
            "too_many": result.too_many,
            "scanned": result.scanned,
            "parsed": result.parsed,
            "peak_rss_kb": peak_rss_kb(),
        }
    )
    return 0


def _read_selection(first: dt.date, last: dt.date) -> Selection:
    body = sys.stdin.buffer.read()
    check_feed(body)
    return select(body, first, last)


if __name__ == "__main__":
    sys.exit(main())
