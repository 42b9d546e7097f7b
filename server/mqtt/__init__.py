"""Feature module: Homeboard on an MQTT broker — sensors from MQTT, Home Assistant discovery, several displays.

Nothing happens without an `mqtt` section in config.yaml (and paho-mqtt is not even imported). With one: one
connection (link.py) that reconnects on its own and never holds up the dashboard; MQTT sensors (sensors.py); Home
Assistant discovery (homeassistant.py) when mqtt.home_assistant.enabled; the leader/follower roles (share.py);
assembled in feature.py. /healthz reports it under "mqtt".
"""

from __future__ import annotations

from typing import Any

from server.services import Services


def install(services: Services) -> list[Any]:
    """Off without an `mqtt` section. Otherwise start the connection at start-up; no HTTP routes of its own."""
    if services.config.mqtt is None:
        return []
    from server.mqtt.feature import MqttFeature

    feature = MqttFeature(services)
    services.extras["mqtt"] = feature
    services.on_start.append(feature.start)
    # First to stop: no message is taken (and acknowledged) after the history has closed.
    services.on_stop.insert(0, feature.stop)
    services.health_extra["mqtt"] = feature.health
    return []
