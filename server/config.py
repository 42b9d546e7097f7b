"""config.yaml → one frozen, typed Config object; every error names its key path."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sensors.errors import SensorSpecError
from sensors.registry import check_spec, type_keys
from server.core.strictyaml import DuplicateKeyError, safe_load_unique


class ConfigError(Exception):
    """The config is wrong. str(err) is one line starting with the key path."""


# ---------------------------------------------------------------- rules beside the fields


@dataclass(frozen=True)
class Rule:
    """A field's own constraint, checked by the builder wherever the field appears (not for defaults)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] = ()
    pattern: str = ""  # a string must match it whole
    what: str = ""  # "a BCM GPIO number", "an http(s) URL": what is expected
    why: str = ""  # "WeatherAPI's range": said after it

    def check(self, value: Any, path: str) -> None:
        if value is None:
            return
        if self.choices and value not in self.choices:
            words = (
                " or ".join(map(str, self.choices))
                if len(self.choices) == 2
                else "one of " + ", ".join(map(str, self.choices))
            )
            raise ConfigError(f"{path}: expected {words}, got {_describe(value)}")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise ConfigError(f"{path}: expected {self.what}, got {_describe(value)}")
        why = f" ({self.why})" if self.why else ""
        if self.ge is not None and self.le is not None:
            if not self.ge <= value <= self.le:
                what = f"{self.what} " if self.what else ""
                raise ConfigError(f"{path}: expected {what}{self.ge:g}-{self.le:g}{why}, got {value:g}")
        elif self.gt is not None and not value > self.gt:
            raise ConfigError(f"{path}: must be greater than {self.gt:g}{why}, got {value:g}")
        elif self.ge is not None and not value >= self.ge:
            raise ConfigError(f"{path}: must be {self.ge:g} or more{why}, got {value:g}")


def ruled(default: Any = dataclasses.MISSING, **rule: Any) -> Any:
    """A field with its rule beside it: `port: int = ruled(8080, ge=1, le=65535)`."""
    return field(default=default, metadata={"rule": Rule(**rule)})


POSITIVE = {"gt": 0}
PORT = {"ge": 1, "le": 65535}
HTTP_URL = {"pattern": r"https?://[^\s/?#]+[^\s?#]*", "what": "an http(s) URL"}


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
    allowed_hosts: tuple[str, ...] = ()  # more names the server answers to (DNS rebinding check)
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


@dataclass(frozen=True)
class CalendarFeedConfig:
    name: str  # shown on the wall; the topic's `calendar` and `calendars[].name`
    url: str  # the private ICS address: a secret, written as "${NAME}"; webcal:// is fetched as https://
    color: str | None = None  # "#rgb" or "#rrggbb"


@dataclass(frozen=True)
class CalendarConfig:
    calendars: tuple[CalendarFeedConfig, ...]
    interval_s: float = ruled(900.0, **POSITIVE)
    days: int = ruled(7, ge=1, le=31)  # today and the next days-1 days
    timezone: str | None = None  # default: the top-level timezone
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
    id: str
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
    id: str
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


@dataclass(frozen=True)
class GpioConfig:
    backend: Literal["auto", "rpi", "emulated"] = "auto"
    pir: PinConfig | None = None
    buttons: tuple[PinConfig, ...] = ()
    # A PIR module settles ~1 min after power-up: its edges are ignored until then.
    pir_warmup_s: float = ruled(60.0, ge=0)


DisplayBackendName = Literal["none", "wlopm", "wlr-randr", "cec", "backlight", "xset", "vcgencmd"]


@dataclass(frozen=True)
class DisplayConfig:
    backend: DisplayBackendName = "none"
    output: str | None = None  # e.g. HDMI-A-1 for wlopm/wlr-randr; backlight device name for backlight
    on_at: str | None = None  # "07:00" local time
    off_at: str | None = None  # "23:00"
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
    restart_command: tuple[str, ...] = ("systemctl", "--user", "restart", "homeboard-kiosk.service")
    reboot_command: tuple[str, ...] = ("systemctl", "reboot")
    reboot_min_interval_h: float = 6.0  # at most one reboot in this many hours
    reboot_min_uptime_min: float = 30.0  # never reboot within this long after boot (crash/reboot loops)
    command_timeout_s: float = ruled(60.0, **POSITIVE)
    check_interval_s: float = ruled(10.0, **POSITIVE)


