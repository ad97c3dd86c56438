package linuxpr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/kernel/blkpr"
	"github.com/prhelper/prhelper/scsi"
)

// outCall is one PERSISTENT RESERVE OUT command translated to a <linux/pr.h>
// ioctl: the request number and its argument (the field Req names).
type outCall struct {
	Name string // for logs: "IOC_PR_REGISTER" …
	Req  uint
	Reg  blkpr.Registration // IOC_PR_REGISTER
	Res  blkpr.Reservation  // IOC_PR_RESERVE, IOC_PR_RELEASE
	Pre  blkpr.Preempt      // IOC_PR_PREEMPT, IOC_PR_PREEMPT_ABORT
	Clr  blkpr.Clear        // IOC_PR_CLEAR
}

// arg returns the pointer to pass to the ioctl.
func (c *outCall) arg() unsafe.Pointer {
	switch c.Req {
	case blkpr.IOC_PR_REGISTER:
		return unsafe.Pointer(&c.Reg)
	case blkpr.IOC_PR_RESERVE, blkpr.IOC_PR_RELEASE:
		return unsafe.Pointer(&c.Res)
	case blkpr.IOC_PR_PREEMPT, blkpr.IOC_PR_PREEMPT_ABORT:
		return unsafe.Pointer(&c.Pre)
	case blkpr.IOC_PR_CLEAR:
		return unsafe.Pointer(&c.Clr)
	}
	return nil
}

// refusal is a PR OUT command the backend answers itself with CHECK CONDITION,
// because the ioctls cannot express it or a device would reject it.
type refusal struct {
	Sense scsi.Sense
	Why   string
}

func (r *refusal) Error() string { return r.Why + " (" + r.Sense.String() + ")" }

func refuse(s scsi.Sense, format string, a ...any) *refusal {
	return &refusal{Sense: s, Why: fmt.Sprintf(format, a...)}
}

