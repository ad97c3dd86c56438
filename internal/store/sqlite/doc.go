// Package sqlite is the durable store.Store: one SQLite database file that every prhelper
// process on a host shares (libvirt's managed mode starts one helper per VM, and all of
// them must agree on the reservations of a shared disk).
//
// Durability and atomicity come from SQLite itself: the database runs in WAL mode with
// synchronous=FULL, so a COMMIT returns only after the write-ahead log is fsynced, and
// every Update runs inside BEGIN IMMEDIATE, which takes the database's single write lock
// up front. Writers in other processes therefore serialise on that lock instead of
// deadlocking on a read-to-write upgrade, and SQLITE_BUSY is retried with bounded,
// context-aware backoff.
//
// Within one process, Updates that arrive while a transaction is committing are grouped
// into the next transaction (group commit): one fsync acknowledges the whole group. Each
// update's fn runs in arrival order on the value left by the updates before it, its
// error discards only its own result, and every caller is answered only after the COMMIT
// that made its change durable.
//
// SQLite's write lock has no queue: a process that commits back to back can keep
// another waiting (observed in TestTwoProcesses/saturated), so under sustained
// saturation an Update in a starved process fails with store.ErrBusy after
// Options.BusyTimeout instead of hanging. The timeout runs from when each Update was
// queued: one queued behind a batch that waited for the lock does not wait a second
// full timeout. PR traffic is sparse (registrations and
// reservations, not I/O), where the processes interleave freely.
//
// Schema version 2 (parts.go) keeps a value either whole or in parts (store.PartStore,
// docs/performance.md §5.7.6) and gives every key a version on every write (triggers, so
// that a schema 1 helper still running on the file bumps it too). Open upgrades a version
// 1 file in place; helpers of schema 1 then refuse to open it.
//
// The file is made 0600 in a 0700 directory when missing. An existing file is never
// deleted, truncated or rewritten by Open: a file that is not a SQLite database, a
// database that belongs to something else or carries a newer schema is refused with an
// error. The driver is modernc.org/sqlite, so the package builds with CGO_ENABLED=0.
package sqlite
