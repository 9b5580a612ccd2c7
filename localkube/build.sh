#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-controller-manager),
# the node (kubelet, kube-scheduler, kube-proxy, kubectl, crictl, CoreDNS) and
# the chart tools (helm, tilt) from Go modules into a cache outside the
# repository, keyed by version.
#
# Invariant: a binary in the cache is only ever the finished output of a build
# (we write to a temporary name and rename), so an interrupted build is redone
# instead of leaving a truncated binary that looks built.
#
# Usage: localkube/build.sh [TARGET] [--print-dir]
#   TARGET is one of
#     controlplane  etcd, kube-apiserver, kube-controller-manager (the default)
#     node          kubelet, kube-scheduler, kube-proxy, kubectl (same k8s.io/kubernetes
#                   version as the control plane), crictl, coredns
#     helm          helm, told the Kubernetes version we run (not its 1.20 default)
#     tilt          tilt (needs cgo: a C compiler)
#     keel          Keel, the peer `make bench-peers` compares with (needs cgo: sqlite)
#     seaweedfs     weed, SeaweedFS's S3 gateway the registry's s3 storage is tested on
#   Builds what is missing, then prints the target's bin dir; with
#   --print-dir only prints it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target=controlplane
print_dir=false
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=true ;;
    controlplane | node | helm | tilt | keel | seaweedfs) target="$arg" ;;
    *) echo "usage: $0 [controlplane|node|helm|tilt|keel|seaweedfs] [--print-dir]" >&2; exit 2 ;;
  esac
done

module_version() {  # module_version <module dir> <module path>
  awk -v path="$2" '$1 == path {print $2; exit}' "$here/$1/go.mod"
}

kube_version="$(module_version kubernetes k8s.io/kubernetes)"
cache_root="${IMAGESTREAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imagestream-controller}"
case "$target" in
  controlplane)
    etcd_version="$(module_version etcd go.etcd.io/etcd/server/v3)"
    out="$cache_root/k8s-bins/kube-$kube_version-etcd-$etcd_version"
    ;;
  node)
    crictl_version="$(module_version cri-tools sigs.k8s.io/cri-tools)"
    coredns_version="$(module_version coredns github.com/coredns/coredns)"
    out="$cache_root/k8s-bins/node-kube-$kube_version-crictl-$crictl_version-coredns-$coredns_version"
    ;;
  helm)
    helm_version="$(module_version helm helm.sh/helm/v3)"
    out="$cache_root/tools/helm-$helm_version-kube-$kube_version"
    ;;
  tilt)
    tilt_version="$(module_version tilt github.com/tilt-dev/tilt)"
    # "-page": built with localkube/tilt/index.html as its web UI (see below).
    out="$cache_root/tools/tilt-$tilt_version-page"
    ;;
  keel)
    keel_version="$(module_version keel github.com/keel-hq/keel)"
    out="$cache_root/tools/keel-$keel_version"
    ;;
  seaweedfs)
    seaweedfs_version="$(module_version seaweedfs github.com/seaweedfs/seaweedfs)"
    out="$cache_root/tools/seaweedfs-$seaweedfs_version"
    ;;
esac

if $print_dir; then
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

