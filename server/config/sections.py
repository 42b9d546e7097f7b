"""The config's sections: one frozen dataclass per mapping in config.yaml, each field with its default and, beside
it, its own rule (`ruled(...)`: a range, a pattern, a check of server/config/rules.py); then the rules no single
field can say (check_config). The engine that fills these from YAML is server/config/engine.py."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from sensors.errors import SensorSpecError
from sensors.registry import check_spec, type_keys
from server.config.rules import (
    HTTP_URL,
    PORT,
    POSITIVE,
    ConfigError,
    describe,
    host_names,
    identifier,
    mqtt_topic,
    ruled,
    time_of_day,
    time_zone,
)

# ---------------------------------------------------------------- sections
# Field names are config keys. Defaults are the documented defaults in config.yaml.


@dataclass(frozen=True)
class TlsConfig:
    certfile: str | None = None
    keyfile: str | None = None
    reload_check_s: float = 60.0  # how often the cert files are checked for renewal


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = ruled(8080, **PORT)
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ruled((), validate=host_names)  # more names the server answers to (DNS rebinding)
    tls: TlsConfig = field(default_factory=TlsConfig)
    executor_threads: int = 4
    max_body_bytes: int = 65536
    max_header_bytes: int = 16384
    idle_connection_timeout_s: float = 60.0
    ws_ping_interval_s: float = 10.0
    ws_max_pending_bytes: int = 1_000_000
    ws_max_drain_s: float = 10.0


@dataclass(frozen=True)
class WeatherConfig:
    api_key: str
    query: str = "Stockholm"
    interval_s: float = ruled(600.0, **POSITIVE)
    base_url: str = ruled("https://api.weatherapi.com/v1", **HTTP_URL)
    days: int = ruled(3, ge=1, le=14, why="WeatherAPI's range")
    max_age_s: float | None = None  # default: 3 × interval_s


@dataclass(frozen=True)
class DeparturesConfig:
    site_id: int
    interval_s: float = ruled(30.0, **POSITIVE)
    base_url: str = ruled("https://transport.integration.sl.se/v1", **HTTP_URL)
    transport: str | None = ruled(None, choices=("BUS", "TRAM", "METRO", "TRAIN", "FERRY", "SHIP", "TAXI"))
    line: int | None = None
    direction: int | None = ruled(None, choices=(1, 2))
    forecast_min: int = ruled(60, ge=5, le=1200, why="SL's range")
    walk_time_min: float = ruled(0.0, ge=0)  # departures you cannot reach in time are dropped
    max_departures: int = 12
    max_age_s: float | None = None


@dataclass(frozen=True)
class StravaConfig:
    client_id: str
    client_secret: str
    refresh_token: str | None = None  # null: the token `python -m server.sources.strava setup` wrote to data_dir
    interval_s: float = ruled(900.0, **POSITIVE)
    base_url: str = ruled("https://www.strava.com/api/v3", **HTTP_URL)
    token_url: str = ruled("https://www.strava.com/oauth/token", **HTTP_URL)
    max_activities: int = ruled(10, ge=1, le=200)
    max_age_s: float | None = None


def _feed_name(value: str, path: str) -> None:
    if not value.strip() or len(value) > 60:
        raise ConfigError(f"{path}: expected a name of 1-60 characters")


def _feed_url(value: str, path: str) -> None:
    placeholder = re.fullmatch(r"demo-[a-z0-9_]+", value)  # demo mode's stand-in for an unset secret
    if not placeholder and not re.fullmatch(r"(?i)(https?|webcals?)://[^\s/?#]+[^\s]*", value):
        # Not the value itself: a feed address is a secret, and this line goes to a terminal and a journal.
        raise ConfigError(f'{path}: expected an https:// or webcal:// address (written as "${{NAME}}")')


def _some_calendars(value: tuple[Any, ...], path: str) -> None:
    if not value:
        raise ConfigError(f"{path}: list at least one calendar ({{name, url}})")


@dataclass(frozen=True)
class CalendarFeedConfig:
    name: str = ruled(validate=_feed_name)  # shown on the wall; the topic's `calendar` and `calendars[].name`
    # The private ICS address: a secret, written as "${NAME}"; webcal:// is fetched as https://. Messages never
    # echo it.
    url: str = ruled(validate=_feed_url)
    color: str | None = ruled(None, pattern=r"#[0-9A-Fa-f]{3}|#[0-9A-Fa-f]{6}", what='a colour like "#3b82f6"')


@dataclass(frozen=True)
class CalendarConfig:
    calendars: tuple[CalendarFeedConfig, ...] = ruled(validate=_some_calendars)
    interval_s: float = ruled(900.0, **POSITIVE)
    days: int = ruled(7, ge=1, le=31)  # today and the next days-1 days
    timezone: str | None = ruled(None, validate=time_zone)  # default: the top-level timezone
    max_bytes: int = ruled(20_000_000, ge=10_000)  # private feeds carry their whole history: 19 MB exists
    timeout_s: float = ruled(60.0, **POSITIVE)  # the whole download of one feed
    max_age_s: float | None = None


@dataclass(frozen=True)
class SourcesConfig:
    weather: WeatherConfig | None = None
    departures: DeparturesConfig | None = None
    strava: StravaConfig | None = None
    calendar: CalendarConfig | None = None


@dataclass(frozen=True)
class SensorConfig:
    id: str = ruled(validate=identifier)
    type: str  # a name from sensors.registry; which of the keys below it takes (and their defaults) is said there
    name: str = ""
    interval_s: float = ruled(60.0, **POSITIVE)
    bus: int | None = None  # I2C (default 1)
    address: int | None = None  # I2C (default: the chip's first address)
    device: str | None = None  # 1-Wire id, e.g. 28-0316a2794aff
    iio_device: str | None = None  # e.g. iio:device0
    stuck_reads: int = 0  # same raw value this many times → "stuck" error (0: off)
    timeout_s: float = 10.0
    max_age_s: float | None = None

    def spec(self) -> dict[str, Any]:
        """The dict `sensors.open_sensor` takes."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class RemoteSensorConfig:
    id: str = ruled(validate=identifier)
    token: str
    name: str = ""
    max_age_s: float = 3600.0


