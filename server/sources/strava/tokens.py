"""strava_token.json in data_dir: the rotating OAuth tokens, written atomically, readable by this user only."""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from server.core.atomic import atomic_write_bytes, sweep_temp_files

TOKEN_FILE_NAME = "strava_token.json"  # noqa: S105 - a file name, not a secret
DEMO_TOKEN_FILE_NAME = "strava_token.demo.json"  # noqa: S105 - demo tokens never overwrite the real ones
TOKEN_FILE_VERSION = 1

log = logging.getLogger(__name__)


@dataclass
class TokenState:
    """What strava_token.json holds. `config_sha256` is the hash of the config's refresh token this state was
    last reconciled with: if the config's token changes later, the person put a newer one there on purpose."""

    refresh_token: str
    access_token: str | None = None
    expires_at: float = 0.0
    config_sha256: str | None = None
    updated_at: float = 0.0
    scope: str | None = None

    def to_json(self) -> bytes:
        doc = {
            "version": TOKEN_FILE_VERSION,
            "refresh_token": self.refresh_token,
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "config_sha256": self.config_sha256,
            "updated_at": self.updated_at,
            "scope": self.scope,
        }
        return json.dumps(doc, indent=1).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> TokenState:
        """Raises ValueError naming the problem."""
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != TOKEN_FILE_VERSION:
            raise ValueError("unknown format")
        refresh = doc.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise ValueError("refresh_token missing")
        access = doc.get("access_token")
        expires_at = doc.get("expires_at", 0)
        if not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
            raise ValueError("expires_at is not a number")
        sha = doc.get("config_sha256")
        return cls(
            refresh_token=refresh,
            access_token=access if isinstance(access, str) and access else None,
            expires_at=float(expires_at),
            config_sha256=sha if isinstance(sha, str) else None,
            updated_at=float(doc.get("updated_at") or 0),
            scope=doc.get("scope") if isinstance(doc.get("scope"), str) else None,
        )


class TokenStore:
    """strava_token.json in data_dir, written with server.core.atomic (temp, fsync, rename, fsync dir; mode 0600)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> TokenState | None:
        """The stored state, or None when there is none or it cannot be used (logged)."""
        sweep_temp_files(self.path.parent)
        try:
            raw = self.path.read_bytes()
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except FileNotFoundError:
            return None
        except OSError as err:
            log.error("cannot read the Strava token file %s: %s", self.path, err.strerror)
            return None
        if mode & 0o077:
            log.warning("%s was readable by others (mode %04o); setting it to 0600", self.path, mode)
            try:
                os.chmod(self.path, 0o600)
            except OSError:
                pass
        try:
            return TokenState.from_json(raw)
        except ValueError as err:
            log.error("ignoring the damaged Strava token file %s: %s", self.path, err)
            return None

    def save(self, state: TokenState) -> None:
        """Raises OSError when the file cannot be written durably."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the tokens' folder is private
        atomic_write_bytes(self.path, state.to_json(), mode=0o600)
