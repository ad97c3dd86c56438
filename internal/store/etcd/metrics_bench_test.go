package etcd_test

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// histogram is one Prometheus histogram of an etcd member's /metrics: the
// cumulative count of each bucket by its upper bound (seconds), and the total.
type histogram struct {
	buckets map[float64]float64
	count   float64
}

// memberHistograms reads the named histograms from the /metrics page of the
// member at url (its client URL), for BenchmarkPROut's account of where the
// time of a commit goes: etcd_disk_wal_fsync_duration_seconds (the WAL's
// fdatasync of each raft entry batch), etcd_disk_backend_commit_duration_seconds
// (bbolt's commit), etcd_network_peer_round_trip_time_seconds.
func memberHistograms(url string, names ...string) (map[string]histogram, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(strings.TrimSuffix(url, "/") + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]histogram{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		for _, n := range names {
			h := out[n]
			if h.buckets == nil {
				h.buckets = map[float64]float64{}
			}
			switch {
			case strings.HasPrefix(line, n+"_bucket{"):
				i := strings.Index(line, `le="`)
				j := strings.Index(line[i+4:], `"`)
				if i < 0 || j < 0 {
					continue
				}
				le, err1 := strconv.ParseFloat(line[i+4:i+4+j], 64)
				if line[i+4:i+4+j] == "+Inf" {
					le, err1 = math.Inf(1), nil
				}
				v, err2 := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
				if err1 == nil && err2 == nil {
					h.buckets[le] += v // peer RTT has one series per peer: summed
				}
			case strings.HasPrefix(line, n+"_count"):
				if v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64); err == nil {
					h.count += v
				}
			}
			out[n] = h
		}
	}
	return out, sc.Err()
}

// since is h minus an earlier reading of the same histogram.
func (h histogram) since(before histogram) histogram {
	d := histogram{buckets: map[float64]float64{}, count: h.count - before.count}
	for le, v := range h.buckets {
		d.buckets[le] = v - before.buckets[le]
	}
	return d
}

// quantile is the upper bound of the bucket holding quantile q (0 < q < 1),
// in milliseconds: a bound, as precise as etcd's buckets (powers of two from
// 1 ms for the disk histograms).
func (h histogram) quantile(q float64) float64 {
	if h.count <= 0 {
		return 0
	}
	var les []float64
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

func (h histogram) String() string {
	return fmt.Sprintf("n=%.0f p50<=%gms p99<=%gms", h.count, h.quantile(0.5), h.quantile(0.99))
}
