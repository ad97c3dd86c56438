package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Prefix is the iSCSI qualified name (RFC 3720 §3.2.6.3.1) under which
// prhelper names the initiators it makes up.
const Prefix = "iqn.2025-01.dev.prhelper"

// MaxNameLen is the longest iSCSI name, in bytes (RFC 3720 §3.2.6.1).
const MaxNameLen = 223

// Sources: how an Initiator was found.
const (
	SourceUUID  = "uuid"  // the peer's -uuid
	SourceName  = "name"  // the peer's -name guest=…
	SourceHost  = "host"  // the host's identity
	SourceFixed = "fixed" // a configured name
)

// Initiator is the identity of a connection's client.
type Initiator struct {
	// Name is an iSCSI name: lower case, only a-z 0-9 '-' '.' ':'.
	Name string
	// Source says how Name was found: SourceUUID, SourceName, SourceHost or
	// SourceFixed.
	Source string
}

// String returns the name and its source for logs.
func (i Initiator) String() string { return i.Name + " (" + i.Source + ")" }

// EncodeComponent turns s into text that may follow a ':' in an iSCSI name.
// RFC 3720 §3.2.6.2 allows only '-', '.', ':', a-z and 0-9 (after the
// stringprep of RFC 3722, which lower-cases): ASCII upper case is lowered
// (iSCSI names are case-insensitive, so "Web" and "web" are one initiator),
// and every other byte, ':' included, becomes ':' and two lower-case hex
// digits, so distinct inputs stay distinct: "my_vm" -> "my:5fvm",
// "a:b" -> "a:3ab". Non-ASCII text is encoded byte by byte rather than
// stringprepped, because targets such as LIO compare names byte for byte.
func EncodeComponent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.':
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			const digits = "0123456789abcdef"
			b.WriteByte(':')
			b.WriteByte(digits[c>>4])
			b.WriteByte(digits[c&0xf])
		}
	}
	return b.String()
}

// join builds Prefix:kind:EncodeComponent(v). A result longer than MaxNameLen
// keeps as much of the encoded value as fits and ends in ":" and 16 hex digits
// of the SHA-256 of the raw value, so long names stay distinct and legal.
func join(kind, v string) string {
	head := Prefix + ":" + kind + ":"
	name := head + EncodeComponent(v)
	if len(name) <= MaxNameLen {
		return name
	}
	sum := sha256.Sum256([]byte(v))
	tail := ":" + hex.EncodeToString(sum[:8])
	return name[:MaxNameLen-len(tail)] + tail
}

// HostInitiator names the host's initiator, "iqn.2025-01.dev.prhelper:host:"
// + the encoded host identity (see HostSource).
func HostInitiator(host string) (Initiator, error) {
	if strings.TrimSpace(host) == "" {
		return Initiator{}, fmt.Errorf("host identity is empty")
	}
	return Initiator{Name: join("host", host), Source: SourceHost}, nil
}

// VMInitiator names a QEMU peer: "iqn.2025-01.dev.prhelper:vm:<uuid>" when it
// has a -uuid (lower case, as QEMU prints UUIDs), else
// "iqn.2025-01.dev.prhelper:vm-name:<encoded name>". The two forms cannot
// collide: their kinds differ.
func VMInitiator(vm VM) (Initiator, error) {
	switch {
	case vm.UUID != "":
		if !isUUID(vm.UUID) {
			return Initiator{}, fmt.Errorf("invalid VM uuid %q", vm.UUID)
		}
		return Initiator{Name: Prefix + ":vm:" + strings.ToLower(vm.UUID), Source: SourceUUID}, nil
	case vm.Name != "":
		return Initiator{Name: join("vm-name", vm.Name), Source: SourceName}, nil
	}
	return Initiator{}, ErrNoVMIdentity
}

// FixedInitiator returns the initiator of a "name:NAME" policy. A NAME that
// already is an iSCSI name is used as it is, lower-cased: "iqn." followed only
// by legal characters (RFC 3720 §3.2.6.3.1), or "eui." with 16 hex digits
// (§3.2.6.3.2). "naa." with 16 hex digits names a SAS initiator port by its SAS
// address, as LIO's tcm_loop and SAS fabrics do (backend.Request.Initiator reads
// it so): emulation then reports SAS TransportIDs, which lets it stand in for a
// SAS target exactly. Other "naa." names are refused. Any other NAME becomes
// "iqn.2025-01.dev.prhelper:name:" + EncodeComponent(NAME).
func FixedInitiator(name string) (Initiator, error) {
	if name == "" {
		return Initiator{}, fmt.Errorf("fixed initiator name is empty")
	}
	lower := strings.ToLower(name)
	switch {
	case strings.HasPrefix(lower, "iqn."):
		if len(lower) > MaxNameLen {
			return Initiator{}, fmt.Errorf("iSCSI name %q is %d bytes, longer than %d", name, len(lower), MaxNameLen)
		}
		if i := strings.IndexFunc(lower, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == ':')
		}); i >= 0 {
			return Initiator{}, fmt.Errorf("iSCSI name %q: character %q at byte %d is not allowed (RFC 3720 §3.2.6.2)", name, lower[i:i+1], i)
		}
		return Initiator{Name: lower, Source: SourceFixed}, nil
	case strings.HasPrefix(lower, "eui."):
		if !isHex(lower[4:], 16) {
			return Initiator{}, fmt.Errorf("iSCSI name %q: eui. needs 16 hex digits", name)
		}
		return Initiator{Name: lower, Source: SourceFixed}, nil
	case strings.HasPrefix(lower, "naa."):
		if !isHex(lower[4:], 16) {
			return Initiator{}, fmt.Errorf("initiator name %q: naa. names a SAS address and needs 16 hex digits", name)
		}
		return Initiator{Name: lower, Source: SourceFixed}, nil
	}
	return Initiator{Name: join("name", name), Source: SourceFixed}, nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// isUUID accepts what QEMU's qemu_uuid_parse accepts: 8-4-4-4-12 hex digits.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i:i+1], 1) {
				return false
			}
		}
	}
	return true
}
