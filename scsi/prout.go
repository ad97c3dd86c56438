package scsi

import (
	"encoding/binary"
	"fmt"
)

// PR OUT parameter list sizes (SPC-4 §6.16.3, §6.16.4).
const (
	// PROutParamLen is the basic parameter list: every service action except
	// REGISTER AND MOVE sends exactly 24 bytes unless SPEC_I_PT is set.
	PROutParamLen = 24
	// PROutSpecIPTHdrLen is where the TransportIDs start when SPEC_I_PT is set:
	// the 24 bytes plus the 4-byte TRANSPORTID PARAMETER DATA LENGTH.
	PROutSpecIPTHdrLen = 28
	// RegisterMoveHdrLen is where the REGISTER AND MOVE TransportID starts.
	RegisterMoveHdrLen = 24
)

// Byte 20 bits of the basic parameter list (SPC-4 §6.16.3, table 180).
const (
	ParamSpecIPT = 0x08
	ParamAllTgPt = 0x04
	ParamAPTPL   = 0x01
)

// Byte 17 bits of the REGISTER AND MOVE parameter list (SPC-4 §6.16.4, table 183).
const (
	MoveUnreg = 0x02
	MoveAPTPL = 0x01
)

// PROutParams is the basic PR OUT parameter list (SPC-4 §6.16.3) used by every
// service action except REGISTER AND MOVE.
//
// TransportIDs are sent only with SPEC_I_PT; TransportIDData holds the raw
// TRANSPORTID list as decoded (nil when SpecIPT is clear).
type PROutParams struct {
	Key             uint64        `json:"reservation_key"`
	SAKey           uint64        `json:"service_action_reservation_key"`
	SpecIPT         bool          `json:"spec_i_pt"`
	AllTgPt         bool          `json:"all_tg_pt"`
	APTPL           bool          `json:"aptpl"`
	TransportIDs    []TransportID `json:"transport_ids,omitempty"`
	TransportIDData []byte        `json:"-"`
}

// Encode returns the parameter list: 24 bytes, or, with SpecIPT, 28 bytes plus
// the encoded TransportIDs with their length at bytes 24-27 (the layout sg_persist
// and LIO use). TransportIDs without SpecIPT is an error: the device would never
// see them. TransportIDData is ignored.
func (p PROutParams) Encode() ([]byte, error) {
	if !p.SpecIPT && len(p.TransportIDs) > 0 {
		return nil, fmt.Errorf("PR OUT parameters: %d TransportIDs without SPEC_I_PT", len(p.TransportIDs))
	}
	b := make([]byte, PROutParamLen, PROutSpecIPTHdrLen)
	binary.BigEndian.PutUint64(b[0:8], p.Key)
	binary.BigEndian.PutUint64(b[8:16], p.SAKey)
	if p.SpecIPT {
		b[20] |= ParamSpecIPT
	}
	if p.AllTgPt {
		b[20] |= ParamAllTgPt
	}
	if p.APTPL {
		b[20] |= ParamAPTPL
	}
	if !p.SpecIPT {
		return b, nil
	}
	tids, err := EncodeTransportIDs(p.TransportIDs)
	if err != nil {
		return nil, fmt.Errorf("PR OUT parameters: %w", err)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(tids)))
	return append(b, tids...), nil
}

