package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/backend/builder"
	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/daemon/config"
	"github.com/prhelper/prhelper/internal/daemon/metrics"
	"github.com/prhelper/prhelper/internal/daemon/router"
	"github.com/prhelper/prhelper/internal/kernel/device"
	"github.com/prhelper/prhelper/internal/kernel/dm"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/vinit"
	"github.com/prhelper/prhelper/pr"
)

// classifyTTL is how long what a device is stays known without a new look at
// sysfs: short enough that a disk attached under a reused device number is seen
// at once in practice, long enough that a busy guest costs one fstat a command.
const classifyTTL = 2 * time.Second

// settings is the configuration file merged with the command line: flags win.
type settings struct {
	backend   backend.Name
	db        string
	initiator string
	listen    []config.Listen
	rules     []config.Rule
	primary   bool // serve the -k socket (or the activated one)
	dbSet     bool // --db, db or an etcd store given: emulation is enabled for auto
	etcd      etcdSettings
	fencing   *fencing
	metrics   string // --metrics or the file's metrics: where; "" is off
	// maxRegs bounds the registrations of one emulated LU.
	maxRegs int
	access  accessSettings
	sandbox bool // --sandbox=on (docs/security.md §4)
	// vinitKey is --vinit-key (or the file's vinit-key): the vinit backend's
	// host key on the real LUN; 0 means derived from hostID
	// (docs/virtual-initiators.md §2).
	vinitKey uint64
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
	s := &settings{db: defaultDB, initiator: defaultInitiator, rules: c.Rules, listen: c.Listen}
	name := defaultBackend
	for _, v := range []struct {
		dst        *string
		file, flag string
	}{{&name, string(c.Backend), o.backend}, {&s.db, c.DB, o.db}, {&s.initiator, c.Initiator, o.initiator}} {
		if v.file != "" {
			*v.dst = v.file
		}
		if v.flag != "" {
			*v.dst = v.flag
		}
	}
	s.dbSet = c.DB != "" || o.db != ""
	if err := s.etcd.load(c, o); err != nil {
		return nil, err
	}
	if s.etcd.enabled() {
		s.dbSet = true
	}
	fencing, err := newFencing(firstSet(o.fence, c.Fence), firstSet(o.fenceTimeout, c.FenceTimeout))
	if err != nil {
		return nil, err
	}
	if err := fencing.acrossHosts(s.etcd.enabled(), firstSet(o.fenceLeaseTTL, c.FenceLeaseTTL), firstSet(o.fenceHost, c.FenceHost)); err != nil {
		return nil, err
	}
	s.maxRegs = defaultMaxRegistrations
	if c.MaxRegistrations > 0 {
		s.maxRegs = c.MaxRegistrations
	}
	if o.maxRegistrations != "" {
		if s.maxRegs, err = config.ParseMaxRegistrations(o.maxRegistrations); err != nil {
			return nil, fmt.Errorf("--%w", err)
		}
	}
	s.metrics = firstSet(o.metrics, c.Metrics)
	if s.metrics != "" {
		if _, _, err := config.ParseMetrics(s.metrics); err != nil {
			return nil, fmt.Errorf("--metrics: %w", err)
		}
	}
	s.fencing = fencing
	if v := firstSet(o.vinitKey, c.VinitKey); v != "" {
		if s.vinitKey, err = config.ParseVinitKey(v); err != nil {
			return nil, fmt.Errorf("--%w", err)
		}
	}
	if err := s.access.load(c, o); err != nil {
		return nil, err
	}
	switch v := firstSet(o.sandbox, c.Sandbox); v {
	case "", "on":
		s.sandbox = true
	case "off":
	default:
		return nil, fmt.Errorf("--sandbox %q: want on or off", v)
	}
	b, err := backend.ParseName(name)
	if err != nil {
		return nil, fmt.Errorf("--backend: %w", err)
	}
	s.backend = b
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

// peerPolicy reports whether a socket of the settings names its initiators
// after the QEMU peer.
func (s *settings) peerPolicy() bool {
	if s.primary && s.initiator == "peer" {
		return true
	}
	for _, l := range s.listen {
		if l.Initiator == "peer" || (l.Initiator == "" && s.initiator == "peer") {
			return true
		}
	}
	return false
}

// plan is the set of backends the settings may route a device to: the
// daemon builds them, keeps the capabilities they need, and the router and
// --explain choose among them.
func (s *settings) plan() backend.Plan {
	rules := make([]backend.Name, len(s.rules))
	for i, r := range s.rules {
		rules[i] = r.Backend
	}
	return backend.NewPlan(s.backend, rules, s.dbSet)
}

// hostID is this host's id for the vinit backend (docs/virtual-initiators.md
// §2): --fence-host, else the host name ("" when there is none: building vinit
// then fails, saying so).
func (s *settings) hostID() string {
	if s.fencing.host != "" {
		return s.fencing.host
	}
	h, _ := os.Hostname()
	return h
}

// vinitTestHookEnv names the test-only hook that stops a vinit helper in the
// crash window between the store commit and the LUN commands
// (docs/virtual-initiators.md §6): set to a file path, each committed PR OUT
// writes "committed" there and then blocks for good, so a test can SIGKILL
// the helper at exactly that point. Never set it in production.
const vinitTestHookEnv = "PRHELPER_TEST_VINIT_AFTER_COMMIT"

// vinitTestHook returns the hook for path ("": none).
func vinitTestHook(path string, log *slog.Logger) func() {
	if path == "" {
		return nil
	}
	log.Warn("TEST HOOK: every committed vinit PR OUT blocks before the LUN update", "env", vinitTestHookEnv, "file", path)
	return func() {
		if err := os.WriteFile(path, []byte("committed\n"), 0o644); err != nil {
			log.Error("test hook", "err", err)
		}
		select {}
	}
}

// newDevices is the device classifier of the daemon and of --explain: sysfs,
// plus a dm device's table through the control node (where it may be opened)
// to find multipath maps multipathd did not name, as qemu-pr-helper does.
func newDevices(ttl time.Duration) *device.Cache {
	return device.NewCache(device.Sysfs{}, ttl, nil, dm.ControlPath)
}

// buildRouter makes the backends of the settings' plan and the router over
// them. The returned close function releases what the backends hold.
func buildRouter(s *settings, plan backend.Plan, m *metrics.Metrics, log *slog.Logger) (*router.Router, func(), error) {
	devices := newDevices(classifyTTL)
	set, err := builder.Build(plan, builder.Env{
		Devices:   devices,
		OpenStore: func() (store.Store, error) { return openStore(s, m, log) },
		Profile:   s.profile(),
		Fencing:   func(st store.Store) (emulate.Fencing, error) { return s.fencing.attach(st, s.profile(), m, log) },
		Host:      s.hostID(),
		HostKey:   s.vinitKey,
		Log:       log,
		// Test-only (docs/virtual-initiators.md §6, the lab's vinit test).
		VinitAfterCommit: vinitTestHook(os.Getenv(vinitTestHookEnv), log),
	})
	if err != nil {
		return nil, nil, err
	}
	m.WatchPaths(set.MultipathPaths)
	return &router.Router{
		Default:  s.backend,
		Rules:    s.rules,
		Plan:     plan,
		Backends: set.Backends,
		Classify: devices.Classify,
		Path:     fdPath,
		Log:      log,
	}, set.Close, nil
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
	info, cerr := newDevices(0).Classify(int(f.Fd()))
	// The daemon's plan, without building anything.
	r := &router.Router{Default: s.backend, Rules: s.rules, Plan: s.plan()}
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
	be := string(d.Backend)
	if d.Refusal != backend.NotRefused {
		be = "none: PR commands are refused with qemu-pr-helper's answer (SG_IO on a file: ENOTTY)"
	}
	fmt.Fprintf(w, "backend:  %s\n", be)
	fmt.Fprintf(w, "why:      %s\n", d.Why)
	if d.Backend == backend.Vinit {
		// docs/virtual-initiators.md §2, §6.
		below := "none: vinit serves SCSI disks and multipath maps, and refuses this device"
		switch info.Kind {
		case device.SCSIDisk, device.SCSIGeneric:
			below = "sgio"
		case device.DMMultipath:
			below = "mpath"
		}
		key, how := s.vinitKey, "configured (--vinit-key)"
		if key == 0 {
			key, how = vinit.HostKey(s.hostID()), "derived from the host id"
		}
		fmt.Fprintf(w, "host:     %s, key 0x%016x on the real LUN (%s)\n", s.hostID(), key, how)
		fmt.Fprintf(w, "below:    %s\n", below)
	}
	return nil
}

// profile is the engine profile of emulated LUs: LIO's answers (README,
// "Emulated reservations"), with the registration bound.
func (s *settings) profile() pr.Profile {
	p := pr.LIO()
	p.MaxRegistrations = s.maxRegs
	return p
}
