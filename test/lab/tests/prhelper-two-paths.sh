# (a) prpersist -> prhelper -> LIO through two I_T nexuses (paths A and B of one
# LU), checked from the other nexus with sg_persist; prhelper's per-request fd
# closing; PR OUT on a read-only fd; privilege drop with -u nobody -g nogroup.
# Argument "qemu": run the helper-level parts (fds, read-only, privileges)
# against Debian's qemu-pr-helper instead (calibration; prpersist parts skipped);
# "noclient": prhelper without the prpersist parts (while prpersist is missing).
HELPER=prhelper USE_P=1
[ "${1:-}" = qemu ] && HELPER=qemu-pr-helper USE_P=0
[ "${1:-}" = noclient ] && USE_P=0
lab_need_bin prraw
[ $HELPER = prhelper ] && lab_need_bin prhelper
[ $USE_P = 1 ] && lab_need_bin prpersist
lab_lio_setup 2 64
A=$LAB_DEV1 B=$LAB_DEV2
S=/run/prhelper.sock
READKEYS="5e 00 00 00 00 00 00 20 00 00"          # PR IN READ KEYS, allocation length 8192
REGISTER="5f 00 00 00 00 00 00 00 18 00"          # PR OUT REGISTER, parameter list 24 bytes
PARAM_0_777="0000000000000000 0000000000000777 0000000000000000"
echo "== path A: $A   path B: $B   helper: $HELPER"

lab_helper_start $HELPER $S -f /run/prhelper.pid
PID=$LAB_HELPER_PID
lab_ok "pid file holds the helper's pid" sh -c "[ \"\$(cat /run/prhelper.pid)\" = $PID ]"

