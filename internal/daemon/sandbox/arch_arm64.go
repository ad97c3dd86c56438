package sandbox

import "golang.org/x/sys/unix"

// auditArch is the AUDIT_ARCH_* value of the calls the filter accepts
// (linux/audit.h); arm64 has no second ABI to refuse by number.
const (
	auditArch = unix.AUDIT_ARCH_AARCH64
	x32       = false
)

// arm64 has only the *at and newer forms of the calls.
var (
	legacyCalls     []uint32
	legacyExecCalls []uint32
	legacyDenied    []uint32
)
