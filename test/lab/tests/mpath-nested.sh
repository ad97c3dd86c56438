# Real QEMU on a multipath map: an inner VM whose scsi-block disk is
# /dev/mapper/mpatha (two tcm_loop paths of one LIO LU), with
# -object pr-manager-helper pointing at prhelper (default backend auto, which
# serves a dm-multipath map with the mpath backend). A third nexus outside the
# map (C) plays another host that registered 0xa1 and holds a Write Exclusive
# reservation. The inner guest runs the core sg_persist sequence; its REGISTER
# must land on both paths (three keys: C's and the map's two).
# Needs: run.sh -n (nested image; the build dir is /lab/src). Slow (TCG in TCG).
lab_need_bin prhelper
lab_mpath_setup "reservation_key file"
C=$LAB_OTHER M=$LAB_MPATH
multipath -ll
INNER_TIMEOUT=${INNER_TIMEOUT:-420}
other() { sg_persist -n "$@" $C >/dev/null 2>&1; sg_persist -n "$@" $C; }

cat > /tmp/inner-cmd.sh <<'INNER'
modprobe virtio_scsi; modprobe sd_mod; modprobe sg
lab_wait 60 ls /sys/block/sda || lab_die "inner: no disk"
D=/dev/sda
echo "== inner guest: another host registered 0xa1 and holds a Write Exclusive reservation"
lab_expect_out 0 '1 registered reservation key' sg_persist -n -i -k $D
lab_out_has '^ +0xa1$'
lab_expect 0 sg_persist -n --out --register --param-sark=0x5 $D
lab_expect 24 sg_persist -n --out --reserve --param-rk=0x5 --prout-type=1 $D
lab_expect_out 0 '3 registered reservation keys' sg_persist -n -i -k $D
lab_ok "the guest's key is registered twice (one per path of the map)" [ "$(printf '%s\n' "$LAB_OUT" | grep -c '^ *0x5$')" = 2 ]
lab_expect_out 0 'Key=0xa1' sg_persist -n -i -r $D
echo "== inner guest: preempt the other host, reserve Write Exclusive registrants only"
lab_expect 0 sg_persist -n --out --preempt --param-rk=0x5 --param-sark=0xa1 --prout-type=5 $D
lab_expect_out 0 'Key=0x5' sg_persist -n -i -r $D
lab_out_has 'Write Exclusive, registrants only'
lab_expect_out 0 '2 registered reservation keys' sg_persist -n -i -k $D
lab_out_lacks '0xa1'
lab_expect 0 sg_persist -n --out --release --param-rk=0x5 --prout-type=5 $D
lab_expect_out 0 'NO reservation' sg_persist -n -i -r $D
lab_expect 0 sg_persist -n --out --register --param-rk=0x5 --param-sark=0 $D
lab_expect_out 0 'NO registered reservation keys' sg_persist -n -i -k $D
lab_summary
INNER

echo "== the other host (C) registers 0xa1 and reserves Write Exclusive"
lab_expect 0 sg_persist -n --out --register --param-sark=0xa1 $C
lab_expect 0 sg_persist -n --out --reserve --param-rk=0xa1 --prout-type=1 $C
S=/run/prh.sock
lab_helper_start prhelper $S -v
HPID=$LAB_HELPER_PID
lab_expect_out 0 "backend:  mpath" /lab/bin/prhelper --explain $M
I=/tmp/inner
rm -rf $I; mkdir -p $I/out; cp /tmp/inner-cmd.sh $I/cmd.sh
echo "== starting inner QEMU at $(lab_uptime)s on $M"
lab_inner_qemu mpath $I $S $M
echo "== inner QEMU exited $? at $(lab_uptime)s"
tr -d '\r' < /tmp/inner-mpath.console | sed "s/^/[inner] /"
sed "s/^/[inner qemu] /" /tmp/inner-mpath.qemu
lab_ok "the inner guest's sequence passed (rc=$(cat $I/rc 2>/dev/null))" test "$(cat $I/rc 2>/dev/null)" = 0
cp $I/out/guest.log /lab/io/out/inner.log 2>/dev/null
echo "== outer view: the guest preempted C and left; nothing is registered"
lab_expect_out 0 'NO registered reservation keys' other -i -k
lab_ok "prhelper still running" kill -0 $HPID
lab_helper_stop $HPID
echo "== prhelper log:"; cat /tmp/prh.sock.log
lab_ok "the prhelper log shows the mpath backend registering both paths" grep -q 'registered on paths' /tmp/prh.sock.log
lab_ok "no panic in the prhelper log" sh -c "! grep -qi panic /tmp/prh.sock.log"
lab_summary
