# Randomized differential of the <linux/pr.h> backend on SCSI (issue 16,
# tools/prgen -linuxpr): per seed two fresh, identical LIO LUs, each exported
# through N tcm_loop paths with the same N initiators (naa.5001405b0000000{1..N});
# a seeded random sequence of the commands the ioctls can express (READ KEYS,
# READ RESERVATION, REGISTER, REGISTER AND IGNORE EXISTING KEY, RESERVE,
# RELEASE, CLEAR, PREEMPT (no PREEMPT AND ABORT: it can hang over tcm_loop); scope LU,
# the six types, 24-byte lists without flags; prgen's Gen.Ioctl) goes to the
# first LU through prhelper --backend=sgio (SG_IO passthrough, the reference)
# and to the second through prhelper --backend=linuxpr on its sd disks. A unit
# attention is answered by sending again on both sides. Every difference must
# be one of the documented exceptions (tools/prgen/linuxpr.go, explained in
# docs/linux-pr.md §9); after each difference the states are compared and, if
# they differ, both LUs are cleared (resynchronisation). The unexplained
# remainder must be zero. Run with one vCPU (run.sh -c 1): LIO's PR engine is
# deterministic only then.
# Seeds are fixed and printed. Without arguments (check.sh): seed 1601 with 2
# initiators, 2,000 steps (about a minute of VM time: one step costs two PR
# commands and, after a CHECK CONDITION, the backend's three re-issues); with
# "all": 1601:2, 1602:3 and 1603:4, 2,000 steps each (opt-in, about three
# times that).
# Arguments: [SEED[:N]|all [STEPS]]: one seed with N initiators (default 3).
lab_need_bin prgen prhelper
case ${1:-} in
"") SEEDS="1601:2" ;;
all) SEEDS="1601:2 1602:3 1603:4" ;;
*) SEEDS=$1 ;;
esac
STEPS=${2:-2000}
echo "== linuxpr-diff: seeds $SEEDS, $STEPS steps each (replay one: run.sh -c 1 tests/linuxpr-diff.sh SEED:N [STEPS])"
lab_modules_target
# LIO logs each refused PR OUT at KERN_ERR; on the serial console of a TCG
# guest that costs more than the commands
dmesg -n 1
lab_helper_start prhelper /run/sgio.sock --backend=sgio; SG=$LAB_HELPER_PID
lab_helper_start prhelper /run/linuxpr.sock --backend=linuxpr; LPR=$LAB_HELPER_PID
r=0
for sn in $SEEDS; do
	seed=${sn%%:*} n=${sn#*:}
	[ "$n" = "$sn" ] && n=3
	rdevs="" tdevs="" rtpis=""
	lab_lio_backstore ref$r 16; rbs=$LAB_BS
	lab_lio_backstore lpr$r 16; tbs=$LAB_BS
	i=1
	while [ $i -le $n ]; do
		lab_lio_path $((r * 20 + i)) $rbs 0 $i
		rtpis="$rtpis${rtpis:+,}$(cat $LAB_TPG/lun/lun_0/statistics/scsi_port/indx)"
		rdevs="$rdevs${rdevs:+,}$LAB_DEV"
		lab_lio_path $((r * 20 + 10 + i)) $tbs 0 $i
		tdevs="$tdevs${tdevs:+,}$LAB_DEV"
		i=$((i + 1))
	done
	echo "== seed $seed: $n initiators; reference $rdevs (sgio), linuxpr $tdevs"
	t0=$(lab_uptime)
	prgen -linuxpr /run/linuxpr.sock -linuxpr-dev $tdevs -lio /run/sgio.sock -lio-dev $rdevs -rtpi $rtpis \
		-seed $seed -steps $STEPS > /tmp/prgen-$r.txt 2>&1
	rc=$?
	cat /tmp/prgen-$r.txt
	echo "== seed $seed took $(echo "$(lab_uptime) $t0" | awk '{printf "%.0f", $1 - $2}') s; LIO's view of both LUs"
	for b in $rbs $tbs; do LAB_BS=$b; echo "-- $b"; lab_lio_pr_state; done
	lab_ok "seed $seed ($n initiators, $STEPS steps): every difference a documented one" [ $rc = 0 ]
	r=$((r + 1))
done
lab_ok "both helpers still running" kill -0 $SG $LPR
lab_helper_stop $SG; lab_helper_stop $LPR
lab_ok "no panic in the helper logs" sh -c "! grep -qi panic /tmp/sgio.sock.log /tmp/linuxpr.sock.log"
lab_summary
