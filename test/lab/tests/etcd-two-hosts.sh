# Issue 10, item 5d: emulated reservations shared by two hosts through etcd, with
# real QEMU guests and a real live migration.
#
# One lab VM plays two hosts: a 3-member etcd cluster on loopback
# (lab_etcd_start), and two prhelper processes, "hosta" and "hostb", each in its
# own UTS and mount namespace with its own host name and machine-id
# (lab_host_helper: --backend=emulate --initiator=peer --etcd-endpoints=...).
# Each host reaches the LIO disk through its own nexus: hosta /dev/sdX of path 1,
# hostb that of path 2 (the same LU, so the same etcd key).
#   VM1 (-uuid 1111...) on hosta registers 0x1 and reserves Write Exclusive;
#   VM2 (-uuid 2222...) on hostb registers 0x2, sees VM1's reservation, conflicts
#   on RESERVE, PREEMPTs VM1; VM1 then gets the unit attention (REGISTRATIONS
#   PREEMPTED). VM2 releases; VM1 registers and reserves again.
#   Then VM1 moves to hostb as live migration does: a second QEMU with the same
#   -uuid is started on hostb's socket with -incoming and VM1 is migrated into it
#   through the source's monitor (the guest keeps running: same boot id, no
#   second boot). VM1, now on hostb, still has its registration and reservation:
#   its first PR command gets no unit attention, the generation and the keys are
#   unchanged, it holds the reservation; VM2's RESERVE still conflicts; the lab
#   host's READ FULL STATUS through either host is the same as before the move;
#   the LU's etcd key was not written by the move; no PREEMPT but VM2's one
#   reached either helper.
# QEMU refuses to migrate while a 9p share is mounted, so VM1 unmounts its shares
# before the migration and mounts them again after it (lab_io_detach_exec,
# lab_io_attach); the outer host tells it when through a second serial port.
# Needs: run.sh -n (nested image). Two inner boots (TCG in TCG), one migration.
# Then issue 11 3b with the same guests (see "issue 11 3b" below): both helpers
# restart with --fence=kill, hostb behind a TCP proxy the test cuts.
# It makes every assertion of two-vms-peer.sh's "peer" half too (README, "What
# moved where"). Not in check.sh: no green run yet.
# Argument: each inner QEMU's time limit in seconds (default 1400; give run.sh's
# -t room for it on a loaded host).
lab_need_bin prhelper prpersist etcd seqblocks tcpproxy
lab_lio_setup 2 64
DEVA=$LAB_DEV1 DEVB=$LAB_DEV2
INNER_TIMEOUT=${1:-1400}
U1=11111111-1111-4111-8111-111111111111
U2=22222222-2222-4222-8222-222222222222

