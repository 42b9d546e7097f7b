"""What the server shows the LAN, on a real server over real sockets: only the page's own files, only requests
addressed to one of its own names (DNS rebinding), and a JSON 401/404/413 for an ingest body of any size."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from server.config import ConfigError
from server.web.hostcheck import HostPolicy, host_name_of, interface_addresses
from server.web.page import PageStaticHandler, is_page_file
from tests.conftest import REPO, make_config, require, require_tool
from tests.procutil import ServerProcess
from tests.serverthread import ServerThread

TOKEN = "balcony-token-0123456789abcdef"
DISPLAY_TOKEN = "display-token-0123456789abcdef"
INGEST = "/api/sensors/balcony/readings"
HOSTNAME = socket.gethostname().lower()


def request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    host: str | None = None,
    address: str = "127.0.0.1",
    read_while_sending: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request over a plain socket: any Host header, any body framing. (status, headers, body)."""
    head = {"Host": host if host is not None else f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    if body and "Transfer-Encoding" not in head:
        head.setdefault("Content-Length", str(len(body)))
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items())]
    data = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body
    response = b""
    with socket.create_connection((address, port), timeout=20) as s:
        if read_while_sending:  # as curl does: the answer is read even if the server stops reading early
            sender = threading.Thread(target=_send_quietly, args=(s, data), daemon=True)
            sender.start()
        else:
            s.sendall(data)
        try:
            while chunk := s.recv(65536):
                response += chunk
        except ConnectionResetError:
            pass  # after the answer: the server closed a connection that was still sending
    head_bytes, _, rest = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    parsed = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), parsed, rest


def _send_quietly(s: socket.socket, data: bytes) -> None:
    try:
        s.sendall(data)
    except OSError:
        pass


def chunked(body: bytes, piece: int = 16384) -> bytes:
    out = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + piece]), body[i : i + piece]) for i in range(0, len(body), piece)
    )
    return out + b"0\r\n\r\n"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerThread]:
    config = make_config(
        tmp_path,
        server={"allowed_hosts": ["wall.home.arpa", "10.9.8.7"]},
        remote_sensors=[{"id": "balcony", "token": TOKEN}],
        display={"token": DISPLAY_TOKEN},
    )
    server = ServerThread(config).start()
    yield server
    server.stop()


# ------------------------------------------------------------------------------ only the page's files


def test_the_page_and_its_assets_are_served(srv: ServerThread) -> None:
    for path, kind in [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/css/base.css", "text/css"),
        ("/js/main.js", "javascript"),
        ("/icons/favicon.svg", "image/svg+xml"),
    ]:
        status, headers, _ = request(srv.port, "GET", path)
        assert status == 200, path
        assert kind in headers["content-type"], path


def test_every_file_the_page_references_is_served(srv: ServerThread) -> None:
    """What index.html and the scripts load must pass the allow-list (a new asset type would show up here)."""
    import re

    html = (REPO / "kiosk" / "index.html").read_text()
    scripts = "".join(p.read_text() for p in (REPO / "kiosk" / "js").glob("*.js"))
    refs = set(re.findall(r'(?:href|src)="(/[^"]+)"', html))
    refs |= {f"/js/{m}" for m in re.findall(r"""from\s+["']\./([\w./-]+\.js)["']""", scripts)}
    refs |= {f"/icons/{m}" for m in re.findall(r"""["']/icons/([\w.-]+\.svg)["']""", scripts)}
    assert len(refs) > 5
    for path in sorted(refs):
        assert request(srv.port, "GET", path)[0] == 200, path


@pytest.mark.parametrize(
    "path",
    [
        "/launcher/homeboard_kiosk.py",
        "/launcher/",
        "/launcher",
        "/js/../launcher/homeboard_kiosk.py",
        "/%2e%2e/server/app.py",
        "/..%2fconfig.yaml",
        "/.git/config",
        "/.env",
        "/js/.eslintrc.js",
        "/README.md",
        "/config.yaml",
        "/js/main.js.map",
        "/js/main.py",
        "/icons/favicon.svg.bak",
        "/css/base.css~",
        "/index.htm",
        "/main.js",
        "/js",
        "/icons/",
    ],
)
def test_everything_else_is_404(srv: ServerThread, path: str) -> None:
    status, _, body = request(srv.port, "GET", path)
    assert status == 404, (path, status)
    assert b"import" not in body
    assert b"def " not in body


