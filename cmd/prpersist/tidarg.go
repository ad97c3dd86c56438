package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/prhelper/prhelper/scsi"
)

// parseTransportIDArg reads one --transport-id in sg_persist's command-line
// forms (sg_persist(8), "TRANSPORT IDs"):
//
//   - comma (or space) separated hex bytes, zero padded to 24 bytes, or for
//     iSCSI to 4 + the ADDITIONAL LENGTH they announce (at least 24), as
//     sg_persist compacts them;
//   - "sas,ADDR": a SAS address of 16 hex digits;
//   - "fcp,WWPN" (also "fc,"): an FC N_Port name of 16 hex digits;
//   - "iqn.NAME" (also "eui." and "naa." names), optionally "NAME,i,0xISID":
//     an iSCSI TransportID of format 00b, or 01b with the ISID.
//
// sg_persist's file=/stdin forms and the SPI, SBP, SRP and SOP symbolic forms
// are not supported (hex bytes cover them).
func parseTransportIDArg(s string) (scsi.TransportID, error) {
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(lower, "sas,"):
		a, err := hex64(s[4:])
		if err != nil {
			return scsi.TransportID{}, fmt.Errorf("badly formed symbolic SAS TransportID: %v", err)
		}
		return scsi.SASTransportID(a), nil
	case strings.HasPrefix(lower, "fcp,"), strings.HasPrefix(lower, "fc,"):
		a, err := hex64(s[strings.IndexByte(s, ',')+1:])
		if err != nil {
			return scsi.TransportID{}, fmt.Errorf("badly formed symbolic FCP TransportID: %v", err)
		}
		return scsi.FCTransportID(a), nil
	case strings.HasPrefix(s, "iqn."), strings.HasPrefix(s, "eui."), strings.HasPrefix(s, "naa."):
		t := scsi.ISCSITransportID(s)
		if i := strings.Index(lower, ",i,0x"); i >= 0 {
			t = scsi.ISCSIPortTransportID(s[:i], s[i+5:])
		}
		if _, err := t.Encode(); err != nil {
			return scsi.TransportID{}, err
		}
		return t, nil
	case strings.HasPrefix(lower, "file="), s == "-",
		strings.HasPrefix(lower, "spi,"), strings.HasPrefix(lower, "sbp,"),
		strings.HasPrefix(lower, "srp,"), strings.HasPrefix(lower, "sop,"):
		return scsi.TransportID{}, fmt.Errorf("form %q is not supported; give the TransportID as hex bytes", s)
	}
	return hexTransportID(s)
}

func hex64(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("%q is not 16 hex digits", s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not 16 hex digits", s)
	}
	return v, nil
}

// hexTransportID reads "06,00,00,00,50,01,..." style bytes.
func hexTransportID(s string) (scsi.TransportID, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
	if len(fields) == 0 {
		return scsi.TransportID{}, errors.New("empty TransportID")
	}
	var b []byte
	for _, f := range fields {
		v, err := strconv.ParseUint(f, 16, 8)
		if err != nil {
			return scsi.TransportID{}, fmt.Errorf("%q is not a hex byte", f)
		}
		b = append(b, byte(v))
	}
	n := scsi.FixedTransportIDLen
	if b[0]&0x0f == scsi.ProtoISCSI && len(b) >= 4 {
		n = max(n, 4+int(binary.BigEndian.Uint16(b[2:4])))
	}
	if len(b) > n {
		return scsi.TransportID{}, fmt.Errorf("%d bytes given, the TransportID header says %d", len(b), n)
	}
	b = append(b, make([]byte, n-len(b))...)
	t, _, err := scsi.DecodeTransportID(b)
	if err != nil {
		// Keep what the user typed: the device is the judge of unusual forms.
		return scsi.TransportID{Format: b[0] >> 6, Protocol: b[0] & 0x0f, Raw: b}, nil
	}
	return t, nil
}
