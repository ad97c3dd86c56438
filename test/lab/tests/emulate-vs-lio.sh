# Differential test of prhelper's emulated reservations against LIO
# (tools/prgen): seeded random PR command sequences over 2, 3 and 4 initiators.
# Each run has a fresh LIO LU exported through N tcm_loop paths (N I_T nexuses,
# initiators naa.5001405b0000000{1..N}, each through its own target port) and a
# fresh disk image served by prhelper --backend=emulate with one --listen socket
# per path (initiator=name:naa.5001405b0000000N, port=the RTPI LIO gives that
# path, read from configfs). Every command goes to LIO (through prhelper
# --backend=sgio, SG_IO passthrough) and to the emulation; every reply must be
# byte-identical. Not through qemu-pr-helper: it reuses one buffer per
# connection, and LIO leaves reserved bytes of READ FULL STATUS descriptors and
# SAS TransportIDs unwritten, and qemu-pr-helper can return bytes of earlier
# commands there (seen in the lab: transcripts/emulate-vs-lio-qemu-pr-helper-stale.txt;
# run 9 runs one sequence that way, informative).
# Run with one vCPU (run.sh -c 1): LIO is deterministic only then.
# Arguments: [SEED [STEPS]]; the seed defaults to the time and is printed; run r
# (r = 0..5, N = 2, 3, 4, 2, 3, 4 initiators) uses SEED + r.
# prhelper has no option describing an emulated LU's target ports (one port,
# open to every initiator); prgen -seed-db stores the lab's ports in prhelper's
# database before each run so SPEC_I_PT / REGISTER AND MOVE towards another
# initiator can answer like LIO. Run 6 without that shows the difference; run 7
# (prgen -dup-tids) shows LIO 6.1 registering one I_T nexus twice when a
# SPEC_I_PT list names the commanding initiator (left out of runs 0-5, see
# tools/prgen/gen.go); run 8 (seed 12) reaches, at step 473, the PREEMPT under
# an all-registrants reservation with SARK = the caller's own key that an
# earlier engine got wrong (RESERVATION CONFLICT where LIO answers GOOD): a
# check. Runs 6, 7 and 9 are informative, not checks. Runs 0-5 and 8
# send (prgen -zero-len-we) PR OUT without a parameter list from an
# unregistered nexus under a Write Exclusive reservation, which LIO passes to
# its handler (05/1A/00) by data direction: the LIO() profile answers the same
# (docs/spc4-pr.md §14 D26). Left out of them (prgen -move-no-unreg): a
# REGISTER AND MOVE onto a registration that was the source of a move without
# UNREG, whose scope LIO has corrupted. Run 10 turns every generator flag on
# (-zero-len-we -move-no-unreg -dup-tids), a check: the LIO() profile
# reproduces D26-D29 (docs/spc4-pr.md §14.1-§14.4; D29 closed the last three
# seeds that parted, 5004, 5005 and 5022: transcripts/emulate-vs-lio-all-flags.txt).
# PREEMPT AND ABORT is sent only where the engine predicts it fails (LIO then
# aborts nothing); the others are sent as PREEMPT (it can hang over tcm_loop).
lab_need_bin prgen prhelper
SEED=${1:-$(date +%s)}
STEPS=${2:-1000}
echo "== emulate-vs-lio: seed $SEED, $STEPS steps per run (replay: run.sh -c 1 tests/emulate-vs-lio.sh $SEED $STEPS)"
lab_modules_target
lab_helper_start prhelper /run/lio.sock --backend=sgio; LIO=$LAB_HELPER_PID
lab_helper_start qemu-pr-helper /run/qprh.sock; QPRH=$LAB_HELPER_PID

