package mpath

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/prhelper/prhelper/internal/backend/sgio"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// checkKeyPolicy refuses a PR OUT whose key contradicts a reservation_key
// fixed in multipath.conf, as libmpathpersist does: REGISTER and REGISTER AND
// IGNORE EXISTING KEY may only register the configured key (or unregister,
// SERVICE ACTION RESERVATION KEY 0); every other service action must carry it
// as RESERVATION KEY. The reply is what QEMU sends guests for
// libmpathpersist's refusal (MPATH_PR_SYNTAX_ERROR → 0B/08/00).
func (c *command) checkKeyPolicy() (wire.Reply, error) {
	if c.b.opts.Key == nil {
		return wire.Reply{}, nil
	}
	k, err := c.b.opts.Key(c.m)
	if err != nil {
		c.b.log.Warn("cannot read the map's reservation_key from the multipath configuration; not enforcing it", "map", c.m.Name, "err", err)
		return wire.Reply{}, nil
	}
	rk, sark, _, ok := prOutParams(c.param)
	if !k.Fixed || !ok {
		return wire.Reply{}, nil
	}
	sa := scsi.ServiceAction(c.cdb[:])
	field, key := "RESERVATION KEY", rk
	if sa == scsi.SARegister || sa == scsi.SARegisterAndIgnoreExisting {
		field, key = "SERVICE ACTION RESERVATION KEY", sark
		if sark == 0 {
			return wire.Reply{}, nil
		}
	}
	if key == k.Key {
		return wire.Reply{}, nil
	}
	return checkCondition(scsi.SenseLUNCommFailure), fmt.Errorf(
		"mpath: %s refused on %s: its %s %s is not the reservation_key %s that multipath.conf sets for this map (libmpathpersist refuses it too)",
		scsi.CommandName(c.cdb[:]), c.m.Name, field, hexKey(key), hexKey(k.Key))
}