// translateOut maps a PERSISTENT RESERVE OUT CDB and its parameter list to the
// ioctl that does the same (docs/linux-pr.md §4), or to the CHECK CONDITION a device
// would answer or that says the ioctls cannot do it. The checks, in order:
//
//  1. REGISTER AND MOVE, REPLACE LOST RESERVATION and reserved service actions:
//     05/24/00 INVALID FIELD IN CDB (no ioctl; LIO answers an unknown SA so).
//  2. PARAMETER LIST LENGTH (CDB bytes 5-8) below 24: 05/1A/00 (LIO).
//  3. SPEC_I_PT: 05/26/00 INVALID FIELD IN PARAMETER LIST. LIO answers so for
//     every SA but REGISTER; for REGISTER the ioctl has no TransportIDs.
//  4. PARAMETER LIST LENGTH other than 24: 05/1A/00 (LIO, basic list).
//  5. ALL_TG_PT on REGISTER or REGISTER AND IGNORE EXISTING KEY: 05/26/00 (no
//     flag for it; the other SAs ignore the bit, SPC-4 §6.16.3).
//  6. RESERVE, RELEASE, PREEMPT, PREEMPT AND ABORT: SCOPE other than LU, or a
//     TYPE enum pr_type cannot carry (0, 2, 4, 9-15): 05/24/00.
//
// APTPL is not passed on: sd sets it on every REGISTER and nvme always asks for
// persistence, so it is effectively 1. param shorter than 24 bytes (the server
// never sends that when the CDB says 24) reads as zero-padded.
func translateOut(cdb []byte, param []byte) (outCall, *refusal) {
	sa := scsi.ServiceAction(cdb)
	scope, typ := cdb[2]>>4, cdb[2]&0x0f
	switch sa {
	case scsi.SARegister, scsi.SAReserve, scsi.SARelease, scsi.SAClear,
		scsi.SAPreempt, scsi.SAPreemptAndAbort, scsi.SARegisterAndIgnoreExisting:
	case scsi.SARegisterAndMove:
		return outCall{}, refuse(scsi.SenseInvalidField, "REGISTER AND MOVE has no <linux/pr.h> ioctl")
	case scsi.SAReplaceLostReservation:
		return outCall{}, refuse(scsi.SenseInvalidField, "REPLACE LOST RESERVATION has no <linux/pr.h> ioctl")
	default:
		return outCall{}, refuse(scsi.SenseInvalidField, "PR OUT service action 0x%02x is reserved", sa)
	}
	listLen := binary.BigEndian.Uint32(cdb[5:9])
	if listLen < scsi.PROutParamLen {
		return outCall{}, refuse(scsi.SenseInvalidParamLen, "parameter list length %d, want %d", listLen, scsi.PROutParamLen)
	}
	var buf [scsi.PROutParamLen]byte
	copy(buf[:], param)
	p, _ := scsi.DecodePROutParams(buf[:]) // 24 bytes: errors only with SPEC_I_PT, checked next
	if p.SpecIPT {
		return outCall{}, refuse(scsi.SenseInvalidParam, "SPEC_I_PT: the ioctls cannot register other initiators")
	}
	if listLen != scsi.PROutParamLen {
		return outCall{}, refuse(scsi.SenseInvalidParamLen, "parameter list length %d, want %d", listLen, scsi.PROutParamLen)
	}

	switch sa {
	case scsi.SARegister, scsi.SARegisterAndIgnoreExisting:
		if p.AllTgPt {
			return outCall{}, refuse(scsi.SenseInvalidParam, "ALL_TG_PT: the ioctls cannot register on all target ports")
		}
		c := outCall{Name: "IOC_PR_REGISTER", Req: blkpr.IOC_PR_REGISTER, Reg: blkpr.Registration{OldKey: p.Key, NewKey: p.SAKey}}
		if sa == scsi.SARegisterAndIgnoreExisting {
			c.Reg.Flags = blkpr.PR_FL_IGNORE_KEY
		}
		return c, nil
	case scsi.SAClear:
		return outCall{Name: "IOC_PR_CLEAR", Req: blkpr.IOC_PR_CLEAR, Clr: blkpr.Clear{Key: p.Key}}, nil
	}

	// RESERVE, RELEASE, PREEMPT, PREEMPT AND ABORT carry a scope and type.
	if scope != 0 {
		return outCall{}, refuse(scsi.SenseInvalidField, "scope 0x%x: the ioctls know only LU scope", scope)
	}
	prType, ok := blkpr.FromSCSIType(typ)
	if !ok {
		return outCall{}, refuse(scsi.SenseInvalidField, "reservation type 0x%x is not one of 1, 3, 5, 6, 7, 8", typ)
	}
	switch sa {
	case scsi.SAReserve:
		return outCall{Name: "IOC_PR_RESERVE", Req: blkpr.IOC_PR_RESERVE, Res: blkpr.Reservation{Key: p.Key, Type: prType}}, nil
	case scsi.SARelease:
		return outCall{Name: "IOC_PR_RELEASE", Req: blkpr.IOC_PR_RELEASE, Res: blkpr.Reservation{Key: p.Key, Type: prType}}, nil
	case scsi.SAPreempt:
		return outCall{Name: "IOC_PR_PREEMPT", Req: blkpr.IOC_PR_PREEMPT, Pre: blkpr.Preempt{OldKey: p.Key, NewKey: p.SAKey, Type: prType}}, nil
	default: // scsi.SAPreemptAndAbort
		return outCall{Name: "IOC_PR_PREEMPT_ABORT", Req: blkpr.IOC_PR_PREEMPT_ABORT, Pre: blkpr.Preempt{OldKey: p.Key, NewKey: p.SAKey, Type: prType}}, nil
	}
}

// Permission hints for the log when the kernel answers EPERM or EACCES.
const (
	permPR = "the kernel refused the PR ioctl: it needs CAP_SYS_ADMIN before Linux 6.5, " +
		"from 6.5 a writable fd (a readable one suffices for IOC_PR_READ_* from 2026), " +
		"and is refused on partitions even for root"
	permNVMe = "the kernel refused the NVMe passthrough: it needs CAP_SYS_ADMIN, " +
		"or on kernels that allow unprivileged read-only commands a readable namespace fd"
)

