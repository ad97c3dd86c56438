package mpath

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/scsi"
)

// Map is a dm-multipath map as Discover found it for one command.
type Map struct {
	Name  string // the dm name, as multipathd knows the map ("mpatha")
	WWID  string // the map's WWID (its dm uuid without "mpath-")
	Paths []Path
}

// Path is one path device of a map.
type Path struct {
	Dev    string // kernel name of the SCSI disk: "sdb"
	Usable bool   // the SCSI device is running and dm has not failed the path
	Why    string // why the path is not usable, for the log
	// Reachable is set when the SCSI device is running, whether or not dm
	// failed the path: PR commands still go there (Map.forPR).
	Reachable bool
	// State is the path's state for metrics: usable, dm_failed,
	// scsi_<SCSI device state> (offline, blocked, ...) or not_scsi.
	State string
}

// Daemon is what the backend tells multipathd about a map
// (multipathd.Client's prkey and prstatus commands).
type Daemon interface {
	SetPRKey(ctx context.Context, mapName string, key uint64, aptpl bool) error
	UnsetPRKey(ctx context.Context, mapName string) error
	SetPRStatus(ctx context.Context, mapName string) error
	UnsetPRStatus(ctx context.Context, mapName string) error
}

// ConfiguredKey is the reservation_key multipath.conf sets for a map, if it
// fixes one: Fixed false means none, or "file" (keys multipathd stores itself).
type ConfiguredKey struct {
	Fixed bool
	Key   uint64
}

// Options configures a Backend. Discover and Open are required.
type Options struct {
	// Discover finds the map behind a received descriptor and its paths. It
	// may answer from a cache (Discoverer.TTL).
	Discover func(fd int) (Map, error)
	// Rediscover, when not nil, finds the map's paths afresh, past any cache
	// Discover keeps (Discoverer.Look). A PR OUT uses it while a path of the
	// map is away, so that a path back since the cached look gets the
	// command (command.lookAgain). nil: Discover.
	Rediscover func(fd int) (Map, error)
	// Open opens a path device for SG_IO (see OpenPath).
	Open func(dev string) (int, error)
	// SGIO configures the SG_IO sent to the paths (timeout; a fake ioctl in tests).
	SGIO sgio.Options
	// Daemon, when not nil, is told each map's key and registration status.
	Daemon Daemon
	// Key, when not nil, gives the reservation_key multipath.conf sets for a map.
	Key    func(m Map) (ConfiguredKey, error)
	Logger *slog.Logger
}

// PathTimeout is the SG_IO timeout on each path when Options.SGIO.Timeout is 0.
// A path that hangs instead of failing holds a command this long before the
// next path is tried (onePath), so it is short against QEMU's 30 s I/O timeout:
// a two-path map whose first path hangs still answers in about 10 s, inside
// the guest's own command timeout. It is five times libmpathpersist's 2 s, because
// a PR OUT is a durable metadata update on the array (APTPL, replication
// between controllers) that a loaded but healthy array can take seconds to
// answer; failing such a path would leave the map's paths with different keys
// until its next command (see doc.go, "Path timeout").
const PathTimeout = 10 * time.Second

// uaRetries is how often a command that met a unit attention on a path is sent
// again there. A PR command reports at most one unit attention per nexus
// condition (SPC-4 §5.14), and the guest cannot tell which path it came from;
// libmpathpersist retries the same way.
const uaRetries = 3

// Backend executes PR commands on dm-multipath maps through their paths. It is
// safe for concurrent use.
type Backend struct {
	opts Options
	sg   *sgio.Passthrough
	log  *slog.Logger

	mu   sync.Mutex
	fds  map[string]int       // open path devices by kernel name
	maps map[string]*mapState // by map name
}

