// Package linuxpr is the <linux/pr.h> backend: it serves the guest's PERSISTENT
// RESERVE IN/OUT commands through the Linux block layer's persistent-reservation
// ioctls (IOC_PR_REGISTER … IOC_PR_READ_RESERVATION, include/uapi/linux/pr.h)
// instead of passing the CDB through with SG_IO. The ioctls work on any block
// device whose driver has pr_ops: sd, NVMe namespaces and device-mapper
// (including multipath, where the kernel sends IOC_PR_REGISTER down every path
// and rolls back on failure). The translation follows docs/linux-pr.md §4.
//
// # PR OUT
//
// REGISTER becomes IOC_PR_REGISTER{old_key = RESERVATION KEY, new_key = SERVICE
// ACTION RESERVATION KEY}; REGISTER AND IGNORE EXISTING KEY the same with
// PR_FL_IGNORE_KEY; RESERVE and RELEASE IOC_PR_RESERVE/IOC_PR_RELEASE{key,
// type}; CLEAR IOC_PR_CLEAR{key}; PREEMPT and PREEMPT AND ABORT
// IOC_PR_PREEMPT/IOC_PR_PREEMPT_ABORT{old_key = RESERVATION KEY, new_key =
// SERVICE ACTION RESERVATION KEY, type}. SCSI types 1, 3, 5, 6, 7, 8 are
// enum pr_type 1-6 (block_pr_type_to_scsi).
//
// APTPL cannot be chosen: sd sets APTPL on every REGISTER it sends and nvme
// asks for persist-through-power-loss (CPTPL) on every Register, so every
// registration made through this backend persists, whatever the guest's bit.
//
// # What the ioctls cannot express, and the reply for each
//
// The backend answers these itself, without calling the kernel:
//
//   - REGISTER AND MOVE (SA 07h): CHECK CONDITION 05/24/00 INVALID FIELD IN CDB.
//   - REPLACE LOST RESERVATION (SA 08h) and reserved SAs 09h-1Fh: 05/24/00.
//   - READ FULL STATUS (PR IN SA 03h) and reserved PR IN SAs: 05/24/00.
//   - SPEC_I_PT set (any SA): 05/26/00 INVALID FIELD IN PARAMETER LIST. LIO
//     answers so for every SA but REGISTER; for REGISTER, struct
//     pr_registration has no TransportIDs.
//   - ALL_TG_PT set on REGISTER or REGISTER AND IGNORE EXISTING KEY: 05/26/00
//     (there is no flag for it). The other SAs ignore the bit (SPC-4 §6.16.3).
//   - PARAMETER LIST LENGTH (CDB bytes 5-8) other than 24: 05/1A/00 PARAMETER
//     LIST LENGTH ERROR, as LIO answers for a basic list (checked before
//     SPEC_I_PT when below 24, after it otherwise, LIO's order). The device
//     never sees such a command, so an unregistered nexus gets 05/1A/00 where
//     LIO answers RESERVATION CONFLICT first, and a length beyond what QEMU
//     frames (10018h, of which the client sends 18h bytes) gets 05/1A/00 where
//     LIO answers 05/24/00.
//   - RESERVE, RELEASE, PREEMPT, PREEMPT AND ABORT with SCOPE other than LU
//     (0h): 05/24/00, SCOPE being a CDB field (LIO answers 05/26/00); with a
//     TYPE other than 1, 3, 5, 6, 7, 8: 05/24/00. LIO would answer a RELEASE
//     of any type with GOOD when the nexus holds nothing; the ioctl cannot
//     carry such a type, so this backend refuses it.
//
// REPORT CAPABILITIES has no ioctl either; it is synthesized (no device call)
// from what this path supports: LENGTH 8; RLR_C 0 (no REPLACE LOST
// RESERVATION); CRH 0 (the path says nothing about SPC-2 RESERVE/RELEASE, which
// never reach the helper); SIP_C 0 and ATP_C 0 (no SPEC_I_PT, no ALL_TG_PT);
// PTPL_C 1 and PTPL_A 1 (persistence is forced on, above); TMV 1 with the six
// types enum pr_type carries (mask EA01h); ALLOW COMMANDS 000b (no information).
// Bytes: 00 08 01 81 EA 01 00 00, cut to the ALLOCATION LENGTH like any PR IN
// data (SPC-4 §4.2.5.6), so an allocation length below 8 gets GOOD and the
// first bytes where LIO answers 05/24/00. LIO itself reports 00 08 1D 90 (CRH,
// SIP_C, ATP_C, ALLOW COMMANDS 001b; PTPL_A only once an APTPL registration
// exists).
//
// # PR IN: READ KEYS and READ RESERVATION
//
// With IOC_PR_READ_KEYS and IOC_PR_READ_RESERVATION (Linux 6.19+) the answers
// are re-encoded as the SCSI payloads a device sends: big-endian keys, the
// generation, ADDITIONAL LENGTH 8 × the number of registrations (the full count
// even when the allocation length holds fewer keys; the backend asks for 16
// keys first and again with room for the count the kernel reports, up to what
// the allocation length holds), READ RESERVATION 8 bytes without a reservation,
// else 24 with scope LU, the SCSI type and the holder's key (0 for the
// all-registrants types).
//
// Whether the running kernel has those ioctls is probed once per Backend (an
// IOC_PR_READ_RESERVATION on the first fd that needs it; ENOTTY or EINVAL means
// absent; KindNotBlock fds never probe, so wire Options.Kind or the first fd
// decides). Without them (Linux 6.1 in the lab) the backend falls back by the
// device kind the caller's Options.Kind reports (KindOf maps package device's
// classification):
//
//   - KindSCSI and KindUnknown: the CDB goes to the device with SG_IO through
//     internal/kernel/sgio, and the device's own status, sense and data come back as
//     qemu-pr-helper would pass them. This needs CAP_SYS_RAWIO.
//   - KindNVMe: an NVMe Reservation Report (opcode 0Eh, CDW10 = NUMD, CDW11 EDS
//     = 1 for 128-bit host IDs, retried without EDS on Host Identifier
//     Inconsistent, as the kernel's nvme pr code does) through
//     NVME_IOCTL_IO_CMD, converted: generation, one key per registered
//     controller, ADDITIONAL LENGTH 8 × REGCTL; the reservation from RTYPE and
//     the key of the registrant whose RCSTS bit 0 is set. The passthrough needs
//     CAP_SYS_ADMIN on kernels that do not allow unprivileged read-only commands.
//   - KindNotBlock (sg and ng character devices, partitions, files): no probe,
//     no fallback; the ioctl is issued and the kernel's refusal answered.
//
// # Results
//
// The kernel returns a status, never the device's sense: the sense details are
// lost (sd folds every CHECK CONDITION except ILLEGAL REQUEST 24h/26h, which
// becomes EINVAL, into PR_STS_IOERR). The mapping:
//
//   - 0: GOOD.
//   - PR_STS_RESERVATION_CONFLICT (18h): RESERVATION CONFLICT.
//   - PR_STS_IOERR: CHECK CONDITION 0B/00/06 I/O PROCESS TERMINATED, the sense
//     QEMU's errno table gives EIO; ABORTED COMMAND lets the initiator retry.
//   - PR_STS_RETRY_PATH_FAILURE, PR_STS_PATH_FAILED, PR_STS_PATH_FAST_FAILED:
//     0B/29/07 I_T NEXUS LOSS OCCURRED, the sense QEMU gives
//     DID_TRANSPORT_DISRUPTED: the path failed, a retry may take another.
//   - other positive values: a raw SCSI result from a kernel before 6.4, below.
//   - EOPNOTSUPP (no pr_ops, or a flag the driver rejects): 05/20/00 INVALID
//     COMMAND OPERATION CODE.
//   - EPERM, EACCES: 0B/00/06 as in QEMU's table, and the log error says the
//     kernel refused the ioctl and why (below).
//   - any other errno: scsi.FromErrno, QEMU's scsi_sense_from_errno (EINVAL
//     05/24/00, ENODEV 04/44/00, ENOTTY and EAGAIN — dm suspended — 0B/00/06).
//
// Before Linux 6.4 sd returned the raw SCSI result instead: status byte,
// mid-layer byte << 8 (SCSIML_STAT_*), host byte << 16. The lab's 6.1 answers a
// reservation conflict with 0x118. The pr_status values are that encoding of
// the common cases (02h CHECK CONDITION, 18h conflict, DID_NO_CONNECT,
// DID_TRANSPORT_DISRUPTED and DID_TRANSPORT_FAILFAST << 16), so one table
// serves both: a path-failure host byte gives 0B/29/07, another host byte
// QEMU's host-status table (0B/00/06 where it would say GOOD), else the status
// byte: RESERVATION CONFLICT, BUSY and TASK SET FULL pass through, anything
// else 0B/00/06.
//
// # Unit attentions
//
// A unit attention the device reports to a PR OUT comes back from the ioctl as
// a CHECK CONDITION without its sense (PR_STS_IOERR, or the raw status 02h
// before 6.4), and the command was not executed. The guest could not learn of
// the attention from 0B/00/06 anyway, and would only have retried; so the
// backend issues the ioctl again, up to three times while the answer is CHECK
// CONDITION (uaRetries), and the guest gets the device's answer after the
// attention, as from LIO after its own retry: a REGISTER AND IGNORE EXISTING
// KEY GOOD, a RESERVE RESERVATION CONFLICT. It cannot pass the attention on:
// the kernel does not say there was one. A command answered with CHECK
// CONDITION was not executed (SPC-4 §5.13.1), so repeating one that fails for
// another reason changes nothing and ends in the same 0B/00/06. Linux 6.10 and
// later retry unit attentions to PR commands in sd themselves. PR IN through
// the SG_IO fallback passes the device's unit attention on as it came, as
// qemu-pr-helper does.
//
// # Against SG_IO passthrough
//
// The lab test test/lab/tests/linuxpr-vs-sgio.sh sends prdiff's scripted
// sequence to this backend and to package sgio on two identical LIO LUs (Linux
// 6.1) and requires identical replies except where
// test/lab/tools/prdiff/linuxpr.expect lists a difference, each one of the
// above: the synthesized REPORT CAPABILITIES, READ FULL STATUS, SPEC_I_PT,
// ALL_TG_PT and REGISTER AND MOVE refused, SCOPE and PARAMETER LIST LENGTH
// checked here, a device CHECK CONDITION to a PR OUT reported as 0B/00/06 (the
// raw result of sd before 6.4, Results), and the later replies the different
// state after a refused command gives. APTPL is activated on LIO by the first
// REGISTER through this backend, whatever the guest's bit (above).
//
// # Permissions
//
// The kernel checks the caller of a PR ioctl (block/ioctl.c,
// blkdev_pr_allowed); what the helper's process needs depends on the kernel:
//
//   - Linux 4.5 to 6.4: every IOC_PR_* needs CAP_SYS_ADMIN. Without it the
//     ioctl fails with EPERM: the client gets CHECK CONDITION 0B/00/06 (QEMU's
//     errno table) and the log says the ioctl was refused and that it needs
//     CAP_SYS_ADMIN before Linux 6.5. PR IN goes through the fallback (no
//     IOC_PR_READ_* before 6.19), for SCSI SG_IO, which the kernel allows for PR
//     opcodes only with CAP_SYS_RAWIO: without it EPERM, 0B/00/06, and a log
//     line saying CAP_SYS_RAWIO is needed.
//   - Linux 6.5 and later: without CAP_SYS_ADMIN, the PR OUT ioctls are allowed
//     on an fd opened for writing (QEMU opens its disks O_RDWR; the server
//     refuses PR OUT on a read-only fd anyway). PR IN still needs the fallback's
//     capability until 6.19 brings IOC_PR_READ_KEYS/IOC_PR_READ_RESERVATION,
//     which then, like PR OUT, need a writable fd.
//   - Kernels with commit 5b88af7113fe (2026, in 6.19.y): IOC_PR_READ_* need
//     only an fd opened for reading.
//   - Partitions are refused with EPERM on every kernel, even for root.
//
// So from Linux 6.19 the backend serves sd and NVMe devices with no capability
// at all; cmd/prhelper, started as root, keeps CAP_SYS_ADMIN (and CAP_SYS_RAWIO
// for the fallback) for older kernels, and started as another user it keeps
// what it was given and skips the privilege drop. The lab test
// test/lab/tests/linuxpr-unprivileged.sh shows the first regime on Linux 6.1
// with prhelper running as nobody without capabilities.
//
// The package never opens or closes devices; the fd belongs to the caller.
package linuxpr
