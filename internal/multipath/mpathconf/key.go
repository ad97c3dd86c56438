package mpathconf

import (
	"fmt"
	"strconv"
	"strings"
)

// Source says where the reservation key of a multipath map comes from.
type Source int

const (
	// None means no reservation_key applies: multipathd does not register
	// new or reinstated paths, and libmpathpersist checks no key.
	None Source = iota
	// Fixed is a key written in the configuration ("reservation_key 0x…").
	Fixed
	// File is the word "file": the key lives in the prkeys file, written by
	// multipathd when mpathpersist registers (or by "multipathd map M
	// setprkey key K") and removed when the registration goes.
	File
)

// String returns "none", "fixed" or "file".
func (s Source) String() string {
	switch s {
	case None:
		return "none"
	case Fixed:
		return "fixed"
	case File:
		return "file"
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// Key is the reservation key that applies to a multipath map.
//
// Value is the 8-byte RESERVATION KEY as a number (SPC-4 §6.16.3 carries it
// big-endian in the PERSISTENT RESERVE OUT parameter list). It is zero for
// None, and for File until the prkeys file is consulted (ParsePRKeys returns
// Keys of Source File with the stored Value). A Value of zero, however it got
// there, is no key to multipath-tools: libmpathpersist's update_map_pr stops
// with "reservation_key not set in multipath.conf" when the map's key is
// zero, and "multipathd getprkey" answers "none" for a map configured with
// "reservation_key 0x0" (0.9.4, storage lab).
//
// APTPL is the ":aptpl" suffix of a fixed key, or the capital "0X" of a
// prkeys line: the key was registered with --param-aptpl, and multipathd
// registers further paths with APTPL set too.
type Key struct {
	Source Source
	Value  uint64
	APTPL  bool
	// Where is "file:line" of the setting that decided, for logs; empty
	// for None.
	Where string
}

// FixedKey returns the key and true when the configuration fixes a nonzero
// key (Source Fixed): the one key libmpathpersist accepts in a REGISTER's
// SERVICE ACTION RESERVATION KEY for the map. It returns false for None,
// File and a fixed zero key.
func (k Key) FixedKey() (uint64, bool) {
	if k.Source != Fixed || k.Value == 0 {
		return 0, false
	}
	return k.Value, true
}

// String formats k as multipath.conf would spell it: "file", "0x1234",
// "0x1234:aptpl", or "unset" for None.
func (k Key) String() string {
	switch {
	case k.Source == None:
		return "unset"
	case k.Source == File && k.Value == 0 && !k.APTPL:
		return "file"
	}
	s := "0x" + strconv.FormatUint(k.Value, 16)
	if k.APTPL {
		s += ":aptpl"
	}
	return s
}

// ParseKey parses a reservation_key value: the word "file", or a key with an
// optional ":aptpl" suffix.
//
// The key syntax is libmultipath's (prkey.c parse_prkey, verified against
// multipath-tools' source): one optional leading "0", then one optional "x"
// or "X", then 1 to 16 hexadecimal digits. The digits are always hex, also
// without a prefix ("12" is 0x12, not twelve); "0" alone and "0x" alone are
// rejected, "00" and "0x0" are a zero key (see Key). multipath-tools drops a
// suffix other than ":aptpl" silently and uses the key without APTPL (0.9.4
// in the lab reads "0x12:APTPL" as 0x12); ParseKey rejects it, since such a
// suffix is a typo the operator must see.
func ParseKey(s string) (Key, error) {
	if s == "file" {
		return Key{Source: File}, nil
	}
	num, flag, hasFlag := strings.Cut(s, ":")
	k := Key{Source: Fixed}
	if hasFlag {
		if flag != "aptpl" {
			return Key{}, fmt.Errorf("invalid reservation_key %q: unknown suffix %q (only \":aptpl\")", s, ":"+flag)
		}
		k.APTPL = true
	}
	v, err := parseHexKey(num)
	if err != nil {
		return Key{}, fmt.Errorf("invalid reservation_key %q: %v", s, err)
	}
	k.Value = v
	return k, nil
}

// parseHexKey parses [0][xX]<1-16 hex digits> as libmultipath does.
func parseHexKey(s string) (uint64, error) {
	p := strings.TrimPrefix(s, "0")
	if p != "" && (p[0] == 'x' || p[0] == 'X') {
		p = p[1:]
	}
	if p == "" {
		return 0, fmt.Errorf("want \"file\" or a hex key such as 0x1a2b (1 to 16 digits, 0x optional)")
	}
	if len(p) > 16 {
		return 0, fmt.Errorf("more than 16 hex digits (a key is 8 bytes)")
	}
	for i := 0; i < len(p); i++ {
		if !isHex(p[i]) {
			return 0, fmt.Errorf("%q is not a hex digit", p[i])
		}
	}
	return strconv.ParseUint(p, 16, 64)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
