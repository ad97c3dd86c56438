package scsi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed marks PR IN data (or a PR OUT parameter list) that cannot be
// decoded: shorter than its fixed header, or with lengths that contradict each
// other. Truncation by the allocation length is not malformed; decoders report it
// in a Truncated field instead.
var ErrMalformed = errors.New("malformed data")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// prInHeaderLen is the PRGENERATION + ADDITIONAL LENGTH header shared by READ
// KEYS, READ RESERVATION and READ FULL STATUS (SPC-4 §6.15.2, §6.15.3, §6.15.5).
const prInHeaderLen = 8

// Sizes fixed by SPC-4.
const (
	ReservationDataLen   = 24 // READ RESERVATION with a reservation (§6.15.3.3)
	CapabilitiesLen      = 8  // REPORT CAPABILITIES (§6.15.4)
	FullStatusDescHdrLen = 24 // READ FULL STATUS descriptor before the TransportID (§6.15.5)
)

// header reads PRGENERATION and ADDITIONAL LENGTH and says whether the data holds
// everything the ADDITIONAL LENGTH announces.
func header(b []byte, what string) (gen, addLen uint32, truncated bool, err error) {
	if len(b) < prInHeaderLen {
		return 0, 0, false, malformed("%s: %d bytes, the header needs %d", what, len(b), prInHeaderLen)
	}
	gen = binary.BigEndian.Uint32(b[0:4])
	addLen = binary.BigEndian.Uint32(b[4:8])
	return gen, addLen, uint64(len(b)-prInHeaderLen) < uint64(addLen), nil
}

// Keys is READ KEYS parameter data (SPC-4 §6.15.2).
//
// AdditionalLength is 8 × the number of registrations whatever the allocation
// length (LIO, SCST and the standard agree; libiscsi's PrinReadKeys.Truncate
// checks it), so a decoder learns the full count even from truncated data: Keys
// holds only the whole keys present and Truncated says some are missing.
type Keys struct {
	Generation       uint32   `json:"generation"`
	AdditionalLength uint32   `json:"additional_length"`
	Keys             []uint64 `json:"keys"`
	Truncated        bool     `json:"truncated,omitempty"`
}

// DecodeKeys decodes READ KEYS data of any length from 8 bytes up. Bytes after
// 8 + ADDITIONAL LENGTH (padding some targets add) are ignored.
func DecodeKeys(b []byte) (Keys, error) {
	gen, al, trunc, err := header(b, "READ KEYS")
	if err != nil {
		return Keys{}, err
	}
	k := Keys{Generation: gen, AdditionalLength: al, Truncated: trunc, Keys: []uint64{}}
	body := b[prInHeaderLen:]
	if uint64(len(body)) > uint64(al) {
		body = body[:al]
	}
	for ; len(body) >= 8; body = body[8:] {
		k.Keys = append(k.Keys, binary.BigEndian.Uint64(body))
	}
	if len(body) != 0 && !trunc {
		return k, malformed("READ KEYS: ADDITIONAL LENGTH %d is not a multiple of 8", al)
	}
	return k, nil
}

// Encode returns the full READ KEYS data for k.Generation and k.Keys; the
// ADDITIONAL LENGTH is computed (8 × len(Keys)), AdditionalLength and Truncated
// are ignored. Callers truncate to the allocation length themselves.
func (k Keys) Encode() []byte {
	b := make([]byte, prInHeaderLen+8*len(k.Keys))
	binary.BigEndian.PutUint32(b[0:4], k.Generation)
	binary.BigEndian.PutUint32(b[4:8], uint32(8*len(k.Keys)))
	for i, key := range k.Keys {
		binary.BigEndian.PutUint64(b[8+8*i:], key)
	}
	return b
}

