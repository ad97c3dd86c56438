// Package wire is the qemu-pr-helper socket protocol (QEMU docs/interop/pr-helper.rst)
// for both ends: the 4-byte feature handshake, the request (a 16-byte CDB carrying one
// file descriptor by SCM_RIGHTS, then the PR OUT parameter list framed on CDB bytes 7-8)
// and the reply (BE32 status, BE32 size, 96 sense bytes, data).
//
// The encoding functions are pure. The conn functions work on *net.UnixConn and only
// move bytes and descriptors; they never interpret SCSI beyond what framing needs.
//
// Use it to write a helper that QEMU can talk to, or a client that drives one
// at the level of single requests (package client adds QEMU's reconnection
// rules on top). EncodeReply applies the rules QEMU's client asserts on, so a
// helper built on it cannot make QEMU abort. The protocol, byte by byte, is in
// docs/pr-helper-protocol.md §2.
package wire
