// Package promscrape reads Prometheus text pages (a helper's --metrics, an
// etcd member's /metrics) for the benchmarks: counters summed and histograms
// summed by bucket bound, differences of two readings, and a histogram's
// quantile as the bound of its bucket (docs/performance.md §5.6).
package promscrape

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

// Sample is what one page said: each wanted family's counters summed, and
// its histograms summed by bucket bound (several series of one family, e.g.
// one peer RTT series per peer, add up).
type Sample struct {
	Counters map[string]float64
	Hists    map[string]Hist
}

// Hist is a cumulative histogram: the count at or below each upper bound
// (seconds), the total count and the sum of the observations.
type Hist struct {
	Buckets    map[float64]float64
	Count, Sum float64
}

// Filter says which series of a family count: all (Label == ""), or
// those whose label Label starts with Prefix.
type Filter struct{ Label, Prefix string }

// Scrape reads url's /metrics (url: http://HOST:PORT, or unix:PATH for a
// helper's --metrics=unix:PATH) and keeps fams.
func Scrape(url string, fams map[string]Filter) (Sample, error) {
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
		return Sample{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Sample{}, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	s, err := Parse(resp.Body, fams)
	if err != nil {
		return s, fmt.Errorf("scrape %s: %w", url, err)
	}
	return s, nil
}

// Parse reads a Prometheus text page.
func Parse(r io.Reader, fams map[string]Filter) (Sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	all, err := p.TextToMetricFamilies(r)
	if err != nil {
		return Sample{}, fmt.Errorf("parse metrics: %w", err)
	}
	s := Sample{Counters: map[string]float64{}, Hists: map[string]Hist{}}
	for name, f := range fams {
		for _, m := range all[name].GetMetric() {
			if !f.match(m) {
				continue
			}
			switch {
			case m.Counter != nil:
				s.Counters[name] += m.Counter.GetValue()
			case m.Histogram != nil:
				h := s.Hists[name]
				if h.Buckets == nil {
					h.Buckets = map[float64]float64{}
				}
				inf := false
				for _, b := range m.Histogram.GetBucket() {
					h.Buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
					inf = inf || math.IsInf(b.GetUpperBound(), 1)
				}
				if !inf {
					h.Buckets[math.Inf(1)] += float64(m.Histogram.GetSampleCount())
				}
				h.Count += float64(m.Histogram.GetSampleCount())
				h.Sum += m.Histogram.GetSampleSum()
				s.Hists[name] = h
			}
		}
	}
	return s, nil
}

func (f Filter) match(m *dto.Metric) bool {
	if f.Label == "" {
		return true
	}
	for _, l := range m.GetLabel() {
		if l.GetName() == f.Label {
			return strings.HasPrefix(l.GetValue(), f.Prefix)
		}
	}
	return false
}

// Add is s plus sign times b (sign 1: two rounds' differences; -1: s less
// an earlier Sample b of the same page).
func (s Sample) Add(b Sample, sign float64) Sample {
	d := Sample{Counters: map[string]float64{}, Hists: map[string]Hist{}}
	for k, v := range s.Counters {
		d.Counters[k] = v
	}
	for k, v := range b.Counters {
		d.Counters[k] += sign * v
	}
	for _, src := range []struct {
		h    map[string]Hist
		sign float64
	}{{s.Hists, 1}, {b.Hists, sign}} {
		for k, h := range src.h {
			e := d.Hists[k]
			if e.Buckets == nil {
				e.Buckets = map[float64]float64{}
			}
			e.Count += src.sign * h.Count
			e.Sum += src.sign * h.Sum
			for le, v := range h.Buckets {
				e.Buckets[le] += src.sign * v
			}
			d.Hists[k] = e
		}
	}
	return d
}

// Quantile is the upper bound (milliseconds) of the bucket holding quantile
// q: a bound, as fine as the histogram's buckets; 0 for an empty histogram.
func (h Hist) Quantile(q float64) float64 {
	if h.Count <= 0 {
		return 0
	}
	les := make([]float64, 0, len(h.Buckets))
	for le := range h.Buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	for _, le := range les {
		if h.Buckets[le] >= q*h.Count {
			return le * 1000
		}
	}
	return math.Inf(1)
}

// Over is how many observations exceeded bound seconds (bound must be one of
// the buckets' bounds; -1 when it is not).
func (h Hist) Over(bound float64) float64 {
	v, ok := h.Buckets[bound]
	if !ok {
		return -1
	}
	return h.Count - v
}

func (h Hist) String() string {
	return fmt.Sprintf("n=%.0f p50<=%gms p99<=%gms max<=%gms", h.Count, h.Quantile(0.5), h.Quantile(0.99), h.Quantile(1))
}
