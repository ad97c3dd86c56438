package sandbox

import "golang.org/x/sys/unix"

// auditArch is the AUDIT_ARCH_* value of the calls the filter accepts
// (linux/audit.h); x32 marks the x32 ABI's numbers to be refused.
const (
	auditArch = unix.AUDIT_ARCH_X86_64
	x32       = true
)

// legacyCalls are x86-64's calls that arm64 has only in their *at or newer
// forms; the C-library layer of modernc.org/sqlite and os/exec still use them.
var legacyCalls = []uint32{
	unix.SYS_OPEN, unix.SYS_STAT, unix.SYS_LSTAT, unix.SYS_ACCESS, unix.SYS_READLINK,
	unix.SYS_UNLINK, unix.SYS_RENAME, unix.SYS_MKDIR, unix.SYS_RMDIR, unix.SYS_CHMOD,
	unix.SYS_CHOWN, unix.SYS_LCHOWN, unix.SYS_GETDENTS, unix.SYS_POLL, unix.SYS_SELECT,
	unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_CREATE, unix.SYS_PIPE, unix.SYS_DUP2,
	unix.SYS_TIME, unix.SYS_ARCH_PRCTL, unix.SYS_ALARM, unix.SYS_UTIMES, unix.SYS_GETPGRP,
	unix.SYS_FUTIMESAT,
}

// legacyExecCalls are x86-64's process-creation calls of the fence agents.
var legacyExecCalls = []uint32{unix.SYS_FORK, unix.SYS_VFORK}

// legacyDenied are x86-64-only calls of deniedCalls' kind.
var legacyDenied = []uint32{unix.SYS_IOPL, unix.SYS_IOPERM, unix.SYS_MKNOD, unix.SYS_USELIB,
	unix.SYS_CREATE_MODULE, unix.SYS_QUERY_MODULE, unix.SYS_GET_KERNEL_SYMS, unix.SYS_SYSFS, unix.SYS_USTAT}
