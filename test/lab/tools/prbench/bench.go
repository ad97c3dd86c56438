package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// path is a way to send commands: a helper socket, or direct SG_IO when sock
// is empty.
type path struct {
	name   string
	sock   string
	socks  int     // sock is a pattern with %d: client i uses socket i mod socks (-socks)
	spread bool    // client i on device i mod len(devs) (-spread)
	client string  // how a connection is driven (-client): "lib" or "", "lean" (leanDoer), "thread" (threadDoer)
	rate   float64 // open loop: requests a second over all connections (-rate); 0: closed loop
	watch  watch
}

// devFor is the device client i sends to: the first, or with -spread the
// i-th modulo their number (one logical unit each).
func (p path) devFor(devs []*os.File, i int) *os.File {
	if !p.spread {
		return devs[0]
	}
	return devs[i%len(devs)]
}

// sockFor is the socket client i connects to: sock itself, or with -socks N
// the pattern sock with i mod N (one socket per initiator: prhelper's
// --listen=PATH,initiator=name:NAME gives each its own identity).
func (p path) sockFor(i int) string {
	if p.socks < 1 || !strings.Contains(p.sock, "%d") {
		return p.sock
	}
	return fmt.Sprintf(p.sock, i%p.socks)
}

// doer sends one command and returns the SCSI status it got; the error is a
// failure to get an answer at all.
type doer func(st *step) (byte, error)

// result is one row of the table.
type result struct {
	mode     string
	clients  int
	n        int
	p50      time.Duration
	p99      time.Duration
	rate     float64
	statuses string // count of each status, e.g. "GOOD:1600"

	cpu int64 // nanoseconds of the helper's CPU time for the row; -1 unknown

	// the samples, for merging rounds
	lat []time.Duration
	sts []byte
	el  time.Duration
}

// merge adds round b's samples to r (the same path, workload and clients).
func (r result) merge(b result) result {
	if r.n == 0 {
		return b
	}
	cpu := r.cpu + b.cpu
	if r.cpu < 0 || b.cpu < 0 {
		cpu = -1
	}
	m := summarize(r.mode, r.clients, append(r.lat, b.lat...), append(r.sts, b.sts...), r.el+b.el)
	m.cpu = cpu
	return m
}

// open returns a doer for connection i (or SG_IO user) sending to f.
func (p path) open(f *os.File, i int) (doer, func()) {
	if p.sock == "" {
		return sgioDoer(f), func() {}
	}
	var mk func(string, *os.File) (doer, func(), error)
	switch p.client {
	case "lean":
		mk = leanDoer
	case "thread":
		mk = threadDoer
	}
	if mk != nil {
		d, closeFn, err := mk(p.sockFor(i), f)
		if err != nil {
			return func(*step) (byte, error) { return 0, err }, func() {}
		}
		return d, closeFn
	}
	cl := client.New(p.sockFor(i), client.WithReconnect(1, 0))
	return func(st *step) (byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rep, err := cl.Do(ctx, st.cdb, int(f.Fd()), st.param)
		if err != nil {
			return 0, err
		}
		return rep.Status, nil
	}, func() { cl.Close() }
}

// sgioDoer issues the 10-byte PR IN/OUT CDB with SG_IO itself, a PR IN with a
// buffer of its allocation length, as the helpers do.
func sgioDoer(f *os.File) doer {
	x := sgioSenseDoer(f)
	return func(st *step) (byte, error) {
		s, _, err := x(st)
		return s, err
	}
}

// senseDoer is a doer that also returns the sense data of the answer.
type senseDoer func(st *step) (status byte, sense []byte, err error)

// sgioSenseDoer is sgioDoer with the sense data the device returned.
func sgioSenseDoer(f *os.File) senseDoer {
	buf := make([]byte, wire.MaxData)
	return func(st *step) (byte, []byte, error) {
		dir, b := sgio.DirFromDevice, buf[:min(scsi.TransferLength(st.cdb[:]), wire.MaxData)]
		if st.cdb[0] == scsi.OpPersistentReserveOut {
			dir, b = sgio.DirToDevice, st.param
			if len(b) == 0 {
				dir = sgio.DirNone
			}
		}
		r, err := sgio.Exec(int(f.Fd()), st.cdb[:10], dir, b, 30*time.Second)
		if err != nil {
			return 0, nil, err
		}
		if r.HostStatus != 0 || r.DriverStatus&0xf != 0 && r.Status == 0 {
			return 0, nil, r.Err()
		}
		return r.Status, r.Sense(), nil
	}
}

