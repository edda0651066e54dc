#!/usr/bin/env bash
# Build (once) the helm CLI the install tests render and lint the chart with (tests/cluster/test_install.py),
# from the Go module proxy at a pinned version, with the version stamps upstream's Makefile sets (so
# `helm version` and the Kubernetes version `helm template`/`helm lint` assume are the release's, not "v3.x"
# and a guess).
#
# Prints the path of the binary. Does nothing but print it when it is already there.
#   hack/helm.sh            # build or reuse
#   hack/helm.sh --print    # print the path, build nothing (exit 1 if not built)
set -euo pipefail

HELM_VERSION="${IMAGESCAN_HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${IMAGESCAN_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagescan/helm}"
OUT="$CACHE_ROOT/$HELM_VERSION"
BINARY="$OUT/helm"

if [[ -x "$BINARY" ]]; then echo "$BINARY"; exit 0; fi
if [[ "${1:-}" == "--print" ]]; then echo "$BINARY"; exit 1; fi
command -v go >/dev/null || { echo "helm: no Go toolchain on PATH (https://go.dev/dl/)" >&2; exit 3; }

log() { echo "helm: $*" >&2; }
started=$SECONDS
mkdir -p "$OUT"

# helm's go.mod has no replace lines, so `go install module@version` builds it as released. The Kubernetes
# version helm assumes when no cluster is asked (.Capabilities.KubeVersion) is that of its client-go.
helm_mod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
client_go="$(sed -n 's#^\s*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$helm_mod" | head -1)"
[[ -n "$client_go" ]] || { log "no k8s.io/client-go in $helm_mod"; exit 1; }
ldflags="-s -w"
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$client_go"
done

log "building helm $HELM_VERSION (Kubernetes 1.$client_go libraries)"
GOBIN="$OUT/.partial" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
mv "$OUT/.partial/helm" "$BINARY"
rmdir "$OUT/.partial"
log "built in $((SECONDS - started)) s: $BINARY"
echo "$BINARY"
