package main

import (
	"bytes"
	"context"
	be "encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/store/etcd/etcdtest"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// etcdHosts is a set of helper processes, one per simulated host, sharing an etcd
// cluster; each serves some initiators on its own sockets. A rule gives the shared
// disk image one identity (id=) on every host, as the README says to.
type etcdHosts struct {
	t       *testing.T
	cluster *etcdtest.Cluster
	dir     string
	conf    string
	prefix  string
	perHost int
	helpers []*proc
}

func (h *etcdHosts) sock(client int) string {
	return filepath.Join(h.dir, fmt.Sprintf("c%d.sock", client))
}

func initiatorName(client int) string { return fmt.Sprintf("iqn.2025-01.test:client%d", client) }

func (h *etcdHosts) args(host int) []string {
	args := []string{"--config=" + h.conf, "-q",
		"--etcd-endpoints=" + strings.Join(h.cluster.Endpoints(), ","), "--etcd-prefix=" + h.prefix}
	for c := host * h.perHost; c < (host+1)*h.perHost; c++ {
		args = append(args, "--listen="+h.sock(c)+",initiator=name:"+initiatorName(c))
	}
	return args
}

func startEtcdHosts(t *testing.T, c *etcdtest.Cluster, hosts, perHost int, prefix string) *etcdHosts {
	t.Helper()
	dir := t.TempDir()
	h := &etcdHosts{t: t, cluster: c, dir: dir, conf: filepath.Join(dir, "prhelper.conf"), prefix: prefix, perHost: perHost}
	if err := os.WriteFile(h.conf, []byte("backend emulate\nrule kind=file backend=emulate id=shared-lu-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range hosts {
		h.helpers = append(h.helpers, startHelper(t, h.args(i)...))
	}
	for c := range hosts * perHost {
		waitSocket(t, h.sock(c))
	}
	return h
}

// restart kills one host's helper with SIGKILL and starts it again.
func (h *etcdHosts) restart(host int) {
	p := h.helpers[host]
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(h.t)
	h.helpers[host] = startHelper(h.t, h.args(host)...)
}

// prInput is one PR command of one client, the model's input.
type prInput struct {
	id     int // unique in a history, for the model's memo
	client int
	cdb    [wire.CDBSize]byte
	param  []byte
}

// prOutput is the helper's reply; unknown marks a command whose outcome the client
// could not learn (transport error, or a retryable ABORTED COMMAND from a store that
// timed out): it may have been applied at any time after its call.
type prOutput struct {
	unknown bool
	status  byte
	sense   [wire.SenseSize]byte
	data    []byte
}

// prModel is the pr engine as a sequential specification: the state is the engine's
// marshalled State, and a step is exactly what the emulate backend runs in its store
// update.
func prModel() porcupine.Model {
	// The checker tries the same operation on the same state many times while it
	// searches; the engine's answer is memoized.
	type stepKey struct {
		state string
		id    int
	}
	type stepVal struct {
		want wire.Reply
		next string
	}
	var mu sync.Mutex
	memo := map[stepKey]stepVal{}
	step := func(state string, in prInput) stepVal {
		mu.Lock()
		v, ok := memo[stepKey{state, in.id}]
		mu.Unlock()
		if ok {
			return v
		}
		var st pr.State
		if state != "" {
			if err := st.UnmarshalBinary([]byte(state)); err != nil {
				panic(err)
			}
		}
		init, err := emulate.ParseInitiator(initiatorName(in.client))
		if err != nil {
			panic(err)
		}
		res := pr.Execute(pr.LIO(), &st, pr.Nexus{Initiator: init, RTPI: 1}, in.cdb[:], in.param)
		b, err := st.MarshalBinary()
		if err != nil {
			panic(err)
		}
		v = stepVal{want: wire.Reply{Status: res.Status, Data: res.Data}, next: string(b)}
		if res.Status == scsi.StatusCheckCondition {
			v.want.SetSense(res.Sense)
		}
		mu.Lock()
		memo[stepKey{state, in.id}] = v
		mu.Unlock()
		return v
	}
	return porcupine.Model{
		Init: func() interface{} { return "" },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			in, out := input.(prInput), output.(prOutput)
			v := step(state.(string), in)
			if out.unknown {
				return true, v.next
			}
			ok := v.want.Status == out.status && v.want.Sense == out.sense && bytes.Equal(v.want.Data, out.data)
			return ok, v.next
		},
		Equal: func(a, b interface{}) bool { return a.(string) == b.(string) },
		DescribeOperation: func(input, output interface{}) string {
			in, out := input.(prInput), output.(prOutput)
			s := fmt.Sprintf("c%d %s", in.client, describeCDB(in.cdb, in.param))
			if out.unknown {
				return s + " → unknown"
			}
			return s + " → " + scsi.StatusName(out.status)
		},
	}
}

func describeCDB(cdb [wire.CDBSize]byte, param []byte) string {
	name := scsi.CommandName(cdb[:])
	if cdb[0] == scsi.OpPersistentReserveOut && len(param) >= 16 {
		return fmt.Sprintf("%s type=%d key=%#x sark=%#x", name, cdb[2]&0xf,
			be.BigEndian.Uint64(param), be.BigEndian.Uint64(param[8:]))
	}
	return name
}

// randomCommand draws one PR command for client c among n clients: registrations,
// reservations, releases, preemptions, clears and reads, with keys that make them
// succeed often and conflict often.
func randomCommand(rng *rand.Rand, c, n int) prInput {
	key := func(i int) uint64 { return uint64(0x1000 + i) }
	mine := key(c)
	other := key(rng.Intn(n))
	types := []byte{scsi.TypeWriteExclusive, scsi.TypeExclusiveAccess, scsi.TypeWriteExclusiveRegOnly}
	typ := types[rng.Intn(len(types))]
	in := prInput{client: c}
	out := func(sa, typ byte, rk, sark uint64) {
		in.cdb = scsi.PROutCDB(sa, 0, typ, 24)
		in.param = prOutParam(rk, sark)
	}
	switch r := rng.Intn(100); {
	case r < 25:
		sark := mine
		if rng.Intn(4) == 0 {
			sark = 0
		}
		out(scsi.SARegisterAndIgnoreExisting, 0, 0, sark)
	case r < 32:
		out(scsi.SARegister, 0, 0, mine)
	case r < 47:
		out(scsi.SAReserve, typ, mine, 0)
	case r < 57:
		out(scsi.SARelease, typ, mine, 0)
	case r < 67:
		out(scsi.SAPreempt, typ, mine, other)
	case r < 70:
		out(scsi.SAClear, 0, mine, 0)
	case r < 85:
		in.cdb = scsi.PRInCDB(scsi.SAReadKeys, 1024)
	default:
		in.cdb = scsi.PRInCDB(scsi.SAReadReservation, 1024)
	}
	return in
}

// workload runs clients concurrently against their sockets until stop is closed and
// returns the history.
// history collects the operations of every round on one time base, so that rounds
// that continue one state are checked as one history.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	pend  int64 // operations with an unknown outcome so far
}

