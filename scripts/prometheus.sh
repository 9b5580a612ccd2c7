#!/usr/bin/env bash
# Debian 12's Prometheus (prometheus, promtool), for the tests that load the chart's alert
# rules and evaluate them and the dashboard's queries against the real processes' metrics.
#
# Extracted from Debian's package into the cache, not installed: the package's init script
# would start a server on :9090 on this (shared) machine. The package is fetched with apt
# (`apt-get download`), so it comes from the machine's Debian mirror like every other
# system package here.
#
# Usage: scripts/prometheus.sh [--print-dir]
#   without flags: fetch and extract if not cached yet; print nothing
#   --print-dir:   print the directory that holds (or will hold) prometheus and promtool
#
# Invariant: the directory holds the binaries only once both are extracted (a temporary
# directory is renamed into place), so a half-done run is never mistaken for a cache hit.
set -euo pipefail

version="2.42.0+ds-5+deb12u1"
cache_root="${IMAGESTREAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imagestream-controller}"
out="$cache_root/tools/prometheus-${version//+/_}"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$out"
  exit 0
fi
[[ $# -eq 0 ]] || { echo "usage: $0 [--print-dir]" >&2; exit 2; }
[[ -x "$out/prometheus" && -x "$out/promtool" ]] && exit 0

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download "prometheus=$version" >/dev/null 2>&1; then
  # A machine whose package lists are stale or empty: refresh them once (needs root).
  apt-get update -qq >/dev/null
  apt-get download "prometheus=$version" >/dev/null
fi
dpkg-deb -x prometheus_*.deb root
mkdir -p "$work/bin"
cp root/usr/bin/prometheus root/usr/bin/promtool "$work/bin/"
"$work/bin/promtool" --version >/dev/null
mkdir -p "$(dirname "$out")"
rm -rf "$out"
mv "$work/bin" "$out"
