"""`python -m server.sources.strava setup`: the first Strava refresh token, written straight into data_dir.

Run it where the server runs (on the Pi, as the service's user, into the service's data_dir): the token never
travels, and the server adopts it without a refresh token in config.yaml. Everything else it needs (client id
and secret, token URL, data_dir) comes from the config through the same rules as a start, so a ${NAME} is
resolved (and an unset one reported) exactly as the server would.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from server.config import ConfigError, parse_config, read_document, read_secrets_file
from server.core.datadir import prepare_data_dir
from server.core.source import SourceError
from server.sources.http import HttpClient, upstream_text
from server.sources.strava.oauth import DEFAULT_AUTHORIZE_URL, DEFAULT_REDIRECT_URI, SCOPE, parse_token_response
from server.sources.strava.tokens import TOKEN_FILE_NAME, TokenState, TokenStore

_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_ENV = "STRAVA_CLIENT_SECRET"  # noqa: S105 - a variable's name
CLIENT_ID_ENV = "STRAVA_CLIENT_ID"


class SetupError(Exception):
    """What stops the setup, in words a person can act on (one line)."""


@dataclass(frozen=True)
class SetupSettings:
    client_id: str
    client_secret: str
    token_url: str
    data_dir: Path


def authorize_url(base: str, client_id: str, redirect_uri: str) -> str:
    query = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "approval_prompt": "force",
        "scope": SCOPE,
    }
    return f"{base}?{urlencode(query, safe=':/,')}"


def code_from_paste(text: str) -> str:
    """The authorization code from a pasted redirect URL or a bare code. Raises ValueError with what to do."""
    text = text.strip()
    if not text:
        raise ValueError("nothing was pasted")
    if "code=" not in text and "error=" not in text:
        if re.fullmatch(r"[A-Za-z0-9]+", text):
            return text
        raise ValueError("that is neither a code nor the address Strava sent you to")
    query = parse_qs(urlsplit(text).query if "?" in text else text)
    if "error" in query:
        raise ValueError(f"Strava says: {query['error'][0]} (was access allowed?)")
    scope = query.get("scope", [""])[0]
    if scope and SCOPE not in scope.split(","):
        raise ValueError(f'the permission "{SCOPE}" was not granted; run setup again and leave its box ticked')
    codes = query.get("code")
    if not codes or not codes[0]:
        raise ValueError("the address has no code in it")
    return codes[0]


def settings_from(
    args: argparse.Namespace, env: dict[str, str], ask_secret: Callable[[str], str] | None
) -> SetupSettings:
    """Client id and secret, token URL and data_dir: flags first, then the config's `sources.strava`.

    Only `data_dir`, `secrets_file` and `sources.strava` (without its refresh_token, which this command is about
    to produce) are validated: an unrelated unset secret is not this command's business. A secret the config
    refers to but that is not set here (on the Pi the service's secrets are readable by root only) is asked
    for with `ask_secret`, when there is a terminal. Raises ConfigError or SetupError.
    """
    path = Path(args.config or "config.yaml")
    doc: Any = read_document(path) if args.config or path.exists() else {}
    if not isinstance(doc, dict):
        doc = {}  # parse_config of the whole file reports it; here only the strava part matters
    sources = doc.get("sources")
    raw = (sources.get("strava") if isinstance(sources, dict) else None) or {}
    if not isinstance(raw, dict):
        raise ConfigError("sources.strava: expected a mapping")
    strava = dict(raw)
    strava.pop("refresh_token", None)
    if args.client_id:
        strava["client_id"] = args.client_id
    elif "client_id" not in strava and env.get(CLIENT_ID_ENV):
        strava["client_id"] = env[CLIENT_ID_ENV]
    if "client_id" not in strava:
        raise SetupError(
            "no client id: pass --client-id or set sources.strava.client_id (strava.com/settings/api shows it)"
        )
    strava.setdefault("client_secret", f"${{{SECRET_ENV}}}")
    if args.token_url:
        strava["token_url"] = args.token_url
    part = {key: doc[key] for key in ("data_dir", "secrets_file") if key in doc}
    part["sources"] = {"strava": strava}
    env = dict(env)
    _ask_for_unset(strava["client_secret"], part.get("secrets_file"), env, ask_secret)
    cfg = parse_config(part, env=env)
    assert cfg.sources.strava is not None  # noqa: S101 - built from the mapping above
    data_dir = Path(args.data_dir or cfg.data_dir)
    return SetupSettings(
        cfg.sources.strava.client_id, cfg.sources.strava.client_secret, cfg.sources.strava.token_url, data_dir
    )


def _ask_for_unset(value: Any, secrets_file: Any, env: dict[str, str], ask_secret: Callable[[str], str] | None) -> None:
    names = _REF_RE.findall(value) if isinstance(value, str) else []
    file_values: dict[str, str] = {}
    if names and isinstance(secrets_file, str):
        file_values = read_secrets_file(secrets_file)
    for name in names:
        if env.get(name) or file_values.get(name):
            continue
        if ask_secret is None:
            raise SetupError(
                f"sources.strava.client_secret: ${{{name}}} is not set here; set it, or run setup in a terminal "
                "to type it (strava.com/settings/api shows it)"
            )
        typed = ask_secret(f"Strava client secret (${{{name}}}, from https://www.strava.com/settings/api): ").strip()
        if not typed:
            raise SetupError("no client secret was typed")
        env[name] = typed


def private_folder(data_dir: Path) -> Path:
    """data_dir created if missing and made 0700 (it holds the tokens). Raises ConfigError or SetupError."""
    if os.geteuid() == 0 and data_dir.exists() and data_dir.stat().st_uid != 0:
        # A token file owned by root would be unreadable to the service: run as the folder's owner instead.
        raise SetupError(
            f"{data_dir} belongs to uid {data_dir.stat().st_uid}, not root: run setup as that user "
            "(sudo -u homeboard ...), so the server can read the token"
        )
    prepare_data_dir(data_dir)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        try:
            data_dir.chmod(0o700)
        except OSError as err:
            raise SetupError(f"{data_dir} is mode {mode:04o} and cannot be made 0700: {err.strerror}") from err
    return data_dir


def setup(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.sources.strava setup",
        description="Get the first Strava refresh token: authorize Homeboard in a browser, paste back the address. "
        "Run it where the server runs, as the server's user, with the server's --data-dir.",
    )
    parser.add_argument("--config", help="config.yaml to read client_id, client_secret, token_url and data_dir from")
    parser.add_argument("--client-id", help="Strava API application's client id (default: from the config)")
    parser.add_argument("--token-url", help="token endpoint (default: from the config, else Strava's)")
    parser.add_argument("--authorize-url", default=DEFAULT_AUTHORIZE_URL, help="default: %(default)s")
    parser.add_argument("--redirect-uri", default=DEFAULT_REDIRECT_URI, help="default: %(default)s")
    parser.add_argument("--data-dir", help="where strava_token.json is written (default: the config's data_dir)")
    args = parser.parse_args(argv)

    try:
        ask = getpass.getpass if sys.stdin.isatty() else None
        settings = settings_from(args, dict(os.environ), ask)
        data_dir = private_folder(settings.data_dir)
    except ConfigError as err:
        print(f"homeboard: config error: {err}", file=sys.stderr)
        return 2
    except SetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    print("1. Open this address in a browser, log in to Strava and press Authorize:\n")
    print(f"   {authorize_url(args.authorize_url, settings.client_id, args.redirect_uri)}\n")
    print("2. The browser then goes to an address that does not load (localhost). That is expected.")
    print("   Copy that whole address from the address bar and paste it here.\n")
    try:
        pasted = input("Address (or code): ")
    except EOFError:
        print("error: nothing was pasted", file=sys.stderr)
        return 1
    try:
        code = code_from_paste(pasted)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return _exchange(settings, data_dir, code)


def _exchange(settings: SetupSettings, data_dir: Path, code: str) -> int:
    """Trade the code for the first tokens and write them to data_dir/strava_token.json (0600)."""
    client = HttpClient("strava-setup", secrets=[settings.client_secret, code])
    form = {
        "client_id": settings.client_id,
        "client_secret": settings.client_secret,
        "code": code,
        "grant_type": "authorization_code",
    }
    try:
        response = client.request("POST", settings.token_url, data=form)
        if response.status in (400, 401):
            body = response.error_body()
            detail = upstream_text(body.get("message", "")) if isinstance(body, dict) else ""
            print(
                f"error: Strava refused the code ({detail or response.status}): codes work once and expire "
                "quickly; run setup again",
                file=sys.stderr,
            )
            return 1
        client.check_status(response)
        payload = response.json()
        access, refresh, expires_at = parse_token_response(payload, time.time())
    except SourceError as err:
        print(f"error: {client.scrub(err.message)}", file=sys.stderr)
        return 1
    finally:
        client.close()

    store = TokenStore(data_dir / TOKEN_FILE_NAME)
    state = TokenState(
        refresh_token=refresh,
        access_token=access,
        expires_at=expires_at,
        config_sha256=None,  # adopted by the server at its next start, whatever the config holds
        updated_at=time.time(),
        scope=SCOPE,
    )
    try:
        store.save(state)
    except OSError as err:
        print(f"error: cannot write {store.path}: {err.strerror}", file=sys.stderr)
        return 1
    athlete = payload.get("athlete") if isinstance(payload, dict) else None
    who = ""
    if isinstance(athlete, dict):
        who = " for " + " ".join(str(athlete.get(k, "")) for k in ("firstname", "lastname")).strip()
    print(f"\nDone{who}. The tokens are in {store.path} (mode 0600, folder 0700); Homeboard keeps them up to date.")
    print("Restart the server to use them now (on the Pi: sudo systemctl restart homeboard).")
    return 0
