"""What this Homeboard left retained on the broker, kept in data_dir, so that what is no longer wanted is removed.

A retained message outlives its publisher: a Home Assistant entity for a sensor that was removed from
config.yaml would stay in Home Assistant for ever. After each connect the topics published now are compared
with this record; each one no longer published gets an empty retained message (which deletes it, and makes
Home Assistant remove the entity), and leaves the record only once the broker acknowledged that.

Order matters to Home Assistant. It stops listening to an entity's state topic only once it has processed the
empty discovery config and removed the entity; an empty message on the state topic before then is rendered by
the entity's value_template, and Home Assistant logs "Template variable error: 'value_json' is undefined" for
each. So the discovery configs are removed first, and the other topics (the state topics) only
HA_UNSUBSCRIBE_GRACE_S after the broker took those removals. (The value templates also tolerate an empty
payload, see homeassistant.py, so a Home Assistant slower than that logs nothing either.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from server.core.atomic import atomic_write_bytes
from server.core.jsonutil import dumpb

log = logging.getLogger(__name__)

FILE_NAME = "mqtt_retained.json"
FORMAT = 1
HA_UNSUBSCRIBE_GRACE_S = 10.0  # Home Assistant removes an entity in well under a second; this is ample


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> Any: ...

    async def wait_published(self, infos: list[Any], timeout_s: float = 10.0) -> bool: ...


async def remove_gone(link: Publisher, record: RetainedRecord, wanted: set[str], discovery_prefix: str) -> None:
    """After a connect: empty every recorded topic that is not wanted now, discovery configs first."""
    gone = record.topics - wanted
    configs = sorted(t for t in gone if t.startswith(discovery_prefix + "/"))
    others = sorted(gone - set(configs))
    if configs:
        if not await _clear(link, record, configs):
            return
        if others:
            await asyncio.sleep(HA_UNSUBSCRIBE_GRACE_S)  # Home Assistant unsubscribes from the removed entities
    if others:
        await _clear(link, record, others)


async def _clear(link: Publisher, record: RetainedRecord, topics: list[str]) -> bool:
    infos = [link.publish(topic, b"", qos=1, retain=True) for topic in topics]
    await record.save()
    if not await link.wait_published(infos):
        return False  # lost to a disconnect: tried again after the next connect, as they are still recorded
    # Only once the broker has them does a topic leave the record.
    record.topics -= set(topics)
    record.changed()
    await record.save()
    log.info("mqtt: removed %d retained topics no longer published (e.g. %s)", len(topics), topics[0])
    return True


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
