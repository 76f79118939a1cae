"""OPC UA benchmark: is the OPC UA server as good a way to the PLC as MQTT, and what does it cost the line?

    .venv/bin/python bench/opcua.py [--bundle models/apparel-efficientnet-lite2-int8] [--decisions 1000]
        [--rate 20] [--pairs 3] [--json OUT]

  * delivery: the daemon on a looping conveyor clip in continuous mode, ``--rate`` decisions a second, until
    ``--decisions`` have been made, MQTT and OPC UA both on; a PLC-side MQTT subscriber and an asyncua client
    subscribed to the decision events (10 ms publishing interval) and to LastDecision.Seq (0 ms sampling) note
    when each decision reaches them. Reported: event and LastDecision arrival minus MQTT arrival (p50/p99),
    and the decisions seen over MQTT that never came as an event.
  * cost: a clip read as fast as the daemon takes frames (no pacing, one decision per frame), in alternating
    pairs without and with the OPC UA server (and a client subscribed to its events): decisions/s, medians.
Not a test: it prints numbers (and writes JSON) for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncua import Client  # noqa: E402

from bench.edge import decisions_of, free_port, mosquitto, summarise  # noqa: E402
from bench.machine import cpu_description, cpu_line  # noqa: E402
from demo.conveyor import write_conveyor_clip  # noqa: E402


def config_file(workdir: Path, bundle: Path, clip: Path, port: int, opcua_port: int | None, **trigger: Any) -> Path:
    path = workdir / f"opcua-{opcua_port}-{time.monotonic_ns()}.toml"
    realtime = "true" if trigger.get("min_interval_s", 0) else "false"
    loop = "true" if trigger.get("min_interval_s", 0) else "false"
    path.write_text(
        f'device_id = "bench"\nlog_level = "WARNING"\n'
        f'[camera]\nsource = "{clip}"\nrealtime = {realtime}\nloop = {loop}\n'
        f'[model]\nbundle = "{bundle}"\nthreads = 2\nthreshold = 0.0\n'
        f'[trigger]\nmode = "continuous"\nmin_interval_s = {trigger.get("min_interval_s", 0)}\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nstats_interval_s = 3600\n'
        + (f"[opcua]\nenabled = true\nport = {opcua_port}\n" if opcua_port else "")
    )
    return path


class Arrivals:
    """When each decision's event and LastDecision.Seq change reached the client (monotonic seconds)."""

    def __init__(self) -> None:
        self.events: dict[int, float] = {}
        self.last_decision: dict[int, float] = {}

    def event_notification(self, event: Any) -> None:
        self.events.setdefault(int(event.Seq), time.monotonic())

    def datachange_notification(self, _node: Any, value: Any, _data: Any) -> None:
        self.last_decision.setdefault(int(value), time.monotonic())

    def status_change_notification(self, _status: Any) -> None:
        """The server closed the subscription (the daemon stopped): nothing more will come."""


async def watch_opcua(url: str, arrivals: Arrivals, stop: threading.Event) -> None:
    for _ in range(300):
        client = Client(url, timeout=10)
        try:
            await client.connect()
            break
        except OSError:
            await asyncio.sleep(0.1)
    else:
        raise RuntimeError(f"no OPC UA server at {url}")
    try:
        index = await client.get_namespace_index("urn:sortline")
        device = await client.nodes.objects.get_child([f"{index}:Sortline", f"{index}:bench"])
        events = await client.create_subscription(10, arrivals)
        await events.subscribe_events(
            device, await client.nodes.base_event_type.get_child(f"{index}:SortDecisionEventType")
        )
        seq = await (await device.get_child(f"{index}:LastDecision")).get_child(f"{index}:Seq")
        changes = await client.create_subscription(10, arrivals)
        await changes.subscribe_data_change(seq, sampling_interval=0)
        while not stop.is_set():
            await asyncio.sleep(0.05)
    finally:
        with contextlib.suppress(Exception):  # a daemon at the end of its clip has closed the connection
            await client.disconnect()


