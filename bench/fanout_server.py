"""A Homeboard server (the real app, no sources) with a publisher for fan-out benchmarks.

GET /bench/start?rate=20&count=200 starts publishing `count` updates at `rate` per second; each carries
its send time so that clients (another process) can measure delivery latency.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from server.config import parse_config
from server.core.app import Upkeep, build_services, make_app


class StartHandler(tornado.web.RequestHandler):
    def initialize(self, hub) -> None:
        self.hub = hub

    def get(self) -> None:
        rate = float(self.get_argument("rate", "20"))
        count = int(self.get_argument("count", "200"))
        asyncio.get_running_loop().create_task(publish(self.hub, rate, count))
        self.finish({"clients": len(self.hub.clients)})


async def publish(hub, rate: float, count: int) -> None:
    start = time.monotonic()
    seq = 0
    while seq < count:
        # Absolute schedule: publish every update that is due, so timer granularity never lowers the rate.
        due = min(count, int((time.monotonic() - start) * rate) + 1)
        while seq < due:
            hub.publish(
                "sensor/bench",
                {
                    "seq": seq,
                    "sent_at": time.time(),
                    "name": "Living room",
                    "temperature_c": 21.5 + seq % 10 / 10,
                    "humidity_pct": 40.2,
                    "pressure_hpa": 1012.3,
                    "measured_at": "2026-11-25T14:05:00+01:00",
                    "source": "bench",
                },
            )
            seq += 1
        await asyncio.sleep(min(1.0 / rate, 0.01))


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data-dir", required=True)
    args = p.parse_args()
    services = build_services(parse_config({"data_dir": args.data_dir}, env={}))
    app = make_app(services, [(r"/bench/start", StartHandler, {"hub": services.hub})])
    http = HTTPServer(app)
    http.add_sockets(bind_sockets(args.port, "127.0.0.1", backlog=2048))
    Upkeep(services, None).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
