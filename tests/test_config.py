"""Config validation: every error names its key path; secrets from env or a 0600 file only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import ConfigError, load_config, parse_config
from tests.conftest import REPO

WEATHER = {"api_key": "k", "query": "Stockholm"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"sources": {"weather": {**WEATHER, "interval_s": "ten"}}},
            'sources.weather.interval_s: expected a number, got "ten"',
        ),
        ({"server": {"port": "80"}}, 'server.port: expected an integer, got "80"'),
        ({"server": {"port": 70000}}, "server.port: expected 1-65535, got 70000"),
        ({"server": {"prot": 80}}, "server.prot: unknown key"),
        ({"colour": "red"}, "colour: unknown key"),
        ({"demo": "yes"}, 'demo: expected true or false, got "yes"'),
        ({"sources": {"departures": {}}}, "sources.departures.site_id: required key is missing"),
        (
            {"sources": {"weather": {**WEATHER, "interval_s": True}}},
            "sources.weather.interval_s: expected a number, got true",
        ),
        (
            {"sensors": [{"id": "a", "type": "bme280"}, {"id": "b", "type": "bme680"}]},
            "sensors[1].type: unknown sensor type 'bme680' (known: bme280, bmp280, sht31",
        ),
        (
            {"sensors": [{"id": "a", "type": "bme280", "address": "0x76"}]},
            'sensors[0].address: expected an integer, got "0x76"',
        ),
        ({"sensors": [{"id": "a b", "type": "bme280"}]}, "sensors[0].id: use letters, digits"),
        ({"sensors": [{"id": "o", "type": "ds18b20"}]}, "sensors[0].device: required for type ds18b20"),
        ({"sensors": {"id": "a"}}, "sensors: expected a list, got a mapping"),
        ({"remote_sensors": [{"id": "x", "token": "t"}, {"id": "x", "token": "u"}]}, "remote_sensors[1].id: duplicate"),
        ({"timezone": "Mars/Olympus"}, 'timezone: unknown time zone "Mars/Olympus"'),
        ({"display": {"on_at": "7am"}}, 'display.on_at: expected a time like "07:30", got "7am"'),
        ({"server": {"tls": {"certfile": "/nonexistent.pem"}}}, "server.tls.keyfile: required when the other"),
        (
            {"server": {"tls": {"certfile": "/nonexistent.pem", "keyfile": "/nonexistent.key"}}},
            "server.tls.certfile: cannot read",
        ),
        (
            {"sources": {"weather": {"api_key": "${NOPE_KEY}"}}},
            "sources.weather.api_key: secret ${NOPE_KEY} is not set",
        ),
        (
            {"sources": {"weather": {**WEATHER, "interval_s": float("nan")}}},
            "sources.weather.interval_s: expected a finite number",
        ),
        ({"sources": {"weather": {**WEATHER, "interval_s": 0}}}, "sources.weather.interval_s: must be greater than 0"),
        ([1, 2], "(top level): expected a mapping, got a list"),
        ({"page": {"units": "furlongs"}}, 'page.units: expected one of metric, imperial, got "furlongs"'),
        ({"page": {"locale": "Swedish please"}}, 'page.locale: expected a language tag like sv-SE or en-US, got "Swed'),
    ],
)
def test_each_config_error_names_its_key(doc: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(doc, env={})
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_secret_from_env_and_from_0600_file(tmp_path: Path) -> None:
    cfg = parse_config({"sources": {"weather": {"api_key": "${WEATHERAPI_KEY}"}}}, env={"WEATHERAPI_KEY": "abc"})
    assert cfg.sources.weather.api_key == "abc"
    secrets = tmp_path / "secrets.env"
    secrets.write_text("# comment\nWEATHERAPI_KEY='from-file'\nexport OTHER=1\n")
    secrets.chmod(0o600)
    doc = {"secrets_file": str(secrets), "sources": {"weather": {"api_key": "${WEATHERAPI_KEY}"}}}
    assert parse_config(doc, env={}).sources.weather.api_key == "from-file"
    assert parse_config(doc, env={"WEATHERAPI_KEY": "env"}).sources.weather.api_key == "env", "environment first"


def test_readable_secrets_file_is_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("A=1\n")
    secrets.chmod(0o644)
    with pytest.raises(ConfigError, match=r"secrets_file: .* is readable by others \(mode 0644\); run: chmod 600"):
        parse_config({"secrets_file": str(secrets)}, env={})


def test_demo_mode_needs_no_secrets() -> None:
    cfg = load_config(REPO / "config.yaml", env={}, demo=True)
    assert cfg.sources.weather is not None
    assert cfg.sources.weather.api_key.startswith("demo-")
    assert len(cfg.sensors) >= 3


def test_repo_config_is_complete_and_documented() -> None:
    """Every key of the schema appears in the repository's config.yaml, with a comment somewhere near."""
    import dataclasses

    from server.config import Config

    text = (REPO / "config.yaml").read_text()

    def keys(cls: type) -> set[str]:
        out: set[str] = set()
        for f in dataclasses.fields(cls):
            out.add(f.name)
        return out

    for name in keys(Config):
        assert f"{name}:" in text, f"config.yaml does not document {name}"


