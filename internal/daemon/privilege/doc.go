// Package privilege drops the daemon's privileges after start-up the way
// qemu-pr-helper's drop_privileges does with libcap-ng (docs/pr-helper-protocol.md §4.3): keep only
// the listed capabilities (CAP_SYS_RAWIO, which SG_IO needs for PERSISTENT RESERVE
// commands) in the effective and permitted sets, clear the inheritable and ambient
// sets and every other capability from the bounding set, drop the supplementary
// groups ("because file descriptors are passed via SCM_RIGHTS, we don't need
// supplementary groups") and switch to the -u/-g user and group.
//
// Capabilities, the bounding set and the keep-capabilities flag are per-thread
// attributes in Linux (capabilities(7)), and a Go process runs on many threads. Drop
// therefore changes them with syscall.AllThreadsSyscall, which runs each system call
// on every thread of the runtime. The runtime refuses that in a binary that links
// cgo (it cannot see threads cgo code started), so Drop needs a CGO_ENABLED=0 build
// and says so when it is not one.
//
// LookupUser and LookupGroup read -u/-g the way qemu-pr-helper does (a name, else a
// number). ReadStatus and ParseStatus read /proc/<pid>/status so the result can be
// checked and logged.
package privilege
