// Package etcd is the store.Store that several hosts share: the state of each logical
// unit is one key in an etcd cluster (v3 API), so helpers on different hosts (libvirt
// hosts, KubeVirt nodes) see one reservation state per logical unit, and a VM that
// migrates finds its registrations on the new host.
//
// # Keys
//
// Under the prefix (default "/prhelper/"):
//
//	<prefix>state/<key>      the value of one store key (for the emulate backend
//	                         <key> is "lu/<logical-unit name>"): a one-byte format
//	                         marker (1 = value follows, 0 = deleted) and the value
//	<prefix>applied/<id>     an empty record, written in the same transaction as a
//	                         state change and attached to a lease that expires after
//	                         Options.RecordTTL: it says that transaction <id> committed
//
// Write access to the prefix is control of every reservation stored there: whoever can
// write it can register, reserve and preempt for any VM. Give the helpers a client
// certificate (etcd's RBAC on the prefix) and nobody else.
//
// # One command, one transaction
//
// An Update reads the key (or uses the value and ModRevision its own last transaction
// left, kept per key), runs fn, and commits the result with a transaction whose
// compares are "the key's ModRevision is still the one fn saw" and "no record of this
// transaction exists yet". When another helper wrote the key in between, the
// transaction's Else branch returns the current value and fn runs again on it (bounded
// by Options.MaxConflicts and by Options.Timeout). A deleted value is kept as a tombstone, so a key's
// ModRevision never goes back and a compare can never succeed on a value it was not
// computed from.
//
// An Update that changes nothing still confirms, with a read-only transaction (a
// linearizable read in etcd), that the value fn saw is current; so a PR IN answer is
// never older than a change another host already acknowledged.
//
// Updates of one key from one process are grouped: while a transaction for the key is
// in flight, the Updates that arrive queue up and the next transaction runs all their
// fns in order, each on the value the previous one left (group commit, as the SQLite
// store does). Those fns already run while the transaction is in flight, on the value
// it writes, and their results are used only if it committed (pipelining); while
// another helper competes for the key (a conflict in the last 500 ms) there is no
// pipelining and a small random pause before each transaction, so that neither helper
// starves the other. The writes of several keys that are ready at the same time share
// one etcd transaction, each with its own compares and its own record
// (Options.Committers such transactions in flight, one by default: the writes
// that become ready meanwhile share the next).
//
// The committer pulls (docs/performance.md §5.6.1): a key's write waits on a list
// until a committer is free, and until it takes the write the Updates that arrive for
// the key join it (their fns run on its value, which it then carries). The Updates
// that arrive while the key's write is in a transaction form the next batch, whose
// write is chained after it: when the transaction commits, the committer offers that
// write itself, with the revision it just learnt, so its next transaction carries
// every key that has work. A caller may keep several Updates of a key queued
// (store.Queuer); they run in the order queued.
//
// # Exactly once
//
// When the helper cannot tell whether a transaction committed (a timeout, a connection
// lost after etcd applied it), it submits the very same transaction again: same id,
// same value, same compares. At most one of the copies can commit, because each
// requires the absence of the record the other writes. A copy that succeeds says the
// change is applied now; a copy that fails returns the record when an earlier copy did
// commit, and the caller gets the answer of that commit (fn is not run again). Only
// when the record is absent and the key has moved on is fn run again, on the new value.
//
// # Quorum loss
//
// Every Update is bounded by Options.Timeout (default 10 s) from the moment it was
// called, each etcd request by Options.AttemptTimeout. A leader election or a member
// restart is retried inside that bound and is invisible to the caller. When etcd has
// no quorum for longer, Update fails with an error wrapping store.ErrBusy (the emulate
// backend answers ABORTED COMMAND, which guests retry), and, when the outcome of its
// transaction stayed unknown, the error says so: the change was not acknowledged and
// may or may not be applied, exactly as when a SCSI target's reply is lost. Nothing that
// was acknowledged is lost (etcd acknowledged it from a quorum), and service resumes by
// itself when quorum returns.
package etcd
