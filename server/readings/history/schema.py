"""The history's database file: its tables, their versions and the one migration, opening it safely.

Opening checks what it finds: a database newer than this program, or one that fails its quick check after an
unclean stop, is corrupt for our purposes: it is moved aside as `*.corrupt.<ts>` (never deleted: a person may
want it) and a fresh one started.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3

log = logging.getLogger(__name__)

DB_NAME = "history.sqlite3"
SCHEMA_VERSION = 2  # 2: temperature may be absent (a humidity-only device)
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    sensor_id TEXT NOT NULL,
    measured_at_ms INTEGER NOT NULL,          -- epoch milliseconds, UTC
    temperature_c REAL,
    humidity_pct REAL,
    pressure_hpa REAL,
    battery_pct REAL,
    source TEXT,
    PRIMARY KEY (sensor_id, measured_at_ms)   -- a repeated reading (device retry, hub echo) is stored once
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hourly (
    sensor_id TEXT NOT NULL,
    hour_ms INTEGER NOT NULL,                 -- start of the hour, epoch milliseconds
    n INTEGER NOT NULL,
    t_n INTEGER NOT NULL DEFAULT 0, t_min REAL, t_max REAL, t_sum REAL NOT NULL DEFAULT 0,
    h_n INTEGER NOT NULL DEFAULT 0, h_min REAL, h_max REAL, h_sum REAL NOT NULL DEFAULT 0,
    p_n INTEGER NOT NULL DEFAULT 0, p_min REAL, p_max REAL, p_sum REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (sensor_id, hour_ms)
) WITHOUT ROWID;
"""

# Version 1 → 2: temperature became optional. SQLite cannot drop a NOT NULL, so both tables are copied once:
# renamed, created anew from SCHEMA, copied over, dropped (in one transaction).
RENAME_V1 = """
ALTER TABLE readings RENAME TO readings_v1;
ALTER TABLE hourly RENAME TO hourly_v1;
"""
COPY_V1 = """
INSERT INTO readings SELECT * FROM readings_v1;
INSERT INTO hourly (sensor_id, hour_ms, n, t_n, t_min, t_max, t_sum, h_n, h_min, h_max, h_sum, p_n, p_min, p_max, p_sum)
    SELECT sensor_id, hour_ms, n, n, t_min, t_max, t_sum, h_n, h_min, h_max, h_sum, p_n, p_min, p_max, p_sum
    FROM hourly_v1;
DROP TABLE readings_v1;
DROP TABLE hourly_v1;
"""

INSERT_READING = """
INSERT OR IGNORE INTO readings
    (sensor_id, measured_at_ms, temperature_c, humidity_pct, pressure_hpa, battery_pct, source)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""

# min(coalesce(a, b), coalesce(b, a)) is NULL only when both are: SQLite's min() is NULL if any argument is.
UPSERT_HOURLY = """
INSERT INTO hourly
    (sensor_id, hour_ms, n, t_n, t_min, t_max, t_sum, h_n, h_min, h_max, h_sum, p_n, p_min, p_max, p_sum)
VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (sensor_id, hour_ms) DO UPDATE SET
    n = n + 1,
    t_n = t_n + excluded.t_n, t_sum = t_sum + excluded.t_sum,
    t_min = min(coalesce(t_min, excluded.t_min), coalesce(excluded.t_min, t_min)),
    t_max = max(coalesce(t_max, excluded.t_max), coalesce(excluded.t_max, t_max)),
    h_n = h_n + excluded.h_n, h_sum = h_sum + excluded.h_sum,
    h_min = min(coalesce(h_min, excluded.h_min), coalesce(excluded.h_min, h_min)),
    h_max = max(coalesce(h_max, excluded.h_max), coalesce(excluded.h_max, h_max)),
    p_n = p_n + excluded.p_n, p_sum = p_sum + excluded.p_sum,
    p_min = min(coalesce(p_min, excluded.p_min), coalesce(excluded.p_min, p_min)),
    p_max = max(coalesce(p_max, excluded.p_max), coalesce(excluded.p_max, p_max))
"""


def is_corruption(err: sqlite3.Error) -> bool:
    text = str(err).lower()
    return isinstance(err, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "corrupt" in text
    )


def connect(path: str) -> sqlite3.Connection:
    """The writer's connection: WAL, and FULL so that every (batched) commit is fsynced and an acknowledged
    reading survives a power cut too."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def open_database(path: str) -> tuple[sqlite3.Connection, str | None]:
    """The database at `path` at SCHEMA_VERSION: created, updated from version 1, or (unusable) moved aside and
    started afresh. Returns (connection, the name it was moved aside as, or None). Raises sqlite3.Error or
    OSError for what is not corruption (disk full, read-only, permissions)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    wal = path + "-wal"
    unclean = os.path.exists(wal) and os.path.getsize(wal) > 0  # a clean close leaves an empty WAL
    conn: sqlite3.Connection | None = None
    try:
        conn = connect(path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this program's (corrupt)")
        if unclean:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise sqlite3.DatabaseError(f"quick_check after an unclean stop: {result} (corrupt)")
        if version == 1:
            log.info("history: updating the database to schema version %d", SCHEMA_VERSION)
            conn.execute("BEGIN IMMEDIATE")
            for script in (RENAME_V1, SCHEMA, COPY_V1):
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        elif version < SCHEMA_VERSION:
            conn.executescript(SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.DatabaseError as err:
        if conn is not None:
            conn.close()
        if not is_corruption(err):
            raise
        log.error("history: %s is unusable (%s); moving it aside and starting a fresh one", path, err)
        moved = move_aside(path)
        return fresh_database(path), moved
    return conn, None


def fresh_database(path: str) -> sqlite3.Connection:
    conn = connect(path)
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return conn


def move_aside(path: str) -> str:
    """The database and its -wal/-shm renamed to `<path>.corrupt.<UTC time>`; returns the new file's name."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = f"{path}.corrupt.{stamp}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    return os.path.basename(target)
