package etcd_test

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/promscrape"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/etcd"
	"github.com/prhelper/prhelper/internal/store/etcd/etcdtest"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// prOut runs one PR OUT REGISTER AND IGNORE EXISTING KEY through st exactly as the
// emulate backend does: the pr engine on the LU's state inside one Update.
func prOut(st store.Store, lu string, n pr.Nexus, key uint64) (pr.Result, error) {
	cdb := scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24)
	param := make([]byte, 24)
	binary.BigEndian.PutUint64(param[8:], key)
	var res pr.Result
	err := st.Update(context.Background(), "lu/"+lu, func(cur []byte) ([]byte, bool, error) {
		var s pr.State
		if cur != nil {
			if err := s.UnmarshalBinary(cur); err != nil {
				return nil, false, err
			}
		}
		res = pr.Execute(pr.LIO(), &s, n, cdb[:], param)
		next, err := s.MarshalBinary()
		return next, err == nil, err
	})
	return res, err
}

// benchCommitters is etcd.Options.Committers in BenchmarkPROut (0: the default);
// -committers changes it to compare.
var benchCommitters int

// benchPeerProxies runs BenchmarkPROut's cluster with the peer proxies the fault
// tests use (every raft message then passes through the test process), as the
// benchmark did before -peerproxies existed; without it the members talk directly.
var benchPeerProxies bool

func init() {
	flag.IntVar(&benchCommitters, "committers", 0, "etcd store committers for BenchmarkPROut")
	flag.BoolVar(&benchPeerProxies, "peerproxies", false, "BenchmarkPROut: etcd peer traffic through the test's proxies")
}

// BenchmarkPROut measures acknowledged PR OUT commands per second and their latency
// (p50, p99) through the etcd store on a 3-member loopback cluster and through the
// SQLite store in the same run, with 1, 16 and 64 concurrent clients (each its own
// initiator) on one logical unit and spread over 16.
//
//	go test -run '^$' -bench PROut -benchtime 3000x ./internal/store/etcd/
func BenchmarkPROut(b *testing.B) {
	start := etcdtest.StartDirect
	if benchPeerProxies {
		start = etcdtest.Start
	}
	c := start(b, 3)
	for _, kind := range []string{"sqlite", "etcd"} {
		for _, lus := range []int{1, 16} {
			for _, clients := range []int{1, 16, 64} {
				b.Run(fmt.Sprintf("store=%s/lus=%d/clients=%d", kind, lus, clients), func(b *testing.B) {
					var st store.Store
					var err error
					if kind == "sqlite" {
						st, err = sqlite.Open(filepath.Join(b.TempDir(), "pr.db"), sqlite.Options{})
					} else {
						st, err = etcd.Open(etcd.Options{Endpoints: c.Endpoints(), Prefix: freshPrefix(), Committers: benchCommitters})
					}
					if err != nil {
						b.Fatal(err)
					}
					defer st.Close()
					hists := []string{"etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds",
						"etcd_network_peer_round_trip_time_seconds"}
					fams := map[string]promscrape.Filter{}
					for _, h := range hists {
						fams[h] = promscrape.Filter{}
					}
					var before []promscrape.Sample
					if kind == "etcd" {
						for _, ep := range c.Endpoints() {
							h, err := promscrape.Scrape(ep, fams)
							if err != nil {
								b.Fatalf("metrics of %s: %v", ep, err)
							}
							before = append(before, h)
						}
					}
					lat := make([]time.Duration, b.N)
					var next atomic.Int64
					b.ResetTimer()
					var wg sync.WaitGroup
					for cl := range clients {
						wg.Go(func() {
							n := pr.Nexus{Initiator: pr.ISCSIInitiator(fmt.Sprintf("iqn.2025-01.bench:client%d", cl), ""), RTPI: 1}
							lu := fmt.Sprintf("bench-lu-%d", cl%lus)
							for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
								t0 := time.Now()
								res, err := prOut(st, lu, n, uint64(i))
								lat[i-1] = time.Since(t0)
								if err != nil || res.Status != scsi.StatusGood {
									b.Errorf("client %d: %v %#x", cl, err, res.Status)
									return
								}
							}
						})
					}
					wg.Wait()
					b.StopTimer()
					slices.Sort(lat)
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "PROUT/s")
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
					b.ReportMetric(0, "ns/op")
					for i, ep := range c.Endpoints() {
						if before == nil {
							break
						}
						after, err := promscrape.Scrape(ep, fams)
						if err != nil {
							b.Fatalf("metrics of %s: %v", ep, err)
						}
						// Where a commit's time goes, member by member: the
						// WAL fdatasyncs, bbolt's commits, the peers' round trips
						// during the row (bucket bounds, not exact figures).
						d := after.Add(before[i], -1)
						b.Logf("member %d: wal fsync %v; backend commit %v; peer rtt %v", i,
							d.Hists[hists[0]], d.Hists[hists[1]], d.Hists[hists[2]])
					}
					if es, ok := st.(*etcd.Store); ok {
						s := es.Stats()
						if s.Transactions > 0 {
							b.ReportMetric(float64(s.Updates)/float64(s.Transactions), "cmds/txn")
						}
					}
				})
			}
		}
	}
}
