"""Edge benchmark: the daemon against the bare interpreter, on a real int8 bundle.

    .venv/bin/python bench/edge.py [--bundle models/apparel-efficientnet-lite2-int8] [--frames 300]
        [--throughput-frames 6000] [--page-pairs 5] [--json OUT]

For 1 and 2 interpreter threads it measures
  * interpreter only: set_tensor + invoke + get_tensor on a model-sized image (p50/p99, fps);
  * the daemon, as a subprocess on a real mosquitto, continuous mode on a synthetic conveyor clip:
      - throughput: clip read as fast as the daemon takes frames (decisions/s), and peak RSS;
      - end-to-end latency: clip paced at 80 % of the interpreter's rate, as a camera would deliver
        it; frame capture -> decision handed to MQTT, from the decisions' `latency_ms`;
      - with 2 threads, the cost of the commissioning page: throughput with the page watched as an open
        browser tab polls it vs not, in alternating pairs (medians), and the extra peak RSS.
Not a test: it prints numbers (and writes JSON) for the README.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_description  # noqa: E402
from demo.conveyor import write_conveyor_clip  # noqa: E402
from edge.bundle import load_bundle  # noqa: E402
from edge.classifier import Classifier  # noqa: E402
from edge.preprocess import decode_image, fit_to_input  # noqa: E402


def interpreter_only(bundle_dir: Path, image: Path, threads: int, runs: int) -> dict[str, float]:
    bundle = load_bundle(bundle_dir)
    classifier = Classifier(bundle, threads=threads)
    pixels = fit_to_input(decode_image(str(image)), bundle.metadata.input)
    for _ in range(5):
        classifier.assess_pixels(pixels)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        classifier.assess_pixels(pixels)
        times.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "fps": 1000 / float(np.mean(times)),
    }


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768-60999): one `bind(0)` hands out can be taken by a
    client's outgoing connection (fifty OPC UA clients here) before the daemon binds it (tests/ports.py)."""
    for port in random.sample(range(20000, 32000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


@contextlib.contextmanager
def mosquitto(workdir: Path) -> Iterator[int]:
    """A mosquitto on a free port of 127.0.0.1 while inside; yields the port."""
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)
        yield port
    finally:
        broker.terminate()
        broker.wait(5)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def decisions_of(device: str, port: int) -> Iterator[list[dict]]:
    """The device's decisions, as a PLC-side subscriber on the broker receives them while inside."""
    decisions: list[dict] = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe(f"sortline/{device}/decision", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, msg: decisions.append(json.loads(msg.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    subscribed.wait(10)
    try:
        yield decisions
    finally:
        time.sleep(0.5)  # the last decisions on their way from the broker
        client.loop_stop()
        client.disconnect()


def run_daemon(
    bundle_dir: Path, clip: Path, port: int, threads: int, realtime: bool, workdir: Path, page: bool = False
) -> dict:
    """Run `python -m edge` on the clip; return its decisions and peak RSS (VmHWM). With `page`, the
    commissioning page is on and watched the whole time, as an open browser tab polls it."""
    config = workdir / f"bench-{threads}-{realtime}-{page}.toml"
    ui_port = free_port()
    config.write_text(
        f'device_id = "bench"\nlog_level = "WARNING"\n[camera]\nsource = "{clip}"\nrealtime = {str(realtime).lower()}\n'
        f'[model]\nbundle = "{bundle_dir}"\nthreads = {threads}\nthreshold = 0.0\n'
        f'[trigger]\nmode = "continuous"\nmin_interval_s = 0\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nstats_interval_s = 3600\n'
        + (f"[ui]\nenabled = true\nport = {ui_port}\n" if page else "")
    )
    watching = threading.Event()
    if page:
        threading.Thread(target=_watch_page, args=(ui_port, watching), daemon=True).start()
    with decisions_of("bench", port) as decisions:
        daemon = subprocess.Popen([sys.executable, "-m", "edge", "--config", str(config), "run"], cwd=ROOT)
        peak_kb = 0
        while daemon.poll() is None:
            try:
                status = Path(f"/proc/{daemon.pid}/status").read_text()
                peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
            except (OSError, IndexError):
                pass
            time.sleep(0.1)
    watching.set()
    if daemon.returncode != 0:
        raise RuntimeError(f"daemon exited with {daemon.returncode}")
    return {"decisions": decisions, "peak_rss_mb": peak_kb / 1024}


def page_cost(bundle: Path, clip: Path, port: int, threads: int, workdir: Path, pairs: int) -> dict[str, object]:
    """The daemon without and with the commissioning page watched, in alternating pairs: one run each
    swings by ±10 % on a 2-core machine, so the ratio is of the medians."""
    runs: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(pairs):
        for page in (False, True):
            runs[page].append(run_daemon(bundle, clip, port, threads, realtime=False, workdir=workdir, page=page))
    fps = {page: [round(summarise(run["decisions"])["fps"], 1) for run in done] for page, done in runs.items()}
    rss = {page: max(run["peak_rss_mb"] for run in done) for page, done in runs.items()}
    return {
        "page_pairs_fps_without": fps[False],
        "page_pairs_fps_with": fps[True],
        "with_page_ratio": round(float(np.median(fps[True]) / np.median(fps[False])), 3),
        "with_page_peak_rss_mb": round(rss[True], 1),
        "with_page_extra_rss_mb": round(rss[True] - rss[False], 1),
    }


def _watch_page(port: int, stop: threading.Event) -> None:
    """What an open page costs the device, as its script asks: the frame every 0.3 s; status and decisions
    every second, what-if every 2 s; each new decision's crop once (the browser keeps it); one kept-alive
    connection, as a browser holds."""
    connection, turn, seen = http.client.HTTPConnection("127.0.0.1", port, timeout=2), 0, set()

    def get(path: str) -> bytes:
        with contextlib.suppress(OSError, http.client.HTTPException):
            connection.request("GET", path)
            return connection.getresponse().read()
        connection.close()  # reconnects on the next request
        return b""

    while not stop.is_set():
        get("/snapshot.jpg")
        if turn % 3 == 0:
            get("/api/status")
            for decision in json.loads(get("/api/decisions") or b"[]"):
                if decision["crop_url"] and decision["item_id"] not in seen:
                    seen.add(decision["item_id"])
                    get(decision["crop_url"])
        if turn % 6 == 0:
            get("/api/what-if?threshold=0.8")
        turn += 1
        stop.wait(0.3)


def summarise(decisions: list[dict], warmup: int = 5) -> dict[str, float]:
    steady = sorted(decisions, key=lambda d: d["seq"])[warmup:]
    span = steady[-1]["decided_at"] - steady[0]["decided_at"]
    latency = [d["latency_ms"] for d in steady]
    return {
        "fps": (len(steady) - 1) / span,
        "latency_p50_ms": float(np.percentile(latency, 50)),
        "latency_p99_ms": float(np.percentile(latency, 99)),
        "count": len(decisions),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "apparel-efficientnet-lite2-int8")
    parser.add_argument("--frames", type=int, default=300, help="frames of the paced (latency) clip")
    parser.add_argument(
        "--throughput-frames", type=int, default=6000,
        help="frames of the clip read as fast as taken: ~1 decision per 14 frames, so 6000 give ~10 s of decisions",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=200, help="interpreter-only invocations")
    parser.add_argument("--page-pairs", type=int, default=5, help="runs without and with the page watched")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    model_mb = bundle.model_path.stat().st_size / 1e6
    images = sorted((ROOT / "demo" / "images").glob("*/*.*"))
    results: dict[str, object] = {
        "bundle": bundle.metadata.model_id,
        "model_mb": round(model_mb, 1),
        "cpu": cpu_description(),
        "threads": {},
    }
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as port:
        workdir = Path(tmp)
        for threads in (1, 2):
            interp = interpreter_only(args.bundle, images[0], threads, args.runs)
            fast_clip = workdir / "fast.avi"
            paced_clip = workdir / f"paced-{threads}.avi"
            paced_fps = max(1, int(interp["fps"] * 0.8))
            if not fast_clip.exists():
                write_conveyor_clip(fast_clip, images, fps=15, frames=args.throughput_frames)
            write_conveyor_clip(paced_clip, images, fps=paced_fps, frames=args.frames)
            fast = run_daemon(args.bundle, fast_clip, port, threads, realtime=False, workdir=workdir)
            paced = run_daemon(args.bundle, paced_clip, port, threads, realtime=True, workdir=workdir)
            throughput, latency = summarise(fast["decisions"]), summarise(paced["decisions"])
            row = {
                "interpreter_p50_ms": round(interp["p50_ms"], 1),
                "interpreter_p99_ms": round(interp["p99_ms"], 1),
                "interpreter_fps": round(interp["fps"], 1),
                "daemon_fps": round(throughput["fps"], 1),
                "throughput_ratio": round(throughput["fps"] / interp["fps"], 3),
                "paced_camera_fps": paced_fps,
                "e2e_p50_ms": round(latency["latency_p50_ms"], 1),
                "e2e_p99_ms": round(latency["latency_p99_ms"], 1),
                "e2e_p99_over_inference_p50": round(latency["latency_p99_ms"] / interp["p50_ms"], 3),
                "peak_rss_mb": round(max(fast["peak_rss_mb"], paced["peak_rss_mb"]), 1),
                "rss_minus_model_mb": round(max(fast["peak_rss_mb"], paced["peak_rss_mb"]) - model_mb, 1),
                "decisions": [throughput["count"], latency["count"]],
            }
            if threads == 2:
                row.update(page_cost(args.bundle, fast_clip, port, threads, workdir, args.page_pairs))
            results["threads"][threads] = row
            print(f"threads={threads}: " + ", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