PAGE_WIDGETS = ("clock", "weather", "departures", "sensors", "forecast", "strava", "calendar")  # kiosk/js/widgets/


@dataclass(frozen=True)
class PageConfig:
    title: str = "Homeboard"
    locale: str = "sv-SE"  # BCP 47: the page's words, number and date formats, and the weather texts' language
    units: Literal["metric", "imperial"] = "metric"  # imperial: °F, mph, miles, feet
    clock_24h: bool = True  # false: "2:52 PM"
    night_from: str | None = "22:00"  # dimmed theme from/until, local time
    night_until: str | None = "06:30"
    widgets: tuple[str, ...] = ("clock", "weather", "calendar", "departures", "sensors", "forecast", "strava")
    large: tuple[str, ...] = ("departures", "strava")  # wider column in landscape, a whole row in portrait
    reload_at: str | None = "04:00"  # daily reload to cap browser memory


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

    id: str
    topic: str
    preset: MqttPreset = "json"
    name: str = ""
    temperature_field: str | None = None  # JSON field (dotted path); null: the preset's default
    humidity_field: str | None = None
    pressure_field: str | None = None
    battery_field: str | None = None
    time_field: str | None = None  # when the device measured (ISO 8601 with offset, or epoch s/ms)
    humidity_topic: str | None = None  # esphome / plain: the other values come on topics of their own
    pressure_topic: str | None = None
    battery_topic: str | None = None
    availability_topic: str | None = None  # null: the preset's (zigbee2mqtt .../availability, tasmota LWT, ...)
    max_age_s: float = ruled(3600.0, **POSITIVE)


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    node_id: str | None = None  # default: homeboard_<mqtt.name>


MqttRole = Literal["standalone", "leader", "follower"]


@dataclass(frozen=True)
class MqttConfig:
    host: str = "localhost"
    port: int = ruled(1883, **PORT)
    name: str = "wall"  # this display's name: base topic homeboard/<name>, client id homeboard-<name>
    base_topic: str | None = None  # default homeboard/<name>
    client_id: str | None = None  # default homeboard-<name>
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
    share_topics: tuple[str, ...] = ("weather", "departures", "strava", "calendar", "sensor/*")
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
    timezone: str = "Europe/Stockholm"
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


# ---------------------------------------------------------------- loading

_LOCALE_RE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")  # BCP 47, as far as a typo check needs
_SECRET_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A whole value written `$NAME`, the shell's spelling: meant as a reference, but only ${NAME} is one. A `$`
# inside a longer value (a token like "ab$cd", a bcrypt-style "$2b$...") is left alone.
_BARE_REF_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def secret_names(data: Any) -> set[str]:
    """The ${NAME}s a parsed config uses in its values: what must have a value (comments do not count)."""
    if isinstance(data, str):
        return set(_SECRET_RE.findall(data))
    if isinstance(data, dict):
        return set().union(*(secret_names(v) for v in data.values()))
    if isinstance(data, list):
        return set().union(*(secret_names(v) for v in data))
    return set()


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 40 else f'"{value[:37]}..."'
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _type_name(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str, secrets: _Secrets) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], path, secrets)
        raise ConfigError(f"{path}: unsupported type")  # pragma: no cover - schema bug
    if value is None:
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got nothing")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")
        return value
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        return tuple(_convert(v, item_tp, f"{path}[{i}]", secrets) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, secrets)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value}")
        return float(value)
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{path}: expected a string, got {_describe(value)}")
        return secrets.expand(str(value), path)
    raise ConfigError(f"{path}: unsupported type {tp}")  # pragma: no cover - schema bug


