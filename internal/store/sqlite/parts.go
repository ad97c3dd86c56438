package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/prhelper/prhelper/internal/store"
)

var _ store.PartStore = (*Store)(nil)

// Schema version 2 (docs/performance.md §5.7.6) adds to version 1's lu table a
// value kept in parts (store.PartStore) and a version per key:
//
//   - lu.parted = 1 with an empty lu.value: the value is the concatenation of
//     the key's rows of part, in seq order. Any other row of lu holds its
//     value whole (a helper of schema 1 still running when the file was
//     upgraded writes only lu.value, which then wins: parts are read only
//     under an empty value).
//   - lu.version: set by triggers on every insert and every write of value
//     or updated, whoever makes it (the triggers are part of the schema, so
//     they also fire for a schema 1 helper's statements): a write adds one to
//     the key's version (no other page written); a new key starts above meta's
//     last_version, which a deletion raises to the deleted key's version, so
//     a key never gets a version it had before, even deleted and written
//     again. (An INSERT OR REPLACE would escape the deletion's trigger; no
//     helper writes one.)
var schemaV2 = []string{
	"CREATE TABLE part (key TEXT NOT NULL, seq INTEGER NOT NULL, value BLOB NOT NULL, PRIMARY KEY (key, seq)) WITHOUT ROWID",
	"INSERT INTO meta (name, value) VALUES ('last_version', 0)",
	`CREATE TRIGGER lu_version_insert AFTER INSERT ON lu BEGIN
		UPDATE meta SET value = value + 1 WHERE name = 'last_version';
		UPDATE lu SET version = (SELECT value FROM meta WHERE name = 'last_version') WHERE key = NEW.key;
	END`,
	`CREATE TRIGGER lu_version_update AFTER UPDATE OF value, updated ON lu BEGIN
		UPDATE lu SET version = OLD.version + 1 WHERE key = NEW.key;
	END`,
	`CREATE TRIGGER lu_version_delete AFTER DELETE ON lu BEGIN
		UPDATE meta SET value = max(value, OLD.version) WHERE name = 'last_version';
		DELETE FROM part WHERE key = OLD.key;
	END`,
	// A value written whole (lu.parted set to 0) loses its parts.
	`CREATE TRIGGER lu_whole AFTER UPDATE OF parted ON lu WHEN OLD.parted = 1 AND NEW.parted = 0 BEGIN
		DELETE FROM part WHERE key = NEW.key;
	END`,
}

// luV2Columns are the columns schema 2 adds to schema 1's lu table.
var luV2Columns = []string{
	"ALTER TABLE lu ADD COLUMN parted INTEGER NOT NULL DEFAULT 0",
	"ALTER TABLE lu ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
}

// upgradeV1 turns a schema 1 database into schema 2 inside the caller's write
// transaction. The values stay as they are (whole); a key is written in
// parts on its first UpdateParts.
func (s *Store) upgradeV1(ctx context.Context) error {
	stmts := append(append([]string{}, luV2Columns...), schemaV2...)
	stmts = append(stmts, fmt.Sprintf("UPDATE meta SET value = %d WHERE name = 'schema_version'", SchemaVersion))
	for _, q := range stmts {
		if _, err := s.conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("upgrade schema 1 to %d: %w", SchemaVersion, err)
		}
	}
	return nil
}

// valueExpr is a key's whole value in one expression of a SELECT FROM lu:
// its parts concatenated in seq order when it is in parts. One statement
// reads one snapshot, so a value is never assembled from parts of two
// commits.
const valueExpr = "CASE WHEN lu.parted = 1 AND length(lu.value) = 0 THEN " +
	"coalesce((SELECT CAST(string_agg(part.value, x'' ORDER BY part.seq) AS BLOB) FROM part WHERE part.key = lu.key), x'') " +
	"ELSE lu.value END"

// UpdateParts implements store.PartStore: the call is queued with the
// Updates and committed in one of the writer's transactions (group commit).
func (s *Store) UpdateParts(ctx context.Context, key string, fn store.PartsFunc) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("store: update %q: %w", key, err)
	}
	r := &request{ctx: ctx, key: key, parts: fn, Pending: store.NewPending(), since: time.Now()}
	if err := s.submit(ctx, r); err != nil {
		return 0, err
	}
	return r.version, nil
}