if [ $USE_P = 1 ]; then
	P="prpersist --socket $S"
	echo "== capabilities and empty state through prpersist"
	lab_expect_out 0 'Type Mask|Persist Through Power Loss|PTPL' $P --in -c $A
	lab_expect_out 0 'NO registered reservation keys|no registered' $P --in -k $A
	lab_expect_out 0 'NO reservation|no reservation' $P --in -r $B
	echo "== A registers 0xabc, reserves Write Exclusive"
	lab_expect 0 $P --out -G --param-sark=0xabc $A
	lab_expect_out 0 '1 registered reservation key' $P --in -k $A
	lab_out_has '^ +0xabc$' "READ KEYS lists 0xabc"
	lab_expect 0 $P --out -R --param-rk=0xabc --prout-type=1 $A
	lab_expect_out 0 'Key=0xabc' $P --in -r $B
	lab_out_has 'Write Exclusive' "READ RESERVATION through B shows type Write Exclusive"
	echo "== the LU as seen by sg_persist on the other nexus (B)"
	lab_expect_out 0 'Key=0xabc' sg_persist -n -i -s $B
	lab_out_has 'SAS address: 0x5001405b00000001' "holder is path A's initiator"
	lab_out_has 'Reservation holder' "full status marks the holder"
	echo "== B: reserve without registration -> RESERVATION CONFLICT (24)"
	lab_expect 24 $P --out -R --param-rk=0x2 --prout-type=1 $B
	lab_expect 24 $P --out -G --param-rk=0x99 --param-sark=0x2 $B
	echo "== B registers 0xdef; both keys visible"
	lab_expect 0 $P --out -G --param-sark=0xdef $B
	lab_expect_out 0 '2 registered reservation keys' $P --in -k $A
	lab_out_has '^ +0xabc$'; lab_out_has '^ +0xdef$'
	lab_expect_out 0 'Key=0xdef' $P --in -s $B
	lab_out_has 'Key=0xabc'
	lab_expect_out 0 '^ +0xdef$' sg_persist -n -i -k $A
	echo "== machine-readable outputs"
	lab_expect_out 0 '0xdef|def' $P --in -k --json $A
	lab_out_has '[{]' "--json prints JSON"
	lab_expect_out 0 '0d ?ef|0def' $P --in -k --hex $A
	echo "== B preempts A (type 3 Exclusive Access); A gets UNIT ATTENTION (6) once"
	lab_expect 0 $P --out -P --param-rk=0xdef --param-sark=0xabc --prout-type=3 $B
	lab_expect 6 $P --in -k $A
	lab_expect_out 0 '1 registered reservation key' $P --in -k $A
	lab_out_has '^ +0xdef$'; lab_out_lacks '0xabc'
	lab_expect_out 0 'Key=0xdef' sg_persist -n -i -r $A
	lab_out_has 'Exclusive Access' "sg_persist on A: B holds Exclusive Access"
	echo "== A (unregistered) cannot release; the holder releases, registers-and-ignores, clears"
	lab_expect 24 $P --out -L --param-rk=0xabc --prout-type=3 $A
	lab_expect 24 $P --out -C --param-rk=0xabc $A
	lab_expect 0 $P --out -L --param-rk=0xdef --prout-type=3 $B
	lab_expect_out 0 'NO reservation|no reservation' sg_persist -n -i -r $A
	lab_expect 0 $P --out -I --param-sark=0x123 $A
	lab_expect_out 0 '0x123' sg_persist -n -i -k $B
	lab_expect 0 $P --out -C --param-rk=0xdef $B
	lab_expect 6 $P --in -k $A
	lab_expect_out 0 'NO registered|no registered' $P --in -k $A
	lab_expect_out 0 'NO registered' sg_persist -n -i -k $B
	echo "== ILLEGAL REQUEST (5): reserve with an invalid type"
	lab_expect 0 $P --out -G --param-sark=0x5 $A
	lab_expect 5 $P --out -R --param-rk=0x5 --prout-type=9 $A
	lab_expect 0 $P --out -C --param-rk=0x5 $A
	echo "== REGISTER AND MOVE (-M): A's reservation moves to path B's initiator on relative target port 2"
	lab_expect 0 $P --out -G --param-sark=0x10 $A
	lab_expect 0 $P --out -R --param-rk=0x10 --prout-type=1 $A
	lab_expect 0 $P --out -M --param-rk=0x10 --param-sark=0x20 --prout-type=1 --transport-id=sas,5001405b00000002 --relative-target-port=2 $A
	lab_expect_out 0 'Key=0x20' sg_persist -n -i -r $B
	lab_expect_out 0 '"r_holder":true' $P --in -s --json $A
	lab_out_has '"key":("0x20"|32),[^}]*"r_holder":true' "JSON full status: key 0x20 holds the reservation"
	lab_out_has '"key":("0x20"|32),[^}]*"relative_target_port":2' "JSON full status: key 0x20 on relative target port 2"
	lab_expect_out 0 'Key=0x20' sg_persist -n -i -s $A
	lab_out_has 'Key=0x10' "the source registration stays (UNREG not set)"
	echo "== prpersist -y (read-only fd) PR OUT: 05/20/00 -> exit 9 like sg_persist; unreachable socket -> 99"
	lab_expect_out 9 'Invalid (command operation code|opcode)|command not supported' $P --out -G -y --param-rk=0x10 --param-sark=0x11 $A
	lab_expect 99 prpersist --socket /run/nonexistent.sock --in -k $A
	lab_expect 0 $P --out -C --param-rk=0x20 $B
	lab_expect 6 $P --in -k $A
	lab_expect_out 0 'NO registered' sg_persist -n -i -k $B
fi

echo "== per-request fd closing: the helper's fd count is the same before and after 300 requests"
lab_expect 0 prraw $S $A "$READKEYS"
sleep 1
FD0=$(lab_fd_count $PID)
ls -l /proc/$PID/fd
lab_expect 0 prraw -n 100 $S $A "$READKEYS"
lab_expect 0 prraw -n 100 -fresh $S $B "$READKEYS"
lab_expect 0 prraw -n 100 $S $A "5f 06 00 00 00 00 00 00 18 00" "$PARAM_0_777"
[ $USE_P = 1 ] && for i in 1 2 3 4 5 6 7 8 9 10; do prpersist --socket $S --in -k $B >/dev/null; done
lab_wait 10 sh -c "[ \$(ls /proc/$PID/fd | wc -l) -eq $FD0 ]"
FD1=$(lab_fd_count $PID)
lab_ok "fd count constant: $FD0 before, $FD1 after" [ "$FD0" = "$FD1" ]
ls -l /proc/$PID/fd
lab_expect 0 prraw $S $A "5f 03 00 00 00 00 00 00 18 00" "0000000000000777 0000000000000000 0000000000000000"

