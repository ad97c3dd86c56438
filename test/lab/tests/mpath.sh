# prhelper's multipath backend (the default backend, auto, sends a dm-multipath
# map there) on /dev/mapper/mpatha over tcm_loop paths of one LIO LU, with a
# nexus outside the map (C) playing another host; multipathd 0.9.4 with
# "reservation_key file" so that it keeps the key prhelper gives it.
#   - REGISTER: one registration per path (READ FULL STATUS through C);
#     multipathd is told the key and the status;
#   - RESERVE, READ RESERVATION, READ FULL STATUS through prhelper; C's RESERVE
#     conflicts;
#   - a path added to the map after REGISTER is registered by multipathd;
#   - a path failed (sysfs offline) while the key changes gets the new key
#     when it is reinstated;
#   - a reservation held through a failed path: RESERVE and RELEASE still work;
#   - C preempts the map (a fence): nothing registers the map's key again;
#   - the same sequence through mpathpersist and through prhelper leaves the LU
#     in the same state.
lab_need_bin prhelper prpersist
lab_mpath_setup "reservation_key file"
C=$LAB_OTHER M=$LAB_MPATH
multipath -ll
S=/run/prh.sock
lab_helper_start prhelper $S -v
PRH=$LAB_HELPER_PID
lab_expect_out 0 "backend:  mpath" /lab/bin/prhelper --explain $M
P="/lab/bin/prpersist --socket $S"

# other ARGS : sg_persist through C, once more after a unit attention
other() { sg_persist -n "$@" $C >/dev/null 2>&1; sg_persist -n "$@" $C; }
# regs KEY : how many registrations of KEY C sees
regs() { other -i -s | grep -c "Key=$1"; }
# wait_regs SECONDS KEY N : until C sees N registrations of KEY
wait_regs() { _t=0; while [ "$(regs $2)" != "$3" ]; do [ $_t -ge $1 ] && return 1; sleep 1; _t=$((_t + 1)); done; }
# holder_path : the lab path number (1, 2, 4) whose initiator holds the reservation
holder_path() { other -i -s | awk '/Reservation holder/{h=1} h&&/SAS address/{print substr($NF, length($NF)); exit}'; }
dev_of() { eval echo \$LAB_DEV$1; }
# state : the LU as C sees it: one line per registration (key, initiator) and
#   one for the reservation (key, scope, type), sorted; which path of the map
#   holds the reservation is whichever path the tool picked, so it is left out
state() { other -i -s | awk '/Key=/{k=$1} /SAS address/{print k, $NF} /scope:/{$1=$1; print "reservation:", k, $0}' | sort; }

echo "== REGISTER through the map registers every path"
lab_expect 0 $P --out --register --param-sark=0xabc $M
lab_ok "C sees 2 registrations of 0xabc (one per path)" [ "$(regs 0xabc)" = 2 ]
lab_expect_out 0 '0xabc' multipathd getprkey map mpatha
# 0.9.4 answers the map's prflag as a number (1: registered); later releases in words
lab_expect_out 0 '^(1|registered)$' multipathd getprstatus map mpatha
lab_expect_out 0 '0x0*abc' cat /etc/multipath/prkeys

echo "== RESERVE, READ RESERVATION, READ FULL STATUS through prhelper"
lab_expect 0 $P --out --reserve --param-rk=0xabc --prout-type=5 $M
lab_expect_out 0 'Key=0xabc' $P --in -r $M
lab_out_has 'Write Exclusive, registrants only'
lab_expect 0 sg_persist -n --out --register --param-sark=0xf00 $C
lab_expect 24 sg_persist -n --out --reserve --param-rk=0xf00 --prout-type=5 $C
lab_expect_out 0 'Key=0xf00' $P --in -s $M
lab_ok "READ FULL STATUS through prhelper lists 3 registrations" [ "$(printf '%s\n' "$LAB_OUT" | grep -c 'Key=')" = 3 ]
lab_out_has 'Reservation holder'
echo "== PR IN through the map is the device's own reply: the same bytes as SG_IO passthrough on one path"
lab_helper_start prhelper /run/prh-sgio.sock --backend=sgio; PSG=$LAB_HELPER_PID
# data DEV SOCKET ARGS : the \"data\" of prpersist --json (raw parameter data, hex)
data() { _d=$1 _s=$2; shift 2; /lab/bin/prpersist --socket $_s "$@" --json $_d | sed -n 's/.*"data":"\([0-9a-f]*\)".*/\1/p'; }
for a in -k -r -s -c; do
	data $LAB_DEV2 /run/prh-sgio.sock $a >/dev/null 2>&1 # a unit attention pending on the path's nexus
	x=$(data $M $S $a); y=$(data $LAB_DEV2 /run/prh-sgio.sock $a)
	echo "# PR IN $a: map $x"; echo "#            path $y"
	lab_ok "PR IN $a: the map's reply equals the path's (${#x} hex digits, not padded to the allocation length)" sh -c "[ -n '$x' ] && [ '$x' = '$y' ] && [ ${#x} -lt 16384 ]"
