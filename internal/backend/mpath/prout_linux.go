package mpath

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// checkKeyPolicy refuses a PR OUT whose key contradicts a reservation_key
// fixed in multipath.conf, as libmpathpersist does: REGISTER and REGISTER AND
// IGNORE EXISTING KEY may only register the configured key (or unregister,
// SERVICE ACTION RESERVATION KEY 0); every other service action must carry it
// as RESERVATION KEY. The reply is what QEMU sends guests for
// libmpathpersist's refusal (MPATH_PR_SYNTAX_ERROR → 0B/08/00).
func (c *command) checkKeyPolicy() (scsi.Result, error) {
	if c.b.opts.Key == nil {
		return scsi.Result{}, nil
	}
	k, err := c.b.opts.Key(c.m)
	if err != nil {
		c.b.log.Warn("cannot read the map's reservation_key from the multipath configuration; not enforcing it", "map", c.m.Name, "err", err)
		return scsi.Result{}, nil
	}
	rk, sark, _, ok := prOutParams(c.param)
	if !k.Fixed || !ok {
		return scsi.Result{}, nil
	}
	sa := scsi.ServiceAction(c.cdb[:])
	field, key := "RESERVATION KEY", rk
	if sa == scsi.SARegister || sa == scsi.SARegisterAndIgnoreExisting {
		field, key = "SERVICE ACTION RESERVATION KEY", sark
		if sark == 0 {
			return scsi.Result{}, nil
		}
	}
	if key == k.Key {
		return scsi.Result{}, nil
	}
	return scsi.CheckCondition(scsi.SenseLUNCommFailure), fmt.Errorf(
		"mpath: %s refused on %s: its %s %s is not the reservation_key %s that multipath.conf sets for this map (libmpathpersist refuses it too)",
		scsi.CommandName(c.cdb[:]), c.m.Name, field, hexKey(key), hexKey(k.Key))
}

// prOut dispatches a PR OUT by service action.
func (c *command) prOut() (scsi.Result, error) {
	var o sgio.Outcome
	switch scsi.ServiceAction(c.cdb[:]) {
	case scsi.SARegister, scsi.SARegisterAndIgnoreExisting:
		o = c.register()
	case scsi.SAReserve:
		o = c.reserve()
	case scsi.SARelease:
		o = c.release()
	case scsi.SAClear:
		o = c.clear()
	case scsi.SAPreempt, scsi.SAPreemptAndAbort:
		o = c.preempt()
	case scsi.SARegisterAndMove:
		o = c.registerAndMove()
	default:
		o, _ = c.onePath(c.cdb, c.param)
	}
	return o.Reply, o.Err
}

// register sends REGISTER or REGISTER AND IGNORE EXISTING KEY to every usable
// path: all at once, or, with SPEC_I_PT or ALL_TG_PT, first to one path as the
// guest sent it (the TransportIDs and target ports are registered there, once)
// and then as a plain REGISTER AND IGNORE EXISTING KEY to the others. When the
// device refuses it on a path, the paths that took it get their previous key
// back and the refusal is the answer.
func (c *command) register() sgio.Outcome {
	rk, sark, flags, ok := prOutParams(c.param)
	if !ok {
		o, _ := c.onePath(c.cdb, c.param) // the device answers a short list
		return o
	}
	sa := scsi.ServiceAction(c.cdb[:])
	aptpl := flags&scsi.ParamAPTPL != 0
	// prev is a path's key before this command, for a rollback: REGISTER
	// succeeds only where the path held RESERVATION KEY.
	prev := func(dev string) uint64 {
		if sa == scsi.SARegister {
			return rk
		}
		if c.st.registered[dev] {
			return c.st.key
		}
		return 0
	}

	var good []string
	var first sgio.Outcome
	rest := c.usable()
	if flags&(scsi.ParamSpecIPT|scsi.ParamAllTgPt) != 0 {
		o, dev := c.onePath(c.cdb, c.param)
		if dev == "" || o.Reply.Status != scsi.StatusGood {
			return o
		}
		first, good = o, []string{dev}
		rest = slices.DeleteFunc(c.usable(), func(d string) bool { return d == dev })
		cdb, p := registerIgnore(sark, aptpl)
		return c.registerRest(good, first, rest, cdb, p, sark, aptpl, prev)
	}
	return c.registerRest(nil, first, rest, c.cdb, c.param, sark, aptpl, prev)
}