// applyParts runs r's PartsFunc inside the writer's transaction and writes
// what it returns. fnErr is fn's own failure (the transaction goes on
// without it); err is the database's (the transaction fails).
func (s *Store) applyParts(ctx context.Context, r *request) (fnErr, err error) {
	ver, parted, err := s.version(ctx, r.key)
	if err != nil {
		return nil, err
	}
	var readErr error
	read := func() ([]byte, []store.Part, error) {
		if !parted {
			v, err := s.read(ctx, r.key)
			if err != nil {
				readErr = err
			}
			return v, nil, err
		}
		v, parts, err := s.readParts(ctx, r.key)
		if err != nil {
			readErr = err
		}
		return v, parts, err
	}
	p, fnErr := store.ApplyParts(r.parts, ver, read)
	if readErr != nil {
		return nil, readErr
	}
	r.version = ver
	if fnErr != nil || !p.Write {
		return fnErr, nil
	}
	if p.Whole != nil {
		if err := s.write(ctx, r.key, p.Whole, time.Now().UnixMilli()); err != nil {
			return nil, err
		}
		return nil, s.versionAfter(ctx, r, ver)
	}
	if !p.Replace && !parted {
		return fmt.Errorf("store: parts written into %q, which is not kept in parts", r.key), nil
	}
	if p.Replace {
		if _, err := s.wexec(ctx, "DELETE FROM part WHERE key = ?", r.key); err != nil {
			return nil, fmt.Errorf("write %q: %w", r.key, err)
		}
	}
	for _, seq := range p.Delete {
		if _, err := s.wexec(ctx, "DELETE FROM part WHERE key = ? AND seq = ?", r.key, seq); err != nil {
			return nil, fmt.Errorf("write %q: %w", r.key, err)
		}
	}
	for _, pt := range p.Put {
		v := pt.Value
		if v == nil {
			v = []byte{}
		}
		if _, err := s.wexec(ctx, "INSERT INTO part (key, seq, value) VALUES (?, ?, ?) "+
			"ON CONFLICT (key, seq) DO UPDATE SET value = excluded.value", r.key, pt.Seq, v); err != nil {
			return nil, fmt.Errorf("write %q: %w", r.key, err)
		}
	}
	if _, err := s.wexec(ctx, "INSERT INTO lu (key, value, updated, parted) VALUES (?, x'', ?, 1) "+
		"ON CONFLICT (key) DO UPDATE SET value = x'', updated = excluded.updated, parted = 1",
		r.key, time.Now().UnixMilli()); err != nil {
		return nil, fmt.Errorf("write %q: %w", r.key, err)
	}
	return nil, s.versionAfter(ctx, r, ver)
}

// versionAfter sets r.version to its key's version after one write of the
// key (ver: its version before, 0 when absent): one more than before (the
// update trigger), or, for a key the write created, read back.
func (s *Store) versionAfter(ctx context.Context, r *request, ver uint64) error {
	if ver != 0 {
		r.version = ver + 1
		return nil
	}
	v, _, err := s.version(ctx, r.key)
	r.version = v
	return err
}

// version reads key's version (0: absent) and whether its value is in parts,
// on the writer connection.
func (s *Store) version(ctx context.Context, key string) (ver uint64, parted bool, err error) {
	st, err := s.wstmt(ctx, "SELECT version, parted = 1 AND length(value) = 0 FROM lu WHERE key = ?")
	if err == nil {
		err = st.QueryRowContext(ctx, key).Scan(&ver, &parted)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %q: %w", key, err)
	}
	return ver, parted, nil
}

// readParts reads the parts of key, which is kept in parts, on the writer
// connection (inside the caller's transaction), and the value they make.
func (s *Store) readParts(ctx context.Context, key string) ([]byte, []store.Part, error) {
	st, err := s.wstmt(ctx, "SELECT seq, value FROM part WHERE key = ? ORDER BY seq")
	if err != nil {
		return nil, nil, fmt.Errorf("read %q: %w", key, err)
	}
	rows, err := st.QueryContext(ctx, key)
	if err != nil {
		return nil, nil, fmt.Errorf("read %q: %w", key, err)
	}
	defer rows.Close()
	parts := []store.Part{}
	n := 0
	for rows.Next() {
		var p store.Part
		if err := rows.Scan(&p.Seq, &p.Value); err != nil {
			return nil, nil, fmt.Errorf("read %q: %w", key, err)
		}
		if p.Value == nil {
			p.Value = []byte{}
		}
		parts = append(parts, p)
		n += len(p.Value)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read %q: %w", key, err)
	}
	v := make([]byte, 0, n)
	for _, p := range parts {
		v = append(v, p.Value...)
	}
	return v, parts, nil
}
