package emulate

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// BenchmarkDurablePROut measures acknowledged, fsynced PR OUT commands per second
// through the emulation backend on a SQLite file: every client is its own
// initiator re-registering on one logical unit (the worst case: one hot state).
// "grouped" lets concurrent commands share a commit; every answer still waits
// for the commit that made it durable.
func BenchmarkDurablePROut(b *testing.B) {
	for _, grouped := range []bool{true, false} {
		for _, clients := range []int{1, 8, 64} {
			name := fmt.Sprintf("grouped=%v/clients=%d", grouped, clients)
			b.Run(name, func(b *testing.B) {
				st, err := sqlite.Open(filepath.Join(b.TempDir(), "pr.db"), sqlite.Options{NoGroupCommit: !grouped})
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				be := New(st, pr.LIO())
				cdb := scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24)
				var next atomic.Int64
				b.ResetTimer()
				var wg sync.WaitGroup
				for c := 0; c < clients; c++ {
					wg.Add(1)
					go func(c int) {
						defer wg.Done()
						init := fmt.Sprintf("iqn.2025-01.bench:client%d", c)
						for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
							rep, err := be.Execute(context.Background(), &backend.Request{
								CDB: cdb, Param: param(0, uint64(i), 0), Initiator: init, LU: "bench-lu"})
							if err != nil || rep.Status != scsi.StatusGood {
								b.Errorf("client %d: %v %#x", c, err, rep.Status)
								return
							}
						}
					}(c)
				}
				wg.Wait()
				b.StopTimer()
				s := st.Stats()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "PROUT/s")
				if s.Transactions > 0 {
					// Store updates a commit, times commands an update
					// (one update answers a batch of one unit's commands).
					perUpdate := 1.0
					if n := be.queues.batches.Load(); n > 0 {
						perUpdate = float64(be.queues.commands.Load()) / float64(n)
					}
					b.ReportMetric(float64(s.Updates)/float64(s.Transactions)*perUpdate, "cmds/commit")
				}
			})
		}
	}
}
