#!/bin/bash
# build.sh - build the storage-lab VM image (kernel + initramfs).
#
# Output (under $LAB_BUILD, default ./build):
#   vmlinuz            Debian 6.1 kernel (bzImage)
#   vmlinux            the same, decompressed ELF (PVH boot, faster under TCG)
#   initramfs.cpio     busybox + LIO/tcm_loop/dm-multipath modules + sg3-utils
#                      + multipath-tools + udev + qemu-pr-helper + /init
#   manifest.txt       package versions that went into the image
# Idempotent: downloaded .debs are cached in build/debs; the kernel tree is
# re-extracted only when the kernel package changes; the initramfs is rebuilt
# only when an input is newer than it (or with -f).
#
# Env: LAB_KERNEL_PKG  kernel package (default: what linux-image-amd64 depends on,
#                      or the one already cached)
#      LAB_KERNEL_SUITE  take the kernel from this Debian suite (e.g.
#                      trixie-backports) through a private apt configuration in
#                      $LAB_BUILD/apt (the host's mirror and keyring; the host's
#                      apt sources are not touched). Kernels that split into
#                      linux-binary/linux-modules/linux-base packages (Debian
#                      6.19+) and /usr/lib/modules layouts are handled.
#      LAB_NVME=1      add the NVMe host and target modules (nvme_core, nvme,
#                      nvme_fabrics, nvmet, nvme_loop) and nvme-cli; use with a
#                      kernel that has nvmet reservations (6.13+) and another
#                      LAB_BUILD, e.g. build/nvme (check.sh does)
#      LAB_NESTED=1    also put qemu-system-x86_64 + firmware in the image
#      LAB_LIBVIRT=1   with LAB_NESTED=1: also Debian's libvirt (libvirtd, its
#                      QEMU driver, virsh, cpu_map) and systemd-socket-activate
#                      in the nested image, for tests/libvirt.sh; use another
#                      LAB_BUILD (e.g. build/libvirt): the image is larger
#      LAB_NO_APT=1    do not apt-get install host tools (they must be present)
set -euo pipefail

LAB=$(cd "$(dirname "$0")" && pwd)
BUILD=${LAB_BUILD:-$LAB/build}
DEBS=$BUILD/debs
STAGE=$BUILD/stage
ROOT=$BUILD/root
FORCE=0
[ "${1:-}" = -f ] && FORCE=1
T_START=$(date +%s.%N)
log() { echo "[build] $*" >&2; }
die() { echo "[build] ERROR: $*" >&2; exit 1; }

mkdir -p "$DEBS"

# ---------------------------------------------------------------- host tools
HOST_PKGS="qemu-system-x86 qemu-system-common busybox-static cpio kmod xz-utils"
need_apt=0
for p in $HOST_PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_apt=1
done
if [ $need_apt = 1 ]; then
	[ "${LAB_NO_APT:-0}" = 1 ] && die "missing host packages: $HOST_PKGS"
	log "apt-get install $HOST_PKGS"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null 2>&1 || true
	apt-get install -y -qq --no-install-recommends $HOST_PKGS >/dev/null
fi

# ------------------------------------------------------------- deb download
# Guest-side packages are never installed on the host: they are downloaded
# and unpacked into $STAGE. Shared libraries that are not in $STAGE are
# taken from the host (same Debian release).
GUEST_PKGS="busybox-static sg3-utils libsgutils2-1.46-2 sg3-utils-udev
  multipath-tools kpartx liburcu8 dmsetup libdevmapper1.02.1
  udev libudev1 libsystemd-shared"