// Reservation is READ RESERVATION parameter data (SPC-4 §6.15.3): 8 bytes when no
// reservation is held, 24 bytes (ADDITIONAL LENGTH 16) when one is.
//
// Held follows the ADDITIONAL LENGTH. For all-registrants types (7h, 8h) Key is 0
// (SPC-4 §5.7.10; LIO, SCST and libiscsi agree). When the data is truncated, Key,
// Scope and Type are filled only from the bytes present.
type Reservation struct {
	Generation       uint32 `json:"generation"`
	AdditionalLength uint32 `json:"additional_length"`
	Held             bool   `json:"held"`
	Key              uint64 `json:"key"`
	Scope            byte   `json:"scope"`
	Type             byte   `json:"type"`
	Truncated        bool   `json:"truncated,omitempty"`
}

// DecodeReservation decodes READ RESERVATION data of 8 bytes or more.
func DecodeReservation(b []byte) (Reservation, error) {
	gen, al, trunc, err := header(b, "READ RESERVATION")
	if err != nil {
		return Reservation{}, err
	}
	r := Reservation{Generation: gen, AdditionalLength: al, Truncated: trunc}
	switch {
	case al == 0:
	case al >= 16:
		r.Held = true
		if len(b) >= 16 {
			r.Key = binary.BigEndian.Uint64(b[8:16])
		}
		if len(b) >= 22 {
			r.Scope, r.Type = b[21]>>4, b[21]&0x0f
		}
	default:
		return r, malformed("READ RESERVATION: ADDITIONAL LENGTH %d is neither 0 nor 16", al)
	}
	return r, nil
}

// Encode returns the READ RESERVATION data: the 8-byte header alone when
// !r.Held, else 24 bytes with the key at 8-15 and scope/type at byte 21.
// AdditionalLength and Truncated are ignored.
func (r Reservation) Encode() []byte {
	if !r.Held {
		b := make([]byte, prInHeaderLen)
		binary.BigEndian.PutUint32(b[0:4], r.Generation)
		return b
	}
	b := make([]byte, ReservationDataLen)
	binary.BigEndian.PutUint32(b[0:4], r.Generation)
	binary.BigEndian.PutUint32(b[4:8], ReservationDataLen-prInHeaderLen)
	binary.BigEndian.PutUint64(b[8:16], r.Key)
	b[21] = r.Scope<<4 | r.Type&0x0f
	return b
}

// PERSISTENT RESERVATION TYPE MASK bits of REPORT CAPABILITIES bytes 4-5 read as
// a big-endian 16-bit value (SPC-4 §6.15.4, table 172).
const (
	MaskWriteExclusiveAllRegs  = 0x8000 // WR_EX_AR
	MaskExclusiveAccessRegOnly = 0x4000 // EX_AC_RO
	MaskWriteExclusiveRegOnly  = 0x2000 // WR_EX_RO
	MaskExclusiveAccess        = 0x0800 // EX_AC
	MaskWriteExclusive         = 0x0200 // WR_EX
	MaskExclusiveAccessAllRegs = 0x0001 // EX_AC_AR
)

// Capabilities is REPORT CAPABILITIES parameter data (SPC-4 §6.15.4, 8 bytes).
//
// LIO answers 00 08 1D 90 EA 01 00 00: CRH, SIP_C, ATP_C, PTPL_C, TMV, ALLOW
// COMMANDS 1 and all six types. Truncated is set when fewer than 8 bytes (or
// fewer than LENGTH) were returned; the fields past the data are zero.
type Capabilities struct {
	Length        uint16 `json:"length"`
	RLRC          bool   `json:"rlr_c"`
	CRH           bool   `json:"crh"`
	SIPC          bool   `json:"sip_c"`
	ATPC          bool   `json:"atp_c"`
	PTPLC         bool   `json:"ptpl_c"`
	TMV           bool   `json:"tmv"`
	AllowCommands byte   `json:"allow_commands"`
	PTPLA         bool   `json:"ptpl_a"`
	TypeMask      uint16 `json:"type_mask"`
	Truncated     bool   `json:"truncated,omitempty"`
}

