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
# go build -v names each package as it compiles it: the first build (about
# 90 s on 2 cores, with the module download) shows its progress, a cached one
# prints nothing here
echo "build: go build ./cmd/prhelper ./cmd/prpersist ($ver): the first build downloads the modules and compiles about 200 packages (~90 s on 2 cores)" >&2
CGO_ENABLED=0 go build -v -trimpath -ldflags "-X main.version=$ver" -o bin/ ./cmd/prhelper ./cmd/prpersist 2>&1 |
	while IFS= read -r line; do echo "build: $line" >&2; done
echo "built bin/prhelper bin/prpersist ($ver)" >&2
