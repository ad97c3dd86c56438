package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/internal/store/storetest"
)

// BenchmarkUpdate measures durable Updates per second (each acknowledged only after its
// fsynced COMMIT) with 1, 8 and 64 concurrent clients, grouped and ungrouped: the
// figure behind "durable PR OUT/s". Each client updates its own logical unit, as
// guests using different disks would; SQLite's write lock is per file, so they contend
// all the same.
func BenchmarkUpdate(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts sqlite.Options
	}{
		{"grouped", sqlite.Options{}},
		{"ungrouped", sqlite.Options{NoGroupCommit: true}},
	} {
		for _, clients := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", mode.name, clients), func(b *testing.B) {
				s, err := sqlite.Open(filepath.Join(b.TempDir(), "pr.db"), mode.opts)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for c := range clients {
					key := fmt.Sprintf("lu%d", c)
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							if err := s.Update(context.Background(), key, storetest.Increment); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				st := s.Stats()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "updates/s")
				b.ReportMetric(float64(st.Updates)/float64(max(st.Transactions, 1)), "updates/txn")
			})
		}
	}
}
