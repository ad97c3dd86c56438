package emulate

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// foreignWriteLock takes the database's write lock through a connection of its
// own, as another process (a second helper, the sqlite3 shell) would.
func foreignWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if !done {
			done = true
			conn.ExecContext(context.Background(), "ROLLBACK")
			conn.Close()
			db.Close()
		}
	}
	t.Cleanup(release)
	return release
}

// TestPRInBesideForeignWriteLock is issue 12 item 5: a foreign write lock made
// READ KEYS and REPORT CAPABILITIES wait for it (up to 17.5 s). A PR IN that
// changes nothing is answered from a read, which WAL lets run beside a writer;
// one that must consume a unit attention still needs the lock. PR OUT under the
// lock gets the transient sense after the busy timeout.
func TestPRInBesideForeignWriteLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pr.db")
	st, err := sqlite.Open(path, sqlite.Options{BusyTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b := New(st, pr.LIO())
	if r := run(t, b, "lu", out("iqn.a", scsi.SARegister, 0, 0, 0xa)); r.Status != scsi.StatusGood {
		t.Fatalf("REGISTER: %v", r)
	}
	release := foreignWriteLock(t, path)
	for _, sa := range []byte{scsi.SAReadKeys, scsi.SAReadReservation, scsi.SAReportCapabilities, scsi.SAReadFullStatus} {
		res, err := b.Execute(context.Background(), &backend.Request{CDB: scsi.PRInCDB(sa, 8192), Initiator: "iqn.b", LU: "lu"})
		if err != nil || res.Status != scsi.StatusGood {
			t.Errorf("PR IN %d under a foreign write lock: %v, %v; want GOOD without the lock", sa, res, err)
		}
	}
	res, err := b.Execute(context.Background(), &backend.Request{CDB: scsi.PROutCDB(scsi.SARegister, 0, 0, 24),
		Param: param(0, 0xb, 0), Initiator: "iqn.b", LU: "lu"})
	if err == nil || res.Status != scsi.StatusCheckCondition || senseOf(res) != scsi.SenseIOError {
		t.Errorf("PR OUT under a foreign write lock: %v, %v; want CHECK CONDITION %v (retried by guests)", res, err, scsi.SenseIOError)
	}
	release()
	if r := run(t, b, "lu", in("iqn.a", scsi.SAReadKeys)); r.Status != scsi.StatusGood || len(r.Data) != 16 {
		t.Fatalf("READ KEYS after the lock: %v", r)
	}
}

// faultyStore answers every call with err: the store's side of a fault, for
// the backend's choice of sense.
type faultyStore struct{ err error }

func (f faultyStore) Update(context.Context, string, store.UpdateFunc) error { return f.err }
func (f faultyStore) Get(context.Context, string) ([]byte, error)            { return nil, f.err }
func (f faultyStore) Keys(context.Context) ([]string, error)                 { return nil, f.err }
func (f faultyStore) List(context.Context, string) ([]store.Entry, error)    { return nil, f.err }
func (f faultyStore) Close() error                                           { return nil }

// TestStoreFaultSense is issue 12 item 5: busy, full and read-only stores are
// transient and get ABORTED COMMAND, I/O PROCESS TERMINATED (0B/00/06), which
// guests retry, not HARDWARE ERROR (04/44/00); a removed database and a state
// that cannot be decoded are not transient and keep 04/44/00
// (docs/store-faults.md).
func TestStoreFaultSense(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want scsi.Sense
	}{
		{fmt.Errorf("x: %w", store.ErrBusy), scsi.SenseIOError},
		{fmt.Errorf("x: %w", store.ErrFull), scsi.SenseIOError},
		{fmt.Errorf("x: %w", store.ErrReadOnly), scsi.SenseIOError},
		{fmt.Errorf("x: %w", store.ErrGone), scsi.SenseTargetFailure},
		{fmt.Errorf("x: %w", pr.ErrState), scsi.SenseTargetFailure},
	} {
		b := New(faultyStore{tc.err}, pr.LIO())
		for _, c := range []cmd{in("iqn.a", scsi.SAReadKeys), out("iqn.a", scsi.SARegister, 0, 0, 1)} {
			res, err := b.Execute(context.Background(), &backend.Request{CDB: c.cdb, Param: c.param, Initiator: c.init, LU: "lu"})
			if err == nil || res.Status != scsi.StatusCheckCondition || senseOf(res) != tc.want {
				t.Errorf("%v, %s: %v (%v), want CHECK CONDITION %v", tc.err, scsi.CommandName(c.cdb[:]), res, err, tc.want)
			}
		}
	}
}