// DecodeCapabilities decodes REPORT CAPABILITIES data of 2 bytes or more. A
// LENGTH other than 8 is returned with ErrMalformed, the way sg_persist rejects
// it, together with the fields decoded as if it were 8.
func DecodeCapabilities(b []byte) (Capabilities, error) {
	if len(b) < 2 {
		return Capabilities{}, malformed("REPORT CAPABILITIES: %d bytes, LENGTH needs 2", len(b))
	}
	var p [CapabilitiesLen]byte
	copy(p[:], b)
	c := Capabilities{
		Length:        binary.BigEndian.Uint16(p[0:2]),
		RLRC:          p[2]&0x80 != 0,
		CRH:           p[2]&0x10 != 0,
		SIPC:          p[2]&0x08 != 0,
		ATPC:          p[2]&0x04 != 0,
		PTPLC:         p[2]&0x01 != 0,
		TMV:           p[3]&0x80 != 0,
		AllowCommands: p[3] >> 4 & 0x7,
		PTPLA:         p[3]&0x01 != 0,
		TypeMask:      binary.BigEndian.Uint16(p[4:6]),
	}
	c.Truncated = len(b) < CapabilitiesLen || len(b) < int(c.Length)
	if c.Length != CapabilitiesLen {
		return c, malformed("REPORT CAPABILITIES: LENGTH %d, want %d", c.Length, CapabilitiesLen)
	}
	return c, nil
}

// Encode returns the 8 bytes of REPORT CAPABILITIES data. LENGTH is always
// written as 8; c.Length and c.Truncated are ignored.
func (c Capabilities) Encode() []byte {
	b := make([]byte, CapabilitiesLen)
	binary.BigEndian.PutUint16(b[0:2], CapabilitiesLen)
	set := func(i int, bit byte, on bool) {
		if on {
			b[i] |= bit
		}
	}
	set(2, 0x80, c.RLRC)
	set(2, 0x10, c.CRH)
	set(2, 0x08, c.SIPC)
	set(2, 0x04, c.ATPC)
	set(2, 0x01, c.PTPLC)
	set(3, 0x80, c.TMV)
	b[3] |= (c.AllowCommands & 0x7) << 4
	set(3, 0x01, c.PTPLA)
	binary.BigEndian.PutUint16(b[4:6], c.TypeMask)
	return b
}

// StatusDescriptor is one READ FULL STATUS descriptor (SPC-4 §6.15.5, table 174):
// one registered I_T nexus.
//
// Scope and Type are meaningful only when Holder is set. RelativeTargetPort is
// undefined (LIO writes 0) when AllTargetPorts is set. TransportID.Raw holds the
// TransportID bytes as received; when the descriptor was cut short by the
// allocation length they are incomplete and TransportIDErr says why the
// TransportID could not be decoded.
type StatusDescriptor struct {
	Key                uint64      `json:"key"`
	AllTargetPorts     bool        `json:"all_tg_pt"`
	Holder             bool        `json:"r_holder"`
	Scope              byte        `json:"scope"`
	Type               byte        `json:"type"`
	RelativeTargetPort uint16      `json:"relative_target_port"`
	DescriptorLength   uint32      `json:"additional_descriptor_length"`
	TransportID        TransportID `json:"transport_id"`
	TransportIDErr     string      `json:"transport_id_error,omitempty"`
}

// FullStatus is READ FULL STATUS parameter data (SPC-4 §6.15.5).
//
// The standard's ADDITIONAL LENGTH counts every descriptor; LIO counts only those
// that fit in the allocation length (docs/spc4-pr.md §4.4), so Truncated (fewer bytes
// than announced, or a descriptor cut short) is the reliable signal.
type FullStatus struct {
	Generation       uint32             `json:"generation"`
	AdditionalLength uint32             `json:"additional_length"`
	Descriptors      []StatusDescriptor `json:"descriptors"`
	Truncated        bool               `json:"truncated,omitempty"`
}

