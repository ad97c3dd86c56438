# prhelper --backend=linuxpr on an NVMe namespace shared by two hosts: a kernel
# NVMe target (nvmet, reservations need Linux 6.13+: namespace attribute
# resv_enable) with one file-backed namespace, reached over nvme-loop by two
# host NQNs with distinct host IDs. nvme_core is loaded with multipath=N, so each
# controller gets its own block device: $A (host A) and $B (host B) are the same
# namespace seen by two hosts. REGISTER from both, RESERVE by A, a conflicting
# RESERVE by B, PREEMPT by B, CLEAR, through prpersist -> prhelper; after each
# step the PR state prhelper reports (READ KEYS + READ RESERVATION, through both
# hosts) must equal both the expected state and what `nvme resv-report` says.
# The raw Reservation Report bytes of each state are printed (od) for the
# backend's test seeds.
#
# Argument: the PR IN path prhelper must take on this kernel: "report" (no
# IOC_PR_READ_*, Linux < 6.19: NVMe Reservation Report through
# NVME_IOCTL_IO_CMD) or "ioctl" (IOC_PR_READ_KEYS/IOC_PR_READ_RESERVATION).
WANT_PATH=${1:-}
case $WANT_PATH in report|ioctl) ;; *) lab_die "usage: linuxpr-nvme.sh report|ioctl" ;; esac
lab_need_bin prhelper prpersist
command -v nvme >/dev/null || lab_die "no nvme-cli in the image (build.sh LAB_NVME=1)"
lab_log "kernel $(uname -r), expected PR IN path: $WANT_PATH"

NQN=nqn.2014-08.org.prhelper:lab-nvme
HOSTID_A=0000000a-0000-4000-8000-00000000000a
HOSTID_B=0000000b-0000-4000-8000-00000000000b
modprobe nvme_core multipath=N || lab_die "modprobe nvme_core multipath=N"
for m in nvme_fabrics nvmet nvme_loop; do modprobe $m || lab_die "modprobe $m"; done
lab_ok "nvme_core.multipath is N" [ "$(cat /sys/module/nvme_core/parameters/multipath)" = N ]

CFS=/sys/kernel/config/nvmet
SUB=$CFS/subsystems/$NQN
NS=$SUB/namespaces/1
mkdir $SUB || lab_die "mkdir $SUB (nvmet configfs)"
echo 1 > $SUB/attr_allow_any_host
mkdir $NS || lab_die "mkdir $NS"
truncate -s 64M /tmp/nvme-ns1.img
printf '%s' /tmp/nvme-ns1.img > $NS/device_path || lab_die "device_path"
echo 1 > $NS/buffered_io # tmpfs file
[ -f $NS/resv_enable ] || lab_die "nvmet of $(uname -r) has no resv_enable (reservations need 6.13+)"
echo 1 > $NS/resv_enable || lab_die "resv_enable"
echo 1 > $NS/enable || lab_die "enable namespace"
mkdir $CFS/ports/1 && echo loop > $CFS/ports/1/addr_trtype || lab_die "loop port"
ln -s $SUB $CFS/ports/1/subsystems/$NQN || lab_die "port link"
lab_log "nvmet: $NQN, namespace 1 = /tmp/nvme-ns1.img, resv_enable=$(cat $NS/resv_enable)"

# nvme_connect HOSTID : connect over nvme-loop as host nqn...:uuid:HOSTID with
#   host ID HOSTID (one write to /dev/nvme-fabrics, as nvme-cli does); prints
#   the controller's block device once it exists
nvme_connect() {
	exec 3<>/dev/nvme-fabrics || return 1
	printf 'transport=loop,nqn=%s,hostnqn=nqn.2014-08.org.nvmexpress:uuid:%s,hostid=%s' "$NQN" "$1" "$1" >&3 ||
		{ exec 3>&-; return 1; }
	read -r _line <&3
	exec 3>&-
	_inst=$(echo "$_line" | sed -n 's/^instance=\([0-9]*\),.*/\1/p')
	[ -n "$_inst" ] || return 1
	lab_wait 20 sh -c "ls -d /sys/class/nvme/nvme$_inst/nvme${_inst}n* && test -b /dev/nvme${_inst}n1" || return 1
	echo /dev/nvme${_inst}n1
}
A=$(nvme_connect $HOSTID_A) || lab_die "nvme-loop connect as host A"
B=$(nvme_connect $HOSTID_B) || lab_die "nvme-loop connect as host B"
for c in /sys/class/nvme/nvme*; do
	lab_log "$(basename $c): cntlid $(cat $c/cntlid), hostid $(cat $c/hostid), hostnqn $(cat $c/hostnqn)"
