package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/prhelper/prhelper/internal/store"
)

// Increment is an UpdateFunc over decimal counters: absent counts as 0 and the result
// is the next integer in ASCII. The suites use it because a lost or doubled update shows
// as a wrong final number.
func Increment(cur []byte) ([]byte, bool, error) {
	n, err := ParseCounter(cur)
	if err != nil {
		return nil, false, err
	}
	return strconv.AppendInt(nil, n+1, 10), true, nil
}

// ParseCounter reads a decimal counter written by Increment; nil reads as 0.
func ParseCounter(b []byte) (int64, error) {
	if b == nil {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("counter %q: %w", b, err)
	}
	return n, nil
}

// Open makes a fresh, empty store for one subtest; the suite closes it.
type Open func(t *testing.T) store.Store

var errFn = errors.New("fn refused")

// Run runs the contract suite against stores made by open.
func Run(t *testing.T, open Open) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"AbsentKey", testAbsentKey},
		{"ChangedReplaces", testChangedReplaces},
		{"UnchangedKeeps", testUnchangedKeeps},
		{"ErrorChangesNothing", testErrorChangesNothing},
		{"FnSeesPrivateCopy", testFnSeesPrivateCopy},
		{"NilNextDeletes", testNilNextDeletes},
		{"EmptyValueIsNotAbsent", testEmptyValueIsNotAbsent},
		{"FnSeesLatestValue", testFnSeesLatestValue},
		{"KeysSorted", testKeysSorted},
		{"ListPrefix", testListPrefix},
		{"CanceledContext", testCanceledContext},
		{"ConcurrentIncrements64", testConcurrentIncrements},
		{"ConcurrentErrorsIsolated", testConcurrentErrorsIsolated},
		{"ClosedRefuses", testClosedRefuses},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.run(t, s)
		})
	}
}

