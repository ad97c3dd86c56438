# Issue 15, item 3: the vinit backend (docs/virtual-initiators.md) on one real
# LIO LU, without nested guests: "VMs" are prpersist clients on --listen sockets
# with fixed identities (initiator=name:...), each socket its own initiator.
#   host A = nexus 1 ($LAB_DEV1), prhelper --fence-host=hosta (derived key),
#            clients a1 and a2;
#   host B = nexus 2 ($LAB_DEV2), prhelper --fence-host=hostb --vinit-key=0xb0b0
#            (a configured key), client b1;
#   nexus 3 ($LAB_DEV3) = the "bare-metal node" / administrator, sg_persist.
# Both helpers share a 3-member etcd (lab_etcd_start) and fence with exec: agents
# that only record the call (there are no VMs to kill).
#   a. a1 and a2 reserve against and preempt each other; READ FULL STATUS on
#      nexus 3 shows one registration, host A's key, never 0xa1/0xa2;
#   b. b1 evicts a1 and a2: host A's key is gone from LIO, LIO itself answers a
#      WRITE through nexus 1 with RESERVATION CONFLICT (sg_raw), nexus 2 writes;
#   c. nexus 3 registers 0xbeef and PREEMPTs host B's key: within the poll
#      interval (5 s) b1 is evicted in the emulated state (unit attention) and
#      host B's fence agent ran for b1 (the LUN refuses host B: the fold judges
#      against it); the guests see 0xbeef's reservation;
#   c2. a1 registers under it: host A's key joins 0xbeef's on LIO, a1's RESERVE
#      and its PREEMPT of 0xbeef conflict, LIO refuses host A's writes; nexus 3
#      CLEARs: host A's poll evicts a1 (unit attention) and fences nobody (no
#      reservation is left);
#   d. host B's helper is SIGKILLed between the store commit of b1's
#      registration and its LUN update (the test-only hook
#      PRHELPER_TEST_VINIT_AFTER_COMMIT, docs/virtual-initiators.md §6): the
#      store has b1, the LUN has no host B key; after a restart without the hook,
#      b1's next PR OUT (a PREEMPT of a1) brings the LUN in line: host B's key
#      holds the reservation, host A's is gone, store and LUN agree.
lab_need_bin prhelper prpersist etcd
lab_lio_setup 3 64
D1=$LAB_DEV1 D2=$LAB_DEV2 D3=$LAB_DEV3
KB=0x000000000000b0b0 KBS=0xb0b0
lab_etcd_start 3

for h in hosta hostb; do
	printf '#!/bin/sh\necho "%s fenced $PRHELPER_FENCE_INITIATOR (evictor $PRHELPER_FENCE_EVICTOR)" >> /tmp/fenced.log\n' $h > /tmp/fence-$h.sh
	chmod +x /tmp/fence-$h.sh
done
: > /tmp/fenced.log
IQN=iqn.2025-01.lab
# helper HOST LOG SOCKETNAMES... : start HOST's vinit helper (sets HPID)
helper() {
	_h=$1 _log=$2; shift 2
	_ls=""
	for _c in $CLIENTS; do
		case $_c in ${_h#host}*) _ls="$_ls --listen=/run/$_c.sock,initiator=name:$IQN:$_c"; rm -f /run/$_c.sock ;; esac
	done
	/lab/bin/prhelper --backend=vinit --etcd-endpoints=$LAB_ETCD_ENDPOINTS --fence-host=$_h \
		--fence=exec:/tmp/fence-$_h.sh --fence-timeout=20s $_ls "$@" >> $_log 2>&1 &
	HPID=$!
	for _c in $CLIENTS; do
		case $_c in ${_h#host}*) lab_wait 60 test -S /run/$_c.sock || { cat $_log; lab_die "$_h: no /run/$_c.sock"; } ;; esac
	done
	lab_log "$_h: prhelper pid $HPID"
}
CLIENTS="a1 a2 b1"
T0=$(lab_uptime)
helper hosta /tmp/hosta.log; PA=$HPID
helper hostb /tmp/hostb.log --vinit-key=$KB; PB=$HPID
# the helpers log their host and key just after they are ready: wait for both lines
lab_wait 30 grep -aq 'virtual initiators' /tmp/hosta.log
lab_wait 30 grep -aq 'virtual initiators' /tmp/hostb.log
# the keys as sg_persist prints them (no leading zeros)
KA=0x$(grep -a 'virtual initiators' /tmp/hosta.log | grep -o 'key=0x[0-9a-f]*' | head -n1 | cut -d= -f2 | sed 's/^0x0*//')
grep -a 'virtual initiators' /tmp/hosta.log /tmp/hostb.log
lab_ok "host A's key is derived ($KA), host B's is the configured one" sh -c \
	"[ '$KA' != 0x ] && grep -aq 'virtual initiators.*key=$KB' /tmp/hostb.log"
c() { _c=$1; shift; case $_c in a*) _d=$D1 ;; *) _d=$D2 ;; esac; prpersist --socket /run/$_c.sock "$@" $_d; }
lun() { sg_persist -n -i -s $D3; }

