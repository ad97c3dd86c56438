#!/bin/bash
# bench.sh - the performance table of issue 14 in one run (docs/performance.md).
# A measurement, not a test: it never fails on numbers, only when a helper or
# a request fails. Not run by CI.
#
#   scripts/bench.sh [host|lab|emulate|emulate-etcd|all]     (default: all = host, lab)
#
# host: prhelper, qemu-pr-helper (/usr/bin, or $QEMU_PR_HELPER; installed from
#       Debian's qemu-system-common when missing and run as root) and prbench's
#       bare fd-passing echo floor on a regular file (the refusal path both
#       helpers take), at 1, 16 and 64 clients, READ KEYS alone and a seeded
#       mixed PR IN/OUT sequence (prgen seed $SEED); ratios to qemu-pr-helper.
#       HOST_N requests per row (default 20000) in ROUNDS rounds (default 5),
#       the paths taking turns.
# lab:  test/lab/bench.sh with BENCH=mixed (under $LAB_LOCK, default
#       /tmp/prhelper-lab.lock): the 2,000-command sequence from 3 initiators
#       through prhelper --backend=sgio, qemu-pr-helper and direct SG_IO on LIO;
#       LAB_ROUNDS=R: the paths take turns R times (each replays the sequence
#       once a round).
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
# emulate-etcd: the same helper twice in one run (issue 10 item 6), on a
#       SQLite file (--db) and on a 3-member etcd cluster on loopback
#       (--etcd-endpoints; the pinned etcd server the Go tests build,
#       internal/store/etcd/etcdtest/etcdpath, each member with its own data
#       directory next to the SQLite file, $ETCD_FLAGS added to each member's
#       command line; ETCD_DATA=DIR puts their data directories there instead,
#       e.g. on a tmpfs to tell the disk's share of the latency from the rest:
#       a diagnostic, not a setting; ETCD_ALT="FLAGS" adds a second cluster
#       whose members get FLAGS instead, and its own helper, "etcd-alt" in
#       the same table: a setting compared in one run), each with 64 initiator
#       sockets and --metrics: register
#       at 1, 16 and 64 initiators (ETCD_CLIENTS) on one logical unit, then on
#       16 (prbench -spread: initiator i on file i mod 16); ETCD_N1 requests a
#       row at 1 initiator (default 1500), ETCD_N at more (default 6000),
#       ROUNDS rounds (default 3), the stores taking turns. After each row:
#       PR OUT per store transaction and per logical unit's batch, the store
#       commits' times (the helpers' metrics), and each member's WAL fsync,
#       backend commit and peer round trip histograms (docs/performance.md §5.6).
#
# BASE=REV adds a row for prhelper built from git revision REV (before/after
# in one run); in emulate-etcd a third helper, "etcd@REV", on the same
# cluster under its own --etcd-prefix, taking its turn before "etcd".
# ENVS="VAR=VALUE ..." (host, lab) adds a row for each setting: the same
# prhelper started with it in its environment, named prhelper/VAR:VALUE (e.g.
# ENVS="GOMAXPROCS=1": a setting compared in one run). OUT=FILE appends the
# transcript there too (docs/bench/ keeps the committed
# ones). The load (uptime) is printed before and after each part: the machine
# is shared, so only figures of one run compare.
set -euo pipefail
# Each part stops what it started when it returns (its RETURN trap); when a
# command fails under set -e the script exits without returning, so the
# background jobs left (helpers, etcd members, which hold the bench lock's
# descriptor) are stopped here.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
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
	if [ ! -x "$QPH" ] && [ "$QPH" = /usr/bin/qemu-pr-helper ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "== installing qemu-system-common for $QPH"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-common >/dev/null ||
			{ DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 &&
				DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-common >/dev/null; }
	fi
	[ -x "$QPH" ] || { echo "bench: no qemu-pr-helper at $QPH (install qemu-system-common, or set QEMU_PR_HELPER)"; return 1; }
	d=$(mktemp -d /tmp/prbench.XXXXXX)
	trap 'kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; rm -rf "$d"' RETURN
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$d/" ./cmd/prhelper ./test/lab/tools/prbench ./test/lab/tools/prgen)
	"$d/prgen" -print -rtpi 1,2,3 -seed "$SEED" -steps 2000 -dump "$d/seq.txt" >/dev/null
	truncate -s 64M "$d/disk.img"
	# PIN=1: every helper on CPU 0, prbench on CPU 1 (docs/performance.md §3.6).
	local hpin=() cpin=()
	if [ -n "${PIN:-}" ]; then hpin=(taskset -c 0) cpin=(taskset -c 1); fi
	"${hpin[@]}" "$d/prhelper" -q -k "$d/prhelper.sock" >"$d/prhelper.log" 2>&1 & pids+=($!)
	"${hpin[@]}" "$QPH" -k "$d/qemu.sock" >"$d/qemu.log" 2>&1 & pids+=($!)
	"${hpin[@]}" "$d/prbench" -echo "$d/echo.sock" & pids+=($!)
	"${hpin[@]}" "$d/prbench" -echo-loop "$d/loop.sock" & pids+=($!)
	local socks="prhelper qemu echo loop" base=()
	if [ -n "${BASE:-}" ]; then
		mkdir "$d/base"
		(cd "$ROOT" && git archive "$BASE") | tar -x -C "$d/base"
		(cd "$d/base" && CGO_ENABLED=0 go build -o "$d/prhelper-base" ./cmd/prhelper)
		"${hpin[@]}" "$d/prhelper-base" -q -k "$d/base.sock" >"$d/base.log" 2>&1 & pids+=($!)
		socks="$socks base"
		base=(-helper "prhelper@$BASE=$d/base.sock")
	fi
	local e k=0
	for e in ${ENVS:-}; do
		k=$((k + 1))
		"${hpin[@]}" env "$e" "$d/prhelper" -q -k "$d/env$k.sock" >"$d/env$k.log" 2>&1 & pids+=($!)
		socks="$socks env$k"
		base+=(-helper "prhelper/${e//=/:}=$d/env$k.sock") # every = of the setting a :, as -helper splits at the first =
	done
	for s in $socks; do
		for _ in $(seq 100); do [ -S "$d/$s.sock" ] && break; sleep 0.1; done
		[ -S "$d/$s.sock" ] || { echo "bench: $s did not listen"; cat "$d"/*.log; return 1; }
	done
	echo "== host: $(uname -r), $(nproc) CPUs, $($QPH --version | head -1), prhelper $(cd "$ROOT" && git describe --always --dirty)"
	echo "== load before: $(uptime)${PIN:+; pinned: helpers on CPU 0, prbench on CPU 1}"
	"${cpin[@]}" "$d/prbench" -dev "$d/disk.img" "${base[@]}" -helper "prhelper=$d/prhelper.sock" -helper "qemu-pr-helper=$d/qemu.sock" \
		-helper "echo floor=$d/echo.sock" -helper "loop floor=$d/loop.sock" -direct=false -ref qemu-pr-helper -clients 1,16,64 \
		-workload readkeys,mixed -seq "$d/seq.txt" -n "$HOST_N" -rounds "${ROUNDS:-5}" ${PRBENCH_FLAGS:-}
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

emulate_etcd() {
	local d pids=() i etcd devs=() one sixteen names="sqlite etcd" rows c n
	d=$(mktemp -d /tmp/prbench.XXXXXX)
	trap 'kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; rm -rf "$d"' RETURN
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$d/" ./cmd/prhelper ./test/lab/tools/prbench)
	etcd=$(cd "$ROOT" && go run ./internal/store/etcd/etcdtest/etcdpath)
	local data=$d
	[ -n "${ETCD_DATA:-}" ] && data=$(mktemp -d "$ETCD_DATA/prbench-etcd.XXXXXX") &&
		trap 'kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; rm -rf "$d" "$data"' RETURN
	cluster() { # NAME FLAGS: a 3-member cluster on loopback; its client URLs in eps[NAME]
		local name=$1 flags=$2 port peers=() initial="" i urls=()
		port=$((20000 + RANDOM % 20000))
		if ss -ltnH | grep -qE "127\.0\.0\.1:($port|$((port + 1))|$((port + 2))|$((port + 3))|$((port + 4))|$((port + 5))) "; then
			echo "bench: ports $port-$((port + 5)) in use, run again"; return 1
		fi
		for i in 0 1 2; do
			urls+=("http://127.0.0.1:$((port + 2 * i))")
			peers+=("http://127.0.0.1:$((port + 2 * i + 1))")
			initial+="${initial:+,}m$i=${peers[i]}"
		done
		for i in 0 1 2; do
			# shellcheck disable=SC2086 # flags is a list of flags
			"$etcd" --name "m$i" --data-dir "$data/$name-m$i.etcd" --listen-client-urls "${urls[i]}" --advertise-client-urls "${urls[i]}" \
				--listen-peer-urls "${peers[i]}" --initial-advertise-peer-urls "${peers[i]}" --initial-cluster "$initial" \
				--initial-cluster-state new --initial-cluster-token "prbench-$name-$$" --log-level warn $flags \
				>"$d/$name-m$i.log" 2>&1 & pids+=($!)
		done
		for _ in $(seq 100); do
			curl -sf "${urls[0]}/health" 2>/dev/null | grep -q '"health":"true"' && break
			sleep 0.2
		done
		curl -sf "${urls[0]}/health" | grep -q '"health":"true"' || { echo "bench: etcd cluster $name not healthy"; cat "$d/$name"-m*.log; return 1; }
		eps[$name]=$(IFS=,; echo "${urls[*]}")
		echo "== $name: etcd members ${urls[*]} with ${flags:-default flags}"
	}
	start() { # NAME STORE-FLAGS...: an emulating helper with 64 sockets, one initiator each, and metrics ($bin, default prhelper)
		local name=$1 args=() i
		shift
		for i in $(seq 0 63); do args+=("--listen=$d/$name-$i.sock,initiator=name:iqn.2025-01.dev.prhelper:bench$i"); done
		"$d/${bin:-prhelper}" -q --backend=emulate "$@" --metrics="unix:$d/$name-metrics.sock" "${args[@]}" >"$d/$name.log" 2>&1 & pids+=($!)
	}
	echo "== emulate-etcd: $(uname -r), $(nproc) CPUs, prhelper $(cd "$ROOT" && git describe --always --dirty), $("$etcd" --version | head -1);" \
		"SQLite on $(df --output=source,fstype "$d" | tail -1), etcd data on $(df --output=source,fstype "$data" | tail -1)"
	declare -A eps
	cluster etcd "${ETCD_FLAGS:-}" || return 1
	start sqlite --db="$d/sqlite.db"
	start etcd --etcd-endpoints="${eps[etcd]}" --etcd-prefix="/prbench-$$/"
	if [ -n "${ETCD_ALT:-}" ]; then
		cluster etcd-alt "$ETCD_ALT" || return 1
		start etcd-alt --etcd-endpoints="${eps[etcd-alt]}" --etcd-prefix="/prbench-$$/"
		names="$names etcd-alt"
	fi
	if [ -n "${BASE:-}" ]; then
		mkdir "$d/base"
		(cd "$ROOT" && git archive "$BASE") | tar -x -C "$d/base"
		(cd "$d/base" && CGO_ENABLED=0 go build -o "$d/prhelper-base" ./cmd/prhelper)
		eps[etcd@$BASE]=${eps[etcd]}
		bin=prhelper-base start "etcd@$BASE" --etcd-endpoints="${eps[etcd]}" --etcd-prefix="/prbench-$$-base/"
		names="sqlite etcd@$BASE ${names#sqlite }" # the revision before right after SQLite, as in emulate
	fi
	rows=(-socks 64 -direct=false -ref sqlite -rounds "${ROUNDS:-3}" -workload register)
	for s in $names; do
		for _ in $(seq 100); do [ -S "$d/$s-63.sock" ] && break; sleep 0.1; done
		[ -S "$d/$s-63.sock" ] || { echo "bench: $s did not listen"; cat "$d"/*.log; return 1; }
		rows+=(-helper "$s=$d/$s-%d.sock" -metrics "$s=unix:$d/$s-metrics.sock")
		[ "$s" = sqlite ] || rows+=(-members "$s=${eps[$s]}")
	done
	for i in $(seq 0 15); do truncate -s 64M "$d/disk$i.img"; devs+=("$d/disk$i.img"); done
	one=${devs[0]}
	sixteen=$(IFS=,; echo "${devs[*]}")
	echo "== load before: $(uptime)"
	"$d/prbench" -fsync "$d/fsync.tmp" -n 3000
	for c in $(echo "${ETCD_CLIENTS:-1,16,64}" | tr , ' '); do
		n=${ETCD_N:-6000}
		[ "$c" = 1 ] && n=${ETCD_N1:-1500}
		echo "== one logical unit, $c initiators: $(uptime)"
		"$d/prbench" "${rows[@]}" -dev "$one" -clients "$c" -n "$n"
	done
	for c in $(echo "${ETCD_CLIENTS:-1,16,64}" | tr , ' '); do
		n=${ETCD_N:-6000}
		[ "$c" = 1 ] && n=${ETCD_N1:-1500}
		echo "== 16 logical units (initiator i on unit i mod 16), $c initiators: $(uptime)"
		"$d/prbench" "${rows[@]}" -dev "$sixteen" -spread -clients "$c" -n "$n"
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
emulate-etcd) emulate_etcd ;;
all) host; lab ;;
*) echo "usage: scripts/bench.sh [host|lab|emulate|emulate-etcd|all]"; exit 2 ;;
esac