done
lab_log "host A: $A, host B: $B"
lab_ok "host A and host B have distinct namespace devices" [ "$A" != "$B" ]
lab_ok "both are the same namespace (wwid $(cat /sys/block/${A#/dev/}/wwid))" \
	[ "$(cat /sys/block/${A#/dev/}/wwid)" = "$(cat /sys/block/${B#/dev/}/wwid)" ]

S=/run/prh.sock
lab_helper_start prhelper $S --backend=linuxpr -v
PRH=$LAB_HELPER_PID
lab_expect_out 0 "backend:  linuxpr" /lab/bin/prhelper --backend=auto --explain $A
lab_out_has '^kind: +nvme$'
P="/lab/bin/prpersist --socket $S"

# rtype_of SCSI-TYPE : the NVMe reservation type of a SCSI one (block layer's
#   enum pr_type order: 1 WE, 3 EA, 5 WE-RO, 6 EA-RO, 7 WE-AR, 8 EA-AR)
rtype_of() { case $1 in 1) echo 1;; 3) echo 2;; 5) echo 3;; 6) echo 4;; 7) echo 5;; 8) echo 6;; *) echo "?$1";; esac; }

# prh_state DEV : "gen=G rtype=R keys=K1,K2 holder=K" from prpersist READ KEYS
#   and READ RESERVATION through prhelper (hex keys without 0x; rtype in NVMe
#   numbering); the JSON lines go to stderr
prh_state() {
	_k=$($P -k --json "$1" 2>&1); echo "# prpersist -k --json $1: $_k" >&2
	_r=$($P -r --json "$1" 2>&1); echo "# prpersist -r --json $1: $_r" >&2
	_gk=$(echo "$_k" | sed -n 's/.*"payload":{"generation":\([0-9]*\),.*/\1/p')
	_gr=$(echo "$_r" | sed -n 's/.*"payload":{"generation":\([0-9]*\),.*/\1/p')
	_keys=$(echo "$_k" | sed -n 's/.*"keys":\[\([^]]*\)\].*/\1/p' | tr -d '"' | sed 's/0x//g')
	_hold="" _t=0
	if echo "$_r" | grep -q '"held":true'; then
		_hold=$(echo "$_r" | sed -n 's/.*"key":"0x\([0-9a-f]*\)".*/\1/p')
		_t=$(rtype_of "$(echo "$_r" | sed -n 's/.*"type":\([0-9]*\),.*/\1/p')")
	fi
	[ "$_gk" = "$_gr" ] || _gk="$_gk/$_gr"
	echo "gen=$_gk rtype=$_t keys=$_keys holder=$_hold"
}
# nvme_state DEV : the same from nvme-cli's Reservation Report (EDS=1); the
#   report goes to stderr
nvme_state() {
	nvme resv-report "$1" --eds > /tmp/nvme-report.out 2>&1
	echo "# nvme resv-report $1 --eds" >&2; cat /tmp/nvme-report.out >&2
	awk '
		$1 == "gen" {g = $3} $1 == "rtype" {t = $3}
		$1 == "rcsts" {h = $3} $1 == "rkey" {k = k (k == "" ? "" : ",") $3; if (h == 1) hold = $3}
		END {printf "gen=%s rtype=%s keys=%s holder=%s\n", g, t, k, hold}' /tmp/nvme-report.out
}
# check_state DESC WANT : both hosts' view through prhelper and nvme-cli's view
#   must all be WANT; then the raw report bytes as the READ KEYS fallback asks
#   for them (EDS=1, NUMD=63: room for 3 registrants, prpersist's allocation
#   length of 32 bytes)
check_state() {
	echo "## state after $1"
	for d in $A $B; do
		_got=$(prh_state $d 2>/tmp/state.err); cat /tmp/state.err
		lab_ok "prhelper via $d: $2 (got: $_got)" [ "$_got" = "$2" ]
	done
	_got=$(nvme_state $A 2>/tmp/state.err); cat /tmp/state.err
	lab_ok "nvme resv-report: $2 (got: $_got)" [ "$_got" = "$2" ]
	echo "# nvme resv-report $A --eds --numd=63 -b | od -Ax -tx1"
	nvme resv-report $A --eds --numd=63 -b | od -Ax -tx1
}

