package vinit

import (
	"errors"
	"fmt"
	"slices"

	"github.com/prhelper/prhelper/scsi"
)

// MaxRounds bounds how often the backend reads the LUN and plans again after
// the LUN refused a plan's command (docs/virtual-initiators.md §5).
const MaxRounds = 4

// Command is one PERSISTENT RESERVE OUT command of a plan, sent through the
// host's own nexus (or every path of its map) with the host's key as the
// RESERVATION KEY (0 for REGISTER AND IGNORE EXISTING KEY).
type Command struct {
	Action byte // scsi.SARegister (only to unregister), SARegisterAndIgnoreExisting, SAReserve, SARelease, SAPreempt
	Type   byte // RESERVE, RELEASE, PREEMPT
	Key    uint64
	SAKey  uint64
}

// CDB returns the command's CDB and 24-byte parameter list (SPC-4 §6.16).
func (c Command) CDB() ([scsi.CDBLen]byte, []byte) {
	p, _ := scsi.PROutParams{Key: c.Key, SAKey: c.SAKey}.Encode() // cannot fail without SPEC_I_PT
	return scsi.PROutCDB(c.Action, 0, c.Type, uint32(len(p))), p
}

// String names the command for logs and test failures.
func (c Command) String() string {
	cdb, _ := c.CDB()
	s := fmt.Sprintf("%s key=%#x sark=%#x", scsi.CommandName(cdb[:]), c.Key, c.SAKey)
	switch c.Action {
	case scsi.SAReserve, scsi.SARelease, scsi.SAPreempt:
		s += fmt.Sprintf(" type=%d", c.Type)
	}
	return s
}

// ErrForeignHolder is a reservation the emulated state gives to a VM of this
// host, held on the LUN by a key that is no host's (docs/virtual-initiators.md
// §5 step 3): the plan does not touch it.
var ErrForeignHolder = errors.New("the LUN's reservation is held by a key that is no prhelper host's")

// Plan returns the PR OUT commands host self sends to bring the LUN from lun
// to d, in the order of docs/virtual-initiators.md §5: register, preempt the
// keys of evicted hosts, the reservation, unregister. keys gives every known
// host's key; self must be one of them. An empty plan means the LUN is, as far
// as self can act, where it should be. A reservation the plan cannot reach
// because a foreign key holds it is ErrForeignHolder, with the commands before it.
func Plan(d Desired, self string, keys map[string]uint64, lun LUN) ([]Command, error) {
	k, ok := keys[self]
	if !ok || k == 0 {
		return nil, fmt.Errorf("vinit: host %q has no key", self)
	}
	hostOfKey := make(map[uint64]string, len(keys))
	for h, hk := range keys {
		hostOfKey[hk] = h
	}
	// evicted reports a key of a known host none of whose VMs is registered.
	evicted := func(x uint64) bool {
		h, known := hostOfKey[x]
		return known && h != self && !d.Registered[h]
	}
	p := planner{self: k, lun: lun.clone()}
	want := d.Registered[self]

	// 1. Register.
	if want && !p.lun.Has(k) {
		p.send(Command{Action: scsi.SARegisterAndIgnoreExisting, SAKey: k})
	}
	// 2. Evicted hosts, but a non-all-registrants holder (step 3).
	if p.lun.Has(k) {
		for _, x := range slices.Clone(p.lun.Keys) {
			r := p.lun.Reservation
			if !evicted(x) || (r != nil && !AllRegistrants(r.Type) && r.Key == x) {
				continue
			}
			typ := byte(scsi.TypeWriteExclusive) // ignored without a reservation, but checked
			if r != nil {
				typ = r.Type
			}
			p.send(Command{Action: scsi.SAPreempt, Type: typ, Key: k, SAKey: x})
		}
	}
	// 3. The reservation.
	var err error
	cur := p.lun.Reservation
	switch dr := d.Reservation; {
	case dr == nil:
		switch {
		case cur == nil:
		case p.lun.holds(k):
			p.send(Command{Action: scsi.SARelease, Type: cur.Type, Key: k})
		case p.lun.Has(k) && evicted(cur.Key):
			// An evicted host's reservation: take it, then release it.
			p.send(Command{Action: scsi.SAPreempt, Type: cur.Type, Key: k, SAKey: cur.Key})
			p.send(Command{Action: scsi.SARelease, Type: cur.Type, Key: k})
		}
	case dr.Holder != self || !p.lun.Has(k):
	case cur == nil:
		p.send(Command{Action: scsi.SAReserve, Type: dr.Type, Key: k})
	case AllRegistrants(cur.Type):
		if cur.Type != dr.Type {
			p.send(Command{Action: scsi.SARelease, Type: cur.Type, Key: k})
			p.send(Command{Action: scsi.SAReserve, Type: dr.Type, Key: k})
		}
	case cur.Key == k:
		if cur.Type != dr.Type {
			p.send(Command{Action: scsi.SAPreempt, Type: dr.Type, Key: k, SAKey: k})
		}
	case hostOfKey[cur.Key] != "":
		p.send(Command{Action: scsi.SAPreempt, Type: dr.Type, Key: k, SAKey: cur.Key})
	default:
		err = fmt.Errorf("vinit: %w (key %#x, type %d)", ErrForeignHolder, cur.Key, cur.Type)
	}
	// 4. Unregister, unless that would release a reservation the emulated
	// state gives to another host, or end an all-registrants one it still has
	// (docs/virtual-initiators.md §4).
	if !want && p.lun.Has(k) {
		r, dr := p.lun.Reservation, d.Reservation
		keep := r != nil && dr != nil &&
			((!AllRegistrants(r.Type) && r.Key == k && dr.Holder != self) ||
				(AllRegistrants(r.Type) && len(p.lun.Keys) == 1))
		if !keep {
			p.send(Command{Action: scsi.SARegister, Key: k})
		}
	}
	return p.cmds, err
}

// planner collects a plan's commands and applies each to its model of the LUN.
type planner struct {
	self uint64
	lun  LUN
	cmds []Command
}

func (p *planner) send(c Command) {
	p.cmds = append(p.cmds, c)
	p.lun.apply(p.self, c)
}
