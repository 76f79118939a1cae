#!/usr/bin/env bash
# Install or upgrade the Sortline edge daemon on one device: Raspberry Pi OS Bookworm (arm64),
# Ubuntu 22.04/24.04 on Jetson, Debian 12 (x86-64). Idempotent: run it again to upgrade.
#
#   sudo deploy/install.sh [--bundle DIR] [--credential mqtt__password=FILE] [--with-picamera2] [--with-ui] [--with-opcua]
#
# Layout (the unit in systemd/ assumes it):
#   /opt/sortline/venv                     virtual environment with sortline[edge] only (+ [ui], [opcua] when asked)
#   /etc/sortline/edge.toml                configuration, from deploy/edge.toml.example; never overwritten
#   /etc/sortline/credentials/<sec>__<key> secrets (root-only); the unit's LoadCredential=sortline:... turns
#                                          each into $CREDENTIALS_DIRECTORY/sortline_<sec>__<key>
#   /var/lib/sortline/models/<name>-<version>-<sha12>/   model bundles, "current" -> the live one
#   /etc/systemd/system/sortline-edge.service
#
# --prefix DIR (or DESTDIR=DIR) installs under DIR instead of /, with the paths in the unit and the
# config rewritten to point inside DIR; it touches nothing outside DIR (no apt, no user, no systemctl).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: install.sh [options]
  --prefix DIR            install under DIR instead of / (tests, staging); also DESTDIR=DIR
  --source PATH           what to pip install: a checkout or a sortline-*.whl (default: this checkout)
  --bundle DIR            model bundle to install and make current (default: models/apparel-efficientnet-lite2-int8 when present)
  --credential KEY=FILE   store FILE's content as the secret KEY (e.g. mqtt__password); repeatable
  --with-picamera2        Raspberry Pi CSI camera: apt python3-picamera2, venv sees system packages
  --with-ui               also the commissioning page's extra (Starlette, uvicorn); turn it on in edge.toml [ui]
  --with-opcua            also the OPC UA server's extra (asyncua); turn it on in edge.toml [opcua]
  --no-apt                do not install OS packages
  --no-start              install and enable, but do not (re)start the service
  -h, --help              this text
Environment: PYTHON (interpreter for the venv, default python3), SORTLINE_PIP_ARGS (extra pip arguments).
EOF
}

here="$(cd "$(dirname "$0")/.." && pwd)"
root="${DESTDIR:-}"
source_path="$here"
bundle=""
picamera2=0
extras="edge"
use_apt=1
start=1
credentials=()
while (($#)); do
  case "$1" in
    --prefix) root="${2:?--prefix needs a directory}"; shift ;;
    --prefix=*) root="${1#*=}" ;;
    --source) source_path="${2:?--source needs a path}"; shift ;;
    --bundle) bundle="${2:?--bundle needs a directory}"; shift ;;
    --credential) credentials+=("${2:?--credential needs KEY=FILE}"); shift ;;
    --with-picamera2) picamera2=1 ;;
    --with-ui) extras="$extras,ui" ;;
    --with-opcua) extras="$extras,opcua" ;;
    --no-apt) use_apt=0 ;;
    --no-start) start=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

live=1  # installing onto this machine's real root
if [ -n "$root" ]; then
  mkdir -p "$root"
  root="$(cd "$root" && pwd)"
  [ "$root" = "/" ] && root="" || live=0
fi
if ((live)) && [ "$(id -u)" -ne 0 ]; then
  die "run as root (sudo $0 ...), or use --prefix DIR for an install that touches only DIR"
fi

OPT="$root/opt/sortline"
VENV="$OPT/venv"
ETC="$root/etc/sortline"
CONFIG="$ETC/edge.toml"
CREDENTIALS="$ETC/credentials"
STATE="$root/var/lib/sortline"
MODELS="$STATE/models"
UNIT="$root/etc/systemd/system/sortline-edge.service"
PYTHON="${PYTHON:-python3}"

[ -z "$bundle" ] && [ -f "$here/models/apparel-efficientnet-lite2-int8/bundle.json" ] && bundle="$here/models/apparel-efficientnet-lite2-int8"
[ -e "$source_path" ] || die "--source $source_path does not exist"
for credential in "${credentials[@]}"; do
  key="${credential%%=*}" file="${credential#*=}"
  [[ "$key" =~ ^[a-z0-9_]+(__[a-z0-9_]+)+$ ]] || die "--credential $key: expected <section>__<key>, e.g. mqtt__password"
  [ -f "$file" ] && [ -r "$file" ] || die "--credential $key: $file is not a readable file"
done

# ---- OS packages --------------------------------------------------------------------------------
apt_packages=(python3 python3-venv ca-certificates v4l-utils mosquitto-clients)
((picamera2)) && apt_packages+=(python3-picamera2)
if ((live && use_apt)); then
  missing=()
  for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    say "installing OS packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
"$PYTHON" - <<'PY' || exit 1
import sys
if not (3, 10) <= sys.version_info[:2] <= (3, 12):
    sys.exit(f"install.sh: error: Python 3.10-3.12 needed, this is {sys.version.split()[0]} (set PYTHON=...)")
PY