func (h *etcdHosts) workload(hist *history, seed int64, clients int, stop <-chan struct{}, disk *os.File) []porcupine.Operation {
	start := hist.start
	mu := &hist.mu
	first := len(hist.ops)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewSource(seed + int64(c)))
			cl := client.New(h.sock(c), client.WithReconnect(20, 100*time.Millisecond))
			defer cl.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				in := randomCommand(rng, c, clients)
				call := time.Since(start).Nanoseconds()
				ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
				rep, err := cl.Do(ctx, in.cdb, int(disk.Fd()), in.param)
				cancel()
				ret := time.Since(start).Nanoseconds()
				var out prOutput
				mu.Lock()
				if err != nil || isRetryable(rep) {
					// Maybe applied, at any time from now on.
					out.unknown = true
					hist.pend++
					ret = math.MaxInt64 - hist.pend
				} else {
					out = prOutput{status: rep.Status, sense: rep.Sense, data: bytes.Clone(rep.Data)}
				}
				in.id = len(hist.ops)
				hist.ops = append(hist.ops, porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
				if out.unknown {
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	return hist.ops[first:]
}

// isRetryable reports the ABORTED COMMAND a helper answers when its store could not
// complete the command in time (the guest retries it).
func isRetryable(rep *wire.Reply) bool {
	if rep.Status != scsi.StatusCheckCondition {
		return false
	}
	s, ok := scsi.ParseSense(rep.Sense[:])
	return ok && s == scsi.SenseIOError
}

// checkLinearizable checks a history against the pr engine and reports the counts.
func checkLinearizable(t *testing.T, name string, ops []porcupine.Operation) {
	t.Helper()
	unknown, good := 0, 0
	for _, op := range ops {
		out := op.Output.(prOutput)
		if out.unknown {
			unknown++
		} else if out.status == scsi.StatusGood {
			good++
		}
	}
	res, info := porcupine.CheckOperationsVerbose(prModel(), ops, 2*time.Minute)
	t.Logf("%s: %d operations (%d GOOD, %d unknown outcome): %s", name, len(ops), good, unknown, res)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("prhelper-linearizability-%s-%d.html", name, time.Now().Unix()))
		if err := porcupine.VisualizePath(prModel(), info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatalf("%s: history is not linearizable against the pr engine", name)
	default:
		t.Fatalf("%s: linearizability check timed out", name)
	}
	if len(ops)-unknown < 50 {
		t.Fatalf("%s: only %d operations with a known answer: the workload did not run", name, len(ops)-unknown)
	}
}