def delivery(bundle: Path, clip: Path, port: int, workdir: Path, decisions: int, rate: float) -> dict[str, object]:
    opcua_port = free_port()
    config = config_file(workdir, bundle, clip, port, opcua_port, min_interval_s=1 / rate)
    arrivals, stop = Arrivals(), threading.Event()
    mqtt_at: dict[int, float] = {}
    with decisions_of("bench", port) as received:
        daemon = subprocess.Popen([sys.executable, "-m", "edge", "--config", str(config), "run"], cwd=ROOT)
        watcher = threading.Thread(
            target=lambda: asyncio.run(watch_opcua(f"opc.tcp://127.0.0.1:{opcua_port}/sortline/", arrivals, stop))
        )
        watcher.start()
        seen = 0
        while len(received) < decisions + 20 and daemon.poll() is None:
            now = time.monotonic()
            for decision in received[seen:]:
                mqtt_at.setdefault(decision["seq"], now)  # polled every 2 ms: arrival within 2 ms
            seen = len(received)
            time.sleep(0.002)
        time.sleep(1.0)  # the last events on their way
        stop.set()
        watcher.join(30)
        daemon.terminate()
        daemon.wait(60)
    first = min(arrivals.events) if arrivals.events else None
    measured = [seq for seq in sorted(mqtt_at) if first is not None and first <= seq][:decisions]
    event_lag = [1000 * (arrivals.events[s] - mqtt_at[s]) for s in measured if s in arrivals.events]
    value_lag = [1000 * (arrivals.last_decision[s] - mqtt_at[s]) for s in measured if s in arrivals.last_decision]
    return {
        "decisions": len(measured),
        "rate_per_s": rate,
        "events_missing": sum(s not in arrivals.events for s in measured),
        "event_minus_mqtt_ms": _percentiles(event_lag),
        "last_decision_minus_mqtt_ms": _percentiles(value_lag),
        "last_decision_values_seen": len(value_lag),
    }


def cost(bundle: Path, clip: Path, port: int, workdir: Path, pairs: int) -> dict[str, object]:
    rates: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(pairs):
        for name in ("without", "with"):
            opcua_port = free_port() if name == "with" else None
            config = config_file(workdir, bundle, clip, port, opcua_port)
            stop, arrivals = threading.Event(), Arrivals()
            with decisions_of("bench", port) as received:
                daemon = subprocess.Popen([sys.executable, "-m", "edge", "--config", str(config), "run"], cwd=ROOT)
                watcher = None
                if opcua_port:
                    url = f"opc.tcp://127.0.0.1:{opcua_port}/sortline/"
                    watcher = threading.Thread(target=asyncio.run, args=(watch_opcua(url, arrivals, stop),))
                    watcher.start()
                daemon.wait(600)
                stop.set()
                if watcher is not None:
                    watcher.join(30)
            rates[name].append(summarise(received)["fps"])
    without, with_server = statistics.median(rates["without"]), statistics.median(rates["with"])
    return {
        "decisions_per_s_without": round(without, 1),
        "decisions_per_s_with": round(with_server, 1),
        "ratio": round(with_server / without, 3),
        "runs": rates,
    }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 1), "p99": round(float(p99), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "apparel-efficientnet-lite2-int8")
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="decisions a second in the delivery run")
    parser.add_argument("--pairs", type=int, default=3, help="cost runs without and with the server")
    parser.add_argument("--cost-frames", type=int, default=1500, help="frames of the clip read as fast as taken")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    images = sorted((ROOT / "demo" / "images").glob("*/*.*"))
    results: dict[str, object] = {"cpu": cpu_description()}
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as port:
        workdir = Path(tmp)
        paced, fast = workdir / "paced.avi", workdir / "fast.avi"
        write_conveyor_clip(paced, images, fps=30, frames=300)
        write_conveyor_clip(fast, images, fps=15, frames=args.cost_frames)
        results["delivery"] = delivery(args.bundle, paced, port, workdir, args.decisions, args.rate)
        print(f"delivery: {results['delivery']}", flush=True)
        results["cost"] = cost(args.bundle, fast, port, workdir, args.pairs)
        print(f"cost: {results['cost']}", flush=True)
    print(cpu_line(results["cpu"]))  # type: ignore[arg-type]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
