# Fencing of emulated reservations (issue 11, docs/fencing.md), one host, two
# inner QEMU guests sharing one LIO disk through prhelper --backend=emulate
# --initiator=peer:
#   run "kill" (--fence=kill, disk0): VM1 registers 0x1, reserves Write
#     Exclusive Registrants Only and writes sequence-numbered 4 KiB blocks with
#     O_DIRECT without pause (seqblocks); VM2 registers 0x2 and PREEMPTs 0x1. The
#     helper kills VM1's QEMU and waits for its exit before VM2's GOOD; the lab
#     host reads the disk back (O_DIRECT) every 0.1 s: after VM2 saw GOOD the
#     highest sequence number never moves again. The timeline (PREEMPT
#     received, committed, fenced, GOOD sent) comes from the helper's log.
#   run "fail" (--fence=exec:AGENT, AGENT exits 1, disk1): VM2's PREEMPT does not
#     get GOOD (CHECK CONDITION 04/44/00, sg_persist exit 3), VM1 keeps running.
# Needs: run.sh -n (nested image). Slow (TCG in TCG). Arguments: the runs to
# do ("kill", "fail"; default both).
lab_need_bin prhelper prpersist seqblocks
lab_lio_setup_2lu 64
INNER_TIMEOUT=${INNER_TIMEOUT:-900}
U1=11111111-1111-4111-8111-111111111111
U2=22222222-2222-4222-8222-222222222222

cat > /tmp/inner-common.sh <<'INNER'
modprobe virtio_scsi; modprobe sd_mod; modprobe sg
lab_wait 120 ls /sys/block/sda || lab_die "inner: no disk"
D=/dev/sda
INNER
cat > /tmp/inner-vm1.sh <<'INNER'
echo "== VM1 ($MODE): register 0x1, reserve Write Exclusive Registrants Only, write"
lab_expect 0 sg_persist -n --out --register-ignore --param-sark=0x1 $D
lab_expect 0 sg_persist -n --out --reserve --param-rk=0x1 --prout-type=5 $D
seqblocks write $D > /lab/io/out/seqblocks.log 2>&1 &
W=$!
touch /lab/io/out/vm1.reserved
lab_wait 800 test -e /lab/io/stop
kill $W
lab_summary
INNER
cat > /tmp/inner-vm2.sh <<'INNER'
lab_wait 600 test -e /lab/io/go || lab_die "VM2: no go from the outer host"
echo "== VM2 ($MODE): register 0x2"
lab_expect 0 sg_persist -n --out --register-ignore --param-sark=0x2 $D
touch /lab/io/out/vm2.registered
lab_wait 600 test -e /lab/io/go2 || lab_die "VM2: no second go"
echo "== VM2: PREEMPT VM1 (sark 0x1, Write Exclusive Registrants Only)"
sg_persist -n --out --preempt --param-rk=0x2 --param-sark=0x1 --prout-type=5 $D
echo "# -> preempt exit $?"
touch /lab/io/out/vm2.preempted
lab_summary
INNER

inner_start() {
	tag=$1 vm=$2 uuid=$3 sock=$4 dev=$5
	I=/tmp/inner-$tag
	rm -rf $I; mkdir -p $I/out
	{ echo "MODE=$MODE"; cat /tmp/inner-common.sh /tmp/inner-$vm.sh; } > $I/cmd.sh
	LAB_INNER_MEM=320 LAB_INNER_DRIVE=,file.locking=off LAB_INNER_DEVICE=,share-rw=on \
		lab_inner_qemu $tag $I $sock $dev -uuid $uuid -name $tag &
	QPID=$!
	echo "== inner $tag ($vm, -uuid $uuid) started at $(lab_uptime)s"
}

# secs TIME : seconds of the day of a log time=YYYY-MM-DDTHH:MM:SS.mmmZ
secs() { echo "$1" | sed 's/.*T//; s/Z$//' | awk -F: '{ printf "%.3f", $1*3600 + $2*60 + $3 }'; }
# logtime LOG REGEX : the time of the first log line matching REGEX
logtime() { grep -a -m1 -E "$2" "$1" | sed -n 's/^time=\([^ ]*\).*/\1/p'; }

# sampler DEV FILE : every 0.1 s append "N MAXSEQ" to FILE (N counts samples)
sampler() {
	n=0
	while [ ! -e /tmp/sampler.stop ]; do
		n=$((n + 1)); echo "$n $(seqblocks max $1)" >> $2; usleep 100000
	done
}

