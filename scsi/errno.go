package scsi

import "golang.org/x/sys/unix"

// FromErrno maps the errno of a failed SG_IO ioctl to a SCSI status and sense,
// exactly as QEMU's scsi_sense_from_errno (scsi/utils.c) does, so that a guest sees
// the same answer through prhelper as through qemu-pr-helper. sense is zero when the
// status is not CHECK CONDITION.
func FromErrno(errno unix.Errno) (status byte, sense Sense) {
	switch errno {
	case 0:
		return StatusGood, Sense{}
	case unix.EDOM:
		return StatusTaskSetFull, Sense{}
	case unix.EBADE:
		return StatusReservationConflict, Sense{}
	case unix.ENODEV, unix.EREMOTEIO, unix.ENOMEM:
		return StatusCheckCondition, SenseTargetFailure
	case unix.ENODATA:
		return StatusCheckCondition, SenseReadError
	case unix.ENOMEDIUM:
		return StatusCheckCondition, SenseNoMedium
	case unix.EINVAL:
		return StatusCheckCondition, SenseInvalidField
	case unix.ENOSPC:
		return StatusCheckCondition, SenseSpaceAllocFailed
	}
	return StatusCheckCondition, SenseIOError
}

// Host status values of struct sg_io_hdr (the kernel's DID_* codes, QEMU's
// enum SCSIHostStatus).
const (
	HostOK                 = 0x00
	HostNoLUN              = 0x01
	HostBusy               = 0x02
	HostTimeOut            = 0x03
	HostBadResponse        = 0x04
	HostAborted            = 0x05
	HostError              = 0x07
	HostReset              = 0x08
	HostTransportDisrupted = 0x0e
	HostTargetFailure      = 0x10
	HostReservationError   = 0x11
	HostAllocationFailure  = 0x12
	HostMediumError        = 0x13
)

// FromHostStatus maps a non-zero sg_io_hdr host_status to a SCSI status and sense
// as QEMU's scsi_sense_from_host_status does. Like QEMU, an unknown host status
// yields GOOD: qemu-pr-helper reports it that way and guests depend on the same
// answer from a drop-in.
func FromHostStatus(host uint16) (status byte, sense Sense) {
	switch host {
	case HostNoLUN:
		return StatusCheckCondition, SenseLUNNotResponding
	case HostBusy:
		return StatusBusy, Sense{}
	case HostTimeOut:
		return StatusCheckCondition, SenseCommandTimeout
	case HostBadResponse:
		return StatusCheckCondition, SenseLUNCommFailure
	case HostAborted:
		return StatusCheckCondition, SenseCommandAborted
	case HostReset:
		return StatusCheckCondition, SenseReset
	case HostTransportDisrupted:
		return StatusCheckCondition, SenseITNexusLoss
	case HostTargetFailure:
		return StatusCheckCondition, SenseTargetFailure
	case HostReservationError:
		return StatusReservationConflict, Sense{}
	case HostAllocationFailure:
		return StatusCheckCondition, SenseSpaceAllocFailed
	case HostMediumError:
		return StatusCheckCondition, SenseReadError
	}
	return StatusGood, Sense{}
}
