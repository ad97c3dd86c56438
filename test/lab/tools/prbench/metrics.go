package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Where the time of a row went, from Prometheus pages read before and after
// it (-metrics, -members): the helper's own (README.md's metrics table) and
// the etcd members' (their /metrics on the client URL). Figures are
// differences over the row, summed over its rounds.

// sample is what one page said: each wanted family's counters summed, and
// its histograms summed by bucket bound (several series of one family, e.g.
// one peer RTT series per peer, add up).
type sample struct {
	counters map[string]float64
	hists    map[string]hist
}

// hist is a cumulative histogram: the count at or below each upper bound
// (seconds), the total count and the sum of the observations.
type hist struct {
	buckets    map[float64]float64
	count, sum float64
}

// scrapeFilter says which series of a family count: all (l == ""), or
// those whose label l starts with prefix.
type scrapeFilter struct{ l, prefix string }

// helperFams are the helper's families a row reads, and which series:
// the PR OUT answers, the store's transactions and commits (their time and
// the store updates each answered), the helper's own request latency.
var helperFams = map[string]scrapeFilter{
	"prhelper_requests_total":                {"command", "pr_out_"},
	"prhelper_store_transactions_total":      {},
	"prhelper_store_commit_duration_seconds": {},
	"prhelper_store_commit_batch_size":       {},
	"prhelper_request_duration_seconds":      {"backend", "emulate"},
}

// processCPU is the standard process collector's CPU time (user and
// system seconds), on the members' pages as on the helper's.
const processCPU = "process_cpu_seconds_total"

// memberFams are an etcd member's: its WAL's fdatasyncs, bbolt's commits
// (which hold the backend's write lock that applying entries needs), the
// round trips to its peers and its CPU time.
var memberFams = map[string]scrapeFilter{
	processCPU:                                  {},
	"etcd_disk_wal_fsync_duration_seconds":      {},
	"etcd_disk_backend_commit_duration_seconds": {},
	"etcd_network_peer_round_trip_time_seconds": {},
}

