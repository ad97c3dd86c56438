# /lab/lib.sh - helpers for storage-lab command files (busybox ash).
# Sourced by /init before the command file. Everything here runs as root in
# the lab VM; nothing here touches the host.

LAB_CFS=/sys/kernel/config/target
LAB_DISKS=${LAB_DISKS:-/tmp/lab-disks}

lab_log() { echo "[lab] $*"; }
lab_die() { echo "[lab] FATAL: $*" >&2; exit 1; }
lab_uptime() { cut -d' ' -f1 /proc/uptime; }

# lab_run CMD... : echo the command (like set -x, but only for this one) and run it
lab_run() { echo "# $*"; "$@"; _rc=$?; echo "# -> exit $_rc"; return $_rc; }

# lab_expect RC CMD... : run CMD, fail the test unless its exit status is RC
lab_expect() {
	_want=$1; shift
	echo "# $*"
	"$@"; _rc=$?
	if [ "$_rc" != "$_want" ]; then
		echo "[lab] FAIL: expected exit $_want, got $_rc: $*"
		LAB_FAILS=$(( ${LAB_FAILS:-0} + 1 ))
	else
		echo "# -> exit $_rc (expected)"
	fi
	LAB_CHECKS=$(( ${LAB_CHECKS:-0} + 1 ))
	return 0
}

# lab_summary : print "N passed, N failed" and return non-zero on failures
lab_summary() {
	_c=${LAB_CHECKS:-0}; _f=${LAB_FAILS:-0}
	echo "$((_c - _f)) passed, $_f failed"
	[ "$_f" = 0 ]
}

# lab_wait SECONDS CMD... : poll CMD every 0.1 s until it succeeds
lab_wait() {
	_t=$(( $1 * 10 )); shift
	while ! "$@" >/dev/null 2>&1; do
		_t=$((_t - 1)); [ $_t -le 0 ] && return 1
		usleep 100000
	done
}

lab_modules_target() {
	for _m in target_core_mod target_core_file target_core_iblock tcm_loop sd_mod sg; do
		modprobe $_m || lab_die "modprobe $_m"
	done
	[ -d $LAB_CFS/core ] || lab_die "no $LAB_CFS/core (configfs not mounted?)"
}

# lab_lio_backstore NAME [SIZE_MB] [KIND] : create and enable a LIO backstore
#   KIND: fileio (default, sparse file in $LAB_DISKS on tmpfs),
#         fileio:/path/file (file elsewhere, e.g. on the 9p share),
#         rd (rd_mcp ramdisk), block:/dev/xxx (iblock on a block device)
#   sets LAB_BS to the backstore's configfs directory
lab_lio_backstore() {
	_name=$1; _mb=${2:-64}; _kind=${3:-fileio}
	lab_modules_target
	case $_kind in
	fileio|fileio:*)
		_f=${_kind#fileio:}; [ "$_f" = fileio ] && _f=$LAB_DISKS/$_name.img
		mkdir -p "$(dirname "$_f")"
		[ -f "$_f" ] || truncate -s ${_mb}M "$_f" || lab_die "truncate $_f"
		LAB_BS=$LAB_CFS/core/fileio_0/$_name
		mkdir -p $LAB_BS || lab_die "mkdir $LAB_BS"
		echo "fd_dev_name=$_f,fd_dev_size=$((_mb * 1048576))" > $LAB_BS/control ;;
	rd)
		LAB_BS=$LAB_CFS/core/rd_mcp_0/$_name
		mkdir -p $LAB_BS || lab_die "mkdir $LAB_BS"
		echo "rd_pages=$((_mb * 256))" > $LAB_BS/control ;;
	block:*)
		LAB_BS=$LAB_CFS/core/iblock_0/$_name
		mkdir -p $LAB_BS || lab_die "mkdir $LAB_BS"
		echo "udev_path=${_kind#block:}" > $LAB_BS/control ;;
	*) lab_die "unknown backstore kind $_kind" ;;
	esac
	echo "lab-$_name" > $LAB_BS/wwn/vpd_unit_serial 2>/dev/null
	echo 1 > $LAB_BS/enable || lab_die "enable $LAB_BS"
	lab_log "backstore $LAB_BS ($_kind, ${_mb} MiB, serial $(sed -n 's/.*: *//p' $LAB_BS/wwn/vpd_unit_serial))"
}

