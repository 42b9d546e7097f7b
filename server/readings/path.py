"""The reading path: every reading, however it arrived, is ordered, shown at once, then stored once.

    make_reading (validation) → ReadingPath.show (ordering rule, publish) → history (group commit) → the caller's
    acknowledgement (201 for a POST, PUBACK for MQTT; a wired sensor needs none)

The ordering rule lives here and nowhere else: a reading measured before the one shown (a restored one included:
the topic's `updated_at` is the shown reading's measured time, and it survives restarts in the last-known state)
goes to the history only; one with the same time is a duplicate, stored once (the history's primary key).
A sensor topic's `updated_at` is when the reading was measured, so an old reading is shown stale, never as current.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from server.core.hub import Hub
from server.readings.history import History
from server.readings.reading import Reading

log = logging.getLogger(__name__)


def sensor_topic(sensor_id: str) -> str:
    return f"sensor/{sensor_id}"


@dataclass
class SensorEntry:
    name: str
    max_age_s: float | None


class ReadingPath:
    """Owns the `sensor/{id}` topics' values. Loop thread only (like the hub)."""

    def __init__(self, hub: Hub, history: History) -> None:
        self.hub = hub
        self.history = history
        self.sensors: dict[str, SensorEntry] = {}
        self.older_kept = 0  # readings that went to the history only (measured before the one shown)
        self.duplicates = 0

    def add_sensor(self, sensor_id: str, name: str, max_age_s: float | None) -> None:
        """A sensor this server shows: its topic exists (waiting) from now on, stale `max_age_s` after a reading."""
        self.sensors[sensor_id] = SensorEntry(name or sensor_id, max_age_s)
        self.hub.declare(sensor_topic(sensor_id), max_age_s)

    def name_restored(self) -> None:
        """After the last-known state is loaded: a restored reading carries the name it was shown with, and the
        config's name is the one to show (a sensor renamed in config.yaml is renamed on the wall at the restart,
        not at its next reading, which for a sleepy device may be an hour away). Its time and staleness stay."""
        for sensor_id, entry in self.sensors.items():
            topic = sensor_topic(sensor_id)
            state = self.hub.get(topic)
            if state is None or not state.restored or not isinstance(state.data, dict):
                continue
            if state.data.get("name") != entry.name:
                self.hub.restore(topic, {**state.data, "name": entry.name}, state.updated_at)

    @property
    def retention_s(self) -> float:
        """How old a reading may be: the history keeps raw readings this long, an older one has nowhere to go."""
        return self.history.config.raw_days * 86400

    def knows(self, sensor_id: str) -> bool:
        return sensor_id in self.sensors

    def show(self, reading: Reading) -> bool:
        """Publish the reading unless one measured at or after it is shown. True when it was published."""
        topic = sensor_topic(reading.sensor_id)
        shown = self.hub.get(topic)
        if shown is not None and shown.updated_at is not None and shown.data is not None:
            if reading.measured_at_s < shown.updated_at:
                self.older_kept += 1
                return False
            if reading.measured_at_s == shown.updated_at:
                self.duplicates += 1
                return False
        entry = self.sensors.get(reading.sensor_id)
        name = entry.name if entry is not None else reading.sensor_id
        self.hub.publish(topic, reading.topic_data(name, self.hub.tz), updated_at=reading.measured_at_s)
        return True

    def record(self, reading: Reading) -> None:
        """Show, then store with the next batch (nobody waits for it: a wired sensor, a leader's share)."""
        self.show(reading)
        self.history.record(reading)

    async def submit(self, reading: Reading) -> None:
        """Show at once, then return once stored durably (the caller acknowledges after). Raises HistoryError."""
        self.show(reading)
        await self.history.store(reading)

    def fail(self, sensor_id: str, message: str, status: str = "error") -> None:
        """The sensor failed or sent something unusable: its last good reading stays, marked by the error."""
        self.hub.publish_error(sensor_topic(sensor_id), message, status)

    def available(self, sensor_id: str) -> None:
        """The device says it is back (MQTT availability): clear its offline state now, not at its next reading."""
        self.hub.recover(sensor_topic(sensor_id))
