"""Readings: the one reading type, its validation and ordering, the history, the LAN ingest."""
