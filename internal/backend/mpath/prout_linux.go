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
	if c.announced {
		c.tellDaemon() // multipathd back to the map's key when the change failed
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

	if sark != c.st.key {
		c.sweepAway()
	}
	if sark != c.st.key || (sark != 0 && aptpl != c.st.aptpl) {
		c.announce(sark, aptpl)
		c.lookAgain()
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

// sweepAway removes, before the map unregisters or changes its key, the
// registrations its paths that are away still hold, when an all-registrants
// reservation is held: every registrant holds it (SPC-4 §5.13.10), so a path
// that is away would keep it alive after the map, which for the guest is one
// host, left, and another host's PREEMPT of the old key would still find it
// (on LIO, as the reservation's representative holder, it would even hand the
// reservation over); a host with one nexus has no such registration. PREEMPT with a path's key as SERVICE ACTION
// RESERVATION KEY under an all-registrants reservation removes the other
// registrations with that key and keeps the issuer's (SPC-4 §5.13.11.4.3).
// Without such a reservation, a path that is away is unregistered when it
// returns (catchUp).
func (c *command) sweepAway() {
	keys := map[uint64]bool{}
	for d, k := range c.st.stale {
		if !slices.Contains(c.usable(), d) {
			keys[k] = true
		}
	}
	dev := ""
	for _, d := range c.usable() {
		if c.st.registered[d] {
			dev = d
			break
		}
	}
	if len(keys) == 0 || dev == "" || c.st.key == 0 {
		return
	}
	o := c.send(dev, scsi.PRInCDB(scsi.SAReadReservation, wire.MaxData), nil)
	r, err := scsi.DecodeReservation(o.Reply.Data)
	if o.Reply.Status != scsi.StatusGood || err != nil || !r.Held || !allRegistrants(r.Type) {
		return
	}
	for k := range keys {
		p := make([]byte, scsi.PROutParamLen)
		putKeys(p, c.st.key, k)
		po := c.send(dev, scsi.PROutCDB(scsi.SAPreempt, 0, r.Type, scsi.PROutParamLen), p)
		if po.Reply.Status != scsi.StatusGood {
			c.b.log.Warn("could not remove the registration of a path that is away", "map", c.m.Name, "key", hexKey(k), "err", po.Err)
			continue
		}
		c.b.log.Info("removed the registrations of paths that are away before the map unregisters (all-registrants reservation)", "map", c.m.Name, "key", hexKey(k))
		for d, sk := range c.st.stale {
			if sk == k {
				delete(c.st.stale, d)
			}
		}
		if k == c.st.key {
			c.reRegisterOthers(dev, k)
		}
	}
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
	h, hkey, htyp := c.heldByMap(dev)
	if h == "" {
		return o
	}
	if ho, ok := c.toHolder(h); ok {
		return ho
	}
	if hkey != rk || htyp != typ {
		return o // the holder's own RESERVE with another key or type conflicts too
	}
	if moved, mo := c.moveReservation(dev, rk, typ); !moved {
		return mo
	}
	return sgio.Outcome{Reply: scsi.Good(nil)}
}

// release sends RELEASE to one path. RELEASE from a registered nexus that does
// not hold the reservation is GOOD and changes nothing (SPC-4 §5.13.11.2);
// when the map holds the reservation through another of its paths, the
// RELEASE goes there, or, when that path is away, the reservation is moved
// here first, and the device answers the RELEASE as it would the holder.
func (c *command) release() sgio.Outcome {
	o, dev := c.onePath(c.cdb, c.param)
	if dev == "" || o.Reply.Status != scsi.StatusGood || len(c.param) < scsi.PROutParamLen {
		return o
	}
	h, hkey, htyp := c.heldByMap(dev)
	if h == "" {
		return o
	}
	if ho, ok := c.toHolder(h); ok {
		return ho
	}
	// The holder's RELEASE is checked against its key and type by the device:
	// move the reservation as it is, then send the guest's RELEASE.
	if moved, mo := c.moveReservation(dev, hkey, htyp); !moved {
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
// reservation other than all-registrants, with the holder's key and the
// type; "" when the holder is not a nexus the map has seen itself hold
// through. A host never acts on a reservation held by another host, even one
// with the same key.
func (c *command) heldByMap(dev string) (string, uint64, byte) {
	id, k, typ, ok := c.holderOf(dev)
	if !ok {
		return "", 0, 0
	}
	for d, o := range c.st.own {
		if o == id && d != dev {
			return d, k, typ
		}
	}
	return "", 0, 0
}

// followReservation moves the map's reservation to a usable path when the
// path it is held through is away, before a PR OUT runs: a host with one nexus
// holds its reservation whatever happens to a path, and the guest's command
// must meet the device as that host's would (a key change carries the
// reservation along, a PREEMPT of the map's own key finds the map the holder,
// the holder's RELEASE or REGISTER AND MOVE is the holder's). It costs a READ
// FULL STATUS only while a path the map has held through is away.
func (c *command) followReservation() {
	if c.st.key == 0 {
		return
	}
	away := false
	for d := range c.st.own {
		if !slices.Contains(c.usable(), d) {
			away = true
		}
	}
	dev := ""
	for _, d := range c.usable() {
		if c.st.registered[d] {
			dev = d
			break
		}
	}
	if !away || dev == "" {
		return
	}
	h, hkey, htyp := c.heldByMap(dev)
	if h == "" || slices.Contains(c.usable(), h) || (hkey != c.st.key && hkey != c.st.stale[h]) {
		return
	}
	if moved, o := c.moveReservation(dev, hkey, htyp); !moved {
		c.b.log.Warn("could not move the map's reservation from a path that is away", "map", c.m.Name, "from", h, "to", dev, "err", o.Err)
	}
}

// toHolder sends the guest's command to path h, whose nexus holds the map's
// reservation, when h is usable; ok is false when it is not, or failed.
func (c *command) toHolder(h string) (sgio.Outcome, bool) {
	if !slices.Contains(c.usable(), h) {
		return sgio.Outcome{}, false
	}
	o := c.send(h, c.cdb, c.param)
	if o.PathFailed() {
		c.pathFailed(h, o)
		return o, false
	}
	return o, true
}

// moveReservation moves the reservation the map holds with key to path dev:
// PREEMPT with the holder's key as SERVICE ACTION RESERVATION KEY makes dev's
// nexus the holder and removes the key's other registrations (SPC-4
// §5.13.11.4.3). dev presents the map's key, which is the holder's unless the
// key changed while the holding path was away; when it is the same, the other
// usable paths lost theirs and register again.
func (c *command) moveReservation(dev string, key uint64, typ byte) (bool, sgio.Outcome) {
	c.b.log.Info("the map holds the reservation through another path: moving it", "map", c.m.Name, "to", dev, "key", hexKey(key), "type", typ)
	rk := key
	if c.st.key != 0 && c.st.registered[dev] {
		rk = c.st.key
	}
	p := make([]byte, scsi.PROutParamLen)
	putKeys(p, rk, key)
	o := c.send(dev, scsi.PROutCDB(scsi.SAPreempt, 0, typ, scsi.PROutParamLen), p)
	if o.Reply.Status != scsi.StatusGood {
		o.Err = fmt.Errorf("moving the reservation of %s to %s: %w", c.m.Name, dev, o.Err)
		return false, o
	}
	c.learnHolder(dev, rk, typ)
	for d, k := range c.st.stale {
		if k == key { // the device removed it with the PREEMPT
			delete(c.st.stale, d)
		}
	}
	if rk == key {
		c.reRegisterOthers(dev, key)
	}
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
	// Whether a reservation of type typ held with rk afterwards can only be
	// the issuer's: it is unless one was held so already (by another path of
	// the map, or another host with the same key, which this PREEMPT may have
	// left alone). Which PREEMPTs make the issuer the holder differs between
	// devices (under all-registrants, LIO's representative holder), so the
	// state before and after decides, not a prediction.
	takes := false
	if ok && rk != 0 && !allRegistrants(typ) {
		if o, _ := c.onePath(scsi.PRInCDB(scsi.SAReadReservation, wire.MaxData), nil); o.Reply.Status == scsi.StatusGood {
			if r, err := scsi.DecodeReservation(o.Reply.Data); err == nil {
				takes = !(r.Held && r.Key == rk && r.Type == typ)
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
	if c.st.key != 0 {
		c.announce(0, c.st.aptpl)
	}
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
	if len(c.param) > 17 && c.param[17]&scsi.MoveUnreg != 0 && c.st.key != 0 {
		c.announce(0, c.st.aptpl)
		c.lookAgain()
	}
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
			o = sgio.Outcome{Reply: scsi.CheckCondition(scsi.SenseLUNCommFailure), Err: fmt.Errorf("no usable path (%s)", c.m.describePaths())}
		}
		return o
	}
	o = answer
	if o.Reply.Status == scsi.StatusReservationConflict {
		// Only the holder may move the reservation (SPC-4 §5.13.8): when it is
		// a path of the map that is away, the reservation comes to dev first.
		if rk, _, _, ok := prOutParams(c.param); ok {
			if h, hkey, htyp := c.heldByMap(dev); h != "" && hkey == rk && !slices.Contains(c.usable(), h) {
				if moved, mo := c.moveReservation(dev, hkey, htyp); !moved {
					return mo
				}
				o = c.send(dev, c.cdb, c.param)
			}
		}
	}
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