def test_real_yaml_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("server: {port: 80\n")
    with pytest.raises(ConfigError, match=r"^config: .*c.yaml line \d+"):
        load_config(bad, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", env={})


def test_server_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("sources:\n  weather: {api_key: k, interval_s: ten}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEATHERAPI")}
    proc = subprocess.run(
        [sys.executable, "-m", "server", "--config", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ['homeboard: config error: sources.weather.interval_s: expected a number, got "ten"']


def test_empty_secret_counts_as_missing() -> None:
    with pytest.raises(ConfigError, match=r"sources.weather.api_key: secret \$\{K\} is not set"):
        parse_config({"sources": {"weather": {"api_key": "${K}"}}}, env={"K": ""})


def _load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> object:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path, env=env or {})


def test_key_written_twice_is_refused_with_its_lines(tmp_path: Path) -> None:
    two_blocks = "server:\n  port: 8080\ntimezone: UTC\nserver:\n  port: 9090\n"
    with pytest.raises(ConfigError, match=r"^server: written twice in .*c.yaml \(lines 1 and 4\); keep one$"):
        _load_text(tmp_path, two_blocks)
    nested = "sources:\n  weather:\n    api_key: a\n    query: Oslo\n    api_key: b\n"
    with pytest.raises(ConfigError, match=r"^sources\.weather\.api_key: written twice .*\(lines 3 and 5\)"):
        _load_text(tmp_path, nested)
    in_list = "sensors:\n  - {id: a, type: sht31, address: 0x44}\n  - {id: b, type: sht31, id: c}\n"
    with pytest.raises(ConfigError, match=r"^sensors\[1\]\.id: written twice .*\(on line 3\); keep one$"):
        _load_text(tmp_path, in_list)
    # Equal after YAML's own reading: 0x44 and 68 are the same integer key.
    with pytest.raises(ConfigError, match=r"^68: written twice"):
        _load_text(tmp_path, "0x44: a\n68: b\n")


def test_anchors_and_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = (
        "x-sensor: &sht {type: sht31, bus: 1, interval_s: 30}\n"
        "sensors:\n"
        "  - {<<: *sht, id: a, address: 0x44, interval_s: 60}\n"  # overriding a merged key on purpose
        "  - {<<: *sht, id: b, address: 0x45}\n"
    )
    # The anchor's holder is an unknown key, so parse the loaded document without it.
    from server.config.strictyaml import safe_load_unique

    doc = safe_load_unique(text)
    assert isinstance(doc, dict)
    del doc["x-sensor"]
    cfg = parse_config(doc, env={})
    assert [(s.id, s.interval_s, s.address) for s in cfg.sensors] == [("a", 60.0, 0x44), ("b", 30.0, 0x45)]
    assert safe_load_unique("") is None


def test_bare_dollar_name_is_refused(tmp_path: Path) -> None:
    text = 'sources:\n  weather: {api_key: "$WEATHERAPI_KEY"}\n'
    with pytest.raises(
        ConfigError, match=r"^sources\.weather\.api_key: a bare \$WEATHERAPI_KEY .* write \$\{WEATHERAPI_KEY\}$"
    ):
        _load_text(tmp_path, text, env={"WEATHERAPI_KEY": "k"})
    with pytest.raises(ConfigError, match=r"^remote_sensors\[0\]\.token: expected \$\{NAME\}"):
        parse_config({"remote_sensors": [{"id": "a", "token": "${BALCONY TOKEN}"}]}, env={})


@pytest.mark.parametrize("token", ["ab$cd", "$2b$12$R9h/cIPz0gi", "p4$$w0rd", "$", "x$", "$ x"])
def test_dollar_inside_a_literal_token_is_kept(token: str) -> None:
    cfg = parse_config({"remote_sensors": [{"id": "a", "token": token}]}, env={})
    assert cfg.remote_sensors[0].token == token


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"mqtt": {"keepalive_s": 2}}, "mqtt.keepalive_s: expected 5-65535, got 2"),
        ({"mqtt": {"follow_max_age_s": 0}}, "mqtt.follow_max_age_s: must be greater than 0, got 0"),
        ({"wall": {"browser_restarts": -1}}, "wall.browser_restarts: must be 0 or more, got -1"),
        ({"display": {"brightness_pct": 101}}, "display.brightness_pct: expected 1-100, got 101"),
        ({"gpio": {"buttons": [{"pin": 99}]}}, "gpio.buttons[0].pin: expected a BCM GPIO number 0-27, got 99"),
        ({"sensors": [{"id": "a", "type": "sht31", "interval_s": 0}]}, "sensors[0].interval_s: must be greater than 0"),
        (
            {"sources": {"weather": {"api_key": "k", "base_url": "api.weatherapi.com"}}},
            'sources.weather.base_url: expected an http(s) URL, got "api.weatherapi.com"',
        ),
        ({"sources": {"departures": {"site_id": 1, "direction": 3}}}, "sources.departures.direction: expected 1 or 2"),
    ],
)
def test_rules_beside_their_fields(doc: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(doc, env={})
    assert str(err.value).startswith(message), str(err.value)


def test_every_default_keeps_its_own_rule() -> None:
    """A rule lives in the field's metadata; the documented default must satisfy it."""
    import dataclasses

    from server import config as c

    ruled_fields = 0
    for cls in vars(c).values():
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            continue
        for f in dataclasses.fields(cls):
            rule = f.metadata.get("rule")
            if rule is None:
                continue
            ruled_fields += 1
            if f.default is not dataclasses.MISSING:
                rule.check(f.default, f"{cls.__name__}.{f.name}")
    assert ruled_fields >= 30
