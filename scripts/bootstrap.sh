#!/usr/bin/env bash
# Set up a fresh Debian / Ubuntu / Raspberry Pi OS machine for Sortline. Idempotent.
#   scripts/bootstrap.sh demo   OS packages + .venv with the `edge` extra (what the demo needs)
#   scripts/bootstrap.sh test   everything the test suite needs (broker, Chromium, OPC UA, trainer, scraper)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${1:-demo}
case "$profile" in
  demo) apt_packages=(mosquitto mosquitto-clients); extras="edge" ;;
  test) apt_packages=(mosquitto mosquitto-clients chromium chromium-driver openssl systemd)
        extras="edge,ui,opcua,trainer-cpu,scraper,dev" ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import ensurepip' 2>/dev/null || apt_packages+=(python3-venv)

missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing OS packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"$PYTHON" - <<'PY'
import sys
if not (3, 10) <= sys.version_info[:2] <= (3, 12):
    sys.exit(f"bootstrap: Python 3.10-3.12 needed, this is {sys.version.split()[0]} (set PYTHON=...)")
PY
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.installed-$profile"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  # pip's and setuptools' chatter (the editable-install banner) goes to a log, shown only if pip fails
  log=.venv/pip-install.log
  echo "bootstrap: installing sortline[$extras] into .venv (a few minutes the first time; log: $log)"
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".[$extras]"; } \
      > "$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "bootstrap: pip install failed; the whole log is in $log" >&2
    exit 1
  fi
  echo "$wanted" > "$stamp"
fi
if [ "$profile" = test ]; then
  # The JAX backend's test trains in a venv without TensorFlow, as on a GPU machine that has only JAX
  # (TensorFlow imports JAX whenever both are installed: a second XLA runtime in every TensorFlow process).
  [ -x .venv-jax/bin/python ] || "$PYTHON" -m venv .venv-jax
  if [ "$(cat .venv-jax/.installed 2>/dev/null)" != "$wanted" ]; then
    log=.venv-jax/pip-install.log
    echo "bootstrap: installing sortline[trainer-jax] into .venv-jax (log: $log)"
    if ! { .venv-jax/bin/python -m pip install -q --upgrade pip && .venv-jax/bin/python -m pip install -q -e ".[trainer-jax]"; } \
        > "$log" 2>&1; then
      tail -n 40 "$log" >&2
      echo "bootstrap: pip install failed; the whole log is in $log" >&2
      exit 1
    fi
    echo "$wanted" > .venv-jax/.installed
  fi
fi
