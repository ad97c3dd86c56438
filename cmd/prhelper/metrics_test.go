package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/prhelper/prhelper/internal/store/etcd/etcdtest"
	"github.com/prhelper/prhelper/scsi"
)

// scrape reads the helper's metrics from its Unix socket.
func scrape(t *testing.T, sock string) map[string]*dto.MetricFamily {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	resp, err := c.Get("http://prhelper/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return fams
}

// value is the value of the series of family name whose labels include want
// (counter, gauge, or a histogram's count); -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.Metric {
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func histogramSum(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	for _, m := range fams[name].GetMetric() {
		match := true
		for k, v := range want {
			ok := false
			for _, l := range m.Label {
				ok = ok || (l.GetName() == k && l.GetValue() == v)
			}
			match = match && ok
		}
		if match && m.Histogram != nil {
			return m.Histogram.GetSampleSum()
		}
	}
	return -1
}

// TestMetricsScrape: real requests through the real daemon socket on a real
// SQLite file, then a scrape that counts exactly those requests, the
// connections, the refused peers and the store's commits, with no label that
// names the LU.
func TestMetricsScrape(t *testing.T) {
	dir := t.TempDir()
	a, b, peer, msock := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock"), filepath.Join(dir, "peer.sock"), filepath.Join(dir, "metrics.sock")
	p := startHelper(t, "--db="+filepath.Join(dir, "pr.db"), "--metrics=unix:"+msock,
		"--listen="+a+",initiator=name:iqn.2026-01.test:vm-a",
		"--listen="+b+",initiator=name:iqn.2026-01.test:vm-b,port=2",
		"--listen="+peer+",initiator=peer")
	for _, s := range []string{a, b, peer, msock} {
		waitSocket(t, s)
	}
	disk := diskImage(t)
	steps := []struct {
		sock   string
		cdb    [16]byte
		param  []byte
		status byte
	}{
		{a, scsi.PROutCDB(scsi.SARegister, 0, 0, 24), prOutParam(0, 0xa), scsi.StatusGood},
		{b, scsi.PROutCDB(scsi.SARegister, 0, 0, 24), prOutParam(0, 0xb), scsi.StatusGood},
		{a, scsi.PROutCDB(scsi.SAReserve, 0, scsi.TypeWriteExclusive, 24), prOutParam(0xa, 0), scsi.StatusGood},
		{b, scsi.PROutCDB(scsi.SAReserve, 0, scsi.TypeWriteExclusive, 24), prOutParam(0xb, 0), scsi.StatusReservationConflict},
		{b, scsi.PRInCDB(scsi.SAReadKeys, 8192), nil, scsi.StatusGood},
		{a, scsi.PRInCDB(scsi.SAReadKeys, 8192), nil, scsi.StatusGood},
		{a, scsi.PRInCDB(scsi.SAReadReservation, 8192), nil, scsi.StatusGood},
	}
	for i, s := range steps {
		if st, sn, _ := do(t, s.sock, disk, s.cdb, s.param); st != s.status {
			t.Fatalf("step %d: %s %v", i, scsi.StatusName(st), sn)
		}
	}
	// A peer the identity policy cannot name (this test is no QEMU), and one
	// that breaks the protocol in its handshake.
	for _, s := range []string{peer, a} {
		c, err := net.Dial("unix", s)
		if err != nil {
			t.Fatal(err)
		}
		var feat [4]byte
		if _, err := c.Read(feat[:]); err != nil {
			t.Fatal(err)
		}
		if s == a {
			c.Write([]byte{1, 0, 0, 0})
		} else {
			c.Write(feat[:])
		}
		c.Close()
	}

	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams = scrape(t, msock)
		// The server counts a connection closed once it saw the EOF.
		if value(fams, "prhelper_connections_open", nil) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"prhelper_requests_total", map[string]string{"command": "pr_out_register", "backend": "emulate", "status": "good"}, 2},
		{"prhelper_requests_total", map[string]string{"command": "pr_out_reserve", "backend": "emulate", "status": "good"}, 1},
		{"prhelper_requests_total", map[string]string{"command": "pr_out_reserve", "backend": "emulate", "status": "reservation_conflict"}, 1},
		{"prhelper_requests_total", map[string]string{"command": "pr_in_read_keys", "backend": "emulate", "status": "good"}, 2},
		{"prhelper_requests_total", map[string]string{"command": "pr_in_read_reservation", "backend": "emulate", "status": "good"}, 1},
		{"prhelper_request_duration_seconds", map[string]string{"backend": "emulate"}, 7},
		{"prhelper_connections_total", nil, 9},
		{"prhelper_connections_open", nil, 0},
		{"prhelper_peers_refused_total", map[string]string{"reason": "identity"}, 1},
		{"prhelper_peers_refused_total", map[string]string{"reason": "protocol"}, 1},
		{"prhelper_fences_total", map[string]string{"result": "fenced"}, 0},
		{"prhelper_store_busy_retries_total", map[string]string{"store": "sqlite"}, 0},
	} {
		if got := value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Every emulated PR OUT is one store update; a PR IN that reports no
	// unit attention is answered from a read (emulate: no write lock): the
	// commits' batch sizes add up to the 4 PR OUT, in 1 to 4 commits.
	if sum, n := histogramSum(fams, "prhelper_store_commit_batch_size", map[string]string{"store": "sqlite"}),
		value(fams, "prhelper_store_commit_duration_seconds", map[string]string{"store": "sqlite"}); sum != 4 || n < 1 || n > 4 {
		t.Errorf("store commits: %v updates in %v commits, want 4 in 1..4", sum, n)
	}
	// SQLite commits one transaction per commit the histogram saw.
	if tx, n := value(fams, "prhelper_store_transactions_total", map[string]string{"store": "sqlite"}),
		value(fams, "prhelper_store_commit_duration_seconds", map[string]string{"store": "sqlite"}); tx != n {
		t.Errorf("prhelper_store_transactions_total{store=sqlite} = %v, want the %v commits", tx, n)
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "prhelper_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s has no prhelper_ prefix", name)
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if strings.Contains(l.GetValue(), "file:") || strings.Contains(l.GetValue(), "iqn.") {
					t.Errorf("%s has a per-LU or per-initiator label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d: %s", code, p.stderr)
	}
	if _, err := os.Stat(msock); !os.IsNotExist(err) {
		t.Errorf("metrics socket left behind: %v", err)
	}
}

