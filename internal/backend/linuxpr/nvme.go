package linuxpr

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/prhelper/prhelper/internal/kernel/blkpr"
)

// Sizes of the NVMe Reservation Report data (NVM Express Base Specification 2.0,
// Reservation Report command: "Reservation Status Data Structure" and its
// extended form). All multi-byte fields are little-endian.
const (
	// NVMeReportHeaderLen is the header of the non-extended report (EDS=0).
	NVMeReportHeaderLen = 24
	// NVMeReportExtHeaderLen is the header of the extended report (EDS=1): the
	// 24 bytes above and 40 reserved ones.
	NVMeReportExtHeaderLen = 64
	// NVMeRegCtlLen is a Registered Controller Data Structure (64-bit host ID).
	NVMeRegCtlLen = 24
	// NVMeRegCtlExtLen is a Registered Controller Extended Data Structure
	// (128-bit host ID).
	NVMeRegCtlExtLen = 64
)

// ErrNVMeReport marks Reservation Report data that cannot be decoded.
var ErrNVMeReport = errors.New("malformed NVMe reservation report")

// NVMeRegistrant is one registered controller of a Reservation Report.
type NVMeRegistrant struct {
	ControllerID uint16 // CNTLID, bytes 1:0 (0xFFFF: dynamic controller model, unknown)
	Holder       bool   // RCSTS bit 0: the host holds the reservation
	Key          uint64 // RKEY
	// HostID is the host identifier: 8 bytes (non-extended, bytes 15:8) or 16
	// bytes (extended, bytes 31:16).
	HostID []byte
}

// NVMeReport is a decoded NVMe Reservation Report.
type NVMeReport struct {
	Generation uint32 // GEN, bytes 3:0
	Type       byte   // RTYPE, byte 4: 0 no reservation, 1-6 as enum pr_type
	// Registered is REGCTL (bytes 6:5): the number of registered controllers,
	// which may exceed len(Registrants) when the buffer was too small.
	Registered uint16
	PTPL       bool // PTPLS bit 0, byte 9: persist through power loss active
	Extended   bool
	// Registrants are the whole entries present in the data, at most Registered.
	Registrants []NVMeRegistrant
}

// nvmeReportLen is the data length of a report with n registrants.
func nvmeReportLen(extended bool, n int) int {
	if extended {
		return NVMeReportExtHeaderLen + n*NVMeRegCtlExtLen
	}
	return NVMeReportHeaderLen + n*NVMeRegCtlLen
}

// DecodeNVMeReport decodes Reservation Report data returned with EDS set
// (extended) or clear. Entries past REGCTL are ignored (the controller zero-fills
// the rest of the buffer); a trailing partial entry is dropped. Only data shorter
// than the header is an error.
func DecodeNVMeReport(b []byte, extended bool) (NVMeReport, error) {
	hdr, entry := NVMeReportHeaderLen, NVMeRegCtlLen
	if extended {
		hdr, entry = NVMeReportExtHeaderLen, NVMeRegCtlExtLen
	}
	if len(b) < hdr {
		return NVMeReport{}, fmt.Errorf("%w: %d bytes, the header needs %d", ErrNVMeReport, len(b), hdr)
	}
	r := NVMeReport{
		Generation: binary.LittleEndian.Uint32(b[0:4]),
		Type:       b[4],
		Registered: binary.LittleEndian.Uint16(b[5:7]),
		PTPL:       b[9]&0x01 != 0,
		Extended:   extended,
	}
	n := min(int(r.Registered), (len(b)-hdr)/entry)
	r.Registrants = make([]NVMeRegistrant, 0, n)
	for i := range n {
		e := b[hdr+i*entry : hdr+(i+1)*entry]
		reg := NVMeRegistrant{
			ControllerID: binary.LittleEndian.Uint16(e[0:2]),
			Holder:       e[2]&0x01 != 0,
		}
		if extended {
			reg.Key = binary.LittleEndian.Uint64(e[8:16])
			reg.HostID = append([]byte(nil), e[16:32]...)
		} else {
			reg.HostID = append([]byte(nil), e[8:16]...)
			reg.Key = binary.LittleEndian.Uint64(e[16:24])
		}
		r.Registrants = append(r.Registrants, reg)
	}
	return r, nil
}

// Complete reports whether every registered controller's entry is present.
func (r NVMeReport) Complete() bool { return len(r.Registrants) >= int(r.Registered) }

// ReadKeysData converts the report to SCSI READ KEYS parameter data (SPC-4
// §6.15.2): the generation, one key per registered controller in report order
// (at most maxKeys of them, the ones the allocation length can hold) and an
// ADDITIONAL LENGTH of 8 × REGCTL. This is what the kernel's nvme_pr_read_keys
// reports through IOC_PR_READ_KEYS, big-endian as SCSI wants it.
func (r NVMeReport) ReadKeysData(maxKeys int) []byte {
	keys := make([]uint64, 0, min(len(r.Registrants), max(maxKeys, 0)))
	for _, reg := range r.Registrants {
		if len(keys) >= maxKeys {
			break
		}
		keys = append(keys, reg.Key)
	}
	return readKeysData(r.Generation, keys, uint64(r.Registered))
}

// ReadReservationData converts the report to SCSI READ RESERVATION parameter
// data (SPC-4 §6.15.3): 8 bytes when RTYPE is 0, else 24 bytes with the key of
// the registrant whose RCSTS says it holds the reservation (0 for the
// all-registrants types, where every registrant holds it), scope LU and the
// SCSI type of RTYPE, as the kernel's nvme_pr_read_reservation derives them.
func (r NVMeReport) ReadReservationData() []byte {
	var key uint64
	for _, reg := range r.Registrants {
		if reg.Holder {
			key = reg.Key
			break
		}
	}
	t, _ := blkpr.ToSCSIType(uint32(r.Type))
	return readReservationData(r.Generation, r.Type != 0, key, t)
}