# lab_lio_path N BACKSTORE_DIR [LUN] [I] : export the backstore through tcm_loop
#   target naa.5001405a0000000N with its own initiator port naa.5001405b0000000I
#   (I defaults to N; one I_T nexus per call). Sets LAB_DEV (/dev/sdX), LAB_SG
#   (/dev/sgN), LAB_HCTL, LAB_TPG.
lab_lio_path() {
	_n=$1; _bs=$2; _lun=${3:-0}
	_tw=$(printf 'naa.5001405a%08x' "$_n")
	_iw=$(printf 'naa.5001405b%08x' "${4:-$_n}")
	LAB_TPG=$LAB_CFS/loopback/$_tw/tpgt_1
	mkdir -p $LAB_TPG/lun/lun_$_lun || lab_die "mkdir $LAB_TPG"
	[ -n "$(cat $LAB_TPG/nexus 2>/dev/null)" ] || echo "$_iw" > $LAB_TPG/nexus || lab_die "nexus $_iw"
	ln -s "$_bs" $LAB_TPG/lun/lun_$_lun/$(basename "$_bs") || lab_die "lun link"
	_addr=$(cat $LAB_TPG/address)
	LAB_HCTL=$_addr:$_lun
	_sd=/sys/class/scsi_device/$LAB_HCTL/device
	lab_wait 20 ls $_sd/block/ || lab_die "no block device for $LAB_HCTL"
	LAB_DEV=/dev/$(ls $_sd/block/ | head -n1)
	LAB_SG=/dev/$(ls $_sd/scsi_generic/ | head -n1)
	lab_wait 10 test -b $LAB_DEV || lab_die "$LAB_DEV not created"
	lab_log "path $_n: target $_tw <- initiator $_iw, hctl $LAB_HCTL, $LAB_DEV $LAB_SG"
}

# lab_lio_setup NPATHS [SIZE_MB] [KIND] : one backstore "disk0" exported via
#   NPATHS tcm_loop targets (NPATHS I_T nexuses to the same LU).
#   Sets LAB_BS, LAB_DEV1..N, LAB_SG1..N, LAB_NPATHS.
lab_lio_setup() {
	_np=${1:-1}
	lab_lio_backstore disk0 "${2:-64}" "${3:-fileio}"
	_bs0=$LAB_BS
	_i=1
	while [ $_i -le $_np ]; do
		lab_lio_path $_i $_bs0
		eval "LAB_DEV$_i=$LAB_DEV LAB_SG$_i=$LAB_SG"
		_i=$((_i + 1))
	done
	LAB_BS=$_bs0
	LAB_NPATHS=$_np
}

# lab_lio_pr_state : LIO's own view of the PR state of $LAB_BS
lab_lio_pr_state() {
	for _f in res_pr_generation res_pr_registered_i_pts res_pr_holder_tg_port res_holder res_pr_type res_type res_aptpl_active; do
		[ -f $LAB_BS/pr/$_f ] && { echo "-- pr/$_f:"; cat $LAB_BS/pr/$_f; }
	done
}

# lab_udev_start : start systemd-udevd and coldplug (multipath likes udev)
lab_udev_start() {
	/usr/lib/systemd/systemd-udevd --daemon --resolve-names=never || return 1
	udevadm trigger --action=add --type=subsystems
	udevadm trigger --action=add --type=devices
	udevadm settle -t 60
}

