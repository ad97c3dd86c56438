#!/bin/bash
# run.sh - boot the storage-lab VM, run one command file inside, power off.
#
# usage: run.sh [options] CMDFILE [ARGS...]
#   -t SECONDS  overall wall-clock limit (default 300); the guest gets 20 s less
#   -m MIB      guest memory (default 1024)
#   -c N        vCPUs (default 2; MTTCG runs them on separate host threads)
#   -o DIR      results directory (default build/runs/<name>-<time>); it is the
#               9p share "labio" (/lab/io in the guest): cmd.sh, args.sh,
#               out/ (the command's cwd: guest.log, dmesg.txt, whatever it
#               writes), rc, console.log, timing.txt
#   -s DIR      extra read-only 9p share mounted at /lab/src in the guest
#               (e.g. the Go binaries under test)
#   -b DIR      read-only 9p share mounted at /lab/bin (on PATH) in the guest;
#               default: build/gobin when it exists (the static Go binaries
#               check.sh builds: prhelper, prpersist, lab tools)
#   -a ACCEL    kvm | tcg | auto (default auto: kvm only where it can run a
#               stock kernel, i.e. /dev/kvm plus vmx/svm; else tcg)
#   -e ARGS     extra kernel command line
#   -q          do not stream the guest console to stdout
#   -i          interactive: a shell on the console instead of CMDFILE
#   -n          nested image (adds qemu-system-x86_64; the build dir is shared
#               read-only at /lab/src so the inner guest can boot the plain image;
#               /lab/bin is there too and can be re-shared to the inner guest)
# Inside the guest the command file is sourced by busybox sh after
# /lab/lib.sh (helpers: lab_lio_setup, lab_multipath_start, ...), with ARGS
# as "$@". Exit status: the command's status; 124 when the time limit hit;
# 125 when no status came back.
set -uo pipefail

LAB=$(cd "$(dirname "$0")" && pwd)
BUILD=${LAB_BUILD:-$LAB/build}
TIMEOUT=300 MEM=1024 CPUS=2 OUT="" SRC="" BIN="" ACCEL=auto EXTRA="" QUIET=0 INTER=0 NESTED=0
while getopts "t:m:c:o:s:b:a:e:qinh" o; do
	case $o in
	t) TIMEOUT=$OPTARG ;; m) MEM=$OPTARG ;; c) CPUS=$OPTARG ;; o) OUT=$OPTARG ;;
	s) SRC=$OPTARG ;; b) BIN=$OPTARG ;; a) ACCEL=$OPTARG ;; e) EXTRA=$OPTARG ;; q) QUIET=1 ;; i) INTER=1 ;; n) NESTED=1 ;;
	*) sed -n '2,30s/^# \{0,1\}//p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if [ $INTER = 0 ]; then
	[ $# -ge 1 ] || { echo "usage: run.sh [options] CMDFILE [ARGS...] (-h for help)" >&2; exit 2; }
	CMD=$1; shift
	[ -f "$CMD" ] || { echo "run.sh: no such command file: $CMD" >&2; exit 2; }
fi

# image (build.sh is a no-op when up to date)
if [ "${LAB_NO_BUILD:-0}" != 1 ]; then
	LAB_NESTED=$NESTED "$LAB/build.sh" >&2 || { echo "run.sh: build failed" >&2; exit 125; }
fi
INITRD=$BUILD/initramfs.cpio
KERNEL=$BUILD/vmlinux
[ -f "$KERNEL" ] && [ "${LAB_BZIMAGE:-0}" != 1 ] || KERNEL=$BUILD/vmlinuz
if [ $NESTED = 1 ]; then
	INITRD=$BUILD/initramfs-nested.cpio
	[ -n "$SRC" ] || SRC=$BUILD
fi
[ -f "$KERNEL" ] && [ -f "$INITRD" ] || { echo "run.sh: no image in $BUILD" >&2; exit 125; }

if [ -z "$OUT" ]; then
	name=interactive; [ $INTER = 0 ] && name=$(basename "$CMD" .sh)
	OUT=$BUILD/runs/$name-$(date +%Y%m%d-%H%M%S)-$$
fi
mkdir -p "$OUT/out"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT/rc" "$OUT/console.log" "$OUT/args.sh" "$OUT/qemu.pid"
if [ $INTER = 0 ]; then
	cp "$CMD" "$OUT/cmd.sh"
	if [ $# -gt 0 ]; then
		{ printf 'set --'; for a in "$@"; do printf " '%s'" "$(printf '%s' "$a" | sed "s/'/'\\\\''/g")"; done; echo; } > "$OUT/args.sh"
	fi
fi

if [ "$ACCEL" = auto ]; then
	ACCEL=tcg
	if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ]; then
		ACCEL=kvm
	fi
fi
case $ACCEL in
kvm) ACCEL_ARGS="-accel kvm -cpu host" ;;
tcg) ACCEL_ARGS="-accel tcg,thread=multi -cpu max" ;;
*) echo "run.sh: bad accel $ACCEL" >&2; exit 2 ;;
esac

