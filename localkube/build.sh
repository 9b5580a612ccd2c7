#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-controller-manager)
# from Go modules into a cache outside the repository, keyed by version.
#
# Invariant: a binary in the cache is only ever the finished output of a build
# (we write to a temporary name and rename), so an interrupted build is redone
# instead of leaving a truncated binary that looks built.
#
# Usage: localkube/build.sh            build what is missing, print the bin dir
#        localkube/build.sh --print-dir   only print the bin dir
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kube_version="$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$here/kubernetes/go.mod")"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$here/etcd/go.mod")"
cache_root="${IMAGESTREAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imagestream-controller}"
out="$cache_root/k8s-bins/kube-$kube_version-etcd-$etcd_version"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

# major/minor for the version ldflags: v1.37.2 -> 1 37
minor="${kube_version#v1.}"
minor="${minor%%.*}"
version_ldflags=(
  "-X k8s.io/component-base/version.gitVersion=$kube_version"
  "-X k8s.io/component-base/version.gitMajor=1"
  "-X k8s.io/component-base/version.gitMinor=$minor"
  "-X k8s.io/component-base/version.gitTreeState=clean"
  "-X k8s.io/client-go/pkg/version.gitVersion=$kube_version"
  "-X k8s.io/client-go/pkg/version.gitMajor=1"
  "-X k8s.io/client-go/pkg/version.gitMinor=$minor"
)

build() {  # build <module dir> <package> <binary name> [ldflags...]
  local module_dir="$1" package="$2" name="$3"
  shift 3
  if [[ -x "$out/$name" ]]; then
    echo "localkube: $name is cached in $out" >&2
    return
  fi
  echo "localkube: building $name from $package (the first build takes several minutes)" >&2
  local started=$SECONDS
  (cd "$here/$module_dir" &&
    go build -trimpath -tags=notest,grpcnotrace -ldflags "-s -w $*" \
      -o "$out/$name.partial" "$package")
  mv "$out/$name.partial" "$out/$name"
  echo "localkube: built $name in $((SECONDS - started))s" >&2
}

build etcd go.etcd.io/etcd/server/v3 etcd
build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "${version_ldflags[*]}"
build kubernetes k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager "${version_ldflags[*]}"

echo "$out"