lab_etcd_start 3
echo "== etcd members:"
lab_etcd_v3 cluster/member/list '{}' | tr '{' '\n' | grep -o '"name":"[^"]*".*"clientURLs":\["[^"]*"\]'
lab_host_helper hosta /run/hosta.sock -vv; PA=$LAB_HELPER_PID
lab_host_helper hostb /run/hostb.sock -vv; PB=$LAB_HELPER_PID
head -n 3 /tmp/hosta.sock.log /tmp/hostb.sock.log
lab_ok "the two helpers run as two hosts (host names, machine-ids)" sh -c \
	"grep -q '^host hosta, machine-id ' /tmp/hosta.sock.log && grep -q '^host hostb, machine-id ' /tmp/hostb.sock.log &&
	 [ \"\$(cat /tmp/hosts/hosta/machine-id)\" != \"\$(cat /tmp/hosts/hostb/machine-id)\" ]"

# ------------------------------------------------------------ inner scripts
# Shell functions of the inner guests' scripts: cmd.sh and VM1's script after
# the move (a new shell, lab_io_detach_exec) both start with them.
cat > /tmp/inner-funcs.sh <<'INNER'
# mark FILE : /lab/io/out/FILE with "CHECKS FAILS", whole when it appears (the
#   outer host reads it as soon as it exists)
mark() { echo "${LAB_CHECKS:-0} ${LAB_FAILS:-0}" > /lab/io/out/.$1 && mv /lab/io/out/.$1 /lab/io/out/$1; }
# start_writer N BIN SLOT : VM N's writer, BIN write $D SLOT, sequence-numbered
#   O_DIRECT blocks without pause (issue 11 3b); checks that it runs, prints
#   where it is, and marks vmN.writing
start_writer() {
	"$2" write $D $3 > /lab/io/out/seqblocks$1.log 2>&1 &
	W=$!
	usleep 1500000
	lab_ok "VM$1's writer runs (seqblocks, pid $W)" kill -0 $W
	cat /lab/io/out/seqblocks$1.log
	# where the writer is (the lab runs so far: alive, no first write, no block
	# on the disk, no error in dmesg; run e2: reading its /proc/PID/stat and
	# wchan blocked, as when an execve holds the exec lock): its state, wait
	# channel, executable and kernel stack, each read bounded
	usleep 3000000
	echo "[VM$1 writer] state $(timeout 5 cut -d" " -f3 /proc/$W/stat 2>&1) wchan $(timeout 5 cat /proc/$W/wchan 2>&1) exe $(timeout 5 readlink /proc/$W/exe 2>&1)"
	timeout 5 cat /proc/$W/stack 2>/dev/null | sed "s/^/[VM$1 writer stack] /"
	grep -E " sda " /proc/diskstats 2>/dev/null | sed "s/^/[VM$1 io: diskstats] /"
	dmesg | tail -n 5 | sed "s/^/[VM$1 dmesg] /"
	mark vm$1.writing
}
INNER
cat > /tmp/inner-common.sh <<'INNER'
modprobe virtio_scsi; modprobe sd_mod; modprobe sg
lab_wait 120 ls /sys/block/sda || lab_die "inner: no disk"
D=/dev/sda
INNER
cat > /tmp/inner-vm1.sh <<'INNER'
echo "== VM1 on hosta (uuid $(cat /sys/class/dmi/id/product_uuid 2>/dev/null)): register 0x1, reserve Write Exclusive"
lab_expect 0 sg_persist -n --out --register-ignore --param-sark=0x1 $D
lab_expect 0 sg_persist -n --out --reserve --param-rk=0x1 --prout-type=1 $D
lab_expect_out 0 'Key=0x1' sg_persist -n -i -r $D
touch /lab/io/out/vm1.reserved
lab_wait 600 test -e /lab/io/go || lab_die "VM1: no go"
echo "== VM1: after VM2's PREEMPT (from hostb)"
lab_expect 6 sg_persist -n -i -k $D
lab_expect_out 0 'Key=0x2' sg_persist -n -i -r $D
lab_expect_out 0 '1 registered reservation key' sg_persist -n -i -k $D
lab_expect 24 sg_persist -n --out --reserve --param-rk=0x1 --prout-type=1 $D
touch /lab/io/out/vm1.preempted
lab_wait 600 test -e /lab/io/go2 || lab_die "VM1: no second go"
echo "== VM1: VM2 released; register 0x1 again and reserve"
lab_expect 0 sg_persist -n --out --register-ignore --param-sark=0x1 $D
lab_expect 0 sg_persist -n --out --reserve --param-rk=0x1 --prout-type=1 $D
lab_expect_out 0 'Key=0x1' sg_persist -n -i -r $D
lab_expect_out 0 '2 registered reservation keys' sg_persist -n -i -k $D
printf '%s\n' "$LAB_OUT" > /tmp/keys.before
cat /proc/sys/kernel/random/boot_id > /tmp/boot_id
# 3b's writer runs from the guest's memory, not from the 9p share mounted again
# after the move (in the lab runs so far VM1's seqblocks started from there
# never got a block to the disk)
cp /lab/bin/seqblocks /tmp/seqblocks
echo "== VM1: boot id $(cat /tmp/boot_id); leaving the 9p shares for the migration"
touch /lab/io/out/vm1.ready
lab_io_detach_exec /lab/io/vm1-moved.sh
INNER
cat > /tmp/inner-vm1-moved.sh <<'INNER'
D=/dev/sda
lab_ctl_wait moved
lab_io_attach
echo "== VM1 after the move (now on hostb), boot id $(cat /proc/sys/kernel/random/boot_id)"
lab_ok "VM1 kept running through the move (same boot id, no second boot)" \
	test "$(cat /proc/sys/kernel/random/boot_id)" = "$(cat /tmp/boot_id)"
lab_expect_out 0 '^ +0x1$' sg_persist -n -i -k $D
printf '%s\n' "$LAB_OUT" > /tmp/keys.after
echo "# before the move:"; cat /tmp/keys.before
lab_ok "VM1's first PR command after the move: no unit attention, same generation and keys" cmp /tmp/keys.before /tmp/keys.after
lab_expect_out 0 'Key=0x1' sg_persist -n -i -r $D
lab_out_has 'type: Write Exclusive$' "VM1 still holds its Write Exclusive reservation"
lab_expect_out 0 'Reservation holder' sg_persist -n -i -s $D
lab_expect 0 sg_persist -n --out --reserve --param-rk=0x1 --prout-type=1 $D
echo "== VM1: a block written after the move"
echo "vm1 after the move $(cat /tmp/boot_id)" | dd of=$D bs=512 seek=2048 conv=sync,fsync 2>&1
lab_expect 0 sh -c "dd if=$D bs=512 skip=2048 count=1 iflag=direct 2>/dev/null | grep -qa 'vm1 after the move'"
mark vm1.moved
# issue 11 3b: hostb now runs with --fence=kill; VM1 holds Write Exclusive
# Registrants Only and writes without pause until it is fenced
lab_wait 600 test -e /lab/io/fence-go || lab_die "VM1: no fence-go"
echo "== VM1 (hostb, restarted with --fence=kill): reconnect, hold Write Exclusive Registrants Only, write"
lab_run sg_persist -n -i -k $D
lab_expect 0 sg_persist -n --out --release --param-rk=0x1 --prout-type=1 $D
lab_expect 0 sg_persist -n --out --reserve --param-rk=0x1 --prout-type=5 $D
lab_expect_out 0 'Key=0x1' sg_persist -n -i -r $D
start_writer 1 /tmp/seqblocks 0
lab_wait 600 test -e /lab/io/stop || lab_die "VM1: no stop"
lab_summary
INNER
cat > /tmp/inner-vm2.sh <<'INNER'
lab_wait 600 test -e /lab/io/go || lab_die "VM2: no go"
echo "== VM2 on hostb (uuid $(cat /sys/class/dmi/id/product_uuid 2>/dev/null)): register 0x2, look, try to reserve"
lab_expect 0 sg_persist -n --out --register-ignore --param-sark=0x2 $D
lab_expect_out 0 'Key=0x1' sg_persist -n -i -r $D
lab_expect_out 0 '2 registered reservation keys' sg_persist -n -i -k $D
lab_expect 24 sg_persist -n --out --reserve --param-rk=0x2 --prout-type=1 $D
touch /lab/io/out/vm2.registered
lab_wait 600 test -e /lab/io/go2 || lab_die "VM2: no second go"
echo "== VM2: PREEMPT VM1 (sark 0x1)"
lab_expect 0 sg_persist -n --out --preempt --param-rk=0x2 --param-sark=0x1 --prout-type=1 $D
lab_expect_out 0 'Key=0x2' sg_persist -n -i -r $D
touch /lab/io/out/vm2.preempted
lab_wait 600 test -e /lab/io/go3 || lab_die "VM2: no third go"
echo "== VM2: release"
lab_expect 0 sg_persist -n --out --release --param-rk=0x2 --prout-type=1 $D
touch /lab/io/out/vm2.released
lab_wait 600 test -e /lab/io/go4 || lab_die "VM2: no fourth go"
echo "== VM2: after VM1 moved to this host"
lab_expect_out 0 'Key=0x1' sg_persist -n -i -r $D
lab_expect 24 sg_persist -n --out --reserve --param-rk=0x2 --prout-type=1 $D
mark vm2.checked
# issue 11 3b: hostb now runs with --fence=kill
lab_wait 600 test -e /lab/io/fence-go || lab_die "VM2: no fence-go"
echo "== VM2 (hostb, restarted with --fence=kill): reconnect"
lab_run sg_persist -n -i -k $D
touch /lab/io/out/vm2.connected
lab_wait 600 test -e /lab/io/write2 || lab_die "VM2: no write2"
echo "== VM2: a registrant under Write Exclusive Registrants Only writes"
start_writer 2 seqblocks 2
lab_wait 600 test -e /lab/io/stop
lab_summary
INNER

# Every wait below has a limit in seconds of the lab VM's uptime (within), and
# every command that could block (a PR command to a helper, a write to an inner
# QEMU's monitor or serial fifo) runs under one (timeout, bounded): a wait that
# runs out fails its check, and the test goes on or, when the rest cannot work,
# ends (marker). lab_wait counts 0.1 s polls, so its limit stretches with the
# command's own time: seqblocks max takes a second or two under TCG, and the
# earlier runs' "VM1's blocks reach the disk" (lab_wait 120) polled for minutes.
# within SECONDS CMD... : poll CMD every 0.1 s until it succeeds, for at most
#   SECONDS of uptime; non-zero when the time ran out
#   and never past END, 60 s before run.sh's limit (lab.timeout on the kernel
#   command line), so that the test ends (marker) and saves its logs itself
#   rather than being killed with them
END=$(sed -n 's/.*lab\.timeout=\([0-9]*\).*/\1/p' /proc/cmdline); END=$(( ${END:-100000} - 60 ))
within() {
	_end=$(( $(cut -d. -f1 /proc/uptime) + $1 )); shift
	[ $_end -gt $END ] && _end=$END
	while ! "$@" >/dev/null 2>&1; do
		[ "$(cut -d. -f1 /proc/uptime)" -ge $_end ] && return 1
		usleep 100000
	done
}
# gone PID : the background job PID has ended (a zombie counts)
gone() { [ ! -e /proc/$1 ] || grep -q ') Z' /proc/$1/stat; }
# reap PID SECONDS : RC = the job's exit status, or "running" after SECONDS
reap() { if within $2 gone $1; then wait $1; RC=$?; else RC=running; fi; }
# bounded SECONDS CMD... : CMD (a shell function too) in a subshell, killed after
#   SECONDS: its status, or 124 when it was killed
bounded() {
	_bs=$1; shift
	( "$@" ) & _bp=$!
	reap $_bp $_bs
	[ "$RC" != running ] && return $RC
	echo "  ($* still running after ${_bs}s: killed)"
	kill -KILL $_bp 2>/dev/null; wait $_bp 2>/dev/null
	return 124
}
PRT="timeout -s KILL 120" # a PR command from the lab host: 2 minutes at most
# save_logs : the inner guests' consoles, QEMU output and shares, the helpers',
#   proxy's and etcd members' logs and the samples into out/inner/ (on failure)
save_logs() {
	mkdir -p /lab/io/out/inner
	for t in vm1 vm1d vm2; do
		[ -f /tmp/inner-$t.console ] && tr -d '\r' < /tmp/inner-$t.console > /lab/io/out/inner/$t.console.txt
		[ -f /tmp/inner-$t.qemu ] && cp /tmp/inner-$t.qemu /lab/io/out/inner/$t.qemu.txt
		[ -f /tmp/inner-$t.mon.log ] && tr -d '\r' < /tmp/inner-$t.mon.log > /lab/io/out/inner/$t.monitor.txt
	done
	for v in vm1 vm2; do [ -d /tmp/inner-$v/out ] && cp -r /tmp/inner-$v/out /lab/io/out/inner/$v-share-out; done
	for l in /tmp/hosta.sock.log /tmp/hostb.sock.log /tmp/hosta-5d.log /tmp/hostb-5d.log /tmp/tcpproxy.log /tmp/samples-kill /tmp/samples-cut /tmp/etcd/e*.log; do
		[ -f $l ] && cp $l /lab/io/out/inner/$(echo ${l#/tmp/} | tr / -)
	done
	echo "== the inner guests' and the helpers' logs are in out/inner/ ($(ls /lab/io/out/inner | wc -l) files)"
}
trap '_rc=$?; { [ $_rc != 0 ] || [ "${LAB_FAILS:-0}" != 0 ]; } && save_logs' EXIT

# inner_start TAG SCRIPT UUID SOCK DEV [QEMU ARGS...] : boot inner guest TAG in
#   the background (sets QPID); its share is /tmp/inner-TAG
inner_start() {
	tag=$1 scr=$2 uuid=$3 sock=$4 dev=$5; shift 5
	I=/tmp/inner-$tag
	rm -rf $I; mkdir -p $I/out
	cat /tmp/inner-funcs.sh /tmp/inner-common.sh /tmp/inner-$scr.sh > $I/cmd.sh
	[ -f /tmp/inner-$scr-moved.sh ] && cat /tmp/inner-funcs.sh /tmp/inner-$scr-moved.sh > $I/$scr-moved.sh
	LAB_INNER_MEM=320 LAB_INNER_DRIVE=,file.locking=off LAB_INNER_DEVICE=,share-rw=on \
		lab_inner_qemu $tag $I $sock $dev -uuid $uuid -name $tag "$@" &
	QPID=$!
	echo "== inner $tag (-uuid $uuid, $sock, $dev) started at $(lab_uptime)s, pid $QPID"
}

# view HOST DEV : READ FULL STATUS as the lab host sees it through HOST's admin socket
view() { $PRT prpersist --socket /run/$1-admin.sock -i -s $2; }
# views DESC : both hosts' views, printed; LAB_VIEW_A/B keep them
views() {
	echo "== lab host's view at $(lab_uptime)s: $1"
	LAB_VIEW_A=$(view hosta $DEVA 2>&1); LAB_VIEW_B=$(view hostb $DEVB 2>&1)
	printf '%s\n' "$LAB_VIEW_A" | sed 's/^/  [hosta] /'
	lab_ok "$1: hosta and hostb see the same state" test "$LAB_VIEW_A" = "$LAB_VIEW_B"
	lab_etcd_keys | sed 's/^/  [etcd] /'
}
# dump_inner : the inner guests' consoles and QEMU output so far
dump_inner() {
	for t in vm1 vm1d vm2; do
		[ -f /tmp/inner-$t.console ] && tr -d '\r' < /tmp/inner-$t.console | sed "s/^/[inner-$t] /"
		[ -f /tmp/inner-$t.qemu ] && sed "s/^/[inner-$t qemu] /" /tmp/inner-$t.qemu
	done
}
# marker VM DESC SECONDS FILE : VM's guest creates /lab/io/out/FILE within
#   SECONDS; if not, the rest cannot work: show the guests and stop
marker() {
	lab_ok "$2" within ${3:-400} test -e /tmp/inner-$1/out/$4
	[ -e /tmp/inner-$1/out/$4 ] && return 0
	dump_inner
	lab_die "$1 did not get to $4"
}

inner_start vm1 vm1 $U1 /run/hosta.sock $DEVA $(lab_inner_mig_args vm1); Q1=$QPID
inner_start vm2 vm2 $U2 /run/hostb.sock $DEVB; Q2=$QPID
# progress every 60 s (LAB_PROGRESS=0: none): where the lab VM's CPU goes and how
# far the inner guests are, so that a slow run shows why
if [ "${LAB_PROGRESS:-1}" = 1 ]; then
	( while sleep 60; do
		echo "== progress at $(lab_uptime)s: load $(cut -d' ' -f1-3 /proc/loadavg), free $(free -m | awk '/^Mem/ { print $4 " MiB" }')"
		top -b -n 1 2>/dev/null | sed -n '2,12p' | cut -c1-120 | sed 's/^/  [top] /'
		for t in vm1 vm1d vm2; do
			[ -f /tmp/inner-$t.console ] && echo "  [inner-$t] $(tr -d '\r' < /tmp/inner-$t.console | tail -n 1 | cut -c1-150)"
		done
	done ) &
	MON=$!
fi
marker vm1 "VM1 (hosta) registered and reserved" $((INNER_TIMEOUT - 120)) vm1.reserved
views "VM1 registered and reserved"
touch /tmp/inner-vm2/go
marker vm2 "VM2 (hostb) registered, saw VM1's reservation, conflicted" 400 vm2.registered
views "VM1 and VM2 registered, before the PREEMPT"
LAB_OUT=$LAB_VIEW_B
lab_out_has "iqn.2025-01.dev.prhelper:vm:$U1" "hostb's view names VM1's initiator (from its uuid)"
lab_out_has "iqn.2025-01.dev.prhelper:vm:$U2" "hostb's view names VM2's initiator"
lab_out_has 'Key=0x1' "VM1's key is registered"
lab_out_has 'Key=0x2' "VM2's key is registered"
lab_out_has 'iSCSI' "the TransportIDs are iSCSI ones"
touch /tmp/inner-vm2/go2
marker vm2 "VM2 preempted VM1" 400 vm2.preempted
touch /tmp/inner-vm1/go
marker vm1 "VM1 saw the unit attention and VM2's reservation" 400 vm1.preempted
touch /tmp/inner-vm2/go3
marker vm2 "VM2 released" 400 vm2.released
touch /tmp/inner-vm1/go2
marker vm1 "VM1 registered and reserved again" 400 vm1.ready
lab_ok "VM1 left its 9p shares" within 120 grep -q "waiting for 'moved' on ttyS1" /tmp/inner-vm1.console
views "before the move"
BEFORE_A=$LAB_VIEW_A
LAB_OUT=$LAB_VIEW_A
lab_out_has "vm:$U1" "VM1's registration is there before the move"
ETCD_BEFORE=$(lab_etcd_keys /prhelper/state/lu/)
PRE_BEFORE=$(cat /tmp/hosta.sock.log /tmp/hostb.sock.log | grep -ac 'request received.*PR OUT PREEMPT')

# ------------------------------------------------- the move: live migration
echo "=================== move VM1 from hosta to hostb (live migration, same -uuid)"
rm -f /tmp/inner-vm1.mig
LAB_INNER_MEM=320 LAB_INNER_DRIVE=,file.locking=off LAB_INNER_DEVICE=,share-rw=on \
	lab_inner_qemu vm1d /tmp/inner-vm1 /run/hostb.sock $DEVB -uuid $U1 -name vm1 \
	$(lab_inner_mig_args vm1d) -incoming unix:/tmp/inner-vm1.mig &
QD=$!
lab_ok "the destination QEMU (hostb) listens for the migration" within 60 test -S /tmp/inner-vm1.mig
T_MIG=$(lab_uptime)
lab_ok "VM1 migrated from hosta to hostb" bounded 400 lab_inner_migrate vm1 unix:/tmp/inner-vm1.mig 300
reap $Q1 60; R1=$RC
echo "== source QEMU (hosta) exited $R1 at $(lab_uptime)s; migration took $(awk -v a=$T_MIG -v b=$(lab_uptime) 'BEGIN { printf "%.1f", b - a }') s"
bounded 20 lab_inner_hmp vm1d "info status"
lab_ok "the destination runs VM1" within 30 grep -aq 'VM status: running' /tmp/inner-vm1d.mon.log
grep -a 'VM status' /tmp/inner-vm1d.mon.log
lab_ok "VM1's guest was told it moved (its second serial port)" bounded 20 lab_inner_ctl vm1d moved
marker vm1 "VM1 checked its registration and reservation on hostb" 400 vm1.moved
touch /tmp/inner-vm2/go4
marker vm2 "VM2 checked after the move" 400 vm2.checked
views "after the move"
lab_ok "the lab host's READ FULL STATUS is the same as before the move" test "$LAB_VIEW_A" = "$BEFORE_A"
ETCD_AFTER=$(lab_etcd_keys /prhelper/state/lu/)
echo "  etcd before: $ETCD_BEFORE"; echo "  etcd after:  $ETCD_AFTER"
lab_ok "the LU's etcd key was not written by the move (same mod_revision)" test -n "$ETCD_BEFORE" -a "$ETCD_AFTER" = "$ETCD_BEFORE"
PRE_AFTER=$(cat /tmp/hosta.sock.log /tmp/hostb.sock.log | grep -ac 'request received.*PR OUT PREEMPT')
lab_ok "one PREEMPT in all (VM2's), none since ($PRE_BEFORE before the move, $PRE_AFTER after)" test "$PRE_BEFORE" = 1 -a "$PRE_AFTER" = 1
lab_ok "VM1's block written after the move is on the LU (read by the lab host)" \
	sh -c "dd if=$DEVA bs=512 skip=2048 count=1 iflag=direct 2>/dev/null | grep -qa 'vm1 after the move'"
# peer_pid HOST UUID : the pids of the QEMUs whose connections HOST accepted as VM UUID
peer_pid() { grep -a 'connection accepted' /tmp/$1.sock.log | grep -a "vm:$2" | sed -n 's/.*peer_pid=\([0-9]*\).*/\1/p' | sort -u | tr '\n' ' '; }
PID_A=$(peer_pid hosta $U1) PID_B=$(peer_pid hostb $U1)
echo "  VM1's initiator (iqn.2025-01.dev.prhelper:vm:$U1): on hosta from QEMU pid(s) $PID_A, on hostb from pid(s) $PID_B"
lab_ok "VM1's initiator came to hostb from another QEMU process (the destination)" \
	sh -c "[ -n '$PID_A' ] && [ -n '$PID_B' ] && [ '$PID_A' != '$PID_B' ]"

lab_ok "VM1's guest checks before and after the move passed ($(cat /tmp/inner-vm1/out/vm1.moved 2>/dev/null) checks, failures)" \
	sh -c 'set -- $(cat /tmp/inner-vm1/out/vm1.moved); [ "${1:-0}" -gt 0 ] && [ "$2" = 0 ]'
lab_ok "VM2's guest checks passed ($(cat /tmp/inner-vm2/out/vm2.checked 2>/dev/null) checks, failures)" \
	sh -c 'set -- $(cat /tmp/inner-vm2/out/vm2.checked); [ "${1:-0}" -gt 0 ] && [ "$2" = 0 ]'
# the inner guests' failed checks, with the command before each (the outer
# counts above do not say which)
# (after the move VM1's output is the destination QEMU's, vm1d)
for t in vm1 vm1d vm2; do
	[ -f /tmp/inner-$t.console ] && tr -d '\r' < /tmp/inner-$t.console | grep -a -B4 'FAIL' | sed "s/^/[inner-$t failed] /"
done

# what two-vms-peer.sh's "peer" half checks from outside, made here too (so that
# this test can take its place): the exits in the guests' logs, the helpers' logs
# exit_after FILE FROM PATTERN : the exit line of the first command matching
#   PATTERN after the line matching FROM
exit_after() { sed -n "/$2/,\$p" $1 | sed -n "/^# .*$3/,/^# -> exit/p" | grep '^# -> exit' | head -n1; }
echo "  VM2 RESERVE: $(exit_after /tmp/inner-vm2/out/guest.log 'VM2 on hostb' 'reserve --param-rk=0x2')   VM1 first command after the PREEMPT: $(exit_after /tmp/inner-vm1/out/guest.log 'after VM2' '')"
lab_ok "VM2's RESERVE conflicted (exit 24)" sh -c "echo '$(exit_after /tmp/inner-vm2/out/guest.log 'VM2 on hostb' 'reserve --param-rk=0x2')' | grep -q 'exit 24'"
lab_ok "VM1 got the unit attention after the PREEMPT (exit 6)" sh -c "echo '$(exit_after /tmp/inner-vm1/out/guest.log 'after VM2' '')' | grep -q 'exit 6'"
lab_ok "the helpers' logs name both VMs' initiators" sh -c "grep -q 'vm:$U1' /tmp/hosta.sock.log && grep -q 'vm:$U2' /tmp/hostb.sock.log"

# ==================================================== issue 11 3b: fencing across hosts
# Same guests, same hosts: both helpers restart with --fence=kill (5d needs VM1
# to survive VM2's PREEMPT, so 5d ran with the default --fence=none); hostb now
# reaches etcd only through tcpproxy, which the test cuts. VM1 and VM2 are both
# on hostb after the move; the evictor is the lab host's own initiator on hosta
# (its admin socket, iqn.2025-01.lab:hosta-admin), a PR OUT through hosta's
# helper like a guest's.
#   kill: VM1 holds Write Exclusive Registrants Only and writes sequence-numbered
#     blocks (O_DIRECT, first MiB); hosta's initiator registers 0x3 and PREEMPTs
#     0x1. hostb sees the record, kills VM1's QEMU, confirms through etcd; only
#     then does hosta answer GOOD. The lab host reads the disk back every 0.1 s:
#     not one block of VM1 after the GOOD.
#   cut: VM2 (registered, allowed to write under Registrants Only) writes in the
#     third MiB; hostb is cut off from etcd, then hosta's initiator PREEMPTs 0x2.
#     hostb cannot confirm; it self-fences (kills VM2) at 3/4 of the lease TTL
#     after its last confirmed renewal; hosta answers GOOD only once it reads
#     that hostb's lease expired. Not one block of VM2 after the GOOD.
TTL=${FENCE_TTL:-8}
FENCE_ARGS="--fence=kill --fence-lease-ttl=${TTL}s --fence-timeout=25s"
echo "=================== 11 3b: fencing across hosts ($FENCE_ARGS) at $(lab_uptime)s"
members() { lab_etcd_keys /prhelper/ | grep 'fence/members/' | cut -d' ' -f1; }
OLD_MEMBERS=$(members)
[ -n "$OLD_MEMBERS" ] || { echo "  (no member keys found: waiting out the default lease TTL)"; sleep 12; }
echo "  member keys of the 5d helpers: $OLD_MEMBERS"
lab_helper_stop $PA; lab_helper_stop $PB
mv /tmp/hosta.sock.log /tmp/hosta-5d.log; mv /tmp/hostb.sock.log /tmp/hostb-5d.log
/lab/bin/tcpproxy 127.0.0.1:2479=127.0.0.1:2379 127.0.0.1:2489=127.0.0.1:2389 127.0.0.1:2499=127.0.0.1:2399 > /tmp/tcpproxy.log 2>&1 &
PX=$!
lab_host_helper hosta /run/hosta.sock -vv $FENCE_ARGS; PA=$LAB_HELPER_PID
LAB_HOST_ENDPOINTS=http://127.0.0.1:2479,http://127.0.0.1:2489,http://127.0.0.1:2499
lab_host_helper hostb /run/hostb.sock -vv $FENCE_ARGS; PB=$LAB_HELPER_PID
unset LAB_HOST_ENDPOINTS
LA=/tmp/hosta.sock.log LB=/tmp/hostb.sock.log
old_gone() { _m=$(members); for _o in $OLD_MEMBERS; do echo "$_m" | grep -qxF "$_o" && return 1; done; return 0; }
lab_ok "the 5d helpers' leases expired (not revoked at stop; their member keys are gone)" within 90 old_gone
echo "  member keys now: $(members | tr '\n' ' ')"
touch /tmp/inner-vm1/fence-go /tmp/inner-vm2/fence-go
marker vm1 "VM1 reconnected to hostb, holds Write Exclusive Registrants Only and writes" 300 vm1.writing
marker vm2 "VM2 reconnected to hostb" 300 vm2.connected
MOVED_FAILS=$(cut -d' ' -f2 /tmp/inner-vm1/out/vm1.moved 2>/dev/null)
lab_ok "VM1's guest checks since the move passed (reconnect, release, reserve type 5: $(cat /tmp/inner-vm1/out/vm1.writing) checks, failures; ${MOVED_FAILS:-?} failures before)" \
	sh -c 'm=$1; set -- $(cat /tmp/inner-vm1/out/vm1.writing); [ -n "$2" ] && [ "$2" = "$m" ]' _ "${MOVED_FAILS:-x}"
lab_ok "hostb serves VM1 and VM2 again (their QEMUs reconnected)" \
	sh -c "grep -a 'connection accepted' $LB | grep -aq 'vm:$U1' && grep -a 'connection accepted' $LB | grep -aq 'vm:$U2'"

# secs TIME : seconds of the day of a log time (2026-12-07T06:01:02.345Z)
secs() { echo "$1" | sed 's/.*T//; s/Z$//' | awk -F: '{ printf "%.3f", $1*3600 + $2*60 + $3 }'; }
# logtime LOG REGEX : the time of the first log line matching REGEX
logtime() { grep -a -m1 -E "$2" "$1" | sed -n 's/^time=\([^ ]*\).*/\1/p'; }
# ms FROM TO : milliseconds between two log times
ms() { awk -v a=$(secs "$1") -v b=$(secs "$2") 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
# le A B : log time A is not after B (both present)
le() { [ -n "$1" ] && [ -n "$2" ] && awk -v a=$(secs "$1") -v b=$(secs "$2") 'BEGIN { exit !(a <= b) }'; }
# sampler DEV MIB FILE : every 0.1 s append "N MAXSEQ" (region MIB) to FILE
sampler() {
	_n=0
	while [ ! -e /tmp/sampler.stop ]; do
		_n=$((_n + 1)); echo "$_n $(seqblocks max $1 $2)" >> $3; usleep 100000
	done
}
# after_good SAMPLES : the highest sequence numbers seen by the samples that
#   started after the GOOD (AT_GOOD + 2 on: the one in progress at the GOOD may
#   have read blocks before VM1's last writes, made before its death, landed)
after_good() {
	AFTER=$(awk -v g=$AT_GOOD '$1 >= g + 2 { print $2 }' $1 | sort -u)
	NAFTER=$(awk -v g=$AT_GOOD '$1 >= g + 2' $1 | wc -l)
	echo "  samples (N MAXSEQ) around the GOOD (sample $AT_GOOD):"
	awk -v g=$AT_GOOD '$1 >= g - 5 && $1 <= g + 8' $1 | tr '\n' ';' | sed 's/^/    /'; echo
	echo "  highest sequence number in each of the $NAFTER samples that started after the GOOD: $AFTER"
}

echo "=================== 3b kill: VM1 writes (on hostb); hosta's initiator PREEMPTs it"
rm -f /tmp/sampler.stop /tmp/samples-kill
sampler $DEVA 0 /tmp/samples-kill & SP=$!
lab_ok "kill: VM1's blocks reach the disk" within 120 sh -c "[ \$(seqblocks max $DEVA 0) -gt 0 ]"
echo "  VM1's writer (seqblocks1.log): $(tail -n 2 /tmp/inner-vm1/out/seqblocks1.log 2>/dev/null | tr '\n' ' ')"
lab_expect 0 $PRT prpersist --socket /run/hosta-admin.sock --out --register-ignore --param-sark=0x3 $DEVA
echo "== kill: PREEMPT 0x1 at $(lab_uptime)s"
lab_expect 0 $PRT prpersist --socket /run/hosta-admin.sock --out --preempt --param-rk=0x3 --param-sark=0x1 --prout-type=5 $DEVA
AT_GOOD=$(tail -n1 /tmp/samples-kill | cut -d' ' -f1)
echo "== kill: GOOD at $(lab_uptime)s, sample $AT_GOOD: $(tail -n1 /tmp/samples-kill)"
sleep 8
touch /tmp/sampler.stop; reap $SP 30; [ "$RC" = running ] && kill $SP
reap $QD 30; RD=$RC
lab_ok "kill: VM1's QEMU was killed (SIGKILL: 137; got $RD)" test "$RD" = 137
after_good /tmp/samples-kill
lab_ok "kill: at least 3 samples started after the GOOD ($NAFTER)" test "$NAFTER" -ge 3
lab_ok "kill: not one block of VM1 reached the disk after the GOOD" test "$(echo "$AFTER" | wc -l)" = 1
lab_ok "kill: VM1 had written before (${AFTER:-0} blocks)" test "${AFTER:-0}" -gt 0
VM1PID=$(grep -a 'connection accepted' $LB | grep -a "vm:$U1" | sed -n 's/.*peer_pid=\([0-9]*\).*/\1/p' | head -n1)
lab_ok "kill: hostb's helper killed VM1's QEMU (pid $VM1PID)" grep -aqE "msg=fenced .*vm:$U1.*pids=\[$VM1PID\]" $LB
T_RECV=$(logtime $LA 'request received.*PR OUT PREEMPT')
T_COMMIT=$(logtime $LA 'committed; fencing before the answer')
T_FENCED=$(logtime $LB "msg=fenced .*vm:$U1")
T_CONF=$(logtime $LA 'fences confirmed')
T_GOOD=$(logtime $LA 'request done.*PR OUT PREEMPT')
echo "== kill: timeline (helpers' logs, ms after the PREEMPT was received by hosta)"
for e in "hosta: PREEMPT received|$T_RECV" "hosta: eviction committed|$T_COMMIT" "hostb: VM1 killed, exited|$T_FENCED" \
	"hosta: fences confirmed|$T_CONF" "hosta: GOOD sent|$T_GOOD"; do
	printf '  %-30s %s  +%s ms\n' "${e%%|*}" "${e#*|}" "$(ms $T_RECV ${e#*|})"
done
lab_ok "kill: hostb fenced VM1 before hosta sent GOOD" le "$T_FENCED" "$T_GOOD"
lab_ok "kill: hosta's GOOD came from hostb's confirmation, not from a lease expiry" sh -c "! grep -aq 'lease expired' $LA"
echo "FIGURE etcd-two-hosts kill PREEMPT-received-to-GOOD-sent-ms $(ms $T_RECV $T_GOOD)"

echo "=================== 3b cut: VM2 writes (on hostb); hostb is cut off from etcd; hosta's initiator PREEMPTs VM2"
NA=$(wc -l < $LA) NB=$(wc -l < $LB)
touch /tmp/inner-vm2/write2
marker vm2 "cut: VM2 writes (a registrant may, under Write Exclusive Registrants Only)" 300 vm2.writing
rm -f /tmp/sampler.stop /tmp/samples-cut
sampler $DEVA 2 /tmp/samples-cut & SP=$!
lab_ok "cut: VM2's blocks reach the disk" within 120 sh -c "[ \$(seqblocks max $DEVA 2) -gt 0 ]"
echo "  VM2's writer (seqblocks2.log): $(tail -n 2 /tmp/inner-vm2/out/seqblocks2.log 2>/dev/null | tr '\n' ' ')"
kill -USR1 $PX
within 10 grep -q 'cut=true' /tmp/tcpproxy.log
T_CUT=$(sed -n 's/^\([^ ]*\) tcpproxy: cut=true.*/\1/p' /tmp/tcpproxy.log | head -n1)
echo "== cut: hostb's etcd connections cut at $(lab_uptime)s ($T_CUT); PREEMPT 0x2"
lab_expect 0 $PRT prpersist --socket /run/hosta-admin.sock --out --preempt --param-rk=0x3 --param-sark=0x2 --prout-type=5 $DEVA
AT_GOOD=$(tail -n1 /tmp/samples-cut | cut -d' ' -f1)
echo "== cut: GOOD at $(lab_uptime)s, sample $AT_GOOD: $(tail -n1 /tmp/samples-cut)"
sleep 8
touch /tmp/sampler.stop; reap $SP 30; [ "$RC" = running ] && kill $SP
reap $Q2 30; R2=$RC
lab_ok "cut: VM2's QEMU was killed (SIGKILL: 137; got $R2)" test "$R2" = 137
after_good /tmp/samples-cut
lab_ok "cut: at least 3 samples started after the GOOD ($NAFTER)" test "$NAFTER" -ge 3
lab_ok "cut: not one block of VM2 reached the disk after the GOOD" test "$(echo "$AFTER" | wc -l)" = 1
lab_ok "cut: VM2 had written before (${AFTER:-0} blocks)" test "${AFTER:-0}" -gt 0
tail -n +$((NA + 1)) $LA > /tmp/hosta-cut.log; tail -n +$((NB + 1)) $LB > /tmp/hostb-cut.log
T_RECV=$(logtime /tmp/hosta-cut.log 'request received.*PR OUT PREEMPT')
T_COMMIT=$(logtime /tmp/hosta-cut.log 'committed; fencing before the answer')
T_SELF=$(logtime /tmp/hostb-cut.log "msg=self-fenced .*vm:$U2")
T_EXP=$(logtime /tmp/hosta-cut.log "lease expired.*helper=hostb@")
T_GOOD=$(logtime /tmp/hosta-cut.log 'request done.*PR OUT PREEMPT')
echo "== cut: timeline (ms after the cut)"
for e in "tcpproxy: hostb cut off|$T_CUT" "hosta: PREEMPT received|$T_RECV" "hosta: eviction committed|$T_COMMIT" \
	"hostb: self-fenced (VM2 killed)|$T_SELF" "hosta: hostb's lease expired|$T_EXP" "hosta: GOOD sent|$T_GOOD"; do
	printf '  %-36s %s  +%s ms\n' "${e%%|*}" "${e#*|}" "$(ms $T_CUT ${e#*|})"
done
grep -a -E 'self-fence|lease' /tmp/hostb-cut.log | head -n 5 | sed 's/^/  [hostb] /'
grep -a -E 'lease expired' /tmp/hosta-cut.log | head -n 3 | sed 's/^/  [hosta] /'
lab_ok "cut: hostb fenced VM2 itself (self-fence)" test -n "$T_SELF"
lab_ok "cut: hosta read that hostb's lease expired" test -n "$T_EXP"
lab_ok "cut: hostb's self-fence came before hosta saw its lease expire" le "$T_SELF" "$T_EXP"
lab_ok "cut: hosta's GOOD came only after the lease expired" le "$T_EXP" "$T_GOOD"
lab_ok "cut: hosta's GOOD came only after VM2 was fenced" le "$T_SELF" "$T_GOOD"
lab_ok "cut: hostb never confirmed (it could not reach etcd)" sh -c "! grep -aq 'msg=fenced .*vm:$U2' /tmp/hostb-cut.log"
echo "FIGURE etcd-two-hosts cut self-fence-after-cut-ms $(ms $T_CUT $T_SELF) lease-expiry-seen-after-cut-ms $(ms $T_CUT $T_EXP) PREEMPT-received-to-GOOD-sent-ms $(ms $T_RECV $T_GOOD) TTL-s $TTL"
kill -USR2 $PX
echo "== lab host's view through hosta after both evictions"
LAB_OUT=$(view hosta $DEVA 2>&1); printf '%s\n' "$LAB_OUT" | sed 's/^/  [hosta] /'
lab_out_has 'Key=0x3' "hosta's initiator holds the reservation"
lab_out_lacks 'Key=0x1' "VM1's registration is gone"
lab_out_lacks 'Key=0x2' "VM2's registration is gone"

touch /tmp/inner-vm1/stop /tmp/inner-vm2/stop
dump_inner
cp /tmp/inner-vm2/out/guest.log /lab/io/out/inner-vm2.log 2>/dev/null
lab_helper_stop $PA; lab_helper_stop $PB
kill $PX 2>/dev/null; reap $PX 10
echo "== helpers' logs (connections, PR OUT, fencing):"
for l in hosta-5d hostb-5d hosta.sock hostb.sock; do
	grep -a -E 'initiator=|PR OUT|etcd|fenc|lease|level=(WARN|ERROR)' /tmp/$l.log | grep -av 'request done' | head -n 40 | sed "s/^/[$l] /"
done
lab_ok "no panic in any helper's log" sh -c "! grep -qi panic /tmp/hosta-5d.log /tmp/hostb-5d.log $LA $LB"
echo "== etcd members' logs (warnings):"
tail -n 5 /tmp/etcd/e*.log
[ -n "${MON:-}" ] && kill $MON 2>/dev/null
for p in $LAB_ETCD_PIDS; do kill -TERM $p 2>/dev/null; done
for p in $LAB_ETCD_PIDS; do reap $p 20; [ "$RC" = running ] && kill -KILL $p; done
lab_summary
