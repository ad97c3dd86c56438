//go:build linux && !(mips || mipsle || mips64 || mips64le || ppc || ppc64 || ppc64le || sparc64)

package blkpr

// The ioctl request encoding of include/uapi/asm-generic/ioctl.h, used by x86,
// arm, arm64, riscv, s390 and loong64: 2 direction bits at 30, 14 size bits at 16.
const (
	iocNone     = 0
	iocWrite    = 1
	iocRead     = 2
	iocDirShift = 30
	iocSizeBits = 14
)
