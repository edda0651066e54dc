#!/usr/bin/env bash
# Build (once) hack/kstatus: a tiny command around sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, the
# library Flux's health checks use, so tests can ask the real rules how they read the operator's objects.
# Modules come from the Go module proxy at the versions in hack/kstatus/go.mod (go.sum checks them); the binary
# is cached under a hash of the sources, so an edit rebuilds it and nothing else does.
#
# Prints the path of the binary.
#   hack/kstatus.sh            # build or reuse
#   hack/kstatus.sh --print    # print the path, build nothing (exit 1 if not built)
set -euo pipefail

SOURCE="$(cd "$(dirname "$0")/kstatus" && pwd)"
CACHE_ROOT="${IMAGESCAN_KSTATUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imagescan/kstatus}"
digest="$(cat "$SOURCE/go.mod" "$SOURCE/go.sum" "$SOURCE/main.go" | sha256sum | cut -c1-16)"
BINARY="$CACHE_ROOT/$digest/kstatus"

if [[ -x "$BINARY" ]]; then echo "$BINARY"; exit 0; fi
if [[ "${1:-}" == "--print" ]]; then echo "$BINARY"; exit 1; fi
command -v go >/dev/null || { echo "kstatus: no Go toolchain on PATH (https://go.dev/dl/)" >&2; exit 3; }

started=$SECONDS
mkdir -p "$(dirname "$BINARY")"
(cd "$SOURCE" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BINARY.partial" .)
mv "$BINARY.partial" "$BINARY"
echo "kstatus: built in $((SECONDS - started)) s: $BINARY" >&2
echo "$BINARY"
