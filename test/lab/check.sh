#!/bin/bash
# check.sh - the project's storage-lab integration tests.
#
# Builds the lab VM image (installing host packages with apt when missing),
# builds the Go binaries under test (cmd/prhelper, cmd/prpersist) and the Go lab
# tools (test/lab/tools/*) statically into build/gobin (shared read-only with
# every VM at /lab/bin), then runs each test file in its own VM, several at a
# time as long as their vCPUs fit the host's cores (LAB_CPUS, default nproc):
# TCG runs each vCPU on a host thread, and the guests' time limits are wall
# clock, so VMs are not packed beyond the cores (on 2 cores: two one-vCPU VMs
# side by side, a two-vCPU VM alone). Longest tests first so that the tail is
# short. The two NVMe images are built in the background meanwhile; their tests
# start when their image is ready.
#
# Output: "START <test>" when a test's VM starts, "... still running: <test>
# (<seconds>s), ..." every LAB_HEARTBEAT seconds while tests run, and one
# "PASS <test> (<seconds>s): N passed, N failed" or "FAIL <test> ..." (plus its
# failing checks, indented) when a test ends; only this script prints, one whole
# line at a time, so lines never interleave. Closes with "N passed, N failed";
# exits non-zero on any failure. When the lab cannot run at all (no
# qemu-system-x86_64 and no apt-get to install it) it prints "SKIP lab:
# <reason>" and exits 0.
#
# Each test has its own results directory (build/runs/check-<test>: the VM's
# 9p share, console.log, out/guest.log, qemu.pid); the guests' /tmp is their
# own; the VMs have no network and use no host ports; build/gobin and the
# images are only read while VMs run. So tests can run side by side.
#
# Env: LAB_NESTED_TEST=0  leave out the nested-QEMU tests (c, d; ~4 minutes)
#      LAB_ONLY="a b"     run only the named tests (names as printed)
#      LAB_NVME_TEST=0    leave out the NVMe tests (two more images, ~3 minutes)
#      LAB_LIBVIRT_TEST=1 also run tests/libvirt.sh (opt-in, not in CI: its own
#                         nested image with libvirt in build/libvirt, ~6 minutes
#                         to build the first time, and two libvirt guests)
#      LAB_CPUS=N         host cores for the VMs' vCPUs together (default:
#                         nproc); a VM wider than that runs alone
#      LAB_JOBS=N         VMs at a time at most (default 2; 1 runs them one after
#                         another)
#      LAB_HEARTBEAT=S    seconds between "still running" lines (default 60)
#      LAB_LOCK=FILE      run under flock FILE (a host shared by several
#                         checkouts: one lab at a time; the wait is not timed)
set -uo pipefail
if [ -n "${LAB_LOCK:-}" ] && [ "${LAB_LOCK_HELD:-}" != "$LAB_LOCK" ]; then
	echo "== lab: waiting for the lock $LAB_LOCK"
	exec env LAB_LOCK_HELD="$LAB_LOCK" flock "$LAB_LOCK" "$BASH" "$0" "$@"
fi
LAB=$(cd "$(dirname "$0")" && pwd)
BUILD=${LAB_BUILD:-$LAB/build}
export LAB_BUILD=$BUILD
NESTED=${LAB_NESTED_TEST:-1}
CPUS=${LAB_CPUS:-$(nproc 2>/dev/null || echo 1)}
JOBS=${LAB_JOBS:-2}
BEAT=${LAB_HEARTBEAT:-60}

if ! command -v qemu-system-x86_64 >/dev/null 2>&1 && ! command -v apt-get >/dev/null 2>&1; then
	echo "SKIP lab: no qemu-system-x86_64 and no apt-get to install it"
	exit 0
fi
if [ "$(id -u)" != 0 ] && ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
	echo "SKIP lab: qemu-system-x86_64 missing and not root (cannot apt-get install)"
	exit 0
fi

T0=$(date +%s)
echo "== lab: building the VM image in $BUILD"
if ! LAB_NESTED=$NESTED "$LAB/build.sh"; then
	echo "FAIL build (image)"; echo "0 passed, 1 failed"; exit 1
fi

RUNS=$BUILD/runs
mkdir -p "$RUNS"
rm -f "$RUNS"/check-*.result "$RUNS"/check-*.result.tmp "$RUNS"/build-*.status "$RUNS"/build-*.status.tmp "$RUNS"/build-*.start
selected() { [ -z "${LAB_ONLY:-}" ] || echo " $LAB_ONLY " | grep -q " $1 "; }

