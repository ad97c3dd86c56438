package etcd_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/etcd"
	"github.com/prhelper/prhelper/internal/store/etcd/etcdtest"
	"github.com/prhelper/prhelper/internal/store/storetest"
)

// TestExactlyOnceLostReply loses the reply of a committed transaction (the proxy
// between the store and etcd discards it and then cuts the connection) while another
// helper changes the key: the store must learn from the transaction's record that its
// change is applied, not run fn again nor apply it twice, and answer what fn answered.
func TestExactlyOnceLostReply(t *testing.T) {
	c := etcdtest.Start(t, 3)
	p, err := etcdtest.NewProxy(strings.TrimPrefix(c.Members[0].ClientURL, "http://"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	prefix := freshPrefix()
	a := open(t, c, func(o *etcd.Options) {
		o.Endpoints = []string{"http://" + p.Addr()}
		o.Prefix = prefix
		o.AttemptTimeout = time.Second
	})
	b := open(t, c, func(o *etcd.Options) { o.Prefix = prefix })
	if err := a.Update(context.Background(), "lu", storetest.Increment); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	var answer string
	other := make(chan error, 1)
	err = a.Update(context.Background(), "lu", func(cur []byte) ([]byte, bool, error) {
		if runs.Add(1) == 1 {
			// The transaction this run produces goes out now; its reply is lost,
			// and while the store does not know, another host increments.
			p.LoseReplies(1500 * time.Millisecond)
			go func() {
				// Once this transaction is applied (seen through the other
				// host's own connection), the other host increments.
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
					if v, err := b.Get(context.Background(), "lu"); err == nil && string(v) == "2" {
						break
					}
				}
				other <- b.Update(context.Background(), "lu", storetest.Increment)
			}()
		}
		next, changed, err := storetest.Increment(cur)
		answer = string(next)
		return next, changed, err
	})
	if err != nil {
		t.Fatalf("Update through the lossy proxy: %v", err)
	}
	if err := <-other; err != nil {
		t.Fatalf("other host's update: %v", err)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("fn ran %d times, want 1 (the first commit was applied)", n)
	}
	if answer != "2" {
		t.Errorf("answer %q, want 2 (what the applied commit computed)", answer)
	}
	v, err := b.Get(context.Background(), "lu")
	if err != nil || string(v) != "3" {
		t.Fatalf("value %q (%v), want 3: one increment applied once by each host after the first", v, err)
	}
	st := a.Stats()
	t.Logf("proxy cut %d connections; stats %+v", p.Dropped(), st)
	if st.Resubmits == 0 || st.Recovered != 1 {
		t.Fatalf("stats %+v: want a resubmission that found the first commit's record", st)
	}
}

// TestQuorumLoss: with two of three members down, an Update fails within the
// documented bound with store.ErrBusy (a sense guests retry), nothing acknowledged is
// lost, and the store serves again by itself once the members are back.
func TestQuorumLoss(t *testing.T) {
	c := etcdtest.Start(t, 3)
	s := open(t, c, func(o *etcd.Options) { o.Timeout = 3 * time.Second; o.AttemptTimeout = time.Second })
	ctx := context.Background()
	for range 5 {
		if err := s.Update(ctx, "lu", storetest.Increment); err != nil {
			t.Fatal(err)
		}
	}
	c.Kill(c.Members[1])
	c.Kill(c.Members[2])
	start := time.Now()
	err := s.Update(ctx, "lu", storetest.Increment)
	took := time.Since(start)
	if !errors.Is(err, store.ErrBusy) {
		t.Fatalf("Update without quorum = %v, want ErrBusy", err)
	}
	// The store's bound is Timeout (3s); the test only tells a bounded
	// answer from a hang or the etcd client's own much longer retries, with
	// room for a loaded machine's late timers (it failed at 3.75s under load
	// 20 with a tighter limit): the figure is logged below.
	if took > 3*3*time.Second {
		t.Fatalf("Update without quorum took %v, bound is Timeout (3s)", took)
	}
	t.Logf("without quorum: %v after %v", err, took.Round(time.Millisecond))
	for _, m := range c.Members[1:] {
		if err := c.Restart(m); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = s.Update(ctx, "lu", storetest.Increment)
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("store did not come back with quorum: %v\n%s", err, c.LogTail())
	}
	v, err := s.Get(ctx, "lu")
	n, _ := storetest.ParseCounter(v)
	// 5 acknowledged before, 1 after; the failed one may or may not have applied.
	if err != nil || n < 6 || n > 7 {
		t.Fatalf("counter %q (%v), want 6 or 7", v, err)
	}
}

// TestLeaderKilled: SIGKILL of the leader while eight goroutines increment one key
// through two stores is invisible: every Update succeeds and the counter equals the
// number of Updates.
func TestLeaderKilled(t *testing.T) {
	c := etcdtest.Start(t, 3)
	prefix := freshPrefix()
	stores := []*etcd.Store{
		open(t, c, func(o *etcd.Options) { o.Prefix = prefix }),
		open(t, c, func(o *etcd.Options) { o.Prefix = prefix }),
	}
	ctx := context.Background()
	var ok atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := stores[i%2].Update(ctx, "lu", storetest.Increment); err != nil {
					errs <- err
					return
				}
				ok.Add(1)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	l, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := ok.Load()
	c.Kill(l)
	t.Logf("killed leader %s after %d updates", l.Name, before)
	time.Sleep(3 * time.Second)
	if err := c.Restart(l); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Update during leader failover: %v", err)
	}
	v, err := stores[0].Get(ctx, "lu")
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.FormatInt(ok.Load(), 10); string(v) != want {
		t.Fatalf("counter %s, want %s acknowledged increments", v, want)
	}
	if ok.Load() <= before {
		t.Fatalf("no update completed after the leader was killed (%d)", ok.Load())
	}
	t.Logf("%d increments, %d after the kill; stats %+v %+v", ok.Load(), ok.Load()-before, stores[0].Stats(), stores[1].Stats())
}

