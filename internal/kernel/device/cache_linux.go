package device

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Cache remembers what Classify found for a device for a short while, so that a
// busy helper does one fstat per request instead of a walk through sysfs. Entries
// are keyed by what fstat reports (file type, device numbers, inode) and expire
// after the TTL: a device number reused by a newly attached disk is seen within
// that time. Safe for concurrent use.
type Cache struct {
	sys    Sysfs
	ttl    time.Duration
	now    func() time.Time
	refine func(Info) Info

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

type cacheKey struct {
	mode      uint32
	dev, rdev uint64
	ino       uint64
}

type cacheEntry struct {
	info    Info
	expires time.Time
}

// maxCacheEntries bounds the cache; when full it starts afresh.
const maxCacheEntries = 4096

// NewCache returns a cache over sys whose entries live for ttl, timed by now
// (time.Now when nil). refine, when not nil, amends each fresh classification
// before it is cached: it adds what sysfs cannot tell, such as a device-mapper
// table's target type, which takes the control node (package dm, which imports
// this package and so cannot be called from it).
func NewCache(sys Sysfs, ttl time.Duration, now func() time.Time, refine func(Info) Info) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{sys: sys, ttl: ttl, now: now, refine: refine, entries: make(map[cacheKey]cacheEntry)}
}

// Classify is Classify(fd, sys) through the cache. Failures are not cached.
func (c *Cache) Classify(fd int) (Info, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Info{}, fmt.Errorf("fstat fd %d: %w", fd, err)
	}
	k := cacheKey{mode: st.Mode & unix.S_IFMT, dev: st.Dev, rdev: st.Rdev, ino: st.Ino}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK || st.Mode&unix.S_IFMT == unix.S_IFCHR {
		// A device is the same device whichever node or filesystem names it.
		k.dev, k.ino = 0, 0
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.info, nil
	}
	info, err := classify(fileStat{mode: st.Mode, dev: st.Dev, rdev: st.Rdev, ino: st.Ino}, c.sys)
	if err != nil {
		return info, fmt.Errorf("classify fd %d: %w", fd, err)
	}
	if c.refine != nil {
		info = c.refine(info)
	}
	c.mu.Lock()
	if len(c.entries) >= maxCacheEntries {
		c.entries = make(map[cacheKey]cacheEntry)
	}
	c.entries[k] = cacheEntry{info: info, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return info, nil
}
