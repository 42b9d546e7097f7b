"""What `python -m server --check-config` checks beyond the file itself: what a start would refuse at once,
without the start's side effects (no port, no data_dir, no API call, no thread)."""

from __future__ import annotations

from server.config import Config, ConfigError
from server.core.tls import CertificateError, ReloadingCertificate


def check_startable(cfg: Config, files_here: bool = True) -> None:
    """Raises ConfigError with the same one line a start would print. files_here=False: the certificate files
    are on the machine the config is for, not read here."""
    tls = cfg.server.tls
    if files_here and tls.certfile and tls.keyfile:
        try:
            ReloadingCertificate(tls.certfile, tls.keyfile)  # loads the pair into a context and drops it
        except CertificateError as err:
            raise ConfigError(str(err)) from err
