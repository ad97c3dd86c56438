package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/internal/store/sqlite/sqlitetest"
)

// partsModel is what a key holds in the model: its parts by Seq, or its whole
// value (parts == nil), or nothing (absent).
type partsModel struct {
	absent bool
	whole  []byte
	parts  map[int64][]byte
}

func (m partsModel) value() []byte {
	if m.absent {
		return nil
	}
	if m.parts == nil {
		return m.whole
	}
	seqs := make([]int64, 0, len(m.parts))
	for s := range m.parts {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	v := []byte{}
	for _, s := range seqs {
		v = append(v, m.parts[s]...)
	}
	return v
}

// TestPartsRandom runs seeded random sequences of UpdateParts (replace, put,
// delete, a value written whole, a function that fails, one that writes
// nothing), Update (whole values, deletion) and Get on three keys, each against a model, and checks
// after every call the value Get and List return, that UpdateParts is told
// the version its last write returned only while nothing else wrote the key,
// and that a version is never given twice.
func TestPartsRandom(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 0x9a27))
			s := openT(t, filepath.Join(t.TempDir(), "pr.db"), sqlite.Options{})
			ctx := context.Background()
			keys := []string{"lu/a", "lu/b", "lu/c"}
			model := map[string]*partsModel{}
			last := map[string]uint64{}          // the version each key's last UpdateParts returned
			seen := map[string]map[uint64]bool{} // versions given to each key's UpdateParts writes
			for _, k := range keys {
				model[k] = &partsModel{absent: true}
				seen[k] = map[uint64]bool{}
			}
			randBytes := func() []byte {
				b := make([]byte, rng.IntN(40))
				for i := range b {
					b[i] = byte(rng.IntN(256)) // zero bytes too
				}
				return b
			}
			for step := range 600 {
				k := keys[rng.IntN(len(keys))]
				m := model[k]
				switch op := rng.IntN(10); {
				case op < 6:
					var p store.Parts
					inParts := !m.absent && m.parts != nil
					failing := rng.IntN(15) == 0
					switch {
					case failing:
					case !inParts || rng.IntN(8) == 0:
						p = store.Parts{Write: true, Replace: true}
						for range rng.IntN(6) {
							p.Put = append(p.Put, store.Part{Seq: rng.Int64N(50), Value: randBytes()})
						}
					case rng.IntN(10) == 0:
						// nothing written
					case rng.IntN(8) == 0:
						p = store.Parts{Write: true, Whole: randBytes()}
					default:
						p.Write = true
						for range rng.IntN(3) {
							p.Delete = append(p.Delete, rng.Int64N(50))
						}
						for range rng.IntN(3) {
							p.Put = append(p.Put, store.Part{Seq: rng.Int64N(50), Value: randBytes()})
						}
					}
					var gotVer uint64
					var gotCur []byte
					var gotParts []store.Part
					ver, err := s.UpdateParts(ctx, k, func(v uint64, read store.ReadFunc) (store.Parts, error) {
						gotVer = v
						cur, parts, err := read()
						gotCur, gotParts = cur, parts
						if err != nil {
							return store.Parts{}, err
						}
						if failing {
							return store.Parts{}, errors.New("refused")
						}
						return p, nil
					})
					if !bytes.Equal(gotCur, m.value()) || (gotCur == nil) != m.absent {
						t.Fatalf("step %d: UpdateParts read %x, model %x", step, gotCur, m.value())
					}
					if (gotParts != nil) != (!m.absent && m.parts != nil) {
						t.Fatalf("step %d: parts %v read for a value kept in parts: %v", step, gotParts, !m.absent && m.parts != nil)
					}
					if len(gotParts) != len(m.parts) {
						t.Fatalf("step %d: %d parts read, model has %d: %v, %v", step, len(gotParts), len(m.parts), gotParts, m.parts)
					}
					for i, pt := range gotParts {
						if i > 0 && pt.Seq <= gotParts[i-1].Seq || !bytes.Equal(pt.Value, m.parts[pt.Seq]) {
							t.Fatalf("step %d: parts read %v, model %v", step, gotParts, m.parts)
						}
					}
					// Another writer since this test's last write to k is
					// checked below (seen); here, no other writer: the version
					// is the one that write returned.
					if want, ok := last[k]; ok && gotVer != want && gotVer != 0 {
						t.Fatalf("step %d: UpdateParts of %s told version %d, its last write returned %d (still current: %v)", step, k, gotVer, want, ok)
					}
					if _, ok := last[k]; !ok && seen[k][gotVer] {
						t.Fatalf("step %d: %s written by Update has version %d, given before to an UpdateParts", step, k, gotVer)
					}
					if failing {
						if err == nil || !strings.Contains(err.Error(), "refused") {
							t.Fatalf("step %d: failing fn: %v", step, err)
						}
						continue
					}
					if err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
					if p.Whole != nil {
						*m = partsModel{whole: p.Whole}
					} else if p.Write {
						if p.Replace || m.parts == nil {
							m.parts = map[int64][]byte{}
						}
						m.absent = false
						for _, d := range p.Delete {
							delete(m.parts, d)
						}
						for _, pt := range p.Put {
							m.parts[pt.Seq] = pt.Value
						}
					}
					if p.Write {
						if seen[k][ver] || ver == 0 {
							t.Fatalf("step %d: version %d of %s given again", step, ver, k)
						}
						seen[k][ver] = true
					} else if ver != gotVer {
						t.Fatalf("step %d: nothing written, version %d -> %d", step, gotVer, ver)
					}
					last[k] = ver
				case op < 9:
					var next []byte
					if rng.IntN(6) != 0 {
						next = randBytes()
					}
					err := s.Update(ctx, k, func(cur []byte) ([]byte, bool, error) {
						if !bytes.Equal(cur, m.value()) {
							return nil, false, fmt.Errorf("Update read %x, model %x", cur, m.value())
						}
						return next, true, nil
					})
					if err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
					*m = partsModel{absent: next == nil, whole: next}
					delete(last, k) // another writer: the version is no longer one UpdateParts wrote
				default:
					got, err := s.Get(ctx, k)
					if err != nil || !bytes.Equal(got, m.value()) || (got == nil) != m.absent {
						t.Fatalf("step %d: Get %s = %x, %v; model %x", step, k, got, err, m.value())
					}
				}
			}
			list, err := s.List(ctx, "lu/")
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range list {
				if !bytes.Equal(e.Value, model[e.Key].value()) {
					t.Fatalf("List %s = %x, model %x", e.Key, e.Value, model[e.Key].value())
				}
			}
			if n := len(seen[keys[0]]) + len(seen[keys[1]]) + len(seen[keys[2]]); n < 100 {
				t.Fatalf("only %d parted writes", n)
			}
		})
	}
}