// prOut dispatches a PR OUT by service action.
func (c *command) prOut() (wire.Reply, error) {
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
		joined := c.setKey(conflict, sark, aptpl, "path joining the registration")
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
	for _, dev := range good {
		delete(c.st.stale, dev)
		if sark != 0 {
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
		back := c.setKey(ds, key, c.st.aptpl, "rollback")
		if len(back) != len(ds) {
			c.b.log.Error("rollback incomplete: paths of the map may hold different keys", "map", c.m.Name, "paths", ds, "restored", back)
		}
	}
}

// reserve sends RESERVE to one path. A conflict because the map itself holds
// that reservation through another of its paths is resolved there: the
// command goes to that path when it is usable, else the reservation is moved
// to this one (a path that failed, usually). Only a holder the map has seen
// itself hold through (heldByMap) counts: another host's reservation with the
// same key is another host's, and its conflict is the answer.
func (c *command) reserve() sgio.Outcome {
	o, dev := c.onePath(c.cdb, c.param)
	rk, _, _, ok := prOutParams(c.param)
	typ := c.cdb[2] & 0x0f
	if dev == "" || !ok || rk == 0 {
		return o
	}
	if o.Reply.Status == scsi.StatusGood && !allRegistrants(typ) {
		c.learnHolder(dev, rk, typ)
	}
	if o.Reply.Status != scsi.StatusReservationConflict {
		return o
	}
	h, htyp := c.heldByMap(dev, rk)
	if h == "" {
		return o
	}
	if slices.Contains(c.usable(), h) {
		ho := c.send(h, c.cdb, c.param)
		if !ho.PathFailed() {
			return ho
		}
		c.pathFailed(h, ho)
	}
	if htyp != typ {
		return o // the holder's own RESERVE of another type conflicts too
	}
	if moved, mo := c.moveReservation(dev, rk, typ); !moved {
		return mo
	}
	return sgio.Outcome{Reply: wire.Reply{Status: scsi.StatusGood}}
}

// release sends RELEASE to one path. RELEASE from a registered nexus that does
// not hold the reservation is GOOD and changes nothing (SPC-4 §5.13.11.2);
// when the map holds the reservation through another of its paths, the
// RELEASE goes there, or, when that path is away, the reservation is moved
// here first, and the device answers the RELEASE as it would the holder.
func (c *command) release() sgio.Outcome {
	o, dev := c.onePath(c.cdb, c.param)
	rk, _, _, ok := prOutParams(c.param)
	if dev == "" || o.Reply.Status != scsi.StatusGood || !ok || rk == 0 {
		return o
	}
	h, htyp := c.heldByMap(dev, rk)
	if h == "" {
		return o
	}
	if slices.Contains(c.usable(), h) {
		ho := c.send(h, c.cdb, c.param)
		if !ho.PathFailed() {
			return ho
		}
		c.pathFailed(h, ho)
	}
	if moved, mo := c.moveReservation(dev, rk, htyp); !moved {
		return mo
	}
	return c.send(dev, c.cdb, c.param)
}

func allRegistrants(typ byte) bool {
	return typ == scsi.TypeWriteExclusiveAllRegs || typ == scsi.TypeExclusiveAccessAllRegs
}

// nexusID is an I_T nexus as READ FULL STATUS names it: the initiator port's
// TransportID and the RELATIVE TARGET PORT IDENTIFIER.
type nexusID struct {
	tid  string
	rtpi uint16
}

// holderOf reads READ FULL STATUS through dev and returns the nexus that holds
// a reservation other than all-registrants, with its key and type; ok is
// false when there is none or the data cannot say.
func (c *command) holderOf(dev string) (id nexusID, key uint64, typ byte, ok bool) {
	o := c.send(dev, scsi.PRInCDB(scsi.SAReadFullStatus, wire.MaxData), nil)
	if o.Reply.Status != scsi.StatusGood {
		return id, 0, 0, false
	}
	fs, err := scsi.DecodeFullStatus(o.Reply.Data)
	if err != nil || fs.Truncated {
		return id, 0, 0, false
	}
	for _, d := range fs.Descriptors {
		if d.Holder && !allRegistrants(d.Type) && d.TransportIDErr == "" && len(d.TransportID.Raw) > 0 {
			return nexusID{tid: string(d.TransportID.Raw), rtpi: d.RelativeTargetPort}, d.Key, d.Type, true
		}
	}
	return id, 0, 0, false
}

// learnHolder records dev's nexus after a command through dev made it the
// holder of a reservation of type typ with key: READ FULL STATUS then names
// the holder, and that is dev. (Another host could in theory preempt it in
// between with the same key; doc.go says why that is accepted.)
func (c *command) learnHolder(dev string, key uint64, typ byte) {
	id, k, t, ok := c.holderOf(dev)
	if !ok || k != key || t != typ {
		return
	}
	if c.st.own == nil {
		c.st.own = map[string]nexusID{}
	}
	for d, o := range c.st.own {
		if o == id && d != dev {
			delete(c.st.own, d)
		}
	}
	c.st.own[dev] = id
}

// heldByMap reports the path of the map, other than dev, whose nexus holds a
// reservation with key, and its type; "" when the holder is not a nexus the
// map has seen itself hold through, or holds with another key. A host never
// acts on a reservation held by another host, even with the same key.
func (c *command) heldByMap(dev string, key uint64) (string, byte) {
	id, k, typ, ok := c.holderOf(dev)
	if !ok || k != key {
		return "", 0
	}
	for d, o := range c.st.own {
		if o == id && d != dev {
			return d, typ
		}
	}
	return "", 0
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
	c.learnHolder(dev, key, typ)
	c.reRegisterOthers(dev, key)
	return true, o
}

// reRegisterOthers registers key again on the usable paths other than dev,
// after a PREEMPT removed their registrations, with the LU's PTPL_A.
func (c *command) reRegisterOthers(dev string, key uint64) {
	c.st.registered = map[string]bool{dev: true}
	others := slices.DeleteFunc(c.usable(), func(d string) bool { return d == dev })
	for _, d := range c.setKey(others, key, c.upkeepAPTPL(), "after a PREEMPT removed the map's other registrations") {
		c.st.registered[d] = true
	}
}

// preempt sends PREEMPT (AND ABORT) to one path. A PREEMPT whose SERVICE
// ACTION RESERVATION KEY is the map's own key, or 0 under an all-registrants
// reservation, removes the registrations of the map's other paths too; what
// the issuing path keeps decides what they get back (SPC-4 §5.13.11.4): when
// SARK named the holder, or the reservation is all-registrants, the issuer
// stays registered, and so must the map as a whole, so the others register
// again; otherwise every registration with that key went, the issuer's
// included, and the map is unregistered, as a host with one nexus would be.
// READ KEYS afterwards tells the two apart.
func (c *command) preempt() sgio.Outcome {
	rk, sark, _, ok := prOutParams(c.param)
	typ := c.cdb[2] & 0x0f
	// Whether the issuer becomes the holder (SARK is the holder's key, or SARK
	// 0 under all-registrants), to learn its nexus afterwards.
	takes := false
	if ok && rk != 0 && !allRegistrants(typ) {
		if o, _ := c.onePath(scsi.PRInCDB(scsi.SAReadReservation, wire.MaxData), nil); o.Reply.Status == scsi.StatusGood {
			if r, err := scsi.DecodeReservation(o.Reply.Data); err == nil && r.Held {
				takes = (allRegistrants(r.Type) && sark == 0) || (!allRegistrants(r.Type) && r.Key == sark)
			}
		}
	}
	o, dev := c.onePath(c.cdb, c.param)
	if dev == "" || o.Reply.Status != scsi.StatusGood || !ok || rk == 0 {
		return o
	}
	if takes {
		c.learnHolder(dev, rk, typ)
	}
	if sark != rk && sark != 0 {
		return o
	}
	ko, _ := c.onePath(scsi.PRInCDB(scsi.SAReadKeys, wire.MaxData), nil)
	keys, err := scsi.DecodeKeys(ko.Reply.Data)
	switch {
	case ko.Reply.Status != scsi.StatusGood || err != nil || keys.Truncated:
		c.b.log.Warn("cannot read the keys after a PREEMPT that touched the map's registrations", "map", c.m.Name, "err", ko.Err)
	case slices.Contains(keys.Keys, rk):
		c.reRegisterOthers(dev, rk)
	case rk == c.st.key:
		c.keyGone()
	}
	return o
}

// clear sends CLEAR to one path; it removes every registration of every path.
func (c *command) clear() sgio.Outcome {
	o, dev := c.onePath(c.cdb, c.param)
	if dev != "" && o.Reply.Status == scsi.StatusGood {
		c.st.key, c.st.registered, c.st.stale = 0, map[string]bool{}, map[string]uint64{}
		c.tellDaemon()
	}
	return o
}

// registerAndMove sends REGISTER AND MOVE to the path whose nexus holds the
// reservation: only that one may move it (SPC-4 §5.13.8), the others get
// RESERVATION CONFLICT, so the paths are tried in turn. With UNREG the map
// as a whole leaves: its other paths are unregistered too.
func (c *command) registerAndMove() sgio.Outcome {
	var o, answer sgio.Outcome
	dev := ""
	for _, d := range c.usable() {
		o = c.send(d, c.cdb, c.param)
		if o.PathFailed() {
			c.pathFailed(d, o)
			continue
		}
		if dev == "" || o.Reply.Status != scsi.StatusReservationConflict {
			dev, answer = d, o // the device's answer, not a failed path's
		}
		if o.Reply.Status != scsi.StatusReservationConflict {
			break
		}
	}
	if dev == "" {
		if o.Err == nil {
			o = sgio.Outcome{Reply: checkCondition(scsi.SenseLUNCommFailure), Err: fmt.Errorf("no usable path (%s)", c.m.describePaths())}
		}
		return o
	}
	o = answer
	if o.Reply.Status == scsi.StatusGood && len(c.param) > 17 && c.param[17]&scsi.MoveUnreg != 0 {
		others := slices.DeleteFunc(c.usable(), func(d string) bool { return d == dev })
		c.setKey(others, 0, c.upkeepAPTPL(), "REGISTER AND MOVE with UNREG")
		c.st.key, c.st.registered = 0, map[string]bool{}
		c.tellDaemon()
	}
	return o
}

func putKeys(p []byte, key, saKey uint64) {
	binary.BigEndian.PutUint64(p[0:8], key)
	binary.BigEndian.PutUint64(p[8:16], saKey)
}
