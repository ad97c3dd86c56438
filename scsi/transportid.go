package scsi

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// PROTOCOL IDENTIFIER values (SPC-4 §7.6.1, table 362). A TransportID carries one
// in the low nibble of its first byte.
const (
	ProtoFC    = 0x0 // Fibre Channel (FCP)
	ProtoSPI   = 0x1 // parallel SCSI
	ProtoSSA   = 0x2
	ProtoSBP   = 0x3 // IEEE 1394
	ProtoSRP   = 0x4 // SCSI RDMA
	ProtoISCSI = 0x5
	ProtoSAS   = 0x6
	ProtoADT   = 0x7
	ProtoATA   = 0x8
	ProtoUAS   = 0x9
	ProtoSOP   = 0xa
	ProtoNone  = 0xf
)

// TransportID FORMAT CODE values for iSCSI (SPC-4 §7.6.4.6): 00b names the
// initiator device, 01b the initiator port (name plus ISID).
const (
	FormatISCSIName = 0x0
	FormatISCSIPort = 0x1
)

// FixedTransportIDLen is the size of every TransportID except iSCSI's: FC, SAS,
// SBP, SRP and SPI TransportIDs are exactly 24 bytes (SPC-4 §7.6.4.2-§7.6.4.5, §7.6.4.7).
const FixedTransportIDLen = 24

// iSCSISeparator sits between the iSCSI name and the ISID in a format 01b
// TransportID (SPC-4 §7.6.4.6, table 375: ",i,0x").
const iSCSISeparator = ",i,0x"

// ErrTransportID marks a TransportID that cannot be decoded or encoded.
var ErrTransportID = errors.New("bad TransportID")

func tidErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrTransportID, fmt.Sprintf(format, a...))
}

// TransportID identifies an initiator port the way SPC-4 §7.6.4 encodes it in
// PR OUT parameter lists and READ FULL STATUS descriptors.
//
// Which fields matter depends on Protocol: Addr is the FC N_Port name (bytes
// 8-15), the SAS address (bytes 4-11) or the SBP EUI-64 (bytes 8-15); Name is the
// iSCSI name and ISID the 12 hex digits after ",i,0x" of a format 01b iSCSI
// TransportID. Raw, when non-nil, is the exact encoding: decoders set it and
// Encode returns it unchanged, so a decoded TransportID re-encodes byte for byte
// even when it carries reserved bits or a protocol this package does not model.
type TransportID struct {
	Format   byte   `json:"format"`
	Protocol byte   `json:"protocol"`
	Addr     uint64 `json:"addr,omitempty"`
	Name     string `json:"name,omitempty"`
	ISID     string `json:"isid,omitempty"`
	Raw      []byte `json:"raw,omitempty"`
}

// FCTransportID returns the FCP TransportID (SPC-4 §7.6.4.2) for an N_Port name.
func FCTransportID(wwpn uint64) TransportID {
	return TransportID{Protocol: ProtoFC, Addr: wwpn}
}

// SASTransportID returns the SAS TransportID (SPC-4 §7.6.4.7) for a SAS address.
func SASTransportID(addr uint64) TransportID {
	return TransportID{Protocol: ProtoSAS, Addr: addr}
}

// ISCSITransportID returns the iSCSI initiator device TransportID (format 00b,
// SPC-4 §7.6.4.6) for an iSCSI name.
func ISCSITransportID(name string) TransportID {
	return TransportID{Protocol: ProtoISCSI, Format: FormatISCSIName, Name: name}
}

// ISCSIPortTransportID returns the iSCSI initiator port TransportID (format 01b)
// for a name and an ISID given as 12 hex digits. LIO writes the ISID in lower
// case, so callers that want LIO's bytes pass it lower-cased.
func ISCSIPortTransportID(name, isid string) TransportID {
	return TransportID{Protocol: ProtoISCSI, Format: FormatISCSIPort, Name: name, ISID: isid}
}

