#!/bin/bash
# scripts/build.sh - build prhelper and prpersist into ./bin, statically and
# without cgo (the privilege drop needs a CGO_ENABLED=0 binary).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null || { echo "build: Go 1.26 or newer is needed (see README.md)" >&2; exit 1; }
ver=$(git describe --always --dirty 2>/dev/null || echo dev)
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$ver" -o bin/ ./cmd/prhelper ./cmd/prpersist
echo "built bin/prhelper bin/prpersist ($ver)" >&2