# scenario MODE SOCK DEV : both VMs; VM2 preempts VM1
scenario() {
	MODE=$1 S=$2 DEV=$3
	echo "=================== $MODE: both VMs on $DEV through $S"
	inner_start $MODE-vm1 vm1 $U1 $S $DEV; Q1=$QPID
	inner_start $MODE-vm2 vm2 $U2 $S $DEV; Q2=$QPID
	lab_ok "$MODE: VM1 registered and reserved" lab_wait $((INNER_TIMEOUT - 120)) test -e /tmp/inner-$MODE-vm1/out/vm1.reserved
	rm -f /tmp/sampler.stop /tmp/samples-$MODE
	sampler $DEV /tmp/samples-$MODE & SP=$!
	lab_ok "$MODE: VM1's blocks reach the disk" lab_wait 120 sh -c "[ \$(seqblocks max $DEV) -gt 0 ]"
	touch /tmp/inner-$MODE-vm2/go
	lab_ok "$MODE: VM2 registered" lab_wait 400 test -e /tmp/inner-$MODE-vm2/out/vm2.registered
	touch /tmp/inner-$MODE-vm2/go2
	lab_ok "$MODE: VM2's PREEMPT returned" lab_wait 400 test -e /tmp/inner-$MODE-vm2/out/vm2.preempted
	AT_GOOD=$(tail -n1 /tmp/samples-$MODE | cut -d' ' -f1)
	echo "== $MODE: VM2's PREEMPT returned at $(lab_uptime)s, sample $AT_GOOD: $(tail -n1 /tmp/samples-$MODE)"
	sleep 8 # samples that start after the GOOD: each takes up to a second or two
	touch /tmp/sampler.stop; wait $SP
	touch /tmp/inner-$MODE-vm1/stop
	wait $Q2; R2=$?
	wait $Q1; R1=$?
	echo "== inner QEMUs exited $R1 (VM1), $R2 (VM2) at $(lab_uptime)s"
	for v in vm1 vm2; do
		tr -d '\r' < /tmp/inner-$MODE-$v.console | sed "s/^/[inner-$MODE-$v] /"
		sed "s/^/[inner-$MODE-$v qemu] /" /tmp/inner-$MODE-$v.qemu
		cp /tmp/inner-$MODE-$v/out/guest.log /lab/io/out/inner-$MODE-$v.log 2>/dev/null
	done
	PREEMPT_EXIT=$(cat /tmp/inner-$MODE-vm2/out/guest.log /tmp/inner-$MODE-vm2.console 2>/dev/null | tr -d '\r' |
		sed -n 's/.*# -> preempt exit \([0-9]*\).*/\1/p' | head -n1)
	echo "== $MODE: samples (N MAXSEQ) around the PREEMPT:"
	awk -v g=$AT_GOOD '$1 >= g - 10 && $1 <= g + 10' /tmp/samples-$MODE
}