// TransportIDLen returns the length of the TransportID that starts b, as its
// header announces it: 4 + ADDITIONAL LENGTH for iSCSI, 24 for every other
// protocol. ok is false when b is too short to hold the header.
func TransportIDLen(b []byte) (n int, ok bool) {
	if len(b) < 1 {
		return 0, false
	}
	if b[0]&0x0f == ProtoISCSI {
		if len(b) < 4 {
			return 0, false
		}
		return 4 + int(binary.BigEndian.Uint16(b[2:4])), true
	}
	return FixedTransportIDLen, true
}

// DecodeTransportID decodes the TransportID at the start of b and returns it with
// the number of bytes it occupies, so that lists (SPEC_I_PT) can be walked. Bytes
// after the TransportID are ignored. It fails when b is shorter than the length
// the header announces, or when an iSCSI TransportID is malformed.
func DecodeTransportID(b []byte) (TransportID, int, error) {
	n, ok := TransportIDLen(b)
	if !ok {
		return TransportID{}, 0, tidErr("%d bytes is too short for a header", len(b))
	}
	if len(b) < n {
		return TransportID{}, 0, tidErr("needs %d bytes, have %d", n, len(b))
	}
	raw := append([]byte(nil), b[:n]...)
	t := TransportID{Format: raw[0] >> 6, Protocol: raw[0] & 0x0f, Raw: raw}
	switch t.Protocol {
	case ProtoFC, ProtoSBP:
		t.Addr = binary.BigEndian.Uint64(raw[8:16])
	case ProtoSAS:
		t.Addr = binary.BigEndian.Uint64(raw[4:12])
	case ProtoISCSI:
		if err := t.decodeISCSI(raw[4:]); err != nil {
			return TransportID{}, 0, err
		}
	}
	return t, n, nil
}

// decodeISCSI reads the NUL-terminated name (and ISID for format 01b). A missing
// NUL is tolerated: the name then runs to the end of the ADDITIONAL LENGTH, as
// sg_persist prints it.
func (t *TransportID) decodeISCSI(p []byte) error {
	if i := strings.IndexByte(string(p), 0); i >= 0 {
		p = p[:i]
	}
	s := string(p)
	switch t.Format {
	case FormatISCSIName:
		t.Name = s
	case FormatISCSIPort:
		i := indexASCIIFold(s, iSCSISeparator)
		if i < 0 {
			return tidErr("iSCSI port TransportID %q has no %q separator", s, iSCSISeparator)
		}
		t.Name, t.ISID = s[:i], s[i+len(iSCSISeparator):]
	default:
		return tidErr("iSCSI TransportID with reserved format code %d", t.Format)
	}
	return nil
}

// indexASCIIFold is strings.Index ignoring ASCII case only: iSCSI names are
// bytes here, and Unicode case folding could change their length.
func indexASCIIFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if asciiEqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

