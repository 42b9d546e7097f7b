"""N WebSocket clients in one process, and the device that feeds the server: the load side of `make bench`.

Raw non-blocking sockets read from the loop's reader callbacks, so that the clients cost little next to the
server they measure; each frame is timed twice (see Client). The device posts
readings (`--drive post`: POST /api/sensors/{id}/readings with a bearer token, a new connection per reading
as a LAN sensor does) or publishes them to an MQTT broker (`--drive mqtt`, QoS 1). Each reading carries its
sequence number in `humidity_pct` (seq/100), which the server echoes in the `sensor/{id}` topic, so every
frame is matched to the moment its reading was sent: the latency is POST/publish → frame, per client.
`measured_at` is the send time (increasing, so no reading is older than the one shown).

Prints one JSON line when connected ({"connected": N}), then one with the figures.
`--hold S` only keeps the clients connected for S seconds (idle clients).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import re
import socket
import struct
import sys
import time
from pathlib import Path

# The sequence number travels as humidity_pct = seq / 100 (0.00 … 99.99): at most 10,000 readings a run.
MAX_READINGS = 10_000
SEQ_RE = re.compile(rb'"humidity_pct":\s*(\d+(?:\.\d+)?)')
WARMUP = 10  # the first readings of a run wake caches and the history writer: sent, not counted


# Linux's SO_TIMESTAMPNS (asm-generic/socket.h; the socket module does not name it): each read carries the
# time its data reached this socket, a struct timespec of CLOCK_REALTIME (two native longs).
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("@ll")
ANCILLARY_BYTES = socket.CMSG_SPACE(TIMESPEC.size)
# One receive buffer for every client: the loop reads one socket at a time and parses before the next read.
SCRATCH = bytearray(65536)
SCRATCH_VIEW = memoryview(SCRATCH)


class Client:
    """One WebSocket client on a raw non-blocking socket, read with recvmsg from the loop's reader callback.

    Each frame gets two times: when it reached the socket (the kernel's receive time stamp: the server's
    latency) and when this process read it (that plus the wait behind the other clients' frames here: a
    thousand browsers do not share one Python thread, these clients do).
    """

    def __init__(self, host: str, port: int, arrivals: list[tuple[int, float, float]]) -> None:
        self.buf = bytearray()
        self.host, self.port = host, port
        self.arrivals = arrivals  # (seq, reached the socket, read), perf_counter seconds, shared by all clients
        self.seqs: set[int] = set()
        self.loop = asyncio.get_running_loop()
        self.connected = self.loop.create_future()  # done once the snapshot frame is in
        self.handshaken = False
        self.closed = False
        self.unstamped = 0  # reads that came without the kernel's receive time
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

    async def connect(self) -> None:
        await self.loop.sock_connect(self.sock, (self.host, self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        await self.loop.sock_sendall(self.sock, request)
        self.loop.add_reader(self.sock.fileno(), self.readable)
        await self.connected

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("closed before the snapshot"))

    def readable(self) -> None:
        try:
            nbytes, ancillary, _flags, _addr = self.sock.recvmsg_into((SCRATCH,), ANCILLARY_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        read = time.perf_counter()  # first thing: parsing below must not count as server latency
        if nbytes == 0:
            self.close()
            return
        reached = None
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = TIMESPEC.unpack(data)
                # CLOCK_REALTIME → perf_counter (CLOCK_MONOTONIC), with the offset of this very moment
                reached = sec + nsec / 1e9 - (time.time() - read)
        if reached is None:  # reported: a figure without the kernel's time would quietly include our own queue
            self.unstamped += 1
            reached = read
        self.buf += SCRATCH_VIEW[:nbytes]
        if not self.handshaken:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            del self.buf[: end + 4]
            self.handshaken = True
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
                self.sock.send(masked_frame(0xA, payload))
                continue
            if opcode != 1:
                continue
            if not self.connected.done():
                if payload.startswith(b'{"type":"snapshot"'):
                    self.connected.set_result(True)
                continue
            if b'"topic":"sensor/bench' not in payload:
                continue
            m = SEQ_RE.search(payload)
            if m:
                seq = round(float(m.group(1)) * 100)
                self.seqs.add(seq)
                self.arrivals.append((seq, reached, read))


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


def reading(seq: int) -> dict[str, object]:
    now = dt.datetime.now(dt.UTC)
    return {
        "temperature_c": 21.5,
        "humidity_pct": seq / 100,
        "measured_at": now.isoformat(timespec="milliseconds"),
    }


async def post_reading(
    args: argparse.Namespace, seq: int, device: asyncio.Lock, sent: dict[int, float], ok: list[int]
) -> None:
    """One reading of device seq % sensors. A device posts one reading at a time, as a real one does: its
    readings reach the server in the order it measured them (else the ordering rule rightly keeps a late one
    out of the topic, and the bench would count it lost)."""
    sensor_id = f"{args.sensor}{seq % args.sensors}"
    async with device:
        body = json.dumps(reading(seq)).encode()
        request = (
            f"POST /api/sensors/{sensor_id}/readings HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
            f"Authorization: Bearer {args.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        sent[seq] = time.perf_counter()
        writer.write(request)
        status_line = await reader.readline()
        await reader.read()  # Connection: close: the rest of the answer
        writer.close()
    if b" 201 " in status_line:
        ok.append(seq)


async def drive(args: argparse.Namespace, sent: dict[int, float], ok: list[int]) -> None:
    """Send `count` readings at `rate`/s on an absolute schedule (a slow answer never lowers the rate)."""
    if args.drive == "mqtt":
        await drive_mqtt(args, sent, ok)
        return
    interval = 1 / args.rate
    devices = [asyncio.Lock() for _ in range(args.sensors)]  # one reading in flight per device
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    for seq in range(args.count):
        await asyncio.sleep(max(0.0, start + seq * interval - time.perf_counter()))
        tasks.append(asyncio.create_task(post_reading(args, seq, devices[seq % args.sensors], sent, ok)))
    await asyncio.gather(*tasks, return_exceptions=True)


async def drive_mqtt(args: argparse.Namespace, sent: dict[int, float], ok: list[int]) -> None:
    """The devices publish from their own process (bench/mqtt_device.py); it says when each reading left."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("mqtt_device.py")),
        f"--broker-port={args.broker_port}",
        f"--topic={args.topic}",
        f"--sensors={args.sensors}",
        f"--rate={args.rate}",
        f"--count={args.count}",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"mqtt_device.py exited with {proc.returncode}")
    for seq, at in json.loads(out)["sent"].items():
        sent[int(seq)] = at
        ok.append(int(seq))


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rate", type=float, default=20, help="readings per second")
    p.add_argument("--count", type=int, default=400, help="readings to send (the first 10 are a warm-up)")
    p.add_argument("--drive", choices=("post", "mqtt"), default="post")
    p.add_argument("--sensors", type=int, default=10, help="devices the readings are spread over, round robin")
    p.add_argument("--sensor", default="bench", help="--drive post: remote sensor ids are this + 0, 1, ...")
    p.add_argument("--token", default="", help="--drive post: its bearer token")
    p.add_argument("--broker-port", type=int, help="--drive mqtt: the broker's loopback port")
    p.add_argument("--topic", default="zigbee2mqtt/bench", help="--drive mqtt: device topics are this + 0, 1, ...")
    p.add_argument("--hold", type=float, default=0, help="only stay connected this many seconds (idle clients)")
    args = p.parse_args()
    if args.count > MAX_READINGS:
        p.error(f"--count: at most {MAX_READINGS} (the sequence number travels in humidity_pct)")
    arrivals: list[tuple[int, float, float]] = []
    protos: list[Client] = []
    for i in range(0, args.clients, 100):  # connect in batches: a backlog of 1000 SYNs at once is not the test
        batch = [Client("127.0.0.1", args.port, arrivals) for _ in range(min(100, args.clients - i))]
        await asyncio.gather(*(client.connect() for client in batch))
        protos += batch
    print(json.dumps({"connected": len(protos)}), flush=True)
    if args.hold:
        await asyncio.sleep(args.hold)
        return
    await asyncio.sleep(1.0)  # let the snapshot writes drain
    sent: dict[int, float] = {}
    ok: list[int] = []
    await drive(args, sent, ok)
    expected = {s for s in ok if s >= WARMUP}
    deadline = time.monotonic() + 10  # the tail: whatever has not arrived 10 s after the last send is lost
    while time.monotonic() < deadline and any(not expected <= pr.seqs for pr in protos):
        await asyncio.sleep(0.1)
    latencies = [(reached - sent[seq]) * 1000 for seq, reached, _read in arrivals if seq in expected]
    read_latencies = [(read - sent[seq]) * 1000 for seq, _reached, read in arrivals if seq in expected]
    lost = sum(len(expected - pr.seqs) for pr in protos)
    print(
        json.dumps(
            {
                "clients": len(protos),
                "disconnected": sum(pr.closed for pr in protos),
                "sent": len(sent),
                "accepted": len(ok),
                "frames": len(latencies),
                "lost": lost,
                "p50_ms": round(pct(latencies, 0.50), 2),
                "p99_ms": round(pct(latencies, 0.99), 2),
                "max_ms": round(max(latencies) if latencies else float("nan"), 2),
                "unstamped_reads": sum(pr.unstamped for pr in protos),
                "read_p50_ms": round(pct(read_latencies, 0.50), 2),
                "read_p99_ms": round(pct(read_latencies, 0.99), 2),
            }
        ),
        flush=True,
    )
    for pr in protos:
        pr.close()


if __name__ == "__main__":
    asyncio.run(main())