var readKeys = step{cdb: scsi.PRInCDB(scsi.SAReadKeys, 8192)}

// registerStep is client i's j-th REGISTER AND IGNORE EXISTING KEY: a new
// non-zero key every time, so that every command changes the state (and, on
// an emulated logical unit, must be made durable before its GOOD).
func registerStep(i, j int) *step {
	param := make([]byte, 24)
	binary.BigEndian.PutUint64(param[8:16], uint64(i+1)<<32|uint64(j+1))
	return &step{cdb: scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24), param: param}
}

// measure runs one row: workload wk over clients connections of p, and
// adds the CPU time the helper process spent meanwhile.
func measure(p path, wk string, clients, n int, devs []*os.File, seq []step, reset bool) ([]result, error) {
	pid := 0
	if p.sock != "" {
		pid = helperPID(p.sockFor(0))
	}
	before := cpuTime(pid)
	rs, err := measure1(p, wk, clients, n, devs, seq, reset)
	cpu := int64(-1)
	if after := cpuTime(pid); before >= 0 && after >= before {
		cpu = after - before
	}
	for i := range rs {
		rs[i].cpu = -1
	}
	if len(rs) > 0 {
		// The helper's CPU time is for all the row's requests: charged to the
		// first result (the only one but for rkw, whose reads are few).
		rs[0].cpu = cpu
	}
	return rs, err
}

func measure1(p path, wk string, clients, n int, devs []*os.File, seq []step, reset bool) ([]result, error) {
	one := func(r result, err error) ([]result, error) {
		if err != nil {
			return nil, err
		}
		return []result{r}, nil
	}
	switch wk {
	case "serial":
		return one(serial(p, n, devs, seq, reset))
	case "mixed":
		return one(bench(p, p.name, clients, n, func(i int) (doer, func(), func(int) *step) {
			d, c := p.open(p.devFor(devs, i), i)
			off := i * len(seq) / clients
			return d, c, func(j int) *step { return &seq[(off+j)%len(seq)] }
		}))
	case "register":
		return one(bench(p, p.name, clients, n, func(i int) (doer, func(), func(int) *step) {
			d, c := p.open(p.devFor(devs, i), i)
			return d, c, func(j int) *step { return registerStep(i, j) }
		}))
	case "rkw":
		return readsUnderWrites(p, clients, n, devs[0])
	default:
		return one(bench(p, p.name, clients, n, func(i int) (doer, func(), func(int) *step) {
			d, c := p.open(p.devFor(devs, i), i)
			return d, c, func(int) *step { return &readKeys }
		}))
	}
}

// readsUnderWrites is the rkw workload: clients-1 connections send n
// REGISTER AND IGNORE EXISTING KEY commands between them (as register does)
// while connection 0 sends READ KEYS, one after the other, until the writers
// are done. Two results: the writes (mode "NAME w") and the reads (mode
// "NAME rk"), each with its own latencies; the read rate is the reader's own.
func readsUnderWrites(p path, clients, n int, f *os.File) ([]result, error) {
	if clients < 2 {
		return nil, fmt.Errorf("rkw needs at least 2 clients (1 reader, writers)")
	}
	rd, closeR := p.open(f, 0)
	defer closeR()
	if _, err := rd(&readKeys); err != nil {
		return nil, fmt.Errorf("%s rkw warm-up: %w", p.name, err)
	}
	stop := make(chan struct{})
	var rLat []time.Duration
	var rSts []byte
	var rErr error
	var rEl time.Duration
	rDone := make(chan struct{})
	go func() {
		defer close(rDone)
		start := time.Now()
		for {
			select {
			case <-stop:
				rEl = time.Since(start)
				return
			default:
			}
			t := time.Now()
			s, err := rd(&readKeys)
			if err != nil {
				rErr, rEl = err, time.Since(start)
				return
			}
			rLat = append(rLat, time.Since(t))
			rSts = append(rSts, s)
		}
	}()
	w, err := bench(p, p.name+" w", clients-1, n, func(i int) (doer, func(), func(int) *step) {
		d, c := p.open(f, i+1)
		return d, c, func(j int) *step { return registerStep(i+1, j) }
	})
	close(stop)
	<-rDone
	if err != nil {
		return nil, err
	}
	if rErr != nil {
		return nil, fmt.Errorf("%s rkw reader: %w", p.name, rErr)
	}
	if len(rLat) == 0 {
		return nil, fmt.Errorf("%s rkw: no READ KEYS answered while the writes ran", p.name)
	}
	w.clients = clients
	r := summarize(p.name+" rk", clients, rLat, rSts, rEl)
	return []result{w, r}, nil
}

