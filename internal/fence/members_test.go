package fence_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/memory"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// leases stands in for etcd's lease table in unit tests of the coordinator's
// logic across hosts (the real one is package etcdlease, tested on etcd): a
// member is listed until the test expires it.
type leases struct {
	mu   sync.Mutex
	anns map[string][]byte
	log  []string // "expire <id>" events, in order, with other test events
}

func newLeases() *leases { return &leases{anns: map[string][]byte{}} }

func (l *leases) event(e string) {
	l.mu.Lock()
	l.log = append(l.log, e)
	l.mu.Unlock()
}

func (l *leases) events() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.log...)
}

// expire ends a member's lease: its announcement goes, as etcd deletes a
// lease's keys when it expires.
func (l *leases) expire(id string) {
	l.mu.Lock()
	delete(l.anns, id)
	l.log = append(l.log, "expire "+id)
	l.mu.Unlock()
}

type member struct {
	l  *leases
	id string
}

func (l *leases) join(id string) *member {
	l.mu.Lock()
	l.anns[id] = []byte("{}")
	l.mu.Unlock()
	return &member{l: l, id: id}
}

func (m *member) ID() string { return m.id }

func (m *member) Announce(_ context.Context, v []byte) error {
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	if _, ok := m.l.anns[m.id]; !ok {
		return errors.New("lease not found")
	}
	m.l.anns[m.id] = v
	return nil
}

func (m *member) List(context.Context) (map[string][]byte, error) {
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	out := make(map[string][]byte, len(m.l.anns))
	for k, v := range m.l.anns {
		out[k] = v
	}
	return out, nil
}

// hostHelper is a helper on its own "host": its own membership and clock.
func hostHelper(t *testing.T, st store.Store, m *member, timeout time.Duration, skew time.Duration) *helper {
	reg := fence.NewRegistry()
	c := fence.New(fence.Options{Store: st, KeyPrefix: emulate.KeyPrefix, Profile: pr.LIO(), Policy: fence.Kill{}, Registry: reg,
		Timeout: timeout, Poll: 10 * time.Millisecond, Members: m, Now: func() time.Time { return time.Now().Add(skew) }})
	return &helper{reg: reg, coord: c, be: emulate.New(st, pr.LIO()).WithFencing(c)}
}

// twoHosts starts host A's helper (its clock skew off) serving vm2 and host
// B's serving vm1 over st; vm1 holds Write Exclusive Registrants Only and vm2
// is registered. It returns the helpers, the two VMs' processes and the
// release of vm1's connection.
func twoHosts(t *testing.T, st store.Store, skew time.Duration) (a, b *helper, q1, q2 *exec.Cmd, releaseVM1 func()) {
	l := newLeases()
	a = hostHelper(t, st, l.join("hostA@1"), 5*time.Second, skew)
	b = hostHelper(t, st, l.join("hostB@2"), 5*time.Second, 0)
	q1, q2 = qemu(t), qemu(t)
	releaseVM1 = b.track(t, vm1, q1.Process.Pid)
	a.track(t, vm2, q2.Process.Pid)
	a.run(t)
	b.run(t)
	mustGood(t, b.be, vm1, scsi.SARegister, 0, 0, 0xa1)
	mustGood(t, b.be, vm1, scsi.SAReserve, scsi.TypeWriteExclusiveRegOnly, 0xa1, 0)
	mustGood(t, a.be, vm2, scsi.SARegister, 0, 0, 0xb2)
	return a, b, q1, q2, releaseVM1
}

// TestAcrossHostsKillBeforeGood: vm1 on host B, vm2 on host A; A's clock is an
// hour off B's either way. vm2's PREEMPT is answered GOOD only after B's
// helper killed vm1 and confirmed through the store: no clock of one host is
// compared with another's (with the one-host rule, "served since before the
// commit", A an hour behind would not wait for B at all).
func TestAcrossHostsKillBeforeGood(t *testing.T) {
	for _, skew := range []time.Duration{-time.Hour, time.Hour} {
		t.Run(fmt.Sprint(skew), func(t *testing.T) {
			st := memory.New()
			a, _, q1, q2, _ := twoHosts(t, st, skew)
			mustGood(t, a.be, vm2, scsi.SAPreempt, scsi.TypeWriteExclusiveRegOnly, 0xb2, 0xa1)
			if !exited(q1.Process.Pid) {
				t.Fatal("GOOD while vm1 on host B still runs")
			}
			if exited(q2.Process.Pid) {
				t.Fatal("vm2 was killed")
			}
			if recs := pending(t, st); len(recs) != 0 {
				t.Fatalf("records left after GOOD: %+v", recs)
			}
		})
	}
}