# lab_multipath_start : load dm-multipath and start multipathd in the background
lab_multipath_start() {
	for _m in dm_mod dm_multipath dm_round_robin dm_service_time dm_queue_length scsi_dh_alua; do
		modprobe $_m || lab_die "modprobe $_m"
	done
	mkdir -p /etc/multipath
	multipathd -s || lab_die "multipathd did not start"
	lab_wait 60 multipathd show daemon || lab_die "multipathd not answering"
	lab_wait 60 sh -c 'multipathd show daemon | grep -q idle'
}

# ---------------------------------------------------------------- project additions

# lab_ok DESC CMD... : assertion with a description: CMD must exit 0
lab_ok() {
	_d=$1; shift
	echo "# check: $_d"
	if "$@"; then
		echo "# -> ok"
	else
		echo "[lab] FAIL: $_d ($*)"
		LAB_FAILS=$(( ${LAB_FAILS:-0} + 1 ))
	fi
	LAB_CHECKS=$(( ${LAB_CHECKS:-0} + 1 ))
	return 0
}

# lab_expect_out RC REGEX CMD... : like lab_expect, and the command's output
#   (stdout+stderr, printed) must match the extended REGEX (grep -E); the output
#   is kept in $LAB_OUT for further checks
lab_expect_out() {
	_want=$1 _re=$2; shift 2
	echo "# $*"
	LAB_OUT=$("$@" 2>&1); _rc=$?
	[ -n "$LAB_OUT" ] && printf '%s\n' "$LAB_OUT"
	_bad=""
	[ "$_rc" = "$_want" ] || _bad="expected exit $_want, got $_rc"
	printf '%s\n' "$LAB_OUT" | grep -Eq -- "$_re" || _bad="${_bad:+$_bad; }output does not match /$_re/"
	if [ -n "$_bad" ]; then
		echo "[lab] FAIL: $_bad: $*"
		LAB_FAILS=$(( ${LAB_FAILS:-0} + 1 ))
	else
		echo "# -> exit $_rc, output matches /$_re/ (expected)"
	fi
	LAB_CHECKS=$(( ${LAB_CHECKS:-0} + 1 ))
	return 0
}

# lab_lio_setup_2lu : two identical LUs (backstores disk0, disk1), each exported
#   through two tcm_loop nexuses: disk0 via paths 1,2 -> $LAB_DEV1/$LAB_DEV2,
#   disk1 via paths 3,4 -> $LAB_DEV3/$LAB_DEV4 (and $LAB_SGn). $LAB_BS1/$LAB_BS2
#   are the backstores' configfs directories. Paths 3,4 use the initiator port
#   names of paths 1,2, so that both LUs see the same initiators (same
#   TransportIDs in READ FULL STATUS, same SPEC_I_PT/REGISTER AND MOVE targets).
lab_lio_setup_2lu() {
	_mb=${1:-64}
	lab_lio_backstore disk0 "$_mb"; LAB_BS1=$LAB_BS
	lab_lio_backstore disk1 "$_mb"; LAB_BS2=$LAB_BS
	lab_lio_path 1 $LAB_BS1; LAB_DEV1=$LAB_DEV LAB_SG1=$LAB_SG
	lab_lio_path 2 $LAB_BS1; LAB_DEV2=$LAB_DEV LAB_SG2=$LAB_SG
	lab_lio_path 3 $LAB_BS2 0 1; LAB_DEV3=$LAB_DEV LAB_SG3=$LAB_SG
	lab_lio_path 4 $LAB_BS2 0 2; LAB_DEV4=$LAB_DEV LAB_SG4=$LAB_SG
	LAB_BS=$LAB_BS1
}

# lab_need_bin NAME... : fail hard unless /lab/bin (the Go binaries) has NAME
lab_need_bin() {
	for _b in "$@"; do
		[ -x /lab/bin/$_b ] || lab_die "/lab/bin/$_b missing (run check.sh, which builds build/gobin)"
	done
}

