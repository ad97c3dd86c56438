package mpath

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// command is one PR command on one map, with the map's state locked.
type command struct {
	b     *Backend
	ctx   context.Context
	fd    int // the map's descriptor, for lookAgain
	m     Map
	st    *mapState
	cdb   [wire.CDBSize]byte
	param []byte
	// failed holds the paths that failed during this command.
	failed map[string]bool
	// ptpla caches upkeepAPTPL for the command.
	ptpla *bool
	// announced is set when multipathd was told a key before the paths got
	// it (announce); told* is what multipathd was last told in this command,
	// so that it is told again only what differs; daemonDown stops further
	// attempts once it refused or failed.
	announced, told, daemonDown bool
	toldKey                     uint64
	toldAPTPL                   bool
}

// usable lists the paths that may be used now, in the map's order.
func (c *command) usable() []string {
	var devs []string
	for _, p := range c.m.Paths {
		if p.Usable && !c.failed[p.Dev] {
			devs = append(devs, p.Dev)
		}
	}
	return devs
}

// forgetUnusable drops the paths that are not usable from the registered set:
// whatever they hold when they come back, they are registered again then. A
// path that held the map's key is remembered as stale with it, so that it is
// unregistered on its return if the map has no key by then.
func (c *command) forgetUnusable() {
	for _, p := range c.m.Paths {
		if !p.Usable {
			c.leftBehind(p.Dev)
		}
	}
	for dev := range c.st.registered {
		if !c.m.has(dev) {
			delete(c.st.registered, dev)
		}
	}
	for dev := range c.st.stale {
		if !c.m.has(dev) {
			delete(c.st.stale, dev)
		}
	}
}

// lookAgain looks at the map's paths afresh (Options.Rediscover) when the
// command's look, which may come from Discover's cache, has a path away: a
// path that came back since must get a PR OUT that changes the map's
// registrations, because multipathd may have registered it already, with the
// key it had then (it registers a returning path itself, docs/multipath.md
// §4). A key change or unregistration that left such a path out would leave
// it holding the map's previous key, which a host with one nexus never holds
// (seed 1604 of mpath-diff's fault runs, docs/multipath.md §9). register
// calls it again after announce: from then on multipathd registers the new
// key, so a path it registered before is one this look sees back.
func (c *command) lookAgain() {
	if c.allUsable() {
		return
	}
	look := c.b.opts.Rediscover
	if look == nil {
		look = c.b.opts.Discover
	}
	m, err := look(c.fd)
	if err != nil || m.Name != c.m.Name {
		c.b.log.Debug("cannot look at the map's paths again; using the first look", "map", c.m.Name, "err", err)
		return
	}
	m = m.forPR()
	for _, p := range m.Paths {
		if p.Usable && !slices.ContainsFunc(c.m.Paths, func(q Path) bool { return q.Dev == p.Dev && q.Usable }) {
			c.b.log.Info("a path is back since the last look at the map: the PR OUT goes there too", "map", c.m.Name, "path", p.Dev, "cmd", scsi.CommandName(c.cdb[:]))
		}
	}
	c.m = m
	c.forgetUnusable()
}

// allUsable reports whether every path of the command's look is usable.
func (c *command) allUsable() bool {
	for _, p := range c.m.Paths {
		if !p.Usable {
			return false
		}
	}
	return true
}

// leftBehind notes that dev is away: it keeps whatever key it holds until it
// returns.
func (c *command) leftBehind(dev string) {
	if c.st.registered[dev] && c.st.key != 0 {
		if c.st.stale == nil {
			c.st.stale = map[string]uint64{}
		}
		c.st.stale[dev] = c.st.key
	}
	delete(c.st.registered, dev)
}

func (m Map) has(dev string) bool {
	for _, p := range m.Paths {
		if p.Dev == dev {
			return true
		}
	}
	return false
}

// send runs one CDB on one path, again after a unit attention (uaRetries).
func (c *command) send(dev string, cdb [wire.CDBSize]byte, param []byte) sgio.Outcome {
	fd, err := c.b.fd(dev)
	if err != nil {
		return sgio.Outcome{Reply: scsi.CheckCondition(scsi.SenseLUNCommFailure), Err: err, IoctlErr: err}
	}
	var o sgio.Outcome
	for try := 0; ; try++ {
		if err := c.ctx.Err(); err != nil {
			// The server gave up on this request (the shutdown's grace period
			// ended): start no more device I/O for it, since an SG_IO cannot be
			// interrupted once sent. Not a path failure: path state is kept.
			return sgio.Outcome{Reply: scsi.CheckCondition(scsi.SenseIOError), Err: fmt.Errorf("path %s: not sent: %w", dev, err)}
		}
		o = c.b.sg.Do(fd, cdb, param)
		if o.IoctlErr != nil {
			c.b.forget(dev)
		}
		if try == uaRetries || !isUnitAttention(o.Reply) {
			break
		}
		c.b.log.Debug("unit attention on a path, sending again", "map", c.m.Name, "path", dev, "cmd", scsi.CommandName(cdb[:]))
	}
	if o.Err != nil {
		o.Err = fmt.Errorf("path %s: %w", dev, o.Err)
	}
	return o
}

