# Lab command file for package dm (run from the repository root):
#   CGO_ENABLED=0 go test -c -tags lab -o /tmp/dm-lab/dm.test ./dm
#   flock /tmp/prhelper-lab.lock test/lab/run.sh -c 1 -s /tmp/dm-lab internal/kernel/dm/testdata/lab.sh
# A dm-multipath map over two I_T nexuses of one LIO LU plus a third nexus
# outside it; TestLab reads the map through /dev/mapper/control and compares
# with dmsetup (libdevmapper), then takes one path's SCSI device offline.
lab_mpath_setup
lab_expect 0 multipath -ll
lab_expect 0 dmsetup table mpatha
lab_expect 0 dmsetup status mpatha
export DM_LAB_MPATH=$LAB_MPATH DM_LAB_OTHER=$LAB_OTHER
export DM_LAB_DMSETUP_TABLE="$(dmsetup table mpatha)" DM_LAB_DMSETUP_STATUS="$(dmsetup status mpatha)"
lab_expect 0 /lab/src/dm.test -test.v -test.run 'TestLab$'
lab_summary
