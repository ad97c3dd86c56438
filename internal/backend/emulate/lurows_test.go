package emulate

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/memory"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/internal/store/sqlite/sqlitetest"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// rowsCommand is a seeded PR OUT (mostly) or PR IN from one of 24 initiators
// on two ports, with keys 0-5 so that REGISTER with a zero key, PREEMPT and
// CLEAR remove registrations anywhere in the list, not only at its end.
func rowsCommand(r *rand.Rand) (init string, port uint16, cdb [16]byte, list []byte) {
	init = fmt.Sprintf("iqn.2025-01.dev.prhelper:rows%d", r.IntN(24))
	port = uint16(1 + r.IntN(2))
	if r.IntN(8) == 0 {
		return init, port, scsi.PRInCDB([]byte{scsi.SAReadKeys, scsi.SAReadFullStatus}[r.IntN(2)], 8192), nil
	}
	sas := []byte{scsi.SARegister, scsi.SARegister, scsi.SARegisterAndIgnoreExisting, scsi.SARegisterAndIgnoreExisting,
		scsi.SARegisterAndIgnoreExisting, scsi.SAReserve, scsi.SARelease, scsi.SAPreempt, scsi.SAPreemptAndAbort}
	sa := sas[r.IntN(len(sas))]
	if r.IntN(40) == 0 {
		sa = scsi.SAClear
	}
	types := []byte{scsi.TypeWriteExclusive, scsi.TypeExclusiveAccess, scsi.TypeWriteExclusiveRegOnly,
		scsi.TypeExclusiveAccessRegOnly, scsi.TypeWriteExclusiveAllRegs, scsi.TypeExclusiveAccessAllRegs}
	var flags byte
	if r.IntN(10) == 0 {
		flags = 0x04 // ALL_TG_PT
	}
	return init, port, scsi.PROutCDB(sa, 0, types[r.IntN(len(types))], 24), param(uint64(r.IntN(6)), uint64(r.IntN(6)), flags)
}