// faultRounds is how many rounds of every fault TestEtcdLinearizableUnderFaults
// runs; PRHELPER_ETCD_FAULT_ROUNDS raises it for long runs.
func faultRounds(t *testing.T) int {
	if v := os.Getenv("PRHELPER_ETCD_FAULT_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PRHELPER_ETCD_FAULT_ROUNDS=%q", v)
		}
		return n
	}
	return 1
}

// TestEtcdLinearizableUnderFaults runs three helpers (three hosts) with two
// initiators each on one shared logical unit in a 3-member etcd cluster, a random
// concurrent PR workload, and meanwhile: SIGKILL of the etcd leader (and its restart),
// SIGSTOP of the leader for longer than the election timeout, a partition of the
// leader from the other members, and a SIGKILL and restart of a helper. Every history
// must be linearizable with the pr engine as the model.
func TestEtcdLinearizableUnderFaults(t *testing.T) {
	c := etcdtest.Start(t, 3)
	const hosts, perHost = 3, 2
	rounds := faultRounds(t)
	disk := diskImage(t)
	h := startEtcdHosts(t, c, hosts, perHost, "/prhelper-lin/")
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	faults := map[string]int{}
	ctx := context.Background()
	leader := func() *etcdtest.Member {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		l, err := c.WaitLeader(wctx)
		if err != nil {
			t.Fatalf("%v\n%s", err, c.LogTail())
		}
		return l
	}
	hist := &history{start: time.Now()}
	for round := range rounds {
		stop := make(chan struct{})
		done := make(chan []porcupine.Operation)
		go func() { done <- h.workload(hist, seed+int64(round)*1000, hosts*perHost, stop, disk) }()
		time.Sleep(time.Second)

		l := leader()
		c.Kill(l)
		faults["SIGKILL etcd leader"]++
		time.Sleep(2 * time.Second)
		if err := c.Restart(l); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)

		l = leader()
		c.Pause(l)
		faults["SIGSTOP etcd leader 2.5s (election timeout 1s)"]++
		time.Sleep(2500 * time.Millisecond)
		c.Resume(l)
		time.Sleep(time.Second)

		l = leader()
		cut := c.PeerConnsCut()
		c.Isolate(l)
		faults["partition etcd leader 3s"]++
		time.Sleep(3 * time.Second)
		if c.PeerConnsCut() == cut {
			t.Fatal("the partition cut no peer connection")
		}
		// The other two elect a leader among themselves (randomized election
		// timeouts of 1-2 s, more on a loaded machine).
		for wait := time.Now().Add(15 * time.Second); leader() == l; {
			if time.Now().After(wait) {
				t.Fatalf("isolated %s is still the leader the others follow\n%s", l.Name, c.LogTail())
			}
			time.Sleep(200 * time.Millisecond)
		}
		c.Heal()
		time.Sleep(time.Second)

		h.restart(round % hosts)
		faults["SIGKILL+restart helper"]++
		time.Sleep(1500 * time.Millisecond)

		close(stop)
		ops := <-done
		t.Logf("round %d: %d operations", round, len(ops))
	}
	// Every round continues the state of the one before: one history.
	checkLinearizable(t, fmt.Sprintf("%d-rounds", rounds), hist.ops)
	t.Logf("faults: %v", faults)
}

