"""Strava's OAuth: one valid access token at a time, refreshed before it expires; a rotated refresh token is saved
before the new access token is used."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from server.core.source import AuthError, SourceError, TransientError
from server.sources.fields import Reader
from server.sources.http import HttpClient, HttpResponse
from server.sources.strava.tokens import TokenState, TokenStore

SOURCE = "strava"
REFRESH_MARGIN_S = 300.0  # refresh this long before the access token expires (clock skew, slow requests)
REAUTH_MESSAGE = "Strava needs re-authorizing: run python -m server.sources.strava setup"
NOT_SET_UP_MESSAGE = "Strava is not set up yet: run python -m server.sources.strava setup"
NOT_SET_UP_RETRY_S = 60.0  # only a local file is looked at: find the token soon after setup writes it
SCOPE = "activity:read_all"
DEFAULT_AUTHORIZE_URL = "https://www.strava.com/oauth/authorize"
DEFAULT_REDIRECT_URI = "http://localhost/exchange_token"

log = logging.getLogger(__name__)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _token_error(response: HttpResponse) -> SourceError:
    """A token-endpoint refusal in words a person can act on."""
    body = response.error_body()
    errors = body.get("errors") if isinstance(body, dict) else None
    fields = {e.get("field") for e in errors if isinstance(e, dict)} if isinstance(errors, list) else set()
    if fields & {"client_id", "client_secret"}:
        return AuthError("Strava rejected the app credentials: check sources.strava.client_id and client_secret")
    return AuthError(REAUTH_MESSAGE)


def parse_token_response(payload: Any, now_s: float) -> tuple[str, str, float]:
    """(access_token, refresh_token, expires_at) from a token-endpoint answer; raises PayloadError."""
    r = Reader(SOURCE)
    if not isinstance(payload, dict):
        raise r.error("token answer", "expected an object")
    access = payload.get("access_token")
    refresh = payload.get("refresh_token")
    if not isinstance(access, str) or not access:
        raise r.error("token answer.access_token", "missing")
    if not isinstance(refresh, str) or not refresh:
        raise r.error("token answer.refresh_token", "missing")
    expires_at = r.number(payload, "expires_at", "token answer", optional=True)
    if expires_at is None:
        expires_in = r.number(payload, "expires_in", "token answer")
        expires_at = now_s + expires_in
    return access, refresh, expires_at


class StravaAuth:
    """Keeps a valid access token. One refresh at a time (a lock); a rotated refresh token is on disk before the
    new access token is used, because Strava invalidates the old refresh token the moment it issues a new one."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        config_refresh_token: str | None,
        token_url: str,
        store: TokenStore,
        client: HttpClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_url = token_url
        self.store = store
        self.client = client
        self.clock = clock
        self._lock = threading.Lock()
        self._dirty = False  # in-memory state newer than the file (a save failed)
        self.client.add_secret(client_secret)
        self.client.add_secret(config_refresh_token)
        self.state: TokenState | None = self._initial_state(config_refresh_token)
        self.on_response: Callable[[HttpResponse], None] | None = None

    def _initial_state(self, config_token: str | None) -> TokenState | None:
        stored = self.store.load()
        if config_token is None:
            # No token in the config: the file `setup` writes is the only one (None until it has run).
            if stored is not None:
                self.client.add_secret(stored.refresh_token)
                self.client.add_secret(stored.access_token)
            return stored
        config_sha = _sha256(config_token)
        if stored is not None:
            self.client.add_secret(stored.refresh_token)
            self.client.add_secret(stored.access_token)
            if stored.refresh_token == config_token or stored.config_sha256 in (None, config_sha):
                # The file descends from this config token (or came from `setup`): it is the newer one.
                if stored.config_sha256 != config_sha:
                    stored.config_sha256 = config_sha
                    self._dirty = True
                return stored
            log.info("using the Strava refresh token from the config: it changed since %s was written", self.store.path)
        return TokenState(refresh_token=config_token, config_sha256=config_sha)

    def access_token(self, *, force_refresh: bool = False, rejected: str | None = None) -> str:
        """A usable access token, refreshing it first when it is (nearly) expired or was `rejected` with a 401.

        Raises AuthError (re-authorize), TransientError (network, or the new token could not be saved yet).
        """
        with self._lock:
            if self._dirty:
                self._persist()
            if self.state is None:
                self.state = self._initial_state(None)
            state = self.state
            if state is None:
                raise AuthError(NOT_SET_UP_MESSAGE, retry_after_s=NOT_SET_UP_RETRY_S)
            if rejected is not None and state.access_token and state.access_token != rejected:
                return state.access_token  # another caller refreshed while we waited for the lock
            if not force_refresh and state.access_token and state.expires_at - self.clock() > REFRESH_MARGIN_S:
                return state.access_token
            return self._refresh(state)

    def _refresh(self, current: TokenState) -> str:
        """POST grant_type=refresh_token with `current`'s token; save the answer; return the new access token."""
        form = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": current.refresh_token,
        }
        response = self.client.request("POST", self.token_url, data=form)
        if self.on_response is not None:
            self.on_response(response)
        if response.status in (400, 401):
            raise _token_error(response)
        self.client.check_status(response, auth_hint="check sources.strava.client_id and client_secret")
        access, refresh, expires_at = parse_token_response(response.json(), self.clock())
        self.client.add_secret(access)
        self.client.add_secret(refresh)
        rotated = refresh != current.refresh_token
        self.state = TokenState(
            refresh_token=refresh,
            access_token=access,
            expires_at=expires_at,
            config_sha256=current.config_sha256,
            updated_at=self.clock(),
            scope=current.scope,
        )
        self._dirty = True
        self._persist()
        if rotated:
            log.info("Strava issued a new refresh token; saved to %s", self.store.path)
        return access

    def _persist(self) -> None:
        if self.state is None:  # nothing to save before setup has run
            self._dirty = False
            return
        try:
            self.store.save(self.state)
        except OSError as err:
            # Keep the new token in memory (the old one is already dead) and retry the save before any use.
            raise TransientError(
                f"could not save the new Strava token to {self.store.path} ({err.strerror}); will retry"
            ) from None
        self._dirty = False
