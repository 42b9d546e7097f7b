"""N lightweight WebSocket clients in one process: raw asyncio protocols, so the clients are not the bottleneck.

Prints one JSON line: received counts, latencies (ms) and lost messages for updates with a `sent_at`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import time


class Client(asyncio.Protocol):
    def __init__(self, host: str, port: int, latencies: list[float], seen: list[set[int]], done: asyncio.Event) -> None:
        self.buf = bytearray()
        self.handshaken = False
        self.host, self.port = host, port
        self.latencies = latencies
        self.seqs: set[int] = set()
        seen.append(self.seqs)
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.handshaken:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            del self.buf[: end + 4]
            self.handshaken = True
        now = time.time()
        while len(self.buf) >= 2:
            n = self.buf[1] & 0x7F
            off = 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n, off = int.from_bytes(self.buf[2:4], "big"), 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n, off = int.from_bytes(self.buf[2:10], "big"), 10
            if len(self.buf) < off + n:
                return
            opcode = self.buf[0] & 0x0F
            payload = bytes(self.buf[off : off + n])
            del self.buf[: off + n]
            if opcode == 0x9:  # ping: answer, or the server drops us as half-open (as it should)
                self.transport.write(masked_frame(0xA, payload))
                continue
            if opcode != 1:
                continue
            msg = json.loads(payload)
            if msg.get("type") == "snapshot":
                if not self.connected.done():
                    self.connected.set_result(True)
                continue
            data_ = msg.get("data") or {}
            if "sent_at" in data_:
                self.latencies.append((now - data_["sent_at"]) * 1000)
                self.seqs.add(data_["seq"])


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client→server frame: clients must mask (RFC 6455 §5.3). Control payloads are < 126 bytes."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--rate", type=float, default=20)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--start", action="store_true", help="this process triggers the publisher")
    p.add_argument("--hold", type=float, default=0, help="only stay connected this many seconds (idle clients)")
    args = p.parse_args()
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    seen: list[set[int]] = []
    done = asyncio.Event()
    protos = []
    for i in range(0, args.clients, 100):  # connect in batches: a backlog of 1000 SYNs at once is not the test
        batch = [
            loop.create_connection(
                lambda: Client("127.0.0.1", args.port, latencies, seen, done), "127.0.0.1", args.port
            )
            for _ in range(min(100, args.clients - i))
        ]
        for _t, proto in await asyncio.gather(*batch):
            protos.append(proto)
        await asyncio.gather(*(pr.connected for pr in protos))
    print(json.dumps({"connected": len(protos)}), flush=True)
    if args.hold:
        await asyncio.sleep(args.hold)
        return
    if args.start:
        import urllib.request

        await asyncio.sleep(0.5)
        await loop.run_in_executor(
            None,
            lambda: urllib.request.urlopen(
                f"http://127.0.0.1:{args.port}/bench/start?rate={args.rate}&count={args.count}"
            ).read(),
        )
    # Wait for the run: count/rate seconds plus a grace period for the tail.
    deadline = time.monotonic() + args.count / args.rate + 30
    expected = args.count * len(protos)
    while time.monotonic() < deadline and len(latencies) < expected:
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    lost = sum(args.count - len(s) for s in seen)
    print(
        json.dumps(
            {
                "clients": len(protos),
                "received": len(latencies),
                "lost": lost,
                "p50_ms": round(pct(latencies, 0.50), 2),
                "p99_ms": round(pct(latencies, 0.99), 2),
                "max_ms": round(max(latencies) if latencies else float("nan"), 2),
            }
        ),
        flush=True,
    )
    for pr in protos:
        pr.transport.close()


if __name__ == "__main__":
    asyncio.run(main())