done
lab_helper_stop $PSG

echo "== a third path joins the map: multipathd registers it (no prhelper command meanwhile)"
lab_lio_path 4 $LAB_BS; LAB_DEV4=$LAB_DEV; D4=$(basename $LAB_DEV)
lab_ok "$D4 joined mpatha" lab_wait 60 sh -c "multipath -ll mpatha | grep -q ' $D4 '"
multipath -ll mpatha
lab_ok "C sees 3 registrations of 0xabc: multipathd registered $D4" wait_regs 30 0xabc 3

echo "== path 1 fails, the key changes to 0xdef, path 1 comes back"
D1=$(basename $LAB_DEV1)
echo offline > /sys/block/$D1/device/state
lab_ok "multipathd failed $D1" lab_wait 30 sh -c "multipathd show paths format '%d %t' | grep -q '^$D1 *failed'"
lab_expect 0 $P --out --register --param-rk=0xabc --param-sark=0xdef $M
# path 1 held the reservation (RESERVE went through it): prhelper moved the
# reservation to a live path first (a PREEMPT of 0xabc, which also removed the
# failed path's registration), so nothing holds 0xabc any more
lab_ok "the live paths hold 0xdef (2); the failed path, which held the reservation, lost 0xabc to its move (0)" sh -c "[ $(regs 0xdef) = 2 ] && [ $(regs 0xabc) = 0 ]"
lab_expect_out 0 '0xdef' multipathd getprkey map mpatha
echo running > /sys/block/$D1/device/state
lab_ok "multipathd reinstated $D1" lab_wait 30 sh -c "multipathd show paths format '%d %t' | grep -q '^$D1 *active'"
if wait_regs 20 0xdef 3; then echo "== multipathd registered the returning path"; else echo "== multipathd did not register the returning path; prhelper does on the next command"; fi
lab_expect 0 $P --in -k $M
lab_ok "every path of the map holds 0xdef again (3), none 0xabc" sh -c "[ $(regs 0xdef) = 3 ] && [ $(regs 0xabc) = 0 ]"

echo "== the reservation is held through a path that fails"
H=$(holder_path); HD=$(basename $(dev_of $H))
lab_ok "the holder is one of the map's paths (path $H, $HD)" sh -c "[ -n '$H' ] && [ '$H' != 3 ]"
echo offline > /sys/block/$HD/device/state
lab_wait 30 sh -c "multipathd show paths format '%d %t' | grep -q '^$HD *failed'"
lab_expect_out 0 'Key=0xdef' $P --in -r $M
lab_expect 0 $P --out --reserve --param-rk=0xdef --prout-type=5 $M
H2=$(holder_path)
lab_ok "RESERVE moved the reservation to a live path (path $H2, was $H)" sh -c "[ -n '$H2' ] && [ '$H2' != '$H' ] && [ '$H2' != 3 ]"
lab_expect 0 $P --out --release --param-rk=0xdef --prout-type=5 $M
lab_expect_out 0 'NO reservation' other -i -r
lab_expect 0 $P --out --reserve --param-rk=0xdef --prout-type=5 $M
H3=$(holder_path); H3D=$(basename $(dev_of $H3))
echo offline > /sys/block/$H3D/device/state
lab_wait 30 sh -c "multipathd show paths format '%d %t' | grep -q '^$H3D *failed'"
lab_expect 0 $P --out --release --param-rk=0xdef --prout-type=5 $M
lab_expect_out 0 'NO reservation' other -i -r
lab_out_lacks 'Key=0xdef' "RELEASE released the reservation held through failed path $H3"
for d in $HD $H3D; do echo running > /sys/block/$d/device/state; done
lab_wait 30 sh -c "! multipathd show paths format '%d %t' | grep -q failed"
lab_expect 0 $P --in -k $M
lab_ok "every path holds 0xdef after the failures (3)" wait_regs 20 0xdef 3