// TestMetricsEtcd: with the etcd store the commits are counted as etcd's,
// and the connection to etcd shows as ready.
func TestMetricsEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	dir := t.TempDir()
	a, msock := filepath.Join(dir, "a.sock"), filepath.Join(dir, "metrics.sock")
	p := startHelper(t, "--etcd-endpoints="+strings.Join(c.Endpoints(), ","), "--metrics=unix:"+msock,
		"--listen="+a+",initiator=name:iqn.2026-01.test:vm-a")
	waitSocket(t, a)
	waitSocket(t, msock)
	disk := diskImage(t)
	for i := range 3 {
		if st, sn, _ := do(t, a, disk, scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24), prOutParam(0, uint64(0xa0+i))); st != scsi.StatusGood {
			t.Fatalf("register %d: %s %v", i, scsi.StatusName(st), sn)
		}
	}
	// A request is counted after its reply is written, so the third may
	// not be counted yet when the client has read its reply: scrape until
	// it is (or 10 s have passed, and the check below fails).
	regs := map[string]string{"command": "pr_out_register_and_ignore_existing_key", "backend": "emulate", "status": "good"}
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		fams = scrape(t, msock)
		if value(fams, "prhelper_requests_total", regs) == 3 || time.Now().After(deadline) {
			break
		}
	}
	if got := value(fams, "prhelper_requests_total", regs); got != 3 {
		t.Errorf("requests = %v, want 3", got)
	}
	if sum := histogramSum(fams, "prhelper_store_commit_batch_size", map[string]string{"store": "etcd"}); sum != 3 {
		t.Errorf("etcd commit batch sizes add up to %v, want 3", sum)
	}
	if got := value(fams, "prhelper_etcd_session_state", map[string]string{"state": "ready"}); got != 1 {
		t.Errorf("etcd session state ready = %v, want 1 (%v)", got, fams["prhelper_etcd_session_state"])
	}
	if got := value(fams, "prhelper_store_conflicts_total", map[string]string{"store": "etcd"}); got != 0 {
		t.Errorf("etcd conflicts = %v, want 0", got)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d: %s", code, p.stderr)
	}
}

// TestMetricsOptions: where metrics go is checked at start.
func TestMetricsOptions(t *testing.T) {
	for _, bad := range []string{"9851", "unix:relative.sock", "127.0.0.1:notaport", "127.0.0.1:0x"} {
		o, err := parseOptions("prhelper", []string{"--metrics=" + bad})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := loadSettings(o); err == nil || !strings.Contains(err.Error(), "--metrics") {
			t.Errorf("--metrics=%s: %v", bad, err)
		}
	}
	conf := filepath.Join(t.TempDir(), "prhelper.conf")
	os.WriteFile(conf, []byte("metrics 127.0.0.1:9851\n"), 0o600)
	o, _ := parseOptions("prhelper", []string{"--config=" + conf})
	if s, err := loadSettings(o); err != nil || s.metrics != "127.0.0.1:9851" {
		t.Fatalf("metrics from the file: %+v %v", s, err)
	}
	o, _ = parseOptions("prhelper", []string{"--config=" + conf, "--metrics=unix:/run/prhelper/metrics.sock"})
	if s, err := loadSettings(o); err != nil || s.metrics != "unix:/run/prhelper/metrics.sock" {
		t.Fatalf("the flag over the file: %+v %v", s, err)
	}
}
