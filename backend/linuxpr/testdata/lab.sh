# Lab command file for backend/linuxpr (run from the repository root):
#   CGO_ENABLED=0 go test -c -tags lab -o /tmp/linuxpr-lab/linuxpr.test ./backend/linuxpr
#   LAB_BUILD=... test/lab/run.sh -c 1 -s /tmp/linuxpr-lab backend/linuxpr/testdata/lab.sh
# dm-multipath over two I_T nexuses of one LIO LU (the map), plus a third nexus
# outside the map ("another host"); then TestLab through the <linux/pr.h> ioctls.
cat > /etc/multipath.conf <<'CONF'
defaults {
	user_friendly_names yes
	find_multipaths greedy
	polling_interval 2
}
blacklist {
	devnode "^(vd|nvme|loop|ram|zram|sr)"
	devnode "^sdc$"
}
CONF
lab_udev_start
lab_lio_setup 2 64
udevadm settle -t 30
lab_multipath_start
lab_wait 30 sh -c 'multipath -ll | grep -q "active ready"' || lab_die "no multipath map"
lab_lio_path 3 $LAB_BS; C=$LAB_DEV
udevadm settle -t 30
lab_expect 0 multipath -ll
export LINUXPR_LAB_MPATH=/dev/mapper/mpatha LINUXPR_LAB_C=$C
lab_expect 0 /lab/src/linuxpr.test -test.v -test.run 'TestLab$'
lab_lio_pr_state
lab_summary
