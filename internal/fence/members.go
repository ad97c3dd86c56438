package fence

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/prhelper/prhelper/pr"
)

// Members is the membership of helpers across hosts (docs/fencing.md, "Across
// hosts"), kept by etcd leases (package etcdlease): who is alive is what etcd
// says, never a comparison of clocks of different hosts.
type Members interface {
	// ID names this helper in records; it changes when a lost lease is
	// replaced by a new one.
	ID() string
	// Announce writes this helper's announcement under its lease; it fails
	// when the lease is gone.
	Announce(ctx context.Context, v []byte) error
	// List returns the announcements of the helpers whose lease is alive.
	List(ctx context.Context) (map[string][]byte, error)
}

// id is this helper's current name.
func (c *Coordinator) id() string {
	if c.o.Members != nil {
		return c.o.Members.ID()
	}
	return c.o.HelperID
}

// alive reports whether helper h counts: this helper, a helper with a live
// lease (across hosts: listed in helpers), or a live process on this host.
func (c *Coordinator) alive(h string, helpers map[string]announcement) bool {
	if h == c.id() {
		return true
	}
	if c.o.Members != nil {
		_, ok := helpers[h]
		return ok
	}
	return c.o.Alive(h)
}

// servedBefore reports whether announcement a makes its helper responsible for
// fencing r's victim. On one host: it served the victim through a process that
// started before the eviction (one clock). Across hosts the clocks of two
// hosts are not compared: every live helper announcing the victim must
// confirm, and it fences the victim's processes that started before it first
// saw the record (firstSeen).
func (c *Coordinator) servedBefore(a announcement, r Record) bool {
	since, ok := a.Serves[r.Victim]
	if !ok {
		return false
	}
	return c.o.Members != nil || since < r.Created
}

// procsBefore is the time a record applies before, on this host's clock: the
// eviction's commit time on one host; across hosts, when this helper first saw
// the record (a VM started between the commit and that moment is fenced too,
// which is safe: its start cannot be the cluster's recovery of a node it has
// not fenced yet).
func (c *Coordinator) procsBefore(r Record) time.Time {
	if c.o.Members == nil {
		return time.Unix(0, r.Created)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.firstSeen[r.ID]
	if !ok {
		// The registry's clock (process start times), not Options.Now: both
		// sides of the comparison are read on this host.
		t = time.Now()
		c.firstSeen[r.ID] = t
	}
	return t
}

// seen notes when this helper first saw record r (across hosts).
func (c *Coordinator) seen(r Record) {
	if c.o.Members != nil {
		c.procsBefore(r)
	}
}

// noteRegistered remembers the initiators registered in st, the state a batch
// of commands through this helper computed (StepAll: once a batch, from the
// state it stores; a registration that a later command of the same batch
// removed was never stored): the self-fence kills the ones this helper
// serves. They are kept until a scan that started at least 2 Timeouts later
// (the command's commit is then long decided) has replaced them with what the
// store holds.
func (c *Coordinator) noteRegistered(st *pr.State) {
	if c.o.Members == nil {
		return
	}
	now := c.o.Now()
	c.regMu.Lock()
	defer c.regMu.Unlock()
	for _, r := range st.Registrations {
		c.recent[InitiatorName(r.Nexus.Initiator)] = now
	}
}

// scanned replaces the registrations read from the store by a scan that
// started at start.
func (c *Coordinator) scanned(start time.Time, regs map[string]bool) {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	c.registered = regs
	for in, t := range c.recent {
		if start.Sub(t) > 2*c.o.Timeout {
			delete(c.recent, in)
		}
	}
}

// registeredIn returns the initiators registered in a stored value.
func registeredIn(v []byte) ([]string, error) {
	stBytes, _, err := Decode(v)
	if err != nil || stBytes == nil {
		return nil, err
	}
	var st pr.State
	if err := st.UnmarshalBinary(stBytes); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(st.Registrations))
	for _, r := range st.Registrations {
		out = append(out, InitiatorName(r.Nexus.Initiator))
	}
	return out, nil
}

// SelfFence fences, with this helper's policy, every VM it serves whose
// initiator holds a registration on an emulated logical unit (as last read
// from the store, or set by a command through this helper since). It is what
// a helper whose etcd lease is about to expire runs (docs/fencing.md,
// "Self-fence"): the store cannot be read then, so the set is the one kept in
// memory. It returns the initiators fenced and the failures.
func (c *Coordinator) SelfFence(ctx context.Context) (fenced []string, err error) {
	if c.o.Policy == nil {
		return nil, nil
	}
	c.regMu.Lock()
	var victims []string
	for in := range c.registered {
		victims = append(victims, in)
	}
	for in := range c.recent {
		if !c.registered[in] {
			victims = append(victims, in)
		}
	}
	c.regMu.Unlock()
	var fails []string
	for _, v := range victims {
		procs := c.o.Registry.procs(v, c.o.Now().Add(24*time.Hour))
		if len(procs) == 0 {
			continue
		}
		ferr := c.o.Policy.Fence(ctx, Target{Victim: v, Evictor: "self-fence:" + c.id(), LU: "*", Procs: procs})
		closeProcs(procs)
		if ferr != nil {
			fails = append(fails, ferr.Error())
			continue
		}
		fenced = append(fenced, v)
	}
	if len(fails) > 0 {
		return fenced, fmt.Errorf("self-fence: %v", fails)
	}
	return fenced, nil
}

// announcementValue encodes an announcement.
func announcementValue(serves map[string]int64) ([]byte, error) {
	if serves == nil {
		serves = map[string]int64{}
	}
	return json.Marshal(announcement{Serves: serves})
}
