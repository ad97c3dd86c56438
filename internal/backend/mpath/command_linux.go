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
	m     Map
	st    *mapState
	cdb   [wire.CDBSize]byte
	param []byte
	// failed holds the paths that failed during this command.
	failed map[string]bool
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
// whatever they hold when they come back, they are registered again then.
func (c *command) forgetUnusable() {
	for _, p := range c.m.Paths {
		if !p.Usable {
			delete(c.st.registered, p.Dev)
		}
	}
	for dev := range c.st.registered {
		if !c.m.has(dev) {
			delete(c.st.registered, dev)
		}
	}
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
	delete(c.st.registered, dev)
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

// setKey registers key (0: unregisters) on each of devs, in parallel, and
// returns the paths that took it. Failures are logged: this is upkeep, the
// guest's command has its own answer.
func (c *command) setKey(devs []string, key uint64, why string) []string {
	if len(devs) == 0 {
		return nil
	}
	cdb, p := registerIgnore(key, c.st.aptpl)
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

// catchUp registers the map's key on usable paths that are not known to hold
// it: paths added to the map, or back from a failure. It does so only while
// READ KEYS shows the key on the LU: a key another host preempted stays gone.
func (c *command) catchUp() {
	if c.st.key == 0 {
		return
	}
	var todo []string
	for _, dev := range c.usable() {
		if !c.st.registered[dev] {
			todo = append(todo, dev)
		}
	}
	if len(todo) == 0 {
		return
	}
	o, _ := c.onePath(scsi.PRInCDB(scsi.SAReadKeys, wire.MaxData), nil)
	if o.Reply.Status != scsi.StatusGood {
		c.b.log.Warn("cannot read the keys to register new paths", "map", c.m.Name, "err", o.Err)
		return
	}
	keys, err := scsi.DecodeKeys(o.Reply.Data)
	if err != nil {
		c.b.log.Warn("cannot read the keys to register new paths", "map", c.m.Name, "err", err)
		return
	}
	if !slices.Contains(keys.Keys, c.st.key) {
		c.keyGone()
		return
	}
	for _, dev := range c.setKey(todo, c.st.key, "catch up") {
		c.st.registered[dev] = true
		c.b.log.Info("registered a new or returning path", "map", c.m.Name, "path", dev, "key", hexKey(c.st.key))
	}
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
func (c *command) tellDaemon() {
	d := c.b.opts.Daemon
	if d == nil {
		return
	}
	var err error
	if c.st.key != 0 {
		if err = d.SetPRKey(c.ctx, c.m.Name, c.st.key, c.st.aptpl); err == nil {
			err = d.SetPRStatus(c.ctx, c.m.Name)
		}
	} else {
		if err = d.UnsetPRStatus(c.ctx, c.m.Name); err == nil {
			err = d.UnsetPRKey(c.ctx, c.m.Name)
		}
	}
	if err == nil {
		return
	}
	level := c.b.log.Debug
	if !c.st.daemonWarned {
		c.st.daemonWarned = true
		level = c.b.log.Warn
	}
	level("multipathd not told of the map's key: prhelper registers returning paths itself, on the map's next command",
		"map", c.m.Name, "err", err)
}

func hexKey(k uint64) string { return fmt.Sprintf("0x%x", k) }
