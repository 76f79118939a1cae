#!/usr/bin/env bash
# Prove that the `edge` extra installs and runs on arm64 (Raspberry Pi OS Bookworm / Jetson class),
# on an x86-64 Debian/Ubuntu machine: debootstrap a Debian 12 arm64 root, run it under qemu-user
# emulation (binfmt_misc), pip install sortline[edge] from this checkout with binary wheels only,
# and classify an image with a model bundle. Slow (tens of minutes under emulation): not part of CI.
#
#   sudo deploy/check-arm64.sh [--bundle DIR] [--image FILE] [--root DIR] [--fresh]
#
# Prints each step's time, any package that has no arm64 wheel (pip is told not to build from
# source), and the classification. Needs root (debootstrap, chroot, binfmt registration) and access
# to a Debian mirror and to PyPI.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root=/var/tmp/sortline-arm64
bundle="$here/models/apparel-efficientnet-lite2-int8"
image=""
fresh=0
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
while (($#)); do
  case "$1" in
    --bundle) bundle="$2"; shift ;;
    --image) image="$2"; shift ;;
    --root) root="$2"; shift ;;
    --fresh) fresh=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "check-arm64.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
die() { echo "check-arm64.sh: error: $*" >&2; exit 1; }
started=$SECONDS
step() { echo "check-arm64.sh: [$((SECONDS - started))s] $*"; }

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and chroot need it)"
[ -f "$bundle/bundle.json" ] || die "$bundle: not a model bundle (pass --bundle DIR)"
if [ -z "$image" ]; then
  image="$(find "$here/demo/images" -type f \( -name '*.jpg' -o -name '*.png' \) 2>/dev/null | sort | head -n 1)"
fi
[ -n "$image" ] && [ -f "$image" ] || die "no image to classify (pass --image FILE)"

# ---- tools and binfmt_misc ----------------------------------------------------------------------
missing=()
for tool in debootstrap:debootstrap qemu-aarch64-static:qemu-user-static; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
  step "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
binfmt=/proc/sys/fs/binfmt_misc
[ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null \
  || die "binfmt_misc is not mounted and cannot be (a container without CAP_SYS_ADMIN?): arm64 binaries cannot run here"
if [ ! -e "$binfmt/qemu-aarch64" ]; then
  if command -v update-binfmts >/dev/null && update-binfmts --enable qemu-aarch64 2>/dev/null; then :; else
    # The magic/mask systemd-binfmt uses for qemu-aarch64; F: the interpreter is opened now, so it
    # also works inside the chroot.
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
      >"$binfmt/register" || die "cannot register qemu-aarch64 with binfmt_misc"
  fi
fi
step "binfmt: $(head -n 1 "$binfmt/qemu-aarch64")"

# ---- Debian 12 arm64 root -----------------------------------------------------------------------
mounted=()
cleanup() { for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
((fresh)) && rm -rf "$root"
if [ ! -x "$root/usr/bin/python3" ]; then
  step "debootstrap bookworm arm64 into $root"
  rm -rf "$root"
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || die "debootstrap failed, see $root.debootstrap.log"
fi
# Not /sys: LiteRT's cpuinfo reads the x86 host's CPU topology there as if it were arm64 and
# segfaults (measured); without it cpuinfo only warns "failed to parse ... processors".
for fs in proc dev; do mount --bind "/$fs" "$root/$fs" && mounted+=("$root/$fs"); done
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Networks that inspect TLS give pip their CA; the host's bundle includes it.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/host-ca-bundle.crt"
step "arm64 root ready: $(chroot "$root" uname -m), $(chroot "$root" python3 --version)"

# ---- the edge extra, binary wheels only ---------------------------------------------------------
rm -rf "$root/opt/src" "$root/opt/wheel" "$root/opt/bundle" "$root/opt/check"
mkdir -p "$root/opt/src" "$root/opt/check"
cp -R "$here/pyproject.toml" "$here/README.md" "$here/edge" "$root/opt/src/"
# sortline itself is pure Python: build its wheel natively (fast), only the dependencies are arm64.
py="$here/.venv/bin/python"; [ -x "$py" ] || py=python3
"$py" -m pip wheel -q --no-deps -w "$root/opt/wheel" "$root/opt/src" || die "cannot build the sortline wheel"
wheel="$(basename "$(ls "$root"/opt/wheel/sortline-*.whl)")"
cp -R "$bundle" "$root/opt/bundle"
cp "$image" "$root/opt/check/"
# A clean environment: the host's PIP_*/SSL_* settings name paths that do not exist in the root.
in_root() {
  chroot "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=120 "$@"
}
[ -x "$root/opt/venv/bin/python" ] || in_root python3 -m venv /opt/venv
step "pip install sortline[edge] (wheels only) under emulation"
if ! in_root /opt/venv/bin/pip install --only-binary=:all: "/opt/wheel/$wheel[edge]" >"$root.pip.log" 2>&1; then
  grep -iE "no matching distribution|could not find a version" "$root.pip.log" >&2 || tail -n 20 "$root.pip.log" >&2
  die "pip install failed: a dependency has no arm64 wheel for this Python (log: $root.pip.log)"
fi
step "installed: $(in_root /opt/venv/bin/pip list --format=freeze 2>/dev/null | grep -iE '^(numpy|opencv|ai-edge-litert|paho|pydantic)' | tr '\n' ' ')"

# ---- classify -----------------------------------------------------------------------------------
step "sortline-edge classify (arm64, emulated, 2 threads)"
in_root SORTLINE_MODEL__THREADS=2 /opt/venv/bin/sortline-edge classify --bundle /opt/bundle "/opt/check/$(basename "$image")"
step "done: the edge extra installs and classifies on arm64"
