#!/usr/bin/env bash
# The main job on the bundled demo: set up, start a local broker if none is running, make the demo
# conveyor clip, run the daemon on it and print every decision a PLC-side subscriber receives.
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

clip=.cache/demo/conveyor.avi
[ -s "$clip" ] || .venv/bin/python demo/conveyor.py "$clip" demo/images/*/*

.venv/bin/python demo/plc_subscriber.py --port "$port" &
pids+=($!)
sleep 0.5
SORTLINE_MQTT__PORT=$port .venv/bin/sortline-edge --config demo/edge.toml run
sleep 1  # let the subscriber print the last decisions
