package emulate

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// seedLU stores a state with n registrations (SAS initiators 1..n, key = i) for lu.
func seedLU(tb testing.TB, st *sqlite.Store, lu string, n int) {
	tb.Helper()
	var s pr.State
	for i := 1; i <= n; i++ {
		s.Registrations = append(s.Registrations, pr.Registration{
			Nexus: pr.Nexus{Initiator: pr.SASInitiator(0x5001405b00000000 | uint64(i)), RTPI: 1}, Key: uint64(i)})
		s.Generation++
	}
	b, err := s.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.Update(context.Background(), KeyPrefix+lu, func([]byte) ([]byte, bool, error) { return b, true, nil }); err != nil {
		tb.Fatal(err)
	}
}

func sasName(i int) string { return fmt.Sprintf("naa.%016x", 0x5001405b00000000|uint64(i)) }

// BenchmarkLUSize measures one command through the emulation backend on a
// SQLite store against a logical unit holding regs registrations (issue 12:
// 68 ms at 2,000, 1.26 s at 10,000). READ_KEYS reads; RIEK changes the
// caller's key (a write).
func BenchmarkLUSize(b *testing.B) {
	for _, regs := range []int{10, 1000, 2000, 10000} {
		st, err := sqlite.Open(filepath.Join(b.TempDir(), "pr.db"), sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		seedLU(b, st, "big", regs)
		be := New(st, pr.LIO())
		ctx := context.Background()
		for _, bc := range []struct {
			name  string
			cdb   [16]byte
			param func(i int) []byte
		}{
			{"READ_KEYS", scsi.PRInCDB(scsi.SAReadKeys, 8192), func(int) []byte { return nil }},
			{"RIEK", scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24), func(i int) []byte { return param(0, uint64(i)|1<<40, 0) }},
			// READ KEYS again once the unit was written by the committer
			// (in rows on a store that keeps parts, docs/performance.md §5.7.6).
			{"READ_KEYS_after_RIEK", scsi.PRInCDB(scsi.SAReadKeys, 8192), func(int) []byte { return nil }},
		} {
			b.Run(fmt.Sprintf("regs=%d/%s", regs, bc.name), func(b *testing.B) {
				cpu0 := cpuTime(b)
				for i := 0; b.Loop(); i++ {
					res, err := be.Execute(ctx, &backend.Request{CDB: bc.cdb, Param: bc.param(i), Initiator: sasName(1), LU: "big"})
					if err != nil || res.Status != scsi.StatusGood {
						b.Fatalf("%v %v", err, res)
					}
				}
				b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/cmd")
			})
		}
		st.Close()
	}
}

// BenchmarkSmallLUBesideBig measures READ KEYS, and RIEK (a write), on a
// logical unit with one registration while two clients loop on REGISTER AND IGNORE EXISTING KEY on
// another logical unit of the same store with 10,000 registrations (issue 12:
// 0.7 ms alone, 2.4 s beside the big one).
func BenchmarkSmallLUBesideBig(b *testing.B) {
	for _, tc := range []struct {
		busy  bool
		small string
	}{{false, "READ_KEYS"}, {true, "READ_KEYS"}, {false, "RIEK"}, {true, "RIEK"}} {
		busy := tc.busy
		b.Run(fmt.Sprintf("small=%s/big_busy=%v", tc.small, busy), func(b *testing.B) {
			st, err := sqlite.Open(filepath.Join(b.TempDir(), "pr.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			seedLU(b, st, "big", 10000)
			seedLU(b, st, "small", 1)
			be := New(st, pr.LIO())
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			if busy {
				started := make(chan struct{}, 2)
				for c := 1; c <= 2; c++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						cdb := scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24)
						for i := 0; ctx.Err() == nil; i++ {
							be.Execute(ctx, &backend.Request{CDB: cdb, Param: param(0, uint64(i)|1<<40, 0), Initiator: sasName(c), LU: "big"})
							if i == 0 {
								started <- struct{}{}
							}
						}
					}()
				}
				<-started // the big LU's commands are under way
			}
			cdb := scsi.PRInCDB(scsi.SAReadKeys, 8192)
			if tc.small == "RIEK" {
				cdb = scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24)
			}
			for i := 0; b.Loop(); i++ {
				var p []byte
				if tc.small == "RIEK" {
					p = param(0, uint64(i)|1<<41, 0)
				}
				res, err := be.Execute(context.Background(), &backend.Request{CDB: cdb, Param: p, Initiator: sasName(1), LU: "small"})
				if err != nil || res.Status != scsi.StatusGood {
					b.Fatalf("%v %v", err, res)
				}
			}
			cancel()
			wg.Wait()
		})
	}
}