@dataclass(frozen=True)
class HistoryConfig:
    raw_days: float = 7.0
    hourly_days: float = 730.0
    commit_interval_s: float = 2.0


PullMode = Literal["up", "down", "off"]


@dataclass(frozen=True)
class PinConfig:
    pin: int = ruled(ge=0, le=27, what="a BCM GPIO number")
    pull: PullMode = "down"
    bounce_ms: int = 200
    id: str = ""


def _at_most_two_buttons(value: tuple[Any, ...], path: str) -> None:
    if len(value) > 2:
        raise ConfigError(f"{path}: at most two buttons, got {len(value)}")


@dataclass(frozen=True)
class GpioConfig:
    backend: Literal["auto", "rpi", "emulated"] = "auto"
    pir: PinConfig | None = None
    buttons: tuple[PinConfig, ...] = ruled((), validate=_at_most_two_buttons)
    # A PIR module settles ~1 min after power-up: its edges are ignored until then.
    pir_warmup_s: float = ruled(60.0, ge=0)


DisplayBackendName = Literal["none", "wlopm", "wlr-randr", "cec", "backlight", "xset", "vcgencmd"]


@dataclass(frozen=True)
class DisplayConfig:
    backend: DisplayBackendName = "none"
    output: str | None = None  # e.g. HDMI-A-1 for wlopm/wlr-randr; backlight device name for backlight
    on_at: str | None = ruled(None, validate=time_of_day)  # "07:00" local time
    off_at: str | None = ruled(None, validate=time_of_day)  # "23:00"
    motion_timeout_min: float = ruled(0.0, ge=0)  # 0: motion does not switch the display
    token: str | None = None  # bearer token for POST /api/display
    brightness_pct: int | None = ruled(None, ge=1, le=100)  # backlight only: brightness when on (None: leave it)
    cec_device: str = "/dev/cec0"
    wayland_display: str | None = None  # default: the live wayland-* socket in XDG_RUNTIME_DIR
    command_timeout_s: float = ruled(10.0, **POSITIVE)  # a backend command taking longer is killed and reported
    readback_wait_s: float = ruled(30.0, **POSITIVE)  # a TV may report "in transition" this long after a switch
    # Read the state back this often; switched from outside → switch back.
    verify_interval_s: float = ruled(60.0, **POSITIVE)


# How often the wall page sends its heartbeat (HEARTBEAT_MS in kiosk/js/socket.js): wall.silence_s below it
# would call a healthy wall dark.
PAGE_HEARTBEAT_S = 30.0


def _a_command(value: tuple[str, ...], path: str) -> None:
    if not value:
        raise ConfigError(f"{path}: must name a command, e.g. [systemctl, reboot]")


