// Package sgio is the kernel's SCSI generic v3 pass-through (SG_IO,
// include/scsi/sg.h) as the backends use it: it sends the guest's PERSISTENT
// RESERVE IN/OUT CDB to a device, and turns the kernel's answer into a SCSI
// result exactly as qemu-pr-helper's non-multipath path (do_sgio_worker) does.
// Nothing in the CDB or parameter list is checked or rewritten: service actions,
// SPEC_I_PT TransportIDs, REGISTER AND MOVE and READ FULL STATUS all reach the
// device, as with QEMU.
//
// Two layers:
//
//   - Exec and ExecWith issue one SG_IO (any CDB, any direction) and return the
//     raw sg_io_hdr outcome as a Result. They are for other code that needs a
//     pass-through: benchmarks, a multipath backend sending to each path.
//   - Passthrough (New) sends PR commands with qemu-pr-helper's exact
//     framing (cmd_len 16, 96-byte sense, PR IN into the whole 8192-byte buffer)
//     and its status derivation: errno table, host-status table (unknown values
//     give GOOD), the driver_status & 0x06 ⇒ BUSY bit-mask test, else the device's
//     status and sense verbatim (docs/pr-helper-protocol.md §4.8-§4.10).
//
// # Difference from qemu-pr-helper: the timeout
//
// qemu-pr-helper sets sg_io_hdr.timeout to 1 (millisecond). On a SCSI block
// device (/dev/sdX) the kernel's sg_io raises any timeout below 7 s to 7 s
// (BLK_MIN_SG_TIMEOUT), so QEMU effectively gets 7 s; on a /dev/sgN node the sg
// driver applies no minimum, so the command gets about one jiffy and a PR command
// to a slow array fails with DID_TIME_OUT, which the guest sees as CHECK
// CONDITION 0B/2E/02. Neither is a deliberate choice, and copying it would only
// reproduce spurious timeouts. Passthrough uses a real timeout, DefaultTimeout (30 s,
// QEMU's scsi-block io_timeout default) unless configured. The timeout is not
// visible on the wire except when a command is slow enough to hit it.
//
// # Privileges
//
// The kernel lets unprivileged openers send only the SCSI commands on its
// allow-list (scsi_cmd_allowed in drivers/scsi/scsi_ioctl.c); PERSISTENT RESERVE
// IN/OUT are not on it, so SG_IO with these opcodes needs CAP_SYS_RAWIO, without
// which the ioctl fails with EPERM and the guest sees CHECK CONDITION 0B/00/06.
// qemu-pr-helper keeps CAP_SYS_RAWIO for this reason; prhelper needs it too when
// SG_IO is used. The descriptor received over the socket is the caller's
// proof that it may use the device; this package never opens devices itself and
// never closes the descriptor it is given.
//
// # Blocking
//
// The ioctl runs in the calling goroutine and blocks its OS thread until the
// device answers or the timeout fires; the Go runtime hands the goroutine's
// processor to another thread meanwhile, so other connections keep running. The
// buffers the sg_io_hdr points to are pinned (runtime.Pinner) for the duration
// of the call. No cgo.
package sgio
