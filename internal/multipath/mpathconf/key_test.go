package mpathconf

import (
	"strings"
	"testing"
)

func TestParseKey(t *testing.T) {
	tests := []struct {
		in   string
		want Key
	}{
		{"file", Key{Source: File}},
		{"0x123abc", Key{Source: Fixed, Value: 0x123abc}},
		{"0X123ABC", Key{Source: Fixed, Value: 0x123abc}},
		{"0x123abc:aptpl", Key{Source: Fixed, Value: 0x123abc, APTPL: true}},
		// Digits are hex without a prefix too (libmultipath scans %x).
		{"12", Key{Source: Fixed, Value: 0x12}},
		{"x12", Key{Source: Fixed, Value: 0x12}},
		{"012", Key{Source: Fixed, Value: 0x12}},
		{"ffffffffffffffff", Key{Source: Fixed, Value: 0xffffffffffffffff}},
		{"0xffffffffffffffff:aptpl", Key{Source: Fixed, Value: 0xffffffffffffffff, APTPL: true}},
		// One leading 0 is skipped before counting 16 digits.
		{"0123456789abcdef0", Key{Source: Fixed, Value: 0x123456789abcdef0}},
		{"00", Key{Source: Fixed, Value: 0}},
		{"0x0", Key{Source: Fixed, Value: 0}},
		{"0x0000000000000000", Key{Source: Fixed, Value: 0}},
	}
	for _, tt := range tests {
		got, err := ParseKey(tt.in)
		if err != nil {
			t.Errorf("ParseKey(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseKey(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "want \"file\""},
		{"0", "want \"file\""},
		{"0x", "want \"file\""},
		{"0x:aptpl", "want \"file\""},
		{"0x0123456789abcdef0", "more than 16"},
		{"0xZZ", "not a hex digit"},
		{"00x12", "not a hex digit"},
		{"-1", "not a hex digit"},
		{"0x12 ", "not a hex digit"},
		{"File", "not a hex digit"},
		{"file:aptpl", "not a hex digit"},
		{"0x12:APTPL", "unknown suffix"},
		{"0x12:", "unknown suffix"},
		{"0x12:aptpl:aptpl", "unknown suffix"},
	}
	for _, tt := range tests {
		k, err := ParseKey(tt.in)
		if err == nil {
			t.Errorf("ParseKey(%q) = %+v, want error", tt.in, k)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseKey(%q) error %q, want it to mention %q", tt.in, err, tt.want)
		}
	}
}

func TestKeyString(t *testing.T) {
	tests := []struct {
		k    Key
		want string
	}{
		{Key{}, "unset"},
		{Key{Source: File}, "file"},
		{Key{Source: File, Value: 0xab, APTPL: true}, "0xab:aptpl"},
		{Key{Source: Fixed, Value: 0x123abc}, "0x123abc"},
		{Key{Source: Fixed, Value: 1, APTPL: true}, "0x1:aptpl"},
		{Key{Source: Fixed}, "0x0"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.k, got, tt.want)
		}
	}
}

func TestFixedKey(t *testing.T) {
	tests := []struct {
		k     Key
		want  uint64
		fixed bool
	}{
		{Key{}, 0, false},
		{Key{Source: File, Value: 7}, 0, false},
		{Key{Source: Fixed, Value: 0}, 0, false}, // zero is no key to multipath-tools
		{Key{Source: Fixed, Value: 7, APTPL: true}, 7, true},
	}
	for _, tt := range tests {
		v, ok := tt.k.FixedKey()
		if v != tt.want || ok != tt.fixed {
			t.Errorf("%+v.FixedKey() = %#x, %v; want %#x, %v", tt.k, v, ok, tt.want, tt.fixed)
		}
	}
}

func TestSourceString(t *testing.T) {
	for s, want := range map[Source]string{None: "none", Fixed: "fixed", File: "file", Source(9): "Source(9)"} {
		if got := s.String(); got != want {
			t.Errorf("Source(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}