echo "== PR OUT on a read-only fd: CHECK CONDITION, ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE (05/20/00)"
lab_expect_out 5 'sense key/asc/ascq: 5/20/00' prraw -ro $S $A "$REGISTER" "$PARAM_0_777"
lab_out_has '^status: 0x02 ' "status CHECK CONDITION"
[ $HELPER = prhelper ] && lab_out_has '^sense: 70 00 05 00 00 00 00 0a 00 00 00 00 20 00( 00){82}$' "fixed sense, bytes 18-95 zero"
lab_expect_out 0 'NO registered' sg_persist -n -i -k $B
lab_expect 0 prraw -ro $S $A "$READKEYS"

echo "== error paths, compared with qemu-pr-helper: fds that are not SCSI devices (SG_IO errno -> sense),"
echo "   and the sg node of the LU (PR IN only, so that the LU state does not change)"
modprobe loop; truncate -s 1M /tmp/plain.img
LOOP=$(losetup -f); losetup $LOOP /tmp/plain.img
lab_helper_start qemu-pr-helper /run/ref.sock; QPH=$LAB_HELPER_PID
pr_to() { # pr_to SOCKET DEVICE CDB : prraw, with the REGISTER parameter list for PR OUT
	if [ "$3" = "$REGISTER" ]; then prraw "$1" "$2" "$3" "$PARAM_0_777"; else prraw "$1" "$2" "$3"; fi
}
for dev in /tmp/plain.img /dev/null $LOOP $LAB_SG1; do
	for cdb in "$READKEYS" "$REGISTER"; do
		[ $dev = $LAB_SG1 ] && [ "$cdb" = "$REGISTER" ] && continue
		o1=$(pr_to /run/ref.sock $dev "$cdb" 2>&1); r1=$?
		o2=$(pr_to $S $dev "$cdb" 2>&1); r2=$?
		echo "-- $dev [$cdb]: qemu-pr-helper exit $r1, $HELPER exit $r2"; printf '%s\n' "$o2" | grep -v '^sense: 00 00 00 00 00 00'
		lab_ok "$dev [$cdb]: reply and exit status identical to qemu-pr-helper's" sh -c '[ "$1" = "$2" ] && [ "$3" = "$4" ]' _ "$o1" "$o2" "$r1" "$r2"
	done
done
lab_ok "both helpers survived the error paths" kill -0 $QPH $PID
lab_helper_stop $QPH; losetup -d $LOOP

echo "== SIGTERM: the helper exits 0 and removes its socket"
lab_helper_stop $PID; rc=$?
lab_ok "helper exit status 0 on SIGTERM (got $rc)" [ $rc = 0 ]
[ $HELPER = prhelper ] && lab_ok "socket removed" test ! -e $S

if [ $HELPER = prhelper ]; then
	echo "== -d: prhelper daemonizes; its socket exists when the command returns; SIGTERM removes it"
	rm -f /run/prh-d.sock /run/prh-d.pid
	lab_expect 0 timeout 60 prhelper -d -k /run/prh-d.sock -f /run/prh-d.pid
	lab_ok "socket exists as soon as prhelper -d returned" test -S /run/prh-d.sock
	DP=$(cat /run/prh-d.pid 2>/dev/null)
	lab_ok "pid file names a live process ('$DP')" kill -0 "$DP"
	lab_ok "the daemon runs in its own session (sid == pid)" sh -c "[ \"\$(cut -d' ' -f6 /proc/$DP/stat)\" = $DP ]"
	for fd in 0 1 2; do
		lab_ok "daemon's fd $fd is /dev/null ($(readlink /proc/$DP/fd/$fd))" [ "$(readlink /proc/$DP/fd/$fd)" = /dev/null ]
	done
	lab_expect 0 prraw /run/prh-d.sock $A "$READKEYS"
	kill -TERM "$DP"
	lab_ok "daemon exits on SIGTERM" lab_wait 10 sh -c "! kill -0 $DP"
	lab_ok "daemon removed its socket" test ! -e /run/prh-d.sock
fi