@dataclass(frozen=True)
class WallConfig:
    """The wall watchdog (server/wall/watch.py): what to do when the kiosk page stops sending heartbeats."""

    enabled: bool = False  # act on silence (reload, restart browser, reboot); false: only report in /healthz
    # No heartbeat for this long (the page sends one every 30 s) = the wall is dark.
    silence_s: float = ruled(
        120.0, ge=PAGE_HEARTBEAT_S, why="the page sends a heartbeat every 30 s; less restarts a healthy wall"
    )
    # After start-up or screen-on, time for the browser to come up first.
    startup_grace_s: float = ruled(300.0, **POSITIVE)
    step_wait_s: float = ruled(120.0, **POSITIVE)  # after each step, wait this long for the page before the next step
    browser_restarts: int = ruled(2, ge=0)  # browser restarts before a reboot is considered
    restart_command: tuple[str, ...] = ruled(
        ("systemctl", "--user", "restart", "homeboard-kiosk.service"), validate=_a_command
    )
    reboot_command: tuple[str, ...] = ruled(("systemctl", "reboot"), validate=_a_command)
    reboot_min_interval_h: float = 6.0  # at most one reboot in this many hours
    reboot_min_uptime_min: float = 30.0  # never reboot within this long after boot (crash/reboot loops)
    command_timeout_s: float = ruled(60.0, **POSITIVE)
    check_interval_s: float = ruled(10.0, **POSITIVE)


PAGE_WIDGETS = ("clock", "weather", "departures", "sensors", "forecast", "strava", "calendar")  # kiosk/js/widgets/


def _widgets(value: tuple[str, ...], path: str) -> None:
    for i, name in enumerate(value):
        if name not in PAGE_WIDGETS:
            raise ConfigError(f"{path}[{i}]: unknown widget {describe(name)} (known: {', '.join(PAGE_WIDGETS)})")


@dataclass(frozen=True)
class PageConfig:
    title: str = "Homeboard"
    # BCP 47 (as far as a typo check needs): the page's words, number and date formats, the weather texts' language
    locale: str = ruled(
        "sv-SE", pattern=r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", what="a language tag like sv-SE or en-US"
    )
    units: Literal["metric", "imperial"] = "metric"  # imperial: °F, mph, miles, feet
    clock_24h: bool = True  # false: "2:52 PM"
    night_from: str | None = ruled("22:00", validate=time_of_day)  # dimmed theme from/until, local time
    night_until: str | None = ruled("06:30", validate=time_of_day)
    widgets: tuple[str, ...] = ruled(
        ("clock", "weather", "calendar", "departures", "sensors", "forecast", "strava"), validate=_widgets
    )
    # Wider column in landscape, a whole row in portrait.
    large: tuple[str, ...] = ruled(("departures", "strava"), validate=_widgets)
    reload_at: str | None = ruled("04:00", validate=time_of_day)  # daily reload to cap browser memory


MqttPreset = Literal["zigbee2mqtt", "tasmota", "esphome", "json", "plain"]


@dataclass(frozen=True)
class MqttTlsConfig:
    ca_certs: str | None = None  # CA bundle that signed the broker's certificate (null: the system CAs)
    certfile: str | None = None  # client certificate, when the broker asks for one
    keyfile: str | None = None
    insecure: bool = False  # true skips the host name check (never by default)


@dataclass(frozen=True)
class MqttSensorConfig:
    """A sensor whose readings arrive on MQTT topics (server/mqtt/payloads.py parses them)."""

    id: str = ruled(validate=identifier)
    topic: str = ruled(validate=mqtt_topic)
    preset: MqttPreset = "json"
    name: str = ""
    temperature_field: str | None = None  # JSON field (dotted path); null: the preset's default
    humidity_field: str | None = None
    pressure_field: str | None = None
    battery_field: str | None = None
    time_field: str | None = None  # when the device measured (ISO 8601 with offset, or epoch s/ms)
    # esphome / plain: the other values come on topics of their own
    humidity_topic: str | None = ruled(None, validate=mqtt_topic)
    pressure_topic: str | None = ruled(None, validate=mqtt_topic)
    battery_topic: str | None = ruled(None, validate=mqtt_topic)
    # null: the preset's (zigbee2mqtt .../availability, tasmota LWT, ...)
    availability_topic: str | None = ruled(None, validate=mqtt_topic)
    max_age_s: float = ruled(3600.0, **POSITIVE)


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = False
    discovery_prefix: str = ruled("homeassistant", validate=mqtt_topic)
    node_id: str | None = ruled(None, validate=identifier)  # default: homeboard_<mqtt.name>


