package main

import (
	"fmt"
	"io"

	"github.com/prhelper/prhelper/internal/promscrape"
)

// Where the time of a row went, from Prometheus pages read before and after
// it (-metrics, -members): the helper's own (README.md's metrics table) and
// the etcd members' (their /metrics on the client URL). Figures are
// differences over the row, summed over its rounds.

// helperFams are the helper's families a row reads, and which series:
// the PR OUT answers, the store's transactions and commits (their time and
// the store updates each answered), the helper's own request latency.
var helperFams = map[string]promscrape.Filter{
	"prhelper_requests_total":                {Label: "command", Prefix: "pr_out_"},
	"prhelper_store_transactions_total":      {},
	"prhelper_store_commit_duration_seconds": {},
	"prhelper_store_commit_batch_size":       {},
	"prhelper_request_duration_seconds":      {Label: "backend", Prefix: "emulate"},
}

// processCPU is the standard process collector's CPU time (user and
// system seconds), on the members' pages as on the helper's.
const processCPU = "process_cpu_seconds_total"

// memberFams are an etcd member's: its WAL's fdatasyncs, bbolt's commits
// (which hold the backend's write lock that applying entries needs), the
// round trips to its peers and its CPU time.
var memberFams = map[string]promscrape.Filter{
	processCPU:                                  {},
	"etcd_disk_wal_fsync_duration_seconds":      {},
	"etcd_disk_backend_commit_duration_seconds": {},
	"etcd_network_peer_round_trip_time_seconds": {},
}

// watch is what one path's rows read besides their latencies: the helper's
// page and its etcd members' pages.
type watch struct {
	helper  string   // -metrics URL ("" none)
	members []string // -members URLs
}

// reading is every page of a watch at one moment, or a difference of two.
type reading struct {
	helper  promscrape.Sample
	members []promscrape.Sample
}

// read reads every page of w.
func (w watch) read() (reading, error) {
	var r reading
	if w.helper != "" {
		s, err := promscrape.Scrape(w.helper, helperFams)
		if err != nil {
			return r, err
		}
		r.helper = s
	}
	for _, m := range w.members {
		s, err := promscrape.Scrape(m, memberFams)
		if err != nil {
			return r, err
		}
		r.members = append(r.members, s)
	}
	return r, nil
}

// add is r plus sign times b, page by page.
func (r reading) add(b reading, sign float64) reading {
	d := reading{helper: r.helper.Add(b.helper, sign)}
	for i := range max(len(r.members), len(b.members)) {
		var x, y promscrape.Sample
		if i < len(r.members) {
			x = r.members[i]
		}
		if i < len(b.members) {
			y = b.members[i]
		}
		d.members = append(d.members, x.Add(y, sign))
	}
	return d
}

// report prints where a row's time went: commands per store transaction and
// per store update (one logical unit's batch), the store commits' and the
// helper's request times, and each member's disk and peer histograms.
func (r reading) report(w io.Writer, name string) {
	h := r.helper
	if len(h.Counters)+len(h.Hists) > 0 {
		cmds, txns := h.Counters["prhelper_requests_total"], h.Counters["prhelper_store_transactions_total"]
		commits := h.Hists["prhelper_store_commit_duration_seconds"]
		per := func(a, b float64) string {
			if b <= 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f", a/b)
		}
		fmt.Fprintf(w, "  %s helper: %.0f PR OUT in %.0f store transactions (%s cmds/txn), %.0f LU batches (%s cmds/batch); store commit %v, >25ms %.0f; request %v\n",
			name, cmds, txns, per(cmds, txns), h.Hists["prhelper_store_commit_batch_size"].Sum, per(cmds, h.Hists["prhelper_store_commit_batch_size"].Sum),
			commits, commits.Over(0.025), h.Hists["prhelper_request_duration_seconds"])
	}
	for i, m := range r.members {
		fmt.Fprintf(w, "  %s member %d: cpu %.2fs; wal fsync %v; backend commit %v; peer rtt %v\n", name, i, m.Counters[processCPU],
			m.Hists["etcd_disk_wal_fsync_duration_seconds"], m.Hists["etcd_disk_backend_commit_duration_seconds"],
			m.Hists["etcd_network_peer_round_trip_time_seconds"])
	}
}