// DecodeFullStatus decodes READ FULL STATUS data of 8 bytes or more. Descriptors
// are read while their 24-byte header is present; a descriptor whose TransportID
// is cut short is kept with the bytes present, and Truncated is set.
func DecodeFullStatus(b []byte) (FullStatus, error) {
	gen, al, trunc, err := header(b, "READ FULL STATUS")
	if err != nil {
		return FullStatus{}, err
	}
	fs := FullStatus{Generation: gen, AdditionalLength: al, Truncated: trunc, Descriptors: []StatusDescriptor{}}
	body := b[prInHeaderLen:]
	if uint64(len(body)) > uint64(al) {
		body = body[:al]
	}
	for len(body) > 0 {
		if len(body) < FullStatusDescHdrLen {
			if !trunc {
				return fs, malformed("READ FULL STATUS: %d bytes left, a descriptor needs %d", len(body), FullStatusDescHdrLen)
			}
			break
		}
		d := StatusDescriptor{
			Key:                binary.BigEndian.Uint64(body[0:8]),
			AllTargetPorts:     body[12]&0x02 != 0,
			Holder:             body[12]&0x01 != 0,
			Scope:              body[13] >> 4,
			Type:               body[13] & 0x0f,
			RelativeTargetPort: binary.BigEndian.Uint16(body[18:20]),
			DescriptorLength:   binary.BigEndian.Uint32(body[20:24]),
		}
		tid := body[FullStatusDescHdrLen:]
		short := uint64(len(tid)) < uint64(d.DescriptorLength)
		if short {
			if !trunc {
				return fs, malformed("READ FULL STATUS: descriptor length %d overruns ADDITIONAL LENGTH", d.DescriptorLength)
			}
		} else {
			tid = tid[:d.DescriptorLength]
		}
		d.TransportID, d.TransportIDErr = lenientTransportID(tid)
		fs.Descriptors = append(fs.Descriptors, d)
		if short {
			fs.Truncated = true
			break
		}
		body = body[FullStatusDescHdrLen+len(tid):]
	}
	return fs, nil
}

// lenientTransportID decodes what it can: a TransportID that fails to decode is
// kept as raw bytes with its protocol and format, and the reason is returned.
func lenientTransportID(b []byte) (TransportID, string) {
	if len(b) == 0 {
		return TransportID{Raw: []byte{}}, ""
	}
	t, n, err := DecodeTransportID(b)
	if err == nil && n == len(b) {
		return t, ""
	}
	raw := append([]byte(nil), b...)
	if err == nil {
		t.Raw = raw
		return t, fmt.Sprintf("%d bytes after the %d-byte TransportID", len(b)-n, n)
	}
	return TransportID{Format: b[0] >> 6, Protocol: b[0] & 0x0f, Raw: raw}, err.Error()
}

// Encode returns the full READ FULL STATUS data for fs.Generation and
// fs.Descriptors. Each ADDITIONAL DESCRIPTOR LENGTH and the ADDITIONAL LENGTH are
// computed from the encoded TransportIDs; AdditionalLength, DescriptorLength,
// TransportIDErr and Truncated are ignored. To reproduce LIO's count of only the
// descriptors that fit, pass only those.
func (fs FullStatus) Encode() ([]byte, error) {
	b := make([]byte, prInHeaderLen, 256)
	binary.BigEndian.PutUint32(b[0:4], fs.Generation)
	for i, d := range fs.Descriptors {
		tid, err := d.TransportID.Encode()
		if err != nil {
			return nil, fmt.Errorf("READ FULL STATUS descriptor %d: %w", i, err)
		}
		var h [FullStatusDescHdrLen]byte
		binary.BigEndian.PutUint64(h[0:8], d.Key)
		if d.AllTargetPorts {
			h[12] |= 0x02
		}
		if d.Holder {
			h[12] |= 0x01
		}
		h[13] = d.Scope<<4 | d.Type&0x0f
		binary.BigEndian.PutUint16(h[18:20], d.RelativeTargetPort)
		binary.BigEndian.PutUint32(h[20:24], uint32(len(tid)))
		b = append(b, h[:]...)
		b = append(b, tid...)
	}
	if len(b)-prInHeaderLen > 1<<32-1 {
		return nil, fmt.Errorf("READ FULL STATUS: %d bytes do not fit ADDITIONAL LENGTH", len(b))
	}
	binary.BigEndian.PutUint32(b[4:8], uint32(len(b)-prInHeaderLen))
	return b, nil
}