case "$target" in
  controlplane)
    build etcd go.etcd.io/etcd/server/v3 etcd
    build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "${version_ldflags[*]}"
    build kubernetes k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager "${version_ldflags[*]}"
    ;;
  node)
    # The same wrapper module (and so the same k8s.io/kubernetes version and
    # go.sum) as the control plane: a kubelet of another version than the
    # API server it registers with is a skew we never want to debug.
    build kubernetes k8s.io/kubernetes/cmd/kubelet kubelet "${version_ldflags[*]}"
    build kubernetes k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler "${version_ldflags[*]}"
    build kubernetes k8s.io/kubernetes/cmd/kube-proxy kube-proxy "${version_ldflags[*]}"
    build kubernetes k8s.io/kubernetes/cmd/kubectl kubectl "${version_ldflags[*]}"
    # crictl only cleans up: the CRI sweep after a crash (localdev/node.py).
    build cri-tools sigs.k8s.io/cri-tools/cmd/crictl crictl \
      "-X sigs.k8s.io/cri-tools/pkg/version.Version=$crictl_version"
    # Cluster DNS, run as a Pod from an image localdev makes of this binary.
    build coredns github.com/coredns/coredns coredns
    ;;
  helm)
    # Without these, `helm template` and `helm lint` assume Kubernetes v1.20
    # and refuse a chart whose kubeVersion asks for more (helm#13248).
    helm_ldflags=(
      "-X helm.sh/helm/v3/internal/version.version=$helm_version"
      "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"
      "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
      "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
      "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
      "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
    )
    build helm helm.sh/helm/v3/cmd/helm helm "${helm_ldflags[*]}"
    ;;
  tilt)
    # Tilt's Tiltfile language server links tree-sitter, which is C.
    command -v "${CC:-cc}" >/dev/null || {
      echo "localkube: tilt needs a C compiler (cgo); install gcc" >&2
      exit 1
    }
    # The module holds no web UI (it is built with yarn into pkg/assets/build,
    # which go:embed reads), and without an index.html there every `tilt up`
    # and `tilt ci` stops at once: "running in prod mode, but JS/CSS files are
    # not available". The module cache is read-only and `go build -overlay`
    # refuses files in it, so the build uses a copy of the module (20 MB)
    # with a one-page placeholder UI, through a replace in a copy of go.mod.
    if [[ ! -x "$out/tilt" ]]; then
      work="$(mktemp -d)"
      trap 'rm -rf "$work"' EXIT
      # `go list -m` names the module's directory only once it is in the module
      # cache: on a fresh machine it must be downloaded first.
      src="$(cd "$here/tilt" && go mod download github.com/tilt-dev/tilt &&
        go list -m -f '{{.Dir}}' github.com/tilt-dev/tilt)"
      [[ -n "$src" && -d "$src" ]] || {
        echo "localkube: cannot find the tilt module's source (go mod download failed?)" >&2
        exit 1
      }
      cp -r "$src" "$work/src" && chmod -R u+w "$work/src"
      cp "$here/tilt/index.html" "$work/src/pkg/assets/build/index.html"
      cp "$here/tilt/go.mod" "$here/tilt/go.sum" "$work/"
      echo "replace github.com/tilt-dev/tilt => $work/src" >>"$work/go.mod"
      GOFLAGS="$GOFLAGS -modfile=$work/go.mod" CGO_ENABLED=1 build tilt github.com/tilt-dev/tilt/cmd/tilt tilt \
        "-X main.version=${tilt_version#v}"
    else
      build tilt github.com/tilt-dev/tilt/cmd/tilt tilt
    fi
    ;;
  keel)
    # Keel keeps its approvals in SQLite (mattn/go-sqlite3), which is C.
    command -v "${CC:-cc}" >/dev/null || {
      echo "localkube: keel needs a C compiler (cgo); install gcc" >&2
      exit 1
    }
    CGO_ENABLED=1 build keel github.com/keel-hq/keel/cmd/keel keel \
      "-X github.com/keel-hq/keel/version.Version=${keel_version#v}"
    ;;
  seaweedfs)
    # weed links about 1,700 packages (every filer store, the admin UI, the
    # message queue...). On the 2-core machine we share, one package at a
    # time (each compile still uses both cores) and at low priority, so a
    # cold build does not starve the tests running beside it. With
    # LOCALKUBE_FULL_SPEED=1 (.ci/run sets it: the machine is the run's alone)
    # Go's own parallelism at full priority, since one package at a time made
    # a cold build take over half an hour.
    # COMMIT: `weed version` then names the module version we built.
    seaweedfs_flags="$GOFLAGS"
    if [ "${LOCALKUBE_FULL_SPEED:-}" != 1 ]; then
      renice -n 10 -p $$ >/dev/null
      seaweedfs_flags="$GOFLAGS -p=1"
    fi
    GOFLAGS="$seaweedfs_flags" build seaweedfs github.com/seaweedfs/seaweedfs/weed weed \
      "-X github.com/seaweedfs/seaweedfs/weed/util/version.COMMIT=${seaweedfs_version##*-}"
    ;;
esac

echo "$out"
