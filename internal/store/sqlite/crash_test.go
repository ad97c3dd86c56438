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
// print the value" until it is killed. A log one behind its counter (killed between the
// two Updates) is repaired first.
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
			c, err := s.Get(ctx, counterKey(w))
			if err == nil {
				var n int64
				if n, err = storetest.ParseCounter(c); err == nil && n > 0 {
					err = s.Update(ctx, logKey(w), appendLog(n))
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
		a := acked[w]
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