echo "== SIGTERM under load: 8 clients keep sending READ KEYS; the helper must stop within 10 s, exit 0,"
echo "   remove its socket, and no client may hang (each ends GOOD or with a connection error)"
lab_helper_start $HELPER /run/stop.sock; SP=$LAB_HELPER_PID
CP=""
for i in 1 2 3 4 5 6 7 8; do timeout -s KILL 120 prraw -n 100000 /run/stop.sock $B "$READKEYS" > /tmp/stop-client-$i.log 2>&1 & CP="$CP $!"; done
sleep 2
# (qemu-pr-helper's listen backlog is tiny: some of 8 simultaneous connects fail with EAGAIN there)
[ $HELPER = prhelper ] && lab_ok "all 8 clients connected and are running" kill -0 $CP
lab_helper_stop $SP; rc=$?
lab_ok "helper exit status 0 on SIGTERM under load (got $rc)" [ $rc = 0 ]
[ $HELPER = prhelper ] && lab_ok "socket removed" test ! -e /run/stop.sock
hung=0; for p in $CP; do wait $p; r=$?; [ $r -ge 124 ] && hung=$((hung + 1)); done
lab_ok "no client hung or was killed ($hung)" [ $hung = 0 ]
tail -qn1 /tmp/stop-client-*.log

echo "== privilege drop: started as root with -u nobody -g nogroup"
echo "   (socket in a directory owned by nobody, so that the unprivileged helper can remove it)"
mkdir -p /run/prh-nobody; chown 65534:65534 /run/prh-nobody
S=/run/prh-nobody/prhelper.sock
# --backend=sgio: qemu-pr-helper's set-up without multipath, SG_IO only
SGIO=; [ $HELPER = prhelper ] && SGIO=--backend=sgio
lab_helper_start $HELPER $S -u nobody -g nogroup $SGIO
PID=$LAB_HELPER_PID
sleep 1
# check_privs PID [CAPS [WHAT]] : every thread's capabilities and ids
check_privs() {
	want=${2:-0000000000020000} what=${3:-CAP_SYS_RAWIO only}
	lab_ok "helper has more than one thread to check ($(ls /proc/$1/task | wc -l) tasks)" [ "$(ls /proc/$1/task | wc -l)" -gt 1 ]
	for st in /proc/$1/status /proc/$1/task/*/status; do
		echo "-- $st: $(grep -E '^(Uid|Gid|Cap(Inh|Prm|Eff|Bnd|Amb)|Groups):' $st | tr '\t' ' ' | tr '\n' ';')"
		for f in CapEff CapPrm CapBnd; do
			v=$(lab_status_field $st $f)
			lab_ok "$st $f=$v is $want ($what)" [ "$v" = $want ]
		done
		v=$(lab_status_field $st Uid); lab_ok "$st Uid '$v' all 65534" [ "$v" = "65534 65534 65534 65534" ]
		v=$(lab_status_field $st Gid); lab_ok "$st Gid '$v' all 65534" [ "$v" = "65534 65534 65534 65534" ]
	done
}
check_privs $PID
echo "== ... and still serves PR commands"
lab_expect 0 prraw $S $A "$REGISTER" "$PARAM_0_777"
lab_expect_out 0 '0x777' sg_persist -n -i -k $B
if [ $USE_P = 1 ]; then
	lab_expect_out 0 '0x777' prpersist --socket $S --in -k $A
	lab_expect 0 prpersist --socket $S --out -C --param-rk=0x777 $A
	lab_expect_out 0 'NO registered' sg_persist -n -i -k $B
fi
echo "== the same after serving requests from 16 parallel clients (threads the runtime added since)"
PIDS=""
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do prraw -n 20 $S $B "$READKEYS" > /dev/null & PIDS="$PIDS $!"; done
bad=0; for p in $PIDS; do wait $p || bad=$((bad + 1)); done
lab_ok "16 parallel clients x 20 READ KEYS all GOOD ($bad failed)" [ $bad = 0 ]
check_privs $PID
lab_helper_stop $PID; rc=$?
lab_ok "unprivileged helper exit status 0 on SIGTERM (got $rc)" [ $rc = 0 ]
[ $HELPER = prhelper ] && lab_ok "socket removed by the unprivileged helper" test ! -e $S
echo "== helper logs"; cat /tmp/prhelper.sock.log
lab_ok "no panic in the helper logs" sh -c "! grep -qi panic /tmp/prhelper.sock.log"
if [ $HELPER = prhelper ]; then
	echo "== the default backend (auto) keeps CAP_SYS_ADMIN too, as qemu-pr-helper's multipath build"
	lab_helper_start prhelper $S -u nobody -g nogroup
	PID=$LAB_HELPER_PID; sleep 1
	check_privs $PID 0000000000220000 "CAP_SYS_RAWIO and CAP_SYS_ADMIN"
	lab_expect 0 prraw $S $A "$READKEYS"
	lab_helper_stop $PID
fi
lab_summary
