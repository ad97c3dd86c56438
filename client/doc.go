// Package client is a Go client for the qemu-pr-helper socket protocol that behaves
// like QEMU's pr-manager-helper (scsi/pr-manager-helper.c): one request at a time per
// connection, and a lost connection is re-established before the next CDB is sent
// (up to five attempts, one second apart), never in the middle of a command.
//
// Use it to send PERSISTENT RESERVE IN/OUT commands from Go through any
// helper socket — prhelper's or QEMU's own qemu-pr-helper — for a device the
// calling process has open: a cluster agent checking or fencing a shared disk,
// a test of a helper, or a tool like cmd/prpersist. Build CDBs and parameter
// lists with package scsi; replies come back as wire.Reply, and the PR IN
// helpers (ReadKeys, ReadReservation, ...) also decode the data. The example
// runs against an in-process helper. The protocol is described in
// docs/pr-helper-protocol.md.
package client
