package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/backend/linuxpr"
	"github.com/prhelper/prhelper/internal/backend/sgio"
	"github.com/prhelper/prhelper/internal/daemon/config"
	"github.com/prhelper/prhelper/internal/daemon/router"
	"github.com/prhelper/prhelper/internal/kernel/device"
	"github.com/prhelper/prhelper/internal/kernel/dm"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/pr"
)

// classifyTTL is how long what a device is stays known without a new look at
// sysfs: short enough that a disk attached under a reused device number is seen
// at once in practice, long enough that a busy guest costs one fstat a command.
const classifyTTL = 2 * time.Second

// settings is the configuration file merged with the command line: flags win.
type settings struct {
	backend   string
	db        string
	initiator string
	listen    []config.Listen
	rules     []config.Rule
	primary   bool // serve the -k socket (or the activated one)
	dbSet     bool // --db or db given: emulation is enabled for auto
}

func loadSettings(o *options) (*settings, error) {
	c := &config.Config{}
	if o.configFile != "" {
		f, err := os.Open(o.configFile)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		c, err = config.Parse(f, o.configFile)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("config %w", err)
		}
	}
	s := &settings{backend: defaultBackend, db: defaultDB, initiator: defaultInitiator, rules: c.Rules, listen: c.Listen}
	for _, v := range []struct {
		dst        *string
		file, flag string
	}{{&s.backend, c.Backend, o.backend}, {&s.db, c.DB, o.db}, {&s.initiator, c.Initiator, o.initiator}} {
		if v.file != "" {
			*v.dst = v.file
		}
		if v.flag != "" {
			*v.dst = v.flag
		}
	}
	s.dbSet = c.DB != "" || o.db != ""
	if err := config.CheckBackend(s.backend); err != nil {
		return nil, fmt.Errorf("--backend: %w", err)
	}
	for _, l := range o.listen {
		ls, err := config.ParseListen(l)
		if err != nil {
			return nil, fmt.Errorf("--listen: %w", err)
		}
		s.listen = append(s.listen, ls)
	}
	// qemu-pr-helper always serves its socket; with extra sockets and no -k the
	// default one is not wanted.
	s.primary = o.socketSet || len(s.listen) == 0
	return s, nil
}

// mayRoute reports whether the default backend or any rule names one of
// backends, i.e. whether some device could be served by it.
func (s *settings) mayRoute(backends ...string) bool {
	names := []string{s.backend}
	for _, r := range s.rules {
		names = append(names, r.Backend)
	}
	for _, n := range names {
		for _, b := range backends {
			if n == b {
				return true
			}
		}
	}
	return false
}

// needsEmulation reports whether any device could be routed to emulate: named
// as a backend, or auto with --db given (auto sends disk images there).
func (s *settings) needsEmulation() bool {
	return s.mayRoute("emulate") || s.dbSet && s.mayRoute("auto")
}

// usesLinuxPR reports whether any device could be routed to the linuxpr
// backend, whose ioctls need CAP_SYS_ADMIN before Linux 6.5.
func (s *settings) usesLinuxPR() bool { return s.mayRoute("linuxpr", "auto") }

// buildRouter makes the backends the settings name and the router over them.
// The returned close function releases the state store.
func buildRouter(s *settings, log *slog.Logger) (*router.Router, func(), error) {
	sg, err := sgio.New(sgio.Options{})
	if err != nil {
		return nil, nil, err
	}
	devices := device.NewCache(device.Sysfs{}, classifyTTL, nil, dm.ControlPath)
	lp, err := linuxpr.New(linuxpr.Options{Kind: func(fd int) linuxpr.DeviceKind { return linuxprKind(devices, fd) }, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	backends := map[string]backend.Backend{"sgio": sg, "linuxpr": lp}
	closer := func() {}
	if s.mayRoute("mpath", "auto") {
		mp, err := newMpath(devices.Classify, log)
		if err != nil {
			return nil, nil, err
		}
		backends["mpath"] = mp
		closer = func() {
			if err := mp.Close(); err != nil {
				log.Warn("closing multipath path devices", "err", err)
			}
		}
	}
	if s.needsEmulation() {
		st, err := sqlite.Open(s.db, sqlite.Options{})
		if err != nil {
			return nil, nil, fmt.Errorf("emulation state: %w", err)
		}
		backends["emulate"] = emulate.New(st, pr.LIO())
		closeMpath := closer
		closer = func() {
			closeMpath()
			if err := st.Close(); err != nil {
				log.Warn("closing the state database", "err", err)
			}
		}
	}
	return &router.Router{
		Default:  s.backend,
		Rules:    s.rules,
		Backends: backends,
		Classify: devices.Classify,
		Path:     fdPath,
		Log:      log,
	}, closer, nil
}

// linuxprKind tells the linuxpr backend which PR IN fallback a device needs.
func linuxprKind(devices *device.Cache, fd int) linuxpr.DeviceKind {
	info, err := devices.Classify(fd)
	if err != nil {
		return linuxpr.KindNotBlock
	}
	return linuxpr.KindOf(info)
}

// fdPath names the file a received descriptor was opened as, for path= rules.
func fdPath(fd int) string {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return ""
	}
	return p
}

// explain prints what a device is and which backend would serve it, and why.
func explain(o *options, w io.Writer) error {
	s, err := loadSettings(o)
	if err != nil {
		return err
	}
	f, err := os.Open(o.explain)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	defer f.Close()
	info, cerr := device.NewCache(device.Sysfs{}, 0, nil, dm.ControlPath).Classify(int(f.Fd()))
	// The backends the daemon would have, without opening anything.
	names := map[string]backend.Backend{"sgio": nil, "linuxpr": nil}
	if s.mayRoute("mpath", "auto") {
		names["mpath"] = nil
	}
	if s.needsEmulation() {
		names["emulate"] = nil
	}
	r := &router.Router{Default: s.backend, Rules: s.rules, Backends: names}
	d := r.Decide(info, o.explain)
	fmt.Fprintf(w, "device:   %s\n", o.explain)
	if cerr != nil {
		fmt.Fprintf(w, "kind:     unknown (%v)\n", cerr)
	} else {
		fmt.Fprintf(w, "kind:     %s\n", info.Kind)
		if info.Name != "" {
			fmt.Fprintf(w, "name:     %s\n", info.Name)
		}
		if info.ID != "" {
			fmt.Fprintf(w, "id:       %s\n", info.ID)
		}
		if len(info.Slaves) > 0 {
			fmt.Fprintf(w, "paths:    %v\n", info.Slaves)
		}
	}
	lu := d.LU
	if lu == "" {
		lu = "none (emulation would refuse it)"
	}
	fmt.Fprintf(w, "lu:       %s\n", lu)
	be := d.Backend
	if d.Refused {
		be = "none: PR commands are refused with qemu-pr-helper's answer (SG_IO on a file: ENOTTY)"
	}
	fmt.Fprintf(w, "backend:  %s\n", be)
	fmt.Fprintf(w, "why:      %s\n", d.Why)
	return nil
}
