# prhelper --backend=linuxpr started as an unprivileged user (nobody, through
# su: no capability in its effective or permitted set) on Linux 6.1, with a
# socket in a directory that user owns and an sd node it may open read-write:
#   - start-up skips the privilege drop with an info line (nothing to drop);
#   - PR OUT goes out as IOC_PR_*, which Linux before 6.5 refuses without
#     CAP_SYS_ADMIN (EPERM): CHECK CONDITION 0B/00/06 and a log line saying
#     CAP_SYS_ADMIN is needed before Linux 6.5;
#   - PR IN (no IOC_PR_READ_* in 6.1) goes out through the SG_IO fallback, which
#     the kernel refuses for PR opcodes without CAP_SYS_RAWIO (EPERM): CHECK
#     CONDITION 0B/00/06 and a log line saying CAP_SYS_RAWIO is needed;
#   - the same commands through the same socket path from a root prhelper work,
#     so the refusals are the capabilities and nothing else.
lab_need_bin prhelper prraw
lab_lio_setup 1 64
D=$LAB_DEV1
chown nobody:nogroup $D && chmod 600 $D
ls -l $D
mkdir -p /tmp/unpriv && chown nobody:nogroup /tmp/unpriv
S=/tmp/unpriv/prh.sock
LOG=/tmp/unpriv.log
# as_nobody CMD... : run CMD as nobody:nogroup (busybox su: setgroups, setgid,
#   setuid, so no capabilities are left; "--" keeps su off CMD's options)
as_nobody() { su -s /bin/sh -c 'exec "$@"' -- nobody sh "$@"; }

lab_expect_out 0 'uid=65534.*gid=65534' as_nobody id
rm -f $S
# su and sh exec, so $! is prhelper's pid (as_nobody in the background would be a subshell)
su -s /bin/sh -c 'exec "$@"' -- nobody sh /lab/bin/prhelper -k $S --backend=linuxpr -v >> $LOG 2>&1 &
PRH=$!
lab_wait 30 grep -q 'prhelper ready' $LOG || { cat $LOG; lab_die "unprivileged prhelper did not start"; }
lab_ok "socket $S created" test -S $S
lab_log "unprivileged prhelper pid $PRH listening on $S"
grep -E '^(Name|Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb):' /proc/$PRH/status
lab_ok "prhelper runs as nobody" [ "$(lab_status_field /proc/$PRH/status Uid)" = "65534 65534 65534 65534" ]
lab_ok "prhelper has no effective capability" [ "$(lab_status_field /proc/$PRH/status CapEff)" = 0000000000000000 ]
lab_ok "prhelper has no permitted capability" [ "$(lab_status_field /proc/$PRH/status CapPrm)" = 0000000000000000 ]
lab_ok "start-up skipped the privilege drop with an info line" \
	grep -q 'level=INFO msg="not started as root: keeping the privileges it was started with"' $LOG

REG="5f 00 00 00 00 00 00 00 18 00"
PARAM="0000000000000000 0000000000000777 0000000000000000"
READKEYS="5e 00 00 00 00 00 00 20 00 00"
echo "== PR OUT REGISTER (IOC_PR_REGISTER) as nobody"
lab_expect_out 2 'sense key/asc/ascq: b/00/06' as_nobody /lab/bin/prraw $S $D "$REG" "$PARAM"
lab_out_has '^status: 0x02 CHECK CONDITION' "PR OUT: CHECK CONDITION"
lab_out_has '^sense: 70 00 0b 00 00 00 00 0a 00 00 00 00 00 06( 00)+$' "PR OUT: fixed sense 0B/00/06, the rest zero"
lab_ok "PR OUT: the log says IOC_PR_REGISTER got EPERM and CAP_SYS_ADMIN is needed before Linux 6.5" \
	grep -q 'IOC_PR_REGISTER on fd [0-9]*: operation not permitted: .*needs CAP_SYS_ADMIN before Linux 6.5' $LOG
echo "== PR IN READ KEYS (SG_IO fallback) as nobody"
lab_expect_out 2 'sense key/asc/ascq: b/00/06' as_nobody /lab/bin/prraw $S $D "$READKEYS"
lab_out_has '^status: 0x02 CHECK CONDITION' "PR IN: CHECK CONDITION"
lab_out_has '^sense: 70 00 0b 00 00 00 00 0a 00 00 00 00 00 06( 00)+$' "PR IN: fixed sense 0B/00/06, the rest zero"
lab_ok "PR IN: the log says SG_IO got EPERM and needs CAP_SYS_RAWIO" \
	grep -q 'SG_IO fallback (no IOC_PR_READ_\*): .*operation not permitted.*needs CAP_SYS_RAWIO' $LOG
lab_ok "LIO saw no registration" grep -q None $LAB_BS/pr/res_pr_registered_i_pts
lab_ok "unprivileged prhelper still alive" kill -0 $PRH
lab_helper_stop $PRH
echo "== unprivileged prhelper log"; cat $LOG

echo "== the same as root (prhelper keeps CAP_SYS_ADMIN and CAP_SYS_RAWIO)"
lab_helper_start prhelper /run/root.sock --backend=linuxpr
lab_expect 0 /lab/bin/prraw /run/root.sock $D "$REG" "$PARAM"
lab_expect_out 0 '00 00 00 00 00 00 07 77' /lab/bin/prraw /run/root.sock $D "$READKEYS"
lab_expect 0 /lab/bin/prraw /run/root.sock $D "$REG" "0000000000000777 0000000000000000 0000000000000000"
lab_helper_stop $LAB_HELPER_PID
lab_ok "no panic in the logs" sh -c "! grep -qi panic $LOG /tmp/root.sock.log"
lab_summary