// mapState is what the backend remembers about one map between commands.
type mapState struct {
	mu sync.Mutex // serialises the map's commands
	// key is the key prhelper last registered through the map, 0 when none.
	key   uint64
	aptpl bool
	// registered holds the paths known to hold key.
	registered map[string]bool
	// stale holds paths that went away (or failed) holding the map's key,
	// with that key; when they are back, the map's next command brings them in
	// line (catchUp): the map's key then, or, when it has none, no
	// registration.
	stale map[string]uint64
	// own is the I_T nexus of each path, as READ FULL STATUS shows it, learned
	// when the path was seen to hold the map's reservation. It is how the map
	// tells its own reservation, held through a path that is away, from
	// another host's with the same key (heldByMap).
	own map[string]nexusID
	// daemonWarned is set once multipathd refused or failed, to log it once.
	daemonWarned bool
}

var _ backend.Backend = (*Backend)(nil)

// New returns a Backend. It opens nothing until the first command.
func New(opts Options) (*Backend, error) {
	if opts.Discover == nil || opts.Open == nil {
		return nil, errors.New("mpath: Discover and Open are required")
	}
	if opts.SGIO.Timeout == 0 {
		opts.SGIO.Timeout = PathTimeout
	}
	sg, err := sgio.New(opts.SGIO)
	if err != nil {
		return nil, fmt.Errorf("mpath: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backend{opts: opts, sg: sg, log: log, fds: map[string]int{}, maps: map[string]*mapState{}}, nil
}

// Name returns "mpath".
func (b *Backend) Name() string { return "mpath" }

// Close closes the path devices the backend opened.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for dev, fd := range b.fds {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", dev, err))
		}
		delete(b.fds, dev)
	}
	return errors.Join(errs...)
}

