"""The shared HTTP policy (server.sources.http) against real local servers: every way an upstream can misbehave."""

from __future__ import annotations

import email.utils
import logging
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.core.source import AuthError, PayloadError, RateLimitedError, TransientError
from server.sources.http import USER_AGENT, HttpClient, parse_retry_after, redact_text, redact_url
from tests.conftest import require_tool
from tests.fakeapi import FakeApi, RawServer, Recorded, Reply

SECRET_KEY = "k3y-5ecr3t-0123456789"
SECRET_TOKEN = "t0ken-5ecr3t-abcdef"


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi().start()
    yield server
    server.stop()


def client(**kwargs: float) -> HttpClient:
    options = {"connect_timeout_s": 2.0, "read_timeout_s": 2.0, "deadline_s": 5.0}
    options.update(kwargs)
    return HttpClient("test", secrets=[SECRET_KEY, SECRET_TOKEN], **options)  # type: ignore[arg-type]


def test_sends_user_agent_accept_and_reads_json(api: FakeApi) -> None:
    api.route("/ok", Reply(200, {"name": "Södertälje centrum"}))
    payload, response = client().get_json(api.url("/ok"), params={"q": "x"})
    assert payload == {"name": "Södertälje centrum"}
    seen = api.requests_to("/ok")[0]
    assert seen.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("Homeboard/")
    assert "(+wall dashboard)" in USER_AGENT
    assert seen.headers["Accept"] == "application/json"
    assert response.status == 200


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (500, TransientError, "HTTP 500"),
        (502, TransientError, "HTTP 502"),
        (503, TransientError, "HTTP 503"),
        (401, AuthError, "refused the credentials"),
        (403, AuthError, "refused the credentials"),
        (404, TransientError, "HTTP 404"),
    ],
)
def test_status_codes_map_onto_the_error_vocabulary(api: FakeApi, status: int, error: type, words: str) -> None:
    api.route("/x", Reply(status, {"message": "nope"}))
    with pytest.raises(error) as info:
        client().get_json(api.url("/x"))
    assert words in info.value.message
    assert f"127.0.0.1:{api.port}" in info.value.message, "the message names the host"


def test_auth_errors_wait_long(api: FakeApi) -> None:
    api.route("/x", Reply(401, {"message": "Authorization Error"}))
    with pytest.raises(AuthError) as info:
        client().get_json(api.url("/x"))
    assert info.value.retry_after_s is not None
    assert info.value.retry_after_s >= 3600


def test_429_honours_retry_after_seconds(api: FakeApi) -> None:
    api.route("/x", Reply(429, {"message": "Rate Limit Exceeded"}, headers={"Retry-After": "120"}))
    with pytest.raises(RateLimitedError) as info:
        client().get_json(api.url("/x"))
    assert info.value.retry_after_s == 120


def test_429_honours_retry_after_http_date(api: FakeApi) -> None:
    when = email.utils.formatdate(time.time() + 300, usegmt=True)
    api.route("/x", Reply(429, b"", headers={"Retry-After": when}))
    with pytest.raises(RateLimitedError) as info:
        client().get_json(api.url("/x"))
    assert 290 <= info.value.retry_after_s <= 301


def test_429_without_retry_after_waits_the_default(api: FakeApi) -> None:
    api.route("/x", Reply(429, b""))
    with pytest.raises(RateLimitedError) as info:
        client().get_json(api.url("/x"))
    assert info.value.retry_after_s == 60


def test_503_passes_retry_after_on(api: FakeApi) -> None:
    api.route("/x", Reply(503, b"busy", headers={"Retry-After": "30"}))
    with pytest.raises(TransientError) as info:
        client().get_json(api.url("/x"))
    assert info.value.retry_after_s == 30


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("0") == 1, "never spin"
    assert parse_retry_after("99999999") == 86400, "never stop polling for a year"
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == 90


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (Reply(200, b"this is not json", headers={"Content-Type": "application/json"}), "not valid JSON"),
        (Reply(200, b'{"location": {"name": "Stock', headers={"Content-Type": "application/json"}), "cut off"),
        (Reply(200, b"", headers={"Content-Type": "application/json"}), "empty answer"),
        (
            Reply(
                200, "<!DOCTYPE html><html><body>Captive portal: log in</body></html>", {"Content-Type": "text/html"}
            ),
            "HTML page",
        ),
        (Reply(200, b"<html><body>Bad gateway</body></html>", {"Content-Type": "application/json"}), "HTML page"),
    ],
)
def test_bodies_that_are_not_json_are_transient(api: FakeApi, reply: Reply, words: str) -> None:
    api.route("/x", reply)
    with pytest.raises(TransientError) as info:
        client().get_json(api.url("/x"))
    assert words in info.value.message


def test_html_error_page_with_5xx(api: FakeApi) -> None:
    api.route(
        "/x", Reply(502, "<html><head><title>502 Bad Gateway</title></head></html>", {"Content-Type": "text/html"})
    )
    with pytest.raises(TransientError) as info:
        client().get_json(api.url("/x"))
    assert "HTTP 502" in info.value.message