def _build(cls: type, data: Any, path: str, secrets: _Secrets) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '(top level)'}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise ConfigError(f"{key_path}: unknown key (known: {', '.join(fields)})")
        kwargs[key] = _convert(value, hints[key], key_path, secrets)
        rule = fields[key].metadata.get("rule")
        if rule is not None:
            rule.check(kwargs[key], key_path)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            key_path = f"{path}.{name}" if path else name
            raise ConfigError(f"{key_path}: required key is missing")
    return cls(**kwargs)


class _Secrets:
    """Resolves ${NAME}: the environment first, then the secrets file."""

    def __init__(self, env: dict[str, str], file_values: dict[str, str], lenient: bool) -> None:
        self.env = env
        self.file_values = file_values
        # demo mode, or a config checked for another machine: a missing secret becomes a placeholder
        self.lenient = lenient

    def expand(self, text: str, path: str) -> str:
        if m := _BARE_REF_RE.fullmatch(text.strip()):
            name = m.group(1)
            raise ConfigError(f"{path}: a bare ${name} is not read from anywhere: write ${{{name}}}")
        if "${" in _SECRET_RE.sub("", text):
            raise ConfigError(
                f"{path}: expected ${{NAME}} with NAME made of letters, digits and _ (got {_describe(text)})"
            )

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            # An empty value counts as unset: `export KEY=` by mistake must not become an empty API key.
            if self.env.get(name):
                return self.env[name]
            if self.file_values.get(name):
                return self.file_values[name]
            if self.lenient:
                return f"demo-{name.lower()}"
            raise ConfigError(f"{path}: secret ${{{name}}} is not set (environment or secrets_file)")

        return _SECRET_RE.sub(repl, text)


def read_secrets_file(path: str) -> dict[str, str]:
    """KEY=value lines; '#' comments. Refused when group- or world-readable (secrets must be 0600)."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"secrets_file: cannot read {path}: {err.strerror}") from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"secrets_file: {path} is readable by others (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )
    values: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"secrets_file: {path} line {n}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def parse_config(
    data: Any, *, env: dict[str, str] | None = None, demo: bool = False, files_here: bool = True
) -> Config:
    """Validate an already-parsed YAML document into a Config.

    files_here=False: the config is for another machine (provisioning checks a Pi's config on a laptop). The files
    it names (secrets_file, TLS certificates and keys) are on that machine: their paths are taken as written and
    not read, and a ${NAME} not in the environment is taken to be in the secrets_file, when there is one.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"(top level): expected a mapping, got {_describe(data)}")
    env = dict(os.environ) if env is None else env
    demo = demo or data.get("demo") is True
    file_values: dict[str, str] = {}
    secrets_file = data.get("secrets_file")
    if secrets_file is not None:
        if not isinstance(secrets_file, str):
            raise ConfigError(f"secrets_file: expected a string, got {_describe(secrets_file)}")
        if files_here:
            file_values = read_secrets_file(secrets_file)
    lenient = demo or (secrets_file is not None and not files_here)
    cfg = _build(Config, data, "", _Secrets(env, file_values, lenient=lenient))
    _check(cfg, files_here)
    return cfg


def _check_readable(path: str | None, key: str, files_here: bool) -> None:
    if path is not None and files_here and not os.access(path, os.R_OK):
        raise ConfigError(f"{key}: cannot read {path}")