# lab_helper_start KIND SOCKET [ARGS...] : start prhelper or qemu-pr-helper in
#   the background on SOCKET (log in /tmp/<socket basename>.log), wait for the
#   socket; sets LAB_HELPER_PID
lab_helper_start() {
	_k=$1 _s=$2; shift 2
	rm -f "$_s"
	case $_k in
	prhelper) /lab/bin/prhelper -k "$_s" "$@" >> /tmp/$(basename "$_s").log 2>&1 & ;;
	qemu-pr-helper) qemu-pr-helper -k "$_s" "$@" >> /tmp/$(basename "$_s").log 2>&1 & ;;
	*) lab_die "unknown helper $_k" ;;
	esac
	LAB_HELPER_PID=$!
	lab_wait 30 test -S "$_s" || { cat /tmp/$(basename "$_s").log; lab_die "$_k did not create $_s"; }
	lab_log "$_k pid $LAB_HELPER_PID listening on $_s"
}

# lab_helper_stop PID [SOCKET] : SIGTERM, wait for the exit (10 s), returns its status
lab_helper_stop() {
	_p=$1
	kill -TERM "$_p" 2>/dev/null
	_t=100
	while kill -0 "$_p" 2>/dev/null && [ $_t -gt 0 ]; do usleep 100000; _t=$((_t - 1)); done
	if kill -0 "$_p" 2>/dev/null; then
		lab_log "pid $_p still alive 10 s after SIGTERM: SIGKILL"; kill -KILL "$_p"; wait "$_p" 2>/dev/null
		return 137
	fi
	wait "$_p" 2>/dev/null
}

# lab_out_has REGEX [DESC] / lab_out_lacks REGEX [DESC] : assertions on $LAB_OUT
#   (the output of the last lab_expect_out)
lab_out_has() { lab_ok "${2:-output has /$1/}" sh -c 'printf "%s\n" "$1" | grep -Eq -- "$2"' _ "$LAB_OUT" "$1"; }
lab_out_lacks() { lab_ok "${2:-output lacks /$1/}" sh -c '! printf "%s\n" "$1" | grep -Eq -- "$2"' _ "$LAB_OUT" "$1"; }

# lab_fd_count PID : number of open fds of PID
lab_fd_count() { ls /proc/$1/fd 2>/dev/null | wc -l; }

# lab_status_field FILE FIELD : the value of FIELD in /proc/.../status, tabs -> spaces
lab_status_field() { sed -n "s/^$2:[[:space:]]*//p" "$1" | tr '\t' ' ' | sed 's/  */ /g'; }

# lab_mpath_setup [DEFAULTS_LINE] : one LIO LU reached by a dm-multipath map
#   over two tcm_loop nexuses (/dev/mapper/mpatha) plus a third nexus kept out
#   of the map, which plays another host. DEFAULTS_LINE goes into multipath.conf's
#   defaults section (e.g. "reservation_key file"). Sets LAB_MPATH and LAB_OTHER
#   (the third path's sd).
lab_mpath_setup() {
	cat > /etc/multipath.conf <<CONF
defaults {
	user_friendly_names yes
	find_multipaths greedy
	polling_interval 2
	${1:-}
}
blacklist {
	devnode "^(vd|nvme|loop|ram|zram|sr)"
	devnode "^sdc\$"
}
CONF
	lab_udev_start
	lab_lio_setup 2 64
	udevadm settle -t 30
	lab_multipath_start
	lab_wait 30 sh -c 'multipath -ll | grep -q "active ready"' || lab_die "no multipath map"
	lab_lio_path 3 $LAB_BS; LAB_OTHER=$LAB_DEV
	udevadm settle -t 30
	LAB_MPATH=/dev/mapper/mpatha
}