def test_nan_in_json_is_a_payload_error(api: FakeApi) -> None:
    api.route("/x", Reply(200, b'{"temp_c": NaN}', headers={"Content-Type": "application/json"}))
    with pytest.raises(PayloadError) as info:
        client().get_json(api.url("/x"))
    assert "NaN" in info.value.message


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError) as info:
        client().get_json(f"http://127.0.0.1:{port}/x")
    assert "connection refused" in info.value.message


def test_read_timeout(api: FakeApi) -> None:
    api.route("/slow", Reply(200, {"ok": True}, delay_s=3))
    started = time.monotonic()
    with pytest.raises(TransientError) as info:
        client(read_timeout_s=0.3).get_json(api.url("/slow"))
    assert time.monotonic() - started < 2
    assert "did not answer within 0.3 s" in info.value.message


def test_slow_drip_body_is_cut_at_the_deadline(api: FakeApi) -> None:
    # One byte every 0.1 s never trips a 0.5 s read timeout; only the overall deadline can end it.
    api.route("/drip", Reply(200, b"}", drip_bytes=b'{"a": "' + b"x" * 200, drip_interval_s=0.1))
    started = time.monotonic()
    with pytest.raises(TransientError) as info:
        client(read_timeout_s=0.5, deadline_s=1.0).get_json(api.url("/drip"))
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.5
    assert "no complete answer" in info.value.message
    assert "within 1 s" in info.value.message


def test_slow_drip_headers_are_cut_at_the_deadline() -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for byte in b"X-Padding: " + b"a" * 200:
            conn.sendall(bytes([byte]))
            time.sleep(0.1)

    raw = RawServer(script)
    try:
        started = time.monotonic()
        with pytest.raises(TransientError) as info:
            client(read_timeout_s=0.5, deadline_s=1.0).get_json(raw.url("/x"))
        assert time.monotonic() - started < 2.5
        assert "no complete answer" in info.value.message
    finally:
        raw.close()


def test_body_shorter_than_content_length_is_cut_off() -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        conn.sendall(b'{"departures": [{"line": ')
        conn.shutdown(socket.SHUT_WR)

    raw = RawServer(script)
    try:
        with pytest.raises(TransientError) as info:
            client().get_json(raw.url("/x"))
        assert "cut off" in info.value.message
    finally:
        raw.close()


def test_huge_body_with_content_length_is_refused(api: FakeApi) -> None:
    api.route("/huge", Reply(200, b"[" + b"1," * 1_500_000 + b"1]"))
    with pytest.raises(TransientError) as info:
        client().get_json(api.url("/huge"))
    assert "the limit is 2000000 bytes" in info.value.message


def test_huge_chunked_body_is_cut_at_the_cap(api: FakeApi) -> None:
    # Chunked transfer: no Content-Length to check up front; the byte count stops it.
    api.route("/huge", Reply(200, b"]", drip_bytes=b"[" + b"1," * 40, drip_interval_s=0))
    with pytest.raises(TransientError) as info:
        HttpClient("test", max_body_bytes=50).get_json(api.url("/huge"))
    assert "more than 50 bytes" in info.value.message


def test_gzip_bomb_is_capped_after_decompression(api: FakeApi) -> None:
    api.route("/bomb", Reply(200, b"[" + b"0," * 3_000_000 + b"0]", gzip_body=True))
    with pytest.raises(TransientError) as info:
        client().get_json(api.url("/bomb"))
    assert "more than 2000000 bytes" in info.value.message


def _record_target(api: FakeApi) -> None:
    api.route("/target", Reply(200, {"arrived": True}))


def test_cross_host_redirect_drops_authorization_and_api_key(api: FakeApi) -> None:
    # 127.0.0.1 and localhost are two hosts to the client, served by the same test server.
    target = api.url("/target", host="localhost") + f"?page=2&key={SECRET_KEY}"
    api.route("/start", Reply(302, b"", headers={"Location": target}))
    _record_target(api)
    payload, _ = client().get_json(
        api.url("/start"), params={"key": SECRET_KEY}, headers={"Authorization": f"Bearer {SECRET_TOKEN}"}
    )
    assert payload == {"arrived": True}
    start, arrived = api.requests_to("/start")[0], api.requests_to("/target")[0]
    assert start.headers["Authorization"] == f"Bearer {SECRET_TOKEN}", "control: the first host got it"
    assert arrived.host == "localhost"
    assert "Authorization" not in arrived.headers
    assert "key" not in arrived.query
    assert arrived.query["page"] == ["2"]


def test_same_host_redirect_keeps_authorization(api: FakeApi) -> None:
    api.route("/start", Reply(301, b"", headers={"Location": "/target"}))
    _record_target(api)
    client().get_json(api.url("/start"), headers={"Authorization": f"Bearer {SECRET_TOKEN}"})
    assert api.requests_to("/target")[0].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"


