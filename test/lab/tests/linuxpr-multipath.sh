# prhelper --backend=linuxpr on a dm-multipath map over two tcm_loop nexuses of
# one LIO LU, with a third nexus outside the map playing another host: the
# kernel's IOC_PR_REGISTER reaches every path of the map (one registration per
# I_T nexus, seen through the third path), RESERVE and CLEAR behave. PR IN on
# Linux 6.1 (no IOC_PR_READ_*) goes out through the SG_IO fallback.
lab_need_bin prhelper prpersist
lab_mpath_setup; C=$LAB_OTHER
M=$LAB_MPATH
multipath -ll
S=/run/prh.sock
lab_helper_start prhelper $S --backend=linuxpr -v
PRH=$LAB_HELPER_PID
lab_expect_out 0 "backend:  linuxpr" /lab/bin/prhelper --backend=linuxpr --explain $M
lab_expect_out 0 "backend:  mpath" /lab/bin/prhelper --explain $M   # the default, auto, picks the multipath backend
P="/lab/bin/prpersist --socket $S"
# read a PR IN through the other host's path, once more after a unit attention
other() { sg_persist -n "$@" $C >/dev/null 2>&1; sg_persist -n "$@" $C; }

lab_expect 0 $P --out --register --param-sark=0xabc $M
lab_expect_out 0 'Key=0xabc' other -i -s
lab_ok "REGISTER through the map registered both of its paths (2 registrations of 0xabc)" \
	[ "$(printf '%s\n' "$LAB_OUT" | grep -c 'Key=0xabc')" = 2 ]
lab_expect_out 0 '0xabc' $P -k $M
lab_expect 0 $P --out --reserve --param-rk=0xabc --prout-type=5 $M
lab_expect_out 0 'Key=0xabc' other -i -r
lab_out_has 'Write Exclusive, registrants only'
lab_expect 24 sg_persist -n --out --reserve --param-rk=0xdef --prout-type=5 $C
lab_expect 0 $P --out --clear --param-rk=0xabc $M
lab_expect_out 0 'NO registered reservation keys' other -i -k
lab_helper_stop $PRH
echo "== prhelper log:"; cat /tmp/prh.sock.log
lab_summary
