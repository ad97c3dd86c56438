package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/scsi"
)

// Metrics holds the daemon's collectors and the registry they are in. Its
// methods are safe for concurrent use; a nil *Metrics records nothing.
type Metrics struct {
	reg *prometheus.Registry

	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	connsOpen     prometheus.Gauge
	connsTotal    prometheus.Counter
	refused       *prometheus.CounterVec
	commitLatency *prometheus.HistogramVec
	commitBatch   *prometheus.HistogramVec
	fences        *prometheus.CounterVec
	fenceWaits    *prometheus.CounterVec
	fenceWait     prometheus.Histogram

	children sync.Map // requestKey -> child: read-mostly, lock-free loads

	cmdLabels    [2][32]string
	statusLabels [256]string
}

type requestKey struct {
	cmd     uint8 // 0-31 PR IN, 32-63 PR OUT, 64 other
	status  byte
	backend string
}

type child struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// Request latency buckets: from a PR IN answered from memory (tens of
// microseconds) to an SG_IO that ran into its timeout (30 s).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// New makes the collectors in a new registry, with the Go runtime's and the
// process's standard collectors and a build-info gauge carrying version.
func New(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prhelper_requests_total",
		Help: "PR commands answered, by command, backend that served them, and SCSI status."}, []string{"command", "backend", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "prhelper_request_duration_seconds",
		Help: "Time from a request read to its answer, by backend.", Buckets: latencyBuckets}, []string{"backend"})
	m.connsOpen = prometheus.NewGauge(prometheus.GaugeOpts{Name: "prhelper_connections_open", Help: "Client connections open now."})
	m.connsTotal = prometheus.NewCounter(prometheus.CounterOpts{Name: "prhelper_connections_total", Help: "Client connections accepted."})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prhelper_peers_refused_total",
		Help: "Peers refused: identity (the listener's policy could not name the peer; emulation refuses its commands) or protocol (connection closed for a protocol violation)."},
		[]string{"reason"})
	m.commitLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "prhelper_store_commit_duration_seconds",
		Help: "Time of one durable state-store commit, from its start to the fsync or the etcd quorum.", Buckets: latencyBuckets}, []string{"store"})
	m.commitBatch = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "prhelper_store_commit_batch_size",
		Help: "Commands answered by one state-store commit (group commit).", Buckets: prometheus.ExponentialBuckets(1, 2, 9)}, []string{"store"})
	m.fences = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prhelper_fences_total",
		Help: "Fences this helper carried out on evicted VMs, by result (fenced, failed)."}, []string{"result"})
	m.fenceWaits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prhelper_fence_waits_total",
		Help: "Evicting commands that waited for their fences, by result (confirmed, not_confirmed)."}, []string{"result"})
	m.fenceWait = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "prhelper_fence_wait_seconds",
		Help: "How long an evicting command waited for its fences.", Buckets: latencyBuckets})
	m.reg.MustRegister(m.requests, m.latency, m.connsOpen, m.connsTotal, m.refused, m.commitLatency, m.commitBatch,
		m.fences, m.fenceWaits, m.fenceWait,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "prhelper_build_info", Help: "Always 1; the version is a label.",
			ConstLabels: prometheus.Labels{"version": version}}, func() float64 { return 1 }))
	// Series of known label values exist from the start, at 0, so that a
	// rate() over them has a beginning.
	for _, r := range []string{"identity", "protocol"} {
		m.refused.WithLabelValues(r)
	}
	for _, r := range []string{"fenced", "failed"} {
		m.fences.WithLabelValues(r)
	}
	for _, r := range []string{"confirmed", "not_confirmed"} {
		m.fenceWaits.WithLabelValues(r)
	}
	for i, op := range []byte{scsi.OpPersistentReserveIn, scsi.OpPersistentReserveOut} {
		for sa := range 32 {
			cdb := []byte{op, byte(sa)}
			m.cmdLabels[i][sa] = label(scsi.CommandName(cdb))
		}
	}
	for s := range 256 {
		m.statusLabels[s] = label(scsi.StatusName(byte(s)))
	}
	return m
}

// label makes a name a Prometheus label value: lower case, words joined by _.
func label(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), "_"))
}