def test_post_redirect_is_not_followed(api: FakeApi) -> None:
    api.route("/token", Reply(307, b"", headers={"Location": api.url("/target", host="localhost")}))
    _record_target(api)
    with pytest.raises(TransientError) as info:
        client().request("POST", api.url("/token"), data={"client_secret": SECRET_KEY})
    assert "not following" in info.value.message
    assert api.requests_to("/target") == [], "a POST body with secrets is never replayed"


def test_redirect_loop_gives_up(api: FakeApi) -> None:
    api.route("/loop", Reply(302, b"", headers={"Location": "/loop"}))
    with pytest.raises(TransientError) as info:
        client().get_json(api.url("/loop"))
    assert "more than 3 redirects" in info.value.message
    assert len(api.requests_to("/loop")) == 4


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = require_tool("openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _tls_api(cert: Path, key: Path) -> FakeApi:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = FakeApi()
    return server.start(server.app, ssl_options=context)


def test_tls_is_verified(self_signed: tuple[Path, Path]) -> None:
    tls = _tls_api(*self_signed)
    tls.route("/x", Reply(200, {"ok": True}))
    try:
        with pytest.raises(TransientError) as info:
            client().get_json(f"https://127.0.0.1:{tls.port}/x")
        assert "TLS check failed" in info.value.message
        assert tls.requests_to("/x") == [], "nothing was sent over the untrusted connection"
        trusting = client()
        trusting.session.verify = str(self_signed[0])  # control: with the cert trusted, the same call works
        assert trusting.get_json(f"https://127.0.0.1:{tls.port}/x")[0] == {"ok": True}
    finally:
        tls.stop()


def test_https_to_http_redirect_is_refused(self_signed: tuple[Path, Path], api: FakeApi) -> None:
    tls = _tls_api(*self_signed)
    tls.route("/x", Reply(302, b"", headers={"Location": api.url("/target")}))
    _record_target(api)
    try:
        trusting = client()
        trusting.session.verify = str(self_signed[0])
        with pytest.raises(TransientError) as info:
            trusting.get_json(f"https://127.0.0.1:{tls.port}/x", params={"key": SECRET_KEY})
        assert "https to plain http" in info.value.message
        assert api.requests_to("/target") == []
    finally:
        tls.stop()


def test_redaction_helpers() -> None:
    url = f"https://api.weatherapi.com/v1/forecast.json?key={SECRET_KEY}&q=Stockholm&days=3"
    assert SECRET_KEY not in redact_url(url)
    assert "q=Stockholm" in redact_url(url)
    assert "key=REDACTED" in redact_url(url)
    assert SECRET_TOKEN not in redact_url(f"https://user:{SECRET_TOKEN}@example.com/x?access_token={SECRET_TOKEN}")
    text = f"GET /x?refresh_token={SECRET_TOKEN}&client_secret={SECRET_KEY} Authorization: Bearer {SECRET_TOKEN}"
    cleaned = redact_text(text)
    assert SECRET_TOKEN not in cleaned
    assert SECRET_KEY not in cleaned


def test_secrets_never_reach_log_lines_or_error_messages(api: FakeApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api.route("/ok", Reply(200, {"ok": True}))
    api.route("/401", Reply(401, {"message": f"bad key {SECRET_KEY}"}))
    api.route("/500", Reply(500, f"<html>error for key={SECRET_KEY}</html>"))
    api.route(
        "/redirect", Reply(302, b"", headers={"Location": api.url("/ok", host="localhost") + f"?key={SECRET_KEY}"})
    )
    api.route("/slow", Reply(200, {"ok": True}, delay_s=2))
    messages: list[str] = []
    c = client(read_timeout_s=0.3)
    for path in ("/ok", "/401", "/500", "/redirect", "/slow", "/nowhere"):
        try:
            c.get_json(api.url(path), params={"key": SECRET_KEY}, headers={"Authorization": f"Bearer {SECRET_TOKEN}"})
        except Exception as err:  # every failure kind: their messages are checked below
            messages.append(str(err))
    try:
        c.request("POST", api.url("/ok"), data={"client_secret": SECRET_KEY, "refresh_token": SECRET_TOKEN})
    except Exception as err:
        messages.append(str(err))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        c.get_json(f"http://127.0.0.1:{port}/x", params={"key": SECRET_KEY})
    except Exception as err:
        messages.append(str(err))
    assert len(messages) >= 4, "the failure paths really failed"
    logged = [r.getMessage() for r in caplog.records]
    assert any("key=REDACTED" in line for line in logged), "control: request URLs were logged, redacted"
    for text in messages + logged:
        assert SECRET_KEY not in text
        assert SECRET_TOKEN not in text


def test_a_responder_sees_the_request(api: FakeApi) -> None:
    def echo(request: Recorded) -> Reply:
        return Reply(200, {"q": request.query.get("q", [""])[0]})

    api.route("/echo", echo)
    assert client().get_json(api.url("/echo"), params={"q": "Hässelby strand"})[0] == {"q": "Hässelby strand"}
