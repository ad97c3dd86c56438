//go:build linux && (mips || mipsle || mips64 || mips64le || ppc || ppc64 || ppc64le || sparc64)

package blkpr

// The ioctl request encoding of arch/{mips,powerpc,sparc}/include/uapi/asm/ioctl.h:
// 3 direction bits at 29 (NONE=1, READ=2, WRITE=4), 13 size bits at 16.
const (
	iocNone     = 1
	iocWrite    = 4
	iocRead     = 2
	iocDirShift = 29
	iocSizeBits = 13
)
