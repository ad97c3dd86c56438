#!/bin/bash
# scripts/package-test.sh - install the Debian package into a clean Debian 12
# (bookworm) chroot and check it there: beside qemu-system-common (no file of
# either package is the other's; qemu-pr-helper stays), systemd-analyze verify
# of the installed units, man on each installed page, the bash completion, the
# installed prhelper serving an emulated disk image through prpersist, the
# configuration file as installed, and removal (the conffile stays until purge).
#
# Not run by scripts/test.sh (it needs the network and a few minutes): run it as
# root after scripts/package.sh, or let it build the package itself.
#   scripts/package-test.sh [DEB]
# The chroot's base (debootstrap --variant=minbase bookworm, plus
# qemu-system-common, systemd and man-db) is made once and kept as a tarball in
# $PKGTEST_CACHE (default ~/.cache/prhelper); every run unpacks a fresh copy
# into a temporary directory. First run: about 4 minutes and 400 MB download
# here; later runs: about 30 s. Env: PKGTEST_MIRROR (default: the host's first
# Debian URI, else http://deb.debian.org/debian).
# Ends with "package-test: N passed, N failed" (exit 1 on a failure).
set -uo pipefail
cd "$(dirname "$0")/.."
say() { echo "[package-test] $*"; }
[ "$(id -u)" = 0 ] || { say "needs root (debootstrap, chroot)"; exit 1; }
if ! command -v debootstrap >/dev/null; then
	say "installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null || { say "cannot install debootstrap"; exit 1; }
fi

DEB=${1:-}
if [ -z "$DEB" ]; then
	DEB=$(scripts/package.sh | tail -n1) || { say "scripts/package.sh failed"; exit 1; }
fi
[ -f "$DEB" ] || { say "no package $DEB"; exit 1; }
say "package: $DEB"

