"""`python -m server --check-config`: validates the config and its secrets, starts nothing, same errors as a start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool

# The secrets the repository's config.yaml refers to.
REPO_SECRETS = {
    "WEATHERAPI_KEY": "k",
    "STRAVA_CLIENT_SECRET": "s",
    "BALCONY_TOKEN": "b",
}


def check(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    # Only the variables a test names: a developer's own WEATHERAPI_KEY must not make a test pass.
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    base["PYTHONPATH"] = str(REPO)  # run from another folder too
    return subprocess.run(
        [sys.executable, "-m", "server", "--check-config", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def check_here(
    args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """The same main() in this process, with exactly `env` as its secrets: fast, for the many small cases."""
    from server.__main__ import main

    for name in list(os.environ):
        if name not in ("PATH", "HOME", "LANG"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["--check-config", *args])
    out, err = capfd.readouterr()
    return code, out, err


def test_repo_config_with_its_secrets_is_fine() -> None:
    proc = check("--config", str(REPO / "config.yaml"), env=REPO_SECRETS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [f"homeboard: config ok: {REPO / 'config.yaml'}"]
    assert proc.stderr == ""


def test_each_unset_secret_is_a_start_error(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    for name in REPO_SECRETS:
        env = {k: v for k, v in REPO_SECRETS.items() if k != name}
        code, out, err = check_here(["--config", str(REPO / "config.yaml")], env, monkeypatch, capfd)
        assert code == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("homeboard: config error: ")
        assert f"${{{name}}} is not set" in lines[0]
        assert out == ""


def test_same_line_as_a_start(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(f"data_dir: {tmp_path / 'var'}\nsources:\n  weather: {{api_key: k, interval_s: ten}}\n")
    checked = check("--config", str(bad))
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    started = subprocess.run(
        [sys.executable, "-m", "server", "--config", str(bad)],
        cwd=REPO,
        env=base,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == started.returncode == 2
    assert checked.stderr == started.stderr
    assert checked.stderr.strip() == 'homeboard: config error: sources.weather.interval_s: expected a number, got "ten"'


def test_starts_nothing(tmp_path: Path) -> None:
    """No data_dir, no port, no request: a port already taken and an API that would record a call."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        api = f"http://127.0.0.1:{port}/v1"
        cfg = tmp_path / "c.yaml"
        cfg.write_text(
            f"server: {{port: {port}}}\n"
            f"data_dir: {tmp_path / 'var' / 'deeper'}\n"
            f"sources:\n  weather: {{api_key: '${{W}}', base_url: '{api}'}}\n"
            f"  strava: {{client_id: '1', client_secret: s, refresh_token: r, base_url: '{api}', token_url: '{api}'}}\n"
        )
        proc = check("--config", str(cfg), env={"W": "k"})
        assert proc.returncode == 0, proc.stderr
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            conn = None
        assert conn is None, "check-config connected to an API"
    assert not (tmp_path / "var").exists()


def test_default_path_and_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = check_here([], {}, monkeypatch, capfd)
    assert code == 2
    assert err.strip() == "homeboard: config error: config: config.yaml does not exist"
    (tmp_path / "config.yaml").write_text("timezone: Europe/Oslo\n")
    code, out, err = check_here([], {}, monkeypatch, capfd)
    assert code == 0, err
    assert out.strip() == "homeboard: config ok: config.yaml"
    assert not (tmp_path / "var").exists()


def test_key_written_twice_fails_the_check(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  host: 0.0.0.0\n\ntimezone: UTC\nserver:\n  port: 9090\n")
    proc = check("--config", str(cfg))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"homeboard: config error: server: written twice in {cfg} (lines 1 and 5); keep one"


def test_a_certificate_that_does_not_load_fails_the_check(tmp_path: Path) -> None:
    """The same line a start prints: the cert and a key that is not its own."""
    openssl = require_tool("openssl")
    for name in ("a", "b"):
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "2", "-subj", "/CN=127.0.0.1",
             "-keyout", str(tmp_path / f"{name}.key"), "-out", str(tmp_path / f"{name}.pem")],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path / 'var'}\nserver: {{tls: {{certfile: {tmp_path}/a.pem, keyfile: {tmp_path}/b.key}}}}\n"
    )
    checked = check("--config", str(cfg))
    assert checked.returncode == 2
    line = checked.stderr.strip()
    assert line.startswith(f"homeboard: config error: server.tls.certfile/keyfile: cannot use {tmp_path}/a.pem")
    assert not (tmp_path / "var").exists()
    started = subprocess.run(
        [sys.executable, "-m", "server", "--config", str(cfg), "--port", "0"],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert started.returncode == 2
    assert started.stderr.strip() == line
    # The good pair passes.
    cfg.write_text(
        f"data_dir: {tmp_path / 'var'}\nserver: {{tls: {{certfile: {tmp_path}/a.pem, keyfile: {tmp_path}/a.key}}}}\n"
    )
    assert check("--config", str(cfg)).returncode == 0


def test_a_config_for_the_pi_checked_on_a_laptop(tmp_path: Path) -> None:
    """Certificates, keys and a secrets file that exist only on the Pi: the plain check names the first one it
    cannot read; --for-another-machine (what provisioning runs) checks everything else and passes. A real error
    still fails it, and the flag alone, without --check-config, is refused."""
    pi = "/etc/homeboard-not-on-this-machine"
    cfg = tmp_path / "pi.yaml"
    text = (
        f"data_dir: /var/lib/homeboard\nsecrets_file: {pi}/secrets.env\n"
        f"server: {{host: 0.0.0.0, tls: {{certfile: {pi}/tls/fullchain.pem, keyfile: {pi}/tls/privkey.pem}}}}\n"
        f"sources:\n  weather: {{api_key: '${{WEATHERAPI_KEY}}', query: Stockholm}}\n"
        f"mqtt: {{host: broker.lan, port: 8883, tls: {{ca_certs: {pi}/mqtt-ca.pem}}}}\n"
    )
    cfg.write_text(text)
    plain = check("--config", str(cfg))
    assert plain.returncode == 2
    assert (
        plain.stderr.strip()
        == f"homeboard: config error: secrets_file: cannot read {pi}/secrets.env: No such file or directory"
    )
    elsewhere = check("--for-another-machine", "--config", str(cfg))
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert elsewhere.stdout.strip() == f"homeboard: config ok: {cfg}"
    cfg.write_text(text.replace("port: 8883", "port: 88830"))
    wrong = check("--for-another-machine", "--config", str(cfg))
    assert wrong.returncode == 2
    assert "mqtt.port" in wrong.stderr
    # Without a secrets_file, a secret must still come from the environment (provisioning supplies stand-ins).
    cfg.write_text(text.replace(f"secrets_file: {pi}/secrets.env\n", ""))
    unset = check("--for-another-machine", "--config", str(cfg))
    assert unset.returncode == 2
    assert "${WEATHERAPI_KEY} is not set" in unset.stderr
    assert check("--for-another-machine", "--config", str(cfg), env={"WEATHERAPI_KEY": "k"}).returncode == 0
    alone = subprocess.run(
        [sys.executable, "-m", "server", "--for-another-machine", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert alone.returncode == 2
    assert "--for-another-machine goes with --check-config" in alone.stderr