echo "== C preempts the map (a fence); a returning path is not registered again"
lab_expect 0 $P --out --reserve --param-rk=0xdef --prout-type=5 $M
lab_expect 0 sg_persist -n --out --preempt --param-rk=0xf00 --param-sark=0xdef --prout-type=5 $C
lab_ok "no registration of 0xdef is left" [ "$(regs 0xdef)" = 0 ]
echo offline > /sys/block/$D1/device/state; sleep 3; echo running > /sys/block/$D1/device/state
lab_wait 30 sh -c "! multipathd show paths format '%d %t' | grep -q failed"
sleep 5
lab_expect_out 0 '0xf00' $P --in -k $M
lab_out_lacks '0xdef' "READ KEYS through prhelper: the fenced key stays gone"
lab_ok "still no registration of 0xdef after a path came back" [ "$(regs 0xdef)" = 0 ]
lab_expect 0 sg_persist -n --out --clear --param-rk=0xf00 $C
lab_expect_out 0 'NO registered reservation keys' other -i -k
lab_expect_out 0 'none|^0x0*$' multipathd getprkey map mpatha
lab_out_lacks 'def' "prhelper saw the key gone in READ KEYS and told multipathd (prkeys no longer holds 0xdef)"
lab_expect_out 0 '^(0|unregistered)$' multipathd getprstatus map mpatha

echo "== REGISTER AND MOVE: the map's reservation moves to C (relative target port 3); with UNREG the map leaves"
lab_expect 0 $P --out --register --param-sark=0x321 $M
lab_expect 0 $P --out --reserve --param-rk=0x321 --prout-type=1 $M
lab_expect 0 $P --out -M --unreg --param-rk=0x321 --param-sark=0xc0c --prout-type=1 --transport-id=sas,5001405b00000003 --relative-target-port=3 $M
lab_expect_out 0 'Key=0xc0c' other -i -r
lab_ok "with UNREG every path of the map left (no 0x321)" [ "$(regs 0x321)" = 0 ]
lab_expect_out 0 'none|^0x0*$' multipathd getprkey map mpatha
lab_expect 0 sg_persist -n --out --clear --param-rk=0xc0c $C

echo "== the same sequence through mpathpersist and through prhelper"
# run_seq TOOL : register 0x123, reserve (type 5), snapshot, change the key to
#   0x456, snapshot, release, snapshot, unregister, snapshot
run_seq() {
	if [ $1 = mpathpersist ]; then T="mpathpersist"; else T="$P"; fi
	$T --out --register --param-sark=0x123 $M; echo "rc=$?"
	$T --out --reserve --param-rk=0x123 --prout-type=5 $M; echo "rc=$?"
	state
	$T --out --register --param-rk=0x123 --param-sark=0x456 $M; echo "rc=$?"
	state
	$T --out --release --param-rk=0x456 --prout-type=5 $M; echo "rc=$?"
	state
	$T --out --register --param-rk=0x456 --param-sark=0 $M; echo "rc=$?"
	state
}
run_seq mpathpersist > /tmp/seq-mpathpersist.txt 2>&1
run_seq prhelper > /tmp/seq-prhelper.txt 2>&1
echo "-- mpathpersist:"; cat /tmp/seq-mpathpersist.txt
echo "-- prhelper:"; cat /tmp/seq-prhelper.txt
diff -u /tmp/seq-mpathpersist.txt /tmp/seq-prhelper.txt
lab_ok "mpathpersist and prhelper leave the LU in the same states" cmp -s /tmp/seq-mpathpersist.txt /tmp/seq-prhelper.txt
lab_ok "the sequence registered on 3 paths" grep -q 'Key=0x456' /tmp/seq-prhelper.txt
lab_ok "every step succeeded through both" sh -c "! grep -q 'rc=[1-9]' /tmp/seq-mpathpersist.txt /tmp/seq-prhelper.txt"

lab_helper_stop $PRH
echo "== prhelper log:"; cat /tmp/prh.sock.log
lab_ok "no panic in the prhelper log" sh -c "! grep -qi panic /tmp/prh.sock.log"

echo "== -u nobody -g disk: the map is served, multipathd refuses to listen"
# the lab's device nodes are root:root 0600; Debian's udev makes them root:disk 0660
G=6
for p in $(ls /sys/block/$(basename $(readlink -f $M))/slaves); do chgrp $G /dev/$p; chmod 0660 /dev/$p; done
ls -l /dev/sd*
mkdir -p /run/prh-nobody; chown 65534:$G /run/prh-nobody
S2=/run/prh-nobody/prh.sock
lab_helper_start prhelper $S2 -u nobody -g $G -v
P2="/lab/bin/prpersist --socket $S2"
lab_expect 0 $P2 --out --register --param-sark=0x777 $M
lab_ok "every path of the map registered 0x777 (3)" [ "$(regs 0x777)" = 3 ]
lab_expect 0 $P2 --out --reserve --param-rk=0x777 --prout-type=6 $M
lab_expect_out 0 'Key=0x777' other -i -r
lab_expect 0 $P2 --out --clear --param-rk=0x777 $M
lab_expect_out 0 'NO registered reservation keys' other -i -k
lab_helper_stop $LAB_HELPER_PID
cat /tmp/prh.sock.log
lab_ok "the log says multipathd was not told (it takes PR commands from root only)" grep -q 'multipathd not told' /tmp/prh.sock.log

