#!/usr/bin/env bash
# The Tiltfile's push-test-image button: a fresh runnable image (busybox
# httpd serving a marker on port 8080, localdev.images), pushed with skopeo
# to REGISTRY_HOST/REPOSITORY:TAG over plain HTTP. Prints the digest.
#   tilt/push-test-image.sh 10.0.0.12:5000 imagestream-demo/demo:latest
set -euo pipefail
registry=$1 destination=$2
cd "$(dirname "$0")/.."
layout=$(mktemp -d)
trap 'rm -rf "$layout"' EXIT
marker="tilt-push-$(date +%s%N)"
digest=$(.venv/bin/python -m localdev.images app "$layout" "$marker")
# A registry just made Ready may not be reachable through its Service yet
# (kube-proxy's rules follow the endpoints): try a bounded number of times.
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  if skopeo copy --quiet --dest-tls-verify=false --preserve-digests "oci:$layout" "docker://$registry/$destination"; then
    break
  fi
  ((attempt < 10)) || exit 1
  sleep 2
done
echo "pushed $registry/$destination $digest ($marker)"