def test_nothing_of_the_launcher_leaks_through_head_or_odd_spellings(srv: ServerThread) -> None:
    source = (REPO / "kiosk" / "launcher" / "homeboard_kiosk.py").read_bytes()
    for method, path in [
        ("HEAD", "/launcher/homeboard_kiosk.py"),
        ("GET", "/launcher//homeboard_kiosk.py"),
        ("GET", "/launcher/homeboard_kiosk.py?x=1"),
        ("GET", "//launcher/homeboard_kiosk.py"),
    ]:
        status, _, body = request(srv.port, method, path)
        assert status in (400, 404), (method, path, status)
        assert source[:200] not in body


def test_dotfiles_and_other_files_present_in_the_web_root_are_not_served(tmp_path: Path) -> None:
    """The handler itself on a real server, over a root that does hold dotfiles, a README, Python and more."""
    root = tmp_path / "kiosk"
    files = {
        "index.html": b"<!doctype html>",
        "js/main.js": b"export {}",
        "fonts/inter.woff2": b"wOF2",
        ".env": b"SECRET=1",
        ".git/config": b"[core]",
        "js/.hidden.js": b"secret",
        ".well-known/x.js": b"secret",
        "README.md": b"readme",
        "notes.txt": b"notes",
        "launcher/homeboard_kiosk.py": b"import os",
        "js/build.py": b"import os",
        "css/theme.css.orig": b"old",
        "fonts/LICENSE": b"license",
    }
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    served = {"index.html", "js/main.js", "fonts/inter.woff2"}
    app = tornado.web.Application(
        [(r"/(.*)", PageStaticHandler, {"path": str(root), "default_filename": "index.html"})]
    )
    port_holder: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        import asyncio

        async def main() -> None:
            sockets = bind_sockets(0, "127.0.0.1")
            server = HTTPServer(app)
            server.add_sockets(sockets)
            port_holder["port"] = sockets[0].getsockname()[1]
            port_holder["stop"] = asyncio.Event()
            port_holder["loop"] = asyncio.get_running_loop()
            ready.set()
            await port_holder["stop"].wait()
            server.stop()

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        for name, content in files.items():
            status, _, body = request(port_holder["port"], "GET", "/" + name)
            if name in served:
                assert (status, body) == (200, content), name
            else:
                assert status == 404, (name, status)
                assert content not in body
    finally:
        port_holder["loop"].call_soon_threadsafe(port_holder["stop"].set)
        thread.join(5)


def test_page_file_rule() -> None:
    assert is_page_file("")
    assert is_page_file("index.html")
    assert is_page_file("js/widgets/clock.js")
    assert is_page_file("fonts/Inter.WOFF2")
    assert not is_page_file("js/.x.js")
    assert not is_page_file(".index.html")
    assert not is_page_file("launcher/x.html")
    assert not is_page_file("js/main")
    assert not is_page_file("js//main.js")


# ------------------------------------------------------------------------------ Host check (DNS rebinding)

FOREIGN = [
    "evil.example",
    "evil.example:8080",
    f"{HOSTNAME}.evil.example",
    "127.0.0.1.nip.io",
    "localhost.evil",
    "0x7f.1",
]