// Execute runs req on the map behind req.FD.
func (b *Backend) Execute(ctx context.Context, req *backend.Request) (scsi.Result, error) {
	if req == nil {
		return scsi.CheckCondition(scsi.SenseInvalidField), errors.New("mpath: nil request")
	}
	m, err := b.opts.Discover(req.FD)
	if err != nil {
		return scsi.CheckCondition(scsi.SenseLUNCommFailure), fmt.Errorf("mpath: %w", err)
	}
	m = m.forPR()
	st := b.state(m.Name)
	if req.CDB[0] == scsi.OpPersistentReserveIn {
		if o, ok := b.quietPRIn(ctx, m, st, req); ok {
			return o.Reply, o.Err
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	c := &command{b: b, ctx: ctx, fd: req.FD, m: m, st: st, cdb: req.CDB, param: req.Param}
	if req.CDB[0] == scsi.OpPersistentReserveOut {
		c.lookAgain()
	}
	c.forgetUnusable()
	if len(c.usable()) == 0 {
		return scsi.CheckCondition(scsi.SenseLUNCommFailure), fmt.Errorf("mpath: %s: no usable path (%s)", m.Name, m.describePaths())
	}
	switch req.CDB[0] {
	case scsi.OpPersistentReserveIn:
		c.catchUp()
		o, _ := c.onePath(c.cdb, c.param)
		c.noteKeys(o.Reply)
		return o.Reply, o.Err
	case scsi.OpPersistentReserveOut:
		if rep, err := c.checkKeyPolicy(); err != nil {
			return rep, err
		}
		c.catchUp()
		c.followReservation()
		return c.prOut()
	}
	return scsi.CheckCondition(scsi.SenseInvalidOpcode), fmt.Errorf("mpath: opcode 0x%02x is not PERSISTENT RESERVE IN/OUT", req.CDB[0])
}

// quietPRIn runs a PR IN without holding the map's lock while it waits for the
// device, when there is nothing to keep up: no key, or every usable path known
// to hold it. Parallel PR IN (a guest's polling, several guests on one map)
// then goes to the paths at once. It works on a copy of the map's state; only
// a READ KEYS that shows the key gone takes the lock, to forget the key. ok is
// false when the command needs the locked path (a path to catch up).
func (b *Backend) quietPRIn(ctx context.Context, m Map, st *mapState, req *backend.Request) (o sgio.Outcome, ok bool) {
	st.mu.Lock()
	snap := &mapState{key: st.key, aptpl: st.aptpl, registered: maps.Clone(st.registered), stale: maps.Clone(st.stale)}
	st.mu.Unlock()
	c := &command{b: b, ctx: ctx, m: m, st: snap, cdb: req.CDB, param: req.Param}
	c.forgetUnusable()
	if len(c.catchUpPaths()) > 0 {
		return o, false
	}
	if len(c.usable()) == 0 {
		return o, false // the locked path answers it
	}
	o, _ = c.onePath(c.cdb, c.param)
	if snap.key != 0 && keyMissing(o.Reply, c.cdb, snap.key) {
		st.mu.Lock()
		if st.key == snap.key {
			(&command{b: b, ctx: ctx, m: m, st: st, cdb: req.CDB}).keyGone()
		}
		st.mu.Unlock()
	}
	return o, true
}

func (b *Backend) state(name string) *mapState {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, ok := b.maps[name]
	if !ok {
		st = &mapState{registered: map[string]bool{}, stale: map[string]uint64{}, own: map[string]nexusID{}}
		b.maps[name] = st
	}
	return st
}

// fd returns the open descriptor of a path device, opening it on first use.
func (b *Backend) fd(dev string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if fd, ok := b.fds[dev]; ok {
		return fd, nil
	}
	fd, err := b.opts.Open(dev)
	if err != nil {
		return -1, err
	}
	b.fds[dev] = fd
	return fd, nil
}

// forget closes a path device whose descriptor failed, so that the next use
// opens it again (the kernel name may now be another device).
func (b *Backend) forget(dev string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if fd, ok := b.fds[dev]; ok {
		unix.Close(fd)
		delete(b.fds, dev)
	}
}

// OpenPath opens /dev/<dev> read-only, as libmpathpersist does: with
// CAP_SYS_RAWIO, SG_IO accepts PR OUT on a read-only descriptor. O_NONBLOCK
// keeps the open from waiting on a path that is going away.
func OpenPath(dev string) (int, error) {
	if dev == "" || dev == "." || dev == ".." || strings.ContainsRune(dev, '/') {
		return -1, fmt.Errorf("open path: bad device name %q", dev)
	}
	fd, err := unix.Open("/dev/"+dev, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/%s: %w", dev, err)
	}
	return fd, nil
}

// forPR returns the map with the paths PR commands go to marked usable: the
// paths dm-multipath uses, then, after them, the paths it failed whose SCSI
// device is still running. dm fails a path on an I/O error through the map,
// which need not stop PR commands on the path's nexus: the lab saw a path that
// came back with a capacity of 0 (its rescan's READ CAPACITY met another
// host's Exclusive Access reservation on an unregistered nexus) failed again
// by every read through the map while PR commands on it worked; leaving it
// out made the map refuse every command once its other path was away, and
// left the path holding an old key. A host with one nexus keeps its
// registration there; so does the map (docs/multipath.md §9). A path that
// really is gone has a SCSI device that is not running, or fails the SG_IO,
// and the next path is tried.
func (m Map) forPR() Map {
	out := m.clone()
	var front, back []Path
	for _, p := range out.Paths {
		if !p.Usable && p.Reachable {
			p.Usable, p.Why = true, ""
			back = append(back, p)
			continue
		}
		front = append(front, p)
	}
	out.Paths = append(front, back...)
	return out
}

func (m Map) describePaths() string {
	if len(m.Paths) == 0 {
		return "the map has no paths"
	}
	s := ""
	for i, p := range m.Paths {
		if i > 0 {
			s += ", "
		}
		s += p.Dev
		if !p.Usable {
			s += " " + p.Why
		}
	}
	return s
}

// prOutParams reads the fields of a basic PR OUT parameter list (SPC-4
// §6.16.3); ok is false when the list is shorter than 24 bytes.
func prOutParams(p []byte) (key, saKey uint64, flags byte, ok bool) {
	if len(p) < scsi.PROutParamLen {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint64(p[0:8]), binary.BigEndian.Uint64(p[8:16]), p[20], true
}
