"""The core: the hub (topics, staleness, encode once), the source runner and its contract, the last-known state,
and the small helpers every layer above uses (atomic writes, JSON, times, commands, TLS, memory)."""