echo "=================== a. two clients of host A against each other"
lab_expect 0 c a1 --out -G --param-sark=0xa1
lab_expect 0 c a2 --out -G --param-sark=0xa2
lab_expect 0 c a1 --out -R --param-rk=0xa1 --prout-type=1
lab_expect 24 c a2 --out -R --param-rk=0xa2 --prout-type=1
lab_expect_out 0 'Key=0xa1' c a2 --in -s
lab_out_has 'Key=0xa2' "the emulated state has both of host A's clients"
lab_expect_out 0 "Key=$KA" lun
lab_out_has '^ +1 registration|Reservation holder' "LIO: one registration, the holder"
lab_out_lacks 'Key=0xa[12]$' "LIO never sees a client's key"
lab_expect 0 c a2 --out -P --param-rk=0xa2 --param-sark=0xa1 --prout-type=1
lab_expect 6 c a1 --in -k
lab_expect 24 c a1 --out -R --param-rk=0xa1 --prout-type=1
lab_expect 0 c a1 --out -G --param-sark=0xa1
lab_expect 0 c a1 --out -P --param-rk=0xa1 --param-sark=0xa2 --prout-type=3
lab_expect 6 c a2 --in -k
lab_expect 0 c a2 --out -G --param-sark=0xa2
lab_expect_out 0 'Key=0xa1' c a2 --in -r
lab_out_has 'Exclusive Access' "a1 holds Exclusive Access after preempting a2"
lab_expect_out 0 "Key=$KA" lun
lab_out_has 'Exclusive Access' "LIO: host A holds Exclusive Access"
lab_ok "LIO has exactly one registration (host A's)" sh -c "[ \$(printf '%s\n' \"\$1\" | grep -c 'Key=') = 1 ]" _ "$LAB_OUT"
grep -a '' /tmp/fenced.log
lab_ok "host A's agent fenced a1 and a2 when they were preempted" sh -c \
	"grep -q 'hosta fenced $IQN:a1 ' /tmp/fenced.log && grep -q 'hosta fenced $IQN:a2 ' /tmp/fenced.log"

echo "=================== b. host B's client evicts both of host A's"
printf 'vinit lab block\n' | dd of=/tmp/block bs=512 count=1 conv=sync 2>/dev/null
WRITE10="2a 00 00 00 08 00 00 00 01 00"
lab_expect 0 c b1 --out -G --param-sark=0xb1
lab_expect_out 0 "Key=$KBS" lun
lab_out_has "Key=$KA" "LIO: both hosts registered"
lab_expect 0 c b1 --out -P --param-rk=0xb1 --param-sark=0xa2 --prout-type=1
lab_expect 0 c b1 --out -P --param-rk=0xb1 --param-sark=0xa1 --prout-type=1
lab_expect_out 0 "Key=$KBS" lun
lab_out_lacks "Key=$KA" "LIO: host A's key is gone"
lab_out_has 'Write Exclusive' "LIO: host B holds Write Exclusive"
# nexus 1's first command after the preemption gets LIO's unit attention
# (2A/05 REGISTRATIONS PREEMPTED, SPC-4 §5.14); a real initiator retries
sg_raw -s 512 -i /tmp/block $D1 $WRITE10 > /dev/null 2>&1
lab_expect_out 0 'Reservation Conflict' sh -c "sg_raw -s 512 -i /tmp/block $D1 $WRITE10; echo rc=\$?"
lab_expect 0 sg_raw -s 512 -i /tmp/block $D2 $WRITE10
lab_expect 6 c a1 --in -k
lab_expect_out 0 '0xb1' c a1 --in -k
lab_out_lacks '0xa[12]' "emulated: only b1 is left"

echo "=================== c. a bare-metal PREEMPT of host B's key through nexus 3"
lab_expect 0 sg_persist -n --out --register-ignore --param-sark=0xbeef $D3
T_PRE=$(lab_uptime)
lab_expect 0 sg_persist -n --out --preempt --param-rk=0xbeef --param-sark=$KBS --prout-type=1 $D3
lab_ok "host B's agent fenced b1 within the poll interval (+ a command time)" lab_wait 15 grep -q "hostb fenced $IQN:b1 " /tmp/fenced.log
echo "# fenced after $(awk -v a=$T_PRE -v b=$(lab_uptime) 'BEGIN { printf "%.1f", b - a }') s"
lab_expect 6 c b1 --in -k
# the poll that folded b1 out shows the bare-metal key's reservation next
lab_ok "emulated: the bare-metal key shows, b1's is gone" lab_wait 10 sh -c \
	"prpersist --socket /run/b1.sock --in -k $D2 > /tmp/b1k.out 2>&1; grep -q 0xbeef /tmp/b1k.out && ! grep -q 0xb1 /tmp/b1k.out"