# ---- user ---------------------------------------------------------------------------------------
if ((live)); then
  if ! id sortline >/dev/null 2>&1; then
    say "creating system user sortline"
    useradd --system --user-group --home-dir /var/lib/sortline --no-create-home --shell /usr/sbin/nologin sortline
  fi
  getent group video >/dev/null || groupadd --system video
  usermod -a -G video sortline
fi

# ---- directories --------------------------------------------------------------------------------
install -d -m 0755 "$OPT" "$ETC" "$(dirname "$UNIT")"
install -d -m 0700 "$CREDENTIALS"
install -d -m 0750 "$STATE" "$MODELS"

# ---- virtual environment with the edge extra ----------------------------------------------------
venv_args=()
((picamera2)) && venv_args+=(--system-site-packages)  # picamera2/libcamera come from apt only
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "${venv_args[@]}" "$VENV"; }
read -r -a pip_args <<<"${SORTLINE_PIP_ARGS:-}"
say "installing sortline[$extras] from $source_path"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "${pip_args[@]}" "$source_path[$extras]"
[ -x "$VENV/bin/sortline-edge" ] || die "$VENV/bin/sortline-edge missing after pip install"
[ -f "$here/README.md" ] && install -m 0644 "$here/README.md" "$OPT/README.md"

# ---- configuration and secrets ------------------------------------------------------------------
# Paths inside the installed files follow the install root, so a --prefix install is self-consistent.
rewrite_paths() { sed -e "s#/opt/sortline#$OPT#g" -e "s#/etc/sortline#$ETC#g" -e "s#/var/lib/sortline#$STATE#g"; }
if [ -e "$CONFIG" ]; then
  say "keeping existing $CONFIG (new template: $here/deploy/edge.toml.example)"
else
  rewrite_paths <"$here/deploy/edge.toml.example" >"$CONFIG.tmp"
  chmod 0640 "$CONFIG.tmp"
  mv "$CONFIG.tmp" "$CONFIG"
  say "wrote $CONFIG from the template: set device_id, camera.source, lanes and mqtt.host"
fi
((live)) && chown root:sortline "$ETC" "$CONFIG" && chmod 0750 "$ETC"
for credential in "${credentials[@]}"; do
  key="${credential%%=*}" file="${credential#*=}"
  (umask 077 && tr -d '\n' <"$file" >"$CREDENTIALS/$key.tmp" && mv "$CREDENTIALS/$key.tmp" "$CREDENTIALS/$key")
  say "stored secret $key"
done
((live)) && chown -R root:root "$CREDENTIALS"

# ---- model bundle -------------------------------------------------------------------------------
install_bundle() {  # copy a bundle to models/<name>-<version>-<sha12>, check its hash, point "current" at it
  local source_dir="$1" fields name model_file sha target staging
  [ -f "$source_dir/bundle.json" ] || die "--bundle $source_dir: no bundle.json there"
  fields="$("$PYTHON" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["name"], m["version"], m["sha256"], m.get("model_file", "model.tflite"))' "$source_dir/bundle.json")" \
    || die "$source_dir/bundle.json: not a bundle"
  read -r name version sha model_file <<<"$fields"
  [ "$(sha256sum "$source_dir/$model_file" | cut -d' ' -f1)" = "$sha" ] \
    || die "$source_dir/$model_file: sha256 does not match bundle.json (corrupt or replaced)"
  target="$name-$version-${sha:0:12}"
  if [ ! -f "$MODELS/$target/bundle.json" ]; then
    staging="$(mktemp -d "$MODELS/.incoming-XXXXXX")"
    cp -R "$source_dir/." "$staging/"
    chmod 0750 "$staging"
    rm -rf "${MODELS:?}/$target"
    mv "$staging" "$MODELS/$target"
    say "installed model bundle $target"
  fi
  ln -sfn "$target" "$MODELS/.current.tmp" && mv -T "$MODELS/.current.tmp" "$MODELS/current"
  say "model: $MODELS/current -> $target"
}
if [ -n "$bundle" ]; then
  install_bundle "$bundle"
elif [ ! -e "$MODELS/current" ]; then
  say "warning: no model bundle given and none installed; pass --bundle DIR before starting"
fi
((live)) && chown -R sortline:sortline "$STATE"

# ---- systemd unit -------------------------------------------------------------------------------
rewrite_paths <"$here/systemd/sortline-edge.service" >"$UNIT.tmp"
chmod 0644 "$UNIT.tmp"
mv "$UNIT.tmp" "$UNIT"
if ((live)) && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable sortline-edge.service >/dev/null
  if ((start)); then
    systemctl restart sortline-edge.service  # an upgrade restarts; model rollouts need no restart
    say "sortline-edge started"
  fi
elif ((live)); then
  say "systemd is not running here (container/chroot): the unit is installed but not enabled"
fi

cat <<EOF

Sortline edge is installed ($root/).
  config:        $CONFIG   (check: $VENV/bin/sortline-edge --config $CONFIG check-config)
  secrets:       $CREDENTIALS/<section>__<key>
  models:        $MODELS/current -> $(readlink "$MODELS/current" 2>/dev/null || echo "(none yet)")
  state:         systemctl status sortline-edge
  logs:          journalctl -u sortline-edge -f
  decisions:     mosquitto_sub -h <broker> -t 'sortline/+/decision' -v
EOF
