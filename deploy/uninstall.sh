#!/usr/bin/env bash
# Remove what deploy/install.sh installed. Keeps the configuration, the secrets, the model bundles
# and saved crops (/etc/sortline, /var/lib/sortline) and the sortline user unless --purge is given.
#
#   sudo deploy/uninstall.sh [--purge] [--prefix DIR]
set -euo pipefail

root="${DESTDIR:-}"
purge=0
while (($#)); do
  case "$1" in
    --prefix) root="${2:?--prefix needs a directory}"; shift ;;
    --prefix=*) root="${1#*=}" ;;
    --purge) purge=1 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "uninstall.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
say() { echo "uninstall.sh: $*"; }

live=1
if [ -n "$root" ]; then
  [ -d "$root" ] || { echo "uninstall.sh: error: --prefix $root does not exist" >&2; exit 1; }
  root="$(cd "$root" && pwd)"
  [ "$root" = "/" ] && root="" || live=0
fi
if ((live)) && [ "$(id -u)" -ne 0 ]; then
  echo "uninstall.sh: error: run as root (sudo $0 ...)" >&2
  exit 1
fi

UNIT="$root/etc/systemd/system/sortline-edge.service"
if ((live)) && [ -d /run/systemd/system ]; then
  systemctl disable --now sortline-edge.service 2>/dev/null || true
fi
rm -f "$UNIT"
((live)) && [ -d /run/systemd/system ] && systemctl daemon-reload
rm -rf "$root/opt/sortline"
say "removed the service and /opt/sortline"

if ((purge)); then
  rm -rf "$root/etc/sortline" "$root/var/lib/sortline"
  if ((live)) && id sortline >/dev/null 2>&1; then
    userdel sortline
  fi
  say "purged configuration, secrets, models and crops"
else
  say "kept $root/etc/sortline and $root/var/lib/sortline (configuration, secrets, models); --purge removes them"
fi
