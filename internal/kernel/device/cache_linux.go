package device

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/kernel/dm"
)

// Cache remembers what Classify found for a device for a short while, so that a
// busy helper does one fstat per request instead of a walk through sysfs. Entries
// are keyed by what fstat reports (file type, device numbers, inode) and expire
// after the TTL: a device number reused by a newly attached disk is seen within
// that time. Safe for concurrent use.
type Cache struct {
	sys       Sysfs
	ttl       time.Duration
	now       func() time.Time
	dmControl string

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

type cacheKey struct {
	mode      uint32
	dev, rdev uint64
	ino       uint64
	birth     int64 // a reused inode number is another file (FileID)
}

type cacheEntry struct {
	info    Info
	expires time.Time
}

// maxCacheEntries bounds the cache; when full it starts afresh.
const maxCacheEntries = 4096

// NewCache returns a cache over sys whose entries live for ttl, timed by now
// (time.Now when nil). dmControl, when not "", is the device-mapper control node
// (dm.ControlPath) through which each fresh classification of a plain DM device
// is completed with what sysfs cannot tell: whether its table is a multipath
// one (see MultipathByTable). The result is cached with the classification.
func NewCache(sys Sysfs, ttl time.Duration, now func() time.Time, dmControl string) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{sys: sys, ttl: ttl, now: now, dmControl: dmControl, entries: make(map[cacheKey]cacheEntry)}
}

// Classify is Classify(fd, sys) through the cache. Failures are not cached.
func (c *Cache) Classify(fd int) (Info, error) {
	st, err := statFD(fd)
	if err != nil {
		return Info{}, err
	}
	k := cacheKey{mode: st.mode & unix.S_IFMT, dev: st.dev, rdev: st.rdev, ino: st.ino, birth: st.birth}
	if st.mode&unix.S_IFMT == unix.S_IFBLK || st.mode&unix.S_IFMT == unix.S_IFCHR {
		// A device is the same device whichever node or filesystem names it.
		k.dev, k.ino, k.birth = 0, 0, 0
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.info, nil
	}
	info, err := classify(st, c.sys)
	if err != nil {
		return info, fmt.Errorf("classify fd %d: %w", fd, err)
	}
	if c.dmControl != "" {
		info = MultipathByTable(info, c.dmControl)
	}
	c.mu.Lock()
	if len(c.entries) >= maxCacheEntries {
		c.entries = make(map[cacheKey]cacheEntry)
	}
	c.entries[k] = cacheEntry{info: info, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return info, nil
}

// MultipathByTable tells a multipath map that multipathd did not make (its dm
// uuid does not start "mpath-") from other device-mapper devices by its table,
// as qemu-pr-helper does: the first target's type is "multipath"
// (DM_TABLE_STATUS through the control node at control). Such a map becomes a
// DMMultipath; anything else is returned unchanged. The control node needs
// CAP_SYS_ADMIN; without it (or on any error) the map stays a plain DM device,
// which the linuxpr backend serves (the kernel sends its REGISTER down every
// path).
func MultipathByTable(info Info, control string) Info {
	if info.Kind != DM {
		return info
	}
	ctl, err := dm.Open(control)
	if err != nil {
		return info
	}
	defer ctl.Close()
	if t, err := ctl.TableStatus(dm.Dev{Major: info.Major, Minor: info.Minor}, false); err == nil && dm.IsMultipath(t) {
		info.Kind = DMMultipath
	}
	return info
}
