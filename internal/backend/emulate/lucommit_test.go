package emulate

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/etcd"
	"github.com/prhelper/prhelper/internal/store/etcd/etcdtest"
	"github.com/prhelper/prhelper/internal/store/memory"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// randomCommand is a seeded PR IN or OUT command from one of four initiators
// on one of two target ports, with keys from a small set so that commands
// meet: registrations, reservations of every type, preemptions, clears,
// conflicts and unit attentions.
func randomCommand(r *rand.Rand) (init string, port uint16, cdb [16]byte, list []byte) {
	init = fmt.Sprintf("iqn.2025-01.dev.prhelper:diff%d", r.IntN(4))
	port = uint16(1 + r.IntN(2))
	types := []byte{scsi.TypeWriteExclusive, scsi.TypeExclusiveAccess, scsi.TypeWriteExclusiveRegOnly,
		scsi.TypeExclusiveAccessRegOnly, scsi.TypeWriteExclusiveAllRegs, scsi.TypeExclusiveAccessAllRegs}
	if r.IntN(3) == 0 {
		sa := []byte{scsi.SAReadKeys, scsi.SAReadReservation, scsi.SAReportCapabilities, scsi.SAReadFullStatus}[r.IntN(4)]
		return init, port, scsi.PRInCDB(sa, 8192), nil
	}
	sa := []byte{scsi.SARegister, scsi.SAReserve, scsi.SARelease, scsi.SAClear, scsi.SAPreempt,
		scsi.SAPreemptAndAbort, scsi.SARegisterAndIgnoreExisting}[r.IntN(7)]
	key := func() uint64 { return uint64(r.IntN(4)) }
	var flags byte
	if r.IntN(8) == 0 {
		flags = 0x04 // ALL_TG_PT
	}
	return init, port, scsi.PROutCDB(sa, 0, types[r.IntN(len(types))], 24), param(key(), key(), flags)
}

// TestQueueMatchesEngine is the differential of the unit queue, its batches
// and its cached state against the engine alone: seeded random sequences, cut
// in chunks of 1 to 8 commands, each chunk sent through one of two backends on
// one store (two helpers sharing a database: each finds the other's writes
// under its cache), a chunk of one through Execute, a longer one committed as
// one batch, must give the answers and the stored bytes, command by command,
// of running one command at a time on the stored value: decoding it, running
// the engine, encoding the result (without fencing), or the fencing's Step
// (with a fence.Coordinator under --fence=none, as the daemon has). On the
// etcd store (a store.Queuer) a chunk is cut again into batches of 1 to 3
// commands, all queued before the first is answered: each is guessed on the
// value the one before will leave (docs/performance.md §5.6.1).
func TestQueueMatchesEngine(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	for _, seed := range []uint64{1, 2, 3, 4} {
		for _, kind := range []string{"memory", "sqlite", "memory+fencing", "etcd"} {
			t.Run(fmt.Sprintf("seed=%d/%s", seed, kind), func(t *testing.T) {
				var st store.Store = memory.New()
				steps := 800
				if kind == "sqlite" {
					s, err := sqlite.Open(filepath.Join(t.TempDir(), "pr.db"), sqlite.Options{})
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					st, steps = s, 200
				}
				var qs store.Queuer
				if kind == "etcd" {
					s, err := etcd.Open(etcd.Options{Endpoints: cluster.Endpoints(), Prefix: fmt.Sprintf("/queue-test/%d/", seed)})
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					st, qs, steps = s, s, 200
				}
				t.Logf("seed %d, %d steps", seed, steps)
				bs := []*Backend{New(st, pr.LIO()), New(st, pr.LIO())}
				var coord *fence.Coordinator
				if kind == "memory+fencing" {
					coord = fence.New(fence.Options{Store: st, KeyPrefix: KeyPrefix, Profile: pr.LIO(), HelperID: "test"})
					for _, b := range bs {
						b.WithFencing(coord)
					}
				}
				r := rand.New(rand.NewPCG(seed, 14))
				var ref []byte // the reference's stored value
				refStep := func(init string, port uint16, cdb [16]byte, p []byte) pr.Result {
					pi, err := ParseInitiator(init)
					if err != nil {
						t.Fatal(err)
					}
					n := pr.Nexus{Initiator: pi, RTPI: port}
					if coord != nil {
						next, changed, res, _, err := coord.Step(ref, n, cdb[:], func(s *pr.State) pr.Result {
							return pr.Execute(pr.LIO(), s, n, cdb[:], p)
						})
						if err != nil {
							t.Fatal(err)
						}
						if changed {
							ref = next
						}
						return res
					}
					var s pr.State
					if ref != nil {
						if err := s.UnmarshalBinary(ref); err != nil {
							t.Fatal(err)
						}
					}
					want := pr.Execute(pr.LIO(), &s, n, cdb[:], p)
					next, err := s.MarshalBinary()
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(next, ref) {
						ref = next
					}
					return want
				}
				batches := 0
				for i := 0; i < steps; {
					size := 1
					if r.IntN(2) == 0 {
						size = 2 + r.IntN(7)
					}
					b := bs[0]
					if r.IntN(4) == 0 {
						b = bs[1]
					}
					var got []scsi.Result
					var cmds []*luCommand
					var names []string
					var wants []pr.Result
					for k := 0; k < size; k++ {
						init, port, cdb, p := randomCommand(r)
						names = append(names, fmt.Sprintf("%s from %s port %d", scsi.CommandName(cdb[:]), init, port))
						if size == 1 {
							rep, _ := b.Execute(context.Background(), &backend.Request{CDB: cdb, Param: p, FD: -1,
								Initiator: init, TargetPort: port, LU: "diff"})
							got = append(got, rep)
						} else {
							pi, err := ParseInitiator(init)
							if err != nil {
								t.Fatal(err)
							}
							cmds = append(cmds, &luCommand{Pending: store.NewPending(), ctx: context.Background(),
								nexus: pr.Nexus{Initiator: pi, RTPI: port}, cdb: cdb[:], param: p})
						}
						wants = append(wants, refStep(init, port, cdb, p))
					}
					if size > 1 {
						batches++
						q := b.queues.get(KeyPrefix + "diff")
						if qs == nil {
							b.began(q)
							b.commitBatch(q, nil, cmds)
						}
						for rest := cmds; qs != nil && len(rest) > 0; {
							n := min(len(rest), 1+r.IntN(3))
							b.began(q)
							b.commitBatch(q, qs, rest[:n])
							rest = rest[n:]
						}
						for _, c := range cmds {
							if err := c.Wait(context.Background()); err != nil {
								t.Fatalf("seed %d step %d: batch: %v", seed, i+1, err)
							}
							got = append(got, c.res)
						}
					}
					for k := range got {
						if !reflect.DeepEqual(got[k], wants[k]) {
							t.Fatalf("seed %d step %d (%s, %d of a chunk of %d): got %+v, want %+v",
								seed, i+k+1, names[k], k+1, size, got[k], wants[k])
						}
					}
					stored, err := st.Get(context.Background(), KeyPrefix+"diff")
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(stored, ref) {
						t.Fatalf("seed %d steps %d-%d: stored state %x, want %x", seed, i+1, i+size, stored, ref)
					}
					i += size
				}
				t.Logf("%d batches of 2 to 8 commands", batches)
			})
		}
	}
}

