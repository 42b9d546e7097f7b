"""The MQTT devices of `make bench`, in a process of their own: publish readings on a schedule, print when.

paho's network thread would starve for the GIL inside the process that parses 20,000 frames a second, and the
publish would then leave late: the clock starts here, in a process that does nothing else. Prints one JSON line,
{"sent": {seq: time.perf_counter()}}; perf_counter is CLOCK_MONOTONIC on Linux, shared by every process.

    python bench/mqtt_device.py --broker-port P --topic zigbee2mqtt/bench --sensors 10 --rate 20 --count 400
"""

from __future__ import annotations

import argparse
import json
import os
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--broker-port", type=int, required=True)
    p.add_argument("--topic", required=True, help="device i publishes to this + i")
    p.add_argument("--sensors", type=int, default=10)
    p.add_argument("--rate", type=float, default=20)
    p.add_argument("--count", type=int, default=400)
    args = p.parse_args()
    device = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-device-{os.getpid()}")
    device.max_inflight_messages_set(1000)  # the devices are many; one client stands in for all of them
    device.connect("127.0.0.1", args.broker_port)
    device.loop_start()
    sent: dict[int, float] = {}
    start = time.perf_counter()
    for seq in range(args.count):
        time.sleep(max(0.0, start + seq / args.rate - time.perf_counter()))
        payload = json.dumps({"temperature": 21.5, "humidity": seq / 100, "battery": 90, "linkquality": 120})
        sent[seq] = time.perf_counter()
        device.publish(f"{args.topic}{seq % args.sensors}", payload, qos=1)
    time.sleep(1.0)  # the last acknowledgements
    device.disconnect()
    device.loop_stop()
    print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    main()
