package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/internal/store/storetest"
)

// childEnv selects a child role when the test binary re-executes itself (the standard
// pattern for tests that need several real processes).
const childEnv = "PRHELPER_STORE_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}

func runChild(role string) int {
	path := os.Getenv("PRHELPER_STORE_PATH")
	switch role {
	case "increment":
		return childIncrement(path)
	case "crash":
		return childCrash(path)
	}
	fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
	return 2
}

// childIncrement increments key "n" PRHELPER_STORE_N times, one Update each.
func childIncrement(path string) int {
	n, err := strconv.Atoi(os.Getenv("PRHELPER_STORE_N"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "PRHELPER_STORE_N:", err)
		return 2
	}
	s, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Barrier: the parent releases all children at once by closing their stdin, so the
	// updates really overlap instead of running one process after the other.
	_, _ = io.Copy(io.Discard, os.Stdin)
	var pause int
	if v := os.Getenv("PRHELPER_STORE_PAUSE_US"); v != "" {
		if pause, err = strconv.Atoi(v); err != nil {
			fmt.Fprintln(os.Stderr, "PRHELPER_STORE_PAUSE_US:", err)
			return 2
		}
	}
	first, last := int64(-1), int64(-1)
	for i := range n {
		if pause > 0 {
			time.Sleep(time.Duration(rand.IntN(pause)) * time.Microsecond)
		}
		var got int64
		err := s.Update(context.Background(), "n", func(cur []byte) ([]byte, bool, error) {
			next, changed, err := storetest.Increment(cur)
			got, _ = storetest.ParseCounter(next)
			return next, changed, err
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "update %d: %v\n", i, err)
			return 1
		}
		if first < 0 {
			first = got
		}
		last = got
	}
	st := s.Stats()
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("transactions=%d busy_retries=%d values=%d..%d\n", st.Transactions, st.BusyRetries, first, last)
	return 0
}

func child(t *testing.T, role, path string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, "PRHELPER_STORE_PATH="+path)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

func openT(t *testing.T, path string, opts sqlite.Options) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts sqlite.Options
	}{
		{"grouped", sqlite.Options{}},
		{"ungrouped", sqlite.Options{NoGroupCommit: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				return openT(t, filepath.Join(t.TempDir(), "pr.db"), tc.opts)
			})
		})
	}
}

// TestGroupCommitGroups checks that concurrent Updates share transactions, that fns of
// one key inside a batch chain on each other's results (the total is exact), and that
// NoGroupCommit really gives one transaction per Update.
func TestGroupCommitGroups(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    sqlite.Options
		grouped bool
	}{
		{"grouped", sqlite.Options{}, true},
		{"ungrouped", sqlite.Options{NoGroupCommit: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openT(t, filepath.Join(t.TempDir(), "pr.db"), tc.opts)
			const clients, per = 32, 10
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					for range per {
						if err := s.Update(context.Background(), "lu", storetest.Increment); err != nil {
							t.Errorf("Update: %v", err)
						}
					}
				})
			}
			wg.Wait()
			v, err := s.Get(context.Background(), "lu")
			if err != nil || string(v) != strconv.Itoa(clients*per) {
				t.Fatalf("Get = %q, %v; want %d", v, err, clients*per)
			}
			st := s.Stats()
			t.Logf("%d updates in %d transactions", st.Updates, st.Transactions)
			if st.Updates != clients*per {
				t.Fatalf("Stats.Updates = %d, want %d", st.Updates, clients*per)
			}
			if tc.grouped && st.Transactions >= st.Updates/2 {
				t.Fatalf("group commit did not group: %d transactions for %d updates", st.Transactions, st.Updates)
			}
			if !tc.grouped && st.Transactions != st.Updates {
				t.Fatalf("ungrouped: %d transactions for %d updates, want equal", st.Transactions, st.Updates)
			}
		})
	}
}

// TestPanickingFnIsolated checks that a panicking fn fails only its own Update and the
// store keeps working (the writer goroutine must survive it).
func TestPanickingFnIsolated(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "pr.db"), sqlite.Options{})
	err := s.Update(context.Background(), "lu", func([]byte) ([]byte, bool, error) { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("Update with panicking fn = %v, want a panic error", err)
	}
	if err := s.Update(context.Background(), "lu", storetest.Increment); err != nil {
		t.Fatalf("Update after panic: %v", err)
	}
	if v, _ := s.Get(context.Background(), "lu"); string(v) != "1" {
		t.Fatalf("Get = %q, want 1", v)
	}
}

