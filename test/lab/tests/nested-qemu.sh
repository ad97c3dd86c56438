# (c, d) QEMU as the helper's client: an inner QEMU in the lab VM with
# -object pr-manager-helper and a scsi-block disk on path B; its guest runs
# sg_persist register / reserve / read keys / read reservation / preempt /
# release. The same inner sequence runs once through qemu-pr-helper (LU disk0)
# and once through prhelper (LU disk1, fresh, same initiator names); the inner
# guests' transcripts must be identical (c). In the prhelper run, after the
# guest's first commands the outer script stops prhelper with SIGTERM, starts a
# new one on the same socket path and only then lets the guest go on: its next
# sg_persist must succeed, because QEMU reconnects before sending the CDB (d).
# Needs: run.sh -n (nested image; the build dir is /lab/src). Slow (TCG in TCG).
# Argument "self": the second run uses qemu-pr-helper too (calibrates the lab).
SECOND=prhelper
[ "${1:-}" = self ] && SECOND=qemu-pr-helper
[ $SECOND = prhelper ] && lab_need_bin prhelper prpersist
lab_lio_setup_2lu 64
INNER_TIMEOUT=${INNER_TIMEOUT:-420}

cat > /tmp/inner-cmd.sh <<'INNER'
modprobe virtio_scsi; modprobe sd_mod; modprobe sg
lab_wait 60 ls /sys/block/sda || lab_die "inner: no disk"
D=/dev/sda
lab_ok "the Go binaries are shared into the inner guest too (/lab/bin)" test -x /lab/bin/prpersist
echo "== inner guest: the outer host registered 0xa1 on path A and holds a Write Exclusive reservation"
lab_expect_out 0 '1 registered reservation key' sg_persist -n -i -k $D
lab_out_has '^ +0xa1$'
lab_expect 0 sg_persist -n --out --register --param-sark=0x5 $D
lab_expect 24 sg_persist -n --out --reserve --param-rk=0x5 --prout-type=1 $D
lab_expect_out 0 '2 registered reservation keys' sg_persist -n -i -k $D
lab_out_has '^ +0x5$'
lab_expect_out 0 'Key=0xa1' sg_persist -n -i -r $D
echo "== inner guest: phase 1 done, waiting for the outer host"
touch /lab/io/out/phase1.done
lab_wait 300 test -e /lab/io/go || lab_die "inner: no go from the outer host"
echo "== inner guest: preempt the outer host's registration and reservation"
lab_expect 0 sg_persist -n --out --preempt --param-rk=0x5 --param-sark=0xa1 --prout-type=1 $D
lab_expect_out 0 'Key=0x5' sg_persist -n -i -r $D
lab_out_has 'Write Exclusive'
lab_expect_out 0 '1 registered reservation key' sg_persist -n -i -k $D
lab_expect 0 sg_persist -n --out --release --param-rk=0x5 --prout-type=1 $D
lab_expect_out 0 'NO reservation' sg_persist -n -i -r $D
lab_summary
INNER

# inner_run TAG KIND DEV_A DEV_B RESTART : the whole inner sequence through
#   helper KIND; RESTART=1: stop and restart the helper after phase 1
inner_run() {
	tag=$1 kind=$2 da=$3 db=$4 restart=$5
	S=/run/$tag.sock
	I=/tmp/inner-$tag
	rm -rf $I; mkdir -p $I/out; cp /tmp/inner-cmd.sh $I/cmd.sh
	echo "=================== $kind: LU paths A=$da B=$db"
	echo "== outer host: register 0xa1 on path A and reserve Write Exclusive"
	lab_expect 0 sg_persist -n --out --register --param-sark=0xa1 $da
	lab_expect 0 sg_persist -n --out --reserve --param-rk=0xa1 --prout-type=1 $da
	lab_helper_start $kind $S
	HPID=$LAB_HELPER_PID
	echo "== starting inner QEMU at $(lab_uptime)s"
	lab_inner_qemu $tag $I $S $db &
	QPID=$!
	lab_ok "$kind: inner guest reached phase 1" lab_wait $((INNER_TIMEOUT - 60)) test -e $I/out/phase1.done
	echo "== phase 1 reached at $(lab_uptime)s"
	if [ $restart = 1 ]; then
		echo "== (d) stop $kind (SIGTERM) while the inner QEMU is connected, start a new one on $S"
		lab_helper_stop $HPID; rc=$?
		lab_ok "$kind exited 0 on SIGTERM (got $rc)" [ $rc = 0 ]
		lab_ok "$kind removed $S" test ! -e $S
		lab_helper_start $kind $S
		lab_ok "a new $kind ($LAB_HELPER_PID, was $HPID) serves $S" [ "$LAB_HELPER_PID" != "$HPID" ]
		HPID=$LAB_HELPER_PID
	fi
	touch $I/go
	wait $QPID
	echo "== inner QEMU ($kind) exited $? at $(lab_uptime)s"
	tr -d '\r' < /tmp/inner-$tag.console | sed "s/^/[inner-$tag] /"
	sed "s/^/[inner-$tag qemu] /" /tmp/inner-$tag.qemu
	lab_ok "$kind: inner guest's sequence passed (rc=$(cat $I/rc 2>/dev/null))" test "$(cat $I/rc 2>/dev/null)" = 0
	cp $I/out/guest.log /lab/io/out/inner-$tag.log 2>/dev/null
	echo "== outer view after the inner run ($kind): path A was preempted (UA once), path B's initiator holds 0x5"
	lab_expect 6 sg_persist -n -i -k $da
	lab_expect_out 0 'Key=0x5' sg_persist -n -i -s $da
	lab_out_has 'SAS address: 0x5001405b00000002' "the inner guest's key is on path B's initiator"
	lab_out_lacks '0xa1' "the outer host's key is gone"
	lab_ok "$kind still running after the inner run" kill -0 $HPID
	lab_helper_stop $HPID
	echo "== $kind log:"; cat /tmp/$tag.sock.log
	lab_ok "no panic in the $kind log" sh -c "! grep -qi panic /tmp/$tag.sock.log"
}

inner_run ref qemu-pr-helper $LAB_DEV1 $LAB_DEV2 0
inner_run test $SECOND $LAB_DEV3 $LAB_DEV4 1
echo "== (c) the inner guest's transcripts through qemu-pr-helper (ref) and through $SECOND (test)"
diff -u /lab/io/out/inner-ref.log /lab/io/out/inner-test.log
lab_ok "inner transcripts identical" cmp -s /lab/io/out/inner-ref.log /lab/io/out/inner-test.log
lab_ok "inner transcripts not empty" grep -q 'passed, 0 failed' /lab/io/out/inner-test.log
lab_summary