// TestAcrossHostsKillAfterDisconnect: vm1's connection to host B's helper
// ended but its process runs on. B keeps announcing vm1 until it exits, so
// host A waits for B's fence (a helper that dropped vm1 at the disconnect
// would let A take "served by nobody" for confirmed).
func TestAcrossHostsKillAfterDisconnect(t *testing.T) {
	a, _, q1, _, release := twoHosts(t, memory.New(), 0)
	release()
	time.Sleep(50 * time.Millisecond) // B's loop (10 ms) announces what it serves now
	mustGood(t, a.be, vm2, scsi.SAPreempt, scsi.TypeWriteExclusiveRegOnly, 0xb2, 0xa1)
	if !exited(q1.Process.Pid) {
		t.Fatal("GOOD while vm1, disconnected from host B's helper, still runs")
	}
}

// TestAcrossHostsLeaseExpiry: host B's helper serves vm1 but is cut off (it
// never sees the record). vm2's PREEMPT on host A waits; it is answered GOOD
// only after B's lease expired, never before (the event order shows it).
func TestAcrossHostsLeaseExpiry(t *testing.T) {
	st, l := memory.New(), newLeases()
	a := hostHelper(t, st, l.join("hostA@1"), 5*time.Second, 0)
	b := hostHelper(t, st, l.join("hostB@2"), 5*time.Second, 0)
	q1 := qemu(t)
	b.track(t, vm1, q1.Process.Pid) // announced; B's Run never runs: cut off
	a.run(t)
	mustGood(t, a.be, vm1, scsi.SARegister, 0, 0, 0xa1) // (registers through A's state: one store)
	mustGood(t, a.be, vm1, scsi.SAReserve, scsi.TypeWriteExclusiveRegOnly, 0xa1, 0)
	mustGood(t, a.be, vm2, scsi.SARegister, 0, 0, 0xb2)
	done := make(chan scsi.Result, 1)
	go func() {
		r, _ := prOut(t, a.be, vm2, scsi.SAPreempt, scsi.TypeWriteExclusiveRegOnly, 0xb2, 0xa1)
		l.event("answer " + scsi.StatusName(r.Status))
		done <- r
	}()
	// The record is committed and A waits for B.
	for len(pending(t, st)) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("answered %s while host B's lease is alive and B did not confirm", scsi.StatusName(r.Status))
	case <-time.After(200 * time.Millisecond):
	}
	l.expire("hostB@2")
	if r := <-done; r.Status != scsi.StatusGood {
		t.Fatalf("after B's lease expired: %s", scsi.StatusName(r.Status))
	}
	if ev := l.events(); len(ev) != 2 || ev[0] != "expire hostB@2" || ev[1] != "answer GOOD" {
		t.Fatalf("events %v, want the expiry before the GOOD", ev)
	}
}

// TestAcrossHostsVictimHelperRestart: host B's helper stops between the
// eviction's commit and its fence; its lease is still alive (it expires after
// its TTL). vm1's QEMU, started before the eviction, reconnects to B's new
// helper (a new lease), which sees the record and kills it; A answers GOOD
// once the new helper confirmed and the old lease expired, and vm1 has
// exited by then.
func TestAcrossHostsVictimHelperRestart(t *testing.T) {
	st, l := memory.New(), newLeases()
	a := hostHelper(t, st, l.join("hostA@1"), 5*time.Second, 0)
	old := hostHelper(t, st, l.join("hostB@2"), 5*time.Second, 0)
	q1 := qemu(t)
	relOld := old.track(t, vm1, q1.Process.Pid)
	a.run(t)
	mustGood(t, old.be, vm1, scsi.SARegister, 0, 0, 0xa1)
	mustGood(t, old.be, vm1, scsi.SAReserve, scsi.TypeWriteExclusiveRegOnly, 0xa1, 0)
	mustGood(t, a.be, vm2, scsi.SARegister, 0, 0, 0xb2)
	done := make(chan scsi.Result, 1)
	go func() {
		r, _ := prOut(t, a.be, vm2, scsi.SAPreempt, scsi.TypeWriteExclusiveRegOnly, 0xb2, 0xa1)
		l.event(fmt.Sprintf("answer %s vm1-exited=%v", scsi.StatusName(r.Status), exited(q1.Process.Pid)))
		done <- r
	}()
	for len(pending(t, st)) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	relOld() // the old helper is gone: its connection ended, its lease lives on
	nb := hostHelper(t, st, l.join("hostB@3"), 5*time.Second, 0)
	nb.track(t, vm1, q1.Process.Pid) // QEMU reconnects to the new helper
	nb.run(t)
	for !exited(q1.Process.Pid) {
		time.Sleep(5 * time.Millisecond)
	}
	l.event("vm1 exited")
	select {
	case r := <-done:
		t.Fatalf("answered %s while the old helper's lease is alive", scsi.StatusName(r.Status))
	case <-time.After(100 * time.Millisecond):
	}
	l.expire("hostB@2")
	if r := <-done; r.Status != scsi.StatusGood {
		t.Fatalf("answer %s", scsi.StatusName(r.Status))
	}
	want := []string{"vm1 exited", "expire hostB@2", "answer GOOD vm1-exited=true"}
	if ev := l.events(); fmt.Sprint(ev) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", ev, want)
	}
}

