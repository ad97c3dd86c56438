#!/bin/bash
# scripts/package.sh - build the Debian package dist/prhelper_VERSION_ARCH.deb
# with dpkg-deb (no other tool): the static binaries prhelper, prpersist and
# prhelperctl (when cmd/prhelperctl exists in this tree; it says so when not),
# the systemd units of contrib/systemd (ExecStart=/usr/bin/prhelper
# --config=/etc/prhelper/prhelper.conf), the commented default configuration
# /etc/prhelper/prhelper.conf (a conffile), the manual pages of docs/man and
# bash completion.
#
# The package installs beside Debian's qemu-system-common: it ships no file of
# it (qemu-pr-helper and its manual page stay), and it does not enable its
# socket: "systemctl enable --now prhelper.socket" takes over
# /run/qemu-pr-helper.sock, the path QEMU and libvirt use.
#
# Env: VERSION  package version (default: 0.1.0~gitYYYYMMDD.HASH of HEAD, plus
#               .dirty for uncommitted changes)
#      ARCH     Debian architecture (default: dpkg --print-architecture); the
#               Go target follows it (amd64, arm64, ppc64el, s390x, riscv64)
#      DIST     output directory (default: dist)
# Prints the path of the package on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
say() { echo "[package] $*" >&2; }
command -v go >/dev/null || { say "Go 1.26 or newer is needed (see README.md)"; exit 1; }
command -v dpkg-deb >/dev/null || { say "dpkg-deb is needed (Debian's dpkg)"; exit 1; }

ARCH=${ARCH:-$(dpkg --print-architecture)}
case $ARCH in
amd64 | arm64 | s390x | riscv64) GOARCH=$ARCH ;;
ppc64el) GOARCH=ppc64le ;;
i386) GOARCH=386 ;;
armhf) GOARCH=arm ;;
*) say "architecture $ARCH: no Go target known"; exit 1 ;;
esac
if [ -z "${VERSION:-}" ]; then
	if git rev-parse --git-dir >/dev/null 2>&1; then
		VERSION="0.1.0~git$(git log -1 --format=%cd --date=format:%Y%m%d).$(git rev-parse --short=12 HEAD)"
		[ -z "$(git status --porcelain --untracked-files=no)" ] || VERSION="$VERSION.dirty"
	else
		VERSION=0.1.0
	fi
fi
DIST=${DIST:-dist}
mkdir -p "$DIST"
DEB=$DIST/prhelper_${VERSION}_${ARCH}.deb

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
P=$STAGE/pkg
mkdir -p "$P/DEBIAN" "$P/usr/bin" "$P/usr/lib/systemd/system" "$P/etc/prhelper" \
	"$P/usr/share/man/man8" "$P/usr/share/man/man5" "$P/usr/share/bash-completion/completions" \
	"$P/usr/share/doc/prhelper"

# ---------------------------------------------------------------- binaries
CMDS="prhelper prpersist"
if [ -d cmd/prhelperctl ]; then
	CMDS="$CMDS prhelperctl"
else
	say "cmd/prhelperctl is not in this tree: the package has no prhelperctl binary (its manual page is still installed)"
fi
say "building $CMDS for linux/$GOARCH (CGO_ENABLED=0, version $VERSION)"
for c in $CMDS; do
	CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH go build -trimpath -ldflags "-s -w -X main.version=$VERSION" \
		-o "$P/usr/bin/$c" "./cmd/$c"
done

# ------------------------------------------------------------ systemd units
sed 's#^ExecStart=.*#ExecStart=/usr/bin/prhelper --config=/etc/prhelper/prhelper.conf#' \
	contrib/systemd/prhelper.service > "$P/usr/lib/systemd/system/prhelper.service"
cp contrib/systemd/prhelper.socket "$P/usr/lib/systemd/system/prhelper.socket"
grep -qx 'ExecStart=/usr/bin/prhelper --config=/etc/prhelper/prhelper.conf' "$P/usr/lib/systemd/system/prhelper.service" ||
	{ say "contrib/systemd/prhelper.service has no ExecStart line to rewrite"; exit 1; }

# ----------------------------------------------- configuration, docs, completion
install -m 0644 contrib/prhelper.conf "$P/etc/prhelper/prhelper.conf"
for m in docs/man/*.[1-8]; do
	s=${m##*.}
	gzip -9n < "$m" > "$P/usr/share/man/man$s/$(basename "$m").gz"
done
install -m 0644 contrib/bash-completion/prhelper "$P/usr/share/bash-completion/completions/prhelper"
ln -s prhelper "$P/usr/share/bash-completion/completions/prpersist"
ln -s prhelper "$P/usr/share/bash-completion/completions/prhelperctl"
gzip -9n < README.md > "$P/usr/share/doc/prhelper/README.md.gz"
# the units' Documentation= names security.md; fencing and the store faults
# are what an operator reads next
for d in security fencing store-faults; do
	[ -f "docs/$d.md" ] && install -m 0644 "docs/$d.md" "$P/usr/share/doc/prhelper/$d.md"
done

# ------------------------------------------------------------- control data
echo /etc/prhelper/prhelper.conf > "$P/DEBIAN/conffiles"
cat > "$P/DEBIAN/postinst" <<'SH'
#!/bin/sh
# reload systemd's units; the socket is not enabled here (README: Debian package)
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
SH
cat > "$P/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
SH
cat > "$P/DEBIAN/prerm" <<'SH'
#!/bin/sh
# stop the helper and its socket before the files go away
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop prhelper.socket prhelper.service >/dev/null 2>&1 || true
fi
exit 0
SH
chmod 0755 "$P/DEBIAN/postinst" "$P/DEBIAN/postrm" "$P/DEBIAN/prerm"
SIZE=$(du -sk --exclude=DEBIAN "$P" | cut -f1)
cat > "$P/DEBIAN/control" <<CTL
Package: prhelper
Version: $VERSION
Architecture: $ARCH
Maintainer: ${DEB_MAINTAINER:-prhelper developers <prhelper@localhost>}
Installed-Size: $SIZE
Section: admin
Priority: optional
Suggests: qemu-system-common, sg3-utils, multipath-tools
Homepage: ${DEB_HOMEPAGE:-https://github.com/prhelper/prhelper}
Description: persistent reservation helper for QEMU (qemu-pr-helper drop-in)
 prhelper answers the SCSI PERSISTENT RESERVE commands that QEMU's
 pr-manager-helper passes over a Unix socket, with qemu-pr-helper's
 protocol, flags and replies: SG_IO passthrough, dm-multipath maps on every
 path, the <linux/pr.h> ioctls (NVMe), or reservations emulated in SQLite
 or etcd. It installs beside qemu-system-common's qemu-pr-helper.
 .
 Includes prpersist (sg_persist through a helper socket), systemd socket and
 service units (not enabled), manual pages and bash completion.
CTL
(cd "$P" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$P/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$P" "$DEB" >/dev/null
say "built $DEB ($(du -h "$DEB" | cut -f1)): $(dpkg-deb -c "$DEB" | grep -c '^-') files"
echo "$DEB"