# ------------------------------------------------------------------ the tests
# add NAME VCPUS IMAGE(""|an NVMe test's name) BUILD-DIR run.sh-args...
#   (VCPUS: the -c given to run.sh, whose default is 2)
# In the order they are started: longest first (seconds alone on this 2-core
# host under TCG, roughly: fence-kill (its kill run) 450, two-vms-peer 220, nested-qemu 185, mpath-nested 150,
# mpath 150, emulate-vs-lio 100, vinit 120, prhelper-two-paths 40, the NVMe ones 30 after
# their image, the rest under 15), so the last ones to finish are short.
# -c 1: one vCPU, for LIO's determinism (prdiff, emulate-vs-lio,
# linuxpr-vs-sgio, linuxpr-diff); -n: nested (QEMU inside, 2 vCPUs, 2 GiB).
NAMES=()
declare -A T_CPU T_IMG T_DIR T_ARGS
add() {
	local name=$1 cpu=$2 img=$3 dir=$4; shift 4
	selected "$name" || return 0
	NAMES+=("$name"); T_CPU[$name]=$cpu T_IMG[$name]=$img T_DIR[$name]=$dir
	T_ARGS[$name]=$(printf '%q ' "$@")
}
if [ "$NESTED" = 1 ]; then
	add fence-kill 2 "" "$BUILD" -n -m 2048 -t 1200 "$LAB/tests/fence-kill.sh" kill
	add two-vms-peer 2 "" "$BUILD" -n -m 2048 -t 1500 "$LAB/tests/two-vms-peer.sh" peer
	add nested-qemu 2 "" "$BUILD" -n -m 2048 -t 900 "$LAB/tests/nested-qemu.sh"
	add mpath-nested 2 "" "$BUILD" -n -m 2048 -t 900 "$LAB/tests/mpath-nested.sh"
fi
add mpath 2 "" "$BUILD" -t 500 "$LAB/tests/mpath.sh"
add mpath-diff 2 "" "$BUILD" -t 900 "$LAB/tests/mpath-diff.sh"
add emulate-vs-lio 1 "" "$BUILD" -c 1 -t 600 "$LAB/tests/emulate-vs-lio.sh"
# virtual initiators over a real LU (issue 15): two vinit helpers, a 3-member
# etcd, prpersist clients, no nested guests
add vinit 2 "" "$BUILD" -t 300 "$LAB/tests/vinit.sh"
# NVMe (issue 4): linuxpr on an nvmet namespace that two hosts share over
# nvme-loop. nvmet reservations need Linux 6.13+, so each test has its own image
# (build.sh LAB_NVME=1) with a kernel from trixie-backports: the newest one
# (PR IN through IOC_PR_READ_*, 6.19+) and 6.18.15 (PR IN through the NVMe
# Reservation Report fallback). A kernel the archive no longer has is a SKIP;
# any other build failure is a FAIL.
NVME_IMGS=()
declare -A NV_PKG
if [ "${LAB_NVME_TEST:-1}" = 1 ]; then
	add linuxpr-nvme 2 linuxpr-nvme "$BUILD/nvme" -t 600 -b "$BUILD/gobin" "$LAB/tests/linuxpr-nvme.sh" ioctl
	add linuxpr-nvme-report 2 linuxpr-nvme-report "$BUILD/nvme-6.18" -t 600 -b "$BUILD/gobin" "$LAB/tests/linuxpr-nvme.sh" report
	NV_PKG[linuxpr-nvme]="" NV_PKG[linuxpr-nvme-report]=linux-image-6.18.15+deb13-amd64
	for n in linuxpr-nvme linuxpr-nvme-report; do [ -n "${T_DIR[$n]:-}" ] && NVME_IMGS+=("$n"); done
fi
# libvirt (issue 13): opt-in; its image (nested, plus libvirt) is built here,
# before the VMs start
if [ "${LAB_LIBVIRT_TEST:-0}" = 1 ] && selected libvirt; then
	echo "== lab: building the libvirt image in $BUILD/libvirt (log: $RUNS/build-libvirt.log)"
	if LAB_BUILD=$BUILD/libvirt LAB_NESTED=1 LAB_LIBVIRT=1 "$LAB/build.sh" > "$RUNS/build-libvirt.log" 2>&1; then
		add libvirt 2 "" "$BUILD/libvirt" -n -m 2048 -t 1500 -b "$BUILD/gobin" "$LAB/tests/libvirt.sh"
	else
		echo "FAIL libvirt: image build failed, see $RUNS/build-libvirt.log"; LIBVIRT_IMG_FAIL=1
	fi
