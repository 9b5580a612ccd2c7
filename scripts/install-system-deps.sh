#!/usr/bin/env bash
# Install the system packages the tests and `imagestream dev` use:
#   docker-registry  CNCF distribution 2.8.2, the real registry that sends push notifications
#   skopeo           the real client that pushes test images to it
# Go (for localkube/) and Python come with the machine; this script checks them.
set -euo pipefail

missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-system-deps: missing ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "install-system-deps: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v go >/dev/null || { echo "install-system-deps: Go is required to build the local control plane" >&2; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "install-system-deps: Python >= 3.11 is required" >&2; exit 1; }