// TestTwoHostsManyKeys: two stores (two hosts) increment eight keys concurrently, so
// combined transactions fail for one key and must go again for the others: no
// increment lost or doubled.
func TestTwoHostsManyKeys(t *testing.T) {
	c := etcdtest.Start(t, 3)
	prefix := freshPrefix()
	stores := []*etcd.Store{
		open(t, c, func(o *etcd.Options) { o.Prefix = prefix }),
		open(t, c, func(o *etcd.Options) { o.Prefix = prefix }),
	}
	const keys, workers, per = 8, 32, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := map[string]int{}
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				k := "lu" + strconv.Itoa((w+i)%keys)
				if err := stores[w%2].Update(context.Background(), k, storetest.Increment); err != nil {
					t.Errorf("%s: %v", k, err)
					continue
				}
				mu.Lock()
				want[k]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for k, n := range want {
		v, err := stores[1].Get(context.Background(), k)
		if err != nil || string(v) != strconv.Itoa(n) {
			t.Errorf("%s = %q (%v), want %d", k, v, err, n)
		}
	}
	s0, s1 := stores[0].Stats(), stores[1].Stats()
	t.Logf("stats %+v %+v", s0, s1)
	if s0.Conflicts+s1.Conflicts == 0 {
		t.Errorf("the run did not exercise conflicts: %+v %+v", s0, s1)
	}
}