# lab_inner_qemu TAG IODIR SOCKET DISK [QEMU ARGS...] : runs an inner QEMU (the
#   nested image) in the foreground until it powers off or INNER_TIMEOUT: IODIR
#   is its /lab/io (cmd.sh in, out/ back), /lab/bin is shared, DISK is a
#   scsi-block disk whose PR commands go to the pr-manager-helper at SOCKET.
#   Console to /tmp/inner-TAG.console, QEMU's output to /tmp/inner-TAG.qemu.
#   LAB_INNER_MEM (384), LAB_INNER_DRIVE (extra -drive options, e.g.
#   ",file.locking=off") and LAB_INNER_DEVICE (extra scsi-block options) adjust it.
lab_inner_qemu() {
	_tag=$1 _io=$2 _sock=$3 _disk=$4; shift 4
	timeout -s KILL ${INNER_TIMEOUT:-420} qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
		-machine pc -accel tcg,tb-size=64 -m ${LAB_INNER_MEM:-384} "$@" \
		-kernel /lab/src/vmlinux -initrd /lab/src/initramfs.cpio \
		-append "console=ttyS0 quiet loglevel=4 panic=-1 lab.timeout=$((${INNER_TIMEOUT:-420} - 30))" \
		-virtfs local,path=$_io,mount_tag=labio,security_model=none,id=labio \
		-virtfs local,path=/lab/bin,mount_tag=labbin,security_model=none,readonly=on,id=labbin \
		-object pr-manager-helper,id=pr0,path=$_sock \
		-device virtio-scsi-pci,id=scsi0 \
		-drive if=none,id=d0,file=$_disk,format=raw,cache=none${LAB_INNER_DRIVE:-},file.pr-manager=pr0 \
		-device scsi-block,drive=d0,bus=scsi0.0${LAB_INNER_DEVICE:-} \
		-serial file:/tmp/inner-$_tag.console < /dev/null > /tmp/inner-$_tag.qemu 2>&1
}

# ------------------------------------------- live migration of an inner guest
# QEMU refuses to migrate a guest that has a 9p share mounted, and forgets that
# once the guest has unmounted it (the share's root fid clunked). An inner guest
# that is to be migrated therefore leaves its shares first and mounts them again
# on the destination; the outer host tells it when through a second serial port
# (lab_inner_qemu_migratable).

# lab_io_detach_exec FILE : continue the command with FILE (a file on /lab/io,
#   sourced after /lab/lib.sh) with the 9p shares /lab/io and /lab/bin unmounted:
#   FILE is copied to /tmp, this shell is replaced (the command file it sources
#   from /lab/io is then closed), output goes to the console only, /init's tee
#   to guest.log ($LAB_TEE) is stopped, and the shares are unmounted; then
#   "LAB: 9p shares unmounted" is printed on the console. LAB_CHECKS and
#   LAB_FAILS carry over. FILE must not use /lab/io or /lab/bin before
#   lab_io_attach.
lab_io_detach_exec() {
	cp "$1" /tmp/lab-continue.sh || lab_die "lab_io_detach_exec: cannot copy $1"
	export LAB_CHECKS LAB_FAILS LAB_TEE
	cd /
	exec sh -c '. /lab/lib.sh; lab_io_detach; . /tmp/lab-continue.sh' > /dev/console 2>&1 < /dev/null
}

# lab_io_detach : (see lab_io_detach_exec) stop the tee, unmount /lab/io and /lab/bin
lab_io_detach() {
	if [ -n "${LAB_TEE:-}" ]; then
		usleep 300000 # let the tee copy what is still in its fifo
		kill "$LAB_TEE" 2>/dev/null
		_t=50
		while kill -0 "$LAB_TEE" 2>/dev/null && [ $_t -gt 0 ]; do usleep 100000; _t=$((_t - 1)); done
	fi
	for _m in /lab/io /lab/bin; do
		grep -q " $_m 9p " /proc/mounts || continue
		umount $_m || lab_die "lab_io_detach: cannot unmount $_m: $(ls -l /proc/[0-9]*/cwd /proc/[0-9]*/fd 2>/dev/null | grep " $_m" | head -n 5)"
	done
	echo "LAB: 9p shares unmounted at $(lab_uptime)s (the guest can be migrated)"
}