// DecodePROutParams decodes a basic PR OUT parameter list. It applies only the
// layout's own rules, the ones LIO checks before looking at the service action
// (docs/spc4-pr.md §3.1): at least 24 bytes; exactly 24 without SPEC_I_PT; with
// SPEC_I_PT at least 28 bytes and 28 + TRANSPORTID PARAMETER DATA LENGTH equal to
// the list length, and TransportIDs that decode. Errors wrap ErrMalformed; the
// decoded fields are returned as far as they could be read, so a caller can
// still tell SPEC_I_PT from the rest.
func DecodePROutParams(b []byte) (PROutParams, error) {
	if len(b) < PROutParamLen {
		return PROutParams{}, malformed("PR OUT parameter list of %d bytes, want %d", len(b), PROutParamLen)
	}
	p := PROutParams{
		Key:     binary.BigEndian.Uint64(b[0:8]),
		SAKey:   binary.BigEndian.Uint64(b[8:16]),
		SpecIPT: b[20]&ParamSpecIPT != 0,
		AllTgPt: b[20]&ParamAllTgPt != 0,
		APTPL:   b[20]&ParamAPTPL != 0,
	}
	if !p.SpecIPT {
		if len(b) != PROutParamLen {
			return p, malformed("PR OUT parameter list of %d bytes without SPEC_I_PT, want %d", len(b), PROutParamLen)
		}
		return p, nil
	}
	if len(b) < PROutSpecIPTHdrLen {
		return p, malformed("PR OUT parameter list of %d bytes with SPEC_I_PT, want at least %d", len(b), PROutSpecIPTHdrLen)
	}
	tpdl := binary.BigEndian.Uint32(b[24:28])
	if uint64(tpdl)+PROutSpecIPTHdrLen != uint64(len(b)) {
		return p, malformed("TRANSPORTID PARAMETER DATA LENGTH %d + %d != list length %d", tpdl, PROutSpecIPTHdrLen, len(b))
	}
	p.TransportIDData = append([]byte{}, b[PROutSpecIPTHdrLen:]...)
	tids, err := DecodeTransportIDs(p.TransportIDData)
	if err != nil {
		return p, fmt.Errorf("%w: SPEC_I_PT list: %v", ErrMalformed, err)
	}
	p.TransportIDs = tids
	return p, nil
}

// RegisterMoveParams is the REGISTER AND MOVE parameter list (SPC-4 §6.16.4).
type RegisterMoveParams struct {
	Key                uint64      `json:"reservation_key"`
	SAKey              uint64      `json:"service_action_reservation_key"`
	Unreg              bool        `json:"unreg"`
	APTPL              bool        `json:"aptpl"`
	RelativeTargetPort uint16      `json:"relative_target_port"`
	TransportID        TransportID `json:"transport_id"`
}

// Encode returns the REGISTER AND MOVE parameter list: 24 bytes, then the
// TransportID, whose length goes in bytes 20-23.
func (p RegisterMoveParams) Encode() ([]byte, error) {
	tid, err := p.TransportID.Encode()
	if err != nil {
		return nil, fmt.Errorf("REGISTER AND MOVE parameters: %w", err)
	}
	b := make([]byte, RegisterMoveHdrLen, RegisterMoveHdrLen+len(tid))
	binary.BigEndian.PutUint64(b[0:8], p.Key)
	binary.BigEndian.PutUint64(b[8:16], p.SAKey)
	if p.Unreg {
		b[17] |= MoveUnreg
	}
	if p.APTPL {
		b[17] |= MoveAPTPL
	}
	binary.BigEndian.PutUint16(b[18:20], p.RelativeTargetPort)
	binary.BigEndian.PutUint32(b[20:24], uint32(len(tid)))
	return append(b, tid...), nil
}

// DecodeRegisterMoveParams decodes a REGISTER AND MOVE parameter list. Like LIO
// it requires 24 + TRANSPORTID PARAMETER DATA LENGTH to equal the list length, and
// the TransportID to decode and fill exactly that length. Errors wrap
// ErrMalformed and come with the fields read so far.
func DecodeRegisterMoveParams(b []byte) (RegisterMoveParams, error) {
	if len(b) < RegisterMoveHdrLen {
		return RegisterMoveParams{}, malformed("REGISTER AND MOVE parameter list of %d bytes, want at least %d", len(b), RegisterMoveHdrLen)
	}
	p := RegisterMoveParams{
		Key:                binary.BigEndian.Uint64(b[0:8]),
		SAKey:              binary.BigEndian.Uint64(b[8:16]),
		Unreg:              b[17]&MoveUnreg != 0,
		APTPL:              b[17]&MoveAPTPL != 0,
		RelativeTargetPort: binary.BigEndian.Uint16(b[18:20]),
	}
	tpdl := binary.BigEndian.Uint32(b[20:24])
	if uint64(tpdl)+RegisterMoveHdrLen != uint64(len(b)) {
		return p, malformed("TRANSPORTID PARAMETER DATA LENGTH %d + %d != list length %d", tpdl, RegisterMoveHdrLen, len(b))
	}
	t, n, err := DecodeTransportID(b[RegisterMoveHdrLen:])
	if err != nil {
		return p, fmt.Errorf("%w: REGISTER AND MOVE: %v", ErrMalformed, err)
	}
	if n != int(tpdl) {
		return p, malformed("REGISTER AND MOVE: TransportID is %d bytes, TRANSPORTID PARAMETER DATA LENGTH %d", n, tpdl)
	}
	p.TransportID = t
	return p, nil
}
