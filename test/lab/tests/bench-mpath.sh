# Benchmark (not a test): READ KEYS round trips on a dm-multipath map over two
# tcm_loop paths: through prhelper (default auto: the mpath backend, which finds
# the map's paths in sysfs and device-mapper for every command and sends the
# CDB down one path), through qemu-pr-helper (Debian's build has no
# multipath support: SG_IO on the map, which dm sends down its current path)
# and with direct SG_IO on the map; 1 and 16 clients.
lab_need_bin prbench prhelper
lab_mpath_setup
lab_helper_start prhelper /run/prhelper.sock; P1=$LAB_HELPER_PID
lab_helper_start qemu-pr-helper /run/qemu-pr-helper.sock; P2=$LAB_HELPER_PID
/lab/bin/prpersist --socket /run/prhelper.sock --out --register --param-sark=0x1 $LAB_MPATH >/dev/null
lab_expect 0 prbench -dev $LAB_MPATH -prhelper /run/prhelper.sock -qemu /run/qemu-pr-helper.sock -n ${1:-1600}
lab_helper_stop $P1; lab_helper_stop $P2
lab_summary
