package device

import (
	"sort"
	"strconv"
	"strings"
)

// Present returns the logical-unit identity (Info.Key) of every block and
// character device sysfs lists under /sys/dev, each with the kernel name of one
// device that has it. It classifies each device exactly as Classify does a
// received descriptor, so a stored LU name that is not among the keys names no
// device on this host any more (prhelperctl purge). Devices that cannot be
// classified or have no identity are left out.
func Present(sys Sysfs) (map[string]string, error) {
	out := map[string]string{}
	for _, class := range []struct {
		dir  string
		mode uint32
	}{{"block", modeBlk}, {"char", modeChr}} {
		names, err := listDir(sys.path("dev", class.dir))
		if err != nil {
			return nil, err
		}
		sort.Strings(names)
		for _, n := range names {
			maj, min, ok := parseMajMin(n)
			if !ok {
				continue
			}
			info, err := classify(fileStat{mode: class.mode, rdev: mkdev(maj, min)}, sys)
			if err != nil {
				continue
			}
			if key, err := info.Key(); err == nil {
				if _, seen := out[key]; !seen {
					out[key] = info.Name
				}
			}
		}
	}
	return out, nil
}

// parseMajMin reads a /sys/dev entry name, "8:16".
func parseMajMin(s string) (maj, min uint32, ok bool) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, false
	}
	x, err1 := strconv.ParseUint(a, 10, 32)
	y, err2 := strconv.ParseUint(b, 10, 32)
	return uint32(x), uint32(y), err1 == nil && err2 == nil
}

// mkdev is the inverse of devMajor and devMinor (glibc's gnu_dev_makedev).
func mkdev(maj, min uint32) uint64 {
	return uint64(maj&0xfff)<<8 | uint64(maj&^0xfff)<<32 | uint64(min&0xff) | uint64(min&^0xff)<<12
}
