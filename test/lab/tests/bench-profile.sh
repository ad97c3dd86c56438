# Profile (not a test, not in check.sh): where each helper's time goes in the
# serial replay of bench-mixed.sh (prgen seed $3's first $2 steps, default 1000
# and 14, from 3 initiators), docs/performance.md §2.4. For each path: the
# helper's threads' voluntary/involuntary context switches and run time
# (/proc/PID/task/*/status, schedstat) and the whole guest's context switches
# (/proc/stat ctxt) per request; with perf and strace, when they are in
# /lab/src/x (not in the image: copied by hand from a Debian 12 host with their
# libraries in x/lib, and shared with run.sh -s DIR, DIR holding x/; not in
# /lab/bin, where smoke.sh requires static executables only), `perf stat -e
# context-switches,cpu-migrations,task-clock -p PID` in the same replay and
# `strace -c -f -p PID` in a second replay of $4 steps (default 1000; prbench's
# reset before each replay now takes LIO's refusal after a replay that left an
# ALL_TG_PT registration, tools/prbench resetWith, so any lengths work).
# prhelper runs with GODEBUG=schedtrace=1000. Then the same
# with the second vCPU offline (one vCPU: GOMAXPROCS=1 for a new process).
# By hand (under the lab lock):
#   run.sh -q -t 600 -s DIR -o OUT tests/bench-profile.sh [VCPUS_LIST] [STEPS] [SEED] [STRACE_STEPS] [GOMAXPROCS_LIST]
# where VCPUS_LIST is "2,1" (default), "2" or "1"; GOMAXPROCS_LIST (e.g. "1,2")
# adds a prhelper row for each value.
lab_need_bin prbench prgen prhelper
lab_lio_backstore disk0 64
bs=$LAB_BS devs="" rtpis=""
for i in 1 2 3; do
	lab_lio_path $i $bs
	rtpi=$(cat $LAB_TPG/lun/lun_0/statistics/scsi_port/indx 2>/dev/null)
	[ -n "$rtpi" ] || lab_die "no RTPI in $LAB_TPG/lun/lun_0/statistics/scsi_port/indx"
	devs="$devs${devs:+,}$LAB_DEV" rtpis="$rtpis${rtpis:+,}$rtpi"
done
N=${2:-1000} NS=${4:-1000} GMP=${5:-}
prgen -print -rtpi $rtpis -seed ${3:-14} -steps $N -dump /tmp/seq.txt >/dev/null
X=/lab/src/x
xtool() { _t=$1; shift; "$X/lib/ld-linux-x86-64.so.2" --library-path "$X/lib" "$X/$_t" "$@"; }
# xbg TOOL ARGS: TOOL in the background, $! its own pid (not a subshell's)
xbg() { _t=$1; shift; ( exec "$X/lib/ld-linux-x86-64.so.2" --library-path "$X/lib" "$X/$_t" "$@" ) & }
# clearua: TEST UNIT READY on every path until none reports a unit attention,
# so that prbench's reset (REGISTER AND IGNORE EXISTING KEY) finds none
clearua() { for _d in $(echo $devs | tr , ' '); do sg_turs $_d >/dev/null 2>&1; sg_turs $_d >/dev/null 2>&1; done; }
have() { [ -x "$X/$1" ] && xtool "$1" --version >/dev/null 2>&1; }
echo "== guest: $(uname -r), meltdown: $(cat /sys/devices/system/cpu/vulnerabilities/meltdown 2>/dev/null), perf: $(have perf && echo yes || echo no), strace: $(have strace && echo yes || echo no)"

