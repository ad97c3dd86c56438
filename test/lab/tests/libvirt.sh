# (issue 13, item 5) libvirt for real: Debian's libvirtd 9.0 (QEMU driver) in
# the lab VM starts two inner guests whose scsi-block disks (device='lun') are
# LIO LUs, and each guest's sg_persist sequence goes through prhelper to LIO:
#   1. <reservations managed='yes'/> with pr_helper = "/lab/bin/prhelper" in
#      qemu.conf: libvirt starts one prhelper for the VM itself (-k on a socket
#      in the domain's directory) and stops it with the VM;
#   2. <reservations managed='no'> on /run/prh-sa.sock, where
#      systemd-socket-activate (systemd's own tool: one listening socket on
#      fd 3, LISTEN_FDS=1, the program started on the first connection) starts
#      prhelper when QEMU connects.
# After each guest, the outer host (a third initiator on path A) sees the unit
# attention of the guest's PREEMPT and the guest's key on path B's initiator.
# Needs the nested image with libvirt: build.sh with LAB_NESTED=1 LAB_LIBVIRT=1
# into another LAB_BUILD (check.sh does it with LAB_LIBVIRT_TEST=1), run.sh -n.
lab_need_bin prhelper prpersist
command -v libvirtd >/dev/null || lab_die "no libvirtd in this image (build.sh LAB_LIBVIRT=1)"
lab_lio_setup_2lu 64
INNER_TIMEOUT=${INNER_TIMEOUT:-600}