CACHE=${PKGTEST_CACHE:-$HOME/.cache/prhelper}
BASE=$CACHE/bookworm-pkgtest-base.tar
mkdir -p "$CACHE"
if [ ! -s "$BASE" ]; then
	MIRROR=${PKGTEST_MIRROR:-$(apt-get indextargets --format '$(REPO_URI) $(LABEL)' 'Identifier: Packages' 2>/dev/null | awk '$2 == "Debian" {print $1; exit}')}
	MIRROR=${MIRROR:-http://deb.debian.org/debian/}
	say "making the base chroot once: debootstrap --variant=minbase bookworm from $MIRROR (cached in $BASE)"
	B=$(mktemp -d "$CACHE/base.XXXXXX")
	if ! debootstrap --variant=minbase --include=qemu-system-common,systemd,man-db bookworm "$B" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1; then
		say "debootstrap failed; tail of $CACHE/debootstrap.log:"; tail -n 20 "$CACHE/debootstrap.log"; rm -rf "$B"; exit 1
	fi
	rm -rf "$B"/var/cache/apt/archives/*.deb
	tar -C "$B" -cf "$BASE.tmp" . && mv "$BASE.tmp" "$BASE"
	rm -rf "$B"
fi

C=$(mktemp -d /var/tmp/prhelper-pkgtest.XXXXXX)
cleanup() {
	umount "$C/proc" 2>/dev/null
	rm -rf --one-file-system "$C"
}
trap cleanup EXIT
tar -C "$C" -xf "$BASE"
chmod 0755 "$C" # the chroot's / (tar restored mktemp's 0700): mandb's trigger runs as the man user
mount -t proc proc "$C/proc"
cp "$DEB" "$C/tmp/prhelper.deb"
inroot() { chroot "$C" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME=/root "$@"; }

pass=0 fail=0
ok() { # ok DESC CMD... : a check, judged on CMD's exit status
	local d=$1; shift
	if "$@"; then pass=$((pass + 1)); say "PASS $d"; else fail=$((fail + 1)); say "FAIL $d"; fi
}

say "the chroot: $(inroot dpkg-query -W -f='${Package} ${Version}\n' qemu-system-common systemd man-db | tr '\n' ' ')"
out=$(inroot dpkg -i /tmp/prhelper.deb 2>&1); rc=$?
echo "$out" | sed 's/^/    /'
ok "dpkg -i exits 0" [ $rc = 0 ]
ok "no file of another package overwritten, no error" sh -c '! printf "%s\n" "$1" | grep -qiE "overwrite|error"' _ "$out"
ok "prhelper installed" sh -c "chroot '$C' dpkg-query -W -f='\${Status}' prhelper | grep -q 'install ok installed'"
ok "qemu-pr-helper is still qemu-system-common's" sh -c "chroot '$C' dpkg -S /usr/bin/qemu-pr-helper | grep -q '^qemu-system-common:'"
# no path (other than directories) in both packages
both=$(comm -12 <(inroot dpkg -L prhelper | sort) <(inroot dpkg -L qemu-system-common | sort) |
	while read -r f; do [ -d "$C$f" ] || echo "$f"; done)
ok "no path in both packages${both:+: $both}" [ -z "$both" ]
inroot prhelper --version | sed 's/^/    /'
ok "prhelper --version runs" sh -c "chroot '$C' /usr/bin/prhelper --version | grep -q prhelper"
ok "prpersist runs" sh -c "chroot '$C' /usr/bin/prpersist --help 2>&1 | grep -q '^Usage: prpersist'"
if inroot test -e /usr/bin/prhelperctl; then
	ok "prhelperctl runs" sh -c "chroot '$C' /usr/bin/prhelperctl --help >/dev/null 2>&1 || chroot '$C' /usr/bin/prhelperctl --help 2>&1 | grep -qi usage"
else
	say "no /usr/bin/prhelperctl in this package (built from a tree without cmd/prhelperctl)"
fi

out=$(inroot systemd-analyze verify prhelper.socket prhelper.service 2>&1); rc=$?
echo "$out" | sed 's/^/    /'
ok "systemd-analyze verify prhelper.socket prhelper.service: exit 0, no finding" sh -c '[ "$1" = 0 ] && [ -z "$2" ]' _ $rc "$out"
ok "the socket unit listens where QEMU and libvirt look" sh -c "grep -qx 'ListenStream=/run/qemu-pr-helper.sock' '$C/usr/lib/systemd/system/prhelper.socket'"
ok "the service runs the packaged binary with the packaged configuration" \
	sh -c "grep -qx 'ExecStart=/usr/bin/prhelper --config=/etc/prhelper/prhelper.conf' '$C/usr/lib/systemd/system/prhelper.service'"
ok "the socket is not enabled by the package" sh -c "[ -z \"\$(find '$C/etc/systemd/system' -name 'prhelper*')\" ]"

for p in "8 prhelper" "8 prpersist" "8 prhelperctl" "5 prhelper.conf"; do
	set -- $p
	out=$(inroot sh -c "MANWIDTH=80 man --warnings $1 $2" 2>&1); rc=$?
	ok "man $1 $2 renders from the installed package" sh -c '[ "$1" = 0 ] && printf "%s\n" "$2" | grep -q "^NAME" && ! printf "%s\n" "$2" | grep -qi warning' _ $rc "$out"
done
ok "man 8 qemu-pr-helper is still there" sh -c "chroot '$C' man -w 8 qemu-pr-helper >/dev/null"

comp=$(inroot bash -c '. /usr/share/bash-completion/completions/prhelper
	COMP_WORDS=(prhelper --back); COMP_CWORD=1; _prhelper_complete; echo "${COMPREPLY[*]}"
	COMP_WORDS=(prhelper --backend ""); COMP_CWORD=2; _prhelper_complete; echo "${COMPREPLY[*]}"
	COMP_WORDS=(prpersist --param-s); COMP_CWORD=1; _prhelper_complete; echo "${COMPREPLY[*]}"' 2>&1)
echo "$comp" | sed 's/^/    completion: /'
ok "bash completion completes prhelper --back, the backends and prpersist --param-s" \
	sh -c 'printf "%s\n" "$1" | sed -n 1p | grep -qx -- "--backend=" && printf "%s\n" "$1" | sed -n 2p | grep -q "mpath" && printf "%s\n" "$1" | sed -n 3p | grep -qx -- "--param-sark="' _ "$comp"

# the installed binaries at work: an emulated disk image, as the README shows
out=$(inroot sh -c '
	truncate -s 1M /tmp/disk.img
	prhelper --backend=emulate --db=/tmp/pr.db -k /tmp/prh.sock 2>/tmp/prh.log &
	p=$!; i=0; while [ ! -S /tmp/prh.sock ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
	prpersist --socket=/tmp/prh.sock --out --register --param-sark=0x1 /tmp/disk.img; r1=$?
	prpersist --socket=/tmp/prh.sock -k /tmp/disk.img; r2=$?
	kill $p; wait $p; echo "rc=$r1,$r2"; cat /tmp/prh.log' 2>&1)
echo "$out" | sed 's/^/    /'
ok "installed prhelper + prpersist: REGISTER then READ KEYS on a disk image" \
	sh -c 'printf "%s\n" "$1" | grep -q "rc=0,0" && printf "%s\n" "$1" | grep -q "0x1"' _ "$out"
out=$(inroot prhelper --config=/etc/prhelper/prhelper.conf --explain=/etc/hostname 2>&1); rc=$?
echo "$out" | sed 's/^/    /'
ok "the installed configuration file parses (--explain with it)" [ $rc = 0 ]

inroot dpkg -r prhelper >/dev/null 2>&1
ok "dpkg -r: binaries gone, conffile kept, qemu-pr-helper kept" \
	sh -c "[ ! -e '$C/usr/bin/prhelper' ] && [ -f '$C/etc/prhelper/prhelper.conf' ] && [ -x '$C/usr/bin/qemu-pr-helper' ]"
inroot dpkg -P prhelper >/dev/null 2>&1
ok "dpkg -P: the configuration goes too" [ ! -e "$C/etc/prhelper/prhelper.conf" ]

say "package-test: $pass passed, $fail failed"
[ $fail = 0 ]
