// Package store defines where the persistent-reservation state of each logical unit lives
// between commands: a key (the logical unit's identity) maps to opaque bytes (the pr
// engine's marshalled State), and every PERSISTENT RESERVE OUT command is one atomic
// read-modify-write of those bytes.
//
// The contract is deliberately narrow. SPC-4 §5.14 requires that a PR OUT command's effect
// be all-or-nothing and, for APTPL, survive power loss; the daemon therefore runs the whole
// engine step inside Store.Update and replies to QEMU only after Update returned, so a
// GOOD status always names a state that is already durable. The store never interprets
// the bytes and does not import package pr.
//
// A store may also keep a value in parts (PartStore, docs/performance.md §5.7.6), so that
// an update writes only the parts it changes; every reader still sees the whole value.
// store/sqlite does; store/memory and store/etcd keep every value whole.
//
// Implementations: store/memory (tests), store/sqlite (one file shared by every helper
// process on a host) and store/etcd (one etcd cluster shared by the helpers of several
// hosts). The shared behavioural test suite is store/storetest.
package store