lab_expect_out 0 'Key=0xbeef' c b1 --in -r
lab_out_has 'Write Exclusive' "emulated: the bare-metal key holds Write Exclusive"
lab_expect_out 0 'Key=0xbeef' lun
lab_out_lacks "Key=$KBS|Key=$KA" "LIO: only the bare-metal key"

echo "=================== c2. a foreign reservation under which host A registers; an administrator's CLEAR"
c a1 --in -k > /dev/null 2>&1 # a unit attention left from part b, if any
lab_expect 0 c a1 --out -G --param-sark=0xa1
lab_expect_out 0 'Key=0xbeef' c a1 --in -r
lab_out_has 'Write Exclusive' "emulated: a1 sees the bare-metal reservation"
lab_expect 24 c a1 --out -R --param-rk=0xa1 --prout-type=1
lab_expect 24 c a1 --out -P --param-rk=0xa1 --param-sark=0xbeef --prout-type=1
lab_expect_out 0 "Key=$KA" lun
lab_out_has 'Key=0xbeef' "LIO: host A registered, the bare-metal key still holds"
# a1 registered, not the holder: LIO refuses host A's writes as it refuses a1's in the emulated state
sg_raw -s 512 -i /tmp/block $D1 $WRITE10 > /dev/null 2>&1
lab_expect_out 0 'Reservation Conflict' sh -c "sg_raw -s 512 -i /tmp/block $D1 $WRITE10; echo rc=\$?"
N_A1=$(grep -c "hosta fenced $IQN:a1 " /tmp/fenced.log)
lab_expect 0 sg_persist -n --out --clear --param-rk=0xbeef $D3
lab_ok "host A's poll folds the CLEAR in: a1 told it was preempted" lab_wait 15 sh -c \
	"prpersist --socket /run/a1.sock --in -k $D1 > /dev/null 2>&1; [ \$? = 6 ]"
sleep 2
lab_expect_out 0 'NO registered|no registered' c a1 --in -k
lab_expect_out 0 'NO reservation|no reservation' c a1 --in -r
lab_ok "the CLEAR fenced nobody (no reservation left on LIO)" sh -c "[ \$(grep -c 'hosta fenced $IQN:a1 ' /tmp/fenced.log) = $N_A1 ]"

echo "=================== d. host B killed between the store commit and the LUN update"
lab_expect 0 c a1 --out -G --param-sark=0xa1
lab_expect 0 c a1 --out -R --param-rk=0xa1 --prout-type=1
lab_helper_stop $PB
rm -f /tmp/hook
export PRHELPER_TEST_VINIT_AFTER_COMMIT=/tmp/hook
helper hostb /tmp/hostb-hook.log --vinit-key=$KB --sandbox=off; PB=$HPID
unset PRHELPER_TEST_VINIT_AFTER_COMMIT
c b1 --out -G --param-sark=0xb1 > /tmp/b1-blocked.out 2>&1 &
CP=$!
lab_ok "host B committed b1's registration and stopped in the hook" lab_wait 20 test -e /tmp/hook
kill -KILL $PB; wait $PB 2>/dev/null; wait $CP; echo "# the client's command ended with $? (its helper died)"
lab_expect_out 0 '0xb1' c a1 --in -k
lab_out_has '0xa1' "store: a1 and b1 registered"
lab_expect_out 0 "Key=$KA" lun
lab_out_lacks "Key=$KBS" "LIO: host B's key missing (the LUN is behind the store)"
helper hostb /tmp/hostb.log --vinit-key=$KB; PB=$HPID
lab_expect 0 c b1 --out -P --param-rk=0xb1 --param-sark=0xa1 --prout-type=1
lab_expect_out 0 "Key=$KBS" lun
lab_out_lacks "Key=$KA" "LIO after the restart: host A's key gone"
lab_out_has 'Write Exclusive' "LIO: host B holds Write Exclusive, as b1 does in the store"
lab_expect_out 0 'Key=0xb1' c b1 --in -r
# nexus 1's first command after the preemption gets LIO's unit attention
# (2A/05 REGISTRATIONS PREEMPTED, SPC-4 §5.14); a real initiator retries
sg_raw -s 512 -i /tmp/block $D1 $WRITE10 > /dev/null 2>&1
lab_expect_out 0 'Reservation Conflict' sh -c "sg_raw -s 512 -i /tmp/block $D1 $WRITE10; echo rc=\$?"
echo "== $(awk -v a=$T0 -v b=$(lab_uptime) 'BEGIN { printf "%.1f", b - a }') s from the first helper to here"

lab_helper_stop $PA; lab_helper_stop $PB
echo "== fence agents' calls:"; cat /tmp/fenced.log
echo "== helpers' logs (vinit, warnings):"
grep -a -E 'vinit|virtual|level=(WARN|ERROR)' /tmp/hosta.log /tmp/hostb.log /tmp/hostb-hook.log | head -n 60
lab_ok "no panic in the helpers' logs" sh -c "! grep -qi panic /tmp/hosta.log /tmp/hostb.log /tmp/hostb-hook.log"
lab_etcd_stop
lab_summary