// TestRowsMatchOneValue is the differential of the state kept in rows
// (lurows.go, the SQLite store) against the state kept as one value (the
// memory store, which keeps no parts): seeded random command sequences from
// 24 initiators (removals in the middle of the registrations: REGISTER with
// key 0, PREEMPT, CLEAR), in chunks of 1 to 8 (one command through Execute,
// or a batch), must give the same answers and the same stored bytes after
// every chunk, and the committer's cached state must encode to them. The
// SQLite database starts in schema version 1 with a state of 40
// registrations (the upgrade, and the first write in rows), and between
// chunks the unit is now and then deleted (as prhelperctl purge does) or
// rewritten whole by Update (another writer: the committer must notice).
func TestRowsMatchOneValue(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9} {
		// Registrations per part: one, a few (runs filled, emptied and
		// deleted often), the default. Seeds 7-9 run both backends through a
		// fence.Coordinator without a policy, as the daemon does under
		// --fence=none, and now and then put another helper's fence record
		// in the value (which the rows then leave to the coordinator).
		perRun := []int{1, 3, 0}[seed%3]
		// The largest state kept whole: none (parts always), 700 bytes
		// (the state goes from whole to parts and back), the default.
		wholeMax := []int{-1, 700, 0}[seed/3%3]
		fencing := seed >= 7
		t.Run(fmt.Sprintf("seed=%d/per_run=%d/whole_max=%d/fencing=%v", seed, perRun, wholeMax, fencing), func(t *testing.T) {
			t.Logf("seed %d", seed)
			r := rand.New(rand.NewPCG(seed, 0x407))
			var seed0 pr.State
			for i := range 40 {
				pi, err := ParseInitiator(fmt.Sprintf("iqn.2025-01.dev.prhelper:seed%d", i))
				if err != nil {
					t.Fatal(err)
				}
				seed0.Registrations = append(seed0.Registrations, pr.Registration{Nexus: pr.Nexus{Initiator: pi, RTPI: 1}, Key: uint64(i%5 + 1)})
			}
			v0, _ := seed0.MarshalBinary()
			path := filepath.Join(t.TempDir(), "pr.db")
			key := KeyPrefix + "rows"
			sqlitetest.WriteV1(t, path, map[string][]byte{key: v0})
			sq, err := sqlite.Open(path, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer sq.Close()
			mem := memory.New()
			ctx := context.Background()
			if err := mem.Update(ctx, key, func([]byte) ([]byte, bool, error) { return v0, true, nil }); err != nil {
				t.Fatal(err)
			}
			// otherB is a second helper on the same file: now and then a
			// chunk goes through it, so that each finds the other's parts.
			rowsB, otherB, oneB := New(sq, pr.LIO()), New(sq, pr.LIO()), New(mem, pr.LIO())
			rowsB.runRegs, rowsB.wholeMax = perRun, wholeMax
			otherB.runRegs, otherB.wholeMax = perRun, wholeMax
			if fencing {
				rowsB.WithFencing(fence.New(fence.Options{Store: sq, KeyPrefix: KeyPrefix, Profile: pr.LIO(), HelperID: "rows"}))
				otherB.WithFencing(fence.New(fence.Options{Store: sq, KeyPrefix: KeyPrefix, Profile: pr.LIO(), HelperID: "other"}))
				oneB.WithFencing(fence.New(fence.Options{Store: mem, KeyPrefix: KeyPrefix, Profile: pr.LIO(), HelperID: "one"}))
				if !rowsB.rowsFencing() {
					t.Fatal("a coordinator without a policy does not let the unit be kept in rows")
				}
			}
			withRecords, recordChunks, waited := 0, 0, 0 // chunks left with a fence record in the value
			stores := []store.Store{sq, mem}
			deletions, rewrites, removed, maxRegs, checked, inParts := 0, 0, 0, 0, 0, 0
			for step := 0; step < 300; {
				switch x := r.IntN(40); {
				case x == 0:
					deletions++
					for _, s := range stores {
						if err := s.Update(ctx, key, func([]byte) ([]byte, bool, error) { return nil, true, nil }); err != nil {
							t.Fatal(err)
						}
					}
					continue
				case (x == 2 || x == 3) && fencing && withRecords == 0:
					// Another helper's eviction, not yet confirmed: a record
					// in the value, as fence.Encode writes it.
					rec := []fence.Record{{ID: fmt.Sprintf("other/%d/x", step), Victim: "iqn.2025-01.dev.prhelper:gone", Evictor: "iqn.2025-01.dev.prhelper:rows0", Created: int64(step)}}
					for _, s := range stores {
						if err := s.Update(ctx, key, func(cur []byte) ([]byte, bool, error) {
							v, err := fence.Encode(cur, rec)
							return v, cur != nil, err
						}); err != nil {
							t.Fatal(err)
						}
					}
					withRecords = 1 + r.IntN(4)
					continue
				case x == 1:
					rewrites++
					if err := sq.Update(ctx, key, func(cur []byte) ([]byte, bool, error) { return cur, cur != nil, nil }); err != nil {
						t.Fatal(err)
					}
					continue
				}
				cur := rowsB
				if r.IntN(5) == 0 {
					cur = otherB
				}
				size := 1
				if r.IntN(2) == 0 || withRecords > 0 {
					// With a record, batches only: through Execute a GOOD
					// PR OUT would wait for the record's confirmation.
					size = 2 + r.IntN(7)
				}
				var gotRows, gotOne []scsi.Result
				var rowsCmds, oneCmds []*luCommand
				var names []string
				for range size {
					init, port, cdb, p := rowsCommand(r)
					names = append(names, fmt.Sprintf("%s from %s port %d", scsi.CommandName(cdb[:]), init, port))
					if size == 1 {
						for _, b := range []*Backend{cur, oneB} {
							// A non-GOOD answer comes with an error describing it.
							rep, _ := b.Execute(ctx, &backend.Request{CDB: cdb, Param: p, FD: -1, Initiator: init, TargetPort: port, LU: "rows"})
							if b == cur {
								gotRows = append(gotRows, rep)
							} else {
								gotOne = append(gotOne, rep)
							}
						}
						continue
					}
					pi, err := ParseInitiator(init)
					if err != nil {
						t.Fatal(err)
					}
					mk := func() *luCommand {
						return &luCommand{Pending: store.NewPending(), ctx: ctx, nexus: pr.Nexus{Initiator: pi, RTPI: port}, cdb: cdb[:], param: p}
					}
					rowsCmds, oneCmds = append(rowsCmds, mk()), append(oneCmds, mk())
				}
				var waits [2][]*fence.Wait
				if size > 1 {
					for bi, b := range []*Backend{cur, oneB} {
						cmds := rowsCmds
						if b == oneB {
							cmds = oneCmds
						}
						q := b.queues.get(key)
						b.began(q)
						b.commitBatch(q, nil, cmds)
						for _, c := range cmds {
							if err := c.Wait(ctx); err != nil {
								t.Fatalf("step %d: batch: %v", step, err)
							}
							waits[bi] = append(waits[bi], c.wait)
							res := c.res
							if b == cur {
								gotRows = append(gotRows, res)
							} else {
								gotOne = append(gotOne, res)
							}
						}
					}
				}
				for _, w := range waits[0] {
					if w != nil {
						waited++
					}
				}
				if !reflect.DeepEqual(waits[0], waits[1]) {
					t.Fatalf("seed %d steps %d-%d: waits in rows %v, as one value %v", seed, step+1, step+size, waits[0], waits[1])
				}
				if withRecords > 0 {
					recordChunks++
					if withRecords--; withRecords == 0 {
						// Confirmed: the record goes, as Fence removes it.
						for _, s := range stores {
							if err := s.Update(ctx, key, func(cur []byte) ([]byte, bool, error) {
								v, _, err := fence.Decode(cur)
								return v, cur != nil, err
							}); err != nil {
								t.Fatal(err)
							}
						}
					}
				}
				for k := range gotRows {
					if !reflect.DeepEqual(gotRows[k], gotOne[k]) {
						t.Fatalf("seed %d step %d (%s): in rows %+v, as one value %+v", seed, step+k+1, names[k], gotRows[k], gotOne[k])
					}
				}
				vr, err := sq.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				vo, _ := mem.Get(ctx, key)
				if !bytes.Equal(vr, vo) || (vr == nil) != (vo == nil) {
					t.Fatalf("seed %d steps %d-%d: stored in rows %x, as one value %x", seed, step+1, step+size, vr, vo)
				}
				if q := rowsB.queues.get(key); q.decoded && q.rowsVer != 0 && storedVersion(t, sq, key) == q.rowsVer {
					// The committer's cache, when the stored value is still
					// the one it wrote (a PR IN alone does not go through it).
					cached, _ := q.st.MarshalBinary()
					if !bytes.Equal(cached, vr) {
						t.Fatalf("seed %d steps %d-%d: the committer's state encodes to %x, stored %x", seed, step+1, step+size, cached, vr)
					}
					if len(q.rows.IDs) != len(q.st.Registrations) {
						t.Fatalf("seed %d: %d row IDs for %d registrations", seed, len(q.rows.IDs), len(q.st.Registrations))
					}
					checkRuns(t, sq, key, q, rowsB.regsPerRun())
					checked++
					if q.inParts {
						inParts++
					}
				}
				var st pr.State
				if sb, _, err := fence.Decode(vr); err != nil {
					t.Fatal(err)
				} else if sb != nil {
					if err := st.UnmarshalBinary(sb); err != nil {
						t.Fatal(err)
					}
				}
				removed += max(0, maxRegs-len(st.Registrations))
				maxRegs = len(st.Registrations)
				step += size
			}
			chunks := rowsB.queues.batches.Load()
			t.Logf("%d deletions, %d rewrites by Update, %d registrations removed; %d of %d batches written as the rows they changed; parts checked after %d (%d in parts, the others whole); %d chunks with a fence record, %d commands waiting for it",
				deletions, rewrites, removed, rowsB.queues.inRows.Load(), chunks, checked, inParts, recordChunks, waited)
			if wholeMax < 0 && inParts != checked || wholeMax > 0 && (inParts == 0 || inParts == checked) {
				t.Fatalf("%d of %d checks found the state in parts with at most %d bytes kept whole", inParts, checked, wholeMax)
			}
			adopted := rowsB.queues.adopted.Load() + otherB.queues.adopted.Load()
			t.Logf("%d batches went on from the other helper's parts", adopted)
			if wholeMax < 0 && adopted == 0 {
				t.Fatal("no batch went on from the other helper's parts")
			}
			if fencing && (recordChunks == 0 || waited == 0) {
				t.Fatalf("%d chunks ran with a fence record in the value, %d commands told to wait for it", recordChunks, waited)
			}
			if rowsB.queues.inRows.Load() < chunks/2 || checked < int(chunks)/2 {
				t.Fatal("most batches were written whole: the rows were not tested")
			}
			if removed == 0 {
				t.Fatal("no registration removed: the sequence does not test removals")
			}
		})
	}
}

