package device

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// SPC-4 §7.8.6 Device Identification VPD page (83h).
const (
	vpdPageDeviceID = 0x83
	vpdHeaderLen    = 4 // peripheral byte, page code, PAGE LENGTH (2 bytes)
	desigHeaderLen  = 4 // code set/protocol, PIV/association/type, reserved, length

	desigT10      = 0x1 // T10 vendor ID based
	desigEUI64    = 0x2
	desigNAA      = 0x3
	desigSCSIName = 0x8

	assocMask = 0x30 // ASSOCIATION: 00b = the addressed logical unit
)

// ErrBadVPD reports a Device Identification page that cannot be walked.
var ErrBadVPD = errors.New("malformed device identification VPD page")

// designatorPriority ranks a designation descriptor d (header included) the
// way Linux's scsi_vpd_lun_id does since 5.11 ("fix designator priorities"):
// SCSI name string > NAA IEEE Registered Extended > EUI-64 16 > EUI-64 12 >
// NAA IEEE Registered > NAA IEEE Extended > EUI-64 8 > T10 vendor ID = NAA
// locally assigned. Designators of other LUs' ports (ASSOCIATION ≠ 00b) and
// lengths the format below cannot print rank 0, i.e. are skipped. Following
// the kernel's order, not a better one, is the point: the result must equal
// the wwid attribute a host with a newer kernel reports for the same LU.
func designatorPriority(d []byte) int {
	if d[1]&assocMask != 0 || d[3] == 0 {
		return 0
	}
	n := int(d[3])
	switch d[1] & 0x0f {
	case desigSCSIName:
		return 9
	case desigNAA:
		switch d[4] >> 4 {
		case 6:
			if n == 16 {
				return 8
			}
		case 5:
			if n == 8 {
				return 5
			}
		case 2: // IEEE Extended (SPC-4 table 490)
			if n == 8 {
				return 4
			}
		case 3: // locally assigned
			if n == 8 {
				return 1
			}
		}
	case desigEUI64:
		switch n {
		case 16:
			return 7
		case 12:
			return 6
		case 8:
			return 3
		}
	case desigT10:
		return 1
	}
	return 0
}

// LunID returns the logical-unit identifier in the form of the kernel's wwid
// attribute, computed from a Device Identification VPD page (SPC-4 §7.8.6) as
// read from sysfs vpd_pg83 (header included):
//
//	NAA     "naa." + lower-case hex of the designator  (naa.6001405abd…)
//	EUI-64  "eui." + lower-case hex
//	T10     "t10." + the vendor ID and vendor-specific bytes, non-printable
//	        bytes escaped as the kernel's %pE does ("t10.LIO-ORG lab-disk0")
//	SCSI name string: the string itself, up to its first NUL
//
// Trailing blanks are dropped, as Classify drops them from the attribute. It
// returns "" and no error when the page names no LU-associated designator it
// can print, and ErrBadVPD when the page is not a page 83h or a descriptor
// runs past the page.
func LunID(page []byte) (string, error) {
	if len(page) < vpdHeaderLen || page[1] != vpdPageDeviceID {
		return "", fmt.Errorf("%w: %d bytes, not page 83h", ErrBadVPD, len(page))
	}
	end := vpdHeaderLen + (int(page[2])<<8 | int(page[3]))
	if end > len(page) {
		return "", fmt.Errorf("%w: page length %d, only %d bytes", ErrBadVPD, end-vpdHeaderLen, len(page)-vpdHeaderLen)
	}
	var best []byte
	bestPrio := 0
	for off := vpdHeaderLen; off < end; {
		if end-off < desigHeaderLen {
			return "", fmt.Errorf("%w: descriptor header at byte %d truncated", ErrBadVPD, off)
		}
		d := page[off:]
		n := desigHeaderLen + int(d[3])
		if n > end-off {
			return "", fmt.Errorf("%w: descriptor at byte %d (%d bytes) runs past the page", ErrBadVPD, off, n)
		}
		d = d[:n]
		if n > desigHeaderLen {
			p := designatorPriority(d)
			if p > bestPrio || (p == bestPrio && p > 0 && len(d) >= len(best)) {
				best, bestPrio = d, p
			}
		}
		off += n
	}
	if best == nil {
		return "", nil
	}
	return formatDesignator(best), nil
}

// formatDesignator prints a designator as scsi_vpd_lun_id does.
func formatDesignator(d []byte) string {
	v := d[desigHeaderLen:]
	switch d[1] & 0x0f {
	case desigNAA:
		return "naa." + hex.EncodeToString(v)
	case desigEUI64:
		return "eui." + hex.EncodeToString(v)
	case desigT10:
		return strings.TrimRight("t10."+escapeNonPrintable(v), " ")
	}
	// SCSI name string (SPC-4 §7.8.6.11): UTF-8, NUL-terminated, padded.
	for i, c := range v {
		if c == 0 {
			v = v[:i]
			break
		}
	}
	return strings.TrimRight(string(v), " ")
}

// escapeNonPrintable escapes bytes outside printable ASCII like the kernel's
// %pE (string_escape_mem with ESCAPE_ANY_NP): C escapes for \a \t \n \v \f \r
// and ESC, \0 for NUL, three-digit octal otherwise.
func escapeNonPrintable(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		switch {
		case c >= 0x20 && c < 0x7f:
			s.WriteByte(c)
		case c == 0:
			s.WriteString(`\0`)
		case c == '\a':
			s.WriteString(`\a`)
		case c == '\t':
			s.WriteString(`\t`)
		case c == '\n':
			s.WriteString(`\n`)
		case c == '\v':
			s.WriteString(`\v`)
		case c == '\f':
			s.WriteString(`\f`)
		case c == '\r':
			s.WriteString(`\r`)
		case c == 0x1b:
			s.WriteString(`\e`)
		default:
			fmt.Fprintf(&s, `\%03o`, c)
		}
	}
	return s.String()
}
