# The <linux/pr.h> backend against the SG_IO one: prdiff's scripted sequence
# (tools/prdiff) sent to prhelper --backend=sgio on LU disk0 (paths 1,2) and to
# prhelper --backend=linuxpr on the identical LU disk1 (paths 3,4, same
# initiator names). Every reply must be byte-identical except at the steps
# tools/prdiff/linuxpr.expect lists, where the linuxpr reply must be exactly the
# documented one (what the ioctls cannot express, sense lost by sd on Linux 6.1,
# and the state those steps leave different; each entry says why). Run with one
# vCPU (run.sh -c 1): LIO's PR engine is deterministic only then.
lab_need_bin prdiff prhelper prraw
lab_lio_setup_2lu 64
echo "== LU1: $LAB_DEV1 $LAB_DEV2 (prhelper --backend=sgio)   LU2: $LAB_DEV3 $LAB_DEV4 (prhelper --backend=linuxpr)"
lab_helper_start prhelper /run/sgio.sock --backend=sgio; REF=$LAB_HELPER_PID
lab_helper_start prhelper /run/linuxpr.sock --backend=linuxpr; TST=$LAB_HELPER_PID
lab_expect 0 prdiff -expect linuxpr -ref /run/sgio.sock -ref-dev $LAB_DEV1,$LAB_DEV2 -test /run/linuxpr.sock -test-dev $LAB_DEV3,$LAB_DEV4
echo "== LIO's view of both LUs after the sequence"
for b in $LAB_BS1 $LAB_BS2; do LAB_BS=$b; echo "-- $b"; lab_lio_pr_state; done
# APTPL cannot be chosen through the ioctls (sd sets it on every REGISTER): the
# script cannot see it except in REPORT CAPABILITIES, LIO's configfs can.
REG="5f 00 00 00 00 00 00 00 18 00"
lab_expect 0 prraw /run/sgio.sock $LAB_DEV1 "$REG" "0000000000000000 0000000000000777 0000000000000000"
lab_expect 0 prraw /run/linuxpr.sock $LAB_DEV3 "$REG" "0000000000000000 0000000000000777 0000000000000000"
cat $LAB_BS1/pr/res_aptpl_active $LAB_BS2/pr/res_aptpl_active
lab_ok "REGISTER with APTPL 0 through sgio: LIO's APTPL stays disabled" grep -q Disabled $LAB_BS1/pr/res_aptpl_active
lab_ok "REGISTER with APTPL 0 through linuxpr: LIO's APTPL is activated (sd forces it)" grep -q Activated $LAB_BS2/pr/res_aptpl_active
lab_expect 0 prraw /run/sgio.sock $LAB_DEV1 "$REG" "0000000000000777 0000000000000000 0000000000000000"
lab_expect 0 prraw /run/linuxpr.sock $LAB_DEV3 "$REG" "0000000000000777 0000000000000000 0000000000000000"
lab_ok "both helpers still alive after the sequence" kill -0 $REF $TST
lab_helper_stop $REF; lab_helper_stop $TST
echo "== helper logs"; cat /tmp/sgio.sock.log /tmp/linuxpr.sock.log
lab_ok "no panic in the helper logs" sh -c "! grep -qi panic /tmp/sgio.sock.log /tmp/linuxpr.sock.log"
lab_ok "linuxpr found no IOC_PR_READ_* on Linux 6.1 (PR IN through SG_IO)" \
	grep -q 'kernel lacks IOC_PR_READ_KEYS' /tmp/linuxpr.sock.log
lab_summary
