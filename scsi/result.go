package scsi

import "golang.org/x/sys/unix"

// Result is how a SCSI command ended, as a device server reports it to the
// application client: the output arguments of SAM-5's Execute Command
// procedure call (SAM-5 §5.1), a status byte, the sense data that goes with a
// CHECK CONDITION and, for a command that reads, the parameter data.
//
// Every way prhelper reaches storage (SG_IO pass-through, the <linux/pr.h>
// ioctls, dm-multipath, the emulation engine) answers with a Result; turning
// one into the helper protocol's reply is the daemon's server's job, and the
// protocol's own rules (no data unless PR IN with GOOD status, data cut to the
// allocation length, sense padded to 96 bytes) are applied there.
type Result struct {
	// Status is the SAM-5 status (SAM-5 §5.3.1), e.g. StatusGood.
	Status byte
	// Sense is the sense data (SPC-4 §4.5): the fixed-format bytes prhelper
	// builds (see CheckCondition), or a device's own sense buffer passed
	// through unchanged, in whatever format and length the device wrote it.
	// It is normally empty unless Status is CHECK CONDITION.
	Sense []byte
	// Data is the parameter data a GOOD PERSISTENT RESERVE IN returned. It may
	// be longer than the allocation length; whoever frames it cuts it.
	Data []byte
}

// Good is GOOD status with data (nil for a command that returns none).
func Good(data []byte) Result {
	return Result{Status: StatusGood, Data: data}
}

// CheckCondition is CHECK CONDITION with s as current, fixed-format sense data
// (SPC-4 §4.5.3), the bytes QEMU's scsi_build_sense writes.
func CheckCondition(s Sense) Result {
	return Result{Status: StatusCheckCondition, Sense: s.Fixed()}
}

// Conflict is RESERVATION CONFLICT (SAM-5 §5.3.1): a command a persistent
// reservation does not allow (SPC-4 §5.13.1). It carries no sense data.
func Conflict() Result {
	return Result{Status: StatusReservationConflict}
}

// Errno is the answer qemu-pr-helper gives when the SG_IO ioctl fails with
// errno (see FromErrno): a status alone, or CHECK CONDITION with fixed-format
// sense.
func Errno(errno unix.Errno) Result {
	st, s := FromErrno(errno)
	return withSense(st, s)
}

// HostStatus is the answer qemu-pr-helper gives for a non-zero sg_io_hdr
// host_status (see FromHostStatus).
func HostStatus(host uint16) Result {
	st, s := FromHostStatus(host)
	return withSense(st, s)
}

// withSense is status st, with s as fixed-format sense when st is CHECK
// CONDITION.
func withSense(st byte, s Sense) Result {
	if st == StatusCheckCondition {
		return CheckCondition(s)
	}
	return Result{Status: st}
}

// ParseSense decodes the sense key, ASC and ASCQ of r.Sense (see the function
// ParseSense); ok is false when r carries no sense data it can read.
func (r Result) ParseSense() (s Sense, ok bool) {
	return ParseSense(r.Sense)
}

// String describes r for logs: the status name, with the sense key/ASC/ASCQ
// for CHECK CONDITION, e.g. "CHECK CONDITION 5/24/00".
func (r Result) String() string {
	s := StatusName(r.Status)
	if r.Status == StatusCheckCondition {
		if sn, ok := r.ParseSense(); ok {
			s += " " + sn.String()
		}
	}
	return s
}
