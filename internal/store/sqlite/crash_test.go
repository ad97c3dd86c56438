package sqlite_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/internal/store/storetest"
)

// crashWorkers is how many goroutines of the crash child update at once, each on its
// own counter/log pair, so that kills also land inside grouped transactions.
const crashWorkers = 4

func counterKey(w int) string { return fmt.Sprintf("counter%d", w) }
func logKey(w int) string     { return fmt.Sprintf("log%d", w) }
func rowsKey(w int) string    { return fmt.Sprintf("rows%d", w) }

// A rows log is the log kept in parts (store.PartStore): part 0 is the head
// "K:", part i (1..K) is "i,". The head and the rows are written in one
// UpdateParts, so a value whose head does not count its rows is a torn one.
func parseRows(b []byte) ([]int64, error) {
	head, rest, ok := bytes.Cut(b, []byte(":"))
	if len(b) == 0 {
		return nil, nil
	}
	if !ok {
		return nil, fmt.Errorf("rows log %q: no head", abbreviate(b))
	}
	k, err := strconv.ParseInt(string(head), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("rows log head %q: %w", head, err)
	}
	entries, err := parseLog(bytes.TrimSuffix(rest, []byte(",")))
	if err != nil {
		return nil, err
	}
	if int64(len(entries)) != k {
		return nil, fmt.Errorf("rows log head says %d rows, %d read: head and rows apart", k, len(entries))
	}
	return entries, nil
}

// rowsAppender appends v to a rows log with UpdateParts: from the version it
// last wrote, without reading the value (the head and row v, and row v-1
// deleted and put again); from any other version, by reading it. It
// returns an error when the log does not end at v-1 or v.
type rowsAppender struct {
	ver   uint64 // version of the value this appender last wrote (0: none)
	count int64  // its rows then
}

func (a *rowsAppender) fn(v int64, count *int64) store.PartsFunc {
	return func(ver uint64, read store.ReadFunc) (store.Parts, error) {
		n := a.count
		if ver == 0 || ver != a.ver {
			cur, _, err := read()
			if err != nil {
				return store.Parts{}, err
			}
			entries, err := parseRows(cur)
			if err != nil {
				return store.Parts{}, err
			}
			n = int64(len(entries))
		}
		*count = n
		if n == v {
			return store.Parts{}, nil
		}
		if n != v-1 {
			return store.Parts{}, fmt.Errorf("rows log has %d rows, cannot append %d", n, v)
		}
		*count = v
		p := store.Parts{Write: true, Put: []store.Part{
			{Seq: 0, Value: []byte(strconv.FormatInt(v, 10) + ":")},
			{Seq: v, Value: []byte(strconv.FormatInt(v, 10) + ",")},
		}}
		if ver == 0 {
			p.Replace = true
		} else if v > 1 {
			p.Delete = []int64{v - 1}
			p.Put = append(p.Put, store.Part{Seq: v - 1, Value: []byte(strconv.FormatInt(v-1, 10) + ",")})
		}
		return p, nil
	}
}

func (a *rowsAppender) append(ctx context.Context, s *sqlite.Store, w int, v int64) error {
	var count int64
	ver, err := s.UpdateParts(ctx, rowsKey(w), a.fn(v, &count))
	if err == nil {
		a.ver, a.count = ver, count
	}
	return err
}