GTIMEOUT=$((TIMEOUT - 20)); [ $GTIMEOUT -lt 10 ] && GTIMEOUT=10
APPEND="console=ttyS0 quiet loglevel=4 panic=-1 oops=panic i8042.noaux i8042.nokbd i8042.nopnp lab.timeout=$GTIMEOUT $EXTRA"
[ $INTER = 1 ] && APPEND="$APPEND lab.shell=1"
SHARES=(-virtfs "local,path=$OUT,mount_tag=labio,security_model=none,id=labio")
[ -z "$BIN" ] && [ -d "$BUILD/gobin" ] && BIN=$BUILD/gobin
[ -n "$BIN" ] && SHARES+=(-virtfs "local,path=$(cd "$BIN" && pwd),mount_tag=labbin,security_model=none,readonly=on,id=labbin")
[ -n "$SRC" ] && SHARES+=(-virtfs "local,path=$(cd "$SRC" && pwd),mount_tag=labsrc,security_model=none,readonly=on,id=labsrc")

QEMU=(qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot
	-machine pc $ACCEL_ARGS -m "$MEM" -smp "$CPUS"
	-kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND"
	"${SHARES[@]}" -serial stdio -pidfile "$OUT/qemu.pid")

# if run.sh itself is interrupted, take the VM down with it (only our QEMU)
cleanup() {
	local p
	p=$(cat "$OUT/qemu.pid" 2>/dev/null) && [ -n "$p" ] && kill "$p" 2>/dev/null
}
trap 'cleanup; exit 130' INT TERM HUP

T0=$(date +%s.%N)
if [ $INTER = 1 ]; then
	"${QEMU[@]}"
	exit $?
fi
if [ $QUIET = 1 ]; then
	timeout -k 5 "$TIMEOUT" "${QEMU[@]}" </dev/null > "$OUT/console.log" 2>&1
	qrc=$?
else
	timeout -k 5 "$TIMEOUT" "${QEMU[@]}" </dev/null 2>&1 | tee "$OUT/console.log" | tr -d '\r'
	qrc=${PIPESTATUS[0]}
fi
T1=$(date +%s.%N)

if [ -s "$OUT/rc" ]; then
	rc=$(tr -dc '0-9' < "$OUT/rc")
elif grep -aq 'LAB-RC=' "$OUT/console.log"; then
	rc=$(grep -ao 'LAB-RC=[0-9]*' "$OUT/console.log" | tail -n1 | cut -d= -f2)
elif [ $qrc = 124 ] || [ $qrc = 137 ]; then
	rc=124
else
	rc=125
fi
up=$(tr -d '\r' < "$OUT/console.log" | grep -a '^LAB: userspace up after' | head -n1 | awk '{print $5}')
done_line=$(tr -d '\r' < "$OUT/console.log" | grep -a '^LAB: command finished' | head -n1 | sed 's/^LAB: //')
{
	echo "accel=$ACCEL mem=${MEM}M cpus=$CPUS"
	echo "wall_total_s=$(awk "BEGIN{printf \"%.2f\", $T1-$T0}")"
	echo "guest_userspace_up_s=${up:-?}"
	echo "guest_command: ${done_line:-?}"
	echo "qemu_exit=$qrc rc=${rc:-125}"
} > "$OUT/timing.txt"
[ $QUIET = 1 ] || sed 's/^/[run] /' "$OUT/timing.txt" >&2
echo "[run] results in $OUT" >&2
exit "${rc:-125}"