NVME=${LAB_NVME:-0}
[ "$NVME" = 1 ] && GUEST_PKGS="$GUEST_PKGS nvme-cli libnvme1 libjson-c5"
LIBVIRT=${LAB_LIBVIRT:-0}
[ "$LIBVIRT" = 1 ] && [ "${LAB_NESTED:-0}" != 1 ] && die "LAB_LIBVIRT=1 needs LAB_NESTED=1"
# libvirt's libraries that a host with QEMU lacks (yajl, libssh) come along
[ "$LIBVIRT" = 1 ] && GUEST_PKGS="$GUEST_PKGS libvirt-daemon libvirt-daemon-driver-qemu libvirt0 libvirt-clients libyajl2 libssh-4"

fetch_deb() { # fetch_deb PKG [APT-OPTIONS...] -> path of cached .deb (downloads once)
	local p=$1 f; shift
	f=$( (ls "$DEBS"/"${p}"_*.deb 2>/dev/null || true) | head -n1)
	if [ -z "$f" ]; then
		log "apt-get download $p${*:+ (from $LAB_KERNEL_SUITE)}"
		(cd "$DEBS" && apt-get "$@" download "$p" >/dev/null 2>&1) ||
			{ apt-get "$@" update -qq >/dev/null 2>&1; (cd "$DEBS" && apt-get "$@" download "$p" >/dev/null); } ||
			die "cannot download $p"
		f=$(ls "$DEBS"/"${p}"_*.deb | head -n1)
	fi
	echo "$f"
}

