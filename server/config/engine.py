"""The schema engine: YAML text → plain data (a key written twice refused) → the frozen dataclasses of
server/config/sections.py, field by field, each field's own rule checked where it is set; ${NAME} secrets resolved.

The engine knows no section: a dataclass's field names are its keys, the type hints say what each takes, a
field's metadata carries its rule (server/config/rules.py). Every error is a ConfigError naming the key path.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from server.config.rules import ConfigError, describe
from server.config.strictyaml import DuplicateKeyError, safe_load_unique

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


def mentions_secret(value: Any) -> bool:
    if isinstance(value, str):
        return _SECRET_RE.search(value) is not None
    if isinstance(value, dict):
        return any(mentions_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(mentions_secret(v) for v in value)
    return False


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


def convert(value: Any, tp: Any, path: str, secrets: Secrets) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return convert(value, inner[0], path, secrets)
        raise ConfigError(f"{path}: unsupported type")  # pragma: no cover - schema bug
    if value is None:
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got nothing")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{path}: expected {_type_name(tp)}, got {describe(value)}")
        return value
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {describe(value)}")
        return tuple(convert(v, item_tp, f"{path}[{i}]", secrets) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path, secrets)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {describe(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value}")
        return float(value)
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{path}: expected a string, got {describe(value)}")
        return secrets.expand(str(value), path)
    raise ConfigError(f"{path}: unsupported type {tp}")  # pragma: no cover - schema bug


def build(cls: type, data: Any, path: str, secrets: Secrets) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '(top level)'}: expected a mapping, got {describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise ConfigError(f"{key_path}: unknown key (known: {', '.join(fields)})")
        kwargs[key] = convert(value, hints[key], key_path, secrets)
        rule = fields[key].metadata.get("rule")
        if rule is not None:
            rule.check(kwargs[key], key_path)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            key_path = f"{path}.{name}" if path else name
            raise ConfigError(f"{key_path}: required key is missing")
    return cls(**kwargs)


class Secrets:
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
                f"{path}: expected ${{NAME}} with NAME made of letters, digits and _ (got {describe(text)})"
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