func isUnitAttention(r scsi.Result) bool {
	s, ok := scsi.ParseSense(r.Sense[:])
	return r.Status == scsi.StatusCheckCondition && ok && s.Key == scsi.KeyUnitAttention
}

// pathFailed records that a path failed during this command.
func (c *command) pathFailed(dev string, o sgio.Outcome) {
	if c.failed == nil {
		c.failed = map[string]bool{}
	}
	c.failed[dev] = true
	c.leftBehind(dev)
	c.b.log.Warn("path failed, trying another", "map", c.m.Name, "path", dev, "cmd", scsi.CommandName(c.cdb[:]), "err", o.Err)
}

// onePath sends a command to the first usable path, and to the next when a
// path fails on the way. It returns the device's answer and the path that gave
// it ("" when every path failed).
func (c *command) onePath(cdb [wire.CDBSize]byte, param []byte) (sgio.Outcome, string) {
	last := sgio.Outcome{Reply: scsi.CheckCondition(scsi.SenseLUNCommFailure),
		Err: fmt.Errorf("no usable path (%s)", c.m.describePaths())}
	for _, dev := range c.usable() {
		o := c.send(dev, cdb, param)
		if !o.PathFailed() {
			return o, dev
		}
		c.pathFailed(dev, o)
		last = o
	}
	last.Err = fmt.Errorf("every path failed: %w", last.Err)
	return last, ""
}

// fanOut sends one command to several paths at once.
func (c *command) fanOut(devs []string, cdb [wire.CDBSize]byte, param []byte) []sgio.Outcome {
	out := make([]sgio.Outcome, len(devs))
	var wg sync.WaitGroup
	for i, dev := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = c.send(dev, cdb, param)
		}()
	}
	wg.Wait()
	return out
}

// registerIgnore builds REGISTER AND IGNORE EXISTING KEY to key (SPC-4
// §6.16.2.3): what a path gets to join, leave (key 0) or catch up with the map.
func registerIgnore(key uint64, aptpl bool) ([wire.CDBSize]byte, []byte) {
	p := make([]byte, scsi.PROutParamLen)
	putKeys(p, 0, key)
	if aptpl {
		p[20] = scsi.ParamAPTPL
	}
	return scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, scsi.PROutParamLen), p
}

// setKey registers key (0: unregisters) on each of devs, in parallel, with
// the APTPL bit aptpl, and returns the paths that took it. Failures are
// logged: this is upkeep, the guest's command has its own answer.
func (c *command) setKey(devs []string, key uint64, aptpl bool, why string) []string {
	if len(devs) == 0 {
		return nil
	}
	cdb, p := registerIgnore(key, aptpl)
	var ok []string
	for i, o := range c.fanOut(devs, cdb, p) {
		switch {
		case o.Reply.Status == scsi.StatusGood:
			ok = append(ok, devs[i])
		case o.PathFailed():
			c.pathFailed(devs[i], o)
		default:
			c.b.log.Warn("could not set a path's key", "map", c.m.Name, "path", devs[i], "key", hexKey(key), "why", why, "err", o.Err)
		}
	}
	return ok
}

// catchUpPaths lists the usable paths that are not in line with the map: not
// known to hold its key, or, when the map has none, left holding an old one.
func (c *command) catchUpPaths() []string {
	var todo []string
	for _, dev := range c.usable() {
		if (c.st.key != 0 && !c.st.registered[dev]) || (c.st.key == 0 && c.st.stale[dev] != 0) {
			todo = append(todo, dev)
		}
	}
	return todo
}

