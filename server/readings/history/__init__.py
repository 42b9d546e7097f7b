"""The sensor history in SQLite: server/readings/history/schema.py (the tables, their versions, opening safely),
writer.py (History: one writer thread, group commit, retention), query.py (the reader and the downsampled query).
GET /api/sensors/{id}/history is server/web/history.py."""

from server.readings.history.query import as_iso
from server.readings.history.schema import DB_NAME, SCHEMA_VERSION
from server.readings.history.writer import History, HistoryError

__all__ = ["DB_NAME", "SCHEMA_VERSION", "History", "HistoryError", "as_iso"]
