# Benchmark (not a test): the mixed PR IN/OUT sequence of issue 14 (the first
# $1 steps of prgen seed $2, default 2000 and 14) from 3 initiators, one connection
# each, in order, through prhelper --backend=sgio, through qemu-pr-helper and
# with direct SG_IO on the same LIO disk; the LU is cleared before each
# replay, so every path must end with the same status counts. Then READ KEYS
# at 1 and 16 clients. Run by scripts/bench.sh lab (BENCH=mixed bench.sh).
# Args: [STEPS] [SEED] [REV] [ENVS] [ROUNDS]: with REV (BASE=REV bench.sh; "-" for
# none), also /lab/bin/prhelper-base, named prhelper@REV; with ENVS
# (ENVS="VAR=VALUE ..." bench.sh, space-separated), a further prhelper of the
# same binary for each setting, started with it in its environment and named
# "prhelper/VAR:VALUE" (e.g. GOMAXPROCS=1: a setting compared in one run);
# ROUNDS (default 1): prbench -rounds, each path replaying the sequence once a
# round, the paths taking turns (READ KEYS rows: their requests split over the
# rounds), so that a change of the host's load falls on every path.
lab_need_bin prbench prgen prhelper
lab_lio_backstore disk0 64
bs=$LAB_BS devs="" rtpis=""
for i in 1 2 3; do
	lab_lio_path $i $bs
	rtpi=$(cat $LAB_TPG/lun/lun_0/statistics/scsi_port/indx 2>/dev/null)
	[ -n "$rtpi" ] || lab_die "no RTPI in $LAB_TPG/lun/lun_0/statistics/scsi_port/indx"
	devs="$devs${devs:+,}$LAB_DEV" rtpis="$rtpis${rtpis:+,}$rtpi"
done
lab_helper_start prhelper /run/prhelper.sock --backend=sgio; P1=$LAB_HELPER_PID
lab_helper_start qemu-pr-helper /run/qemu-pr-helper.sock; P2=$LAB_HELPER_PID
P3= base=
if [ -n "${3:-}" ] && [ "$3" != - ] && [ -x /lab/bin/prhelper-base ]; then
	# $3: the revision bench.sh built /lab/bin/prhelper-base from (BASE=REV)
	rm -f /run/prhelper-base.sock
	/lab/bin/prhelper-base -k /run/prhelper-base.sock --backend=sgio >> /tmp/prhelper-base.sock.log 2>&1 &
	P3=$!
	lab_wait 30 test -S /run/prhelper-base.sock || { cat /tmp/prhelper-base.sock.log; lab_die "prhelper@$3 did not listen"; }
	base="-helper prhelper@$3=/run/prhelper-base.sock"
fi
envpids= envs= k=0
for e in ${4:-}; do
	k=$((k + 1))
	rm -f /run/prhelper-env$k.sock
	env "$e" /lab/bin/prhelper -k /run/prhelper-env$k.sock --backend=sgio >> /tmp/prhelper-env$k.sock.log 2>&1 &
	envpids="$envpids $!"
	lab_wait 30 test -S /run/prhelper-env$k.sock || { cat /tmp/prhelper-env$k.sock.log; lab_die "prhelper with $e did not listen"; }
	envs="$envs -helper prhelper/${e//=/:}=/run/prhelper-env$k.sock" # -helper splits at the first =
done
prgen -print -rtpi $rtpis -seed ${2:-14} -steps ${1:-2000} -dump /tmp/seq.txt >/dev/null
echo "== load in the VM: $(uptime)"
echo "== vCPUs in the VM: $(nproc); clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
lab_expect 0 prbench -dev $devs $base -prhelper /run/prhelper.sock $envs -qemu /run/qemu-pr-helper.sock \
	-workload serial,readkeys -clients 1,16 -seq /tmp/seq.txt -reset -n ${1:-2000} -rounds ${5:-1}
lab_helper_stop $P1; lab_helper_stop $P2
[ -z "$P3" ] || lab_helper_stop $P3
for p in $envpids; do lab_helper_stop $p; done
lab_summary
