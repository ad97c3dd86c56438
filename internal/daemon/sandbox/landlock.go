//go:build amd64 || arm64

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// File access rights by Landlock ABI version (linux/landlock.h): 1 (Linux
// 5.13) the first thirteen, 2 (5.19) REFER, 3 (6.2) TRUNCATE, 5 (6.10)
// IOCTL_DEV. Rights of later versions are not restricted.
const (
	readFile  = unix.LANDLOCK_ACCESS_FS_READ_FILE
	readDir   = unix.LANDLOCK_ACCESS_FS_READ_DIR
	writeFile = unix.LANDLOCK_ACCESS_FS_WRITE_FILE
	execute   = unix.LANDLOCK_ACCESS_FS_EXECUTE
	abi1      = 1<<13 - 1
	truncate  = unix.LANDLOCK_ACCESS_FS_TRUNCATE
	ioctlDev  = unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	refer     = unix.LANDLOCK_ACCESS_FS_REFER
	fileOnly  = execute | writeFile | readFile | truncate | ioctlDev
	maxKnown  = 5
)

// handledFS returns the file access rights ABI version abi knows.
func handledFS(abi int) uint64 {
	h := uint64(abi1)
	if abi >= 2 {
		h |= refer
	}
	if abi >= 3 {
		h |= truncate
	}
	if abi >= 5 {
		h |= ioctlDev
	}
	return h
}

// rule is a path and the rights beneath it.
type rule struct {
	path   string
	access uint64
}

// Rules returns the Landlock rules of c (docs/security.md §4).
func Rules(c Config) []rule {
	// /dev/null for os/exec; with the device backends the dm control node
	// and the devices they open by path (a multipath map's paths).
	dev := uint64(readFile | writeFile)
	if c.Devices {
		dev |= readDir | ioctlDev
	}
	rs := []rule{
		{"/proc", readFile | readDir},
		{"/sys", readFile | readDir},
		{"/dev", dev},
	}
	if c.DBDir != "" {
		rs = append(rs, rule{c.DBDir, readFile | writeFile | readDir | truncate |
			unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE})
	}
	for _, f := range c.ReadFiles {
		rs = append(rs, rule{f, readFile | readDir})
	}
	for _, d := range c.ReadDirs {
		rs = append(rs, rule{d, readDir})
	}
	for _, d := range c.RemoveIn {
		rs = append(rs, rule{d, unix.LANDLOCK_ACCESS_FS_REMOVE_FILE})
	}
	if c.Exec {
		rs = append(rs, rule{"/", readFile | readDir | execute},
			rule{"/tmp", readFile | writeFile | readDir | truncate | unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE},
			rule{"/run", readFile | writeFile | readDir | truncate | unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE})
	}
	return rs
}

// ABI returns the kernel's Landlock ABI version, 0 when it has none (not
// built, or not in the lsm= list).
func ABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// rulesetAttr is struct landlock_ruleset_attr's first field: passed with its
// own size, the kernel takes the others (network, scopes) as zero.
type rulesetAttr struct {
	handledFS uint64
}

// struct landlock_path_beneath_attr is declared packed: __u64 allowed_access
// at 0, __s32 parent_fd at 8, 12 bytes; addRule writes it into a byte array.
const pathBeneathSize = 12

// buildRuleset creates a ruleset handling handled and adds rules; paths that
// do not exist are skipped.
func buildRuleset(handled uint64, rules []rule) (int, error) {
	attr := rulesetAttr{handledFS: handled}
	r, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return -1, fmt.Errorf("sandbox: landlock_create_ruleset: %w", errno)
	}
	fd := int(r)
	for _, rl := range rules {
		if err := addRule(fd, handled, rl); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

func addRule(fd int, handled uint64, rl rule) error {
	p, err := os.OpenFile(filepath.Clean(rl.path), unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox: landlock rule %s: %w", rl.path, err)
	}
	defer p.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(p.Fd()), &st); err != nil {
		return fmt.Errorf("sandbox: landlock rule %s: %w", rl.path, err)
	}
	access := rl.access & handled
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		access &= fileOnly
	}
	if access == 0 {
		return nil
	}
	var attr [pathBeneathSize]byte
	*(*uint64)(unsafe.Pointer(&attr[0])) = access
	*(*int32)(unsafe.Pointer(&attr[8])) = int32(p.Fd())
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(fd), unix.LANDLOCK_RULE_PATH_BENEATH,
		uintptr(unsafe.Pointer(&attr[0])), 0, 0, 0)
	runtime.KeepAlive(p)
	if errno != 0 {
		return fmt.Errorf("sandbox: landlock rule %s: %w", rl.path, errno)
	}
	return nil
}
