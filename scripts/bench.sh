#!/bin/bash
# bench.sh - the performance table of issue 14 in one run (docs/performance.md).
# A measurement, not a test: it never fails on numbers, only when a helper or
# a request fails. Not run by CI.
#
#   scripts/bench.sh [host|lab|emulate|all]     (default: all = host, lab)
#
# host: prhelper, qemu-pr-helper (/usr/bin, or $QEMU_PR_HELPER) and prbench's
#       bare fd-passing echo floor on a regular file (the refusal path both
#       helpers take), at 1, 16 and 64 clients, READ KEYS alone and a seeded
#       mixed PR IN/OUT sequence (prgen seed $SEED); ratios to qemu-pr-helper.
#       HOST_N requests per row (default 20000) in ROUNDS rounds (default 5),
#       the paths taking turns.
# lab:  test/lab/bench.sh with BENCH=mixed (under $LAB_LOCK, default
#       /tmp/prhelper-lab.lock): the 2,000-command sequence from 3 initiators
#       through prhelper --backend=sgio, qemu-pr-helper and direct SG_IO on LIO.
#
# emulate: prhelper --backend=emulate on a SQLite file (issue 14 item 4), one
#       regular file as the one logical unit, one --listen socket per
#       initiator (64, initiator=name:...): REGISTER AND IGNORE EXISTING KEY
#       (register), prgen seed $SEED's mixed PR IN/OUT sequence (mixed) and
#       READ KEYS from one connection while the others register (rkw), at 1, 8
#       and 64 initiators; the disk's serial write+fdatasync rate (prbench
#       -fsync, next to the database) before and after. EMU_N requests per row
#       (default 6000), EMU_CLIENTS (default 1,8,64), EMU_WORKLOADS (default
#       "register rkw mixed"). After each workload, each helper's store commit
#       durations so far (its --metrics histogram, scraped over a unix socket).
#
# BASE=REV adds a row for prhelper built from git revision REV (before/after
# in one run). OUT=FILE appends the transcript there too (docs/bench/ keeps the committed
# ones). The load (uptime) is printed before and after each part: the machine
# is shared, so only figures of one run compare.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATH=/usr/local/go/bin:$PATH
what=${1:-all}
SEED=${SEED:-14}
HOST_N=${HOST_N:-20000}
QPH=${QEMU_PR_HELPER:-/usr/bin/qemu-pr-helper}
OUT=${OUT:-/dev/null}
if [ "$OUT" != /dev/null ]; then exec > >(tee -a "$OUT") 2>&1; fi