# lab_io_attach : mount /lab/io and /lab/bin again (after a migration); the
#   command's output stays on the console
lab_io_attach() {
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 labio /lab/io || lab_die "lab_io_attach: mount labio"
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro labbin /lab/bin || lab_die "lab_io_attach: mount labbin"
	cd /lab/io/out
	echo "LAB: 9p shares mounted again at $(lab_uptime)s"
}

# lab_ctl_wait WORD : wait for the line WORD on the second serial port
#   (/dev/ttyS1, kept open meanwhile; the outer host writes it with
#   lab_inner_ctl once the guest has printed "LAB: waiting for 'WORD' on ttyS1")
lab_ctl_wait() {
	exec 7< /dev/ttyS1 || lab_die "lab_ctl_wait: cannot open /dev/ttyS1"
	stty -F /dev/ttyS1 -echo
	echo "LAB: waiting for '$1' on ttyS1 at $(lab_uptime)s"
	while read -r _l <&7; do
		_l=$(printf '%s' "$_l" | tr -d '\r')
		[ "$_l" = "$1" ] && { exec 7<&-; echo "LAB: got '$1' on ttyS1 at $(lab_uptime)s"; return 0; }
		echo "LAB: ttyS1: ignoring '$_l' (waiting for '$1')"
	done
	lab_die "lab_ctl_wait: /dev/ttyS1 closed"
}

# lab_inner_mig_args TAG : QEMU arguments (to add to lab_inner_qemu's) that make
#   inner guest TAG controllable for a live migration: an HMP monitor on the fifos
#   /tmp/inner-TAG.mon.in/.out (lab_inner_hmp; replies collected in
#   /tmp/inner-TAG.mon.log) and a second serial port, ttyS1 in the guest, on
#   /tmp/inner-TAG.ctl.in/.out (lab_inner_ctl, lab_ctl_wait). Creates the fifos;
#   prints the arguments. The source and the destination of a migration each get
#   their own TAG: the devices match, the fifos differ.
lab_inner_mig_args() {
	for _f in mon.in mon.out ctl.in ctl.out; do rm -f /tmp/inner-$1.$_f; mkfifo /tmp/inner-$1.$_f; done
	: > /tmp/inner-$1.mon.log
	cat /tmp/inner-$1.mon.out >> /tmp/inner-$1.mon.log 2>/dev/null &
	cat /tmp/inner-$1.ctl.out > /dev/null 2>&1 &
	echo "-monitor pipe:/tmp/inner-$1.mon -chardev pipe,id=ctl,path=/tmp/inner-$1.ctl -device isa-serial,chardev=ctl,index=1"
}

# lab_inner_hmp TAG COMMAND... : one HMP command to inner QEMU TAG (replies in
#   /tmp/inner-TAG.mon.log)
lab_inner_hmp() { _tag=$1; shift; echo "$*" > /tmp/inner-$_tag.mon.in; }

# lab_inner_ctl TAG WORD : write the line WORD to inner guest TAG's ttyS1
lab_inner_ctl() { printf '%s\n' "$2" > /tmp/inner-$1.ctl.in; }