# prgen_run R N SEEDPORTS [PRGEN ARGS] : one run with N paths on backstore disk$R
prgen_run() {
	r=$1 n=$2 seedports=$3; shift 3
	lab_lio_backstore disk$r 16
	bs=$LAB_BS devs="" rtpis="" listens="" socks=""
	i=1
	while [ $i -le $n ]; do
		lab_lio_path $((r * 10 + i)) $bs 0 $i
		rtpi=$(cat $LAB_TPG/lun/lun_0/statistics/scsi_port/indx 2>/dev/null)
		[ -n "$rtpi" ] || lab_die "no RTPI in $LAB_TPG/lun/lun_0/statistics/scsi_port/indx"
		devs="$devs${devs:+,}$LAB_DEV" rtpis="$rtpis${rtpis:+,}$rtpi"
		sk=/run/emu$r-$i.sock
		socks="$socks${socks:+,}$sk"
		listens="$listens --listen=$sk,initiator=name:naa.5001405b0000000$i,port=$rtpi"
		i=$((i + 1))
	done
	img=/tmp/emu$r.img db=/tmp/emu$r.db
	truncate -s 16M $img
	printf 'backend emulate\ndb %s\nrule path=%s backend=emulate id=prgen-lu%s\n' $db $img $r > /tmp/emu$r.conf
	echo "== run $r: $n initiators, LIO paths $devs (RTPIs $rtpis), image $img, ports stored: $seedports"
	rm -f /tmp/emu$r.log
	# the lab's target ports go into the store before prhelper opens it
	[ $seedports = 1 ] && lab_expect 0 prgen -seed-db $db -lu prgen-lu$r -rtpi $rtpis -steps 0
	/lab/bin/prhelper -v --config=/tmp/emu$r.conf $listens >> /tmp/emu$r.log 2>&1 &
	EMU=$!
	for s in $(echo $socks | tr , ' '); do lab_wait 30 test -S $s || { cat /tmp/emu$r.log; lab_die "prhelper did not create $s"; }; done
	PRGEN_OUT=/lab/io/out/prgen-run$r.txt
	prgen -seed ${PRGEN_SEED:-$((SEED + r))} -steps $STEPS -rtpi $rtpis -lio ${PRGEN_LIO:-/run/lio.sock} -lio-dev $devs -emu $socks -emu-dev $img \
		-record /lab/io/out/lio-replies-run$r.txt "$@" > $PRGEN_OUT 2>&1
	PRGEN_RC=$?
	grep -v 'steps identical (' $PRGEN_OUT
	LAB_BS=$bs; lab_lio_pr_state
	lab_ok "prhelper (run $r) still running" kill -0 $EMU
	lab_helper_stop $EMU
	lab_ok "no panic in prhelper's log (run $r)" sh -c "! grep -qi panic /tmp/emu$r.log"
}

for r in 0 1 2 3 4 5; do
	n=$((2 + r % 3))
	prgen_run $r $n 1 -zero-len-we
	lab_ok "run $r ($n initiators, seed $((SEED + r)), $STEPS steps): every reply identical" [ $PRGEN_RC = 0 ]
done
echo "== run 6: prhelper as deployed (no target ports stored): where LIO and the emulation part"
prgen_run 6 3 0
lab_log "run 6 (ports not stored) exit $PRGEN_RC (informative, not a check)"
echo "== run 7: SPEC_I_PT lists that name the commanding initiator or repeat one (-dup-tids)"
prgen_run 7 3 1 -dup-tids
lab_log "run 7 (-dup-tids) exit $PRGEN_RC (informative, not a check: LIO 6.1 registers one I_T nexus twice)"
echo "== run 8: PREEMPT under all-registrants with the caller's own key (seed 12 reaches it at step 473)"
PRGEN_SEED=12 prgen_run 8 3 1 -zero-len-we
lab_ok "run 8 (seed 12, own-key PREEMPT under all-registrants): every reply identical" [ $PRGEN_RC = 0 ]
echo "== run 9: LIO through qemu-pr-helper instead of prhelper's SG_IO passthrough"
PRGEN_LIO=/run/qprh.sock prgen_run 9 3 1
lab_log "run 9 (LIO through qemu-pr-helper) exit $PRGEN_RC (informative, not a check: stale bytes in LIO's unwritten fields)"
echo "== run 10: every generator flag on (-zero-len-we -move-no-unreg -dup-tids)"
prgen_run 10 4 1 -zero-len-we -move-no-unreg -dup-tids
lab_ok "run 10 (every flag, seed $((SEED + 10)), $STEPS steps): every reply identical" [ $PRGEN_RC = 0 ]
lab_helper_stop $LIO
lab_helper_stop $QPRH
lab_ok "no panic in the passthrough helpers' logs" sh -c "! grep -qi panic /tmp/lio.sock.log /tmp/qprh.sock.log"
lab_summary