func asciiEqualFold(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Encode returns the TransportID's bytes: Raw when it is set, else the SPC-4
// §7.6.4 layout for FC, SBP, SAS and iSCSI. iSCSI names are NUL terminated and
// NUL padded to a multiple of 4 with an ADDITIONAL LENGTH of at least 20, as
// SPC-4 §7.6.4.6 requires (LIO pads only to a multiple of 4; the two agree for
// every name of 19 characters or more).
func (t TransportID) Encode() ([]byte, error) {
	if t.Raw != nil {
		return append([]byte(nil), t.Raw...), nil
	}
	if t.Format > 3 || t.Protocol > 0x0f {
		return nil, tidErr("format %d / protocol %#x out of range", t.Format, t.Protocol)
	}
	switch t.Protocol {
	case ProtoFC, ProtoSBP, ProtoSAS:
		if t.Format != 0 {
			return nil, tidErr("protocol %#x has only format 0", t.Protocol)
		}
		b := make([]byte, FixedTransportIDLen)
		b[0] = t.Protocol
		if t.Protocol == ProtoSAS {
			binary.BigEndian.PutUint64(b[4:12], t.Addr)
		} else {
			binary.BigEndian.PutUint64(b[8:16], t.Addr)
		}
		return b, nil
	case ProtoISCSI:
		return t.encodeISCSI()
	}
	return nil, tidErr("cannot encode protocol %#x without Raw bytes", t.Protocol)
}

func (t TransportID) encodeISCSI() ([]byte, error) {
	if t.Name == "" || strings.IndexByte(t.Name, 0) >= 0 {
		return nil, tidErr("iSCSI name %q is empty or holds a NUL", t.Name)
	}
	s := t.Name
	switch t.Format {
	case FormatISCSIName:
	case FormatISCSIPort:
		if len(t.ISID) != 12 {
			return nil, tidErr("ISID %q is not 12 hex digits", t.ISID)
		}
		if _, err := hex.DecodeString(t.ISID); err != nil {
			return nil, tidErr("ISID %q is not 12 hex digits", t.ISID)
		}
		s += iSCSISeparator + t.ISID
	default:
		return nil, tidErr("iSCSI TransportID with reserved format code %d", t.Format)
	}
	n := (len(s) + 1 + 3) &^ 3
	if n < 20 {
		n = 20
	}
	if n > 0xffff {
		return nil, tidErr("iSCSI name of %d bytes is too long", len(s))
	}
	b := make([]byte, 4+n)
	b[0] = t.Format<<6 | ProtoISCSI
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	copy(b[4:], s)
	return b, nil
}

// ProtocolName names a PROTOCOL IDENTIFIER the way sg_persist does in its
// TransportID decoding.
func ProtocolName(p byte) string {
	switch p {
	case ProtoFC:
		return "FCP-2"
	case ProtoSPI:
		return "Parallel SCSI"
	case ProtoSSA:
		return "SSA"
	case ProtoSBP:
		return "IEEE 1394"
	case ProtoSRP:
		return "RDMA"
	case ProtoISCSI:
		return "iSCSI"
	case ProtoSAS:
		return "SAS"
	case ProtoADT:
		return "ADT"
	case ProtoATA:
		return "ATAPI"
	case ProtoUAS:
		return "UAS"
	case ProtoSOP:
		return "SOP"
	case ProtoNone:
		return "No specified protocol"
	}
	return fmt.Sprintf("protocol 0x%x", p)
}

// String describes the TransportID on one line in sg_persist's words, e.g.
// "SAS address: 0x5001405b00000001" or "iSCSI name and session id:
// iqn.1994-05.com.example:i1,i,0x00023d000001".
func (t TransportID) String() string {
	switch t.Protocol {
	case ProtoFC:
		return fmt.Sprintf("FCP-2 World Wide Name: 0x%016x", t.Addr)
	case ProtoSBP:
		return fmt.Sprintf("IEEE 1394 EUI-64 name: 0x%016x", t.Addr)
	case ProtoSAS:
		return fmt.Sprintf("SAS address: 0x%016x", t.Addr)
	case ProtoISCSI:
		switch t.Format {
		case FormatISCSIName:
			return "iSCSI name: " + t.Name
		case FormatISCSIPort:
			return "iSCSI name and session id: " + t.Name + iSCSISeparator + t.ISID
		}
		return fmt.Sprintf("iSCSI [Unexpected format code: %d]", t.Format)
	}
	b, _ := t.Encode()
	return fmt.Sprintf("%s format code %d: % x", ProtocolName(t.Protocol), t.Format, b)
}

// DecodeTransportIDs decodes a list of TransportIDs packed back to back, as in
// the SPEC_I_PT part of a PR OUT parameter list (SPC-4 §6.16.3). The list must
// end exactly at the end of b.
func DecodeTransportIDs(b []byte) ([]TransportID, error) {
	var out []TransportID
	for off := 0; off < len(b); {
		t, n, err := DecodeTransportID(b[off:])
		if err != nil {
			return out, fmt.Errorf("TransportID at offset %d: %w", off, err)
		}
		out = append(out, t)
		off += n
	}
	return out, nil
}

// EncodeTransportIDs encodes ts back to back.
func EncodeTransportIDs(ts []TransportID) ([]byte, error) {
	var out []byte
	for i, t := range ts {
		b, err := t.Encode()
		if err != nil {
			return nil, fmt.Errorf("TransportID %d: %w", i, err)
		}
		out = append(out, b...)
	}
	return out, nil
}