echo "== a multipath map multipathd did not make (no mpath- uuid) is found by its table's target type"
CM=$(cat /sys/block/$(basename $C)/dev)
# a run of stop 18 read a size of 0 here (a 0-sector table, refused by
# device-mapper). sd sets a disk's capacity to 0 when a rescan's READ CAPACITY
# fails, and the lab's LIO answers READ CAPACITY with RESERVATION CONFLICT on
# a nexus that is not registered while another holds an Exclusive Access
# reservation, as C was during the type 6 reservation above (seen in
# mpath-diff's dmesg: docs/multipath.md §9). The LU is clear now: a rescan
# reads the size again.
if [ "$(blockdev --getsz $C)" = 0 ]; then
	echo "$C has size 0; rescanning it"; dmesg | grep -i 'capacity' | tail -n 6
	echo 1 > /sys/block/$(basename $C)/device/rescan
fi
lab_wait 30 sh -c "[ \$(blockdev --getsz $C) -gt 0 ]" || echo "$C still has size 0"
lab_expect 0 dmsetup create labmap --table "0 $(blockdev --getsz $C) multipath 0 0 1 1 round-robin 0 1 1 $CM 1"
dmsetup info -c -o name,uuid labmap; dmsetup table labmap
lab_expect_out 0 'kind: +dm-multipath' /lab/bin/prhelper --explain /dev/mapper/labmap
lab_out_has 'backend: +mpath'
lab_expect 0 dmsetup remove labmap

echo "== no reservation_key in multipath.conf: multipathd cannot keep a key; prhelper registers a returning path itself"
sed -i '/reservation_key/d' /etc/multipath.conf
multipathd reconfigure; lab_wait 30 sh -c 'multipathd show daemon | grep -q idle'
lab_helper_start prhelper $S -v
lab_expect 0 $P --out --register --param-sark=0x555 $M
lab_ok "every path of the map registered 0x555 (3)" [ "$(regs 0x555)" = 3 ]
echo offline > /sys/block/$D1/device/state
lab_wait 30 sh -c "multipathd show paths format '%d %t' | grep -q '^$D1 *failed'"
lab_expect 0 $P --out --register --param-rk=0x555 --param-sark=0x556 $M
echo running > /sys/block/$D1/device/state
lab_wait 30 sh -c "multipathd show paths format '%d %t' | grep -q '^$D1 *active'"
sleep 5
lab_ok "multipathd did not register the returning path (it has no key): 0x555 still on it" [ "$(regs 0x555)" = 1 ]
lab_expect 0 $P --in -k $M
lab_ok "prhelper's next command registered it: 0x556 on every path (3)" sh -c "[ $(regs 0x556) = 3 ] && [ $(regs 0x555) = 0 ]"
lab_expect 0 $P --out --register --param-rk=0x556 --param-sark=0 $M
lab_helper_stop $LAB_HELPER_PID
lab_ok "the log tells multipathd refused the key and prhelper registered the path" sh -c "grep -q 'multipathd not told' /tmp/prh.sock.log && grep -q 'registered a new or returning path' /tmp/prh.sock.log"

echo "== multipath.conf fixes reservation_key 0xabc1: another key is refused as libmpathpersist refuses it"
awk '{print} /^defaults \{/{print "\treservation_key 0xabc1"}' /etc/multipath.conf > /tmp/mp.conf && cat /tmp/mp.conf > /etc/multipath.conf
grep reservation_key /etc/multipath.conf
lab_helper_start prhelper $S -v
lab_expect_out 11 'Aborted command' $P --out --register --param-sark=0x999 $M
lab_ok "nothing reached the LU" [ "$(regs 0x999)" = 0 ]
lab_expect 1 mpathpersist --out --register --param-sark=0x999 $M   # MPATH_PR_SYNTAX_ERROR: it refuses too
lab_expect 0 $P --out --register --param-sark=0xabc1 $M
lab_ok "the configured key registers on every path (3)" [ "$(regs 0xabc1)" = 3 ]
lab_expect 11 $P --out --reserve --param-rk=0x999 --prout-type=5 $M
lab_expect 0 $P --out --register --param-rk=0xabc1 --param-sark=0 $M
lab_expect_out 0 'NO registered reservation keys' other -i -k
lab_helper_stop $LAB_HELPER_PID
grep 'multipath.conf' /tmp/prh.sock.log
lab_ok "the log says why: the key is not multipath.conf's reservation_key" grep -q 'is not the reservation_key 0xabc1 that multipath.conf sets' /tmp/prh.sock.log
lab_summary
