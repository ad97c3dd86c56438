// Package sqlitetest holds fixtures for tests of the SQLite store and its
// callers.
package sqlitetest

import (
	"database/sql"
	"slices"
	"testing"

	_ "modernc.org/sqlite" // the "sqlite" driver, as the store opens it
)

// WriteV1 makes path a database of schema version 1, as helpers before
// schema version 2 (values kept in parts, docs/performance.md §5.7.6) wrote
// it, holding values: the layout such a helper created, frozen here so that
// the upgrade is tested against it and not against this package's own.
func WriteV1(t testing.TB, path string, values map[string][]byte) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"PRAGMA application_id = 1886545969",
		"PRAGMA journal_mode = WAL",
		"CREATE TABLE meta (name TEXT PRIMARY KEY, value NOT NULL)",
		"CREATE TABLE lu (key TEXT PRIMARY KEY, value BLOB NOT NULL, updated INTEGER NOT NULL)",
		"INSERT INTO meta (name, value) VALUES ('schema_version', 1)",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if _, err := db.Exec("INSERT INTO lu (key, value, updated) VALUES (?, ?, ?)", k, values[k], i+1); err != nil {
			t.Fatal(err)
		}
	}
}
