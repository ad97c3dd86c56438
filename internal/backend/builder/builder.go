// Package builder makes the backends a backend.Plan names, each wired to the
// kernel interfaces, the multipath daemon or the state store it works with.
// It is where the daemon's set-up meets the backends: the plan says which
// backends there are (and so which capabilities the daemon keeps, and what the
// router and --explain may choose); Build says how each one is made.
package builder

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/backend/linuxpr"
	"github.com/prhelper/prhelper/internal/backend/sgio"
	"github.com/prhelper/prhelper/internal/backend/vinit"
	"github.com/prhelper/prhelper/internal/kernel/device"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/pr"
)

// Env is what the backends are built with.
type Env struct {
	// Devices classifies received descriptors (linuxpr's PR IN fallback, the
	// multipath backend's map discovery); the router shares it.
	Devices *device.Cache
	// DB is the emulation state database (SQLite), opened when the plan has
	// emulate and OpenStore is nil.
	DB string
	// OpenStore, when set, opens the emulation's state store instead of DB
	// (the daemon's choice between SQLite and etcd).
	OpenStore func() (store.Store, error)
	// Fencing, when set, gives the emulation its fencing over the opened store
	// (package fence); nil fences nobody.
	Fencing func(store.Store) (emulate.Fencing, error)
	// Profile is the emulation's engine profile; a zero Profile (no Name)
	// means pr.LIO().
	Profile pr.Profile
	// Host is this host's id for the vinit backend (docs/virtual-initiators.md
	// §2): the daemon passes --fence-host, else the host name.
	Host string
	// HostKey is the vinit backend's configured host key (--vinit-key); 0
	// means the one derived from Host.
	HostKey uint64
	// VinitAfterCommit is the vinit backend's test-only hook
	// (vinit.Options.AfterCommit); nil in normal use.
	VinitAfterCommit func()
	Log              *slog.Logger
}

// Set is the built backends of a plan.
type Set struct {
	Backends map[backend.Name]backend.Backend
	// MultipathPaths counts the multipath backend's paths by state
	// (mpath.Discoverer.PathStates), for metrics; nil without that backend.
	MultipathPaths func() map[string]int
	closers        []func()
	emuStore       store.Store // the emulation's store, which vinit shares
	emuFencing     emulate.Fencing
	emuProfile     pr.Profile
}

// Close releases what the backends hold (multipath path devices, the state
// store); failures are logged.
func (s *Set) Close() {
	for _, c := range s.closers {
		c()
	}
	s.closers = nil
}

// Build makes every backend of p. On error, what was built is closed again.
func Build(p backend.Plan, env Env) (*Set, error) {
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if env.Devices == nil {
		return nil, errors.New("builder: no device classifier")
	}
	s := &Set{Backends: map[backend.Name]backend.Backend{}}
	for _, n := range p.Names() {
		if err := s.add(n, env, log); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// add builds backend n into s.
func (s *Set) add(n backend.Name, env Env, log *slog.Logger) error {
	switch n {
	case backend.Sgio:
		sg, err := sgio.New(sgio.Options{})
		if err != nil {
			return err
		}
		s.Backends[n] = sg
	case backend.LinuxPR:
		devices := env.Devices
		lp, err := linuxpr.New(linuxpr.Options{Kind: func(fd int) linuxpr.DeviceKind { return linuxprKind(devices, fd) }, Logger: log})
		if err != nil {
			return err
		}
		s.Backends[n] = lp
	case backend.Mpath:
		mp, disc, err := newMpath(env.Devices.Classify, log)
		if err != nil {
			return err
		}
		s.Backends[n], s.MultipathPaths = mp, disc.PathStates
		s.closers = append(s.closers, func() {
			if err := mp.Close(); err != nil {
				log.Warn("closing multipath path devices", "err", err)
			}
		})
	case backend.Emulate:
		open := env.OpenStore
		if open == nil {
			open = func() (store.Store, error) { return sqlite.Open(env.DB, sqlite.Options{}) }
		}
		st, err := open()
		if err != nil {
			return fmt.Errorf("emulation state: %w", err)
		}
		prof := env.Profile
		if prof.Name == "" {
			prof = pr.LIO()
		}
		em := emulate.New(st, prof)
		if env.Fencing != nil {
			f, err := env.Fencing(st)
			if err != nil {
				st.Close()
				return fmt.Errorf("fencing: %w", err)
			}
			em = em.WithFencing(f)
			s.emuFencing = f
		}
		s.emuProfile = prof
		s.Backends[n], s.emuStore = em, st
		s.closers = append(s.closers, func() {
			if err := st.Close(); err != nil {
				log.Warn("closing the state database", "err", err)
			}
		})
	case backend.Vinit:
		// The plan holds what vinit composes (backend.PlanOf), built before it.
		em, sg, mp := s.Backends[backend.Emulate], s.Backends[backend.Sgio], s.Backends[backend.Mpath]
		if em == nil || sg == nil || mp == nil || s.emuStore == nil {
			return errors.New("builder: vinit needs the emulate, sgio and mpath backends of its plan")
		}
		devices := env.Devices
		o := vinit.Options{
			Emulate: em,
			Lower: func(fd int) (backend.Backend, error) {
				info, err := devices.Classify(fd)
				if err != nil {
					return nil, err
				}
				switch info.Kind {
				case device.DMMultipath:
					return mp, nil
				case device.SCSIDisk, device.SCSIGeneric:
					return sg, nil
				}
				return nil, fmt.Errorf("vinit serves SCSI disks and multipath maps, not a %s", info.Kind)
			},
			Store:          s.emuStore,
			StateKeyPrefix: emulate.KeyPrefix,
			ParseInitiator: emulate.ParseInitiator,
			Host:           env.Host,
			Key:            env.HostKey,
			AfterCommit:    env.VinitAfterCommit,
			Profile:        s.emuProfile,
			Logger:         log,
		}
		if s.emuFencing != nil {
			f, ok := s.emuFencing.(vinit.Fencing)
			if !ok {
				return fmt.Errorf("builder: vinit needs a fencing that judges a fold against the LUN (vinit.Fencing), not %T", s.emuFencing)
			}
			o.Fencing = f
		}
		vb, err := vinit.New(o)
		if err != nil {
			return err
		}
		s.Backends[n] = vb
		s.closers = append(s.closers, func() {
			if err := vb.Close(); err != nil {
				log.Warn("closing the LUN descriptors vinit kept", "err", err)
			}
		})
	default:
		return fmt.Errorf("builder: no backend %q", n)
	}
	return nil
}

// linuxprKind tells the linuxpr backend which PR IN fallback a device needs.
func linuxprKind(devices *device.Cache, fd int) linuxpr.DeviceKind {
	info, err := devices.Classify(fd)
	if err != nil {
		return linuxpr.KindNotBlock
	}
	return linuxpr.KindOf(info)
}
