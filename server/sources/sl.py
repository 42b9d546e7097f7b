"""SL Transport API departures → topic `departures`; `python -m server.sources.sl find NAME` looks up site ids."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from server.config import DeparturesConfig
from server.core.atomic import atomic_write_bytes
from server.core.source import AuthError, SourceError, stale_after_s
from server.sources.fields import Reader
from server.sources.http import HttpClient, upstream_text

SOURCE = "departures"
DEFAULT_BASE_URL = "https://transport.integration.sl.se/v1"
STOCKHOLM = ZoneInfo("Europe/Stockholm")  # the API's times are naive Stockholm wall-clock times (OpenAPI localDatetime)
SITES_CACHE_NAME = "sl_sites.json"
SITES_CACHE_MAX_AGE_S = 7 * 86400
SITES_MAX_BYTES = 32_000_000  # ~6500 sites with stop areas: several MB

log = logging.getLogger(__name__)

# SL's advice for journey state NOTEXPECTED is "do not show departure at all" (OpenAPI journeyStateEnum).
_HIDDEN_JOURNEY_STATES = frozenset({"NOTEXPECTED"})
# Already gone: nothing to catch.
_GONE_STATES = frozenset({"DEPARTED", "PASSED", "ASSUMEDDEPARTED"})
_MODE_BY_STOP_AREA_TYPE = {
    "METROSTN": "METRO",
    "BUSTERM": "BUS",
    "TRAMSTN": "TRAM",
    "RAILWSTN": "TRAIN",
    "SHIPBER": "SHIP",
    "FERRYBER": "FERRY",
    "TAXITERM": "TAXI",
}


def local_to_epoch(text: str, near_s: float) -> float:
    """A naive Europe/Stockholm time → epoch seconds. Raises ValueError when it is not an ISO date-time.

    Across DST the wall clock is ambiguous: on the last Sunday of October 02:00-02:59 happens twice, and on the
    last Sunday of March it does not happen at all. Both readings (fold=0 and fold=1) are computed, and the one
    closest to `near_s` wins (ties: the earlier). Departures are minutes away from the request, so the reading
    near "now" is the real one; scheduled times are placed near the expected time of the same departure.
    A time that does carry an offset (should the API ever add one) is taken as it is.
    """
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is not None:
        return value.timestamp()
    first = value.replace(tzinfo=STOCKHOLM, fold=0).timestamp()
    second = value.replace(tzinfo=STOCKHOLM, fold=1).timestamp()
    if first == second:
        return first
    return min((first, second), key=lambda t: (abs(t - near_s), t))


def _iso(epoch_s: float, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(epoch_s, tz).isoformat(timespec="seconds")


def _messages(r: Reader, items: list[Any], path: str) -> list[str]:
    """Deviation texts as plain text, in order, without duplicates or blanks."""
    out: list[str] = []
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            raise r.error(f"{path}[{k}]", "expected an object")
        message = r.text(item, "message", f"{path}[{k}]", optional=True)
        if message and message not in out:
            out.append(message)
    return out


def parse_departures(
    payload: Any,
    tz: dt.tzinfo,
    now: float,
    walk_time_min: float = 0.0,
    *,
    site_id: int,
    site_name: str | None = None,
    max_departures: int | None = None,
) -> dict[str, Any]:
    """A /sites/{id}/departures payload → topic `departures` data. Pure; raises PayloadError naming the field.

    `now` is epoch seconds. Departures you cannot reach any more (expected − walking time already past) are
    dropped; every kept one gets `leave_in_min`. Cancelled ones stay, with `cancelled: true`.
    """
    r = Reader(SOURCE)
    if not isinstance(payload, dict):
        raise r.error("(top level)", "expected an object")
    walk_s = max(walk_time_min, 0.0) * 60.0
    kept: list[tuple[float, dict[str, Any]]] = []
    first_stop_name: str | None = None
    for i, dep in enumerate(r.items(payload, "departures")):
        path = f"departures[{i}]"
        if not isinstance(dep, dict):
            raise r.error(path, "expected an object")
        stop_area = r.obj(dep, "stop_area", path, optional=True) or {}
        if first_stop_name is None:
            first_stop_name = r.text(stop_area, "name", f"{path}.stop_area", optional=True) or None
        journey = r.obj(dep, "journey", path, optional=True) or {}
        journey_state = r.text(journey, "state", f"{path}.journey", optional=True) or ""
        state = r.text(dep, "state", path)
        if journey_state in _HIDDEN_JOURNEY_STATES or state in _GONE_STATES:
            continue

        scheduled_text = r.text(dep, "scheduled", path)
        expected_text = r.text(dep, "expected", path, optional=True)
        try:
            expected_s = local_to_epoch(expected_text, now) if expected_text else None
            if expected_s is not None:
                r.check_epoch(expected_s, f"{path}.expected")
        except (ValueError, OverflowError):
            got = upstream_text(expected_text, 30)
            raise r.error(f"{path}.expected", f'expected a date-time, got "{got}"') from None
        try:
            scheduled_s = r.check_epoch(
                local_to_epoch(scheduled_text, expected_s if expected_s is not None else now), f"{path}.scheduled"
            )
        except (ValueError, OverflowError):
            got = upstream_text(scheduled_text, 30)
            raise r.error(f"{path}.scheduled", f'expected a date-time, got "{got}"') from None
        # No realtime prediction: the timetable is the best the API knows (HASL sorts the same way).
        when_s = expected_s if expected_s is not None else scheduled_s
        leave_in_s = when_s - walk_s - now
        if leave_in_s < 0:
            continue

        line = r.req_obj(dep, "line", path)
        lpath = f"{path}.line"
        designation = r.text(line, "designation", lpath, optional=True) or r.text(line, "id", lpath)
        mode = r.text(line, "transport_mode", lpath, optional=True) or _MODE_BY_STOP_AREA_TYPE.get(
            r.text(stop_area, "type", f"{path}.stop_area", optional=True) or "", "UNKNOWN"
        )
        direction = r.text(dep, "direction", path, optional=True)
        destination = r.text(dep, "destination", path, optional=True) or direction
        if not destination:
            raise r.error(f"{path}.destination", "missing (and no direction either)")
        stop_point = r.obj(dep, "stop_point", path, optional=True) or {}
        cancelled = state == "CANCELLED" or journey_state == "CANCELLED"
        kept.append(
            (
                when_s,
                {
                    "line": designation,
                    "transport_mode": mode,
                    "group_of_lines": r.text(line, "group_of_lines", lpath, optional=True),
                    "destination": destination,
                    "via": r.text(dep, "via", path, optional=True),
                    "direction_code": r.integer(dep, "direction_code", path, optional=True),
                    "stop_point": r.text(stop_point, "designation", f"{path}.stop_point", optional=True),
                    "scheduled": _iso(scheduled_s, tz),
                    "expected": _iso(when_s, tz),
                    "realtime": expected_s is not None,
                    "display": r.text(dep, "display", path),
                    "state": state,
                    "cancelled": cancelled,
                    "deviations": _messages(r, r.items(dep, "deviations", path, optional=True), f"{path}.deviations"),
                    "leave_in_min": leave_in_s / 60.0,  # unrounded: the page rounds once, for display
                },
            )
        )
    kept.sort(key=lambda item: item[0])  # stable: equal times keep the API's order
    departures = [d for _, d in kept]
    if max_departures is not None and max_departures > 0:
        departures = departures[:max_departures]
    return {
        "site_id": site_id,
        "site_name": first_stop_name or site_name,
        "walk_time_min": walk_time_min,
        "departures": departures,
        "stop_deviations": _messages(r, r.items(payload, "stop_deviations", optional=True), "stop_deviations"),
    }


# ---------------------------------------------------------------- sites


def load_sites(
    base_url: str,
    cache_dir: str | os.PathLike[str] | None,
    *,
    refresh: bool = False,
    client: HttpClient | None = None,
    clock: Callable[[], float] = time.time,
    deadline_s: float = 120.0,
) -> list[dict[str, Any]]:
    """Every SL site ({id, name, ...}); from the cache file when it is fresh, else from GET /sites?expand=true.

    The list is several MB and changes rarely, so it is fetched at most once a week (SL asks for no more
    requests than needed). Raises SourceError when it cannot be fetched.
    """
    cache = Path(cache_dir) / SITES_CACHE_NAME if cache_dir is not None else None
    if cache is not None and not refresh:
        try:
            if clock() - cache.stat().st_mtime < SITES_CACHE_MAX_AGE_S:
                cached = json.loads(cache.read_bytes())
                if isinstance(cached, dict) and cached.get("base_url") == base_url:
                    sites = cached.get("sites")
                    if isinstance(sites, list):
                        return sites
        except (OSError, ValueError):
            pass  # missing or damaged cache: fetch afresh
    own_client = client is None
    client = client or HttpClient(
        "sl-sites", max_body_bytes=SITES_MAX_BYTES, deadline_s=deadline_s, read_timeout_s=30.0
    )
    try:
        response = client.request(
            "GET", f"{base_url.rstrip('/')}/sites", params={"expand": "true"}, max_body_bytes=SITES_MAX_BYTES
        )
        client.check_status(response)
        payload = response.json()
    finally:
        if own_client:
            client.close()
    if not isinstance(payload, list):
        raise AuthError(f"SL: {base_url}/sites did not answer with a list of sites: check the base URL")
    sites = [s for s in payload if isinstance(s, dict) and "id" in s and "name" in s]
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            blob = json.dumps({"base_url": base_url, "sites": sites}, ensure_ascii=False).encode("utf-8")
            atomic_write_bytes(cache, blob, mode=0o644)
        except OSError as err:
            log.warning("could not cache the SL site list in %s: %s", cache, err.strerror)
    return sites


def _fold(text: str) -> str:
    """Case- and accent-insensitive form: "Hässelby" matches "hasselby"."""
    import unicodedata  # only the `find` command needs it: keep the poller's memory small

    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def find_sites(sites: Sequence[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """Sites whose name, alias or abbreviation contains `query`: exact matches first, then prefixes, then the rest."""
    needle = _fold(query)
    if not needle:
        return []
    ranked: list[tuple[int, str, dict[str, Any]]] = []
    for site in sites:
        names = [str(site.get("name", ""))]
        alias = site.get("alias")
        if isinstance(alias, list):
            names += [str(a) for a in alias]
        elif isinstance(alias, str):
            names.append(alias)
        if isinstance(site.get("abbreviation"), str):
            names.append(site["abbreviation"])
        folded = [_fold(n) for n in names if n]
        if any(n == needle for n in folded):
            rank = 0
        elif any(n.startswith(needle) for n in folded):
            rank = 1
        elif any(needle in n for n in folded):
            rank = 2
        else:
            continue
        ranked.append((rank, _fold(str(site.get("name", ""))), site))
    ranked.sort(key=lambda item: (item[0], item[1]))
    return [site for _, _, site in ranked]


# ---------------------------------------------------------------- the source


class DeparturesSource:
    """Polls SL's /sites/{site_id}/departures (Source protocol). No API key: the Transport API needs none."""

    name = SOURCE
    topics = (SOURCE,)
    failures_before_error = 1
    SITE_LOOKUP_RETRY_S = 3600.0
    SITE_LOOKUP_DEADLINE_S = 30.0

    def __init__(
        self,
        config: DeparturesConfig,
        tz: dt.tzinfo,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        base_url: str | None = None,
        client: HttpClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.tz = tz
        self.data_dir = data_dir
        self.base_url = (base_url or config.base_url).rstrip("/")
        self.interval_s = config.interval_s
        self.max_age_s = stale_after_s(config.max_age_s, config.interval_s)
        self.client = client or HttpClient(SOURCE, deadline_s=20.0, read_timeout_s=10.0)
        # The departures request, plus (rarely: no departures and no known name) the site-list lookup.
        self.timeout_s = self.client.deadline_s + self.SITE_LOOKUP_DEADLINE_S + 5.0
        self.clock = clock
        self._site_name: str | None = None
        self._site_lookup_after_s = 0.0

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"forecast": self.config.forecast_min}
        if self.config.transport:
            params["transport"] = self.config.transport
        if self.config.line is not None:
            params["line"] = self.config.line
        if self.config.direction is not None:
            params["direction"] = self.config.direction
        return params

    def fetch(self) -> dict[str, dict]:
        site_id = self.config.site_id
        response = self.client.request("GET", f"{self.base_url}/sites/{site_id}/departures", params=self.params())
        if response.status == 404:
            raise AuthError(
                f"SL: site {site_id} not found: check sources.departures.site_id "
                '(python -m server.sources.sl find "Odenplan" lists site ids)'
            )
        if response.status == 400:
            raise AuthError(
                "SL rejected the departures query (HTTP 400): check sources.departures "
                "transport, line, direction and forecast_min (5-1200)"
            )
        self.client.check_status(response)
        data = parse_departures(
            response.json(),
            self.tz,
            self.clock(),
            self.config.walk_time_min,
            site_id=site_id,
            site_name=self._site_name,
            max_departures=self.config.max_departures,
        )
        if data["site_name"]:
            self._site_name = data["site_name"]
        else:
            data["site_name"] = self._lookup_site_name()
        return {SOURCE: data}

    def _lookup_site_name(self) -> str | None:
        """The site's name when no departure carried it (at night): from the site list, at most once an hour."""
        now = self.clock()
        if now < self._site_lookup_after_s:
            return None
        self._site_lookup_after_s = now + self.SITE_LOOKUP_RETRY_S
        try:
            sites = load_sites(self.base_url, self.data_dir, clock=self.clock, deadline_s=self.SITE_LOOKUP_DEADLINE_S)
        except SourceError as err:
            log.info("could not look up the name of SL site %s: %s", self.config.site_id, err.message)
            return None
        for site in sites:
            if site.get("id") == self.config.site_id and isinstance(site.get("name"), str):
                self._site_name = site["name"]
                return self._site_name
        return None


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m server.sources.sl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    find = sub.add_parser("find", help="search SL sites by name and print their ids (for sources.departures.site_id)")
    find.add_argument("name", help='part of a stop name, e.g. "Odenplan" (case and å/ä/ö insensitive)')
    find.add_argument("--base-url", default=DEFAULT_BASE_URL, help="SL Transport API base URL (default: %(default)s)")
    find.add_argument("--data-dir", default="./var", help="where the site list is cached (default: %(default)s)")
    find.add_argument("--refresh", action="store_true", help="fetch the site list even if the cache is fresh")
    find.add_argument("--limit", type=int, default=20, help="show at most this many matches (default: %(default)s)")
    args = parser.parse_args(argv)

    try:
        sites = load_sites(args.base_url, args.data_dir, refresh=args.refresh)
    except SourceError as err:
        print(f"error: could not get the SL site list: {err.message}", file=sys.stderr)
        return 2
    matches = find_sites(sites, args.name)
    if not matches:
        print(f'no SL site matches "{args.name}"', file=sys.stderr)
        return 1
    for site in matches[: args.limit]:
        print(f"{site.get('id'):>8}  {site.get('name')}")
    if len(matches) > args.limit:
        print(f"... and {len(matches) - args.limit} more; be more specific")
    return 0


if __name__ == "__main__":
    sys.exit(main())