def _check(cfg: Config, files_here: bool = True) -> None:
    """Cross-field rules the types cannot express."""
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(cfg.timezone)
    except Exception as err:
        raise ConfigError(f'timezone: unknown time zone "{cfg.timezone}"') from err
    _check_allowed_hosts(cfg.server.allowed_hosts)
    tls = cfg.server.tls
    if (tls.certfile is None) != (tls.keyfile is None):
        missing = "server.tls.keyfile" if tls.keyfile is None else "server.tls.certfile"
        raise ConfigError(f"{missing}: required when the other TLS file is set")
    for key in ("certfile", "keyfile"):
        _check_readable(getattr(tls, key), f"server.tls.{key}", files_here)
    _check_calendar(cfg.sources.calendar)
    seen: set[str] = set()
    for section in ("sensors", "remote_sensors"):
        _check_ids(getattr(cfg, section), section, seen)
    _check_sensors(cfg.sensors)
    _check_gpio(cfg.gpio)
    for key in ("on_at", "off_at"):
        _check_hhmm(getattr(cfg.display, key), f"display.{key}")
    _check_display(cfg.display, cfg.wall)
    if cfg.display.motion_timeout_min > 0 and cfg.gpio.pir is None:
        raise ConfigError("display.motion_timeout_min: needs a PIR to see motion (set gpio.pir), or set it to 0")
    if not _LOCALE_RE.fullmatch(cfg.page.locale):
        raise ConfigError(f"page.locale: expected a language tag like sv-SE or en-US, got {_describe(cfg.page.locale)}")
    for key in ("night_from", "night_until", "reload_at"):
        _check_hhmm(getattr(cfg.page, key), f"page.{key}")
    for key in ("widgets", "large"):
        for i, name in enumerate(getattr(cfg.page, key)):
            if name not in PAGE_WIDGETS:
                known = ", ".join(PAGE_WIDGETS)
                raise ConfigError(f"page.{key}[{i}]: unknown widget {_describe(name)} (known: {known})")
    if cfg.mqtt is not None:
        _check_mqtt(cfg.mqtt, seen, files_here)


def _check_ids(items: tuple[SensorConfig | RemoteSensorConfig, ...], section: str, seen: set[str]) -> None:
    """Sensor ids: a safe charset, and one namespace (`seen`) across the sections that share it."""
    for i, s in enumerate(items):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", s.id):
            raise ConfigError(f"{section}[{i}].id: use letters, digits, _ or - (got {_describe(s.id)})")
        if s.id in seen:
            raise ConfigError(f"{section}[{i}].id: duplicate sensor id {_describe(s.id)}")
        seen.add(s.id)


def _check_sensors(sensors: tuple[SensorConfig, ...]) -> None:
    """Each local sensor: its type is one the sensor registry knows, with the keys that type takes."""
    for i, s in enumerate(sensors):
        try:
            check_spec(s.spec(), type_keys())
        except SensorSpecError as err:
            raise ConfigError(f"sensors[{i}].{err}") from None


_HOST_NAME_RE = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?")


def _check_allowed_hosts(hosts: tuple[str, ...]) -> None:
    """server.allowed_hosts: bare names or addresses, as a browser writes them in the Host header minus the port."""
    for i, host in enumerate(hosts):
        text = host.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        try:
            ipaddress.ip_address(text)
            continue
        except ValueError:
            pass
        if not _HOST_NAME_RE.fullmatch(text) or text.replace(".", "").isdigit():
            raise ConfigError(
                f"server.allowed_hosts[{i}]: expected a host name or address like homeboard.lan or 192.168.1.20 "
                f"(no scheme, port, path or wildcard), got {_describe(host)}"
            )


_COLOR_RE = re.compile(r"#[0-9A-Fa-f]{3}|#[0-9A-Fa-f]{6}")


def _check_calendar(cal: CalendarConfig | None) -> None:
    """sources.calendar: named feeds with http(s)/webcal addresses. Messages never echo an address (a secret)."""
    if cal is None:
        return
    if not cal.calendars:
        raise ConfigError("sources.calendar.calendars: list at least one calendar ({name, url})")
    if cal.timezone is not None:
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(cal.timezone)
        except Exception as err:
            raise ConfigError(f'sources.calendar.timezone: unknown time zone "{cal.timezone}"') from err
    names: set[str] = set()
    for i, feed in enumerate(cal.calendars):
        path = f"sources.calendar.calendars[{i}]"
        if not feed.name.strip() or len(feed.name) > 60:
            raise ConfigError(f"{path}.name: expected a name of 1-60 characters")
        if feed.name in names:
            raise ConfigError(f"{path}.name: duplicate calendar name {_describe(feed.name)}")
        names.add(feed.name)
        placeholder = re.fullmatch(r"demo-[a-z0-9_]+", feed.url)  # demo mode's stand-in for an unset secret
        if not placeholder and not re.fullmatch(r"(?i)(https?|webcals?)://[^\s/?#]+[^\s]*", feed.url):
            # Not the value itself: a feed address is a secret, and this line goes to a terminal and a journal.
            raise ConfigError(f'{path}.url: expected an https:// or webcal:// address (written as "${{NAME}}")')
        if feed.color is not None and not _COLOR_RE.fullmatch(feed.color):
            raise ConfigError(f'{path}.color: expected a colour like "#3b82f6", got {_describe(feed.color)}')


