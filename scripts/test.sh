#!/bin/bash
# scripts/test.sh - run every test of prhelper: formatting and vet checks, the Go
# unit tests with the race detector (fuzz seed corpora included), then the
# storage-lab integration tests (a Debian 6.1 VM under QEMU with real LIO disks).
#
# It installs what it needs on Debian (gcc for -race; QEMU and friends for the
# lab, through test/lab/check.sh) when run as root. The lab is skipped, with the
# reason printed, only when it cannot run here; under CI=true a skipped lab is a
# failure. Ends with one line "all: N passed, N failed".
#
# Env: PRHELPER_SKIP_LAB=1  run only the Go checks (says so at the end)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

say() { echo "[test] $*"; }
need_root_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null || { say "FATAL: Go (1.26 or newer) is not installed: see README.md"; echo "all: 0 passed, 1 failed"; exit 1; }
# the race detector links cgo: it needs gcc and the C library headers
cgo_ok() { command -v gcc >/dev/null && printf '#include <stdlib.h>\nint main(void){return 0;}\n' | gcc -x c -o /dev/null - >/dev/null 2>&1; }
if ! cgo_ok; then
	if need_root_apt; then
		say "installing gcc and libc6-dev for go test -race"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null ||
			say "apt-get install gcc libc6-dev failed"
	fi
	cgo_ok || say "no working gcc: go test -race will fail (install gcc and libc6-dev)"
fi

# docs/man's test renders the manual pages with man -l (groff)
if ! command -v man >/dev/null || ! command -v groff >/dev/null; then
	if need_root_apt; then
		say "installing man-db and groff-base for the manual-page test"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends man-db groff-base >/dev/null ||
			say "apt-get install man-db groff-base failed"
	fi
	command -v man >/dev/null || say "no man: docs/man's rendering test skips (fails under CI=true)"
fi

pass=0 fail=0
# Fetch every module once, up front: on an empty module cache the go commands
# below would otherwise interleave "go: downloading ..." lines with their
# findings. A failure here is reported by the checks that need the modules.
say "go mod download"
go mod download 2>&1 | tail -n 20

ERR=$(mktemp)
check() { # check NAME MODE CMD... : a pass/fail hygiene step, judged on its
	# exit status; MODE "list" also fails on any standard output (gofmt -l's
	# file list, go mod tidy -diff's diff). Standard error (e.g. "go:
	# downloading ...") is shown only when the step fails.
	local name=$1 mode=$2; shift 2
	local out rc ok=1
	out=$("$@" 2>"$ERR"); rc=$?
	[ $rc = 0 ] || ok=0
	[ "$mode" = list ] && [ -n "$out" ] && ok=0
	if [ $ok = 1 ]; then
		pass=$((pass + 1)); say "PASS $name"
	else
		fail=$((fail + 1)); say "FAIL $name (exit $rc)"
		{ echo "$out"; grep -v '^go: downloading ' "$ERR"; } | grep -v '^$' | head -40
	fi
}
check gofmt list gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './test/lab/build/*')
check "go vet" status go vet ./...
check "go mod tidy" list go mod tidy -diff
# -trimpath as test/lab/gobuild.sh builds: the lab then reuses the build cache
check "CGO_ENABLED=0 build" status env CGO_ENABLED=0 go build -trimpath -o /dev/null ./...
rm -f "$ERR"

say "go test -race ./..."
LOG=$(mktemp)
go test -race -count=1 -v ./... > "$LOG" 2>&1
grc=$?
grep -E '^(ok|FAIL|---|panic|\?)|^\s+--- FAIL' "$LOG" | grep -v -- '--- PASS' | grep -v '^?' | tail -n 60
upass=$(grep -cE '^\s*--- PASS' "$LOG")
ufail=$(grep -cE '^\s*--- FAIL' "$LOG")
uskip=$(grep -cE '^\s*--- SKIP' "$LOG")
if [ $grc != 0 ] && [ "$ufail" = 0 ]; then
	ufail=1; say "go test failed outside a test (build error or panic):"; tail -n 30 "$LOG"
fi
say "unit: $upass passed, $ufail failed, $uskip skipped"
grep -E '^\s*--- SKIP' -A1 "$LOG" | grep -vE '^\s*--- SKIP|^--$' | sed 's/^/[test] skipped: /' | head -n 20
pass=$((pass + upass)) fail=$((fail + ufail))
rm -f "$LOG"

if [ "${PRHELPER_SKIP_LAB:-0}" = 1 ]; then
	say "SKIP lab: PRHELPER_SKIP_LAB=1 was set"
	[ "${CI:-}" = true ] && { say "CI must run the lab"; fail=$((fail + 1)); }
else
	say "lab: test/lab/check.sh"
	LOG=$(mktemp)
	"$ROOT/test/lab/check.sh" 2>&1 | tee "$LOG"
	lrc=${PIPESTATUS[0]}
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOG" | tail -n1)
	if grep -q '^SKIP lab' "$LOG"; then
		say "lab skipped: $(grep '^SKIP lab' "$LOG" | head -n1)"
		[ "${CI:-}" = true ] && { say "CI must run the lab"; fail=$((fail + 1)); }
	elif [ -n "$line" ]; then
		lp=${line%% passed*}; lf=${line#*, }; lf=${lf%% failed*}
		pass=$((pass + lp)) fail=$((fail + lf))
		[ $lrc != 0 ] && [ "$lf" = 0 ] && fail=$((fail + 1))
	else
		say "lab ended without a summary line (exit $lrc)"; fail=$((fail + 1))
	fi
	rm -f "$LOG"
fi
echo "all: $pass passed, $fail failed"
[ $fail = 0 ]