// checkRuns checks the parts the committer wrote against what it keeps: the
// head, one part per run of at most per registrations (none empty), the
// tail, read from the database itself.
func checkRuns(t *testing.T, sq *sqlite.Store, key string, q *luQueue, per int) {
	t.Helper()
	db, err := sql.Open("sqlite", sq.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT seq, value FROM part WHERE key = ? ORDER BY seq", key)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var seqs []int64
	var vals [][]byte
	for rows.Next() {
		var s int64
		var v []byte
		if err := rows.Scan(&s, &v); err != nil {
			t.Fatal(err)
		}
		seqs, vals = append(seqs, s), append(vals, v)
	}
	want := append(append([]int64{headSeq}, q.runs...), tailSeq)
	if !q.inParts {
		want = nil // kept whole
	}
	if !reflect.DeepEqual(seqs, want) {
		t.Fatalf("parts %v, the committer's runs %v", seqs, q.runs)
	}
	for k, s := range q.runs {
		// A run holds the IDs from its number to the next run's (its
		// first registration may be gone).
		i, _ := slices.BinarySearch(q.rows.IDs, s)
		end := len(q.rows.IDs)
		if k+1 < len(q.runs) {
			end, _ = slices.BinarySearch(q.rows.IDs, q.runs[k+1])
		}
		if end <= i || end-i > per {
			t.Fatalf("run %d (of %v): registrations %d to %d of IDs %v", s, q.runs, i, end, q.rows.IDs)
		}
		if !bytes.Equal(vals[k+1], appendRegs(nil, &q.st, i, end)) {
			t.Fatalf("run %d: part %x, registrations %d to %d encode to %x", s, vals[k+1], i, end, appendRegs(nil, &q.st, i, end))
		}
	}
}

// storedVersion reads key's version from the database itself.
func storedVersion(t *testing.T, sq *sqlite.Store, key string) uint64 {
	t.Helper()
	db, err := sql.Open("sqlite", sq.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v uint64
	if err := db.QueryRow("SELECT version FROM lu WHERE key = ?", key).Scan(&v); err != nil && err != sql.ErrNoRows {
		t.Fatal(err)
	}
	return v
}

// TestUnitsIdleAfterBatches: once every command is answered, each unit's
// queue comes back to idle (no committer running, no batch counted in flight)
// and no unit counts as busy, on the one-value path (memory store) and on the
// rows path (SQLite): a batch that is never counted out keeps its unit from
// being swept and counts it busy for good.
func TestUnitsIdleAfterBatches(t *testing.T) {
	sq, err := sqlite.Open(filepath.Join(t.TempDir(), "pr.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	for name, st := range map[string]store.Store{"memory": memory.New(), "sqlite": sq} {
		t.Run(name, func(t *testing.T) {
			b := New(st, pr.LIO())
			for i := range 30 {
				lu := fmt.Sprintf("lu%d", i%3)
				init := fmt.Sprintf("iqn.2025-01.dev.prhelper:idle%d", i)
				if r := run(t, b, lu, out(init, scsi.SARegisterAndIgnoreExisting, 0, 0, uint64(i+1))); r.Status != scsi.StatusGood {
					t.Fatalf("REGISTER AND IGNORE EXISTING KEY %d: %v", i, r)
				}
			}
			// The committer sets itself idle just after it answers its last
			// batch: wait for that, a bounded number of times.
			for try := 0; ; try++ {
				busy := b.queues.busy.Load()
				var left []string
				b.queues.mu.Lock()
				for k, q := range b.queues.m {
					q.mu.Lock()
					if q.running || q.inflight != 0 {
						left = append(left, fmt.Sprintf("%s (running %v, in flight %d)", k, q.running, q.inflight))
					}
					q.mu.Unlock()
				}
				b.queues.mu.Unlock()
				if busy == 0 && len(left) == 0 {
					break
				}
				if try == 1000 {
					t.Fatalf("units not idle after every answer: busy %d, %v", busy, left)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}
