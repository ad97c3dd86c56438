package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/internal/promscrape"
)

// helperPage is a helper's metrics page as the daemon writes it, with
// pr_out commands counted and PR IN and SG_IO series left out.
func helperPage(prOut, prIn, txns, commits, batchSum, slow float64) string {
	return fmt.Sprintf(`# TYPE prhelper_requests_total counter
prhelper_requests_total{backend="emulate",command="pr_out_register_and_ignore_existing_key",status="good"} %g
prhelper_requests_total{backend="emulate",command="pr_in_read_keys",status="good"} %g
# TYPE prhelper_store_transactions_total counter
prhelper_store_transactions_total{store="etcd"} %g
# TYPE prhelper_store_commit_duration_seconds histogram
prhelper_store_commit_duration_seconds_bucket{store="etcd",le="0.001"} %g
prhelper_store_commit_duration_seconds_bucket{store="etcd",le="0.025"} %g
prhelper_store_commit_duration_seconds_bucket{store="etcd",le="+Inf"} %g
prhelper_store_commit_duration_seconds_sum{store="etcd"} 1
prhelper_store_commit_duration_seconds_count{store="etcd"} %g
# TYPE prhelper_store_commit_batch_size histogram
prhelper_store_commit_batch_size_bucket{store="etcd",le="+Inf"} %g
prhelper_store_commit_batch_size_sum{store="etcd"} %g
prhelper_store_commit_batch_size_count{store="etcd"} %g
`, prOut, prIn, txns, commits-slow-1, commits-slow, commits, commits, commits, batchSum, commits)
}

// memberPage is an etcd member's page: WAL fsyncs and two peers' round trips.
const memberPage = `# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 90
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.064"} 99
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 100
etcd_disk_wal_fsync_duration_seconds_sum 2
etcd_disk_wal_fsync_duration_seconds_count 100
# TYPE etcd_network_peer_round_trip_time_seconds histogram
etcd_network_peer_round_trip_time_seconds_bucket{To="a",le="0.0001"} 1
etcd_network_peer_round_trip_time_seconds_bucket{To="a",le="+Inf"} 2
etcd_network_peer_round_trip_time_seconds_sum{To="a"} 0.1
etcd_network_peer_round_trip_time_seconds_count{To="a"} 2
etcd_network_peer_round_trip_time_seconds_bucket{To="b",le="0.0001"} 2
etcd_network_peer_round_trip_time_seconds_bucket{To="b",le="+Inf"} 2
etcd_network_peer_round_trip_time_seconds_sum{To="b"} 0.0001
etcd_network_peer_round_trip_time_seconds_count{To="b"} 2
`

func TestParseSample(t *testing.T) {
	s, err := promscrape.Parse(strings.NewReader(memberPage), memberFams)
	if err != nil {
		t.Fatal(err)
	}
	wal := s.Hists["etcd_disk_wal_fsync_duration_seconds"]
	if wal.Count != 100 || wal.Quantile(0.5) != 1 || wal.Quantile(0.99) != 64 || wal.Over(0.064) != 1 || wal.Over(0.002) != -1 {
		t.Errorf("wal fsync: %+v (p50 %v p99 %v)", wal, wal.Quantile(0.5), wal.Quantile(0.99))
	}
	if s.Counters[processCPU] != 12.5 {
		t.Errorf("cpu: %v, want 12.5", s.Counters[processCPU])
	}
	rtt := s.Hists["etcd_network_peer_round_trip_time_seconds"] // two peers summed
	if rtt.Count != 4 || rtt.Buckets[0.0001] != 3 || rtt.Quantile(0.75) != 0.1 {
		t.Errorf("peer rtt: %+v", rtt)
	}
	if _, err := promscrape.Parse(strings.NewReader("not { a page"), memberFams); err == nil {
		t.Error("garbage page: no error")
	}
	var empty promscrape.Hist
	if empty.Quantile(0.99) != 0 {
		t.Error("empty histogram: quantile not 0")
	}
}

// TestReadingDifference: a row's reading is after minus before, rounds add
// up, and the report says commands per transaction and per batch.
func TestReadingDifference(t *testing.T) {
	before, err := promscrape.Parse(strings.NewReader(helperPage(10, 5, 2, 2, 10, 0)), helperFams)
	if err != nil {
		t.Fatal(err)
	}
	after, err := promscrape.Parse(strings.NewReader(helperPage(330, 70, 12, 22, 170, 3)), helperFams)
	if err != nil {
		t.Fatal(err)
	}
	d := reading{helper: after}.add(reading{helper: before}, -1)
	if got := d.helper.Counters["prhelper_requests_total"]; got != 320 {
		t.Errorf("PR OUT over the row: %v, want 320 (PR IN left out)", got)
	}
	c := d.helper.Hists["prhelper_store_commit_duration_seconds"]
	if c.Count != 20 || c.Over(0.025) != 3 || d.helper.Hists["prhelper_store_commit_batch_size"].Sum != 160 {
		t.Errorf("commits over the row: %+v", c)
	}
	two := reading{}.add(d, 1).add(d, 1)
	if got := two.helper.Counters["prhelper_store_transactions_total"]; got != 20 {
		t.Errorf("two rounds: %v transactions, want 20", got)
	}
	var b bytes.Buffer
	d.report(&b, "etcd 64")
	for _, want := range []string{"320 PR OUT in 10 store transactions (32.0 cmds/txn)", "160 LU batches (2.0 cmds/batch)", ">25ms 3"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report %q lacks %q", b.String(), want)
		}
	}
}

// TestScrapeUnix reads a page served on a Unix socket, as a helper's
// --metrics=unix:PATH serves it, and a missing socket as an error.
func TestScrapeUnix(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "m.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, memberPage)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	s, err := promscrape.Scrape("unix:"+sock, memberFams)
	if err != nil {
		t.Fatal(err)
	}
	if s.Hists["etcd_disk_wal_fsync_duration_seconds"].Count != 100 {
		t.Errorf("scraped %+v", s)
	}
	if _, err := promscrape.Scrape("unix:"+sock+"x", memberFams); err == nil {
		t.Error("no socket: no error")
	}
}
