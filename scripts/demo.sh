#!/usr/bin/env bash
# The main job on the bundled demo: set up, start a local broker if none is running, make the demo
# line's clip (demo/line.py: a moving dark-grey belt with seams, items rotated with shadows, flickering light),
# run the daemon on it and print every decision a PLC-side subscriber receives, and when it fires each lane.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh demo

port=${SORTLINE_MQTT__PORT:-1883}
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "demo: starting mosquitto on 127.0.0.1:$port"
  mkdir -p .cache/demo
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > .cache/demo/mosquitto.conf
  mosquitto -c .cache/demo/mosquitto.conf > .cache/demo/mosquitto.log 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
fi

mkdir -p .cache/demo
clip=.cache/demo/line.avi truth=.cache/demo/line-truth.jsonl log=.cache/demo/daemon.log
# the clip's items, in belt order, go to $truth: the subscriber marks each decision against them
[ -s "$clip" ] && [ -s "$truth" ] || .venv/bin/python demo/line.py "$clip" demo/images/*/* --line dark-grey > "$truth"

# the diverters are 1.2 m past the camera's reference line (demo/edge.toml calibrates 1.5 mm per pixel)
.venv/bin/python demo/plc_subscriber.py --port "$port" --truth "$truth" --diverter-mm 1200 &
subscriber=$!
pids+=("$subscriber")
sleep 0.5
echo "demo: the daemon runs on $clip (its log: $log); what the PLC receives:"
if ! SORTLINE_MQTT__PORT=$port .venv/bin/sortline-edge --config demo/edge.toml run 2> "$log"; then
  tail -n 20 "$log" >&2
  exit 1
fi
# it ends after the tally, once the last lane has fired
for _ in $(seq 100); do kill -0 "$subscriber" 2>/dev/null || break; sleep 0.1; done
