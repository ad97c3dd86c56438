#!/bin/bash
# bench.sh - READ KEYS latency/throughput through prhelper, through
# qemu-pr-helper and with direct SG_IO, in one lab VM (tools/prbench). A
# measurement, not a test: it never fails on numbers. Args go to run.sh's
# command file: bench.sh [REQUESTS_PER_ROW] (default 1600). BENCH=mpath runs
# the same on a dm-multipath map (tests/bench-mpath.sh); BENCH=mixed the mixed
# PR IN/OUT sequence from 3 initiators (tests/bench-mixed.sh, arg: steps).
set -uo pipefail
LAB=$(cd "$(dirname "$0")" && pwd)
BUILD=${LAB_BUILD:-$LAB/build}
export LAB_BUILD=$BUILD
"$LAB/build.sh" || exit 1
"$LAB/gobuild.sh" || exit 1
out=$BUILD/runs/bench
rm -rf "$out"
LAB_NO_BUILD=1 "$LAB/run.sh" -q -t 600 -o "$out" "$LAB/tests/bench${BENCH:+-$BENCH}.sh" "${1:-1600}"
rc=$?
sed -n "/^READ KEYS round trips\\|^serial on\\|^readkeys on\\|^== load/,/^# ->/p" "$out/out/guest.log"
exit $rc