_MQTT_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # also what Home Assistant allows in node_id / object_id
_SPLIT_TOPIC_PRESETS = ("esphome", "plain")  # plain values, one per topic


def _check_mqtt_topic(value: str | None, path: str) -> None:
    """A concrete topic (no wildcards): what we subscribe to or publish under."""
    if value is None:
        return
    if not value or len(value) > 512:
        raise ConfigError(f"{path}: expected an MQTT topic like zigbee2mqtt/kitchen, got {_describe(value)}")
    if "+" in value or "#" in value or "\x00" in value:
        raise ConfigError(f"{path}: must be one topic without the wildcards + and # (got {_describe(value)})")
    if value.startswith("/") or value.endswith("/") or value.startswith("$"):
        raise ConfigError(f"{path}: must not start or end with / or start with $ (got {_describe(value)})")


def _check_mqtt(mqtt: MqttConfig, sensor_ids: set[str], files_here: bool) -> None:
    """The mqtt section: topics without wildcards, a follower names its leader, MQTT sensor ids are unique."""
    if not mqtt.host:
        raise ConfigError("mqtt.host: required (the broker's host name or address)")
    if not _MQTT_NAME_RE.fullmatch(mqtt.name):
        raise ConfigError(f"mqtt.name: use letters, digits, _ or - (got {_describe(mqtt.name)})")
    _check_mqtt_topic(mqtt.base_topic, "mqtt.base_topic")
    if mqtt.client_id is not None and not 1 <= len(mqtt.client_id) <= 128:
        raise ConfigError("mqtt.client_id: expected 1-128 characters")
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
        _check_mqtt_topic(mqtt.leader, "mqtt.leader")
        if mqtt.leader == mqtt.base:
            raise ConfigError(f"mqtt.leader: {_describe(mqtt.leader)} is this display's own base topic")
    elif mqtt.leader is not None:
        raise ConfigError(f"mqtt.leader: only for role follower (role is {mqtt.role})")
    for i, pattern in enumerate(mqtt.share_topics):
        if not re.fullmatch(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*(/\*)?", pattern):
            raise ConfigError(f"mqtt.share_topics[{i}]: expected a topic like weather or a prefix like sensor/*")
    for i, s in enumerate(mqtt.sensors):
        path = f"mqtt.sensors[{i}]"
        if not _MQTT_NAME_RE.fullmatch(s.id):
            raise ConfigError(f"{path}.id: use letters, digits, _ or - (got {_describe(s.id)})")
        if s.id in sensor_ids:
            raise ConfigError(f"{path}.id: duplicate sensor id {_describe(s.id)}")
        sensor_ids.add(s.id)
        for key in ("topic", "humidity_topic", "pressure_topic", "battery_topic", "availability_topic"):
            _check_mqtt_topic(getattr(s, key), f"{path}.{key}")
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
    ha = mqtt.home_assistant
    _check_mqtt_topic(ha.discovery_prefix, "mqtt.home_assistant.discovery_prefix")
    if ha.node_id is not None and not _MQTT_NAME_RE.fullmatch(ha.node_id):
        raise ConfigError(f"mqtt.home_assistant.node_id: use letters, digits, _ or - (got {_describe(ha.node_id)})")


def _check_gpio(gpio: GpioConfig) -> None:
    if len(gpio.buttons) > 2:
        raise ConfigError(f"gpio.buttons: at most two buttons, got {len(gpio.buttons)}")
    used: dict[int, str] = {}
    pins = [("gpio.pir", gpio.pir)] + [(f"gpio.buttons[{i}]", b) for i, b in enumerate(gpio.buttons)]
    for path, pin in pins:
        if pin is None:
            continue
        if pin.pin in used:
            raise ConfigError(f"{path}.pin: BCM {pin.pin} is already used by {used[pin.pin]}")
        used[pin.pin] = path


def _check_display(display: DisplayConfig, wall: WallConfig) -> None:
    if (display.on_at is None) != (display.off_at is None):
        missing = "display.off_at" if display.off_at is None else "display.on_at"
        raise ConfigError(f"{missing}: set both on_at and off_at (the daily on/off times), or neither")
    if display.on_at is not None and display.on_at == display.off_at:
        raise ConfigError("display.off_at: must differ from display.on_at")
    for key in ("restart_command", "reboot_command"):
        if not getattr(wall, key):
            raise ConfigError(f"wall.{key}: must name a command, e.g. [systemctl, reboot]")


def _check_hhmm(value: str | None, path: str) -> None:
    if value is None:
        return
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", value)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ConfigError(f'{path}: expected a time like "07:30", got {_describe(value)}')


def load_config(
    path: str | os.PathLike[str], *, env: dict[str, str] | None = None, demo: bool = False, files_here: bool = True
) -> Config:
    """Read and validate a config file. Raises ConfigError with a one-line message. files_here: see parse_config."""
    return parse_config(read_document(path), env=env, demo=demo, files_here=files_here)


def read_document(path: str | os.PathLike[str]) -> Any:
    """The config file's YAML as plain data, not yet validated (a key written twice is an error already).

    For commands that need one section of a file whose other sections may not be complete yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"config: {path} does not exist") from err
    except OSError as err:
        raise ConfigError(f"config: cannot read {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"config: {path} is not UTF-8 text") from err
    try:
        data = safe_load_unique(text)
    except DuplicateKeyError as err:
        lines = f"on line {err.line}" if err.first_line == err.line else f"lines {err.first_line} and {err.line}"
        raise ConfigError(f"{err.path}: written twice in {path} ({lines}); keep one") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"config: {path}{where}: {problem}") from err
    return data


def _mentions_secret(value: Any) -> bool:
    if isinstance(value, str):
        return _SECRET_RE.search(value) is not None
    if isinstance(value, dict):
        return any(_mentions_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_mentions_secret(v) for v in value)
    return False


def load_sensors(
    path: str | os.PathLike[str], *, env: dict[str, str] | None = None, demo: bool = False
) -> tuple[tuple[SensorConfig, ...], bool]:
    """Only the `sensors:` list of a config file, checked as load_config checks it, and whether demo is on.

    For `python -m sensors`: an unset secret of a source or a broken section elsewhere is not its business, so
    the rest of the file is not validated, and the secrets file is read only if the sensors refer to a secret.
    Raises ConfigError.
    """
    data = read_document(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"(top level): expected a mapping, got {_describe(data)}")
    env = dict(os.environ) if env is None else env
    demo = demo or _convert(data.get("demo", False), bool, "demo", _Secrets(env, {}, lenient=True))
    raw = data.get("sensors", [])
    file_values: dict[str, str] = {}
    secrets_file = data.get("secrets_file")
    if isinstance(secrets_file, str) and _mentions_secret(raw):
        file_values = read_secrets_file(secrets_file)
    sensors = _convert(raw, tuple[SensorConfig, ...], "sensors", _Secrets(env, file_values, lenient=demo))
    _check_ids(sensors, "sensors", set())
    _check_sensors(sensors)
    return sensors, demo


def replace(cfg: Any, **changes: Any) -> Any:
    """dataclasses.replace, re-exported so callers need not import dataclasses for overrides."""
    return dataclasses.replace(cfg, **changes)
