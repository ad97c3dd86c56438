# (b) Differential test: one scripted PR sequence (prdiff, tools/prdiff) sent to
# qemu-pr-helper on LU disk0 (paths 1,2) and to prhelper on the identical LU
# disk1 (paths 3,4, same initiator names); every reply must be byte-identical.
# Run with one vCPU (run.sh -c 1): LIO's PR engine is deterministic only then.
# With argument "self", both sides are qemu-pr-helper (calibrates the lab).
lab_need_bin prdiff
lab_lio_setup_2lu 64
echo "== LU1: $LAB_DEV1 $LAB_DEV2 (qemu-pr-helper)   LU2: $LAB_DEV3 $LAB_DEV4 (${1:-prhelper})"
lab_helper_start qemu-pr-helper /run/ref.sock; REF=$LAB_HELPER_PID
if [ "${1:-}" = self ]; then
	lab_helper_start qemu-pr-helper /run/test.sock; TST=$LAB_HELPER_PID
else
	lab_need_bin prhelper
	lab_helper_start prhelper /run/test.sock; TST=$LAB_HELPER_PID
fi
lab_expect 0 prdiff -ref /run/ref.sock -ref-dev $LAB_DEV1,$LAB_DEV2 -test /run/test.sock -test-dev $LAB_DEV3,$LAB_DEV4
echo "== LIO's view of both LUs after the sequence"
for b in $LAB_BS1 $LAB_BS2; do LAB_BS=$b; echo "-- $b"; lab_lio_pr_state; done
lab_ok "both helpers still alive after the sequence" kill -0 $REF $TST
lab_helper_stop $REF; lab_helper_stop $TST
echo "== helper logs"; cat /tmp/ref.sock.log /tmp/test.sock.log
lab_ok "no panic in the helper logs" sh -c "! grep -qi panic /tmp/ref.sock.log /tmp/test.sock.log"
lab_summary
