package pr

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/prhelper/prhelper/scsi"
)

// Initiator identifies an initiator port by the contents of its TransportID
// (SPC-4 §7.6.4; docs/spc4-pr.md §3.3). Protocol is a scsi.Proto* value; Name and ISID
// are used for iSCSI (the ISID as 12 hex digits, "" for a registration made
// from a format 00b TransportID, which names the initiator device and so matches
// every one of its ports), Addr for FC (N_Port name) and SAS (SAS address).
type Initiator struct {
	Protocol byte   `json:"proto"`
	Name     string `json:"name,omitempty"`
	ISID     string `json:"isid,omitempty"`
	Addr     uint64 `json:"addr,omitempty"`
}

// ISCSIInitiator returns the iSCSI initiator port name + ISID. LIO stores and
// reports ISIDs in lower case (docs/spc4-pr.md §3.3), so the ISID is lower-cased here.
func ISCSIInitiator(name, isid string) Initiator {
	return Initiator{Protocol: scsi.ProtoISCSI, Name: name, ISID: strings.ToLower(isid)}
}

// FCInitiator returns the FC initiator port with N_Port name wwpn.
func FCInitiator(wwpn uint64) Initiator { return Initiator{Protocol: scsi.ProtoFC, Addr: wwpn} }

// SASInitiator returns the SAS initiator port with SAS address addr.
func SASInitiator(addr uint64) Initiator { return Initiator{Protocol: scsi.ProtoSAS, Addr: addr} }

// SameNode reports whether a and b name the same initiator device: LIO's node
// ACL identity. Names compare byte for byte, as LIO's strcmp in
// core_tpg_get_initiator_node_acl does: RFC 3720 §3.2.6.1 makes iSCSI names
// case-insensitive by normalising them (RFC 3722 stringprep, lower case) before
// any comparison, so callers building a Nexus pass the normalised name.
func (a Initiator) SameNode(b Initiator) bool {
	return a.Protocol == b.Protocol && a.Addr == b.Addr && a.Name == b.Name
}

// Equal reports whether a and b are the same initiator port: the same node and
// the same ISID. ISIDs are numbers written in hex, so their digits compare
// ignoring case (LIO lower-cases a received ISID, docs/spc4-pr.md §3.3).
func (a Initiator) Equal(b Initiator) bool {
	return a.SameNode(b) && strings.EqualFold(a.ISID, b.ISID)
}

// covers reports whether a registration made for initiator a identifies the
// initiator port b. LIO core_scsi3_locate_pr_reg matches the node ACL, plus the
// ISID only when one was present at registration (docs/spc4-pr.md §5).
func (a Initiator) covers(b Initiator) bool {
	return a.SameNode(b) && (a.ISID == "" || strings.EqualFold(a.ISID, b.ISID))
}

// String names the initiator port for logs.
func (a Initiator) String() string {
	switch a.Protocol {
	case scsi.ProtoISCSI:
		if a.ISID != "" {
			return a.Name + ",i,0x" + a.ISID
		}
		return a.Name
	case scsi.ProtoSAS:
		return fmt.Sprintf("sas:0x%016x", a.Addr)
	case scsi.ProtoFC:
		return fmt.Sprintf("fc:0x%016x", a.Addr)
	}
	return fmt.Sprintf("proto%d:0x%016x", a.Protocol, a.Addr)
}

