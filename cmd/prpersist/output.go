package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/prhelper/prhelper/scsi"
)

// The human output below reproduces sg_persist's lines (sg3_utils 1.46, as the lab
// transcripts show them) so that scripts parsing sg_persist keep working.

// typeName is sg_persist's name of a persistent reservation TYPE (SPC-4 table 169).
func typeName(t byte) string {
	names := [...]string{"obsolete [0]", "Write Exclusive", "obsolete [2]", "Exclusive Access", "obsolete [4]",
		"Write Exclusive, registrants only", "Exclusive Access, registrants only",
		"Write Exclusive, all registrants", "Exclusive Access, all registrants"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("obsolete [0x%x]", t)
}

// prInName and prOutName are sg_persist's service-action names, used in its
// "PR in (Read keys): ..." error lines.
func prInName(sa byte) string {
	names := [...]string{"Read keys", "Read reservation", "Report capabilities", "Read full status"}
	if int(sa) < len(names) {
		return names[sa]
	}
	return fmt.Sprintf("service action=0x%x", sa)
}

func prOutName(sa byte) string {
	names := [...]string{"Register", "Reserve", "Release", "Clear", "Preempt", "Preempt and abort",
		"Register and ignore existing key", "Register and move", "Replace lost reservation"}
	if int(sa) < len(names) {
		return names[sa]
	}
	return fmt.Sprintf("service action=0x%x", sa)
}

// scopeType prints sg_persist's "scope: LU_SCOPE,  type: Write Exclusive".
func scopeType(scope, typ byte) string {
	if scope == 0 {
		return "scope: LU_SCOPE,  type: " + typeName(typ)
	}
	return fmt.Sprintf("scope: %d  type: %s", scope, typeName(typ))
}

func printKeys(w io.Writer, k *scsi.Keys) {
	n := k.AdditionalLength / 8
	switch {
	case n == 0:
		fmt.Fprintf(w, "  PR generation=0x%x, there are NO registered reservation keys\n", k.Generation)
		return
	case n == 1:
		fmt.Fprintf(w, "  PR generation=0x%x, 1 registered reservation key follows:\n", k.Generation)
	default:
		fmt.Fprintf(w, "  PR generation=0x%x, %d registered reservation keys follow:\n", k.Generation, n)
	}
	for _, key := range k.Keys {
		fmt.Fprintf(w, "    0x%x\n", key)
	}
}

func printReservation(w io.Writer, r *scsi.Reservation) {
	if !r.Held {
		fmt.Fprintf(w, "  PR generation=0x%x, there is NO reservation held\n", r.Generation)
		return
	}
	fmt.Fprintf(w, "  PR generation=0x%x, Reservation follows:\n", r.Generation)
	fmt.Fprintf(w, "    Key=0x%x\n", r.Key)
	fmt.Fprintf(w, "    %s\n", scopeType(r.Scope, r.Type))
}

func printCapabilities(w io.Writer, c *scsi.Capabilities) {
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	fmt.Fprintf(w, "Report capabilities response:\n")
	fmt.Fprintf(w, "  Replace Lost Reservation Capable(RLR_C): %d\n", b(c.RLRC))
	fmt.Fprintf(w, "  Compatible Reservation Handling(CRH): %d\n", b(c.CRH))
	fmt.Fprintf(w, "  Specify Initiator Ports Capable(SIP_C): %d\n", b(c.SIPC))
	fmt.Fprintf(w, "  All Target Ports Capable(ATP_C): %d\n", b(c.ATPC))
	fmt.Fprintf(w, "  Persist Through Power Loss Capable(PTPL_C): %d\n", b(c.PTPLC))
	fmt.Fprintf(w, "  Type Mask Valid(TMV): %d\n", b(c.TMV))
	fmt.Fprintf(w, "  Allow Commands: %d\n", c.AllowCommands)
	fmt.Fprintf(w, "  Persist Through Power Loss Active(PTPL_A): %d\n", b(c.PTPLA))
	if !c.TMV {
		return
	}
	fmt.Fprintf(w, "    Support indicated in Type mask:\n")
	for _, m := range []struct {
		typ  byte
		mask uint16
	}{
		{scsi.TypeWriteExclusiveAllRegs, scsi.MaskWriteExclusiveAllRegs},
		{scsi.TypeExclusiveAccessRegOnly, scsi.MaskExclusiveAccessRegOnly},
		{scsi.TypeWriteExclusiveRegOnly, scsi.MaskWriteExclusiveRegOnly},
		{scsi.TypeExclusiveAccess, scsi.MaskExclusiveAccess},
		{scsi.TypeWriteExclusive, scsi.MaskWriteExclusive},
		{scsi.TypeExclusiveAccessAllRegs, scsi.MaskExclusiveAccessAllRegs},
	} {
		fmt.Fprintf(w, "      %s: %d\n", typeName(m.typ), b(c.TypeMask&m.mask != 0))
	}
}

func printFullStatus(w io.Writer, fs *scsi.FullStatus, verbose int) {
	fmt.Fprintf(w, "  PR generation=0x%x\n", fs.Generation)
	if len(fs.Descriptors) == 0 {
		fmt.Fprintf(w, "  No full status descriptors\n")
		if verbose > 0 {
			fmt.Fprintf(w, "  So there are no registered IT nexuses\n")
		}
	}
	for _, d := range fs.Descriptors {
		fmt.Fprintf(w, "    Key=0x%x\n", d.Key)
		if d.AllTargetPorts {
			fmt.Fprintf(w, "      All target ports bit set\n")
		} else {
			fmt.Fprintf(w, "      All target ports bit clear\n")
			fmt.Fprintf(w, "      Relative port address: 0x%x\n", d.RelativeTargetPort)
		}
		if d.Holder {
			fmt.Fprintf(w, "      << Reservation holder >>\n")
			fmt.Fprintf(w, "      %s\n", scopeType(d.Scope, d.Type))
		} else {
			fmt.Fprintf(w, "      not reservation holder\n")
		}
		switch {
		case d.TransportIDErr != "":
			// Cut by the allocation length (or malformed): show the bytes rather
			// than fields decoded from a partial TransportID.
			fmt.Fprintf(w, "      Transport Id of initiator: cannot decode (%s)\n", d.TransportIDErr)
			fmt.Fprintf(w, "        % x\n", d.TransportID.Raw)
		case d.DescriptorLength > 0:
			printTransportID(w, "      ", d.TransportID, int(d.DescriptorLength))
		}
	}
}

// printTransportID prints a TransportID as sg_persist's TransportID decoder
// does, under leadin; n is the length its descriptor announced.
func printTransportID(w io.Writer, leadin string, t scsi.TransportID, n int) {
	if n < 24 || n%4 != 0 {
		fmt.Fprintf(w, "%sTransport Id short or not multiple of 4 [length=%d]:\n", leadin, n)
	} else {
		fmt.Fprintf(w, "%sTransport Id of initiator:\n", leadin)
	}
	switch t.Protocol {
	case scsi.ProtoSAS, scsi.ProtoISCSI:
		fmt.Fprintf(w, "%s  %s\n", leadin, t)
	case scsi.ProtoFC, scsi.ProtoSBP:
		name := "FCP-2 World Wide Name"
		if t.Protocol == scsi.ProtoSBP {
			name = "IEEE 1394 EUI-64 name"
		}
		fmt.Fprintf(w, "%s  %s:\n", leadin, name)
		fmt.Fprintf(w, "%s    %016x\n", leadin, t.Addr)
	default:
		fmt.Fprintf(w, "%s  %s:\n", leadin, scsi.ProtocolName(t.Protocol))
		fmt.Fprintf(w, "%s  format code: %d\n", leadin, t.Format)
		raw := t.Raw
		if len(raw) > 24 {
			raw = raw[:24]
		}
		hexDump(w, raw, false)
	}
	if t.Format != 0 && t.Protocol != scsi.ProtoISCSI {
		fmt.Fprintf(w, "%s  [Unexpected format code: %d]\n", leadin, t.Format)
	}
}

// hexDump writes b 16 bytes a line with an extra space after the 8th byte, in
// sg3_utils' dStrHex layout: with addr, " 00     " then the bytes, as
// sg_persist -H prints them; without, the bytes alone.
func hexDump(w io.Writer, b []byte, addr bool) {
	for off := 0; off < len(b); off += 16 {
		var line strings.Builder
		if addr {
			fmt.Fprintf(&line, " %02x     ", off)
		}
		for i := off; i < off+16 && i < len(b); i++ {
			if i-off == 8 {
				line.WriteByte(' ')
			}
			fmt.Fprintf(&line, "%02x ", b[i])
		}
		fmt.Fprintln(w, strings.TrimRight(line.String(), " "))
	}
}

// printHex is sg_persist's --hex output for PR IN data: once, the generation
// and additional length line then the body; twice or more, the whole response.
func printHex(w io.Writer, sa byte, data []byte, level int) {
	if sa == scsi.SAReportCapabilities {
		hexDump(w, data, true)
		return
	}
	if level > 1 || len(data) < 8 {
		hexDump(w, data, level == 2 || len(data) < 8)
		return
	}
	gen := uint32(data[0])<<24 | uint32(data[1])<<16 | uint32(data[2])<<8 | uint32(data[3])
	al := uint32(data[4])<<24 | uint32(data[5])<<16 | uint32(data[6])<<8 | uint32(data[7])
	body := data[8:]
	if uint64(al) > uint64(len(body)) {
		fmt.Fprintf(w, "  PR generation=0x%x, Additional length too large=%d, truncate\n", gen, al)
	} else {
		fmt.Fprintf(w, "  PR generation=0x%x, Additional length=%d\n", gen, al)
		body = body[:al]
	}
	hexDump(w, body, true)
}

// senseKeyName is sg_lib's name of a sense key (SPC-4 table 48).
func senseKeyName(k byte) string {
	names := [...]string{"No Sense", "Recovered Error", "Not Ready", "Medium Error", "Hardware Error",
		"Illegal Request", "Unit Attention", "Data Protect", "Blank Check", "Vendor Specific",
		"Copy Aborted", "Aborted Command", "Equal", "Volume Overflow", "Miscompare", "Completed"}
	return names[k&0x0f]
}

// ascText describes the ASC/ASCQ pairs a PR command can meet (SPC-4 table D.1),
// in sg_lib's wording.
func ascText(asc, ascq byte) string {
	switch uint16(asc)<<8 | uint16(ascq) {
	case 0x0000:
		return "No additional sense information"
	case 0x0006:
		return "I/O process terminated"
	case 0x0400:
		return "Logical unit not ready, cause not reportable"
	case 0x0500:
		return "Logical unit does not respond to selection"
	case 0x0800:
		return "Logical unit communication failure"
	case 0x1100:
		return "Unrecovered read error"
	case 0x1a00:
		return "Parameter list length error"
	case 0x2000:
		return "Invalid command operation code"
	case 0x2400:
		return "Invalid field in cdb"
	case 0x2600:
		return "Invalid field in parameter list"
	case 0x2604:
		return "Invalid release of persistent reservation"
	case 0x2707:
		return "Space allocation failed write protect"
	case 0x2900:
		return "Power on, reset, or bus device reset occurred"
	case 0x2902:
		return "SCSI bus reset occurred"
	case 0x2907:
		return "I_T nexus loss occurred"
	case 0x2a03:
		return "Reservations preempted"
	case 0x2a04:
		return "Reservations released"
	case 0x2a05:
		return "Registrations preempted"
	case 0x2e02:
		return "Command timeout during processing"
	case 0x2f00:
		return "Commands cleared by another initiator"
	case 0x2f02:
		return "Commands cleared by device server"
	case 0x3a00:
		return "Medium not present"
	case 0x4400:
		return "Internal target failure"
	case 0x5504:
		return "Insufficient registration resources"
	}
	return fmt.Sprintf("ASC=0x%02x ASCQ=0x%02x", asc, ascq)
}

// senseLines is sg_persist's decoding of sense data under a "Persistent
// reservation in:" heading: format, key, additional sense.
func senseLines(raw []byte, s scsi.Sense) string {
	format := "Fixed format"
	if raw[0]&0x7f >= 0x72 {
		format = "Descriptor format"
	}
	when := "current"
	if raw[0]&0x7f == 0x71 || raw[0]&0x7f == 0x73 {
		when = "deferred"
	}
	return fmt.Sprintf("%s, %s; Sense key: %s\nAdditional sense: %s\n", format, when, senseKeyName(s.Key), ascText(s.ASC, s.ASCQ))
}
