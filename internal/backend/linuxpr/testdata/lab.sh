# Lab command file for backend/linuxpr (run from the repository root):
#   CGO_ENABLED=0 go test -c -tags lab -o /tmp/linuxpr-lab/linuxpr.test ./backend/linuxpr
#   LAB_BUILD=... test/lab/run.sh -c 1 -s /tmp/linuxpr-lab internal/backend/linuxpr/testdata/lab.sh
# dm-multipath over two I_T nexuses of one LIO LU (the map), plus a third nexus
# outside the map ("another host"); then TestLab through the <linux/pr.h> ioctls.
lab_mpath_setup; C=$LAB_OTHER
lab_expect 0 multipath -ll
export LINUXPR_LAB_MPATH=/dev/mapper/mpatha LINUXPR_LAB_C=$C
lab_expect 0 /lab/src/linuxpr.test -test.v -test.run 'TestLab$'
lab_lio_pr_state
lab_summary