// TestEtcdDifferential sends one seeded sequence of PR commands to a single helper
// on SQLite and, round robin, to three helpers on etcd: every reply must be the same
// byte for byte.
func TestEtcdDifferential(t *testing.T) {
	c := etcdtest.Start(t, 3)
	const clients = 6
	disk := diskImage(t)
	eh := startEtcdHosts(t, c, 3, clients/3, "/prhelper-diff/")
	dir := t.TempDir()
	args := []string{"--backend=emulate", "--db=" + filepath.Join(dir, "pr.db"), "-q"}
	for i := range clients {
		args = append(args, "--listen="+filepath.Join(dir, fmt.Sprintf("c%d.sock", i))+",initiator=name:"+initiatorName(i))
	}
	startHelper(t, args...)
	for i := range clients {
		waitSocket(t, filepath.Join(dir, fmt.Sprintf("c%d.sock", i)))
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	counts := map[byte]int{}
	const n = 400
	for i := range n {
		c := rng.Intn(clients)
		in := randomCommand(rng, c, clients)
		a := doRaw(t, filepath.Join(dir, fmt.Sprintf("c%d.sock", c)), disk, in)
		b := doRaw(t, eh.sock(c), disk, in)
		if a.Status != b.Status || a.Sense != b.Sense || !bytes.Equal(a.Data, b.Data) {
			t.Fatalf("seed %d, command %d (%s from c%d): SQLite %s % x data % x, etcd %s % x data % x", seed, i,
				describeCDB(in.cdb, in.param), c, scsi.StatusName(a.Status), a.Sense[:18], a.Data,
				scsi.StatusName(b.Status), b.Sense[:18], b.Data)
		}
		counts[a.Status]++
	}
	t.Logf("seed %d: %d commands, identical replies (GOOD %d, RESERVATION CONFLICT %d, CHECK CONDITION %d)", seed, n,
		counts[scsi.StatusGood], counts[scsi.StatusReservationConflict], counts[scsi.StatusCheckCondition])
	if counts[scsi.StatusGood] < n/4 || counts[scsi.StatusReservationConflict] == 0 {
		t.Fatalf("degenerate sequence: %v", counts)
	}
}

func doRaw(t *testing.T, sock string, f *os.File, in prInput) *wire.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := client.New(sock)
	defer c.Close()
	rep, err := c.Do(ctx, in.cdb, int(f.Fd()), in.param)
	if err != nil {
		t.Fatalf("%s via %s: %v", scsi.CommandName(in.cdb[:]), sock, err)
	}
	return rep
}
