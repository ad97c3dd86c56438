package mpath

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prhelper/prhelper/internal/kernel/device"
)

// Discoverer finds a map's paths in sysfs, which needs no privilege: the map's
// dm name and uuid, its slaves/ (read afresh on every command, so that a path
// added a moment ago is seen) and each path's SCSI device state. When Failed is
// set it also asks device-mapper which paths it has failed.
type Discoverer struct {
	// SysfsRoot is where sysfs is mounted; "" means /sys.
	SysfsRoot string
	// Classify tells what a descriptor is (device.Cache.Classify).
	Classify func(fd int) (device.Info, error)
	// Failed, when not nil, returns the path devices dm-multipath has failed in
	// the map (from its status line). An error leaves the decision to sysfs.
	Failed func(info device.Info) (map[string]bool, error)
	// TTL is how long a map's paths are reused without a new look (0: every
	// command looks). A path that failed since is found out by the command
	// itself (its SG_IO fails and the next path is tried); one that came back
	// or was added is used at most TTL later.
	TTL time.Duration
	// Now is the clock for TTL; nil means time.Now.
	Now func() time.Time

	mu    sync.Mutex
	cache map[[2]uint32]cachedMap
}

type cachedMap struct {
	m  Map
	at time.Time
}

// Discover implements Options.Discover.
func (d *Discoverer) Discover(fd int) (Map, error) {
	info, err := d.mapInfo(fd)
	if err != nil {
		return Map{}, err
	}
	if d.TTL > 0 {
		d.mu.Lock()
		c, ok := d.cache[[2]uint32{info.Major, info.Minor}]
		d.mu.Unlock()
		if t := d.now(); ok && t.Sub(c.at) < d.TTL && !t.Before(c.at) {
			return c.m.clone(), nil
		}
	}
	return d.lookNow(info)
}

// Look implements Options.Rediscover: it reads the map's paths from sysfs (and
// device-mapper) now, whatever the cache holds, and keeps what it read for
// the next Discover.
func (d *Discoverer) Look(fd int) (Map, error) {
	info, err := d.mapInfo(fd)
	if err != nil {
		return Map{}, err
	}
	return d.lookNow(info)
}

// lookNow reads the map's paths, keeping them in the cache when there is one.
func (d *Discoverer) lookNow(info device.Info) (Map, error) {
	if d.TTL <= 0 {
		return d.look(info)
	}
	return d.lookAndKeep(info)
}

// mapInfo classifies fd, which must be a dm-multipath map.
func (d *Discoverer) mapInfo(fd int) (device.Info, error) {
	info, err := d.Classify(fd)
	if err != nil {
		return info, fmt.Errorf("classify: %w", err)
	}
	if info.Kind != device.DMMultipath {
		return info, fmt.Errorf("%s is not a dm-multipath map", info)
	}
	return info, nil
}

func (d *Discoverer) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// lookAndKeep looks at the map and caches the result.
func (d *Discoverer) lookAndKeep(info device.Info) (Map, error) {
	key := [2]uint32{info.Major, info.Minor}
	m, err := d.look(info)
	if err != nil {
		return m, err
	}
	d.mu.Lock()
	if d.cache == nil {
		d.cache = map[[2]uint32]cachedMap{}
	}
	d.cache[key] = cachedMap{m: m.clone(), at: d.now()}
	d.mu.Unlock()
	return m, nil
}

// PathStates counts the paths of the maps Discover looked at, by Path.State as
// it last saw them (the maps of its cache; none without a TTL), for metrics.
func (d *Discoverer) PathStates() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for _, c := range d.cache {
		for _, p := range c.m.Paths {
			out[p.State]++
		}
	}
	return out
}

func (m Map) clone() Map {
	m.Paths = slices.Clone(m.Paths)
	return m
}

// look reads the map's paths from sysfs (and device-mapper).
func (d *Discoverer) look(info device.Info) (Map, error) {
	root := d.SysfsRoot
	if root == "" {
		root = device.DefaultSysfsRoot
	}
	m := Map{Name: info.DMName, WWID: strings.TrimPrefix(info.DMUUID, "mpath-")}
	if m.Name == "" {
		return Map{}, fmt.Errorf("%s has no dm name", info)
	}
	ents, err := os.ReadDir(filepath.Join(root, "block", info.Name, "slaves"))
	if err != nil {
		return Map{}, fmt.Errorf("paths of %s: %w", m.Name, err)
	}
	var failed map[string]bool
	if d.Failed != nil {
		failed, _ = d.Failed(info)
	}
	sys := device.Sysfs{Root: root}
	for _, e := range ents {
		p := Path{Dev: e.Name(), Usable: true, State: "usable"}
		switch state, err := device.PathState(sys, p.Dev); {
		case err != nil:
			p.Usable, p.Why, p.State = false, "(no SCSI device state: not a SCSI path)", "not_scsi"
		case state != "running":
			p.Usable, p.Why, p.State = false, "(SCSI device "+state+")", "scsi_"+strings.ReplaceAll(state, "-", "_")
		case failed[p.Dev]:
			p.Usable, p.Why, p.State, p.Reachable = false, "(failed by dm-multipath)", "dm_failed", true
		default:
			p.Reachable = true
		}
		m.Paths = append(m.Paths, p)
	}
	slices.SortFunc(m.Paths, func(a, b Path) int { return strings.Compare(a.Dev, b.Dev) })
	return m, nil
}