fi
add prhelper-two-paths 2 "" "$BUILD" -t 300 "$LAB/tests/prhelper-two-paths.sh"
add linuxpr-multipath 2 "" "$BUILD" -t 300 "$LAB/tests/linuxpr-multipath.sh"
add linuxpr-vs-sgio 1 "" "$BUILD" -c 1 -t 300 "$LAB/tests/linuxpr-vs-sgio.sh"
add linuxpr-diff 1 "" "$BUILD" -c 1 -t 300 "$LAB/tests/linuxpr-diff.sh"
add linuxpr-unprivileged 2 "" "$BUILD" -t 300 "$LAB/tests/linuxpr-unprivileged.sh"
add smoke 2 "" "$BUILD" -t 120 "$LAB/tests/smoke.sh"
add prdiff 1 "" "$BUILD" -c 1 -t 300 "$LAB/tests/prdiff.sh"

# ------------------------------------------------- NVMe images, in background
# One after another (each its own build dir, debs and private apt lists), while
# the Go binaries build and the first VMs run. Each writes
# runs/build-NAME.status: "ok", or the SKIP/FAIL lines to print.
nvme_build() { # nvme_build NAME
	local name=$1 dir=${T_DIR[$1]} log=$RUNS/build-$1.log st=$RUNS/build-$1.status
	date +%s > "$RUNS/build-$name.start"
	if LAB_BUILD=$dir LAB_NVME=1 LAB_KERNEL_SUITE=trixie-backports LAB_KERNEL_PKG=${NV_PKG[$name]} "$LAB/build.sh" > "$log" 2>&1; then
		echo ok > "$st.tmp"
	elif grep -qE 'ERROR: (cannot download linux-image-|apt-get update of trixie-backports failed|cannot resolve the kernel)' "$log"; then
		echo "SKIP $name: $(grep ERROR "$log" | tail -n1) (see $log)" > "$st.tmp"
	else
		{ echo "FAIL $name: image build failed, see $log"; tail -n 5 "$log" | sed 's/^/    /'; } > "$st.tmp"
	fi
	mv "$st.tmp" "$st"
}
BPID=""
if [ ${#NVME_IMGS[@]} -gt 0 ]; then
	echo "== lab: building the NVMe images in the background: $(for n in "${NVME_IMGS[@]}"; do printf '%s (%s) ' "${T_DIR[$n]}" "${NV_PKG[$n]:-newest trixie-backports kernel}"; done)(logs: $RUNS/build-<test>.log)"
	( for n in "${NVME_IMGS[@]}"; do nvme_build "$n"; done ) &
	BPID=$!
fi

echo "== lab: building the Go binaries (CGO_ENABLED=0) into $BUILD/gobin"
"$LAB/gobuild.sh"; gofail=$?
ls -l "$BUILD/gobin"

# ------------------------------------------------------------------ one test
# run_test NAME: in the background; writes runs/check-NAME.result, the lines
# to print, the first starting with PASS or FAIL.
run_test() {
	local name=$1 t0 out=$RUNS/check-$1 res=$RUNS/check-$1.result sum
	t0=$(date +%s)
	rm -rf "$out"
	eval "set -- ${T_ARGS[$name]}"
	if LAB_BUILD=${T_DIR[$name]} LAB_NO_BUILD=1 "$LAB/run.sh" -q -o "$out" "$@" >/dev/null 2>&1; then
		sum=$(grep -a -E '^[0-9]+ passed, [0-9]+ failed' "$out/out/guest.log" | tail -n1)
		echo "PASS $name ($(( $(date +%s) - t0 ))s): $sum" > "$res.tmp"
	else
		sum=$(grep -a -E '^[0-9]+ passed, [0-9]+ failed' "$out/out/guest.log" 2>/dev/null | tail -n1)
		{
			echo "FAIL $name ($(( $(date +%s) - t0 ))s): $sum see $out/{console.log,out/guest.log}"
			grep -a -E '\[lab\] (FAIL|FATAL)|MISMATCH|UNEXPECTED' "$out/out/guest.log" 2>/dev/null | head -n 20 | sed 's/^/    /'
		} > "$res.tmp"
	fi
	mv "$res.tmp" "$res"
}

# ------------------------------------------------------------------ scheduler
pass=0 fail=$((gofail + ${LIBVIRT_IMG_FAIL:-0}))
PENDING=("${NAMES[@]}")
declare -A PID START READY
running=0 used=0 # VMs running, their vCPUs
stop_all() {
	local n p
	for n in "${!PID[@]}"; do
		p=$(cat "$RUNS/check-$n/qemu.pid" 2>/dev/null) && [ -n "$p" ] && kill "$p" 2>/dev/null
		pkill -TERM -P "${PID[$n]}" 2>/dev/null; kill "${PID[$n]}" 2>/dev/null
	done
	[ -n "$BPID" ] && { pkill -TERM -P "$BPID" 2>/dev/null; kill "$BPID" 2>/dev/null; }
	echo "== lab: interrupted; stopped: ${!PID[*]}"
	exit 130
}
trap stop_all INT TERM HUP

images() { # report NVMe images that have just been built (or failed to)
	local img st
	for img in "${NVME_IMGS[@]}"; do
		[ -z "${READY[$img]:-}" ] || continue
		if [ ! -f "$RUNS/build-$img.status" ]; then
			kill -0 "$BPID" 2>/dev/null && continue
			[ -f "$RUNS/build-$img.status" ] ||
				echo "FAIL $img: the image build ended without a status, see $RUNS/build-$img.log" > "$RUNS/build-$img.status"
		fi
		st=$(cat "$RUNS/build-$img.status")
		if [ "$st" = ok ]; then
			READY[$img]=ok
			echo "== lab: NVMe image for $img ready in ${T_DIR[$img]} ($(( $(date +%s) - $(cat "$RUNS/build-$img.start") ))s)"
		else
			READY[$img]=failed
			echo "$st"
			case $st in FAIL*) fail=$((fail + 1)) ;; esac
		fi
		last=$(date +%s)
	done
}
last=$(date +%s)
while [ ${#PENDING[@]} -gt 0 ] || [ $running -gt 0 ]; do
	images
	# start what fits, in order (a test whose image failed is dropped: images
	# printed its SKIP or FAIL); a test wider than CPUS runs alone
	rest=()
	for n in "${PENDING[@]}"; do
		img=${T_IMG[$n]}
		[ -n "$img" ] && [ "${READY[$img]:-}" = failed ] && continue
		if { [ $running -gt 0 ] && { [ $running -ge "$JOBS" ] || [ $((used + ${T_CPU[$n]})) -gt "$CPUS" ]; }; } ||
			{ [ -n "$img" ] && [ "${READY[$img]:-}" != ok ]; }; then
			rest+=("$n"); continue
		fi
		echo "START $n"
		run_test "$n" &
		PID[$n]=$! START[$n]=$(date +%s)
		running=$((running + 1)) used=$((used + ${T_CPU[$n]}))
		last=$(date +%s)
	done
	PENDING=("${rest[@]}")
	sleep 1
	# reap what ended
	for n in "${!PID[@]}"; do
		kill -0 "${PID[$n]}" 2>/dev/null && continue
		wait "${PID[$n]}" 2>/dev/null
		res=$RUNS/check-$n.result
		if [ -f "$res" ]; then
			cat "$res"
			case $(head -n1 "$res") in PASS*) pass=$((pass + 1)) ;; *) fail=$((fail + 1)) ;; esac
		else
			echo "FAIL $n ($(( $(date +%s) - ${START[$n]} ))s): the test's job ended without a result"; fail=$((fail + 1))
		fi
		unset "PID[$n]"
		running=$((running - 1)) used=$((used - ${T_CPU[$n]}))
		last=$(date +%s)
	done
	# heartbeat
	now=$(date +%s)
	if [ $((now - last)) -ge "$BEAT" ]; then
		list=""
		for n in "${NAMES[@]}"; do
			[ -n "${PID[$n]:-}" ] && list="$list, $n ($((now - ${START[$n]}))s)"
		done
		for n in "${NVME_IMGS[@]}"; do
			[ -f "$RUNS/build-$n.start" ] && [ ! -f "$RUNS/build-$n.status" ] &&
				list="$list, NVMe image for $n ($((now - $(cat "$RUNS/build-$n.start")))s)"
		done
		[ -n "$list" ] && echo "... still running: ${list#, }"
		last=$now
	fi
done
[ -n "$BPID" ] && wait "$BPID" 2>/dev/null
echo "== lab took $(( $(date +%s) - T0 ))s"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