# snap PID: one line per thread: tid comm voluntary nonvoluntary run_ns wait_ns slices
snap() {
	for _t in /proc/$1/task/*; do
		echo "$(basename $_t) $(tr ' ' _ < $_t/comm) $(lab_status_field $_t/status voluntary_ctxt_switches) $(lab_status_field $_t/status nonvoluntary_ctxt_switches) $(cat $_t/schedstat)"
	done
}
ctxt() { sed -n 's/^ctxt //p' /proc/stat; }

# replay NAME SOCK|"" N : prbench's serial replay of N steps through one path
replay() {
	if [ -n "$2" ]; then
		prbench -dev $devs -helper "$1=$2" -ref "$1" -direct=false -workload serial -seq /tmp/seq.txt -reset -n $3
	else
		prbench -dev $devs -workload serial -seq /tmp/seq.txt -reset -n $3
	fi | sed -n '/^path\|^prhelper\|^qemu\|^direct/p'
}

# prof NAME SOCK PID : counters and perf stat over one replay, strace -c over a shorter one
prof() {
	echo "---- $1 (pid ${3:-none}, $(nproc) vCPU online), $N steps"
	[ -n "$3" ] && snap $3 > /tmp/snap.before
	clearua
	c0=$(ctxt)
	if [ -n "$3" ] && have perf; then
		# -p with a command: counts PID while the command runs (a background
		# job of this shell ignores SIGINT, so no kill -INT to stop perf)
		rm -f /tmp/perf.stop
		xbg perf stat -e context-switches,cpu-migrations,task-clock -p $3 -o /tmp/perf.out -- \
			sh -c 'while [ ! -e /tmp/perf.stop ]; do usleep 100000; done'
		_pp=$!
		sleep 1
	fi
	replay "$1" "$2" $N
	[ -n "${_pp:-}" ] && { touch /tmp/perf.stop; wait $_pp; _pp=; }
	c1=$(ctxt)
	echo "guest context switches (all tasks): $((c1 - c0)), $(awk -v a=$((c1 - c0)) -v n=$N 'BEGIN{printf "%.2f", a/n}') per request"
	[ -n "$3" ] || return 0
	snap $3 > /tmp/snap.after
	echo "threads of $1 (tid comm: voluntary nonvoluntary switches, run ms, wait ms, slices; per request: vol, invol, run µs):"
	awk -v n=$N 'NR==FNR { v[$1]=$3; iv[$1]=$4; r[$1]=$5; w[$1]=$6; s[$1]=$7; next }
		{ dv=$3-v[$1]; di=$4-iv[$1]; dr=$5-r[$1]; dw=$6-w[$1]; ds=$7-s[$1]
		  tv+=dv; ti+=di; tr+=dr; tw+=dw; if (dv+di+ds == 0) { idle++; next }
		  printf "  %s %s: %d %d, %.1f ms, %.1f ms, %d; %.2f %.2f %.0f\n", $1, $2, dv, di, dr/1e6, dw/1e6, ds, dv/n, di/n, dr/n/1e3 }
		END { printf "  all %d threads (%d idle): voluntary %.2f, involuntary %.2f per request, run %.0f µs, runnable-waiting %.0f µs per request\n", FNR, idle, tv/n, ti/n, tr/n/1e3, tw/n/1e3 }' \
		/tmp/snap.before /tmp/snap.after
	[ -f /tmp/perf.out ] && { echo "perf stat -p $3:"; grep -E 'context|migrations|task-clock|elapsed' /tmp/perf.out; rm -f /tmp/perf.out; }
	if have strace; then
		clearua
		xbg strace -c -f -p $3 -o /tmp/strace.out
		_sp=$!
		sleep 2
		prbench -dev $devs -helper "$1=$2" -ref "$1" -direct=false -workload serial -seq /tmp/seq.txt -reset -n $NS >/dev/null
		kill -TERM $_sp; wait $_sp
		echo "strace -c -f -p $3 over $NS steps (+ the reset):"
		sed -n '1,40p' /tmp/strace.out
	fi
}

round() {
	echo "== $(nproc) vCPU online; load in the VM: $(uptime)"
	export GODEBUG=schedtrace=1000
	lab_helper_start prhelper /run/prhelper.sock --backend=sgio; P1=$LAB_HELPER_PID
	unset GODEBUG
	lab_helper_start qemu-pr-helper /run/qemu-pr-helper.sock; P2=$LAB_HELPER_PID
	prof prhelper /run/prhelper.sock $P1
	echo "prhelper schedtrace (last 4 lines):"; grep SCHED /tmp/prhelper.sock.log | tail -4
	prof qemu-pr-helper /run/qemu-pr-helper.sock $P2
	prof "direct SG_IO" "" ""
	lab_helper_stop $P1; lab_helper_stop $P2
	rm -f /tmp/prhelper.sock.log
	for g in $(echo $GMP | tr , ' '); do
		export GOMAXPROCS=$g
		lab_helper_start prhelper /run/prhelper.sock --backend=sgio; P1=$LAB_HELPER_PID
		unset GOMAXPROCS
		prof "prhelper/GOMAXPROCS:$g" /run/prhelper.sock $P1
		lab_helper_stop $P1
	done
}

for c in $(echo ${1:-2,1} | tr , ' '); do
	if [ "$c" = 1 ] && [ -w /sys/devices/system/cpu/cpu1/online ]; then
		echo 0 > /sys/devices/system/cpu/cpu1/online
	fi
	round
done
lab_summary
