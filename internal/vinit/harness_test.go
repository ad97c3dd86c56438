package vinit

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// world is an emulated LU (one pr engine: the guests' view), a real LUN (a
// second pr engine, each host a SAS initiator port on it) and the hosts with
// their VMs. Every answer comes from the engine with LIO's profile.
type world struct {
	t     *testing.T
	emu   pr.State
	lun   pr.State
	hosts []string            // in a fixed order
	vms   map[string][]string // host -> its VMs' initiator names
	keys  map[string]uint64
	host  map[pr.Initiator]string
	sas   map[string]pr.Nexus // host -> its nexus on the LUN
	log   []string            // what was done, for failure messages
	last  func() pr.Result    // the last guest command, to send again
	isid  string              // the VMs' ISID ("": none; withISID)
}

// again sends the last guest command again.
func (w *world) again() pr.Result { return w.last() }

func newWorld(t *testing.T, vmsPerHost int, hosts ...string) *world {
	w := &world{t: t, hosts: hosts, vms: map[string][]string{}, keys: map[string]uint64{},
		host: map[pr.Initiator]string{}, sas: map[string]pr.Nexus{}}
	for i, h := range hosts {
		w.keys[h] = HostKey(h)
		w.sas[h] = pr.Nexus{Initiator: pr.SASInitiator(0x5001405000000a00 + uint64(i)), RTPI: 1}
		for j := 1; j <= vmsPerHost; j++ {
			name := fmt.Sprintf("iqn.2026-01.test:%s-vm%d", h, j)
			w.vms[h] = append(w.vms[h], name)
			w.host[w.vmNexus(name).Initiator] = h
		}
	}
	return w
}

func (w *world) vmNexus(name string) pr.Nexus {
	return pr.Nexus{Initiator: pr.ISCSIInitiator(name, w.isid), RTPI: 1}
}

// withISID gives every VM the iSCSI port name name,i,0x<isid> instead of
// its bare name (LIO refuses a SPEC_I_PT TransportID without ISID,
// Profile.EnforcePRISIDs).
func (w *world) withISID(isid string) *world {
	w.isid = isid
	w.host = map[pr.Initiator]string{}
	for h, vms := range w.vms {
		for _, vm := range vms {
			w.host[w.vmNexus(vm).Initiator] = h
		}
	}
	return w
}

func (w *world) hostOf(n pr.Nexus) (string, bool) {
	h, ok := w.host[n.Initiator]
	return h, ok
}

func (w *world) desired() Desired { return Desire(&w.emu, w.hostOf) }

// guest runs a PR OUT from VM vm on the emulated LU.
func (w *world) guest(vm string, sa, typ byte, key, sark uint64) pr.Result {
	w.last = func() pr.Result { return w.guest(vm, sa, typ, key, sark) }
	p, _ := scsi.PROutParams{Key: key, SAKey: sark}.Encode()
	cdb := scsi.PROutCDB(sa, 0, typ, uint32(len(p)))
	res := pr.Execute(pr.LIO(), &w.emu, w.vmNexus(vm), cdb[:], p)
	w.log = append(w.log, fmt.Sprintf("guest %s %s key=%#x sark=%#x type=%d: %s", vm, scsi.CommandName(cdb[:]), key, sark, typ, res))
	return res
}

// lunDo runs cdb from host h's nexus on the LUN, past unit attentions (which
// the backend, like the mpath backend, retries).
func (w *world) lunDo(h string, cdb [scsi.CDBLen]byte, param []byte) pr.Result {
	for range 8 {
		res := pr.Execute(pr.LIO(), &w.lun, w.sas[h], cdb[:], param)
		if s, ok := res.ParseSense(); res.Status == scsi.StatusCheckCondition && ok && s.Key == scsi.KeyUnitAttention {
			continue
		}
		return res
	}
	w.t.Fatalf("host %s: unit attentions without end", h)
	return pr.Result{}
}

// read is host h's READ FULL STATUS of the LUN.
func (w *world) read(h string) LUN {
	res := w.lunDo(h, scsi.PRInCDB(scsi.SAReadFullStatus, FullStatusAlloc), nil)
	if res.Status != scsi.StatusGood {
		w.t.Fatalf("host %s READ FULL STATUS: %s", h, res)
	}
	l, err := ReadLUN(res.Data)
	if err != nil {
		w.t.Fatalf("host %s: %v", h, err)
	}
	return l
}

// reconcile runs host h's plan on the LUN and returns it.
func (w *world) reconcile(h string) []Command {
	plan, err := Plan(w.desired(), h, w.keys, w.read(h))
	if err != nil {
		w.t.Fatalf("host %s: %v\n%s", h, err, strings.Join(w.log, "\n"))
	}
	for _, c := range plan {
		cdb, p := c.CDB()
		res := w.lunDo(h, cdb, p)
		w.log = append(w.log, fmt.Sprintf("  host %s: %s: %s", h, c, res))
		if res.Status != scsi.StatusGood {
			w.t.Fatalf("host %s: the LUN refused %s: %s\n%s", h, c, res, strings.Join(w.log, "\n"))
		}
	}
	return plan
}