// catchUp registers the map's key on usable paths that are not known to hold
// it: paths added to the map, or back from a failure. It does so only while
// the map still holds the key (keyAlive): a key another host preempted stays
// gone.
// A path that comes back holding a key the map no longer has (the guest
// unregistered while it was away) is unregistered: a host with one nexus
// would hold nothing either. The upkeep registrations carry the LU's current
// PTPL_A (upkeepAPTPL), so that they do not undo another host's APTPL.
func (c *command) catchUp() {
	todo := c.catchUpPaths()
	if len(todo) == 0 {
		return
	}
	if c.st.key != 0 {
		alive, known := c.keyAlive(todo)
		if !known {
			return
		}
		if !alive {
			c.keyGone()
			c.catchUp() // the stale paths, if any
			return
		}
		todo = c.catchUpPaths()
		for _, dev := range c.setKey(todo, c.st.key, c.upkeepAPTPL(), "catch up") {
			c.st.registered[dev] = true
			delete(c.st.stale, dev)
			c.b.log.Info("registered a new or returning path", "map", c.m.Name, "path", dev, "key", hexKey(c.st.key))
		}
		return
	}
	aptpl := c.upkeepAPTPL()
	for _, dev := range todo {
		// REGISTER with the key the path was left holding, not REGISTER AND
		// IGNORE EXISTING KEY: if the path's registration changed since (another
		// host preempted it), the device refuses and nothing else is touched.
		p := make([]byte, scsi.PROutParamLen)
		putKeys(p, c.st.stale[dev], 0)
		if aptpl {
			p[20] = scsi.ParamAPTPL
		}
		o := c.send(dev, scsi.PROutCDB(scsi.SARegister, 0, 0, scsi.PROutParamLen), p)
		switch {
		case o.PathFailed():
			c.pathFailed(dev, o)
			continue
		case o.Reply.Status == scsi.StatusGood:
			c.b.log.Info("unregistered a returning path that still held the map's old key", "map", c.m.Name, "path", dev, "key", hexKey(c.st.stale[dev]))
		default:
			c.b.log.Debug("a returning path no longer holds the map's old key", "map", c.m.Name, "path", dev, "key", hexKey(c.st.stale[dev]), "err", o.Err)
		}
		delete(c.st.stale, dev)
	}
}

// keyAlive tells whether the map's nexuses still hold its key, before paths
// are registered with it again. A path that holds it proves it: REGISTER
// with the key as both RESERVATION KEY and SERVICE ACTION RESERVATION KEY is
// GOOD on a nexus registered with it, and changes nothing but the generation
// (the APTPL bit repeats the LU's), and RESERVATION CONFLICT on one that lost
// it, which another host's PREEMPT or CLEAR does to every path at once. READ
// KEYS cannot tell: another host may hold the same key. The probe goes to a
// usable path known to hold the key, else to a returning path that held it
// when it went away; only when there is neither (the key changed while every
// path that has it now is away) does READ KEYS decide. known is false when
// no answer could be had.
func (c *command) keyAlive(todo []string) (alive, known bool) {
	var probes []string
	for _, dev := range c.usable() {
		if c.st.registered[dev] {
			probes = append(probes, dev)
		}
	}
	for _, dev := range todo {
		if c.st.stale[dev] == c.st.key {
			probes = append(probes, dev)
		}
	}
	if len(probes) == 0 {
		o, _ := c.onePath(scsi.PRInCDB(scsi.SAReadKeys, wire.MaxData), nil)
		keys, err := scsi.DecodeKeys(o.Reply.Data)
		if o.Reply.Status != scsi.StatusGood || err != nil || keys.Truncated {
			c.b.log.Warn("cannot read the keys to register new paths", "map", c.m.Name, "err", o.Err)
			return false, false
		}
		return slices.Contains(keys.Keys, c.st.key), true
	}
	p := make([]byte, scsi.PROutParamLen)
	putKeys(p, c.st.key, c.st.key)
	if c.upkeepAPTPL() {
		p[20] = scsi.ParamAPTPL
	}
	cdb := scsi.PROutCDB(scsi.SARegister, 0, 0, scsi.PROutParamLen)
	for _, dev := range probes {
		if !slices.Contains(c.usable(), dev) {
			continue
		}
		o := c.send(dev, cdb, p)
		switch {
		case o.PathFailed():
			c.pathFailed(dev, o)
		case o.Reply.Status == scsi.StatusGood:
			c.st.registered[dev] = true
			delete(c.st.stale, dev)
			return true, true
		case o.Reply.Status == scsi.StatusReservationConflict:
			return false, true
		default:
			c.b.log.Warn("cannot tell whether the map's key is still registered", "map", c.m.Name, "path", dev, "err", o.Err)
			return false, false
		}
	}
	return false, false
}