// TestPartsUpgradeV1 opens a database of schema version 1 (as helpers before
// it wrote them), reads its values, writes one in parts, and then writes it
// whole as a helper of schema 1 still running would (its statement, not this
// package's): the whole value wins and the version changes.
func TestPartsUpgradeV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pr.db")
	sqlitetest.WriteV1(t, path, map[string][]byte{"lu/a": {2, 0, 1}, "lu/b": {2, 3}})
	s := openT(t, path, sqlite.Options{})
	ctx := context.Background()
	for k, want := range map[string][]byte{"lu/a": {2, 0, 1}, "lu/b": {2, 3}} {
		if got, err := s.Get(ctx, k); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Get %s after the upgrade = %x, %v; want %x", k, got, err, want)
		}
	}
	var sawVer uint64
	ver, err := s.UpdateParts(ctx, "lu/a", func(v uint64, read store.ReadFunc) (store.Parts, error) {
		sawVer = v
		cur, _, err := read()
		if err != nil {
			return store.Parts{}, err
		}
		return store.Parts{Write: true, Replace: true, Put: []store.Part{{Seq: 0, Value: cur[:1]}, {Seq: 1, Value: cur[1:]}, {Seq: 2, Value: []byte{9}}}}, nil
	})
	if err != nil || sawVer != 0 || ver == 0 {
		t.Fatalf("UpdateParts on an upgraded key: version %d -> %d, %v", sawVer, ver, err)
	}
	if got, _ := s.Get(ctx, "lu/a"); !bytes.Equal(got, []byte{2, 0, 1, 9}) {
		t.Fatalf("Get after the parted write = %x", got)
	}
	// Parts written into a value kept whole are refused.
	_, err = s.UpdateParts(ctx, "lu/b", func(uint64, store.ReadFunc) (store.Parts, error) {
		return store.Parts{Write: true, Put: []store.Part{{Seq: 1, Value: []byte{1}}}}, nil
	})
	if err == nil {
		t.Fatal("parts written into a value kept whole")
	}
	s.Close()

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	var schema int
	if err := db.QueryRow("SELECT value FROM meta WHERE name = 'schema_version'").Scan(&schema); err != nil || schema != 2 {
		t.Fatalf("schema_version after the upgrade = %d, %v", schema, err)
	}
	if _, err := db.Exec("INSERT INTO lu (key, value, updated) VALUES ('lu/a', x'0207', 3) " +
		"ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = openT(t, path, sqlite.Options{})
	defer s.Close()
	if got, _ := s.Get(ctx, "lu/a"); !bytes.Equal(got, []byte{2, 7}) {
		t.Fatalf("Get after a schema 1 write of a parted value = %x, want 0207", got)
	}
	_, err = s.UpdateParts(ctx, "lu/a", func(v uint64, read store.ReadFunc) (store.Parts, error) {
		if v == ver {
			return store.Parts{}, fmt.Errorf("version %d unchanged by a schema 1 write", v)
		}
		return store.Parts{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPartsMixedInBatches appends to one key from 16 goroutines at once,
// half with Update (the whole value) and half with UpdateParts (as parts,
// from the value read), so that both kinds share transactions (group commit);
// every append must be in the final value once.
func TestPartsMixedInBatches(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "pr.db"), sqlite.Options{})
	defer s.Close()
	ctx := context.Background()
	const workers, each = 16, 40
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			var err error
			for i := 0; i < each && err == nil; i++ {
				if w%2 == 0 {
					err = s.Update(ctx, "k", func(cur []byte) ([]byte, bool, error) {
						return append(cur, 'u'), true, nil
					})
					continue
				}
				_, err = s.UpdateParts(ctx, "k", func(_ uint64, read store.ReadFunc) (store.Parts, error) {
					cur, _, err := read()
					if err != nil {
						return store.Parts{}, err
					}
					return store.Parts{Write: true, Replace: true, Put: []store.Part{{Seq: 1, Value: cur}, {Seq: 2, Value: []byte{'p'}}}}, nil
				})
			}
			errs <- err
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	v, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if u, p := bytes.Count(v, []byte{'u'}), bytes.Count(v, []byte{'p'}); u != workers/2*each || p != workers/2*each {
		t.Fatalf("%d Update and %d UpdateParts appends in the value, want %d each", u, p, workers/2*each)
	}
	// The appends above prove the batches right only if there were batches:
	// both kinds of call are counted, and most transactions held several.
	st := s.Stats()
	t.Logf("%d calls in %d transactions", st.Updates, st.Transactions)
	if st.Updates != workers*each {
		t.Fatalf("Stats.Updates = %d, want %d", st.Updates, workers*each)
	}
	if st.Transactions >= st.Updates/2 {
		t.Fatalf("group commit did not group: %d transactions for %d calls", st.Transactions, st.Updates)
	}
}
