package mpathconf

import (
	"errors"
	"strings"
	"testing"
)

// prkeysHeader is shaped like the header multipathd writes when it creates
// the file (comment lines, the last ones naming the format).
const prkeysHeader = `# Multipath persistent reservation keys
# This file is maintained by multipathd.
#
# Format:
# prkey wwid
#
`

func TestParsePRKeys(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]Key
	}{
		{"empty", "", map[string]Key{}},
		{"header only", prkeysHeader, map[string]Key{}},
		{
			"entries",
			prkeysHeader +
				"0x00000000001a2b3c " + wwidA + "\n" + // line 7
				"0X0000000000abcdef " + wwidB + "\n", // line 8: APTPL
			map[string]Key{
				wwidA: {Source: File, Value: 0x1a2b3c, Where: "prkeys:7"},
				wwidB: {Source: File, Value: 0xabcdef, APTPL: true, Where: "prkeys:8"},
			},
		},
		{
			"removed entry",
			prkeysHeader +
				"#x00000000001a2b3c " + wwidA + "\n" +
				"0x0000000000000005 " + wwidB + "\n",
			map[string]Key{wwidB: {Source: File, Value: 5, Where: "prkeys:8"}},
		},
		{
			// multipathd reads the first line naming the wwid, so a line
			// appended after a removed one is not seen.
			"first line decides",
			prkeysHeader +
				"#X00000000001a2b3c " + wwidA + "\n" +
				"0x0000000000000009 " + wwidA + "\n" +
				"0x0000000000000001 " + wwidB + "\n" +
				"0x0000000000000002 " + wwidB + "\n",
			map[string]Key{wwidB: {Source: File, Value: 1, Where: "prkeys:9"}},
		},
		{
			"wwid is the rest of the line",
			"0xffffffffffffffff SATA_Some Disk_1234\n0x0000000000000001 x",
			map[string]Key{
				"SATA_Some Disk_1234": {Source: File, Value: 0xffffffffffffffff, Where: "prkeys:1"},
				"x":                   {Source: File, Value: 1, Where: "prkeys:2"},
			},
		},
		{
			"blank lines and plain comments",
			"\n# note\n#\n0x0000000000000001 " + wwidC + "\n\n",
			map[string]Key{wwidC: {Source: File, Value: 1, Where: "prkeys:4"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePRKeys(strings.NewReader(tt.in), "prkeys")
			if err != nil {
				t.Fatalf("ParsePRKeys: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParsePRKeys = %+v, want %+v", got, tt.want)
			}
			for w, k := range tt.want {
				if got[w] != k {
					t.Errorf("key of %q = %+v, want %+v", w, got[w], k)
				}
			}
		})
	}
}

func TestParsePRKeysErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int
		want string
	}{
		{"short key", prkeysHeader + "0x1a2b3c " + wwidA + "\n", 7, "malformed prkeys line"},
		{"no wwid", "0x0000000000000001\n", 1, "malformed prkeys line"},
		{"no wwid after space", "0x0000000000000001 \n", 1, "malformed prkeys line"},
		{"two spaces", "0x0000000000000001  " + wwidA + "\n", 1, "malformed prkeys line"},
		{"bad digit", "0x000000000000000g " + wwidA + "\n", 1, "malformed prkeys key"},
		{"no prefix", "000000000000000001 " + wwidA + "\n", 1, "malformed prkeys key"},
		{"free text", "\nhello world, this is not a key\n", 2, "malformed prkeys"},
		{"too long", strings.Repeat("0", maxLine+1), 1, "line longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePRKeys(strings.NewReader(tt.in), "/etc/multipath/prkeys")
			if err == nil {
				t.Fatalf("ParsePRKeys = %+v, want error", got)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line != tt.line {
				t.Fatalf("error %v, want a SyntaxError at line %d", err, tt.line)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestParsePRKeysLab replays the prkeys file multipathd 0.9.4 left in the
// storage lab after each step (header lines replaced by prkeysHeader):
// "setprkey map mpatha key 0x5566", "… key 0x77:aptpl", "unsetprkey map
// mpatha", "… key 0x88"; getprkey answered 0x5566, 0x77:aptpl, none, 0x88.
func TestParsePRKeysLab(t *testing.T) {
	const w = "36001405abd0000000000000000000000"
	steps := []struct {
		line string
		want string // Key.String() of w's entry, "" for none
	}{
		{"0x0000000000005566 " + w, "0x5566"},
		{"0X0000000000000077 " + w, "0x77:aptpl"},
		{"#X0000000000000077 " + w, ""},
		{"0x0000000000000088 " + w, "0x88"},
	}
	for _, s := range steps {
		keys, err := ParsePRKeys(strings.NewReader(prkeysHeader+s.line+"\n"), "prkeys")
		if err != nil {
			t.Fatalf("%q: %v", s.line, err)
		}
		k, ok := keys[w]
		got := ""
		if ok {
			got = k.String()
		}
		if got != s.want || len(keys) > 1 {
			t.Errorf("%q: key %q (%d entries), want %q", s.line, got, len(keys), s.want)
		}
	}
}