run_kill() {
	echo "== kill: prhelper --backend=emulate --initiator=peer --fence=kill"
	lab_helper_start prhelper /run/fence.sock -vv --backend=emulate --db=/tmp/fence.db --initiator=peer --fence=kill
	PH=$LAB_HELPER_PID
	scenario kill /run/fence.sock $LAB_DEV1
	L=/tmp/fence.sock.log
	lab_ok "kill: VM2's PREEMPT got GOOD (sg_persist exit 0)" test "$PREEMPT_EXIT" = 0
	lab_ok "kill: VM1's QEMU was killed (SIGKILL: 137)" test "$R1" = 137
	lab_ok "kill: VM2's guest finished" test "$R2" = 0
	# A sample reads the whole disk and takes most of a second under TCG, so the
	# one in progress when the GOOD was seen (AT_GOOD + 1) may have read the
	# newest blocks before VM1's last writes, made before it was killed, landed.
	# The first sample wholly after the GOOD is AT_GOOD + 2; from it on the disk
	# must not change. That VM1's QEMU had exited before the GOOD is the
	# helper-log ordering check below.
	AFTER=$(awk -v g=$AT_GOOD '$1 >= g + 2 { print $2 }' /tmp/samples-kill | sort -u)
	NAFTER=$(awk -v g=$AT_GOOD '$1 >= g + 2' /tmp/samples-kill | wc -l)
	echo "  highest sequence number in each of the $NAFTER samples that started after the GOOD: $AFTER"
	lab_ok "kill: at least 3 samples started after VM2's GOOD ($NAFTER)" test "$NAFTER" -ge 3
	lab_ok "kill: not one block of VM1 reached the disk after VM2's GOOD" test "$(echo "$AFTER" | wc -l)" = 1
	lab_ok "kill: VM1 had written before" test "${AFTER:-0}" -gt 0
	VM1PID=$(grep -a -m1 "initiator=iqn.2025-01.dev.prhelper:vm:$U1" $L | sed -n 's/.*peer_pid=\([0-9]*\).*/\1/p')
	lab_ok "kill: the helper killed VM1's QEMU (pid $VM1PID)" grep -aqE "msg=fenced .*pids=\[$VM1PID\]" $L
	T_RECV=$(logtime $L 'request received.*PR OUT PREEMPT')
	T_COMMIT=$(logtime $L 'committed; fencing before the answer')
	T_FENCED=$(logtime $L 'msg=fenced ')
	T_CONF=$(logtime $L 'fences confirmed')
	T_GOOD=$(logtime $L 'request done.*PR OUT PREEMPT')
	echo "== kill: timeline (helper log, ms after PREEMPT received)"
	for e in "PREEMPT received:$T_RECV" "eviction committed:$T_COMMIT" "VM1 fenced (exited):$T_FENCED" "fences confirmed:$T_CONF" "GOOD sent:$T_GOOD"; do
		n=${e%%:*}; t=${e#*:}
		printf '  %-22s %s  +%s ms\n' "$n" "$t" "$(awk -v a=$(secs $T_RECV) -v b=$(secs $t) 'BEGIN { printf "%.0f", (b - a) * 1000 }')"
	done
	lab_ok "kill: fenced before GOOD was sent" awk -v f=$(secs "$T_FENCED") -v g=$(secs "$T_GOOD") 'BEGIN { exit !(f <= g) }'
	echo "FIGURE fence-kill PREEMPT-received-to-GOOD-sent-ms $(awk -v a=$(secs $T_RECV) -v b=$(secs $T_GOOD) 'BEGIN { printf "%.0f", (b - a) * 1000 }')"
	grep -a -E 'fenc|PREEMPT' $L | head -n 20
	lab_helper_stop $PH
	lab_ok "kill: no panic in prhelper's log" sh -c "! grep -qi panic $L"
}

run_fail() {
	echo "== fail: prhelper --fence=exec:/tmp/fail-agent.sh (exits 1) --fence-timeout=5s"
	printf '#!/bin/sh\necho "fail-agent: not fencing $PRHELPER_FENCE_NAME ($PRHELPER_FENCE_UUID, pid $PRHELPER_FENCE_PID)"\nexit 1\n' > /tmp/fail-agent.sh
	chmod 755 /tmp/fail-agent.sh
	lab_helper_start prhelper /run/fence-fail.sock -vv --backend=emulate --db=/tmp/fence-fail.db --initiator=peer \
		--fence=exec:/tmp/fail-agent.sh --fence-timeout=5s
	PF=$LAB_HELPER_PID
	scenario fail /run/fence-fail.sock $LAB_DEV3
	L=/tmp/fence-fail.sock.log
	lab_ok "fail: VM2's PREEMPT did not get GOOD (exit $PREEMPT_EXIT)" sh -c "[ -n '$PREEMPT_EXIT' ] && [ '$PREEMPT_EXIT' != 0 ]"
	lab_ok "fail: VM2's PREEMPT got HARDWARE ERROR (sg_persist exit 3)" test "$PREEMPT_EXIT" = 3
	lab_ok "fail: VM1 was not killed (its guest finished)" test "$R1" = 0
	lab_ok "fail: the agent ran with VM1's identity" grep -aq "fail-agent: not fencing fail-vm1 ($U1" $L
	lab_ok "fail: the helper logs the unconfirmed fence" grep -aq "fence not confirmed" $L
	grep -a -E 'fenc|PREEMPT' $L | head -n 20
	lab_helper_stop $PF
}

# Arguments: the runs to do, "kill" and/or "fail" (default both). check.sh runs
# "kill" only: each run boots two inner guests (about 7 minutes under TCG in TCG);
# the failing fence is also covered by cmd/prhelper's TestFenceExecFails with real
# processes.
for run in ${1:-kill fail} ${2:-}; do
	case $run in
	kill) run_kill ;;
	fail) run_fail ;;
	*) lab_die "fence-kill: unknown run $run (kill or fail)" ;;
	esac
done
lab_summary
