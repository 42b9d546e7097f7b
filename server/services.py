"""The objects a running Homeboard is built from, passed to every feature's install()."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from server.config import Config
from server.hub import Hub
from server.runner import SourceRunner


@dataclass
class Services:
    """Built once in server.app.build_services; no globals anywhere else.

    Features (see server.app.FEATURES) get this object in install(services) and may:
      - services.runner.add(source)            poll a Source (server.sources.base) on its interval
      - services.hub.publish(topic, data)      publish from the event-loop thread
      - services.hub.add_listener(fn)          fn(topic, state_dict) on every change (loop thread)
      - services.hub.add_heartbeat_listener(fn)  fn(client_id, message_dict) for WS heartbeats
      - services.on_start / on_stop            async callables run at start-up / shutdown
      - services.health_extra[name] = fn       fn() -> dict merged into /healthz under "name"
      - services.extras[name] = obj            share an object with another feature (e.g. "history")
    """

    config: Config
    hub: Hub
    runner: SourceRunner
    executor: concurrent.futures.ThreadPoolExecutor
    data_dir: str
    version: str
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    health_extra: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    demo_urls: dict[str, str] = field(default_factory=dict)  # demo: stand-in base URLs by source name
