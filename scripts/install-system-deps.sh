#!/usr/bin/env bash
# Install the system packages the tests and `imagestream dev` use:
#   docker-registry  CNCF distribution 2.8.2, the real registry that sends push notifications
#   skopeo           the real client that pushes test images to it
# and those of the local node (localdev/node.py), all from Debian 12:
#   containerd                   1.6.20, the CRI runtime the kubelet talks to
#   runc                         1.1.5, the OCI runtime containerd starts containers with
#   containernetworking-plugins  1.1.1, bridge/host-local/loopback/portmap in /usr/lib/cni
#   busybox-static               /bin/busybox, the one binary our test images are made of
#   iptables, iproute2           the egress guard, kube-proxy, and cleanup (ip link, ip netns)
# and what makes images from Debian packages (localdev/debian_images.py):
#   mmdebstrap                   1.3.5, a bookworm root filesystem from the host's apt sources
#   buildah                      1.28, builds our Dockerfile on the host (localdev/project_image.py)
# Go (for localkube/) and Python come with the machine; this script checks them.
set -euo pipefail

missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
# Probed by path, not PATH: a non-root user's PATH often lacks /usr/sbin.
[[ -x /usr/bin/containerd ]] || missing+=(containerd)
[[ -x /usr/sbin/runc ]] || missing+=(runc)
[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
# The images need a static busybox (no libc in them); Debian's busybox
# package is dynamic, so check the file, not the command.
[[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 || missing+=(busybox-static)
[[ -x /usr/sbin/iptables ]] || missing+=(iptables)
[[ -x /usr/sbin/ip || -x /usr/bin/ip ]] || missing+=(iproute2)
[[ -x /usr/bin/mmdebstrap ]] || missing+=(mmdebstrap)
[[ -x /usr/bin/buildah ]] || missing+=(buildah)

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