# KAPT: apt-get options for the kernel packages (empty: the host's sources)
KAPT=()
if [ -n "${LAB_KERNEL_SUITE:-}" ]; then
	A=$BUILD/apt
	mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/parts"
	uri=$(apt-get indextargets --format '$(REPO_URI) $(LABEL)' 'Identifier: Packages' 2>/dev/null | awk '$2 == "Debian" {print $1; exit}')
	[ -n "$uri" ] || die "LAB_KERNEL_SUITE: no Debian archive in the host's apt sources"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $LAB_KERNEL_SUITE main" > "$A/sources.list"
	KAPT=(-o "Dir::Etc::sourcelist=$A/sources.list" -o "Dir::Etc::sourceparts=$A/parts"
		-o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache")
	if ! ls "$A"/lists/*_Packages* >/dev/null 2>&1; then
		log "apt-get update ($LAB_KERNEL_SUITE, private lists in $A)"
		apt-get "${KAPT[@]}" update -qq >/dev/null 2>&1 || die "apt-get update of $LAB_KERNEL_SUITE failed"
	fi
fi
if [ -z "${LAB_KERNEL_PKG:-}" ]; then
	LAB_KERNEL_PKG=$( (ls "$DEBS"/linux-image-*-amd64_*.deb 2>/dev/null || true) | head -n1 | xargs -r basename | cut -d_ -f1)
	if [ -z "$LAB_KERNEL_PKG" ]; then
		LAB_KERNEL_PKG=$(apt-cache "${KAPT[@]}" depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
		[ -n "$LAB_KERNEL_PKG" ] || { apt-get "${KAPT[@]}" update -qq >/dev/null 2>&1;
			LAB_KERNEL_PKG=$(apt-cache "${KAPT[@]}" depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}'); }
	fi
fi
[ -n "$LAB_KERNEL_PKG" ] || die "cannot resolve the kernel package"
KDEB=$(fetch_deb "$LAB_KERNEL_PKG" "${KAPT[@]}")
KV=${LAB_KERNEL_PKG#linux-image-}
# Debian 6.19+: linux-image-KV is a meta package over linux-binary-KV
# (vmlinuz), linux-modules-KV and linux-base-KV (modules.builtin, config).
# Older images that name linux-base-KV carry all of it themselves, and their
# linux-base may be gone from the archive: a missing one is left out, and the
# unpack below fails if vmlinuz or modules.builtin is missing.
KDEBS=$KDEB
for p in linux-binary-$KV linux-modules-$KV linux-base-$KV; do
	if dpkg-deb -f "$KDEB" Depends | tr ',|' '\n\n' | awk '{print $1}' | grep -qxF "$p"; then
		if f=$(fetch_deb "$p" "${KAPT[@]}" 2>/dev/null); then KDEBS="$KDEBS $f"; else log "$p cannot be downloaded: going on without it"; fi
	fi
done

declare -A DEB
for p in $GUEST_PKGS; do DEB[$p]=$(fetch_deb "$p"); done

# ------------------------------------------------------------ kernel unpack
# Only the module subtrees the lab needs (~40 MB instead of ~400 MB); a module
# whose dependency lies elsewhere makes the modprobe check below fail loudly.
KDIR=$BUILD/kernel
KSUB="drivers/target drivers/scsi drivers/md drivers/virtio drivers/block drivers/char
  drivers/uio fs/configfs fs/9p fs/netfs fs/fscache net/9p lib crypto block arch/x86/crypto"
[ "$NVME" = 1 ] && KSUB="$KSUB drivers/nvme"
kmembers() { # kmembers DEB : the files of a kernel .deb the lab needs (either layout)
	local pre="./boot/" b d
	for b in ./lib/modules/$KV ./usr/lib/modules/$KV; do
		pre="$pre $b/vmlinuz $b/modules.builtin $b/modules.order"
		for d in $KSUB; do pre="$pre $b/kernel/$d/"; done
	done
	dpkg-deb -c "$1" | awk '{print $6}' |
		awk -v pre="$pre" 'BEGIN {n = split(pre, p, " ")} {for (i = 1; i <= n; i++) if (index($0, p[i]) == 1) {print; next}}'
}
KSTAMP="$(for f in $KDEBS; do basename "$f"; done | tr '\n' ' ')$KSUB"
if [ ! -f "$KDIR/.stamp" ] || [ "$(cat "$KDIR/.stamp")" != "$KSTAMP" ]; then
	log "unpacking $(for f in $KDEBS; do basename "$f"; done | tr '\n' ' ')"
	rm -rf "$KDIR"; mkdir -p "$KDIR"
	for f in $KDEBS; do
		kmembers "$f" > "$KDIR/.members"
		[ -s "$KDIR/.members" ] || continue
		dpkg-deb --fsys-tarfile "$f" | tar -x -C "$KDIR" --no-recursion -T "$KDIR/.members"
	done
	rm -f "$KDIR/.members"
	# merged-/usr layout (trixie): modules under usr/lib/modules, vmlinuz
	# there too from 6.19; modprobe -d and depmod -b look in lib/modules
	[ -d "$KDIR/usr/lib/modules/$KV" ] && [ ! -e "$KDIR/lib" ] && ln -s usr/lib "$KDIR/lib"
	if [ ! -f "$KDIR/boot/vmlinuz-$KV" ] && [ -f "$KDIR/lib/modules/$KV/vmlinuz" ]; then
		mkdir -p "$KDIR/boot"; cp "$KDIR/lib/modules/$KV/vmlinuz" "$KDIR/boot/vmlinuz-$KV"
	fi
	[ -f "$KDIR/boot/vmlinuz-$KV" ] && [ -f "$KDIR/lib/modules/$KV/modules.builtin" ] ||
		die "no vmlinuz or modules.builtin for $KV in $KDEBS"
	depmod -b "$KDIR" "$KV"
	# PVH-bootable ELF vmlinux: saves the xz decompression (~2.5 s under TCG)
	# (Debian kernels from trixie on are zstd-compressed: no xz stream, bzImage boot)
	off=$( (LC_ALL=C grep -aobUP '\xfd\x37\x7a\x58\x5a\x00' "$KDIR/boot/vmlinuz-$KV" || true) | head -n1 | cut -d: -f1)
	if [ -n "$off" ] && tail -c +$((off + 1)) "$KDIR/boot/vmlinuz-$KV" > "$KDIR/vmlinux.xz" &&
		xz -dc --single-stream < "$KDIR/vmlinux.xz" > "$KDIR/vmlinux" 2>/dev/null &&
		[ "$(head -c4 "$KDIR/vmlinux" | tail -c3)" = ELF ]; then :; else rm -f "$KDIR/vmlinux"; log "no vmlinux (bzImage boot only)"; fi
	rm -f "$KDIR/vmlinux.xz"
	echo "$KSTAMP" > "$KDIR/.stamp"
fi
cp -f "$KDIR/boot/vmlinuz-$KV" "$BUILD/vmlinuz"
if [ -f "$KDIR/vmlinux" ]; then cp -f "$KDIR/vmlinux" "$BUILD/vmlinux"; else rm -f "$BUILD/vmlinux"; fi

# ----------------------------------------------------------- decide rebuild
OUT=$BUILD/initramfs.cpio
NOUT=$BUILD/initramfs-nested.cpio
if [ $FORCE = 0 ] && [ -f "$OUT" ] && { [ "${LAB_NESTED:-0}" != 1 ] || [ -f "$NOUT" ]; }; then
	newer=$(find "$LAB/build.sh" "$LAB/guest" "$DEBS" "$KDIR/.stamp" -newer "$OUT" -print -quit 2>/dev/null)
	if [ -z "$newer" ]; then
		log "up to date: $OUT"
		exit 0
	fi
fi

# ------------------------------------------------------------ stage unpack
log "building $OUT: unpacking $(echo $GUEST_PKGS | wc -w) guest packages into $STAGE"
rm -rf "$STAGE"; mkdir -p "$STAGE"
for p in $GUEST_PKGS; do dpkg-deb -x "${DEB[$p]}" "$STAGE"; done

# ------------------------------------------------------------- root layout
rm -rf "$ROOT"; mkdir -p "$ROOT"
cd "$ROOT"
mkdir -p usr/bin usr/sbin usr/lib/x86_64-linux-gnu usr/lib64 \
	dev proc sys run tmp etc root mnt lab/io lab/src lab/bin etc/target/pr etc/multipath
ln -s usr/bin bin; ln -s usr/sbin sbin; ln -s usr/lib lib; ln -s usr/lib64 lib64
mkdir -p var; ln -s ../run var/run
chmod 1777 tmp

LIBPATH=$STAGE/lib/x86_64-linux-gnu:$STAGE/usr/lib/x86_64-linux-gnu:$STAGE/usr/lib/x86_64-linux-gnu/systemd:$STAGE/lib:$STAGE/usr/lib
declare -A HAVE
gpath() { # map a host/stage path to its path inside the guest
	local p=${1#"$STAGE"}
	echo "$p"
}
put_file() { # put_file SRC GUESTPATH
	local src=$1 dst=$2
	[ -n "${HAVE[$dst]:-}" ] && return 0
	mkdir -p "$ROOT$(dirname "$dst")"
	cp -L --preserve=mode "$src" "$ROOT$dst"
	HAVE[$dst]=1
}
put_elf() { # put_elf SRC [GUESTPATH] : file plus its shared-library closure
	local src=$1 dst=${2:-$(gpath "$1")} line lib
	put_file "$src" "$dst"
	while read -r line; do
		case "$line" in
		*"not found"*) die "$src: $line" ;;
		*"=> /"*) lib=${line#*=> }; lib=${lib%% (*} ;;
		/*) lib=${line%% (*} ;;
		*) continue ;;
		esac
		put_file "$lib" "$(gpath "$lib")"
	done < <(LD_LIBRARY_PATH=$LIBPATH ldd "$src" 2>/dev/null || true)
}
is_elf() { head -c4 "$1" 2>/dev/null | grep -q 'ELF'; }

# busybox: every applet as a symlink unless a real tool takes its place
put_file "$STAGE/bin/busybox" /usr/bin/busybox
"$STAGE/bin/busybox" --list-full | while read -r a; do
	case "$a" in linuxrc) continue ;; esac
	d=/usr/${a#usr/}
	[ -e "$ROOT$d" ] || ln -s /usr/bin/busybox "$ROOT$d"
done

replace() { # install an ELF over a busybox applet symlink if needed
	local src=$1 dst=$2
	[ -L "$ROOT$dst" ] && rm -f "$ROOT$dst"
	put_elf "$src" "$dst"
}

# sg3-utils (all ELF tools), multipath-tools, kpartx, dmsetup, udev
while read -r f; do
	f=${f#.}
	[ -f "$STAGE$f" ] && is_elf "$STAGE$f" && replace "$STAGE$f" "/usr/bin/$(basename "$f")"
done < <(dpkg-deb -c "${DEB[sg3-utils]}" | awk '{print $6}' | grep '^./usr/bin/')
for f in multipath multipathd mpathpersist multipathc kpartx dmsetup; do
	replace "$STAGE/sbin/$f" "/usr/sbin/$f"
done
for f in "$STAGE"/lib/multipath/*.so; do put_elf "$f" "/usr/lib/multipath/$(basename "$f")"; done
replace "$STAGE/bin/udevadm" /usr/bin/udevadm
[ "$NVME" = 1 ] && replace "$STAGE/usr/sbin/nvme" /usr/sbin/nvme
# systemd-udevd is udevadm (multi-call), linked by name
mkdir -p "$ROOT/usr/lib/systemd"; ln -sf /usr/bin/udevadm "$ROOT/usr/lib/systemd/systemd-udevd"
for f in "$STAGE"/lib/udev/*; do
	[ -f "$f" ] && is_elf "$f" && put_elf "$f" "/usr/lib/udev/$(basename "$f")"
done
mkdir -p "$ROOT/usr/lib/udev/rules.d" "$ROOT/etc/udev"
cp "$STAGE"/lib/udev/rules.d/*.rules "$ROOT/usr/lib/udev/rules.d/"
cp "$STAGE/etc/udev/udev.conf" "$ROOT/etc/udev/"
# glibc dlopen()s libgcc_s for pthread_cancel (multipathd uses it)
put_elf "$(ldconfig -p | awk '/libgcc_s.so.1 .*x86-64/{print $NF; exit}')" /usr/lib/x86_64-linux-gnu/libgcc_s.so.1
# QEMU's persistent-reservation helper (from the host's qemu-system-common)
put_elf /usr/bin/qemu-pr-helper /usr/bin/qemu-pr-helper

# ---------------------------------------------------------- kernel modules
log "kernel modules ($KV) and their dependencies"
MODS="configfs target_core_mod target_core_file target_core_iblock target_core_pscsi target_core_user
  tcm_loop scsi_mod sd_mod sg scsi_debug scsi_dh_alua scsi_dh_emc scsi_dh_rdac
  dm_mod dm_multipath dm_round_robin dm_service_time dm_queue_length
  virtio_pci virtio_scsi virtio_blk virtio_console 9p 9pnet_virtio loop"
[ "$NVME" = 1 ] && MODS="$MODS nvme_core nvme nvme_fabrics nvmet nvme_loop"
MROOT=$ROOT/usr/lib/modules/$KV
mkdir -p "$MROOT"
for m in $MODS; do
	modprobe -d "$KDIR" -S "$KV" --show-depends "$m" >/dev/null || die "module $m not in $KV"
	modprobe -d "$KDIR" -S "$KV" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | sort -u | while read -r ko; do
	rel=${ko#"$KDIR/lib/modules/$KV/"}
	mkdir -p "$MROOT/$(dirname "$rel")"
	cp "$ko" "$MROOT/$rel"
done
# compressed modules (trixie kernels: .ko.xz) are unpacked: busybox modprobe
# may not read them
find "$MROOT" -name '*.ko.xz' -exec xz -d {} +
cp "$KDIR/lib/modules/$KV"/modules.{builtin,builtin.modinfo,order} "$MROOT/"
depmod -b "$ROOT" "$KV"
# busybox modprobe looks in /lib/modules = /usr/lib/modules (merged /usr)
[ -f "$MROOT/modules.dep" ] || die "depmod failed"

# ------------------------------------------------------------- config/init
cat > etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
: > etc/group
g=0
for n in root daemon bin sys adm tty disk lp mail kmem dialout cdrom floppy tape audio video \
	input kvm render sgx users nogroup; do
	echo "$n:x:$g:" >> etc/group; g=$((g + 1))
done
sed -i 's/^nogroup:x:[0-9]*:/nogroup:x:65534:/' etc/group
echo 'hosts: files' > etc/nsswitch.conf
echo storage-lab > etc/hostname
cp "$LAB/guest/multipath.conf" etc/multipath.conf
install -m 0755 "$LAB/guest/init" init
mkdir -p lab; install -m 0644 "$LAB/guest/lib.sh" lab/lib.sh

# ----------------------------------------------------------------- manifest
{
	echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "kernel: $LAB_KERNEL_PKG $(dpkg-deb -f "$KDEB" Version)${LAB_KERNEL_SUITE:+ ($LAB_KERNEL_SUITE)}"
	for p in $GUEST_PKGS; do echo "guest: $p $(dpkg-deb -f "${DEB[$p]}" Version)"; done
	for p in $HOST_PKGS; do echo "host: $p $(dpkg-query -W -f='${Version}' "$p")"; done
} > "$BUILD/manifest.txt"

# ------------------------------------------------------------------- pack
# uncompressed: gunzip of the image costs ~1 s per boot under TCG
pack() { find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0 > "$1.tmp" && mv "$1.tmp" "$1"; }
log "packing $OUT"
pack "$OUT"
log "image: $OUT ($(du -h "$OUT" | cut -f1), $(find . | wc -l) files, $(du -sh . | cut -f1) unpacked), kernel $KV"

# optional nested image: the same plus qemu-system-x86_64, so that QEMU itself
# (-object pr-manager-helper + -device scsi-block) can be the helper's client
# inside the lab VM; the inner guest boots the plain image from a 9p share.
if [ "${LAB_NESTED:-0}" = 1 ]; then
	log "nested image: adding qemu-system-x86_64 and its firmware"
	put_elf /usr/bin/qemu-system-x86_64
	put_elf /usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so
	for f in bios-256k.bin linuxboot_dma.bin pvh.bin kvmvapic.bin; do
		for d in /usr/share/qemu /usr/share/seabios; do
			[ -e "$d/$f" ] && { put_file "$d/$f" "/usr/share/qemu/$f"; break; }
		done
	done
	if [ "$LIBVIRT" = 1 ]; then
		# libvirtd with only its QEMU driver (the others are optional
		# modules), virsh, the CPU map the QEMU driver reads, and systemd's
		# socket-activation tool (the host's systemd, as the udev packages)
		log "nested image: adding libvirt (libvirtd, QEMU driver, virsh) and systemd-socket-activate"
		put_elf "$STAGE/usr/sbin/libvirtd" /usr/sbin/libvirtd
		put_elf "$STAGE/usr/bin/virsh" /usr/bin/virsh
		put_elf "$STAGE/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so" \
			/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so
		mkdir -p "$ROOT/usr/share/libvirt" "$ROOT/etc/libvirt"
		cp -r "$STAGE/usr/share/libvirt/cpu_map" "$ROOT/usr/share/libvirt/"
		put_elf /usr/bin/systemd-socket-activate /usr/bin/systemd-socket-activate
	fi
	pack "$NOUT"
	echo "nested: qemu-system-x86 $(dpkg-query -W -f='${Version}' qemu-system-x86)" >> "$BUILD/manifest.txt"
	log "nested image: $NOUT ($(du -h "$NOUT" | cut -f1))"
else
	rm -f "$NOUT"
fi
T_END=$(date +%s.%N)
log "build took $(awk "BEGIN{printf \"%.1f\", $T_END-$T_START}")s"
