#!/bin/bash
# bench.sh - READ KEYS latency/throughput through prhelper, through
# qemu-pr-helper and with direct SG_IO, in one lab VM (tools/prbench). A
# measurement, not a test: it never fails on numbers. Args go to run.sh's
# command file: bench.sh [REQUESTS_PER_ROW] (default 1600). BENCH=mpath runs
# the same on a dm-multipath map (tests/bench-mpath.sh); BENCH=mixed the mixed
# PR IN/OUT sequence from 3 initiators (tests/bench-mixed.sh, arg: steps), and
# with BASE=REV a row for prhelper built from git revision REV, and with
# ENVS="VAR=VALUE ..." a row for each setting: the same prhelper started with
# it in its environment, and LAB_ROUNDS=R the paths taking turns R times
# (BENCH=mixed only). LAB_KARGS="ARGS" adds ARGS to the guest kernel's command
# line (run.sh -e), e.g. LAB_KARGS="tsc=reliable": the guest then reads its
# clock from the TSC in the vDSO, as a KVM guest or a host does, instead of
# the emulated HPET, a system call and an emulated device read per clock read
# (docs/performance.md §3.6).
set -uo pipefail
LAB=$(cd "$(dirname "$0")" && pwd)
BUILD=${LAB_BUILD:-$LAB/build}
export LAB_BUILD=$BUILD
"$LAB/build.sh" || exit 1
"$LAB/gobuild.sh" || exit 1
if [ -n "${BASE:-}" ]; then
	# BASE=REV: prhelper built from git revision REV as a further row
	# (prhelper@REV), before/after in one run (BENCH=mixed only).
	base=$(mktemp -d /tmp/labbench-base.XXXXXX)
	(cd "$LAB/../.." && git archive "$BASE") | tar -x -C "$base" &&
		(cd "$base" && CGO_ENABLED=0 "$(command -v go || echo /usr/local/go/bin/go)" build -trimpath -o "$BUILD/gobin/prhelper-base" ./cmd/prhelper)
	rc=$?
	rm -rf "$base"
	[ $rc = 0 ] || { echo "bench: cannot build prhelper at $BASE"; exit 1; }
fi
out=$BUILD/runs/bench
rm -rf "$out"
args=("${1:-1600}")
[ -z "${BASE:-}${ENVS:-}${LAB_ROUNDS:-}" ] || args+=(14 "${BASE:--}" "${ENVS:-}" "${LAB_ROUNDS:-1}")
kargs=()
[ -z "${LAB_KARGS:-}" ] || kargs=(-e "$LAB_KARGS")
LAB_NO_BUILD=1 "$LAB/run.sh" -q -t 600 "${kargs[@]}" -o "$out" "$LAB/tests/bench${BENCH:+-$BENCH}.sh" "${args[@]}"
rc=$?
sed -n "/^READ KEYS round trips\\|^serial on\\|^readkeys on\\|^== load/,/^# ->/p" "$out/out/guest.log"
exit $rc