// Registry is the registry the collectors are in (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Request counts one answered command: cdb's command, the backend that served
// it, the SCSI status, and its time.
func (m *Metrics) Request(cdb []byte, backend string, status byte, d time.Duration) {
	if m == nil {
		return
	}
	k := requestKey{cmd: 64, status: status, backend: backend}
	if len(cdb) >= 2 {
		switch cdb[0] {
		case scsi.OpPersistentReserveIn:
			k.cmd = cdb[1] & 0x1f
		case scsi.OpPersistentReserveOut:
			k.cmd = 32 + cdb[1]&0x1f
		}
	}
	var c child
	if v, ok := m.children.Load(k); ok {
		c = v.(child)
	} else {
		cmd := "other"
		if k.cmd < 64 {
			cmd = m.cmdLabels[k.cmd/32][k.cmd%32]
		}
		c = child{count: m.requests.WithLabelValues(cmd, backend, m.statusLabels[status]), latency: m.latency.WithLabelValues(backend)}
		m.children.Store(k, c)
	}
	c.count.Inc()
	c.latency.Observe(d.Seconds())
}

// ConnOpened and ConnClosed track the open client connections.
func (m *Metrics) ConnOpened() {
	if m != nil {
		m.connsOpen.Inc()
		m.connsTotal.Inc()
	}
}

func (m *Metrics) ConnClosed() {
	if m != nil {
		m.connsOpen.Dec()
	}
}

// PeerRefused counts a refused peer (reason: identity or protocol).
func (m *Metrics) PeerRefused(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

// StoreCommit returns the commit hook of a state store named kind (sqlite,
// etcd); nil when m is nil.
func (m *Metrics) StoreCommit(kind string) func(store.Commit) {
	if m == nil {
		return nil
	}
	lat, batch := m.commitLatency.WithLabelValues(kind), m.commitBatch.WithLabelValues(kind)
	return func(c store.Commit) {
		lat.Observe(c.Duration.Seconds())
		batch.Observe(float64(c.Updates))
	}
}

// StoreCounter exports a counter a store keeps itself (its Stats), read at
// scrape time: prhelper_store_<name>_total{store=kind}.
func (m *Metrics) StoreCounter(kind, name, help string, read func() uint64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "prhelper_store_" + name + "_total", Help: help,
		ConstLabels: prometheus.Labels{"store": kind}}, func() float64 { return float64(read()) }))
}

// Fenced counts a fence this helper carried out (err nil: the VM is fenced).
func (m *Metrics) Fenced(err error, _ time.Duration) {
	if m == nil {
		return
	}
	r := "fenced"
	if err != nil {
		r = "failed"
	}
	m.fences.WithLabelValues(r).Inc()
}

// FenceWaited counts an evicting command's wait for its fences.
func (m *Metrics) FenceWaited(err error, took time.Duration) {
	if m == nil {
		return
	}
	r := "confirmed"
	if err != nil {
		r = "not_confirmed"
	}
	m.fenceWaits.WithLabelValues(r).Inc()
	m.fenceWait.Observe(took.Seconds())
}

// WatchPaths exports the multipath backend's path states, read at scrape
// time: prhelper_multipath_paths{state} is the number of paths of the maps
// the backend served in each state (no per-map label).
func (m *Metrics) WatchPaths(states func() map[string]int) {
	if m == nil || states == nil {
		return
	}
	m.reg.MustRegister(&stateCollector{desc: prometheus.NewDesc("prhelper_multipath_paths",
		"Paths of the dm-multipath maps the mpath backend served, by state as it last saw them (usable, dm_failed, scsi_<state>, not_scsi).",
		[]string{"state"}, nil), read: states})
}

// WatchEtcd exports the etcd client's connection state, read at scrape time:
// prhelper_etcd_session_state{state} is 1 for the current state (idle,
// connecting, ready, transient_failure, shutdown) and 0 for the others.
func (m *Metrics) WatchEtcd(state func() string) {
	if m == nil || state == nil {
		return
	}
	all := []string{"idle", "connecting", "ready", "transient_failure", "shutdown"}
	m.reg.MustRegister(&stateCollector{desc: prometheus.NewDesc("prhelper_etcd_session_state",
		"State of the helper's connection to etcd: 1 for the current state.", []string{"state"}, nil),
		read: func() map[string]int {
			cur := label(strings.ReplaceAll(state(), "_", " "))
			out := map[string]int{}
			for _, s := range all {
				out[s] = 0
			}
			out[cur] = 1
			return out
		}})
}

// stateCollector exports a map read at scrape time as one gauge per key.
type stateCollector struct {
	desc *prometheus.Desc
	read func() map[string]int
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for k, v := range c.read() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), k)
	}
}

// Handler serves the registry in Prometheus' text format (and OpenMetrics
// when asked).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Serve answers /metrics on l until ctx ends, then closes it.
func (m *Metrics) Serve(ctx context.Context, l net.Listener, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "prhelper: metrics at /metrics")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err := srv.Serve(l)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
