# Benchmark (not a test): READ KEYS round trips through prhelper, through
# qemu-pr-helper and with direct SG_IO on the same LIO disk, 1 and 16 clients.
lab_need_bin prbench prhelper
lab_lio_setup 1 64
lab_helper_start prhelper /run/prhelper.sock; P1=$LAB_HELPER_PID
lab_helper_start qemu-pr-helper /run/qemu-pr-helper.sock; P2=$LAB_HELPER_PID
sg_persist -n --out --register --param-sark=0x1 $LAB_DEV1 >/dev/null
lab_expect 0 prbench -dev $LAB_DEV1 -prhelper /run/prhelper.sock -qemu /run/qemu-pr-helper.sock -n ${1:-1600}
lab_helper_stop $P1; lab_helper_stop $P2
lab_summary