// scrape reads url's /metrics (url: http://HOST:PORT, or unix:PATH for a
// helper's --metrics=unix:PATH) and keeps fams.
func scrape(url string, fams map[string]scrapeFilter) (sample, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	get := strings.TrimSuffix(url, "/") + "/metrics"
	if sock, ok := strings.CutPrefix(url, "unix:"); ok {
		c.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}
		get = "http://helper/metrics"
	}
	resp, err := c.Get(get)
	if err != nil {
		return sample{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return sample{}, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	s, err := parseSample(resp.Body, fams)
	if err != nil {
		return s, fmt.Errorf("scrape %s: %w", url, err)
	}
	return s, nil
}

// parseSample reads a Prometheus text page.
func parseSample(r io.Reader, fams map[string]scrapeFilter) (sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	all, err := p.TextToMetricFamilies(r)
	if err != nil {
		return sample{}, fmt.Errorf("parse metrics: %w", err)
	}
	s := sample{counters: map[string]float64{}, hists: map[string]hist{}}
	for name, f := range fams {
		for _, m := range all[name].GetMetric() {
			if !f.match(m) {
				continue
			}
			switch {
			case m.Counter != nil:
				s.counters[name] += m.Counter.GetValue()
			case m.Histogram != nil:
				h := s.hists[name]
				if h.buckets == nil {
					h.buckets = map[float64]float64{}
				}
				inf := false
				for _, b := range m.Histogram.GetBucket() {
					h.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
					inf = inf || math.IsInf(b.GetUpperBound(), 1)
				}
				if !inf {
					h.buckets[math.Inf(1)] += float64(m.Histogram.GetSampleCount())
				}
				h.count += float64(m.Histogram.GetSampleCount())
				h.sum += m.Histogram.GetSampleSum()
				s.hists[name] = h
			}
		}
	}
	return s, nil
}

func (f scrapeFilter) match(m *dto.Metric) bool {
	if f.l == "" {
		return true
	}
	for _, l := range m.GetLabel() {
		if l.GetName() == f.l {
			return strings.HasPrefix(l.GetValue(), f.prefix)
		}
	}
	return false
}

// add is s plus sign times b (sign 1: two rounds' differences; -1: s less
// an earlier sample b of the same page).
func (s sample) add(b sample, sign float64) sample {
	d := sample{counters: map[string]float64{}, hists: map[string]hist{}}
	for k, v := range s.counters {
		d.counters[k] = v
	}
	for k, v := range b.counters {
		d.counters[k] += sign * v
	}
	for _, src := range []struct {
		h    map[string]hist
		sign float64
	}{{s.hists, 1}, {b.hists, sign}} {
		for k, h := range src.h {
			e := d.hists[k]
			if e.buckets == nil {
				e.buckets = map[float64]float64{}
			}
			e.count += src.sign * h.count
			e.sum += src.sign * h.sum
			for le, v := range h.buckets {
				e.buckets[le] += src.sign * v
			}
			d.hists[k] = e
		}
	}
	return d
}

// quantile is the upper bound (milliseconds) of the bucket holding quantile
// q: a bound, as fine as the histogram's buckets; 0 for an empty histogram.
func (h hist) quantile(q float64) float64 {
	if h.count <= 0 {
		return 0
	}
	les := make([]float64, 0, len(h.buckets))
	for le := range h.buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	for _, le := range les {
		if h.buckets[le] >= q*h.count {
			return le * 1000
		}
	}
	return math.Inf(1)
}

// over is how many observations exceeded bound seconds (bound must be one of
// the buckets' bounds; -1 when it is not).
func (h hist) over(bound float64) float64 {
	v, ok := h.buckets[bound]
	if !ok {
		return -1
	}
	return h.count - v
}

func (h hist) String() string {
	return fmt.Sprintf("n=%.0f p50<=%gms p99<=%gms max<=%gms", h.count, h.quantile(0.5), h.quantile(0.99), h.quantile(1))
}

// watch is what one path's rows read besides their latencies: the helper's
// page and its etcd members' pages.
type watch struct {
	helper  string   // -metrics URL ("" none)
	members []string // -members URLs
}

// reading is every page of a watch at one moment, or a difference of two.
type reading struct {
	helper  sample
	members []sample
}

// read reads every page of w.
func (w watch) read() (reading, error) {
	var r reading
	if w.helper != "" {
		s, err := scrape(w.helper, helperFams)
		if err != nil {
			return r, err
		}
		r.helper = s
	}
	for _, m := range w.members {
		s, err := scrape(m, memberFams)
		if err != nil {
			return r, err
		}
		r.members = append(r.members, s)
	}
	return r, nil
}

// add is r plus sign times b, page by page.
func (r reading) add(b reading, sign float64) reading {
	d := reading{helper: r.helper.add(b.helper, sign)}
	for i := range max(len(r.members), len(b.members)) {
		var x, y sample
		if i < len(r.members) {
			x = r.members[i]
		}
		if i < len(b.members) {
			y = b.members[i]
		}
		d.members = append(d.members, x.add(y, sign))
	}
	return d
}

// report prints where a row's time went: commands per store transaction and
// per store update (one logical unit's batch), the store commits' and the
// helper's request times, and each member's disk and peer histograms.
func (r reading) report(w io.Writer, name string) {
	h := r.helper
	if len(h.counters)+len(h.hists) > 0 {
		cmds, txns := h.counters["prhelper_requests_total"], h.counters["prhelper_store_transactions_total"]
		commits := h.hists["prhelper_store_commit_duration_seconds"]
		per := func(a, b float64) string {
			if b <= 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f", a/b)
		}
		fmt.Fprintf(w, "  %s helper: %.0f PR OUT in %.0f store transactions (%s cmds/txn), %.0f LU batches (%s cmds/batch); store commit %v, >25ms %.0f; request %v\n",
			name, cmds, txns, per(cmds, txns), h.hists["prhelper_store_commit_batch_size"].sum, per(cmds, h.hists["prhelper_store_commit_batch_size"].sum),
			commits, commits.over(0.025), h.hists["prhelper_request_duration_seconds"])
	}
	for i, m := range r.members {
		fmt.Fprintf(w, "  %s member %d: cpu %.2fs; wal fsync %v; backend commit %v; peer rtt %v\n", name, i, m.counters[processCPU],
			m.hists["etcd_disk_wal_fsync_duration_seconds"], m.hists["etcd_disk_backend_commit_duration_seconds"],
			m.hists["etcd_network_peer_round_trip_time_seconds"])
	}
}
