# Lab command file: prpersist side by side with sg_persist (sg3_utils 1.46) against
# Debian's qemu-pr-helper and LIO, in the storage lab VM (test/lab).
# Every "same" line runs both tools with the same options and requires identical
# stdout, stderr (modulo "sg_persist failed:" vs "prpersist failed:") and exit status.
# Run it (static binary shared read-only at /lab/src):
#   CGO_ENABLED=0 go build -o /tmp/ppbin/prpersist ./cmd/prpersist
#   test/lab/run.sh -c 1 -s /tmp/ppbin cmd/prpersist/testdata/lab-compare.sh
# Last result: testdata/lab-compare.txt.
lab_lio_setup 2 64
A=$LAB_DEV1 B=$LAB_DEV2
S=/run/qemu-pr-helper.sock
qemu-pr-helper -k $S -f /run/qemu-pr-helper.pid > /tmp/prh.log 2>&1 &
PRH=$!
lab_wait 20 test -S $S || lab_die "no helper socket"
P=/lab/src/prpersist
export PRPERSIST_SOCKET=$S
# same DEV ARGS...: run sg_persist and prpersist, compare stdout, stderr (modulo the
# program name) and exit status.
same() {
	sg_persist "$@" > /tmp/sg.out 2> /tmp/sg.err; src=$?
	$P "$@" > /tmp/pp.out 2> /tmp/pp.err; prc=$?
	sed -i 's/^sg_persist failed:/prpersist failed:/' /tmp/sg.err
	if [ $src = $prc ] && cmp -s /tmp/sg.out /tmp/pp.out && cmp -s /tmp/sg.err /tmp/pp.err; then
		echo "SAME rc=$src: $*"; cat /tmp/pp.out; cat /tmp/pp.err
		_pass=$((_pass+1))
	else
		echo "DIFF: $* (sg_persist rc=$src, prpersist rc=$prc)"
		echo "--- sg_persist stdout"; cat /tmp/sg.out; echo "--- prpersist stdout"; cat /tmp/pp.out
		echo "--- sg_persist stderr"; cat /tmp/sg.err; echo "--- prpersist stderr"; cat /tmp/pp.err
		_fail=$((_fail+1))
	fi
}
_pass=0 _fail=0
same -n -i -c $A
same -n -i -c -H $A
same -n -i -k $A
same -n -i -r $A
same -n -i -s $A
lab_expect 0 $P -n --out --register --param-sark=0x1 $A
same -n -i -k $A
same -n -i -k -H $A
same -n -i -k -HH $A
lab_expect 0 $P -n --out --reserve --param-rk=0x1 --prout-type=1 $A
same -n -i -r $B
same -n -i -r -H $A
same -n -i -s $B
echo "== B not registered: conflict"
same -n --out --reserve --param-rk=0x2 --prout-type=1 $B
lab_expect 0 $P -n -G -S 2 $B
lab_expect 0 $P -n --out --preempt --param-rk=0x2 --param-sark=0x1 --prout-type=3 $B
echo "== A's next command through the helper: UNIT ATTENTION"
lab_expect 6 $P -n -i -r $A
same -n -i -r $A
same -n -i -s $A
echo "== holder releases with the wrong type: LIO answers RESERVATION CONFLICT"
same -n --out --release --param-rk=0x2 --prout-type=1 $B
lab_expect 0 $P -n --out --release --param-rk=0x2 --prout-type=3 $B
same -n -i -r $A
lab_expect 0 $P -n --out --clear --param-rk=0x2 $B
same -n -i -k $A
echo "== register-ignore, APTPL, type 7"
lab_expect 0 $P -n --out --register-ignore --param-sark=0xabc --param-aptpl $A
lab_expect 0 $P -n -I -S 0xdef $B
lab_expect 0 $P -n -R -K abc -T 7 $A
same -n -i -s $B
same -n -i -c $A
lab_expect 0 $P -s -m 40 $B
lab_expect 0 $P --json -s $B
lab_expect 0 $P -y -k $A
echo "== register and move: A holds WE, moves it to B's nexus (RTPI 2, SAS TransportID)"
lab_expect 0 $P -C -K abc $A
lab_expect 0 $P -G -S 0x10 $A
lab_expect 0 $P -R -K 10 -T 1 $A
lab_expect 0 $P -M -K 10 -S 0x20 -Q 2 -X sas,5001405b00000002 -v $A
same -n -i -s $A
same -n -i -r $A
echo "== bad parameter: REGISTER AND MOVE with no reservation -> ILLEGAL REQUEST"
$P -k $B > /dev/null 2>&1; $P -k $A > /dev/null 2>&1   # consume the unit attentions R&M left
lab_expect 0 $P -C -K 20 $B
$P -k $A > /dev/null 2>&1   # consume CLEAR's RESERVATIONS PREEMPTED
lab_expect 0 $P -G -S 0x10 $A
same -n --out --register-move --param-rk=10 --param-sark=0x20 -Q 2 -X sas,5001405b00000002 $A
lab_expect 5 $P --json -M -K 10 -S 20 -Q 2 -X sas,5001405b00000002 $A
echo "== unregistered RESERVE with no reservation: LIO 02/08/00"
same -n --out --reserve --param-rk=0x5 --prout-type=1 $B
same -n --out --reserve --param-rk=0x5 --prout-type=1 -v $B
echo "== invalid type: 05/24/00"
same -n --out --reserve --param-rk=0x10 --prout-type=2 $A
same -n --out --reserve --param-rk=0x10 --prout-type=2 -v $A
same -n -i -k -v $A
same -n -i -r -v $A
same -n -i -c -HH $A
same -n -i -s -H $A
same -n -i -s -HH $A
same -n -i -s -HHH $A
echo "== SPEC_I_PT with a SAS TransportID"
lab_expect 0 $P -C -K 10 $A
lab_expect 0 $P -G -S 0x30 -X sas,5001405b00000002 $A
same -n -i -s $A
kill $PRH; wait $PRH 2>/dev/null
echo "== same: $_pass identical, $_fail different"
[ "$_fail" = 0 ] || { echo "[lab] FAIL: prpersist and sg_persist differ"; exit 1; }
lab_summary
