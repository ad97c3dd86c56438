// Package device tells what a file descriptor received from QEMU refers to, and
// which logical unit (LU) it reaches, using only fstat(2) and sysfs: no SCSI
// commands and no ioctls that need privilege.
//
// The answer drives two decisions in prhelper: which backend may serve the fd
// (SG_IO needs a SCSI device, IOC_PR_* refuses partitions — block/ioctl.c
// blkdev_pr_allowed — and dm-multipath wants the multipath backend, see
// docs/pr-helper-protocol.md §4.6, §4.11; docs/linux-pr.md §2), and under which key the software
// emulation keeps the SPC-4 persistent-reservation state of the LU. That key,
// Info.ID and Info.LUID, must be the same on every host that sees the LU, so it
// is taken from identifiers the storage itself reports (the kernel's wwid
// attribute, VPD page 83h, the dm uuid multipathd derives from them), never from
// host-local names such as sda or dm-0.
//
// Classify is the Linux entry point; the classification itself works on a
// fstat result and a sysfs root (Sysfs.Root) so tests run it against fake trees.
package device