// bench runs n requests spread over clients goroutines, each with its own
// doer and its own steps (next(j) is client's j-th command). With the thread
// client each goroutine is locked to its OS thread; with p.rate, requests are sent
// on a schedule (openLoopStart) instead of each as soon as the previous
// one's reply came.
func bench(p path, mode string, clients, n int, mk func(i int) (doer, func(), func(j int) *step)) (result, error) {
	per := n / clients
	if per < 1 {
		per = 1
	}
	lat := make([][]time.Duration, clients)
	sts := make([][]byte, clients)
	errs := make([]error, clients)
	doers := make([]doer, clients)
	nexts := make([]func(int) *step, clients)
	for i := range doers {
		d, closeFn, next := mk(i)
		defer closeFn()
		doers[i], nexts[i] = d, next
		if _, err := d(&readKeys); err != nil { // warm up: connect, first request
			return result{}, fmt.Errorf("%s warm-up: %w", mode, err)
		}
	}
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if p.client == "thread" {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
			}
			l := make([]time.Duration, 0, per)
			s := make([]byte, 0, per)
			for j := 0; j < per; j++ {
				t := time.Now()
				if p.rate > 0 {
					t = openLoopStart(start, t, p.rate, j*clients+i)
				}
				st, err := doers[i](nexts[i](j))
				if err != nil {
					errs[i] = fmt.Errorf("%s client %d request %d: %w", mode, i, j, err)
					return
				}
				l = append(l, time.Since(t))
				s = append(s, st)
			}
			lat[i], sts[i] = l, s
		}(i)
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	var allSt []byte
	for i := range lat {
		if errs[i] != nil {
			return result{}, errs[i]
		}
		all = append(all, lat[i]...)
		allSt = append(allSt, sts[i]...)
	}
	return summarize(mode, clients, all, allSt, el), nil
}

// openLoopStart waits for request k's slot in an even schedule of rate
// requests a second from start (-rate: the open loop, which compares helpers
// at the same offered load; the closed loop offers each helper the load it
// can take, so a faster one also makes the bench busier) and returns the time
// its latency counts from. A request whose slot has passed, because its
// connection's previous request was still out, counts from the slot: the wait
// is latency the helper caused, which a closed loop would not see. A request
// the bench slept for counts from when it woke, so that a late wake-up is not
// charged to the helper.
func openLoopStart(start, now time.Time, rate float64, k int) time.Time {
	due := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
	if d := due.Sub(now); d > 0 {
		time.Sleep(d)
		return time.Now()
	}
	return due
}

// resetLU clears every registration and the reservation of the logical unit
// behind f with direct SG_IO, so that each path replays a sequence from the
// same state (resetWith).
func resetLU(f *os.File) error { return resetWith(sgioSenseDoer(f)) }

// resetUAs bounds the unit attentions resetWith takes before a command: LIO
// queues one per event on an I_T nexus (registrations preempted, reservations
// released, ...), and a replay can leave several on the reset's nexus.
const resetUAs = 16

