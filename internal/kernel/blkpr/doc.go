// Package blkpr is the Linux block layer's persistent-reservation interface,
// <linux/pr.h>: the argument structs of the IOC_PR_* ioctls with their request
// numbers (encoded for each architecture's ioctl layout), the enum pr_type and
// enum pr_status values and the mapping of pr_type to SCSI reservation types,
// plus the two <linux/nvme_ioctl.h> ioctls (NVME_IOCTL_ID, NVME_IOCTL_IO_CMD)
// a caller needs to read an NVMe namespace's reservations on kernels without
// IOC_PR_READ_*. It issues ioctls and nothing else: translating SCSI commands
// into them is the linuxpr backend's job.
//
// The struct layouts are checked field by field against the kernel headers in
// ioctl_linux_test.go.
package blkpr