// TestPipelined: 64 goroutines incrementing one key through one store: the fns of the
// next batch run while a transaction is in flight, and no increment is lost or doubled.
// Batches of at most 8 keep requests queued behind every in-flight transaction (at
// most 16 of the 64 workers are in the committing and the speculated batch): with the
// default 256, a slow round trip gathered every worker into one batch and left none
// to pipeline (SpecUsed 0 in a run at load 17).
func TestPipelined(t *testing.T) {
	c := etcdtest.Start(t, 3)
	s := open(t, c, func(o *etcd.Options) { o.MaxBatch = 8 })
	const workers, per = 64, 20
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range per {
				if err := s.Update(context.Background(), "lu", storetest.Increment); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	v, err := s.Get(context.Background(), "lu")
	if err != nil || string(v) != strconv.Itoa(workers*per) {
		t.Fatalf("counter %q (%v), want %d", v, err, workers*per)
	}
	st := s.Stats()
	t.Logf("stats %+v", st)
	if st.SpecUsed == 0 {
		t.Fatalf("no batch was pipelined: %+v", st)
	}
}

// TestTLSClientCertificates: against members that require client certificates, the
// store works with the CA, certificate and key (as --etcd-cacert, --etcd-cert and
// --etcd-key give them), and Open fails clearly without a client certificate.
func TestTLSClientCertificates(t *testing.T) {
	c := etcdtest.StartTLS(t, 3)
	s := open(t, c, func(o *etcd.Options) {
		o.CACert, o.Cert, o.Key = c.Certs.CA, c.Certs.ClientCert, c.Certs.ClientKey
	})
	if err := s.Update(context.Background(), "lu", storetest.Increment); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(context.Background(), "lu"); err != nil || string(v) != "1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	for name, mod := range map[string]func(*etcd.Options){
		"CA only":   func(o *etcd.Options) { o.CACert = c.Certs.CA },
		"no TLS":    func(o *etcd.Options) {},
		"cert only": func(o *etcd.Options) { o.Cert = c.Certs.ClientCert },
	} {
		opts := etcd.Options{Endpoints: c.Endpoints(), Prefix: freshPrefix(), DialTimeout: 2 * time.Second}
		mod(&opts)
		st, err := etcd.Open(opts)
		if err == nil {
			st.Close()
			t.Errorf("%s: Open succeeded against members requiring client certificates", name)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}

// TestCombinedLostReply loses the replies of combined transactions: eight keys'
// writes, released together so that they share transactions, go out while the
// proxy discards every reply. Each write must be resolved on its own through its
// record: every key incremented exactly once, every fn run once, and every caller
// answered with what its fn computed.
func TestCombinedLostReply(t *testing.T) {
	c := etcdtest.Start(t, 3)
	p, err := etcdtest.NewProxy(strings.TrimPrefix(c.Members[0].ClientURL, "http://"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	a := open(t, c, func(o *etcd.Options) {
		o.Endpoints = []string{"http://" + p.Addr()}
		o.AttemptTimeout = time.Second
	})
	const keys = 8
	for k := range keys {
		if err := a.Update(context.Background(), "lu"+strconv.Itoa(k), storetest.Increment); err != nil {
			t.Fatal(err)
		}
	}
	var ready sync.WaitGroup
	ready.Add(keys)
	release := make(chan struct{})
	var lose sync.Once
	runs := make([]atomic.Int32, keys)
	answers := make([]string, keys)
	var wg sync.WaitGroup
	for k := range keys {
		wg.Go(func() {
			err := a.Update(context.Background(), "lu"+strconv.Itoa(k), func(cur []byte) ([]byte, bool, error) {
				if runs[k].Add(1) == 1 {
					// Every key's fn waits for the others, so that their
					// writes reach the committer together.
					ready.Done()
					lose.Do(func() {
						go func() {
							ready.Wait()
							p.LoseReplies(1500 * time.Millisecond)
							close(release)
						}()
					})
					<-release
				}
				next, changed, err := storetest.Increment(cur)
				answers[k] = string(next)
				return next, changed, err
			})
			if err != nil {
				t.Errorf("lu%d: %v", k, err)
			}
		})
	}
	wg.Wait()
	for k := range keys {
		if n := runs[k].Load(); n != 1 {
			t.Errorf("lu%d: fn ran %d times, want 1", k, n)
		}
		if answers[k] != "2" {
			t.Errorf("lu%d: answer %q, want 2", k, answers[k])
		}
		v, err := a.Get(context.Background(), "lu"+strconv.Itoa(k))
		if err != nil || string(v) != "2" {
			t.Errorf("lu%d = %q (%v), want 2: applied exactly once", k, v, err)
		}
	}
	st := a.Stats()
	t.Logf("proxy cut %d connections; stats %+v", p.Dropped(), st)
	if st.CombinedUnknown == 0 || st.Recovered < 2 {
		t.Fatalf("stats %+v: want a combined transaction whose outcome was unknown, and writes recovered from their records", st)
	}
}