check_state "setup" "gen=0 rtype=0 keys= holder="
lab_expect 0 $P --out --register --param-sark=0xabc $A
check_state "REGISTER 0xabc by A" "gen=1 rtype=0 keys=abc holder="
lab_expect 0 $P --out --register --param-sark=0xdef $B
check_state "REGISTER 0xdef by B" "gen=2 rtype=0 keys=abc,def holder="
lab_expect 0 $P --out --reserve --param-rk=0xabc --prout-type=5 $A
check_state "RESERVE (write exclusive, registrants only) by A" "gen=2 rtype=3 keys=abc,def holder=abc"
lab_expect_out 0 '"data":"00000002000000100000000000000abc0000000000050000"' $P -r --json $B
lab_expect 24 $P --out --reserve --param-rk=0xdef --prout-type=5 $B
check_state "conflicting RESERVE by B" "gen=2 rtype=3 keys=abc,def holder=abc"
lab_expect 0 $P --out --preempt --param-rk=0xdef --param-sark=0xabc --prout-type=5 $B
check_state "PREEMPT of 0xabc by B" "gen=3 rtype=3 keys=def holder=def"
lab_expect_out 0 '"data":"00000003000000080000000000000def"' $P -k --json $A
lab_expect 24 $P --out --reserve --param-rk=0xabc --prout-type=5 $A
lab_expect 0 $P --out --clear --param-rk=0xdef $B
check_state "CLEAR by B" "gen=4 rtype=0 keys= holder="
lab_expect_out 0 '"data":"0000000400000000"' $P -r --json $A

lab_helper_stop $PRH
echo "== prhelper log:"; cat /tmp/prh.sock.log
case $WANT_PATH in
report) lab_ok "PR IN took the NVMe Reservation Report fallback" grep -q 'kernel lacks IOC_PR_READ_KEYS' /tmp/prh.sock.log ;;
ioctl) lab_ok "PR IN took IOC_PR_READ_KEYS/IOC_PR_READ_RESERVATION" grep -q 'kernel has IOC_PR_READ_KEYS' /tmp/prh.sock.log ;;
esac
lab_ok "no request failed but the two expected conflicts" \
	[ "$(grep -c 'request failed' /tmp/prh.sock.log)" = 2 ]

if [ $WANT_PATH = ioctl ]; then
	# Linux >= 6.5 lets a writable descriptor do PR OUT without CAP_SYS_ADMIN,
	# and the read ioctls (6.19+) make PR IN need no SG_IO or NVMe passthrough:
	# prhelper can run with no capability at all (Linux 6.1 refuses that, see
	# linuxpr-unprivileged). QEMU (here prpersist, as root) opens the disk O_RDWR
	# and passes the descriptor; prhelper opens nothing itself.
	echo "== Linux $(uname -r): prhelper as nobody, without any capability"
	mkdir -p /tmp/unpriv && chown nobody:nogroup /tmp/unpriv
	S2=/tmp/unpriv/prh.sock LOG2=/tmp/unpriv.log
	su -s /bin/sh -c 'exec "$@"' -- nobody sh /lab/bin/prhelper -k $S2 --backend=linuxpr -v >> $LOG2 2>&1 &
	UPID=$!
	lab_wait 20 test -S $S2 || lab_die "the unprivileged prhelper did not start"
	grep -E '^(Uid|CapEff|CapPrm):' /proc/$UPID/status
	lab_ok "it runs as nobody" [ "$(lab_status_field /proc/$UPID/status Uid)" = "65534 65534 65534 65534" ]
	lab_ok "with no effective or permitted capability" sh -c "[ $(lab_status_field /proc/$UPID/status CapEff) = 0000000000000000 ] && [ $(lab_status_field /proc/$UPID/status CapPrm) = 0000000000000000 ]"
	P="/lab/bin/prpersist --socket $S2"
	lab_expect 0 $P --out --register --param-sark=0x123 $A
	lab_expect 0 $P --out --register --param-sark=0x456 $B
	lab_expect 0 $P --out --reserve --param-rk=0x123 --prout-type=5 $A
	check_state "REGISTER by A and B, RESERVE by A, through the unprivileged prhelper" "gen=6 rtype=3 keys=123,456 holder=123"
	lab_expect 24 $P --out --reserve --param-rk=0x456 --prout-type=5 $B
	lab_expect 0 $P --out --clear --param-rk=0x456 $B
	check_state "CLEAR by B through the unprivileged prhelper" "gen=7 rtype=0 keys= holder="
	kill $UPID; wait $UPID
	echo "== unprivileged prhelper log:"; cat $LOG2
	lab_ok "no request failed but the expected conflict" [ "$(grep -c 'request failed' $LOG2)" = 1 ]
fi
dmesg | grep -E 'nvme|nvmet' | sed 's/^/dmesg: /'
lab_summary
