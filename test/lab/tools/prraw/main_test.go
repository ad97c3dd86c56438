package main

import (
	"bytes"
	"testing"
)

func TestParseHex(t *testing.T) {
	tests := []struct {
		in   string
		want []byte
		ok   bool
	}{
		{"5e 00 00 00 00 00 00 20 00 00", []byte{0x5e, 0, 0, 0, 0, 0, 0, 0x20, 0, 0}, true},
		{"5e:00,01", []byte{0x5e, 0, 1}, true},
		{"0000000000000777", []byte{0, 0, 0, 0, 0, 0, 7, 0x77}, true},
		{"", []byte{}, true},
		{"5", nil, false},
		{"zz", nil, false},
	}
	for _, tt := range tests {
		got, err := parseHex(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("parseHex(%q) error %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && !bytes.Equal(got, tt.want) {
			t.Errorf("parseHex(%q) = % x, want % x", tt.in, got, tt.want)
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	tests := [][]string{
		{},
		{"/nonexistent.sock"},
		{"/nonexistent.sock", "/dev/null", "zz"},
		{"/nonexistent.sock", "/dev/null", "5e0000000000000000000000000000000000"}, // 18 bytes
		{"/nonexistent.sock", "/nonexistent-device", "5e00"},
	}
	for _, args := range tests {
		if rc := run(args); rc != 1 {
			t.Errorf("run(%q) = %d, want 1", args, rc)
		}
	}
}

func FuzzParseHex(f *testing.F) {
	f.Add("5e 00 00 00 00 00 00 20 00 00")
	f.Add("5e:00,01")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parseHex(s)
		if err == nil && len(b) > len(s) {
			t.Fatalf("parseHex(%q) returned %d bytes", s, len(b))
		}
	})
}