# ------------------------------------------------------------------ libvirtd
mkdir -p /etc/libvirt /var/lib/libvirt/qemu /var/cache/libvirt/qemu /var/log/libvirt/qemu /run/libvirt
# the QEMU driver looks its built-in user up before it reads qemu.conf
echo "libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin" >> /etc/passwd
echo "libvirt-qemu:x:64055:" >> /etc/group
cat > /etc/libvirt/qemu.conf <<'CONF'
# the lab VM has no cgroups, no SELinux/AppArmor, no qemu user, no virtlogd
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
# the helper libvirt starts for <reservations managed='yes'/>
pr_helper = "/lab/bin/prhelper"
CONF
cat > /etc/libvirt/libvirtd.conf <<'CONF'
log_outputs = "2:file:/tmp/libvirtd.log"
CONF
echo "== libvirtd $(libvirtd --version | awk '{print $NF}'), qemu.conf:"; grep -v '^#' /etc/libvirt/qemu.conf
# diag : what libvirt said, when something failed
diag() {
	echo "== libvirtd log (last 60 lines):"; tail -n 60 /tmp/libvirtd.log 2>/dev/null
	for f in /var/log/libvirt/qemu/*.log; do [ -f "$f" ] && { echo "== $f:"; tail -n 30 "$f"; }; done
}
libvirtd --daemon || lab_die "libvirtd did not start"
lab_ok "libvirtd serves its socket" lab_wait 60 test -S /run/libvirt/libvirt-sock || { diag; lab_die "no libvirtd"; }
V="virsh -c qemu:///system"
t0=$(lab_uptime)
lab_expect_out 0 'Running hypervisor: QEMU' $V version
echo "== virsh version (QEMU capabilities probed) took $(awk "BEGIN{print $(lab_uptime)-$t0}")s"

cat > /tmp/inner-cmd.sh <<'INNER'
modprobe virtio_scsi; modprobe sd_mod; modprobe sg
lab_wait 60 ls /sys/block/sda || lab_die "inner: no disk"
D=/dev/sda
echo "== inner guest (started by libvirt): the outer host registered 0xa1 and holds Write Exclusive"
lab_expect_out 0 '1 registered reservation key' sg_persist -n -i -k $D
lab_out_has '^ +0xa1$'
lab_expect 0 sg_persist -n --out --register --param-sark=0x5 $D
lab_expect 24 sg_persist -n --out --reserve --param-rk=0x5 --prout-type=1 $D
lab_expect_out 0 '2 registered reservation keys' sg_persist -n -i -k $D
lab_expect 0 sg_persist -n --out --preempt --param-rk=0x5 --param-sark=0xa1 --prout-type=1 $D
lab_expect_out 0 'Key=0x5' sg_persist -n -i -r $D
lab_out_has 'Write Exclusive'
lab_expect 0 sg_persist -n --out --release --param-rk=0x5 --prout-type=1 $D
lab_expect_out 0 'NO reservation' sg_persist -n -i -r $D
lab_summary
INNER

# domain_xml NAME UUID IODIR DISK RESERVATIONS-ELEMENT
domain_xml() {
	cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <uuid>$2</uuid>
  <memory unit='MiB'>384</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>/lab/src/vmlinux</kernel>
    <initrd>/lab/src/initramfs.cpio</initrd>
    <cmdline>console=ttyS0 quiet loglevel=4 panic=-1 lab.timeout=$((INNER_TIMEOUT - 60))</cmdline>
  </os>
  <features><acpi/><tcg><tb-cache unit='MiB'>64</tb-cache></tcg></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <disk type='block' device='lun'>
      <driver name='qemu' type='raw' cache='none'/>
      <source dev='$4'>
        $5
      </source>
      <target dev='sda' bus='scsi'/>
    </disk>
    <filesystem type='mount' accessmode='passthrough'>
      <source dir='$3'/>
      <target dir='labio'/>
    </filesystem>
    <filesystem type='mount' accessmode='passthrough'>
      <source dir='/lab/bin'/>
      <target dir='labbin'/>
      <readonly/>
    </filesystem>
    <serial type='file'><source path='/tmp/$1.console'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

# guest NAME UUID PATH-A PATH-B RESERVATIONS-ELEMENT : the outer host
#   registers 0xa1 and reserves on path A, libvirt starts the guest on path B,
#   the guest's sequence runs; then the outer view. Sets GUEST_PID (QEMU's).
guest() {
	name=$1 uuid=$2 da=$3 db=$4 resv=$5
	I=/tmp/io-$name
	rm -rf $I; mkdir -p $I/out; cp /tmp/inner-cmd.sh $I/cmd.sh
	echo "=================== $name: LU paths A=$da B=$db"
	lab_expect 0 sg_persist -n --out --register --param-sark=0xa1 $da
	lab_expect 0 sg_persist -n --out --reserve --param-rk=0xa1 --prout-type=1 $da
	domain_xml $name $uuid $I $db "$resv" > /tmp/$name.xml
	echo "== domain XML (disk):"; sed -n '/<disk/,/<\/disk>/p' /tmp/$name.xml
	lab_expect 0 $V create /tmp/$name.xml
	$V domstate $name 2>/dev/null | grep -q running || { diag; lab_summary; lab_die "libvirt did not start $name"; }
	GUEST_PID=$(cat /run/libvirt/qemu/$name.pid 2>/dev/null)
	echo "== libvirt started QEMU pid $GUEST_PID at $(lab_uptime)s:"
	tr '\0' ' ' < /proc/$GUEST_PID/cmdline | tr ' ' '\n' | grep -E 'pr-manager|scsi-block|host_device|blockdev' | sed 's/^/    /'
}

# guest_wait NAME : until the guest powers off (libvirt then destroys it)
guest_wait() {
	lab_ok "$1: the guest ran its sequence and powered off" lab_wait $INNER_TIMEOUT sh -c "! $V domstate $1 2>/dev/null | grep -q running"
	echo "== $1 ended at $(lab_uptime)s; its console:"
	tr -d '\r' < /tmp/$1.console | sed "s/^/[inner-$1] /"
	lab_ok "$1: the guest's sg_persist sequence passed (rc=$(cat /tmp/io-$1/rc 2>/dev/null))" test "$(cat /tmp/io-$1/rc 2>/dev/null)" = 0
	cp /tmp/io-$1/out/guest.log /lab/io/out/inner-$1.log 2>/dev/null
}

# outer_view PATH-A : after the guest: UA on path A, key 0x5 on path B's initiator
outer_view() {
	lab_expect 6 sg_persist -n -i -k $1
	lab_expect_out 0 'Key=0x5' sg_persist -n -i -s $1
	lab_out_lacks '0xa1' "the outer host's key is gone (the guest's PREEMPT reached LIO)"
}

# ------------------------------------------------ 1. managed='yes' (libvirt's)
guest lv-managed 6a1f0c52-0d2e-4d0e-9a53-000000000001 $LAB_DEV1 $LAB_DEV2 "<reservations managed='yes'/>"
# the helper libvirt started for this VM: prhelper, -k a socket of the domain
hp=""
for p in $(pidof prhelper) $(pgrep -f /lab/bin/prhelper 2>/dev/null); do hp=$p; break; done
[ -n "$hp" ] && { echo "== managed helper pid $hp: $(tr '\0' ' ' < /proc/$hp/cmdline)"; }
lab_ok "libvirt started prhelper for the managed VM" test -n "$hp"
lab_ok "... as pr_helper with -k on the domain's pr-helper socket" sh -c "tr '\0' ' ' < /proc/$hp/cmdline | grep -Eq '^/lab/bin/prhelper -k /.*/pr-helper0.sock'"
lab_ok "no qemu-pr-helper runs" sh -c '! pidof qemu-pr-helper'
guest_wait lv-managed
outer_view $LAB_DEV1
lab_ok "libvirt stopped the managed prhelper with the VM" lab_wait 30 sh -c "! kill -0 $hp"

# ---------------------- 2. managed='no' on a socket-activated prhelper socket
SA=/run/prh-sa.sock
rm -f $SA
systemd-socket-activate -l $SA /lab/bin/prhelper -v > /tmp/prh-sa.log 2>&1 &
SAPID=$!
lab_ok "systemd-socket-activate listens on $SA" lab_wait 30 test -S $SA
lab_ok "no prhelper runs before the first connection" sh -c "[ \"\$(readlink /proc/$SAPID/exe)\" = /usr/bin/systemd-socket-activate ]"
guest lv-unmanaged 6a1f0c52-0d2e-4d0e-9a53-000000000002 $LAB_DEV3 $LAB_DEV4 \
	"<reservations managed='no'><source type='unix' path='$SA' mode='client'/></reservations>"
lab_ok "QEMU's connection started prhelper in place of systemd-socket-activate" \
	lab_wait 60 sh -c "[ \"\$(readlink /proc/$SAPID/exe)\" = /lab/bin/prhelper ]"
lab_ok "... with the listening socket passed (its log: using socket from systemd)" lab_wait 30 grep -q 'using socket from systemd' /tmp/prh-sa.log
guest_wait lv-unmanaged
outer_view $LAB_DEV3
lab_ok "the socket-activated prhelper still serves after the VM" kill -0 $SAPID
lab_helper_stop $SAPID
echo "== socket-activated prhelper log:"; cat /tmp/prh-sa.log
echo "== libvirtd log (helper and QEMU lines):"
grep -iE 'pr-helper|pr_helper|prhelper|error' /tmp/libvirtd.log | head -n 40
# a Go panic prints "panic: "; QEMU's logs hold the guests' "panic=-1" (kernel command line)
lab_ok "no panic in any prhelper log" sh -c "! grep -q 'panic: ' /tmp/prh-sa.log /var/log/libvirt/qemu/*.log 2>/dev/null"
lab_summary