@pytest.mark.parametrize("host", FOREIGN)
def test_a_foreign_host_is_refused_on_every_route(srv: ServerThread, host: str) -> None:
    routes = [
        ("GET", "/", b""),
        ("GET", "/js/main.js", b""),
        ("GET", "/api/state", b""),
        ("GET", "/api/config", b""),
        ("GET", "/healthz", b""),
        ("GET", "/metrics", b""),
        ("GET", "/api/nothing", b""),
        ("GET", "/api/display", b""),
        ("GET", "/api/sensors/balcony/history", b""),
        ("HEAD", "/api/state", b""),
        ("OPTIONS", "/api/state", b""),
        ("POST", INGEST, b'{"temperature_c": 20.5}'),
    ]
    for method, path, body in routes:
        headers = {"Authorization": f"Bearer {TOKEN}"} if method == "POST" else {}
        status, answer_headers, answer = request(srv.port, method, path, headers, body, host=host)
        assert status == 421, (host, method, path, status)
        assert answer_headers["content-type"].startswith("application/json")
        if method != "HEAD":
            assert "server.allowed_hosts" in json.loads(answer)["error"]
    assert srv.call(lambda: srv.board.hub.get("sensor/balcony").data) is None, "the refused POST stored nothing"


def ws_upgrade(port: int, host: str, origin: str | None = None) -> int:
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
    if origin is not None:
        headers["Origin"] = origin
    lines = ["GET /ws HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall("\r\n".join(lines).encode() + b"\r\n\r\n")
        first = s.recv(4096).split(b"\r\n", 1)[0]
    return int(first.split()[1])


def test_websocket_upgrade_checks_host_and_origin(srv: ServerThread) -> None:
    own = f"127.0.0.1:{srv.port}"
    assert ws_upgrade(srv.port, own) == 101
    assert ws_upgrade(srv.port, own, origin=f"http://{own}") == 101
    assert ws_upgrade(srv.port, f"localhost:{srv.port}", origin=f"http://localhost:{srv.port}") == 101
    # DNS rebinding: the attacker's page is same-origin with its own name, so only the Host check catches it.
    rebound = f"evil.example:{srv.port}"
    assert ws_upgrade(srv.port, rebound, origin=f"http://{rebound}") == 421
    assert ws_upgrade(srv.port, rebound) == 421
    # A foreign page opening a socket to our real name: the Origin check (kept) refuses it.
    assert ws_upgrade(srv.port, own, origin="http://evil.example") == 403
    assert ws_upgrade(srv.port, own, origin="null") == 403


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.1:{port}",
        "localhost",
        "localhost:{port}",
        "LocalHost.:{port}",
        "[::1]",
        "[::1]:{port}",
        HOSTNAME,
        f"{HOSTNAME}:{{port}}",
        f"{HOSTNAME}.local",
        f"{HOSTNAME}.local:{{port}}",
        "wall.home.arpa",
        "wall.home.arpa:443",
        "10.9.8.7:{port}",
    ],
)
def test_own_names_and_allowed_hosts_are_served(srv: ServerThread, host: str) -> None:
    host = host.replace("{port}", str(srv.port))
    for path in ("/api/state", "/healthz", "/"):
        assert request(srv.port, "GET", path, host=host)[0] == 200, (host, path)
    assert ws_upgrade(srv.port, host, origin=f"http://{host}") == 101


