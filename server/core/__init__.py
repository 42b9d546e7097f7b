"""The core: the hub (topics and fan-out), the WebSocket wire, the route table, the source runner, upkeep."""
