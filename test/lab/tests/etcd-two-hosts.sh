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
# Argument: each inner QEMU's time limit in seconds (default 900; give run.sh's
# -t room for it on a loaded host).
lab_need_bin prhelper prpersist etcd
lab_lio_setup 2 64
DEVA=$LAB_DEV1 DEVB=$LAB_DEV2
INNER_TIMEOUT=${1:-900}
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
lab_expect_out 0 'Key=0x1' sg_persist -n -i -k $D
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
touch /lab/io/out/vm1.moved
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
touch /lab/io/out/vm2.checked
lab_summary
INNER

# inner_start TAG SCRIPT UUID SOCK DEV [QEMU ARGS...] : boot inner guest TAG in
#   the background (sets QPID); its share is /tmp/inner-TAG
inner_start() {
	tag=$1 scr=$2 uuid=$3 sock=$4 dev=$5; shift 5
	I=/tmp/inner-$tag
	rm -rf $I; mkdir -p $I/out
	cat /tmp/inner-common.sh /tmp/inner-$scr.sh > $I/cmd.sh
	[ -f /tmp/inner-$scr-moved.sh ] && cp /tmp/inner-$scr-moved.sh $I/$scr-moved.sh
	LAB_INNER_MEM=320 LAB_INNER_DRIVE=,file.locking=off LAB_INNER_DEVICE=,share-rw=on \
		lab_inner_qemu $tag $I $sock $dev -uuid $uuid -name $tag "$@" &
	QPID=$!
	echo "== inner $tag (-uuid $uuid, $sock, $dev) started at $(lab_uptime)s, pid $QPID"
}

# view HOST DEV : READ FULL STATUS as the lab host sees it through HOST's admin socket
view() { prpersist --socket /run/$1-admin.sock -i -s $2; }
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
	lab_ok "$2" lab_wait ${3:-400} test -e /tmp/inner-$1/out/$4
	[ -e /tmp/inner-$1/out/$4 ] && return 0
	dump_inner
	lab_die "$1 did not get to $4"
}

inner_start vm1 vm1 $U1 /run/hosta.sock $DEVA $(lab_inner_mig_args vm1); Q1=$QPID
inner_start vm2 vm2 $U2 /run/hostb.sock $DEVB; Q2=$QPID
marker vm1 "VM1 (hosta) registered and reserved" $((INNER_TIMEOUT - 120)) vm1.reserved
views "VM1 registered and reserved"
touch /tmp/inner-vm2/go
marker vm2 "VM2 (hostb) registered, saw VM1's reservation, conflicted" 400 vm2.registered
views "VM1 and VM2 registered, before the PREEMPT"
LAB_OUT=$LAB_VIEW_B
lab_out_has "vm:$U1" "hostb's view names VM1's initiator (from its uuid)"
lab_out_has "vm:$U2" "hostb's view names VM2's initiator"
touch /tmp/inner-vm2/go2
marker vm2 "VM2 preempted VM1" 400 vm2.preempted
touch /tmp/inner-vm1/go
marker vm1 "VM1 saw the unit attention and VM2's reservation" 400 vm1.preempted
touch /tmp/inner-vm2/go3
marker vm2 "VM2 released" 400 vm2.released
touch /tmp/inner-vm1/go2
marker vm1 "VM1 registered and reserved again" 400 vm1.ready
lab_ok "VM1 left its 9p shares" lab_wait 120 grep -q "waiting for 'moved' on ttyS1" /tmp/inner-vm1.console
views "before the move"
BEFORE_A=$LAB_VIEW_A
LAB_OUT=$LAB_VIEW_A
lab_out_has "vm:$U1" "VM1's registration is there before the move"
ETCD_BEFORE=$(lab_etcd_keys)
PRE_BEFORE=$(cat /tmp/hosta.sock.log /tmp/hostb.sock.log | grep -ac 'request received.*PR OUT PREEMPT')

# ------------------------------------------------- the move: live migration
echo "=================== move VM1 from hosta to hostb (live migration, same -uuid)"
rm -f /tmp/inner-vm1.mig
LAB_INNER_MEM=320 LAB_INNER_DRIVE=,file.locking=off LAB_INNER_DEVICE=,share-rw=on \
	lab_inner_qemu vm1d /tmp/inner-vm1 /run/hostb.sock $DEVB -uuid $U1 -name vm1 \
	$(lab_inner_mig_args vm1d) -incoming unix:/tmp/inner-vm1.mig &
QD=$!
lab_ok "the destination QEMU (hostb) listens for the migration" lab_wait 60 test -S /tmp/inner-vm1.mig
T_MIG=$(lab_uptime)
lab_ok "VM1 migrated from hosta to hostb" lab_inner_migrate vm1 unix:/tmp/inner-vm1.mig 300
wait $Q1; R1=$?
echo "== source QEMU (hosta) exited $R1 at $(lab_uptime)s; migration took $(awk -v a=$T_MIG -v b=$(lab_uptime) 'BEGIN { printf "%.1f", b - a }') s"
lab_inner_hmp vm1d "info status"
lab_ok "the destination runs VM1" lab_wait 30 grep -aq 'VM status: running' /tmp/inner-vm1d.mon.log
grep -a 'VM status' /tmp/inner-vm1d.mon.log
lab_inner_ctl vm1d moved
marker vm1 "VM1 checked its registration and reservation on hostb" 400 vm1.moved
touch /tmp/inner-vm2/go4
marker vm2 "VM2 checked after the move" 400 vm2.checked
views "after the move"
lab_ok "the lab host's READ FULL STATUS is the same as before the move" test "$LAB_VIEW_A" = "$BEFORE_A"
ETCD_AFTER=$(lab_etcd_keys)
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

touch /tmp/inner-vm1/stop
wait $QD; RD=$?
wait $Q2; R2=$?
echo "== inner QEMUs exited: VM1 destination $RD, VM2 $R2 at $(lab_uptime)s"
dump_inner
cp /tmp/inner-vm1/out/guest.log /lab/io/out/inner-vm1.log 2>/dev/null
cp /tmp/inner-vm2/out/guest.log /lab/io/out/inner-vm2.log 2>/dev/null
lab_ok "VM1's sequence passed on both hosts (rc=$(cat /tmp/inner-vm1/rc 2>/dev/null))" test "$(cat /tmp/inner-vm1/rc 2>/dev/null)" = 0
lab_ok "VM2's sequence passed (rc=$(cat /tmp/inner-vm2/rc 2>/dev/null))" test "$(cat /tmp/inner-vm2/rc 2>/dev/null)" = 0
lab_ok "VM1's guest reported its checks after the move" grep -aq '^[0-9]* passed, 0 failed' /tmp/inner-vm1d.console

lab_helper_stop $PA; lab_helper_stop $PB
echo "== helpers' logs (connections, PR OUT):"
for h in hosta hostb; do
	grep -a -E 'initiator=|PR OUT|etcd|level=(WARN|ERROR)' /tmp/$h.sock.log | grep -av 'request done' | head -n 40 | sed "s/^/[$h] /"
done
lab_ok "no panic in either helper's log" sh -c "! grep -qi panic /tmp/hosta.sock.log /tmp/hostb.sock.log"
echo "== etcd members' logs (warnings):"
tail -n 5 /tmp/etcd/e*.log
lab_etcd_stop
lab_summary