// registerRest sends cdb/param to devs in parallel and settles the outcome of
// the whole registration with the paths that already took it (good, first).
func (c *command) registerRest(good []string, first sgio.Outcome, devs []string, cdb [wire.CDBSize]byte, param []byte,
	sark uint64, aptpl bool, prev func(string) uint64) sgio.Outcome {
	var (
		refused  []int
		conflict []string
		outs     = c.fanOut(devs, cdb, param)
		lastFail sgio.Outcome
	)
	for i, o := range outs {
		switch {
		case o.Reply.Status == scsi.StatusGood:
			if len(good) == 0 {
				first = o
			}
			good = append(good, devs[i])
		case o.PathFailed():
			c.pathFailed(devs[i], o)
			lastFail = o
		case o.Reply.Status == scsi.StatusReservationConflict && scsi.ServiceAction(cdb[:]) == scsi.SARegister:
			conflict = append(conflict, devs[i])
		default:
			refused = append(refused, i)
		}
	}
	// REGISTER conflicts on a path that does not hold RESERVATION KEY. When it
	// succeeded on others, such a path is one the map gained since its last
	// registration (the key exists on the LU, so nobody preempted it): it
	// joins with REGISTER AND IGNORE EXISTING KEY. When it succeeded nowhere,
	// the conflict is the device's answer.
	if len(conflict) > 0 {
		if len(good) == 0 {
			for i := range outs {
				if devs[i] == conflict[0] {
					return outs[i]
				}
			}
		}
		joined := c.setKey(conflict, sark, "path joining the registration")
		good = append(good, joined...)
		for _, dev := range conflict {
			if !slices.Contains(joined, dev) && !c.failed[dev] {
				refused = append(refused, slices.Index(devs, dev))
			}
		}
	}
	if len(refused) > 0 {
		o := outs[refused[0]]
		c.rollback(good, prev)
		o.Err = fmt.Errorf("%s refused on path %s of %s, rolled back on %v: %w",
			scsi.CommandName(cdb[:]), devs[refused[0]], c.m.Name, good, o.Err)
		return o
	}
	if len(good) == 0 {
		lastFail.Err = fmt.Errorf("%s: every path failed: %w", c.m.Name, lastFail.Err)
		return lastFail
	}
	c.st.key, c.st.aptpl = sark, aptpl
	c.st.registered = map[string]bool{}
	if sark != 0 {
		for _, dev := range good {
			c.st.registered[dev] = true
		}
	}
	c.tellDaemon()
	c.b.log.Debug("registered on paths", "map", c.m.Name, "key", hexKey(sark), "paths", good)
	return first
}

// rollback gives each path its key from before the command.
func (c *command) rollback(devs []string, prev func(string) uint64) {
	byKey := map[uint64][]string{}
	for _, dev := range devs {
		byKey[prev(dev)] = append(byKey[prev(dev)], dev)
	}
	for key, ds := range byKey {
		back := c.setKey(ds, key, "rollback")
		if len(back) != len(ds) {
			c.b.log.Error("rollback incomplete: paths of the map may hold different keys", "map", c.m.Name, "paths", ds, "restored", back)
		}
	}
}

// reserve sends RESERVE to one path. A conflict because the map itself holds
// that reservation through another of its paths (one that failed, usually) is
// resolved by moving the reservation to this path.
func (c *command) reserve() sgio.Outcome {
	o, dev := c.onePath(c.cdb, c.param)
	if dev == "" || o.Reply.Status != scsi.StatusReservationConflict {
		return o
	}
	rk, _, _, ok := prOutParams(c.param)
	typ := c.cdb[2] & 0x0f
	if !ok || rk == 0 || !c.heldByKey(dev, rk, typ) {
		return o
	}
	if moved, mo := c.moveReservation(dev, rk, typ); !moved {
		return mo
	}
	return sgio.Outcome{Reply: scsi.Good(nil)}
}

// release sends RELEASE to one path. RELEASE from a registered nexus that does
// not hold the reservation is GOOD and changes nothing (SPC-4 §5.13.11.2); when
// the map holds the reservation through another path, it is moved here and
// released.
func (c *command) release() sgio.Outcome {
	o, dev := c.onePath(c.cdb, c.param)
	rk, _, _, ok := prOutParams(c.param)
	typ := c.cdb[2] & 0x0f
	if dev == "" || o.Reply.Status != scsi.StatusGood || !ok || rk == 0 || allRegistrants(typ) || !c.heldByKey(dev, rk, typ) {
		return o
	}
	if moved, mo := c.moveReservation(dev, rk, typ); !moved {
		return mo
	}
	return c.send(dev, c.cdb, c.param)
}

