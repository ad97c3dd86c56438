package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/prhelper/prhelper/internal/fence/etcdlease"
	"github.com/prhelper/prhelper/internal/store/etcd/etcdtest"
)

// fenceHosts is two helper processes as two hosts (--fence-host A and B) on
// one etcd cluster, --initiator=peer, --fence=kill. Host B reaches etcd
// through TCP proxies the test can cut.
type fenceHosts struct {
	c        *etcdtest.Cluster
	cli      *clientv3.Client
	prefix   string
	sockA    string
	sockB    string
	a, b     *proc
	proxiesB []*etcdtest.Proxy
}

// fenceLeaseTTL is the helpers' --fence-lease-ttl in these tests: 5s, or
// PRHELPER_FENCE_TEST_TTL (e.g. 10s, the default, to measure the self-fence
// delay the defaults give). Not shorter: a helper that sees no renewal
// confirmed for 3/4 of its TTL fences its VMs and refuses new connections
// until it has a new lease, as it must. With 3s (2.25 s without a confirmed
// renewal) TestFenceAcrossHosts failed twice under -race at load 13, a fake
// QEMU's connection refused ("read helper features: EOF"); the helpers' logs
// were not kept, so a self-fence is the likely cause, not a proven one.
func fenceLeaseTTL(t *testing.T) time.Duration {
	if v := os.Getenv("PRHELPER_FENCE_TEST_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("PRHELPER_FENCE_TEST_TTL: %v", err)
		}
		return d
	}
	return 5 * time.Second
}

