#!/usr/bin/env bash
# Build (once) the upstream control plane the end-to-end tests run against:
# kube-apiserver and kube-controller-manager for a pinned Kubernetes release, and etcd.
#
# Why a script and not `go install`: k8s.io/kubernetes's go.mod points every staging module
# (k8s.io/api, apimachinery, client-go, ...) at ./staging/src with replace lines, which
# `go install mod@version` refuses. A throwaway wrapper module requires k8s.io/kubernetes and
# replaces each staging module with its published v0.Y.Z, then builds the commands from it.
# The same goes for etcd's server module.
#
# Prints the folder holding the binaries. Does nothing but print it when they are already there.
#   hack/control-plane.sh            # build or reuse
#   hack/control-plane.sh --print    # print the folder, build nothing (exit 1 if incomplete)
set -euo pipefail

KUBERNETES_VERSION="${IMAGESCAN_KUBERNETES_VERSION:-v1.37.2}"
ETCD_VERSION="${IMAGESCAN_ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${IMAGESCAN_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagescan/control-plane}"
OUT="$CACHE_ROOT/$KUBERNETES_VERSION"
BINARIES=(kube-apiserver kube-controller-manager etcd)

complete() {
  for binary in "${BINARIES[@]}"; do [[ -x "$OUT/$binary" ]] || return 1; done
}

if complete; then echo "$OUT"; exit 0; fi
if [[ "${1:-}" == "--print" ]]; then echo "$OUT"; exit 1; fi
command -v go >/dev/null || { echo "control-plane: no Go toolchain on PATH (https://go.dev/dl/)" >&2; exit 3; }

log() { echo "control-plane: $*" >&2; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
started=$SECONDS

# The staging modules are whatever this release's go.mod replaces with ./staging/src/...;
# each is published as v0.<minor>.<patch> under its own name.
staging_version="v0.${KUBERNETES_VERSION#v1.}"
kubernetes_mod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
mapfile -t staging < <(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$kubernetes_mod")
log "kubernetes $KUBERNETES_VERSION: ${#staging[@]} staging modules at $staging_version"

build_kubernetes() {
  local dir="$WORK/kubernetes"
  mkdir -p "$dir"
  {
    echo "module imagescan.io/control-plane-build"
    echo
    echo "go 1.26.0"
    echo
    grep '^godebug' "$kubernetes_mod" || true
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    for module in "${staging[@]}"; do echo "	$module => $module $staging_version"; done
    echo ")"
  } >"$dir/go.mod"
  local pkg="github.com/kubernetes/kubernetes"  # unused; kept for grep-ability of the source repo
  local ldflags="-s -w"
  ldflags+=" -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
  ldflags+=" -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$KUBERNETES_VERSION")"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitMinor=$(cut -d. -f2 <<<"$KUBERNETES_VERSION")"
  (
    cd "$dir"
    for command in kube-apiserver kube-controller-manager; do
      GOFLAGS=-mod=mod go get "k8s.io/kubernetes/cmd/$command@$KUBERNETES_VERSION" >&2
    done
    for command in kube-apiserver kube-controller-manager; do
      log "building $command"
      CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags selinux,notest -ldflags "$ldflags" \
        -o "$OUT/$command.partial" "k8s.io/kubernetes/cmd/$command"
      mv "$OUT/$command.partial" "$OUT/$command"
    done
  )
}

build_etcd() {
  local dir="$WORK/etcd"
  mkdir -p "$dir"
  local etcd_mod
  etcd_mod="$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  {
    echo "module imagescan.io/etcd-build"
    echo
    echo "go 1.26.0"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(go.etcd.io/etcd/[a-z0-9/-]*\) => \.\./.*#\1#p' "$etcd_mod" |
      while read -r module; do echo "	$module => $module $ETCD_VERSION"; done
    echo ")"
  } >"$dir/go.mod"
  (
    cd "$dir"
    GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
    log "building etcd $ETCD_VERSION"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.partial" go.etcd.io/etcd/server/v3
    mv "$OUT/etcd.partial" "$OUT/etcd"
  )
}

[[ -x "$OUT/etcd" ]] || build_etcd
[[ -x "$OUT/kube-apiserver" && -x "$OUT/kube-controller-manager" ]] || build_kubernetes
log "built in $((SECONDS - started)) s: $(du -sh "$OUT" | cut -f1) in $OUT"
echo "$OUT"