// TestAcrossHostsEvictionsRacing: vm1 on host A and vm2 on host B preempt each
// other at once. Exactly one wins and gets GOOD only after the other host
// killed the loser.
func TestAcrossHostsEvictionsRacing(t *testing.T) {
	for round := range 5 {
		st, l := memory.New(), newLeases()
		a := hostHelper(t, st, l.join("hostA@1"), 5*time.Second, time.Duration(round)*time.Minute)
		b := hostHelper(t, st, l.join("hostB@2"), 5*time.Second, -time.Duration(round)*time.Minute)
		q1, q2 := qemu(t), qemu(t)
		a.track(t, vm1, q1.Process.Pid)
		b.track(t, vm2, q2.Process.Pid)
		a.run(t)
		b.run(t)
		mustGood(t, a.be, vm1, scsi.SARegister, 0, 0, 0xa1)
		mustGood(t, b.be, vm2, scsi.SARegister, 0, 0, 0xb2)
		mustGood(t, a.be, vm1, scsi.SAReserve, scsi.TypeWriteExclusiveRegOnly, 0xa1, 0)
		var wg sync.WaitGroup
		var r1, r2 scsi.Result
		var x1, x2 bool // the other VM exited when the answer came
		wg.Add(2)
		go func() {
			defer wg.Done()
			r1, _ = prOut(t, a.be, vm1, scsi.SAPreempt, scsi.TypeWriteExclusiveRegOnly, 0xa1, 0xb2)
			x1 = exited(q2.Process.Pid)
		}()
		go func() {
			defer wg.Done()
			r2, _ = prOut(t, b.be, vm2, scsi.SAPreempt, scsi.TypeWriteExclusiveRegOnly, 0xb2, 0xa1)
			x2 = exited(q1.Process.Pid)
		}()
		wg.Wait()
		g1, g2 := r1.Status == scsi.StatusGood, r2.Status == scsi.StatusGood
		if g1 == g2 {
			t.Fatalf("round %d: vm1 %s, vm2 %s: exactly one eviction must win", round, scsi.StatusName(r1.Status), scsi.StatusName(r2.Status))
		}
		if (g1 && !x1) || (g2 && !x2) {
			t.Fatalf("round %d: the winner got GOOD while the loser still ran", round)
		}
		winner := q1
		if g2 {
			winner = q2
		}
		if exited(winner.Process.Pid) {
			t.Fatalf("round %d: the winner was killed", round)
		}
	}
}

// TestSelfFence: a helper whose lease is about to expire kills the VMs it
// serves that hold a registration (here registered through it), and leaves
// the others alone.
func TestSelfFence(t *testing.T) {
	st, l := memory.New(), newLeases()
	b := hostHelper(t, st, l.join("hostB@2"), 5*time.Second, 0)
	q1, q3 := qemu(t), qemu(t)
	b.track(t, vm1, q1.Process.Pid)
	b.track(t, vm2, q3.Process.Pid) // connected, never registered
	mustGood(t, b.be, vm1, scsi.SARegister, 0, 0, 0xa1)
	fenced, err := b.coord.SelfFence(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(fenced) != 1 || fenced[0] != vm1 {
		t.Fatalf("self-fenced %v, want [%s]", fenced, vm1)
	}
	if !exited(q1.Process.Pid) {
		t.Fatal("vm1 (registered) still runs after the self-fence")
	}
	if exited(q3.Process.Pid) {
		t.Fatal("the unregistered VM was killed")
	}
}

// TestAcrossHostsNotAnnounced: a connection that cannot be announced under the
// helper's lease (the lease is gone) is refused: Track returns
// ErrNotAnnounced.
func TestAcrossHostsNotAnnounced(t *testing.T) {
	st, l := memory.New(), newLeases()
	b := hostHelper(t, st, l.join("hostB@2"), 5*time.Second, 0)
	l.expire("hostB@2")
	q := qemu(t)
	rel, err := b.coord.TrackPID(vm1, q.Process.Pid)
	defer rel()
	if !errors.Is(err, fence.ErrNotAnnounced) {
		t.Fatalf("Track with the lease gone: %v, want ErrNotAnnounced", err)
	}
}
