"""What this Homeboard left retained on the broker, kept in data_dir, so that what is no longer wanted is removed.

A retained message outlives its publisher: a Home Assistant entity for a sensor that was removed from
config.yaml would stay in Home Assistant for ever. After each connect the topics published now are compared
with this record; each one no longer published gets an empty retained message (which deletes it, and makes
Home Assistant remove the entity), and leaves the record only once the broker acknowledged that.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from server.core.atomic import atomic_write_bytes
from server.core.jsonutil import dumpb

log = logging.getLogger(__name__)

FILE_NAME = "mqtt_retained.json"
FORMAT = 1


class RetainedRecord:
    """Loop thread only. `topics`: retained topics we own; `subscriptions`: topic filters of our persistent session;
    `fields`: per own sensor, the quantities announced to Home Assistant (so an entity does not come and go)."""

    def __init__(self, data_dir: str, run_blocking: Callable[..., Awaitable[Any]]) -> None:
        self.path = os.path.join(data_dir, FILE_NAME)
        self.run_blocking = run_blocking
        self.topics: set[str] = set()
        self.subscriptions: set[str] = set()
        self.fields: dict[str, list[str]] = {}
        self._saving = False
        self._dirty = False
        self.load()

    def load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                doc = json.loads(f.read())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            log.warning("mqtt: ignoring unreadable %s: %s", self.path, err)
            return
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            log.warning("mqtt: ignoring %s: unknown format", self.path)
            return
        self.topics = {t for t in doc.get("topics", []) if isinstance(t, str)}
        self.subscriptions = {t for t in doc.get("subscriptions", []) if isinstance(t, str)}
        fields = doc.get("fields", {})
        if isinstance(fields, dict):
            self.fields = {k: [f for f in v if isinstance(f, str)] for k, v in fields.items() if isinstance(v, list)}

    def add(self, topic: str) -> None:
        if topic not in self.topics:
            self.topics.add(topic)
            self.changed()

    def changed(self) -> None:
        self._dirty = True

    async def save(self) -> None:
        """Write if anything changed (atomically, in the executor). Concurrent calls coalesce."""
        if self._saving or not self._dirty:
            return
        self._saving = True
        try:
            while self._dirty:
                self._dirty = False
                blob = dumpb(
                    {
                        "format": FORMAT,
                        "topics": sorted(self.topics),
                        "subscriptions": sorted(self.subscriptions),
                        "fields": self.fields,
                    }
                )
                try:
                    await self.run_blocking(atomic_write_bytes, self.path, blob)
                except OSError as err:
                    log.warning("mqtt: cannot save %s: %s", self.path, err)
                    return
        finally:
            self._saving = False