// startFenceHosts starts the cluster and the two helpers. With shared, every
// disk image is one LU (id=); without, each image is its own LU.
func startFenceHosts(t *testing.T, shared bool) *fenceHosts {
	t.Helper()
	c := etcdtest.Start(t, 3)
	dir := t.TempDir()
	conf := filepath.Join(dir, "prhelper.conf")
	rule := "rule kind=file backend=emulate\n"
	if shared {
		rule = "rule kind=file backend=emulate id=shared-lu-fence\n"
	}
	if err := os.WriteFile(conf, []byte("backend emulate\n"+rule), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &fenceHosts{c: c, cli: c.Client(t), prefix: "/prhelper-fence/", sockA: filepath.Join(dir, "a.sock"), sockB: filepath.Join(dir, "b.sock")}
	var viaProxy []string
	for _, u := range c.Endpoints() {
		p, err := etcdtest.NewProxy(strings.TrimPrefix(u, "http://"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		h.proxiesB = append(h.proxiesB, p)
		viaProxy = append(viaProxy, "http://"+p.Addr())
	}
	args := func(host, sock string, eps []string) []string {
		return []string{"--config=" + conf, "--initiator=peer", "--peer-exe=" + os.Args[0], "-k", sock, "--fence=kill", "-vv",
			"--etcd-endpoints=" + strings.Join(eps, ","), "--etcd-prefix=" + h.prefix,
			"--fence-host=" + host, "--fence-lease-ttl=" + fenceLeaseTTL(t).String()}
	}
	h.a = startHelper(t, args("hostA", h.sockA, c.Endpoints())...)
	h.b = startHelper(t, args("hostB", h.sockB, viaProxy)...)
	waitSocket(t, h.sockA)
	waitSocket(t, h.sockB)
	return h
}

// cutB cuts host B's helper off from etcd (every connection through its
// proxies dropped, new ones refused).
func (h *fenceHosts) cutB() {
	for _, p := range h.proxiesB {
		p.SetBlocked(func(string) bool { return true })
	}
}

// members lists the live helpers' IDs (their lease-bound announcements).
func (h *fenceHosts) members(t *testing.T) []string {
	t.Helper()
	resp, err := h.cli.Get(context.Background(), h.prefix+etcdlease.MembersDir, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, kv := range resp.Kvs {
		ids = append(ids, strings.TrimPrefix(string(kv.Key), h.prefix+etcdlease.MembersDir))
	}
	return ids
}

// leaseOf returns the lease of host's helper, from its member key.
func (h *fenceHosts) leaseOf(t *testing.T, host string) clientv3.LeaseID {
	t.Helper()
	for _, id := range h.members(t) {
		if hex, ok := strings.CutPrefix(id, host+"@"); ok {
			n, err := strconv.ParseInt(hex, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return clientv3.LeaseID(n)
		}
	}
	t.Fatalf("no member of %s in %v", host, h.members(t))
	return 0
}

func (h *fenceHosts) logs(t *testing.T) {
	t.Helper()
	for name, p := range map[string]*proc{"A": h.a, "B": h.b} {
		p.stop(t)
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			if strings.Contains(l, "PREEMPT") || strings.Contains(l, "fence") || strings.Contains(l, "lease") {
				t.Logf("host %s: %s", name, l)
			}
		}
	}
}

// TestFenceAcrossHosts: VM1 runs on host B, holds Write Exclusive Registrants
// Only and writes without pause; VM2 on host A preempts it. B's helper sees
// the record in etcd, kills VM1 and confirms; A's helper answers GOOD only
// after that: VM1 has exited when VM2 reads GOOD, and no block of VM1 reaches
// the disk after it.
//
// The same on one host (both VMs on host A's helper) for comparison; each
// round is a new disk image (a new LU), and the PREEMPT-to-GOOD times are
// printed (docs/fencing.md, "Figures").
func TestFenceAcrossHosts(t *testing.T) {
	h := startFenceHosts(t, false)
	const rounds = 5
	for _, where := range []struct {
		name       string
		sock1, vm2 string
	}{{"one host (A, A)", h.sockA, h.sockA}, {"across hosts (B, A)", h.sockB, h.sockA}} {
		var took []time.Duration
		for range rounds {
			disk := diskFile(t)
			v1, preempt := fenceScenario(t, where.sock1, where.vm2, disk)
			checkFencedBeforeGood(t, v1, preempt, disk)
			took = append(took, time.Duration(atoi64(preempt[3])-atoi64(preempt[2])))
		}
		slices.Sort(took)
		t.Logf("figure: PREEMPT sent -> GOOD received, kill, etcd, %s, %d rounds: min %v median %v max %v", where.name, rounds,
			took[0].Round(time.Millisecond), took[rounds/2].Round(time.Millisecond), took[rounds-1].Round(time.Millisecond))
	}
	h.logs(t)
	// Each helper fenced the VMs it served, and only those: A in the
	// one-host rounds, B in the cross-host ones.
	for name, p := range map[string]*proc{"A": h.a, "B": h.b} {
		if n := strings.Count(p.stderr.String(), "msg=fenced"); n != rounds {
			t.Errorf("host %s's helper fenced %d times, want %d:\n%s", name, n, rounds, p.stderr)
		}
	}
}

// TestFenceAcrossHostsPartition: host B's helper is cut off from etcd; VM2
// on host A then preempts VM1 (on B). B's helper cannot see the record; it
// kills VM1 itself when it has not renewed its lease for 3/4 of the TTL, and
// A answers GOOD only once etcd expired B's lease. Evidence, not time: VM1
// had exited while B's lease was still alive at etcd; the deletion of B's
// member key (the lease's expiry) has a lower etcd revision than the write
// that removed the fence record before the GOOD; VM1 has exited when VM2
// reads GOOD; no block of VM1 after it.
func TestFenceAcrossHostsPartition(t *testing.T) {
	h := startFenceHosts(t, true)
	ttlB := fenceLeaseTTL(t)
	disk := diskFile(t)
	ctx := context.Background()
	v1 := startVM(t, h.sockB, disk, uuid1, "vm1", "register:0:a1:0 reserve:a1:0:5", true)
	if st := v1.steps(t); st["reserve"][0] != "GOOD" {
		t.Fatalf("vm1: %v", st)
	}
	leaseB := h.leaseOf(t, "hostB")
	watch := h.cli.Watch(ctx, h.prefix+etcdlease.MembersDir, clientv3.WithPrefix(), clientv3.WithRev(0))
	expired := make(chan int64, 1) // revision of the deletion of B's member key
	go func() {
		for resp := range watch {
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete && strings.HasPrefix(string(ev.Kv.Key), h.prefix+etcdlease.MembersDir+"hostB@") {
					expired <- ev.Kv.ModRevision
					return
				}
			}
		}
	}()
	v2 := startVM(t, h.sockA, disk, uuid2, "vm2", "register:0:b2:0", false)
	v2.steps(t)
	v2.stdin.Close()

	cut := time.Now()
	h.cutB()
	// VM2 preempts while B is cut off: a new connection, so that its start is
	// after the cut.
	v3 := startVM(t, h.sockA, disk, uuid2, "vm2", "preempt:b2:a1:5", false)
	// VM1 is killed by its own helper; at that moment B's lease must still
	// be alive at etcd (the self-fence comes before the expiry).
	if !v1.killed(3 * ttlB) {
		t.Fatal("vm1 was not killed by host B's self-fence")
	}
	selfFenced := time.Since(cut)
	ttl, err := h.cli.TimeToLive(ctx, leaseB)
	if err != nil {
		t.Fatal(err)
	}
	alive := false
	for _, id := range h.members(t) {
		alive = alive || strings.HasPrefix(id, "hostB@")
	}
	if ttl.TTL < 0 || !alive {
		t.Errorf("host B's lease had expired (TTL %d, member key present %v) when vm1 was found killed: the self-fence came too late", ttl.TTL, alive)
	}
	t.Logf("self-fence: vm1 killed %v after B was cut off; B's lease then still alive at etcd (TTL %ds, whole seconds)", selfFenced.Round(time.Millisecond), ttl.TTL)

	preempt := v3.steps(t)["preempt"]
	checkFencedBeforeGood(t, v1, preempt, disk)
	var delRev int64
	select {
	case delRev = <-expired:
	default:
		t.Fatal("vm2 got GOOD but host B's lease has not expired at etcd")
	}
	lu, err := h.cli.Get(ctx, h.prefix+"state/lu/", clientv3.WithPrefix())
	if err != nil || len(lu.Kvs) != 1 {
		t.Fatalf("LU state: %v %v", err, lu)
	}
	if lu.Kvs[0].ModRevision <= delRev {
		t.Errorf("the fence record was removed at revision %d, not after B's lease expired (revision %d)", lu.Kvs[0].ModRevision, delRev)
	}
	sent, got := atoi64(preempt[2]), atoi64(preempt[3])
	t.Logf("partition: PREEMPT sent %v after the cut, GOOD %v after it was sent (lease TTL %v); expiry at revision %d, record removed at %d",
		time.Unix(0, sent).Sub(cut).Round(time.Millisecond), time.Duration(got-sent).Round(time.Millisecond), ttlB, delRev, lu.Kvs[0].ModRevision)
	h.logs(t)
	if !strings.Contains(h.b.stderr.String(), "self-fenced") {
		t.Errorf("host B's helper did not log its self-fence:\n%s", h.b.stderr)
	}
	// A logs that it counted B's expiry when it waited for B: when the
	// eviction was committed before the expiry. (Under load the PREEMPT can
	// come after B's lease expired: A then has no confirmation of B's to
	// wait for; the revisions above still order the expiry before the GOOD.)
	prev, err := h.cli.Get(ctx, string(lu.Kvs[0].Key), clientv3.WithRev(lu.Kvs[0].ModRevision-1))
	if err != nil || len(prev.Kvs) != 1 {
		t.Fatalf("LU state before the record's removal: %v %v", err, prev)
	}
	if evictRev := prev.Kvs[0].ModRevision; evictRev > delRev {
		t.Logf("the eviction was committed at revision %d, after B's lease expired (%d): A had nothing of B's to wait for", evictRev, delRev)
	} else if !strings.Contains(h.a.stderr.String(), "helper's lease expired") {
		t.Errorf("host A's helper did not log that it counted B's lease expiry:\n%s", h.a.stderr)
	}
}
