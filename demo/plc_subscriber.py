"""Example PLC-side subscriber: what a gateway does with Sortline decisions.

    python demo/plc_subscriber.py --host 127.0.0.1 --port 1883 [--device line1] [--count N]

It subscribes to every device's decisions and status, drops duplicates (QoS 1 is at-least-once:
a decision may arrive twice after a reconnect, so dedupe by run_id + seq) and decisions past their
deadline (the item has already passed the actuator), and prints one line per item.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import paho.mqtt.client as mqtt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--prefix", default="sortline")
    parser.add_argument("--device", default="+", help="device id, or + for all")
    parser.add_argument("--count", type=int, default=0, help="exit after this many decisions (0: run forever)")
    args = parser.parse_args()

    seen: set[tuple[str, int]] = set()
    decided = 0

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe([(f"{args.prefix}/{args.device}/decision", 1), (f"{args.prefix}/{args.device}/status", 1)])

    def on_message(client, userdata, message):
        nonlocal decided
        payload = json.loads(message.payload)
        if message.topic.endswith("/status"):
            print(f"status  {message.topic}: {payload.get('state')} model={payload.get('model')}", flush=True)
            return
        key = (payload["run_id"], payload["seq"])
        if key in seen:
            return  # a redelivery after a reconnect
        seen.add(key)
        late = " LATE, ignored" if time.time() > payload["deadline"] else ""
        print(
            f"item {payload['item_id']:>12} -> lane {payload['lane']} ({payload['label']}, "
            f"confidence {payload['confidence']:.2f}, {payload['frames']} frame(s)){late}",
            flush=True,
        )
        decided += 1
        if args.count and decided >= args.count:
            client.disconnect()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect, client.on_message = on_connect, on_message
    client.connect(args.host, args.port)
    with contextlib.suppress(KeyboardInterrupt):
        client.loop_forever(retry_first_connection=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