MqttRole = Literal["standalone", "leader", "follower"]


def _broker_host(value: str, path: str) -> None:
    if not value:
        raise ConfigError(f"{path}: required (the broker's host name or address)")


def _client_id(value: str, path: str) -> None:
    if not 1 <= len(value) <= 128:
        raise ConfigError(f"{path}: expected 1-128 characters")


def _share_patterns(value: tuple[str, ...], path: str) -> None:
    for i, pattern in enumerate(value):
        if not re.fullmatch(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*(/\*)?", pattern):
            raise ConfigError(f"{path}[{i}]: expected a topic like weather or a prefix like sensor/*")


@dataclass(frozen=True)
class MqttConfig:
    host: str = ruled("localhost", validate=_broker_host)
    port: int = ruled(1883, **PORT)
    # This display's name: base topic homeboard/<name>, client id homeboard-<name>.
    name: str = ruled("wall", validate=identifier)
    base_topic: str | None = ruled(None, validate=mqtt_topic)  # default homeboard/<name>
    client_id: str | None = ruled(None, validate=_client_id)  # default homeboard-<name>
    username: str | None = None
    password: str | None = None  # as "${MQTT_PASSWORD}"
    tls: MqttTlsConfig | None = None
    protocol: Literal["mqttv5", "mqttv311"] = "mqttv5"
    keepalive_s: int = ruled(30, ge=5, le=65535)
    reconnect_min_s: float = ruled(1.0, **POSITIVE)
    reconnect_max_s: float = 60.0  # at least reconnect_min_s
    session_expiry_s: int = ruled(86400, ge=0)  # the broker keeps our subscriptions and queued QoS 1 messages this long
    role: MqttRole = "standalone"
    leader: str | None = None  # follower: the leader's base topic, e.g. homeboard/kitchen
    share_topics: tuple[str, ...] = ruled(
        ("weather", "departures", "strava", "calendar", "sensor/*"), validate=_share_patterns
    )
    # Follower: null = each topic's max age as the leader sends it.
    follow_max_age_s: float | None = ruled(None, **POSITIVE)
    sensors: tuple[MqttSensorConfig, ...] = ()
    home_assistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)

    @property
    def base(self) -> str:
        return self.base_topic or f"homeboard/{self.name}"

    @property
    def client(self) -> str:
        return self.client_id or f"homeboard-{self.name}"


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    data_dir: str = "./var"
    secrets_file: str | None = None
    timezone: str = ruled("Europe/Stockholm", validate=time_zone)
    demo: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    sensors: tuple[SensorConfig, ...] = ()
    remote_sensors: tuple[RemoteSensorConfig, ...] = ()
    history: HistoryConfig = field(default_factory=HistoryConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    wall: WallConfig = field(default_factory=WallConfig)
    page: PageConfig = field(default_factory=PageConfig)
    mqtt: MqttConfig | None = None


# ---------------------------------------------------------------- rules across fields

_SPLIT_TOPIC_PRESETS = ("esphome", "plain")  # plain values, one per topic


def check_config(cfg: Config, files_here: bool = True) -> None:
    """Every cross-field rule, over the built Config. files_here: see server.config.load.parse_config."""
    tls = cfg.server.tls
    if (tls.certfile is None) != (tls.keyfile is None):
        missing = "server.tls.keyfile" if tls.keyfile is None else "server.tls.certfile"
        raise ConfigError(f"{missing}: required when the other TLS file is set")
    for key in ("certfile", "keyfile"):
        _check_readable(getattr(tls, key), f"server.tls.{key}", files_here)
    _check_calendar(cfg.sources.calendar)
    seen: set[str] = set()
    for section in ("sensors", "remote_sensors"):
        check_unique_ids(getattr(cfg, section), section, seen)
    check_sensor_types(cfg.sensors)
    _check_gpio(cfg.gpio)
    _check_display(cfg.display)
    if cfg.display.motion_timeout_min > 0 and cfg.gpio.pir is None:
        raise ConfigError("display.motion_timeout_min: needs a PIR to see motion (set gpio.pir), or set it to 0")
    if cfg.mqtt is not None:
        _check_mqtt(cfg.mqtt, seen, files_here)


def check_unique_ids(items: tuple[SensorConfig | RemoteSensorConfig, ...], section: str, seen: set[str]) -> None:
    """Sensor ids are one namespace (`seen`) across the sections that share it."""
    for i, s in enumerate(items):
        if s.id in seen:
            raise ConfigError(f"{section}[{i}].id: duplicate sensor id {describe(s.id)}")
        seen.add(s.id)


def check_sensor_types(sensors: tuple[SensorConfig, ...]) -> None:
    """Each local sensor: its type is one the sensor registry knows, with the keys that type takes."""
    for i, s in enumerate(sensors):
        try:
            check_spec(s.spec(), type_keys())
        except SensorSpecError as err:
            raise ConfigError(f"sensors[{i}].{err}") from None


def _check_readable(path: str | None, key: str, files_here: bool) -> None:
    if path is not None and files_here and not os.access(path, os.R_OK):
        raise ConfigError(f"{key}: cannot read {path}")


def _check_calendar(cal: CalendarConfig | None) -> None:
    """sources.calendar: the feeds' names are unique (their own rules are beside their fields)."""
    if cal is None:
        return
    names: set[str] = set()
    for i, feed in enumerate(cal.calendars):
        if feed.name in names:
            raise ConfigError(f"sources.calendar.calendars[{i}].name: duplicate calendar name {describe(feed.name)}")
        names.add(feed.name)


def _check_mqtt(mqtt: MqttConfig, sensor_ids: set[str], files_here: bool) -> None:
    """The mqtt section: a password needs a user, a follower names its leader, MQTT sensor ids are unique, a
    sensor's keys fit its preset."""
    if mqtt.password is not None and mqtt.username is None:
        raise ConfigError("mqtt.username: required when mqtt.password is set")
    if mqtt.tls is not None:
        if mqtt.tls.keyfile is not None and mqtt.tls.certfile is None:
            raise ConfigError("mqtt.tls.certfile: required when mqtt.tls.keyfile is set")
        for key in ("ca_certs", "certfile", "keyfile"):
            _check_readable(getattr(mqtt.tls, key), f"mqtt.tls.{key}", files_here)
    if mqtt.reconnect_max_s < mqtt.reconnect_min_s:
        raise ConfigError("mqtt.reconnect_max_s: must be at least mqtt.reconnect_min_s")
    if mqtt.role == "follower":
        if mqtt.leader is None:
            raise ConfigError("mqtt.leader: required for role follower (the leader's base topic, e.g. homeboard/hall)")
        mqtt_topic(mqtt.leader, "mqtt.leader")
        if mqtt.leader == mqtt.base:
            raise ConfigError(f"mqtt.leader: {describe(mqtt.leader)} is this display's own base topic")
    elif mqtt.leader is not None:
        raise ConfigError(f"mqtt.leader: only for role follower (role is {mqtt.role})")
    for i, s in enumerate(mqtt.sensors):
        path = f"mqtt.sensors[{i}]"
        if s.id in sensor_ids:
            raise ConfigError(f"{path}.id: duplicate sensor id {describe(s.id)}")
        sensor_ids.add(s.id)
        fields = ("temperature_field", "humidity_field", "pressure_field", "battery_field", "time_field")
        for key in fields:
            value = getattr(s, key)
            if value is None:
                continue
            if s.preset in _SPLIT_TOPIC_PRESETS:
                raise ConfigError(f"{path}.{key}: preset {s.preset} carries plain values, not JSON fields")
            if not value or any(not part for part in value.split(".")):
                raise ConfigError(f"{path}.{key}: expected a field name or dotted path like AM2301.Temperature")
        for key in ("humidity_topic", "pressure_topic", "battery_topic"):
            if getattr(s, key) is not None and s.preset not in _SPLIT_TOPIC_PRESETS:
                raise ConfigError(f"{path}.{key}: only for presets esphome and plain (JSON carries all values)")


def _check_gpio(gpio: GpioConfig) -> None:
    used: dict[int, str] = {}
    pins = [("gpio.pir", gpio.pir)] + [(f"gpio.buttons[{i}]", b) for i, b in enumerate(gpio.buttons)]
    for path, pin in pins:
        if pin is None:
            continue
        if pin.pin in used:
            raise ConfigError(f"{path}.pin: BCM {pin.pin} is already used by {used[pin.pin]}")
        used[pin.pin] = path


def _check_display(display: DisplayConfig) -> None:
    if (display.on_at is None) != (display.off_at is None):
        missing = "display.off_at" if display.off_at is None else "display.on_at"
        raise ConfigError(f"{missing}: set both on_at and off_at (the daily on/off times), or neither")
    if display.on_at is not None and display.on_at == display.off_at:
        raise ConfigError("display.off_at: must differ from display.on_at")