# lab_inner_migrate TAG URI [SECONDS] : live-migrate inner guest TAG to the QEMU
#   started with -incoming URI (both with lab_inner_mig_args), without bandwidth
#   limit; waits until "info migrate" says completed (its report is printed and
#   kept in /tmp/inner-TAG.migrate), then quits the source, which is paused
#   after a migration. Non-zero when the migration failed or took longer than
#   SECONDS (default 300).
lab_inner_migrate() {
	_tag=$1 _uri=$2 _t=$(( ${3:-300} * 2 ))
	lab_inner_hmp $_tag "migrate_set_parameter max-bandwidth 1G"
	lab_inner_hmp $_tag "migrate -d $_uri"
	echo "== migrate $_tag to $_uri at $(lab_uptime)s"
	_st=""
	while [ $_t -gt 0 ]; do
		usleep 500000; _t=$((_t - 1))
		lab_inner_hmp $_tag "info migrate"
		usleep 200000
		_st=$(grep -a 'Migration status:' /tmp/inner-$_tag.mon.log | tail -n1 | tr -d '\r' | sed 's/.*Migration status: *//')
		case $_st in completed|failed|cancelled) break ;; esac
	done
	usleep 300000
	tr -d '\r' < /tmp/inner-$_tag.mon.log | awk '/Migration status:/ { b = "" } { b = b $0 "\n" } END { printf "%s", b }' |
		grep -v '^(qemu)' > /tmp/inner-$_tag.migrate
	sed "s/^/[$_tag monitor] /" /tmp/inner-$_tag.migrate
	echo "== migrate $_tag: $_st at $(lab_uptime)s"
	[ "$_st" = completed ] || return 1
	lab_inner_hmp $_tag quit
}

# ------------------------------------------------ etcd and hosts on one lab VM
# lab_etcd_start [N] : an N-member etcd cluster (default 3) on loopback from
#   /lab/bin/etcd (the server the Go tests run, gobuild.sh), each member with its
#   own data directory /tmp/etcd/eI and log /tmp/etcd/eI.log, client URL
#   http://127.0.0.1:(2369+10I), peer URL http://127.0.0.1:(2370+10I). Heartbeat
#   250 ms, election timeout 2.5 s: under TCG the VM's CPUs are shared with the
#   inner guests. Waits until every member reports itself healthy (has a leader).
#   Sets LAB_ETCD_ENDPOINTS (comma-separated) and LAB_ETCD_PIDS.
lab_etcd_start() {
	_n=${1:-3}
	lab_need_bin etcd
	_cl="" _eps="" LAB_ETCD_PIDS=""
	_i=1; while [ $_i -le $_n ]; do
		_cl="$_cl${_cl:+,}e$_i=http://127.0.0.1:$((2370 + 10 * _i))"
		_eps="$_eps${_eps:+,}http://127.0.0.1:$((2369 + 10 * _i))"
		_i=$((_i + 1))
	done
	mkdir -p /tmp/etcd
	_i=1; while [ $_i -le $_n ]; do
		/lab/bin/etcd --name e$_i --data-dir /tmp/etcd/e$_i \
			--listen-client-urls http://127.0.0.1:$((2369 + 10 * _i)) --advertise-client-urls http://127.0.0.1:$((2369 + 10 * _i)) \
			--listen-peer-urls http://127.0.0.1:$((2370 + 10 * _i)) --initial-advertise-peer-urls http://127.0.0.1:$((2370 + 10 * _i)) \
			--initial-cluster "$_cl" --initial-cluster-state new --initial-cluster-token prhelper-lab \
			--heartbeat-interval 250 --election-timeout 2500 --log-level warn > /tmp/etcd/e$_i.log 2>&1 &
		LAB_ETCD_PIDS="$LAB_ETCD_PIDS $!"
		_i=$((_i + 1))
	done
	LAB_ETCD_ENDPOINTS=$_eps
	for _e in $(echo "$_eps" | tr , ' '); do
		lab_wait 90 sh -c "wget -q -O- $_e/health | grep -q '\"health\":\"true\"'" ||
			{ tail -n 20 /tmp/etcd/e*.log; lab_die "etcd member $_e not healthy"; }
	done
	lab_log "etcd: $_n members (pids$LAB_ETCD_PIDS) on $LAB_ETCD_ENDPOINTS, $(/lab/bin/etcd --version | head -n1)"
}

# lab_etcd_v3 PATH JSON : a request to etcd's JSON gateway (POST /v3/PATH) on
#   the first endpoint; prints the reply
lab_etcd_v3() { wget -q -O- --post-data="$2" "${LAB_ETCD_ENDPOINTS%%,*}/v3/$1"; }

