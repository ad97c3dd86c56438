package main

import (
	"context"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// result is the outcome of one command, whatever the output format.
type result struct {
	cdb      [wire.CDBSize]byte
	param    []byte
	reply    *wire.Reply
	exit     int
	sense    scsi.Sense
	hasSense bool
	payload  any    // decoded PR IN data
	err      string // why the command failed before or after the helper answered
}

// run executes the command opts describes and returns the exit status. All
// output goes to stdout and stderr; nothing here exits the process.
func run(ctx context.Context, o Options, stdout, stderr io.Writer) int {
	if !o.JSON {
		if o.Implied {
			fmt.Fprintf(stderr, ">> No service action given; assume Persistent Reserve In command\n>> with Read Keys service action\n")
		}
		if o.NoType {
			fmt.Fprintf(stderr, "warning>>> --prout-type probably needs to be given\n")
		}
	}
	r := execute(ctx, o, stderr)
	if o.JSON {
		if err := writeJSON(stdout, o, r); err != nil {
			fmt.Fprintf(stderr, "prpersist: %v\n", err)
			return exitOther
		}
		return r.exit
	}
	report(o, r, stdout, stderr)
	if hint := fileHint(o, r); hint != "" {
		fmt.Fprintln(stderr, hint)
	}
	return r.exit
}

// fileHint explains the answer a helper gives for a disk image it does not
// emulate: qemu-pr-helper's SG_IO fails on a regular file with ENOTTY, which
// becomes CHECK CONDITION, ABORTED COMMAND 00/06, and the reason is only in the
// helper's log (README: Quick start). Empty for anything else.
func fileHint(o Options, r *result) string {
	if r.reply == nil || !r.hasSense || r.sense != scsi.SenseIOError {
		return ""
	}
	var st unix.Stat_t
	if err := unix.Stat(o.Device, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return ""
	}
	return fmt.Sprintf("prpersist: %s is a regular file: a helper without emulation answers this for a file "+
		"(start prhelper with --backend=emulate --db=PATH, or a rule); the helper's \"request failed\" log line "+
		"says why, and prhelper --explain=%s shows which backend serves it", o.Device, o.Device)
}

// execute opens the device, sends the command through the helper and
// classifies the reply.
func execute(ctx context.Context, o Options, stderr io.Writer) *result {
	r := &result{}
	var err error
	if o.In {
		r.cdb = scsi.PRInCDB(o.SA, o.AllocLen)
	} else {
		if r.param, err = prOutParam(o); err != nil {
			r.exit, r.err = exitSyntax, err.Error()
			return r
		}
		r.cdb = scsi.PROutCDB(o.SA, 0, o.Type, uint32(len(r.param)))
	}
	if o.Verbose > 0 && !o.JSON {
		fmt.Fprintf(stderr, "    %s cdb: [% x]\n", heading(o), r.cdb[:10])
		if len(r.param) > 0 && o.Verbose > 1 {
			fmt.Fprintf(stderr, "    %s parameter list:\n", heading(o))
			hexDump(stderr, r.param, true)
		}
		if o.Verbose > 1 {
			fmt.Fprintf(stderr, "    helper socket: %s\n", o.Socket)
		}
	}

	flags := unix.O_RDWR
	mode := "rw"
	if o.ReadOnly {
		flags, mode = unix.O_RDONLY, "ro"
	}
	// O_NONBLOCK as sg3_utils' sg_cmds_open_device: opening an sg node must not
	// wait for the device.
	fd, err := unix.Open(o.Device, flags|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		r.exit, r.err = exitFile, fmt.Sprintf("error opening file %s (%s): %v", o.Device, mode, err)
		return r
	}
	defer unix.Close(fd)

	// One attempt: a command-line tool should fail fast, not retry five times
	// one second apart as QEMU does.
	c := client.New(o.Socket, client.WithReconnect(1, 0))
	defer c.Close()
	if o.In {
		r.reply, r.payload, err = prIn(ctx, c, fd, o)
	} else {
		r.reply, err = c.PROut(ctx, fd, o.SA, 0, o.Type, r.param)
	}
	if r.reply == nil {
		r.exit, r.err = exitOther, fmt.Sprintf("helper %s: %v", o.Socket, err)
		return r
	}
	r.exit, r.sense, r.hasSense = replyCategory(r.reply)
	if r.exit == exitOK && err != nil {
		r.exit, r.err = exitMalformed, err.Error()
	}
	return r
}

// prIn sends the PR IN command and returns the decoded payload as a pointer to
// its scsi type (nil when there is none).
func prIn(ctx context.Context, c *client.Client, fd int, o Options) (*wire.Reply, any, error) {
	switch o.SA {
	case scsi.SAReadKeys:
		rep, v, err := c.ReadKeys(ctx, fd, o.AllocLen)
		return rep, nilIfNil(v), err
	case scsi.SAReadReservation:
		rep, v, err := c.ReadReservation(ctx, fd, o.AllocLen)
		return rep, nilIfNil(v), err
	case scsi.SAReportCapabilities:
		rep, v, err := c.ReportCapabilities(ctx, fd, o.AllocLen)
		return rep, nilIfNil(v), err
	case scsi.SAReadFullStatus:
		rep, v, err := c.ReadFullStatus(ctx, fd, o.AllocLen)
		return rep, nilIfNil(v), err
	}
	return nil, nil, fmt.Errorf("%w: PR IN service action 0x%x", client.ErrRequest, o.SA)
}

// nilIfNil keeps a typed nil pointer from becoming a non-nil interface.
func nilIfNil[T any](p *T) any {
	if p == nil {
		return nil
	}
	return p
}

// prOutParam builds the parameter list as sg_persist does: REGISTER AND MOVE's
// own layout, else the basic list, with SPEC_I_PT set when TransportIDs are given.
func prOutParam(o Options) ([]byte, error) {
	if o.SA == scsi.SARegisterAndMove {
		return scsi.RegisterMoveParams{Key: o.Key, SAKey: o.SAKey, Unreg: o.Unreg, APTPL: o.APTPL,
			RelativeTargetPort: o.RelTgtPort, TransportID: o.TransportIDs[0]}.Encode()
	}
	p, err := scsi.PROutParams{Key: o.Key, SAKey: o.SAKey, AllTgPt: o.AllTgPt, APTPL: o.APTPL,
		SpecIPT: len(o.TransportIDs) > 0, TransportIDs: o.TransportIDs}.Encode()
	if err == nil && len(p) > wire.MaxData {
		err = fmt.Errorf("parameter list of %d bytes exceeds the helper's %d", len(p), wire.MaxData)
	}
	return p, err
}

// heading is sg3_utils' name of the command in its sense reports.
func heading(o Options) string {
	if o.In {
		return "Persistent reservation in"
	}
	return "Persistent reservation out"
}

// saLabel is the "PR in (Read keys)" / "PR out (Register)" prefix of sg_persist's
// error lines; REGISTER AND MOVE has its own lower-case wording there.
func saLabel(o Options) string {
	if o.In {
		return "PR in (" + prInName(o.SA) + ")"
	}
	if o.SA == scsi.SARegisterAndMove {
		return "PR out (register and move)"
	}
	return "PR out (" + prOutName(o.SA) + ")"
}

// report prints r in sg_persist's words: the data on stdout, errors on stderr.
func report(o Options, r *result, stdout, stderr io.Writer) {
	if r.reply == nil {
		fmt.Fprintf(stderr, "prpersist: %s\n", r.err)
		return
	}
	if r.exit == exitOK {
		if o.In {
			printPayload(o, r, stdout, stderr)
		} else if o.Verbose > 0 {
			if o.SA == scsi.SARegisterAndMove {
				fmt.Fprintf(stderr, "PR out: 'register and move' command successful\n")
			} else {
				fmt.Fprintf(stderr, "PR out: command (%s) successful\n", prOutName(o.SA))
			}
		}
		return
	}
	long := o.Verbose > 0
	switch {
	case r.hasSense:
		if long || senseShown(r.exit) {
			fmt.Fprintf(stderr, "%s:\n%s", heading(o), senseLines(r.reply.Sense[:], r.sense))
		}
	case r.exit == exitOther:
		// A status sg3_utils has no category for, or CHECK CONDITION without
		// sense: sg_cmds_process_resp names the status.
		fmt.Fprintf(stderr, "%s: scsi status: %s\n", heading(o), statusName(r.reply.Status))
	}
	switch r.exit {
	case exitInvalidOp:
		fmt.Fprintf(stderr, "%s: command not supported\n", saLabel(o))
	case exitIllegalReq:
		fmt.Fprintf(stderr, "%s: bad field in cdb or parameter list (perhaps unsupported service action)\n", saLabel(o))
	case exitMalformed:
		// sg_persist's own words for REPORT CAPABILITIES; the other payloads
		// it does not check, so the line with the detail is prpersist's.
		if o.In && o.SA == scsi.SAReportCapabilities {
			fmt.Fprintf(stderr, "Unexpected response for PRIN Report Capabilities\n")
		}
		if long || !(o.In && o.SA == scsi.SAReportCapabilities) {
			fmt.Fprintf(stderr, "%s: %s\n", saLabel(o), r.err)
		}
	default:
		fmt.Fprintf(stderr, "%s: %s\n", saLabel(o), categoryString(r.exit, long))
	}
	if !long {
		fmt.Fprintf(stderr, "prpersist failed: %s\n", categoryString(r.exit, false))
	}
}

// statusName is sg_lib's mixed-case SCSI status name.
func statusName(s byte) string {
	switch s {
	case scsi.StatusCheckCondition:
		return "Check Condition"
	case scsi.StatusBusy:
		return "Busy"
	case scsi.StatusTaskSetFull:
		return "Task set full"
	case scsi.StatusACAActive:
		return "ACA active"
	case scsi.StatusTaskAborted:
		return "Task aborted"
	case scsi.StatusReservationConflict:
		return "Reservation Conflict"
	}
	return fmt.Sprintf("Unknown status [0x%x]", s)
}

// printPayload prints decoded PR IN data, or its hex with --hex.
func printPayload(o Options, r *result, stdout, stderr io.Writer) {
	if o.Hex > 0 {
		printHex(stdout, o.SA, r.reply.Data, o.Hex)
	} else {
		switch v := r.payload.(type) {
		case *scsi.Keys:
			printKeys(stdout, v)
		case *scsi.Reservation:
			printReservation(stdout, v)
		case *scsi.Capabilities:
			printCapabilities(stdout, v)
		case *scsi.FullStatus:
			printFullStatus(stdout, v, o.Verbose)
		}
	}
	if truncated(r.payload) {
		fmt.Fprintf(stderr, "prpersist: response truncated to the allocation length (%d bytes); raise --maxlen\n", o.AllocLen)
	}
}

func truncated(p any) bool {
	switch v := p.(type) {
	case *scsi.Keys:
		return v.Truncated
	case *scsi.Reservation:
		return v.Truncated
	case *scsi.Capabilities:
		return v.Truncated
	case *scsi.FullStatus:
		return v.Truncated
	}
	return false
}