// resultReply turns the outcome of one ioctl into the SCSI result and, unless
// it is GOOD, an error for the log naming op and fd. The table (doc.go):
//
//   - 0: GOOD.
//   - PR_STS_RESERVATION_CONFLICT: RESERVATION CONFLICT.
//   - PR_STS_IOERR: 0B/00/06 I/O PROCESS TERMINATED, what QEMU's errno table
//     gives EIO; the kernel folds every other device answer into it, so ABORTED
//     COMMAND lets the initiator retry.
//   - PR_STS_RETRY_PATH_FAILURE, PR_STS_PATH_FAILED, PR_STS_PATH_FAST_FAILED:
//     0B/29/07 I_T NEXUS LOSS OCCURRED, what QEMU gives DID_TRANSPORT_DISRUPTED:
//     the path went away, another may work.
//   - any other positive value: a raw SCSI result of a kernel before 6.4,
//     decoded by rawResult.
//   - EOPNOTSUPP: 05/20/00 INVALID COMMAND OPERATION CODE (no pr_ops, or a flag
//     the driver rejects).
//   - EPERM, EACCES: 0B/00/06 as QEMU's table has it, with perm in the error.
//   - any other errno: scsi.FromErrno (QEMU's scsi_sense_from_errno): EINVAL
//     05/24/00, ENODEV 04/44/00, ENOTTY and EAGAIN 0B/00/06 …
func resultReply(op string, fd int, ret int, err error, perm string) (scsi.Result, error) {
	if err != nil {
		var errno unix.Errno
		if !errors.As(err, &errno) {
			errno = unix.EIO
		}
		switch errno {
		case unix.EOPNOTSUPP:
			return scsi.CheckCondition(scsi.SenseInvalidOpcode),
				fmt.Errorf("%s on fd %d: %w: the device has no support for it, reported as %s", op, fd, err, scsi.SenseInvalidOpcode)
		case unix.EPERM, unix.EACCES:
			return scsi.CheckCondition(scsi.SenseIOError),
				fmt.Errorf("%s on fd %d: %w: %s; reported as %s", op, fd, err, perm, scsi.SenseIOError)
		}
		res := scsi.Errno(errno)
		return res, fmt.Errorf("%s on fd %d: %w, reported as %s", op, fd, err, res)
	}
	switch ret {
	case blkpr.PR_STS_SUCCESS:
		return scsi.Good(nil), nil
	case blkpr.PR_STS_RESERVATION_CONFLICT:
		return scsi.Conflict(),
			fmt.Errorf("%s on fd %d: reservation conflict", op, fd)
	case blkpr.PR_STS_RETRY_PATH_FAILURE, blkpr.PR_STS_PATH_FAILED, blkpr.PR_STS_PATH_FAST_FAILED:
		return scsi.CheckCondition(scsi.SenseITNexusLoss),
			fmt.Errorf("%s on fd %d: %s, reported as %s", op, fd, statusName(ret), scsi.SenseITNexusLoss)
	case blkpr.PR_STS_IOERR:
		return scsi.CheckCondition(scsi.SenseIOError),
			fmt.Errorf("%s on fd %d: PR_STS_IOERR (the device's sense is not available through the ioctl), reported as %s", op, fd, scsi.SenseIOError)
	}
	return rawResult(op, fd, ret)
}

// Host bytes (DID_*) of a raw SCSI result that mean the path failed: they are
// the ones sd_scsi_to_pr_err turns into PR_STS_*_PATH_* from Linux 6.4.
const (
	didNoConnect          = 0x01
	didTransportDisrupted = 0x0e
	didTransportFailfast  = 0x0f
)