# lab_etcd_keys [PREFIX] : "KEY mod_revision=R version=V" for every key under
#   PREFIX (default /prhelper/; it ends in /, as prhelper's do), from a range
#   read (values not shown)
lab_etcd_keys() {
	_p=${1:-/prhelper/}
	_end=${_p%/}0 # the first key after every key starting with PREFIX ('0' follows '/')
	lab_etcd_v3 kv/range "{\"key\":\"$(printf '%s' "$_p" | base64)\",\"range_end\":\"$(printf '%s' "$_end" | base64)\",\"keys_only\":true}" |
		tr '{}' '\n\n' | grep '"key"' | while read -r _kv; do
			_k=$(echo "$_kv" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p' | base64 -d)
			echo "$_k mod_revision=$(echo "$_kv" | sed -n 's/.*"mod_revision":"\([0-9]*\)".*/\1/p') version=$(echo "$_kv" | sed -n 's/.*"version":"\([0-9]*\)".*/\1/p')"
		done
}

# lab_etcd_stop : SIGTERM every member, wait for them
lab_etcd_stop() {
	for _p in $LAB_ETCD_PIDS; do kill -TERM $_p 2>/dev/null; done
	for _p in $LAB_ETCD_PIDS; do wait $_p 2>/dev/null; done
}

# lab_host_helper HOST SOCKET [ARGS...] : prhelper as host HOST of a cluster whose
#   hosts share the etcd store at $LAB_ETCD_ENDPOINTS (or LAB_HOST_ENDPOINTS, e.g.
#   through a proxy the test controls): in its own UTS and mount namespaces with
#   host name HOST and its own /etc/machine-id (md5 of HOST), --backend=emulate
#   --initiator=peer on SOCKET (each QEMU an initiator named after its -uuid,
#   the same on every host), plus /run/HOST-admin.sock with the fixed initiator
#   iqn.2025-01.lab:HOST-admin for the lab host's own PR IN (prpersist). Every
#   host uses the same relative target port (1), as one target seen from every
#   host: a VM that moves keeps its I_T nexus. ARGS go to prhelper (e.g.
#   --fence=kill). Log in /tmp/<socket basename>.log; sets LAB_HELPER_PID.
lab_host_helper() {
	_h=$1 _s=$2; shift 2
	[ -n "${LAB_HOST_ENDPOINTS:-$LAB_ETCD_ENDPOINTS}" ] || lab_die "lab_host_helper: no etcd (lab_etcd_start)"
	mkdir -p /tmp/hosts/$_h
	printf '%s' "$_h" | md5sum | cut -c1-32 > /tmp/hosts/$_h/machine-id
	[ -e /etc/machine-id ] || : > /etc/machine-id
	rm -f "$_s" /run/$_h-admin.sock
	unshare -u -m --propagation private sh -c '
		h=$1; shift
		hostname "$h" && mount --bind /tmp/hosts/$h/machine-id /etc/machine-id || exit 1
		echo "host $(hostname), machine-id $(cat /etc/machine-id), pid $$"
		exec /lab/bin/prhelper "$@"' _ "$_h" -k "$_s" --backend=emulate --initiator=peer \
		--etcd-endpoints="${LAB_HOST_ENDPOINTS:-$LAB_ETCD_ENDPOINTS}" \
		--listen=/run/$_h-admin.sock,initiator=name:iqn.2025-01.lab:$_h-admin "$@" \
		>> /tmp/$(basename "$_s").log 2>&1 &
	LAB_HELPER_PID=$!
	lab_wait 60 test -S "$_s" || { cat /tmp/$(basename "$_s").log; lab_die "prhelper of $_h did not create $_s"; }
	lab_log "host $_h: prhelper pid $LAB_HELPER_PID on $_s and /run/$_h-admin.sock, etcd ${LAB_HOST_ENDPOINTS:-$LAB_ETCD_ENDPOINTS}"
}