func mustGet(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	v, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

func set(t *testing.T, s store.Store, key string, v []byte) {
	t.Helper()
	err := s.Update(context.Background(), key, func([]byte) ([]byte, bool, error) {
		return bytes.Clone(v), true, nil
	})
	if err != nil {
		t.Fatalf("Update(%q) set %q: %v", key, v, err)
	}
}

func testAbsentKey(t *testing.T, s store.Store) {
	if v := mustGet(t, s, "lu-absent"); v != nil {
		t.Fatalf("Get(absent) = %q, want nil", v)
	}
	var seen []byte
	ran := false
	err := s.Update(context.Background(), "lu-absent", func(cur []byte) ([]byte, bool, error) {
		ran, seen = true, cur
		return nil, false, nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if !ran {
		t.Fatal("fn did not run")
	}
	if seen != nil {
		t.Fatalf("fn saw %q for an absent key, want nil", seen)
	}
	if v := mustGet(t, s, "lu-absent"); v != nil {
		t.Fatalf("unchanged Update created the key: %q", v)
	}
}

func testChangedReplaces(t *testing.T, s store.Store) {
	set(t, s, "lu", []byte("one"))
	set(t, s, "lu", []byte("two"))
	if v := mustGet(t, s, "lu"); string(v) != "two" {
		t.Fatalf("Get = %q, want %q", v, "two")
	}
	if v := mustGet(t, s, "other"); v != nil {
		t.Fatalf("another key changed: %q", v)
	}
}

func testUnchangedKeeps(t *testing.T, s store.Store) {
	set(t, s, "lu", []byte("kept"))
	err := s.Update(context.Background(), "lu", func([]byte) ([]byte, bool, error) {
		return []byte("ignored"), false, nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if v := mustGet(t, s, "lu"); string(v) != "kept" {
		t.Fatalf("Get = %q after changed=false, want %q", v, "kept")
	}
}

func testErrorChangesNothing(t *testing.T, s store.Store) {
	set(t, s, "lu", []byte("before"))
	err := s.Update(context.Background(), "lu", func([]byte) ([]byte, bool, error) {
		return []byte("after"), true, errFn
	})
	if !errors.Is(err, errFn) {
		t.Fatalf("Update error = %v, want it to wrap %v", err, errFn)
	}
	if v := mustGet(t, s, "lu"); string(v) != "before" {
		t.Fatalf("Get = %q after a failed fn, want %q", v, "before")
	}
	err = s.Update(context.Background(), "new", func([]byte) ([]byte, bool, error) {
		return []byte("x"), true, errFn
	})
	if !errors.Is(err, errFn) {
		t.Fatalf("Update(new) error = %v, want %v", err, errFn)
	}
	if v := mustGet(t, s, "new"); v != nil {
		t.Fatalf("failed fn created key: %q", v)
	}
}

func testFnSeesPrivateCopy(t *testing.T, s store.Store) {
	set(t, s, "lu", []byte("abc"))
	err := s.Update(context.Background(), "lu", func(cur []byte) ([]byte, bool, error) {
		for i := range cur {
			cur[i] = 'X'
		}
		return nil, false, nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if v := mustGet(t, s, "lu"); string(v) != "abc" {
		t.Fatalf("fn's scribbling on cur leaked into the store: %q", v)
	}
	next := []byte("def")
	err = s.Update(context.Background(), "lu", func([]byte) ([]byte, bool, error) { return next, true, nil })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	next[0] = 'Z'
	got := mustGet(t, s, "lu")
	if string(got) != "def" {
		t.Fatalf("caller's later write to next leaked into the store: %q", got)
	}
	got[0] = 'Q'
	if v := mustGet(t, s, "lu"); string(v) != "def" {
		t.Fatalf("writing to Get's result leaked into the store: %q", v)
	}
}

func testNilNextDeletes(t *testing.T, s store.Store) {
	set(t, s, "lu", []byte("x"))
	err := s.Update(context.Background(), "lu", func([]byte) ([]byte, bool, error) { return nil, true, nil })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if v := mustGet(t, s, "lu"); v != nil {
		t.Fatalf("Get after delete = %q, want nil", v)
	}
	keys, err := s.Keys(context.Background())
	if err != nil {
		t.Fatalf("Keys: %v", err)
	}
	if slices.Contains(keys, "lu") {
		t.Fatalf("Keys after delete = %q, still lists it", keys)
	}
}

func testEmptyValueIsNotAbsent(t *testing.T, s store.Store) {
	set(t, s, "lu", []byte{})
	v := mustGet(t, s, "lu")
	if v == nil || len(v) != 0 {
		t.Fatalf("Get = %#v, want a non-nil empty value", v)
	}
	var seen []byte
	err := s.Update(context.Background(), "lu", func(cur []byte) ([]byte, bool, error) {
		seen = cur
		return nil, false, nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if seen == nil {
		t.Fatal("fn saw nil for an existing empty value")
	}
}

func testFnSeesLatestValue(t *testing.T, s store.Store) {
	for i := 1; i <= 10; i++ {
		var seen []byte
		err := s.Update(context.Background(), "lu", func(cur []byte) ([]byte, bool, error) {
			seen = cur
			return Increment(cur)
		})
		if err != nil {
			t.Fatalf("Update %d: %v", i, err)
		}
		want := strconv.Itoa(i - 1)
		if i == 1 {
			want = ""
		}
		if string(seen) != want {
			t.Fatalf("Update %d: fn saw %q, want %q", i, seen, want)
		}
	}
	if v := mustGet(t, s, "lu"); string(v) != "10" {
		t.Fatalf("Get = %q, want 10", v)
	}
}

func testKeysSorted(t *testing.T, s store.Store) {
	for _, k := range []string{"naa.b", "naa.a", "vm1/lun0", "naa.c"} {
		set(t, s, k, []byte(k))
	}
	keys, err := s.Keys(context.Background())
	if err != nil {
		t.Fatalf("Keys: %v", err)
	}
	want := []string{"naa.a", "naa.b", "naa.c", "vm1/lun0"}
	if !slices.Equal(keys, want) {
		t.Fatalf("Keys = %q, want %q", keys, want)
	}
}

// testListPrefix checks List: the keys under the prefix in order, with their
// values, deleted keys left out.
func testListPrefix(t *testing.T, s store.Store) {
	for _, k := range []string{"lu/b", "lu/a", "fence/helper/x", "lu/c", "lv"} {
		set(t, s, k, []byte("v-"+k))
	}
	if err := s.Update(context.Background(), "lu/c", func([]byte) ([]byte, bool, error) { return nil, true, nil }); err != nil {
		t.Fatal(err)
	}
	got, err := s.List(context.Background(), "lu/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var keys []string
	for _, e := range got {
		keys = append(keys, e.Key)
		if string(e.Value) != "v-"+e.Key {
			t.Errorf("List: %s = %q", e.Key, e.Value)
		}
	}
	if want := []string{"lu/a", "lu/b"}; !slices.Equal(keys, want) {
		t.Fatalf("List(lu/) keys = %q, want %q", keys, want)
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	err := s.Update(ctx, "lu", func([]byte) ([]byte, bool, error) {
		ran = true
		return []byte("x"), true, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Update(canceled) = %v, want context.Canceled", err)
	}
	if ran {
		t.Fatal("fn ran for an already canceled context")
	}
	if v := mustGet(t, s, "lu"); v != nil {
		t.Fatalf("canceled Update changed the key: %q", v)
	}
}

func testConcurrentIncrements(t *testing.T, s store.Store) {
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if err := s.Update(context.Background(), "counter", Increment); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Update: %v", err)
	}
	if v := mustGet(t, s, "counter"); string(v) != strconv.Itoa(n) {
		t.Fatalf("counter = %q after %d concurrent increments, want %d", v, n, n)
	}
}

// testConcurrentErrorsIsolated mixes failing and succeeding updates of the same keys from
// many goroutines: a store that batches must not let one fn's error undo or block its
// neighbours' changes.
func testConcurrentErrorsIsolated(t *testing.T, s store.Store) {
	const workers, per = 16, 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	good := map[string]int{}
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				key := fmt.Sprintf("lu%d", (w+i)%3)
				fail := (w*per+i)%4 == 0
				err := s.Update(context.Background(), key, func(cur []byte) ([]byte, bool, error) {
					if fail {
						return []byte("poison"), true, errFn
					}
					return Increment(cur)
				})
				switch {
				case fail && !errors.Is(err, errFn):
					t.Errorf("failing update of %s returned %v, want %v", key, err, errFn)
				case !fail && err != nil:
					t.Errorf("update of %s: %v", key, err)
				case !fail:
					mu.Lock()
					good[key]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for k, want := range good {
		total += want
		if v := mustGet(t, s, k); string(v) != strconv.Itoa(want) {
			t.Errorf("%s = %q, want %d", k, v, want)
		}
	}
	if total == 0 || total == workers*per {
		t.Fatalf("test mix is degenerate: %d successes of %d", total, workers*per)
	}
}

func testClosedRefuses(t *testing.T, s store.Store) {
	set(t, s, "lu", []byte("x"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	err := s.Update(context.Background(), "lu", Increment)
	if !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Update after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Get(context.Background(), "lu"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
}
