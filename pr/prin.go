package pr

import (
	"encoding/binary"

	"github.com/prhelper/prhelper/scsi"
)

// prInHeaderLen is PRGENERATION + ADDITIONAL LENGTH (SPC-4 §6.15.2).
const prInHeaderLen = 8

// prIn answers PERSISTENT RESERVE IN (SPC-4 §6.15; docs/spc4-pr.md §4). PR IN never
// changes the state. An unknown service action (04h-1Fh) is INVALID FIELD IN CDB.
func prIn(p Profile, st *State, cdb []byte) Result {
	alloc := int(binary.BigEndian.Uint16(cdb[7:9]))
	switch cdb[1] & 0x1f {
	case scsi.SAReadKeys:
		return readKeys(p, st, alloc)
	case scsi.SAReadReservation:
		return readReservation(p, st, alloc)
	case scsi.SAReportCapabilities:
		return reportCapabilities(p, st, alloc)
	case scsi.SAReadFullStatus:
		return readFullStatus(p, st, alloc)
	}
	return checkCondition(scsi.SenseInvalidField)
}

// data returns GOOD with b cut to the allocation length.
func data(b []byte, alloc int) Result {
	if len(b) > alloc {
		b = b[:alloc]
	}
	return Result{Status: scsi.StatusGood, Data: b}
}

// header returns the 8-byte PR IN header followed by room for n more bytes.
func header(gen uint32, addLen, n int) []byte {
	b := make([]byte, prInHeaderLen, prInHeaderLen+n)
	binary.BigEndian.PutUint32(b[0:4], gen)
	binary.BigEndian.PutUint32(b[4:8], uint32(addLen))
	return b
}

// readKeys is READ KEYS (SPC-4 §6.15.2; LIO core_scsi3_pri_read_keys, §4.1):
// one key per registration in registration order, ADDITIONAL LENGTH counting
// all of them whatever the allocation length. With ReadKeysWholeKeys a key cut
// by the allocation length is sent as zeros (D14).
func readKeys(p Profile, st *State, alloc int) Result {
	if p.ShortAllocationInvalid && alloc < prInHeaderLen {
		return checkCondition(scsi.SenseInvalidField)
	}
	n := 8 * len(st.Registrations)
	b := header(st.Generation, n, n)
	for _, r := range st.Registrations {
		b = binary.BigEndian.AppendUint64(b, r.Key)
	}
	if p.ReadKeysWholeKeys && alloc < len(b) && alloc > prInHeaderLen {
		whole := prInHeaderLen + (alloc-prInHeaderLen)/8*8
		clear(b[whole:])
	}
	return data(b, alloc)
}

// readReservation is READ RESERVATION (SPC-4 §6.15.3; LIO
// core_scsi3_pri_read_reservation, §4.2): 8 bytes without a reservation, 24
// with one. The key is the holder's, 0 for the all-registrants types.
func readReservation(p Profile, st *State, alloc int) Result {
	if p.ShortAllocationInvalid && alloc < prInHeaderLen {
		return checkCondition(scsi.SenseInvalidField)
	}
	res := st.Reservation
	if res == nil {
		return data(header(st.Generation, 0, 0), alloc)
	}
	const addLen = scsi.ReservationDataLen - prInHeaderLen
	b := header(st.Generation, addLen, addLen)
	b = b[:scsi.ReservationDataLen]
	// LIO quirk (D13): with 8..21 bytes of room it writes the header only and
	// transfers the whole allocation length, key and type left zero.
	if p.ReadReservationHeaderOnly && alloc >= prInHeaderLen && alloc < 22 {
		out := make([]byte, alloc)
		copy(out, b[:prInHeaderLen])
		return Result{Status: scsi.StatusGood, Data: out}
	}
	if h := st.holderIndex(); h >= 0 && !allRegistrants(res.Type) {
		binary.BigEndian.PutUint64(b[8:16], st.Registrations[h].Key)
	}
	b[21] = res.Scope<<4 | res.Type&0x0f
	return data(b, alloc)
}

// reportCapabilities is REPORT CAPABILITIES (SPC-4 §6.15.4, §4.3): the profile's
// capabilities with PTPL_A from the state. LIO rejects allocation lengths below 6.
func reportCapabilities(p Profile, st *State, alloc int) Result {
	if p.ShortAllocationInvalid && alloc < 6 {
		return checkCondition(scsi.SenseInvalidField)
	}
	c := p.Capabilities
	c.PTPLA = st.APTPL
	return data(c.Encode(), alloc)
}

// readFullStatus is READ FULL STATUS (SPC-4 §6.15.5; LIO
// core_scsi3_pri_read_full_status, §4.4): one descriptor per registration.
// R_HOLDER (with scope and type) is set for the holder, and for every
// registrant under an all-registrants reservation; ALL_TG_PT registrations show
// RELATIVE TARGET PORT IDENTIFIER 0.
//
// With FullStatusCountsFitting (D12) the loop stops, as LIO's does, at the
// first registration for which TransportID length + ADDITIONAL LENGTH so far
// exceeds the allocation length, and ADDITIONAL LENGTH counts only the
// descriptors before it; otherwise it counts every descriptor.
func readFullStatus(p Profile, st *State, alloc int) Result {
	if p.ShortAllocationInvalid && alloc < prInHeaderLen {
		return checkCondition(scsi.SenseInvalidField)
	}
	res := st.Reservation
	var body []byte
	h := st.holderIndex() // once: isHolder would look it up per registration
	for i, r := range st.Registrations {
		tid := r.Nexus.Initiator.TransportID()
		if p.FullStatusCountsFitting && len(tid)+len(body) > alloc {
			break
		}
		var d [scsi.FullStatusDescHdrLen]byte
		binary.BigEndian.PutUint64(d[0:8], r.Key)
		if r.AllTgPt {
			d[12] |= 0x02
		}
		if res != nil && (allRegistrants(res.Type) || i == h) {
			d[12] |= 0x01
			d[13] = res.Scope<<4 | res.Type&0x0f
		}
		if !r.AllTgPt {
			binary.BigEndian.PutUint16(d[18:20], r.Nexus.RTPI)
		}
		binary.BigEndian.PutUint32(d[20:24], uint32(len(tid)))
		body = append(body, d[:]...)
		body = append(body, tid...)
	}
	b := append(header(st.Generation, len(body), len(body)), body...)
	return data(b, alloc)
}