host() {
	local d pids=()
	d=$(mktemp -d /tmp/prbench.XXXXXX)
	trap 'kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; rm -rf "$d"' RETURN
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$d/" ./cmd/prhelper ./test/lab/tools/prbench ./test/lab/tools/prgen)
	"$d/prgen" -print -rtpi 1,2,3 -seed "$SEED" -steps 2000 -dump "$d/seq.txt" >/dev/null
	truncate -s 64M "$d/disk.img"
	"$d/prhelper" -q -k "$d/prhelper.sock" >"$d/prhelper.log" 2>&1 & pids+=($!)
	"$QPH" -k "$d/qemu.sock" >"$d/qemu.log" 2>&1 & pids+=($!)
	"$d/prbench" -echo "$d/echo.sock" & pids+=($!)
	local socks="prhelper qemu echo" base=()
	if [ -n "${BASE:-}" ]; then
		mkdir "$d/base"
		(cd "$ROOT" && git archive "$BASE") | tar -x -C "$d/base"
		(cd "$d/base" && CGO_ENABLED=0 go build -o "$d/prhelper-base" ./cmd/prhelper)
		"$d/prhelper-base" -q -k "$d/base.sock" >"$d/base.log" 2>&1 & pids+=($!)
		socks="$socks base"
		base=(-helper "prhelper@$BASE=$d/base.sock")
	fi
	for s in $socks; do
		for _ in $(seq 100); do [ -S "$d/$s.sock" ] && break; sleep 0.1; done
		[ -S "$d/$s.sock" ] || { echo "bench: $s did not listen"; cat "$d"/*.log; return 1; }
	done
	echo "== host: $(uname -r), $(nproc) CPUs, $($QPH --version | head -1), prhelper $(cd "$ROOT" && git describe --always --dirty)"
	echo "== load before: $(uptime)"
	"$d/prbench" -dev "$d/disk.img" "${base[@]}" -helper "prhelper=$d/prhelper.sock" -helper "qemu-pr-helper=$d/qemu.sock" \
		-helper "echo floor=$d/echo.sock" -direct=false -ref qemu-pr-helper -clients 1,16,64 \
		-workload readkeys,mixed -seq "$d/seq.txt" -n "$HOST_N" -rounds "${ROUNDS:-5}"
	echo "== load after: $(uptime)"
}

emulate() {
	local d pids=() i
	d=$(mktemp -d /tmp/prbench.XXXXXX)
	trap 'kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; rm -rf "$d"' RETURN
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$d/" ./cmd/prhelper ./test/lab/tools/prbench ./test/lab/tools/prgen)
	"$d/prgen" -print -rtpi 1,2,3 -seed "$SEED" -steps 2000 -dump "$d/seq.txt" >/dev/null
	truncate -s 64M "$d/disk.img"
	start() { # NAME BINARY: an emulating helper with 64 sockets, one initiator each
		local args=() i
		for i in $(seq 0 63); do args+=("--listen=$d/$1-$i.sock,initiator=name:iqn.2025-01.dev.prhelper:bench$i"); done
		"$2" -q --backend=emulate --db="$d/$1.db" --metrics="unix:$d/$1-metrics.sock" "${args[@]}" >"$d/$1.log" 2>&1 & pids+=($!)
	}
	commits() { # WORKLOAD: each helper's store commit durations so far (histogram, cumulative)
		local n
		for n in $names; do
			curl -s --unix-socket "$d/$n-metrics.sock" http://x/metrics | awk -v who="$n" -v w="$1" '
				/^prhelper_store_commit_duration_seconds_bucket\{.*store="sqlite"/ {
					match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
					c = $NF + 0; if (c > prev) { out = out sprintf(" <=%s:%d", le, c - prev) }; prev = c }
				/^prhelper_store_commit_duration_seconds_count\{.*store="sqlite"/ { total = $NF }
				END { printf "commit durations after %s, %s (s; commits per bucket, all rows so far): %d:%s\n", w, who, total, out }'
		done
	}
	start prhelper "$d/prhelper"
	local names="prhelper" base=() ref=prhelper
	if [ -n "${BASE:-}" ]; then
		mkdir "$d/base"
		(cd "$ROOT" && git archive "$BASE") | tar -x -C "$d/base"
		(cd "$d/base" && CGO_ENABLED=0 go build -o "$d/prhelper-base" ./cmd/prhelper)
		start base "$d/prhelper-base"
		names="base prhelper"
		base=(-helper "prhelper@$BASE=$d/base-%d.sock")
		ref="prhelper@$BASE"
	fi
	for s in $names; do
		for _ in $(seq 100); do [ -S "$d/$s-63.sock" ] && break; sleep 0.1; done
		[ -S "$d/$s-63.sock" ] || { echo "bench: $s did not listen"; cat "$d"/*.log; return 1; }
	done
	echo "== emulate: $(uname -r), $(nproc) CPUs, prhelper $(cd "$ROOT" && git describe --always --dirty), database on $(df --output=source,fstype "$d" | tail -1)"
	echo "== load before: $(uptime)"
	"$d/prbench" -fsync "$d/fsync.tmp" -n 3000
	local rows=(-dev "$d/disk.img" "${base[@]}" -helper "prhelper=$d/prhelper-%d.sock" -socks 64 -direct=false
		-n "${EMU_N:-6000}" -rounds "${ROUNDS:-3}")
	local wl
	for wl in ${EMU_WORKLOADS:-register rkw mixed}; do
		case $wl in
		register) "$d/prbench" "${rows[@]}" -ref "$ref" -clients "${EMU_CLIENTS:-1,8,64}" -workload register ;;
		rkw) "$d/prbench" "${rows[@]}" -ref "$ref w" -clients "${EMU_RKW_CLIENTS:-8,64}" -workload rkw ;;
		mixed) "$d/prbench" "${rows[@]}" -ref "$ref" -clients "${EMU_CLIENTS:-1,8,64}" -workload mixed -seq "$d/seq.txt" ;;
		esac
		commits "$wl"
	done
	"$d/prbench" -fsync "$d/fsync.tmp" -n 3000
	echo "== load after: $(uptime)"
}

lab() {
	echo "== lab: load before: $(uptime)"
	flock "${LAB_LOCK:-/tmp/prhelper-lab.lock}" env BENCH=mixed bash "$ROOT/test/lab/bench.sh" "${LAB_STEPS:-2000}"
	echo "== lab: load after: $(uptime)"
}

case $what in
host) host ;;
lab) lab ;;
emulate) emulate ;;
all) host; lab ;;
*) echo "usage: scripts/bench.sh [host|lab|emulate|all]"; exit 2 ;;
esac