// rawResult maps a positive ioctl return value that is not a pr_status: the
// raw SCSI result sd returned before Linux 6.4 (status byte in bits 7:0, the
// mid-layer's SCSIML_STAT_* byte in 15:8, the host byte in 23:16, the driver
// byte in 31:24 on kernels before 5.14). The lab's Linux 6.1 answers a
// reservation conflict with 0x118 (SCSIML_STAT_RESV_CONFLICT << 8 | 18h). The
// pr_status values are the same encoding of the common cases, so this is the
// same table: a path-failure host byte gives 0B/29/07, another host byte QEMU's
// host-status table (0B/00/06 where that table would say GOOD: the command did
// not complete), then the status byte: RESERVATION CONFLICT, BUSY and TASK SET
// FULL pass through, anything else (CHECK CONDITION, whose sense is lost) gives
// 0B/00/06.
func rawResult(op string, fd int, ret int) (scsi.Result, error) {
	status, host := byte(ret), uint16(ret>>16)&0xff
	what := fmt.Sprintf("%s on fd %d: raw SCSI result 0x%x (status 0x%02x, host byte 0x%02x; kernel before 6.4)", op, fd, ret, status, host)
	switch {
	case host == didNoConnect || host == didTransportDisrupted || host == didTransportFailfast:
		return scsi.CheckCondition(scsi.SenseITNexusLoss), fmt.Errorf("%s, reported as %s", what, scsi.SenseITNexusLoss)
	case host != 0:
		st, s := scsi.FromHostStatus(host)
		if st == scsi.StatusGood {
			st, s = scsi.StatusCheckCondition, scsi.SenseIOError
		}
		res := scsi.Result{Status: st}
		if st == scsi.StatusCheckCondition {
			res = scsi.CheckCondition(s)
		}
		return res, fmt.Errorf("%s, reported as %s", what, res)
	}
	switch status {
	case scsi.StatusReservationConflict, scsi.StatusBusy, scsi.StatusTaskSetFull:
		return scsi.Result{Status: status}, fmt.Errorf("%s, reported as %s", what, scsi.StatusName(status))
	}
	return scsi.CheckCondition(scsi.SenseIOError),
		fmt.Errorf("%s (the device's sense is not available through the ioctl), reported as %s", what, scsi.SenseIOError)
}

// statusName names a positive pr_status value for logs.
func statusName(ret int) string {
	switch ret {
	case blkpr.PR_STS_IOERR:
		return "PR_STS_IOERR"
	case blkpr.PR_STS_RESERVATION_CONFLICT:
		return "PR_STS_RESERVATION_CONFLICT"
	case blkpr.PR_STS_RETRY_PATH_FAILURE:
		return "PR_STS_RETRY_PATH_FAILURE"
	case blkpr.PR_STS_PATH_FAST_FAILED:
		return "PR_STS_PATH_FAST_FAILED"
	case blkpr.PR_STS_PATH_FAILED:
		return "PR_STS_PATH_FAILED"
	}
	return fmt.Sprintf("status 0x%x", ret)
}

// NVMe status codes (NVM Express Base Specification 2.0, Status Code Type 0h
// generic and 3h path related) the Reservation Report fallback distinguishes.
const (
	nvmeSCInvalidOpcode       = 0x001
	nvmeSCInvalidField        = 0x002
	nvmeSCInvalidNS           = 0x00b
	nvmeSCHostIDInconsistent  = 0x018
	nvmeSCReservationConflict = 0x083
	nvmeSCTPath               = 0x300
	nvmeStatusMask            = 0x7ff // SCT (10:8) and SC (7:0); DNR and MORE dropped
)

// nvmeStatusResult maps the positive NVMe status NVME_IOCTL_IO_CMD returned to
// the ioctl outcome resultReply understands, the way the kernel's nvme pr code
// maps it for the pr_ops (nvme_sc_to_pr_err): conflict → PR_STS_RESERVATION_CONFLICT,
// invalid field or namespace → EINVAL, path-related → PR_STS_PATH_FAILED, the
// rest → PR_STS_IOERR. An invalid opcode means the controller has no
// reservations: EOPNOTSUPP.
func nvmeStatusResult(status int) (int, error) {
	sc := status & nvmeStatusMask
	switch {
	case sc == nvmeSCReservationConflict:
		return blkpr.PR_STS_RESERVATION_CONFLICT, nil
	case sc == nvmeSCInvalidOpcode:
		return 0, unix.EOPNOTSUPP
	case sc == nvmeSCInvalidField, sc == nvmeSCInvalidNS:
		return 0, unix.EINVAL
	case sc&0x700 == nvmeSCTPath:
		return blkpr.PR_STS_PATH_FAILED, nil
	}
	return blkpr.PR_STS_IOERR, nil
}
