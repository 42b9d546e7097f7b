"""config.yaml → one frozen, typed Config object; every error names its key path.

engine.py    the schema engine: YAML → plain data → the dataclasses, ${NAME} secrets, each field's rule
rules.py     ConfigError, a field's Rule (`ruled(...)`) and the single-field checks several sections share
sections.py  the sections: one dataclass per mapping, defaults and each field's rule beside it
checks.py    the rules across fields and sections
load.py      load_config / parse_config / load_sensors
"""

from server.config.engine import read_document, read_secrets_file, secret_names
from server.config.load import load_config, load_sensors, parse_config, replace
from server.config.rules import ConfigError
from server.config.sections import (
    PAGE_HEARTBEAT_S,
    PAGE_WIDGETS,
    CalendarConfig,
    CalendarFeedConfig,
    Config,
    DeparturesConfig,
    DisplayBackendName,
    DisplayConfig,
    GpioConfig,
    HistoryConfig,
    HomeAssistantConfig,
    MqttConfig,
    MqttPreset,
    MqttRole,
    MqttSensorConfig,
    MqttTlsConfig,
    PageConfig,
    PinConfig,
    PullMode,
    RemoteSensorConfig,
    SensorConfig,
    ServerConfig,
    SourcesConfig,
    StravaConfig,
    TlsConfig,
    WallConfig,
    WeatherConfig,
)

__all__ = [
    "PAGE_HEARTBEAT_S",
    "PAGE_WIDGETS",
    "CalendarConfig",
    "CalendarFeedConfig",
    "Config",
    "ConfigError",
    "DeparturesConfig",
    "DisplayBackendName",
    "DisplayConfig",
    "GpioConfig",
    "HistoryConfig",
    "HomeAssistantConfig",
    "MqttConfig",
    "MqttPreset",
    "MqttRole",
    "MqttSensorConfig",
    "MqttTlsConfig",
    "PageConfig",
    "PinConfig",
    "PullMode",
    "RemoteSensorConfig",
    "SensorConfig",
    "ServerConfig",
    "SourcesConfig",
    "StravaConfig",
    "TlsConfig",
    "WallConfig",
    "WeatherConfig",
    "load_config",
    "load_sensors",
    "parse_config",
    "read_document",
    "read_secrets_file",
    "replace",
    "secret_names",
]
