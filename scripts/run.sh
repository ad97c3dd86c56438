#!/bin/bash
# scripts/run.sh - build prhelper and run it in the foreground, in place of
# qemu-pr-helper: by default on /var/run/qemu-pr-helper.sock, the path QEMU,
# libvirt and the qemu-pr-helper systemd unit use. Extra arguments are passed to
# prhelper (see bin/prhelper --help), e.g.  scripts/run.sh -k /run/my.sock -v
# It needs root (SG_IO with PR commands needs CAP_SYS_RAWIO). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
if [ "$(id -u)" != 0 ]; then
	echo "run: not root: PR commands through SG_IO need CAP_SYS_RAWIO, so they will fail with 0B/00/06" >&2
fi
mkdir -p /var/run 2>/dev/null || true
exec ./bin/prhelper "$@"