// upkeepAPTPL is the APTPL bit for registrations prhelper makes on its own
// (catching up, re-registering after a PREEMPT): the LU's PTPL_A as REPORT
// CAPABILITIES shows it. The device keeps one APTPL for the LU and every
// REGISTER sets it (SPC-4 §5.13.5.3; LIO), so repeating it changes nothing a
// guest or another host set. When it cannot be read, the map's own last APTPL.
func (c *command) upkeepAPTPL() bool {
	if c.ptpla != nil {
		return *c.ptpla
	}
	a := c.st.aptpl
	o, _ := c.onePath(scsi.PRInCDB(scsi.SAReportCapabilities, scsi.CapabilitiesLen), nil)
	if caps, err := scsi.DecodeCapabilities(o.Reply.Data); o.Reply.Status == scsi.StatusGood && err == nil && caps.PTPLC {
		a = caps.PTPLA
	}
	c.ptpla = &a
	return a
}

// noteKeys looks at READ KEYS data the guest asked for: when the map's key is
// not among the keys, another initiator preempted or cleared it, and the map
// is unregistered from now on (multipathd is told too, so that neither it nor
// libmpathpersist keeps a stale key).
func (c *command) noteKeys(rep scsi.Result) {
	if c.st.key != 0 && keyMissing(rep, c.cdb, c.st.key) {
		c.keyGone()
	}
}

// keyMissing reports whether rep is complete READ KEYS data without key.
func keyMissing(rep scsi.Result, cdb [wire.CDBSize]byte, key uint64) bool {
	if rep.Status != scsi.StatusGood || cdb[0] != scsi.OpPersistentReserveIn || scsi.ServiceAction(cdb[:]) != scsi.SAReadKeys {
		return false
	}
	keys, err := scsi.DecodeKeys(rep.Data)
	return err == nil && !keys.Truncated && !slices.Contains(keys.Keys, key)
}

// keyGone forgets the map's key after it disappeared from the LU.
func (c *command) keyGone() {
	c.b.log.Warn("the map's key is no longer registered on the LU (preempted or cleared by another initiator): paths are not registered again",
		"map", c.m.Name, "key", hexKey(c.st.key))
	c.st.key, c.st.registered = 0, map[string]bool{}
	c.tellDaemon()
}

// tellDaemon gives multipathd the map's key and registration status, so that
// it registers paths that appear or come back.
func (c *command) tellDaemon() { c.tell(c.st.key, c.st.aptpl) }

// announce tells multipathd the key the map is about to change to (0: the
// map is about to unregister), before the paths get it. multipathd registers
// paths itself (a returning path, and every usable path of a map it updates):
// it reads the path's keys and, finding its key, registers the path with the
// key it holds then, under its lock. Told after the paths changed, it could
// register the old key on a path in between (the map then holds two keys, one
// of them outliving another host's PREEMPT of the new one: seen in
// mpath-diff's fault runs, docs/multipath.md §4 and §8). Told
// first, it answers once a registration in progress is done, and registers
// the new key, or none, from then on. A command that announced ends with
// tellDaemon, which puts multipathd back when the change failed.
func (c *command) announce(key uint64, aptpl bool) {
	c.announced = true
	c.tell(key, aptpl)
}

// tell tells multipathd the map's key (setprkey, setprstatus) or that it has
// none (unsetprstatus, unsetprkey), unless it was told that already during
// this command.
func (c *command) tell(key uint64, aptpl bool) {
	d := c.b.opts.Daemon
	if d == nil || c.daemonDown {
		return
	}
	if c.told && c.toldKey == key && (key == 0 || c.toldAPTPL == aptpl) {
		return
	}
	var err error
	if key != 0 {
		if err = d.SetPRKey(c.ctx, c.m.Name, key, aptpl); err == nil {
			err = d.SetPRStatus(c.ctx, c.m.Name)
		}
	} else {
		if err = d.UnsetPRStatus(c.ctx, c.m.Name); err == nil {
			err = d.UnsetPRKey(c.ctx, c.m.Name)
		}
	}
	if err == nil {
		c.told, c.toldKey, c.toldAPTPL = true, key, aptpl
		return
	}
	c.told, c.daemonDown = false, true
	level := c.b.log.Debug
	if !c.st.daemonWarned {
		c.st.daemonWarned = true
		level = c.b.log.Warn
	}
	level("multipathd not told of the map's key: prhelper registers returning paths itself, on the map's next command",
		"map", c.m.Name, "err", err)
}

func hexKey(k uint64) string { return fmt.Sprintf("0x%x", k) }
