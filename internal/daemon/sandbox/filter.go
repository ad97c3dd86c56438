package sandbox

import (
	"golang.org/x/sys/unix"
)

// seccomp_data offsets (linux/seccomp.h): int nr; __u32 arch; ...
const (
	offNr   = 0
	offArch = 4
)

// x32SyscallBit marks the x32 ABI's system calls on x86-64 (asm/unistd.h):
// they share the x86-64 audit architecture, so the filter refuses them by
// number.
const x32SyscallBit = 0x40000000

// Action is what the filter does with a system call.
type Action uint32

// The actions the filters use: run the call, or fail it with EPERM.
const (
	Allow Action = unix.SECCOMP_RET_ALLOW
	Deny  Action = unix.SECCOMP_RET_ERRNO | Action(unix.EPERM)
)

// Program is the classic BPF program of a seccomp filter (linux/filter.h,
// Documentation/userspace-api/seccomp_filter.rst): a call of another
// architecture than arch, or (x86-64) of the x32 ABI, gets Deny; a call in
// list gets listed; every other call gets other. With listed Allow and other
// Deny it is an allow-list, with listed Deny and other Allow a deny-list.
// Program is pure: the same input gives the same instructions.
func Program(arch uint32, x32 bool, list []uint32, listed, other Action) []unix.SockFilter {
	p := []unix.SockFilter{
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, arch, 1, 0),
		stmt(unix.BPF_RET|unix.BPF_K, uint32(Deny)),
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr),
	}
	if x32 {
		p = append(p,
			jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32SyscallBit, 0, 1),
			stmt(unix.BPF_RET|unix.BPF_K, uint32(Deny)))
	}
	// One comparison and one return per call: every jump is short (0 or 1),
	// whatever the length of the list.
	for _, nr := range list {
		p = append(p,
			jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, nr, 0, 1),
			stmt(unix.BPF_RET|unix.BPF_K, uint32(listed)))
	}
	return append(p, stmt(unix.BPF_RET|unix.BPF_K, uint32(other)))
}

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}