// TestTwoProcesses runs two processes incrementing one key 200 times each. "paced"
// pauses up to 500 µs between updates, like sparse PR traffic, and must interleave the
// processes' updates; "saturated" runs back to back, where SQLite's lock (no queue)
// may let one process finish first, and only the exact total is checked.
func TestTwoProcesses(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pauseUS    int
		interleave bool
	}{
		{"paced", 500, true},
		{"saturated", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pr.db")
			openT(t, path, sqlite.Options{}).Close() // create the schema before the race
			const per = 200
			var outs [2]bytes.Buffer
			var cmds [2]*exec.Cmd
			var gates [2]io.Closer
			for i := range cmds {
				cmds[i] = child(t, "increment", path, "PRHELPER_STORE_N="+strconv.Itoa(per),
					"PRHELPER_STORE_PAUSE_US="+strconv.Itoa(tc.pauseUS))
				cmds[i].Stdout = &outs[i]
				cmds[i].Stderr = &outs[i]
				var err error
				if gates[i], err = cmds[i].StdinPipe(); err != nil {
					t.Fatal(err)
				}
				if err := cmds[i].Start(); err != nil {
					t.Fatal(err)
				}
			}
			for _, g := range gates {
				g.Close()
			}
			var ranges [2][2]int64
			for i, c := range cmds {
				if err := c.Wait(); err != nil {
					t.Fatalf("child %d: %v\n%s", i, err, outs[i].String())
				}
				out := strings.TrimSpace(outs[i].String())
				t.Logf("child %d: %s", i, out)
				if _, err := fmt.Sscanf(out[strings.Index(out, "values="):], "values=%d..%d", &ranges[i][0], &ranges[i][1]); err != nil {
					t.Fatalf("child %d output %q: %v", i, out, err)
				}
			}
			s := openT(t, path, sqlite.Options{})
			v, err := s.Get(context.Background(), "n")
			if err != nil {
				t.Fatal(err)
			}
			if string(v) != strconv.Itoa(2*per) {
				t.Fatalf("n = %q after two processes incremented %d times each, want %d", v, per, 2*per)
			}
			overlap := ranges[0][0] < ranges[1][1] && ranges[1][0] < ranges[0][1]
			if tc.interleave && !overlap {
				t.Fatalf("updates did not interleave: child ranges %v", ranges)
			}
		})
	}
}

func TestReopenSeesData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pr.db")
	s := openT(t, path, sqlite.Options{})
	for _, k := range []string{"a", "b"} {
		if err := s.Update(context.Background(), k, storetest.Increment); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, path, sqlite.Options{})
	keys, err := s.Keys(context.Background())
	if err != nil || strings.Join(keys, ",") != "a,b" {
		t.Fatalf("Keys after reopen = %q, %v; want [a b]", keys, err)
	}
	if v, _ := s.Get(context.Background(), "b"); string(v) != "1" {
		t.Fatalf("b after reopen = %q, want 1", v)
	}
}

func TestFileAndDirectoryModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "prhelper")
	path := filepath.Join(dir, "pr.db")
	openT(t, path, sqlite.Options{})
	for _, tc := range []struct {
		path string
		want os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {filepath.Dir(dir), 0o700 | os.ModeDir}, {path, 0o600}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.want {
			t.Errorf("mode of %s = %v, want %v", tc.path, fi.Mode(), tc.want)
		}
	}
}

// TestPragmasInEffect asks SQLite, through a separate connection, whether the file is in
// WAL mode, and asks the store's own connections for synchronous=FULL (2), so a driver
// that ignored the DSN pragmas would fail here.
func TestPragmasInEffect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pr.db")
	s := openT(t, path, sqlite.Options{})
	mode, sync, err := s.Pragmas(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != 2 {
		t.Fatalf("journal_mode=%q synchronous=%d, want wal and 2 (FULL)", mode, sync)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode seen by another connection = %q, %v; want wal", mode, err)
	}
}

func TestSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pr.db")
	openT(t, path, sqlite.Options{}).Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.QueryRow("SELECT value FROM meta WHERE name = 'schema_version'").Scan(&v); err != nil || v != sqlite.SchemaVersion {
		t.Fatalf("schema_version = %d, %v; want %d", v, err, sqlite.SchemaVersion)
	}
	if _, err := db.Exec("UPDATE meta SET value = ? WHERE name = 'schema_version'", sqlite.SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(path)
	_, err = sqlite.Open(path, sqlite.Options{})
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a future schema = %v, want a 'newer' error", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("Open rewrote a database it refused")
	}
}

// TestRefusesUnusablePaths covers paths an operator can get wrong; each must give an
// error naming the problem, never a panic, and must leave the file as it was.
func TestRefusesUnusablePaths(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	page := make([]byte, 4096)
	copy(page, "SQLite format 3\x00")
	for i := 16; i < len(page); i++ {
		page[i] = byte(i * 7)
	}
	foreign := filepath.Join(dir, "foreign.db")
	db, err := sql.Open("sqlite", foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE accounts (id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, tc := range []struct {
		name, path, want string
	}{
		{"empty path", "", "empty path"},
		{"directory", dir, "not a regular file"},
		{"text file", write("notes.txt", []byte("hello, this is not a database\n")), "not a SQLite database"},
		{"short file", write("short", []byte("SQLite")), "not a SQLite database"},
		{"corrupt header page", write("corrupt.db", page), ""},
		{"foreign database", foreign, "not a prhelper store"},
		{"parent is a file", filepath.Join(write("plain", []byte("x")), "pr.db"), "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before []byte
			if tc.path != "" {
				before, _ = os.ReadFile(tc.path)
			}
			s, err := sqlite.Open(tc.path, sqlite.Options{})
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded", tc.path)
			}
			t.Logf("Open: %v", err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open(%q) = %v, want it to mention %q", tc.path, err, tc.want)
			}
			if tc.path != "" {
				after, _ := os.ReadFile(tc.path)
				if !bytes.Equal(before, after) {
					t.Fatalf("refused file %s was modified", tc.path)
				}
			}
		})
	}
}

func TestClosedAndCanceledErrors(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "pr.db"), sqlite.Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Keys(context.Background()); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Keys after Close = %v, want ErrClosed", err)
	}
}

// TestProcessesCreateTogether starts several processes on a path that does not exist yet,
// so they race to create the file, switch it to WAL and create the schema.
func TestProcessesCreateTogether(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "pr.db")
	const procs, per = 4, 25
	outs := make([]bytes.Buffer, procs)
	cmds := make([]*exec.Cmd, procs)
	for i := range cmds {
		cmds[i] = child(t, "increment", path, "PRHELPER_STORE_N="+strconv.Itoa(per))
		cmds[i].Stdout = &outs[i]
		cmds[i].Stderr = &outs[i]
		// stdin stays nil (/dev/null): no barrier, the opens themselves should race.
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i].String())
		}
	}
	s := openT(t, path, sqlite.Options{})
	if v, err := s.Get(context.Background(), "n"); err != nil || string(v) != strconv.Itoa(procs*per) {
		t.Fatalf("n = %q, %v; want %d", v, err, procs*per)
	}
}

// TestCorruptPagesRefused damages the pages after the header of a real store; Open must
// report corruption (SQLite's quick_check) instead of panicking or serving bad data, and
// must leave the damaged file for the operator to inspect.
func TestCorruptPagesRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pr.db")
	s := openT(t, path, sqlite.Options{})
	for i := range 50 {
		if err := s.Update(context.Background(), fmt.Sprintf("lu%02d", i), storetest.Increment); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil { // last connection: checkpoints the WAL into the file
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 3*4096 {
		t.Fatalf("store file is %d bytes, expected several pages", len(data))
	}
	for i := 4096; i < len(data); i++ {
		data[i] = byte(i*31) ^ 0xa5
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := sqlite.Open(path, sqlite.Options{})
	if err == nil {
		s2.Close()
		t.Fatal("Open of a store with damaged pages succeeded")
	}
	t.Logf("Open: %v", err)
	if !strings.Contains(err.Error(), "corrupt") && !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("Open = %v, want it to say the database is corrupt", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, data) {
		t.Fatal("Open modified the damaged file")
	}
}