// TransportID returns the TransportID LIO reports for the initiator in READ FULL
// STATUS (docs/spc4-pr.md §4.4, LIO iscsi_get_pr_transport_id): for iSCSI the name,
// ",i,0x" and the ISID when one is present (format 01b, byte 0 = 45h), then a
// NUL, padded with NULs to a multiple of 4 only. SPC-4 §7.6.4.6 also asks for an
// ADDITIONAL LENGTH of at least 20, which scsi.TransportID.Encode applies and LIO
// does not; that is why the engine has its own encoder. Every other protocol has
// the fixed 24-byte layout (SAS address at bytes 4-11, other addresses at 8-15).
func (a Initiator) TransportID() []byte {
	if a.Protocol != scsi.ProtoISCSI {
		b := make([]byte, scsi.FixedTransportIDLen)
		b[0] = a.Protocol & 0x0f
		if a.Protocol == scsi.ProtoSAS {
			binary.BigEndian.PutUint64(b[4:12], a.Addr)
		} else {
			binary.BigEndian.PutUint64(b[8:16], a.Addr)
		}
		return b
	}
	s := a.Name
	first := byte(scsi.ProtoISCSI)
	if a.ISID != "" {
		s += ",i,0x" + a.ISID
		first |= scsi.FormatISCSIPort << 6
	}
	n := (len(s) + 1 + 3) &^ 3
	if n > 0xfffc {
		n = 0xfffc
		s = s[:n-1]
	}
	b := make([]byte, 4+n)
	b[0] = first
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	copy(b[4:], s)
	return b
}

// parseTransportID decodes the TransportID at the start of b the way LIO's fabric
// parsers do (target_core_fabric_lib.c): FC, SAS and iSCSI only; an iSCSI ISID is
// lower-cased. It returns the initiator and the TransportID's length.
func parseTransportID(b []byte) (Initiator, int, error) {
	t, n, err := scsi.DecodeTransportID(b)
	if err != nil {
		return Initiator{}, 0, err
	}
	switch t.Protocol {
	case scsi.ProtoFC:
		return FCInitiator(t.Addr), n, nil
	case scsi.ProtoSAS:
		return SASInitiator(t.Addr), n, nil
	case scsi.ProtoISCSI:
		if t.Name == "" {
			return Initiator{}, 0, fmt.Errorf("iSCSI TransportID with an empty name")
		}
		return ISCSIInitiator(t.Name, t.ISID), n, nil
	}
	return Initiator{}, 0, fmt.Errorf("TransportID protocol %#x is not supported", t.Protocol)
}

// Nexus is an I_T nexus (SAM-5 §4.7): an initiator port and the target port it
// reaches the logical unit through, named by its RELATIVE TARGET PORT IDENTIFIER
// (SPC-4 §7.8.5.2). Target ports are described by State.Ports; ALL_TG_PT and
// REGISTER AND MOVE look ports up there.
type Nexus struct {
	Initiator Initiator `json:"initiator"`
	RTPI      uint16    `json:"rtpi"`
}

// Equal reports whether a and b are the same I_T nexus.
func (a Nexus) Equal(b Nexus) bool { return a.RTPI == b.RTPI && a.Initiator.Equal(b.Initiator) }

// covers reports whether a registration made for nexus a identifies nexus b
// (same target port, and Initiator.covers).
func (a Nexus) covers(b Nexus) bool { return a.RTPI == b.RTPI && a.Initiator.covers(b.Initiator) }

// String names the nexus for logs.
func (a Nexus) String() string { return fmt.Sprintf("%s@%d", a.Initiator, a.RTPI) }

// Port is a target port through which the logical unit is reachable: its
// RELATIVE TARGET PORT IDENTIFIER, its fabric protocol, and the initiators that
// have the logical unit mapped through it (LIO: node ACLs with a LUN mapping).
// Initiators == nil admits every initiator of Protocol; a non-nil empty list
// admits none. Entries are compared by SameNode, so their ISIDs are ignored.
type Port struct {
	RTPI       uint16      `json:"rtpi"`
	Protocol   byte        `json:"proto"`
	Initiators []Initiator `json:"initiators"`
}

// admits reports whether initiator i has the logical unit mapped through p.
func (p Port) admits(i Initiator) bool {
	if p.Protocol != i.Protocol {
		return false
	}
	if p.Initiators == nil {
		return true
	}
	for _, a := range p.Initiators {
		if a.SameNode(i) {
			return true
		}
	}
	return false
}