func allRegistrants(typ byte) bool {
	return typ == scsi.TypeWriteExclusiveAllRegs || typ == scsi.TypeExclusiveAccessAllRegs
}

// heldByKey reads the reservation through dev and reports whether key holds
// one of type typ.
func (c *command) heldByKey(dev string, key uint64, typ byte) bool {
	o := c.send(dev, scsi.PRInCDB(scsi.SAReadReservation, 24), nil)
	if o.Reply.Status != scsi.StatusGood {
		return false
	}
	r, err := scsi.DecodeReservation(o.Reply.Data)
	return err == nil && r.Held && r.Key == key && r.Type == typ
}

// moveReservation moves the reservation the map holds with key to path dev:
// PREEMPT with the map's own key as SERVICE ACTION RESERVATION KEY makes dev's
// nexus the holder and removes the key's other registrations (SPC-4
// §5.13.11.4.3), so the other usable paths register again.
func (c *command) moveReservation(dev string, key uint64, typ byte) (bool, sgio.Outcome) {
	c.b.log.Info("the map holds the reservation through another path: moving it", "map", c.m.Name, "to", dev, "key", hexKey(key), "type", typ)
	p := make([]byte, scsi.PROutParamLen)
	putKeys(p, key, key)
	o := c.send(dev, scsi.PROutCDB(scsi.SAPreempt, 0, typ, scsi.PROutParamLen), p)
	if o.Reply.Status != scsi.StatusGood {
		o.Err = fmt.Errorf("moving the reservation of %s to %s: %w", c.m.Name, dev, o.Err)
		return false, o
	}
	c.reRegisterOthers(dev, key)
	return true, o
}

// reRegisterOthers registers key again on the usable paths other than dev,
// after a PREEMPT of the map's own key removed their registrations.
func (c *command) reRegisterOthers(dev string, key uint64) {
	c.st.registered = map[string]bool{dev: true}
	others := slices.DeleteFunc(c.usable(), func(d string) bool { return d == dev })
	for _, d := range c.setKey(others, key, "after preempting the map's own key") {
		c.st.registered[d] = true
	}
}

// preempt sends PREEMPT (AND ABORT) to one path; when it names the map's own
// key, the other paths lost their registrations and get them back.
func (c *command) preempt() sgio.Outcome {
	o, dev := c.onePath(c.cdb, c.param)
	rk, sark, _, ok := prOutParams(c.param)
	if dev != "" && o.Reply.Status == scsi.StatusGood && ok && rk == sark && rk != 0 {
		c.reRegisterOthers(dev, rk)
	}
	return o
}

// clear sends CLEAR to one path; it removes every registration of every path.
func (c *command) clear() sgio.Outcome {
	o, dev := c.onePath(c.cdb, c.param)
	if dev != "" && o.Reply.Status == scsi.StatusGood {
		c.st.key, c.st.registered = 0, map[string]bool{}
		c.tellDaemon()
	}
	return o
}

// registerAndMove sends REGISTER AND MOVE to the path whose nexus holds the
// reservation: only that one may move it (SPC-4 §5.13.8), the others get
// RESERVATION CONFLICT, so the paths are tried in turn. With UNREG the map
// as a whole leaves: its other paths are unregistered too.
func (c *command) registerAndMove() sgio.Outcome {
	var o sgio.Outcome
	dev := ""
	for _, d := range c.usable() {
		o = c.send(d, c.cdb, c.param)
		if o.PathFailed() {
			c.pathFailed(d, o)
			continue
		}
		dev = d
		if o.Reply.Status != scsi.StatusReservationConflict {
			break
		}
	}
	if dev == "" {
		if o.Err == nil {
			o = sgio.Outcome{Reply: scsi.CheckCondition(scsi.SenseLUNCommFailure), Err: fmt.Errorf("no usable path (%s)", c.m.describePaths())}
		}
		return o
	}
	if o.Reply.Status == scsi.StatusGood && len(c.param) > 17 && c.param[17]&scsi.MoveUnreg != 0 {
		others := slices.DeleteFunc(c.usable(), func(d string) bool { return d == dev })
		c.setKey(others, 0, "REGISTER AND MOVE with UNREG")
		c.st.key, c.st.registered = 0, map[string]bool{}
		c.tellDaemon()
	}
	return o
}

func putKeys(p []byte, key, saKey uint64) {
	binary.BigEndian.PutUint64(p[0:8], key)
	binary.BigEndian.PutUint64(p[8:16], saKey)
}