def test_missing_host_is_refused_by_http11_and_tolerated_for_http10(srv: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert s.recv(100).split()[1] == b"200"  # no browser sends this: nothing to rebind
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert s.recv(100).split()[1] == b"400"


def test_a_phone_on_the_lan_reaches_a_server_bound_to_all_interfaces(tmp_path: Path) -> None:
    """python -m server on 0.0.0.0, reached at this machine's own non-loopback address as a phone would."""
    lan = sorted(a for a in interface_addresses() if ":" not in a and not a.startswith("127."))
    require(lan, "this machine has no non-loopback IPv4 address")  # a container with only lo
    address = lan[0]
    proc = ServerProcess(tmp_path, {"server": {"host": "0.0.0.0"}})
    try:
        proc.wait_ready()
        status, _, body = request(proc.port, "GET", "/api/state", host=f"{address}:{proc.port}", address=address)
        assert status == 200
        assert "topics" in json.loads(body)
        assert request(proc.port, "GET", "/", host=f"{address}:{proc.port}", address=address)[0] == 200
        assert request(proc.port, "GET", "/api/state", host=f"evil.example:{proc.port}", address=address)[0] == 421
        # "0.0.0.0 day": a public page asking the browser for http://0.0.0.0:port/ reaches this machine's services.
        assert request(proc.port, "GET", "/api/state", host=f"0.0.0.0:{proc.port}")[0] == 421
    finally:
        proc.stop()


def test_interface_addresses_match_what_ip_reports() -> None:
    import subprocess

    ip = require_tool("ip", hint="iproute2 provides it")
    out = subprocess.run([ip, "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    reported = {line.split()[3].split("/")[0] for line in out.splitlines()}
    assert reported
    assert reported - interface_addresses() == set()


def test_host_policy_rereads_addresses_after_a_new_dhcp_lease() -> None:
    now = [0.0]
    addresses = [{"192.168.1.20"}]
    policy = HostPolicy.for_server("0.0.0.0", [], addresses=lambda: set(addresses[0]), clock=lambda: now[0])
    assert policy.allows("192.168.1.20:8080")
    addresses[0] = {"192.168.1.31"}
    assert not policy.allows("192.168.1.31:8080")  # read once at start, not per request...
    now[0] += 31
    assert policy.allows("192.168.1.31:8080")  # ...but an unknown address literal re-reads them, rarely
    assert not policy.allows("evil.example")
    assert policy.allows("[::1]:8080")
    assert host_name_of("[FD00::2]:80") == "fd00::2"


def test_a_specific_bind_address_is_an_own_name_and_the_others_are_not() -> None:
    policy = HostPolicy.for_server("192.168.1.20", [], addresses=lambda: {"10.0.0.5"})
    assert policy.allows("192.168.1.20:8080")
    assert not policy.allows("10.0.0.5:8080")  # not bound there: not ours to answer for


@pytest.mark.parametrize(
    "value",
    ["http://wall.lan", "wall.lan:8080", "*.home.arpa", "wall.lan/x", "", "a b", "[::1", "1.2.3"],
)
def test_allowed_hosts_is_validated(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, server={"allowed_hosts": ["ok.lan", value]})
    assert str(info.value).startswith("server.allowed_hosts[1]: expected a host name or address")


def test_allowed_hosts_accepts_names_and_addresses(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path, server={"allowed_hosts": ["wall.home.arpa", "Pi-4.local.", "192.168.1.20", "[fd00::2]"]}
    )
    assert cfg.server.allowed_hosts == ("wall.home.arpa", "Pi-4.local.", "192.168.1.20", "[fd00::2]")


def test_config_yaml_documents_allowed_hosts() -> None:
    text = (REPO / "config.yaml").read_text()
    assert "allowed_hosts: []" in text
    assert "421" in text


# ------------------------------------------------------------------------------ ingest answers of any size


def ingest(srv: ServerThread, body: bytes, token: str | None, *, chunked_body: bool = False, **kw: Any) -> tuple:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if chunked_body:
        headers["Transfer-Encoding"] = "chunked"
        body = chunked(body)
    status, answer_headers, answer = request(srv.port, "POST", kw.pop("path", INGEST), headers, body, **kw)
    return status, answer_headers, json.loads(answer) if answer else None


MB = b'{"temperature_c": 21.5, "pad": "' + b"x" * 1_048_576 + b'"}'


@pytest.mark.parametrize("chunked_body", [False, True], ids=["content-length", "chunked"])
def test_a_1mb_body_gets_401_404_or_413_as_json(srv: ServerThread, chunked_body: bool) -> None:
    status, headers, answer = ingest(srv, MB, "wrong-token", chunked_body=chunked_body)
    assert (status, answer) == (401, {"error": "unauthorized"})
    assert headers["content-type"].startswith("application/json")
    assert headers["www-authenticate"].startswith("Bearer")
    assert ingest(srv, MB, None, chunked_body=chunked_body)[::2] == (401, {"error": "unauthorized"})
    status, _, answer = ingest(srv, MB, TOKEN, chunked_body=chunked_body, path="/api/sensors/attic/readings")
    assert status == 404
    assert "unknown sensor" in answer["error"]
    status, _, answer = ingest(srv, MB, TOKEN, chunked_body=chunked_body)
    assert (status, answer) == (413, {"error": "body: larger than 4096 bytes"})
    # And the server goes on taking readings.
    assert ingest(srv, b'{"temperature_c": 21.5}', TOKEN, chunked_body=chunked_body)[0] == 201


@pytest.mark.parametrize("chunked_body", [False, True], ids=["content-length", "chunked"])
def test_a_body_past_the_drain_limit_is_answered_then_cut(srv: ServerThread, chunked_body: bool) -> None:
    huge = b"x" * (9 << 20)
    status, _, answer = ingest(srv, huge, "wrong-token", chunked_body=chunked_body, read_while_sending=True)
    assert (status, answer) == (401, {"error": "unauthorized"})
    status, _, answer = ingest(srv, huge, TOKEN, chunked_body=chunked_body, read_while_sending=True)
    assert (status, answer) == (413, {"error": "body: larger than 4096 bytes"})
    assert ingest(srv, b'{"temperature_c": 21.5}', TOKEN)[0] == 201


@pytest.mark.parametrize("chunked_body", [False, True], ids=["content-length", "chunked"])
def test_the_display_switch_answers_json_for_a_body_of_any_size(srv: ServerThread, chunked_body: bool) -> None:
    """POST /api/display takes the same care: 401 or 413 as JSON, never tornado's bare 400, and goes on working."""
    for body in (MB, b"x" * (9 << 20)):
        kw = {"chunked_body": chunked_body, "path": "/api/display", "read_while_sending": True}
        status, headers, answer = ingest(srv, body, "wrong-token", **kw)
        assert (status, answer) == (401, {"error": "missing or wrong bearer token"})
        assert headers["content-type"].startswith("application/json")
        assert ingest(srv, body, DISPLAY_TOKEN, **kw)[::2] == (413, {"error": "body: larger than 1024 bytes"})
    status, _, answer = ingest(srv, b'{"power": "off"}', DISPLAY_TOKEN, path="/api/display", chunked_body=chunked_body)
    assert status == 409  # read and understood: this test server has no screen switch (display.backend: none)
    assert "display.backend is none" in answer["error"]


def test_a_1mb_body_with_a_wrong_token_through_a_plain_http_client(srv: ServerThread) -> None:
    """urllib, as a device's firmware or a shell script would post: it reads the JSON error, no reset."""
    req = urllib.request.Request(srv.url + INGEST, data=MB, method="POST", headers={"Authorization": "Bearer nope"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=20)
    assert info.value.code == 401
    assert json.loads(info.value.read()) == {"error": "unauthorized"}


@pytest.mark.parametrize("size", [1 << 20, 9 << 20], ids=["1MiB", "9MiB"])
@pytest.mark.parametrize("chunked_body", [False, True], ids=["content-length", "chunked"])
def test_curl_posting_a_large_body_with_a_wrong_token_reads_the_json_401(
    srv: ServerThread, tmp_path: Path, size: int, chunked_body: bool
) -> None:
    """curl as a user would run it: it sends Expect: 100-continue for a large body, so the answer can come first."""
    curl = require_tool("curl")
    body = tmp_path / "body.json"
    body.write_bytes(b'{"temperature_c": 1, "pad": "' + b"x" * size + b'"}')
    args = [curl, "-sS", "-o", "-", "-w", "\n%{http_code}", "-H", "Authorization: Bearer wrong"]
    if chunked_body:
        args += ["-H", "Transfer-Encoding: chunked"]
    run = subprocess.run(
        [*args, "--data-binary", f"@{body}", srv.url + INGEST], capture_output=True, text=True, timeout=60
    )
    answer, _, code = run.stdout.rpartition("\n")
    assert (code, json.loads(answer)) == ("401", {"error": "unauthorized"}), run.stderr