// parseLog reads a log value: the decimal numbers appended so far, comma-separated.
func parseLog(b []byte) ([]int64, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var out []int64
	for _, f := range bytes.Split(b, []byte(",")) {
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("log entry %q: %w", f, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// appendLog returns the UpdateFunc that appends v to a log unless the log already ends
// with it (which makes the repair after a crash idempotent).
func appendLog(v int64) store.UpdateFunc {
	return func(cur []byte) ([]byte, bool, error) {
		entries, err := parseLog(cur)
		if err != nil {
			return nil, false, err
		}
		if n := len(entries); n > 0 && entries[n-1] == v {
			return nil, false, nil
		}
		if n := len(entries); int64(n) != v-1 {
			return nil, false, fmt.Errorf("log has %d entries, cannot append %d", n, v)
		}
		if len(cur) > 0 {
			cur = append(cur, ',')
		}
		return strconv.AppendInt(cur, v, 10), true, nil
	}
}

// childCrash runs crashWorkers loops of "increment counter, append its value to the log,
// append it to the rows log, print the value" until it is killed. A log one behind its
// counter, and a rows log one behind the log (killed between the updates), are repaired
// first.
func childCrash(path string) int {
	s, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	var out sync.Mutex
	var wg sync.WaitGroup
	fail := make(chan error, crashWorkers)
	for w := range crashWorkers {
		wg.Go(func() {
			var rows rowsAppender
			c, err := s.Get(ctx, counterKey(w))
			if err == nil {
				var n int64
				if n, err = storetest.ParseCounter(c); err == nil && n > 0 {
					err = s.Update(ctx, logKey(w), appendLog(n))
					if err == nil {
						err = rows.append(ctx, s, w, n)
					}
				}
			}
			for err == nil {
				var v int64
				err = s.Update(ctx, counterKey(w), func(cur []byte) ([]byte, bool, error) {
					next, changed, err := storetest.Increment(cur)
					if err == nil {
						v, _ = storetest.ParseCounter(next)
					}
					return next, changed, err
				})
				if err == nil {
					err = s.Update(ctx, logKey(w), appendLog(v))
				}
				if err == nil {
					err = rows.append(ctx, s, w, v)
				}
				if err == nil {
					out.Lock()
					_, err = fmt.Fprintf(os.Stdout, "%d %d\n", w, v) // one write(2): atomic on a pipe
					out.Unlock()
				}
			}
			fail <- err
		})
	}
	err = <-fail
	fmt.Fprintln(os.Stderr, "crash child:", err)
	return 1
}

// TestCrashSafety kills a writing child with SIGKILL at seeded random moments and checks
// after each kill that every acknowledged update survived, nothing was applied twice,
// and each counter/log pair is consistent (log = 1..K with K = counter or counter-1).
// SIGKILL tests process death, where the kernel keeps the page cache; that committed
// data also survives power loss rests on synchronous=FULL, checked by
// TestPragmasInEffect.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes for several seconds")
	}
	seed := uint64(20261126)
	if v := os.Getenv("PRHELPER_CRASH_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("PRHELPER_CRASH_SEED: %v", err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	const kills = 24
	path := filepath.Join(t.TempDir(), "pr.db")
	var acked [crashWorkers]int64 // highest acknowledged value per worker, ever
	totalAcks, productive := 0, 0
	for round := range kills {
		cmd := child(t, "crash", path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		readDone := make(chan int)
		firstAck := make(chan struct{})
		roundAcked := acked
		go func() {
			n := 0
			defer func() {
				if n == 0 {
					close(firstAck)
				}
			}()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				var w int
				var v int64
				if _, err := fmt.Sscanf(sc.Text(), "%d %d", &w, &v); err != nil || w < 0 || w >= crashWorkers {
					t.Errorf("round %d: bad child line %q", round, sc.Text())
					continue
				}
				if v <= roundAcked[w] {
					t.Errorf("round %d: worker %d acknowledged %d after %d", round, w, v, roundAcked[w])
				}
				roundAcked[w] = v
				if n++; n == 1 {
					close(firstAck)
				}
			}
			readDone <- n
		}()
		// The random delay counts from the child's first acknowledged update, not
		// from its start: a loaded machine (go test runs packages side by side)
		// can take longer than the delay to start a -race child.
		select {
		case <-firstAck:
		case <-time.After(2 * time.Minute):
			t.Fatalf("round %d: the child acknowledged nothing in 2 minutes:\n%s", round, stderr.String())
		}
		delay := time.Duration(20+rng.IntN(280)) * time.Millisecond
		time.Sleep(delay)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("round %d: kill: %v", round, err)
		}
		n := <-readDone
		werr := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child ended by itself (%v) before the kill:\n%s", round, werr, stderr.String())
		}
		acked = roundAcked
		totalAcks += n
		if n > 0 {
			productive++
		}
		checkCrashState(t, path, round, acked)
		if t.Failed() {
			return
		}
	}
	t.Logf("seed %d: %d kills, %d acknowledged updates (%d rounds acknowledged at least one); final acknowledged per worker %v",
		seed, kills, totalAcks, productive, acked)
	if productive < kills/2 {
		t.Fatalf("only %d of %d rounds acknowledged anything: the kills did not hit a working child", productive, kills)
	}
}

// checkCrashState opens the store the killed child left behind (running SQLite's WAL
// recovery) and checks each worker's pair against what the child acknowledged.
func checkCrashState(t *testing.T, path string, round int, acked [crashWorkers]int64) {
	t.Helper()
	s, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		t.Fatalf("round %d: reopen after kill: %v", round, err)
	}
	defer s.Close()
	ctx := context.Background()
	for w := range crashWorkers {
		cb, err := s.Get(ctx, counterKey(w))
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		c, err := storetest.ParseCounter(cb)
		if err != nil {
			t.Fatalf("round %d: worker %d: torn counter: %v", round, w, err)
		}
		lb, err := s.Get(ctx, logKey(w))
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		entries, err := parseLog(lb)
		if err != nil {
			t.Fatalf("round %d: worker %d: torn log: %v", round, w, err)
		}
		k := int64(len(entries))
		for i, e := range entries {
			if e != int64(i+1) {
				t.Fatalf("round %d: worker %d: log entry %d is %d, want %d (log %s)", round, w, i, e, i+1, abbreviate(lb))
			}
		}
		rb, err := s.Get(ctx, rowsKey(w))
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		rowsEntries, err := parseRows(rb)
		if err != nil {
			t.Fatalf("round %d: worker %d: torn rows log: %v", round, w, err)
		}
		for i, e := range rowsEntries {
			if e != int64(i+1) {
				t.Fatalf("round %d: worker %d: rows log entry %d is %d, want %d", round, w, i, e, i+1)
			}
		}
		r := int64(len(rowsEntries))
		a := acked[w]
		switch {
		case r < a:
			t.Fatalf("round %d: worker %d: rows log has %d rows, below acknowledged %d", round, w, r, a)
		case r != k && r != k-1:
			t.Fatalf("round %d: worker %d: rows log has %d rows for a log of %d: half-applied update", round, w, r, k)
		}
		switch {
		case c < a:
			t.Fatalf("round %d: worker %d: counter %d below acknowledged %d: an acknowledged update was lost", round, w, c, a)
		case k < a:
			t.Fatalf("round %d: worker %d: log has %d entries, below acknowledged %d", round, w, k, a)
		case k != c && k != c-1:
			t.Fatalf("round %d: worker %d: log has %d entries for counter %d: half-applied update", round, w, k, c)
		case c > a+2:
			// After ack a the child can finish a+1 unprinted and commit counter a+2.
			t.Fatalf("round %d: worker %d: counter %d is more than 2 past acknowledged %d: an update was applied twice", round, w, c, a)
		}
	}
}

func abbreviate(b []byte) string {
	s := string(b)
	if len(s) > 80 {
		return "…" + s[len(s)-80:]
	}
	return strings.Clone(s)
}
