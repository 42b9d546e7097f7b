"""GET /api/state without a RequestHandler: the busiest route, answered from the hub's pre-encoded bytes.

Every page and LAN browser polls or reloads it, so its cost per request is the server's cost per viewer.
A tornado.web.RequestHandler spends as much CPU around the body as on sending it (building and clearing its
header set, the ETag hash of the whole body, the prepare/finish chain, the access-log hook). Here the
request goes from Tornado's router straight to an HTTPMessageDelegate (public Tornado API) that writes the
status line, the headers and the body in one write. Only GET takes this path: any other method falls
through to the next route (StateHandler), which answers 405 as every handler does.

The headers are the ones every JSON answer carries (server.web.base.JSON_HEADERS), so both paths agree.
"""

from __future__ import annotations

import logging
import time

from tornado import httputil
from tornado.routing import Router

from server.core.hub import Hub
from server.web.base import JSON_HEADERS

log = logging.getLogger("server.web.app")  # the access log's logger (log_request)

_OK = httputil.ResponseStartLine("", 200, "OK")  # HTTP1Connection fills in the protocol version


class _DateHeader:
    """The Date header, formatted once per second instead of once per request."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._text = now, httputil.format_timestamp(now)
        return self._text


class _StateResponse(httputil.HTTPMessageDelegate):
    """One GET /api/state: nothing to read (a body, if any, is ignored as StateHandler ignores it)."""

    __slots__ = ("connection", "route")

    def __init__(self, route: StateRoute, connection: httputil.HTTPConnection) -> None:
        self.route = route
        self.connection = connection

    def finish(self) -> None:
        route = self.route
        body = route.hub.state_body()
        headers = httputil.HTTPHeaders(route.headers)
        headers["Date"] = route.date()
        headers["Content-Length"] = str(len(body))
        self.connection.write_headers(_OK, headers, body)
        self.connection.finish()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("200 GET /api/state (%d bytes)", len(body))


class StateRoute(Router):
    """Route target for r"/api/state": GET is answered here, anything else goes on to the next rule."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.headers = httputil.HTTPHeaders(JSON_HEADERS)
        self.date = _DateHeader()

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: object) -> _StateResponse | None:
        if request.method != "GET" or request.connection is None:
            return None
        return _StateResponse(self, request.connection)
