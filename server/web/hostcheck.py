"""DNS rebinding defence: a request whose Host is not one of this server's own names is refused with 421.

A web page on the internet can point its own domain at 192.168.1.20 (or 127.0.0.1) after loading, and then
read /api/state or open /ws from the visitor's browser: the browser still believes it talks to the page's own
origin, so neither CORS nor the WebSocket Origin check notices. The one thing it cannot forge is the Host
header, which carries the attacker's name. So only our own names are served:

  127.0.0.1, ::1, localhost, the address the server binds, the machine's hostname and hostname.local,
  every address of this machine's interfaces when binding 0.0.0.0 / :: (a phone on the LAN types
  http://192.168.1.20:8080/), and whatever server.allowed_hosts lists (a DNS name or a reverse proxy's).

The port is not part of the check: an attacker's page cannot make a browser send one of our names, whatever
port it uses. The rule is applied in HostCheckedApplication.find_handler, which every request passes through
before any handler runs (the page, the API, the ingest, the /ws upgrade).
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import tornado.httputil
import tornado.web

from server.core.jsonutil import dumpb

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
WILDCARD_BINDS = ("", "0.0.0.0", "::", "*")  # noqa: S104 - the names of "every interface", compared, not bound
# A DHCP lease can change the Pi's address while it runs: an unknown address literal re-reads the interface
# addresses, at most this often (so a flood of refused requests costs nothing).
REREAD_INTERFACES_S = 30.0


def interface_addresses(proc_net: str = "/proc/net") -> set[str]:
    """Every IPv4 and IPv6 address of this machine's interfaces (Linux /proc; no extra package needed).

    IPv4: the "/32 host LOCAL" leaves of fib_trie (every address, secondary ones included); IPv6: if_inet6.
    Elsewhere (or if /proc is unreadable) the addresses the hostname resolves to.
    """
    found: set[str] = set()
    try:
        lines = Path(proc_net, "fib_trie").read_text().splitlines()
    except OSError:
        lines = []
    for previous, line in itertools.pairwise(lines):
        if line.strip() == "/32 host LOCAL":
            found.add(previous.strip().lstrip("|-+ ").strip())
    try:
        for line in Path(proc_net, "if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
        except OSError:
            pass
    return {_normalise_address(a) for a in found if _normalise_address(a)}


def _normalise_address(text: str) -> str:
    """An IP literal in its canonical form ("::1", "192.168.1.20"); "" when it is not one."""
    try:
        return str(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return ""


def host_name_of(header: str) -> str:
    """The name part of a Host header, lower case: "[::1]:8080" → "::1", "Pi.local.:80" → "pi.local"."""
    text = header.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        return text[1:end] if end > 0 else text
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")  # "localhost." is the same name, written fully qualified


class HostPolicy:
    """Which Host headers this server answers. Built once at start; `allows()` is a set lookup."""

    def __init__(
        self,
        names: Iterable[str],
        *,
        with_interfaces: bool = False,
        addresses: Callable[[], set[str]] = interface_addresses,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.names = {host_name_of(n) for n in names if n}
        self.with_interfaces = with_interfaces
        self._addresses = addresses
        self._clock = clock
        self.interface_names: set[str] = addresses() if with_interfaces else set()
        self._read_at = clock()

    @classmethod
    def for_server(cls, bind_host: str, allowed_hosts: Iterable[str], **kwargs: Any) -> HostPolicy:
        hostname = socket.gethostname().lower()
        names = [*LOOPBACK_NAMES, hostname, f"{hostname}.local", *allowed_hosts]
        wildcard = bind_host.strip() in WILDCARD_BINDS
        if not wildcard:
            names.append(bind_host)
        policy = cls(names, with_interfaces=wildcard, **kwargs)
        # Said once at start, so that a 421 from a name a user expected to work is easy to explain.
        log.info("answering to the host names %s", ", ".join(sorted(policy.names | policy.interface_names)))
        return policy

    def allows(self, host_header: str | None) -> bool:
        if host_header is None:
            return True  # HTTP/1.0 without Host: no browser sends that, so no page can be behind it
        name = host_name_of(host_header)
        if name in self.names or name in self.interface_names:
            return True
        address = _normalise_address(name)
        if not address:
            return False
        if address in self.names or address in self.interface_names:
            return True  # another spelling of one of our addresses (::0:1, an expanded IPv6)
        if self.with_interfaces and self._clock() - self._read_at >= REREAD_INTERFACES_S:
            self._read_at = self._clock()
            self.interface_names = self._addresses()
            return address in self.interface_names
        return False


@tornado.web.stream_request_body  # so prepare() answers before any body is read
class MisdirectedHandler(tornado.web.RequestHandler):
    """421 for a Host that is not ours, before any route runs; the body (if any) is not read."""

    def prepare(self) -> None:
        self.clear_header("Server")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_status(421)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        name = host_name_of(self.request.headers.get("Host", ""))[:100]
        self.finish(
            dumpb({"error": f'host "{name}" is not one of this server\'s names; add it to server.allowed_hosts'})
        )


class HostCheckedApplication(tornado.web.Application):
    """A tornado Application that refuses foreign Host headers for every route, before routing."""

    def __init__(self, handlers: list[Any], *, host_policy: HostPolicy, **settings: Any) -> None:
        super().__init__(handlers, **settings)
        self.host_policy = host_policy

    def find_handler(self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        if not self.host_policy.allows(request.headers.get("Host")):
            return self.get_handler_delegate(request, MisdirectedHandler)
        return super().find_handler(request, **kwargs)
