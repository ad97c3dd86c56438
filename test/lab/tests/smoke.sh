# smoke test: one LIO fileio LU through one tcm_loop nexus, and the Go binaries
uname -a
lab_lio_setup 1 64
ls -l /dev/sd* /dev/sg*
lab_expect 0 sg_inq $LAB_DEV1
lab_expect 0 sg_persist -n -i -k $LAB_DEV1
lab_ok "/lab/bin holds the Go binaries" ls -l /lab/bin/
for b in /lab/bin/*; do lab_ok "$b is a static executable that runs" sh -c "$b -h >/dev/null 2>&1 || $b --help >/dev/null 2>&1 || [ \$? -le 2 ]"; done
lab_summary
