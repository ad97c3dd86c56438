package builder

import (
	"log/slog"
	"time"

	"github.com/prhelper/prhelper/internal/backend/mpath"
	"github.com/prhelper/prhelper/internal/kernel/device"
	"github.com/prhelper/prhelper/internal/kernel/dm"
	"github.com/prhelper/prhelper/internal/multipath/mpathconf"
	"github.com/prhelper/prhelper/internal/multipath/multipathd"
)

// pathsTTL is how long a map's paths are reused without a new look at sysfs
// and device-mapper: a busy guest's PR IN then costs no directory walk, and a
// path that fails meanwhile is found out by the command itself.
const pathsTTL = time.Second

// newMpath builds the dm-multipath backend: paths from sysfs (and from
// device-mapper's status where the control node may be used), SG_IO to each
// path, multipathd at its default sockets, and multipath.conf's
// reservation_key.
func newMpath(classify func(fd int) (device.Info, error), log *slog.Logger) (*mpath.Backend, *mpath.Discoverer, error) {
	disc := &mpath.Discoverer{Classify: classify, Failed: dmFailed, TTL: pathsTTL}
	b, err := mpath.New(mpath.Options{
		Discover:   disc.Discover,
		Rediscover: disc.Look,
		Open:       mpath.OpenPath,
		Daemon:     multipathd.New(multipathd.Options{}),
		Key:        configuredKey,
		Logger:     log,
	})
	return b, disc, err
}

// configuredKey reads multipath.conf (and its conf.d) for each PR OUT, so that
// an edited configuration applies at once, as multipathd's reconfigure does.
// PR OUT is rare; the files are small.
func configuredKey(m mpath.Map) (mpath.ConfiguredKey, error) {
	c, err := mpathconf.Load(mpathconf.DefaultConfigFile)
	if err != nil {
		return mpath.ConfiguredKey{}, err
	}
	k, fixed := c.ReservationKey(m.WWID).FixedKey()
	return mpath.ConfiguredKey{Fixed: fixed, Key: k}, nil
}

// dmFailed returns the paths device-mapper has failed in a map, from its
// status line. The control node needs CAP_SYS_ADMIN; without it (an error
// here) sysfs alone says which paths are usable.
func dmFailed(info device.Info) (map[string]bool, error) {
	ctl, err := dm.Open(dm.ControlPath)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	paths, err := ctl.MultipathPaths(dm.Dev{Major: info.Major, Minor: info.Minor})
	if err != nil {
		return nil, err
	}
	failed := map[string]bool{}
	for _, p := range paths {
		if p.Active {
			continue
		}
		if name, err := device.PathName(device.Sysfs{}, p.Dev); err == nil {
			failed[name] = true
		}
	}
	return failed, nil
}