// resetWith clears the logical unit through d: REGISTER AND IGNORE EXISTING
// KEY, then CLEAR, with one key (SPC-4 §5.14.11). Both must answer GOOD, after
// two kinds of answer that are sent again:
//   - CHECK CONDITION, UNIT ATTENTION: it reports an event of an earlier
//     command (a replay's PREEMPT or CLEAR from another initiator) and did not
//     run the command (docs/spc4-pr.md §6), up to resetUAs times.
//   - CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB (5/24/00) to the
//     REGISTER: LIO refuses a registration without ALL_TG_PT for an initiator
//     port that a registration with ALL_TG_PT=1 (made through another target
//     port by the replay) already covers (its log: "ALL_TG_PT=1 registration
//     exists, but ALL_TG_PT=1 bit not present in received PROUT";
//     docs/spc4-pr.md §7.1); the REGISTER is sent once more with ALL_TG_PT
//     set (SPC-4 §6.16.3, byte 20).
//
// Before this, the next path's reset failed whenever a replay ended in such a
// state (bench-profile.sh after a 1000-step replay of seed 14:
// "status 0x2"), so a path could not be measured after it.
func resetWith(d senseDoer) error {
	const key = 0x5052424e43485253 // "PRBNCHRS"
	param := make([]byte, 24)
	binary.BigEndian.PutUint64(param[8:16], key)
	reg := step{cdb: scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24), param: param}
	clr := step{cdb: scsi.PROutCDB(scsi.SAClear, 0, 0, 24), param: make([]byte, 24)}
	binary.BigEndian.PutUint64(clr.param[0:8], key)
	for _, c := range []struct {
		name string
		st   *step
	}{{"REGISTER AND IGNORE EXISTING KEY", &reg}, {"CLEAR", &clr}} {
		var uas []string
		for {
			s, sense, err := d(c.st)
			if err != nil {
				return fmt.Errorf("reset: %s: %w", c.name, err)
			}
			if s == scsi.StatusGood {
				break
			}
			sn, ok := scsi.ParseSense(sense)
			if s == scsi.StatusCheckCondition && ok && sn == scsi.SenseInvalidField && c.st == &reg && param[20]&scsi.ParamAllTgPt == 0 {
				param[20] |= scsi.ParamAllTgPt
				continue
			}
			if s != scsi.StatusCheckCondition || !ok || sn.Key != scsi.KeyUnitAttention || len(uas) == resetUAs {
				desc := scsi.StatusName(s)
				if ok {
					desc += " " + sn.String()
				}
				if c.st == &reg && param[20]&scsi.ParamAllTgPt != 0 {
					desc += " (with ALL_TG_PT)"
				}
				return fmt.Errorf("reset: %s: %s (after %d unit attentions: %s)", c.name, desc, len(uas), strings.Join(uas, " "))
			}
			uas = append(uas, sn.String())
		}
	}
	return nil
}

// serial replays seq in order (n steps, cycling; 0: once), step k through the
// connection of its initiator on that initiator's device. With reset, the
// logical unit is cleared first.
func serial(p path, n int, devs []*os.File, seq []step, reset bool) (result, error) {
	if reset {
		if err := resetLU(devs[0]); err != nil {
			return result{}, err
		}
	}
	doers := make([]doer, len(devs))
	for i, f := range devs {
		d, closeFn := p.open(f, i)
		defer closeFn()
		if _, err := d(&readKeys); err != nil {
			return result{}, fmt.Errorf("%s warm-up: %w", p.name, err)
		}
		doers[i] = d
	}
	if n == 0 {
		n = len(seq)
	}
	lat := make([]time.Duration, 0, n)
	sts := make([]byte, 0, n)
	start := time.Now()
	for k := 0; k < n; k++ {
		st := &seq[k%len(seq)]
		t := time.Now()
		s, err := doers[st.path%len(doers)](st)
		if err != nil {
			return result{}, fmt.Errorf("%s step %d: %w", p.name, k+1, err)
		}
		lat = append(lat, time.Since(t))
		sts = append(sts, s)
	}
	return summarize(p.name, len(devs), lat, sts, time.Since(start)), nil
}

func summarize(mode string, clients int, all []time.Duration, sts []byte, el time.Duration) result {
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	q := func(p float64) time.Duration { return all[int(p*float64(len(all)-1))] }
	count := map[byte]int{}
	for _, s := range sts {
		count[s]++
	}
	var keys []int
	for s := range count {
		keys = append(keys, int(s))
	}
	sort.Ints(keys)
	var parts []string
	for _, s := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", strings.ReplaceAll(scsi.StatusName(byte(s)), " ", "_"), count[byte(s)]))
	}
	return result{mode: mode, clients: clients, n: len(all), p50: q(0.50), p99: q(0.99),
		rate: float64(len(all)) / el.Seconds(), statuses: strings.Join(parts, " "), lat: all, sts: sts, el: el}
}
