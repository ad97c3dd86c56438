// Package dm talks to the Linux device mapper through its control node
// (/dev/mapper/control) and reads the tables and status of dm-multipath maps.
//
// prhelper needs it for the dm-multipath backend: a PERSISTENT RESERVE OUT
// sent to a multipath map has to reach every path of the map (SPC-4 §5.14.7:
// a registration belongs to one I_T nexus), so the backend must know the
// paths, which ones the kernel considers usable, and what the disks behind
// them are called. qemu-pr-helper asks the kernel the same question the same
// way: DM_TABLE_STATUS on the fd's device number, and a map is multipath when
// its first target is of type "multipath" (docs/pr-helper-protocol.md §4.11).
//
// The package has three layers:
//
//   - the ioctl codec (struct dm_ioctl and struct dm_target_spec of
//     include/uapi/linux/dm-ioctl.h), pure functions over bytes;
//   - Control, an open control node that issues DM_VERSION and
//     DM_TABLE_STATUS through an injectable ioctl function, so that tests
//     feed it the kernel's bytes;
//   - parsers of the "multipath" target's table and status lines as
//     drivers/md/dm-mpath.c (multipath_status) prints them, also pure.
//
// It is a leaf: naming a path device and reading its state from sysfs is
// package device's (PathName, PathState), which builds on this one. The
// control ioctls need CAP_SYS_ADMIN (drivers/md/dm-ioctl.c
// ctl_ioctl: "only root can play with this"); without it they fail with
// EACCES. Nothing here changes a map.
package dm
