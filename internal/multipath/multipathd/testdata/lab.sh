# Lab command file for package multipathd (run from the repository root):
#   CGO_ENABLED=0 go test -c -tags lab -o /tmp/multipathd-lab/multipathd.test ./multipathd
#   flock /tmp/prhelper-lab.lock test/lab/run.sh -c 1 -s /tmp/multipathd-lab internal/multipath/multipathd/testdata/lab.sh
# A dm-multipath map over two nexuses of one LIO LU, multipathd 0.9.4 with
# "reservation_key file" (setprkey is refused otherwise), then TestLab against
# the real daemon over its abstract socket.
lab_mpath_setup
sed -i 's/^defaults {$/defaults {\n\treservation_key file/' /etc/multipath.conf
lab_expect 0 grep -q 'reservation_key file' /etc/multipath.conf
lab_expect 0 multipathd reconfigure
lab_wait 60 sh -c 'multipathd show daemon | grep -q idle'
lab_expect 0 multipathd show paths raw format '%d|%D|%t|%T|%o|%m'
lab_expect 1 test -e /run/multipathd.socket
export MULTIPATHD_LAB_MAP=mpatha
lab_expect 0 /lab/src/multipathd.test -test.v -test.run '^TestLab$'
lab_summary
