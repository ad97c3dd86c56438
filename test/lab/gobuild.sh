#!/bin/bash
# gobuild.sh - build the Go binaries the lab VMs use, static (CGO_ENABLED=0),
# into $LAB_BUILD/gobin (default build/gobin), which run.sh shares with every VM
# read-only at /lab/bin: cmd/prhelper, cmd/prpersist and every lab tool in
# test/lab/tools/*/, plus "etcd", the etcd server the Go tests run (pinned in
# test/etcdserver/go.mod, static): the same build and cache as the tests
# (internal/store/etcd/etcdtest, printed by its etcdpath command), so a machine
# that ran the Go tests copies it, and one that did not builds it once (minutes).
# Prints "FAIL go build <pkg>" per package that does not build and exits with the
# number of failures.
set -uo pipefail
LAB=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$LAB/../.." && pwd)
BUILD=${LAB_BUILD:-$LAB/build}
GO=$(command -v go || echo /usr/local/go/bin/go)
mkdir -p "$BUILD/gobin"
rm -f "$BUILD/gobin"/*
fails=0
pkgs="./cmd/prhelper ./cmd/prpersist"
for d in "$LAB"/tools/*/; do pkgs="$pkgs ./test/lab/tools/$(basename "$d")"; done
for pkg in $pkgs; do
	if ! (cd "$ROOT" && CGO_ENABLED=0 "$GO" build -trimpath -o "$BUILD/gobin/" "$pkg"); then
		echo "FAIL go build $pkg"; fails=$((fails + 1))
	fi
done
if etcd=$(cd "$ROOT" && "$GO" run ./internal/store/etcd/etcdtest/etcdpath) && cp "$etcd" "$BUILD/gobin/etcd"; then
	:
else
	echo "FAIL go build etcd server (test/etcdserver through etcdtest/etcdpath)"; fails=$((fails + 1))
fi
exit $fails