// BenchmarkLUSizeConcurrent is BenchmarkLUSize's write with 64 initiators at
// once on the logical unit (docs/performance.md §5): with the unit's commands
// committed in batches, what a command costs as the registrations grow, where
// one state encoding and one commit are shared by a batch. fence=none runs
// the commands through a fence.Coordinator without a policy, as the daemon
// does; fence=kill through one with a policy (the state before an evicting
// command is copied). cpu-µs/cmd is the process's CPU time (user and system,
// getrusage) per command: unlike ns/op, it does not grow when other
// processes take the CPUs.
func BenchmarkLUSizeConcurrent(b *testing.B) {
	for _, fencing := range []string{"off", "none", "kill"} {
		for _, regs := range []int{10, 100, 1000, 10000} {
			b.Run(fmt.Sprintf("fence=%s/regs=%d/RIEK/clients=64", fencing, regs), func(b *testing.B) {
				benchSizeConcurrent(b, fencing, regs)
			})
		}
	}
}

func benchSizeConcurrent(b *testing.B, fencing string, regs int) {
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "pr.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	seedLU(b, st, "big", regs)
	be := New(st, pr.LIO())
	if fencing != "off" {
		o := fence.Options{Store: st, KeyPrefix: KeyPrefix, Profile: pr.LIO(), HelperID: "bench"}
		if fencing == "kill" {
			p, err := fence.ParsePolicy("kill")
			if err != nil {
				b.Fatal(err)
			}
			o.Policy = p
		}
		be.WithFencing(fence.New(o))
	}
	cdb := scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24)
	var wg sync.WaitGroup
	per := b.N/64 + 1
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for c := 1; c <= 64; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				res, err := be.Execute(context.Background(), &backend.Request{CDB: cdb,
					Param: param(0, uint64(i)|uint64(c)<<40, 0), Initiator: sasName(c), LU: "big"})
				if err != nil || res.Status != scsi.StatusGood {
					b.Errorf("%v %v", err, res)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(64*per)/b.Elapsed().Seconds(), "PROUT/s")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(64*per), "cpu-µs/cmd")
	if n := be.queues.batches.Load(); n > 0 {
		b.ReportMetric(float64(be.queues.commands.Load())/float64(n), "cmds/batch")
	}
}

// cpuTime is the CPU time (user and system) the process used so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLUSizeTwoHelpers is BenchmarkLUSize's RIEK from two helpers
// (backends) on one SQLite file taking turns on one logical unit: every batch
// finds the other's write and reads the unit again (docs/performance.md
// §5.7.6: the state is decoded again, and parts laid out by the other are
// adopted rather than all written again).
func BenchmarkLUSizeTwoHelpers(b *testing.B) {
	for _, regs := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("regs=%d", regs), func(b *testing.B) {
			st, err := sqlite.Open(filepath.Join(b.TempDir(), "pr.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			seedLU(b, st, "big", regs)
			bs := []*Backend{New(st, pr.LIO()), New(st, pr.LIO())}
			cdb := scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24)
			cpu0 := cpuTime(b)
			for i := 0; b.Loop(); i++ {
				res, err := bs[i%2].Execute(context.Background(), &backend.Request{CDB: cdb,
					Param: param(0, uint64(i)|1<<40, 0), Initiator: sasName(1 + i%2), LU: "big"})
				if err != nil || res.Status != scsi.StatusGood {
					b.Fatalf("%v %v", err, res)
				}
			}
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/cmd")
		})
	}
}