// TestConcurrentCommandsOnOneUnit sends REGISTER AND IGNORE EXISTING KEY from
// 32 initiators at once on one unit of a SQLite store, 40 keys each, with READ
// KEYS beside them: every command is answered GOOD, and the unit ends with
// every initiator's last key, as it would after the commands one at a time.
func TestConcurrentCommandsOnOneUnit(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "pr.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b := New(st, pr.LIO())
	const clients, per = 32, 40
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			init := fmt.Sprintf("iqn.2025-01.dev.prhelper:conc%d", c)
			for k := 1; k <= per; k++ {
				rep := run(t, b, "conc", out(init, scsi.SARegisterAndIgnoreExisting, 0, 0, uint64(c)<<8|uint64(k)))
				if rep.Status != scsi.StatusGood {
					t.Errorf("client %d key %d: %s", c, k, scsi.StatusName(rep.Status))
					return
				}
				if k%8 == 0 {
					if rep := run(t, b, "conc", in(init, scsi.SAReadKeys)); rep.Status != scsi.StatusGood {
						t.Errorf("client %d READ KEYS: %s", c, scsi.StatusName(rep.Status))
						return
					}
				}
			}
		}(c)
	}
	wg.Wait()
	rep := run(t, b, "conc", in("iqn.2025-01.dev.prhelper:conc0", scsi.SAReadKeys))
	if rep.Status != scsi.StatusGood || len(rep.Data) < 8 {
		t.Fatalf("READ KEYS: %+v", rep)
	}
	n := binary.BigEndian.Uint32(rep.Data[4:8]) / 8
	got := map[uint64]bool{}
	for i := uint32(0); i < n; i++ {
		got[binary.BigEndian.Uint64(rep.Data[8+8*i:])] = true
	}
	if len(got) != clients {
		t.Errorf("%d keys registered, want %d", len(got), clients)
	}
	for c := 0; c < clients; c++ {
		if !got[uint64(c)<<8|per] {
			t.Errorf("client %d's last key %#x is not registered", c, uint64(c)<<8|per)
		}
	}
	t.Logf("%d commands in %d unit batches, %d store transactions",
		b.queues.commands.Load(), b.queues.batches.Load(), st.Stats().Transactions)
}

// TestAbandonedCommandNotRun: a command whose caller's context ended before
// it was taken changes nothing and is answered as a transient failure.
func TestAbandonedCommandNotRun(t *testing.T) {
	st := memory.New()
	b := New(st, pr.LIO())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := out(vm1, scsi.SARegister, 0, 0, 7)
	rep, err := b.Execute(ctx, &backend.Request{CDB: c.cdb, Param: c.param, FD: -1, Initiator: c.init, LU: lu})
	if err == nil || !bytes.Equal(rep.Sense, scsi.CheckCondition(scsi.SenseIOError).Sense) {
		t.Fatalf("cancelled REGISTER: %+v, %v", rep, err)
	}
	if v, _ := st.Get(context.Background(), KeyPrefix+lu); v != nil {
		t.Fatalf("cancelled REGISTER stored %x", v)
	}
	if rep := run(t, b, lu, c); rep.Status != scsi.StatusGood {
		t.Fatalf("REGISTER after: %+v", rep)
	}
}
