#!/usr/bin/env bash
# The Tiltfile's push-test-image button: a fresh runnable image (busybox
# httpd serving a marker on port 8080, localdev.images), pushed with skopeo
# to REGISTRY_HOST/REPOSITORY:TAG over plain HTTP. Prints the digest.
#   tilt/push-test-image.sh 10.0.0.50:5000 imagestream-demo/demo:latest
set -euo pipefail
registry=$1 destination=$2
cd "$(dirname "$0")/.."
layout=$(mktemp -d)
trap 'rm -rf "$layout"' EXIT
marker="tilt-push-$(date +%s%N)"
digest=$(.venv/bin/python -m localdev.images app "$layout" "$marker")
skopeo copy --quiet --dest-tls-verify=false --preserve-digests "oci:$layout" "docker://$registry/$destination"
echo "pushed $registry/$destination $digest ($marker)"
