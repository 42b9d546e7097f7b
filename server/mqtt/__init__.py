"""Homeboard on an MQTT broker — sensors from MQTT, Home Assistant discovery, several displays.

Nothing happens without an `mqtt` section in config.yaml (and paho-mqtt is not even imported). With one: one
connection (link.py) that reconnects on its own and never holds up the dashboard; MQTT sensors (sensors.py); Home
Assistant discovery (homeassistant.py) when mqtt.home_assistant.enabled; the leader/follower roles (share.py);
assembled in feature.py, which the server's assembly (server.homeboard) builds. /healthz reports it under "mqtt".
"""
