// Package client is a Go client for the qemu-pr-helper socket protocol that behaves
// like QEMU's pr-manager-helper (scsi/pr-manager-helper.c): one request at a time per
// connection, and a lost connection is re-established before the next CDB is sent
// (up to five attempts, one second apart), never in the middle of a command.
package client
