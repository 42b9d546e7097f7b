"""Last-known state on disk, so that a restart shows the last values at once (marked stale)."""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

from server.core.atomic import atomic_write_bytes, sweep_temp_files
from server.core.hub import Hub
from server.core.jsonutil import dumpb

log = logging.getLogger(__name__)

FILENAME = "last_state.json"
FORMAT_VERSION = 1


def _finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return True


class LastStateStore:
    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, FILENAME)
        self.data_dir = data_dir
        self.last_error: str | None = None
        self.last_saved_blob: bytes | None = None

    def load_into(self, hub: Hub) -> int:
        """Restore what was saved into the topics the config declares (call after everything is built); a value
        of a sensor or source the config no longer has is dropped (its history stays). A missing or damaged
        file is logged, never fatal. Returns topics restored."""
        sweep_temp_files(self.data_dir)
        try:
            with open(self.path, "rb") as f:
                doc = json.loads(f.read(), parse_constant=_reject_constant)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as err:
            log.warning("ignoring unreadable last-known state %s: %s", self.path, err)
            return 0
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION or not isinstance(doc.get("topics"), dict):
            log.warning("ignoring last-known state %s: unknown format", self.path)
            return 0
        n = 0
        for topic, entry in doc["topics"].items():
            if not isinstance(entry, dict):
                continue
            data, updated_at = entry.get("data"), entry.get("updated_at")
            if not isinstance(data, dict) or not isinstance(updated_at, int | float) or not _finite(data):
                continue
            if hub.restore(topic, data, float(updated_at)):
                n += 1
            else:
                log.info("dropped the last-known value of %s: the config no longer has it", topic)
        return n

    def snapshot_blob(self, hub: Hub) -> bytes:
        return dumpb({"format": FORMAT_VERSION, "topics": hub.export()})

    def save_blob(self, blob: bytes) -> bool:
        """Blocking (runs in the executor): temp file, fsync, rename, fsync dir. Skips unchanged content."""
        if blob == self.last_saved_blob:
            return False
        try:
            atomic_write_bytes(self.path, blob, mode=0o600)
        except OSError as err:
            msg = f"cannot save last-known state: {err.strerror or err}"
            if msg != self.last_error:
                log.error("%s", msg)
            self.last_error = msg
            return False
        self.last_saved_blob = blob
        self.last_error = None
        return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")
