// Package emulate is the backend that keeps persistent reservations in software:
// the SPC-4 engine (package pr) over a durable store (package store), one atomic
// read-modify-write of the logical unit's state per command.
//
// It serves storage that cannot do persistent reservations (a disk image, a plain
// block device), and storage that cannot tell the VMs of one host apart: here each
// VM can be its own initiator (backend.Request.Initiator, from the listener's
// identity policy), so two VMs on one host can fence each other.
//
// What emulation does not do: the helper is not on the data path. It arbitrates
// who holds the reservation, exactly as a target would answer PR commands, but it
// cannot refuse a guest's READ or WRITE: a fenced VM's I/O still reaches the disk.
// Unit attentions (e.g. REGISTRATIONS PREEMPTED) are reported only on the next PR
// command the nexus sends through the helper, never on I/O. Every host and helper
// that shares a logical unit must share the same store.
package emulate
