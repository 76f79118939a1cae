"""Example PLC-side subscriber: what a gateway does with Sortline decisions.

    python demo/plc_subscriber.py --host 127.0.0.1 --port 1883 [--device line1] [--count N] [--truth FILE]
        [--diverter-mm 1200 | --diverter-px 900]

It subscribes to every device's decisions and status, drops duplicates (QoS 1 is at-least-once:
a decision may arrive twice after a reconnect, so dedupe by run_id + seq) and decisions past their
deadline (the item has already passed the actuator), and prints one line per item. With ``--truth``
(the JSON lines `demo/conveyor.py` writes, one per item in belt order) each decision is marked
right, reject or WRONG, and a tally is printed when the daemon goes offline.

With ``--diverter-mm`` (or ``--diverter-px``), the distance from the camera's reference line to the diverter
along the belt, it fires each lane output when the item gets there, as a PLC does: at ``crossed_at`` plus
distance / belt speed (``belt_speed_mm_s``, or ``belt_speed_px_s``). An item whose arrival has already passed
is reported as missed, never fired late.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt


def arrival(decision: dict, diverter_mm: float | None, diverter_px: float | None) -> float | None:
    """Epoch seconds when the item reaches the diverter, or None when the decision cannot say."""
    crossed = decision.get("crossed_at")
    speed = decision.get("belt_speed_mm_s") if diverter_mm is not None else decision.get("belt_speed_px_s")
    distance = diverter_mm if diverter_mm is not None else diverter_px
    if crossed is None or not speed or distance is None:
        return None
    return crossed + distance / speed


def schedule_diverter(decision: dict, diverter_mm: float | None, diverter_px: float | None) -> None:
    """Fire the item's lane output when it reaches the diverter (a timer stands in for the PLC's output)."""
    at = arrival(decision, diverter_mm, diverter_px)
    item, lane = decision["item_id"], decision["lane"]
    if at is None:
        print(f"item {item:>12}: no crossing time or belt speed, lane {lane} not fired", flush=True)
        return
    wait = at - time.time()
    if wait < 0:
        print(f"item {item:>12}: reached the diverter {-wait * 1000:.0f} ms ago, MISSED", flush=True)
        return
    fire = lambda: print(f"FIRE lane {lane} for item {item} (due {at:.3f}, now {time.time():.3f})", flush=True)  # noqa: E731
    threading.Timer(wait, fire).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--prefix", default="sortline")
    parser.add_argument("--device", default="+", help="device id, or + for all")
    parser.add_argument("--count", type=int, default=0, help="exit after this many decisions (0: run forever)")
    parser.add_argument("--truth", type=argparse.FileType("r"), help="the clip's items as JSON lines, in belt order")
    distance = parser.add_mutually_exclusive_group()
    distance.add_argument("--diverter-mm", type=float, help="reference line to diverter, mm (needs mm_per_px set)")
    distance.add_argument("--diverter-px", type=float, help="reference line to diverter, pixels of the camera's view")
    args = parser.parse_args()

    truth = [json.loads(line)["label"] for line in args.truth] if args.truth else None
    tally = {"right": 0, "reject": 0, "WRONG": 0}
    seen: set[tuple[str, int]] = set()
    decided = 0

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe([(f"{args.prefix}/{args.device}/decision", 1), (f"{args.prefix}/{args.device}/status", 1)])

    def on_message(client, userdata, message):
        nonlocal decided
        payload = json.loads(message.payload)
        if message.topic.endswith("/status"):
            print(f"status  {message.topic}: {payload.get('state')} model={payload.get('model')}", flush=True)
            if truth is not None and payload.get("state") == "offline" and decided:
                missed = f", {len(truth) - decided} item(s) without a decision" if decided < len(truth) else ""
                print(
                    f"{len(truth)} items: {tally['right']} right, {tally['reject']} rejected, "
                    f"{tally['WRONG']} to a wrong lane{missed}",
                    flush=True,
                )
                client.disconnect()
            return
        key = (payload["run_id"], payload["seq"])
        if key in seen:
            return  # a redelivery after a reconnect
        seen.add(key)
        late = " LATE, ignored" if time.time() > payload["deadline"] else ""
        verdict = ""
        if truth is not None and decided < len(truth):
            label, expected = payload["label"], truth[decided]
            outcome = "reject" if label == "reject" else "right" if label == expected else "WRONG"
            tally[outcome] += 1
            verdict = f"  item was {expected}: {outcome}"
        print(
            f"item {payload['item_id']:>12} -> lane {payload['lane']} ({payload['label']}, "
            f"confidence {payload['confidence']:.2f}, {payload['frames']} frame(s)){late}{verdict}",
            flush=True,
        )
        if args.diverter_mm is not None or args.diverter_px is not None:
            schedule_diverter(payload, args.diverter_mm, args.diverter_px)
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
