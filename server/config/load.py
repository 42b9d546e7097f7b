"""Reading a config: a file or an already-parsed document → one validated, frozen Config (or the sensors alone)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from server.config.engine import Secrets, build, convert, mentions_secret, read_document, read_secrets_file
from server.config.rules import ConfigError, describe
from server.config.sections import Config, SensorConfig, check_config, check_sensor_types, check_unique_ids


def load_config(
    path: str | os.PathLike[str], *, env: dict[str, str] | None = None, demo: bool = False, files_here: bool = True
) -> Config:
    """Read and validate a config file. Raises ConfigError with a one-line message. files_here: see parse_config."""
    return parse_config(read_document(path), env=env, demo=demo, files_here=files_here)


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
        raise ConfigError(f"(top level): expected a mapping, got {describe(data)}")
    env = dict(os.environ) if env is None else env
    demo = demo or data.get("demo") is True
    file_values: dict[str, str] = {}
    secrets_file = data.get("secrets_file")
    if secrets_file is not None:
        if not isinstance(secrets_file, str):
            raise ConfigError(f"secrets_file: expected a string, got {describe(secrets_file)}")
        if files_here:
            file_values = read_secrets_file(secrets_file)
    lenient = demo or (secrets_file is not None and not files_here)
    cfg = build(Config, data, "", Secrets(env, file_values, lenient=lenient))
    check_config(cfg, files_here)
    return cfg


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
        raise ConfigError(f"(top level): expected a mapping, got {describe(data)}")
    env = dict(os.environ) if env is None else env
    demo = demo or convert(data.get("demo", False), bool, "demo", Secrets(env, {}, lenient=True))
    raw = data.get("sensors", [])
    file_values: dict[str, str] = {}
    secrets_file = data.get("secrets_file")
    if isinstance(secrets_file, str) and mentions_secret(raw):
        file_values = read_secrets_file(secrets_file)
    sensors = convert(raw, tuple[SensorConfig, ...], "sensors", Secrets(env, file_values, lenient=demo))
    check_unique_ids(sensors, "sensors", set())
    check_sensor_types(sensors)
    return sensors, demo


def replace(cfg: Any, **changes: Any) -> Any:
    """dataclasses.replace, re-exported so callers need not import dataclasses for overrides."""
    return dataclasses.replace(cfg, **changes)