// converge lets host first, then every host in turn, apply its plan until no
// host has anything to send. It returns the number of commands sent.
func (w *world) converge(first string) int {
	order := append([]string{first}, slices.DeleteFunc(slices.Clone(w.hosts), func(h string) bool { return h == first })...)
	sent := 0
	for range 6 {
		n := 0
		for _, h := range order {
			n += len(w.reconcile(h))
		}
		if n == 0 {
			return sent
		}
		sent += n
	}
	w.t.Fatalf("no convergence after 6 rounds\n%s", strings.Join(w.log, "\n"))
	return sent
}

var (
	read10  = []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	write10 = []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}
)

// allowed runs the reservation check of cdb from n on a copy of st without its
// unit attentions (they are not what this compares).
func allowed(t *testing.T, st *pr.State, n pr.Nexus, cdb []byte) bool {
	b, _ := st.MarshalBinary()
	var c pr.State
	if err := c.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	c.UnitAttentions = nil
	return pr.CheckAccess(pr.LIO(), &c, n, cdb).Status == scsi.StatusGood
}

// check compares the rights between hosts (docs/virtual-initiators.md §3): for
// every host, READ and WRITE on the LUN are allowed exactly when some VM of
// the host may do them in the emulated state; and the LUN's registrations and
// reservation are the desired ones.
func (w *world) check() {
	w.t.Helper()
	fail := func(format string, a ...any) {
		w.t.Helper()
		w.t.Fatalf(format+"\nemulated: %+v\nLUN: %+v\n%s", append(a, w.emu.Registrations, w.emu.Reservation, w.lun.Registrations, w.lun.Reservation, strings.Join(w.log, "\n"))...)
	}
	w.checkRights()
	d := w.desired()
	view := w.read(w.hosts[0])
	for _, h := range w.hosts {
		if view.Has(w.keys[h]) != d.Registered[h] {
			fail("host %s registered on the LUN: %v, desired %v", h, view.Has(w.keys[h]), d.Registered[h])
		}
	}
	switch r, dr := view.Reservation, d.Reservation; {
	case (r == nil) != (dr == nil):
		fail("reservation on the LUN %+v, desired %+v", r, dr)
	case r == nil:
	case r.Type != dr.Type:
		fail("reservation type %d on the LUN, desired %d", r.Type, dr.Type)
	case !AllRegistrants(r.Type) && r.Key != w.keys[dr.Holder]:
		fail("reservation held by key %#x, desired host %s", r.Key, dr.Holder)
	}
}

// checkRights checks the rights between hosts alone (the first part of check).
func (w *world) checkRights() {
	w.t.Helper()
	for _, h := range w.hosts {
		for _, cdb := range [][]byte{read10, write10} {
			emu := false
			for _, vm := range w.vms[h] {
				emu = emu || allowed(w.t, &w.emu, w.vmNexus(vm), cdb)
			}
			if lun := allowed(w.t, &w.lun, w.sas[h], cdb); lun != emu {
				w.t.Fatalf("host %s %s: LUN allows %v, its VMs %v\nemulated: %+v %+v\nLUN: %+v %+v\n%s", h, scsi.CommandName(cdb), lun, emu,
					w.emu.Registrations, w.emu.Reservation, w.lun.Registrations, w.lun.Reservation, strings.Join(w.log, "\n"))
			}
		}
	}
}

// vmKey returns the key vm is registered with in the emulated state, or 0.
func (w *world) vmKey(vm string) uint64 {
	for _, r := range w.emu.Registrations {
		if r.Nexus.Equal(w.vmNexus(vm)) {
			return r.Key
		}
	}
	return 0
}

// checkActor checks the LUN after the plan of host h alone, the host whose VM
// just ran a command (docs/virtual-initiators.md §5): when h is registered,
// no host without a registered VM is left on the LUN (so that the array
// refuses its writes at once), but a non-all-registrants holder that a third
// host is to preempt; and a reservation the emulated state gives to h has the
// emulated type.
func (w *world) checkActor(h string) {
	w.t.Helper()
	d := w.desired()
	view := w.read(h)
	if d.Registered[h] {
		for _, o := range w.hosts {
			k := w.keys[o]
			r := view.Reservation
			keptHolder := r != nil && !AllRegistrants(r.Type) && r.Key == k && d.Reservation != nil && d.Reservation.Holder != h
			if !d.Registered[o] && view.Has(k) && !keptHolder {
				w.t.Fatalf("after %s's plan host %s, with no VM registered, is still on the LUN: %+v\n%s", h, o, view, strings.Join(w.log, "\n"))
			}
		}
	}
	if dr := d.Reservation; dr != nil && dr.Holder == h {
		if r := view.Reservation; r == nil || r.Type != dr.Type {
			w.t.Fatalf("after %s's plan the LUN's reservation is %+v, desired %+v\n%s", h, r, dr, strings.Join(w.log, "\n"))
		}
	}
}
