"""TLS for HTTP and WebSocket: modern protocols only, certificate reloaded when renewed or on SIGHUP."""

from __future__ import annotations

import logging
import os
import ssl

log = logging.getLogger(__name__)


class CertificateError(Exception):
    """The certificate or key cannot be used; the message names the config key."""


class ReloadingCertificate:
    """One SSLContext for the server's lifetime; load_cert_chain on it again swaps the cert for new handshakes."""

    def __init__(self, certfile: str, keyfile: str) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.options |= ssl.OP_NO_COMPRESSION
        self._stamp: tuple[float, float] | None = None
        self.loads = 0
        self.last_error: str | None = None
        self.load()

    def _mtimes(self) -> tuple[float, float]:
        return (os.stat(self.certfile).st_mtime, os.stat(self.keyfile).st_mtime)

    def load(self) -> None:
        """(Re)load the pair. Raises CertificateError naming the key on failure (the old cert stays in use)."""
        for key, path in (("server.tls.certfile", self.certfile), ("server.tls.keyfile", self.keyfile)):
            if not os.access(path, os.R_OK):
                raise CertificateError(f"{key}: cannot read {path}")
        try:
            stamp = self._mtimes()
            self.context.load_cert_chain(self.certfile, self.keyfile)
        except (ssl.SSLError, OSError) as err:
            raise CertificateError(f"server.tls.certfile/keyfile: cannot use {self.certfile}: {err}") from err
        self._stamp = stamp
        self.loads += 1
        self.last_error = None

    def reload_if_changed(self) -> bool:
        """Called periodically: reload when either file's mtime changed (Let's Encrypt renewal). Never raises."""
        try:
            if self._mtimes() == self._stamp:
                return False
            self.load()
        except (OSError, CertificateError) as err:
            msg = str(err)
            if msg != self.last_error:
                log.error("TLS certificate reload failed, keeping the current one: %s", msg)
            self.last_error = msg
            return False
        log.info("TLS certificate reloaded from %s", self.certfile)
        return True

    def force_reload(self) -> None:
        """SIGHUP: reload even when the mtimes look unchanged."""
        self._stamp = None
        self.reload_if_changed()
