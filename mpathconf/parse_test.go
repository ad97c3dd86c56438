package mpathconf

import (
	"errors"
	"strings"
	"testing"
)

const (
	wwidA = "36001405a1b2c3d4e5f60718293a4b5c6"
	wwidB = "36001405ffeeddccbbaa99887766554433"
	wwidC = "3600140500000000000000000000000cc"
)

// debianConf is a configuration without any key, like the one Debian's
// multipath-tools documentation suggests (Debian installs no multipath.conf).
const debianConf = `defaults {
    user_friendly_names yes
}
blacklist {
    devnode "^(ram|raw|loop|fd|md|dm-|sr|scd|st)[0-9]*"
    devnode "^hd[a-z][[0-9]*]"
    device {
        vendor "DELL"
        product "Universal Xport"
    }
}
blacklist_exceptions {
    property "(SCSI_IDENT_|ID_WWN)"
}
devices {
    device {
        vendor "LIO-ORG"
        product ".*"
        path_grouping_policy multibus
        no_path_retry 12
    }
}
`

// labConf is the storage lab's /etc/multipath.conf (test/lab, guest/multipath.conf).
const labConf = `# storage-lab multipath.conf: every tcm_loop LUN is a multipath candidate
defaults {
	user_friendly_names yes
	find_multipaths greedy
	reservation_key file
	polling_interval 2
	verbosity 2
}
blacklist {
	devnode "^(vd|nvme|loop|ram|zram|sr)"
}
`

// clusterConf fixes a default key and overrides it for two maps.
const clusterConf = `## cluster node 1
defaults {
	user_friendly_names no
	reservation_key 0x1a2b3c4d    # node id
}
multipaths {
	multipath {
		wwid ` + wwidA + `
		alias shared-data
		reservation_key 0xabc:aptpl
	}
	multipath {
		wwid "` + wwidB + `"
		alias quorum
		reservation_key file
	}
	multipath {
		wwid ` + wwidC + `
		alias no-key-here
	}
}
`

func TestReservationKey(t *testing.T) {
	tests := []struct {
		name string
		conf string
		want map[string]Key // by wwid; "" is any other map
	}{
		{
			name: "empty file",
			conf: "",
			want: map[string]Key{"": {}, wwidA: {}},
		},
		{
			name: "debian without key",
			conf: debianConf,
			want: map[string]Key{"": {}, wwidA: {}},
		},
		{
			name: "lab: file in defaults",
			conf: labConf,
			want: map[string]Key{"": {Source: File, Where: "t.conf:5"}, wwidA: {Source: File, Where: "t.conf:5"}},
		},
		{
			name: "defaults-only key",
			conf: "defaults {\n\treservation_key 0x123abc\n}\n",
			want: map[string]Key{"": {Source: Fixed, Value: 0x123abc, Where: "t.conf:2"}},
		},
		{
			name: "defaults key with aptpl",
			conf: "defaults {\n\treservation_key \"0x123abc:aptpl\"\n}\n",
			want: map[string]Key{"": {Source: Fixed, Value: 0x123abc, APTPL: true, Where: "t.conf:2"}},
		},
		{
			name: "multipaths override one wwid",
			conf: clusterConf,
			want: map[string]Key{
				"":    {Source: Fixed, Value: 0x1a2b3c4d, Where: "t.conf:4"},
				wwidA: {Source: Fixed, Value: 0xabc, APTPL: true, Where: "t.conf:10"},
				wwidB: {Source: File, Where: "t.conf:15"},
				wwidC: {Source: Fixed, Value: 0x1a2b3c4d, Where: "t.conf:4"}, // section without key
				// wwids match exactly, not as prefixes or regexps
				wwidA[:10]:      {Source: Fixed, Value: 0x1a2b3c4d, Where: "t.conf:4"},
				wwidA + "0":     {Source: Fixed, Value: 0x1a2b3c4d, Where: "t.conf:4"},
				"36001405a1b2.": {Source: Fixed, Value: 0x1a2b3c4d, Where: "t.conf:4"},
			},
		},
		{
			name: "multipath key without defaults key",
			conf: "multipaths {\n multipath {\n  reservation_key 0x5\n  wwid " + wwidA + "\n }\n}\n",
			want: map[string]Key{"": {}, wwidA: {Source: Fixed, Value: 5, Where: "t.conf:3"}},
		},
		{
			name: "later defaults win",
			conf: "defaults {\n reservation_key 0x1\n reservation_key 0x2\n}\ndefaults {\n polling_interval 5\n}\ndefaults {\n reservation_key file\n}\n",
			want: map[string]Key{"": {Source: File, Where: "t.conf:9"}},
		},
		{
			name: "same wwid twice: later key wins, a later section without key keeps it",
			conf: "multipaths {\n" +
				" multipath {\n  wwid " + wwidA + "\n  reservation_key 0x1\n }\n" +
				" multipath {\n  wwid " + wwidA + "\n  reservation_key 0x2\n }\n" +
				" multipath {\n  wwid " + wwidA + "\n  alias a\n }\n" +
				"}\n",
			want: map[string]Key{wwidA: {Source: Fixed, Value: 2, Where: "t.conf:8"}},
		},
		{
			name: "reservation_key in overrides and devices is not used",
			conf: "overrides {\n reservation_key 0x99\n protocol {\n  type scsi:iscsi\n  reservation_key 0x98\n }\n}\n" +
				"devices {\n device {\n  vendor LIO-ORG\n  product .*\n  reservation_key 0x97\n }\n}\n",
			want: map[string]Key{"": {}, wwidA: {}},
		},
		{
			name: "zero key is a fixed zero",
			conf: "defaults {\n reservation_key 0x0\n}\n",
			want: map[string]Key{"": {Source: Fixed, Value: 0, Where: "t.conf:2"}},
		},
		{
			name: "comments, quotes, braces without spaces",
			conf: "# comment\n   ! another comment\ndefaults{ # opens\n" +
				"  reservation_key 0xfeed!comment\n" +
				"  alias_prefix \"mp#x!y\"\"z\"\n" +
				"  path_selector \"round-robin 0\"\n" +
				"}\n",
			want: map[string]Key{"": {Source: Fixed, Value: 0xfeed, Where: "t.conf:4"}},
		},
		{
			name: "CRLF line ends",
			conf: "defaults {\r\n reservation_key 0x77\r\n}\r\n",
			want: map[string]Key{"": {Source: Fixed, Value: 0x77, Where: "t.conf:2"}},
		},
		{
			name: "unknown sections and keywords are skipped",
			conf: "defaults {\n future_option yes\n future_section {\n  nested {\n   reservation_key 0x1\n  }\n  reservation_key 0x2\n }\n reservation_key 0x3\n}\n" +
				"brand_new_section {\n reservation_key 0x4\n}\nstray_keyword 1\n" +
				"multipaths {\n multipath {\n  wwid " + wwidA + "\n  sub {\n   wwid " + wwidB + "\n  }\n  reservation_key 0x5\n }\n}\n",
			want: map[string]Key{
				"":    {Source: Fixed, Value: 3, Where: "t.conf:9"},
				wwidA: {Source: Fixed, Value: 5, Where: "t.conf:21"},
				wwidB: {Source: Fixed, Value: 3, Where: "t.conf:9"},
			},
		},
		{
			name: "multipath without wwid matches nothing",
			conf: "multipaths {\n multipath {\n  alias x\n  reservation_key 0x5\n }\n}\n",
			want: map[string]Key{"": {}, "x": {}},
		},
		{
			name: "non-ASCII bytes separate words",
			conf: "defaults {\n reservation_key\xc2\xa00x5\n}\n",
			want: map[string]Key{"": {Source: Fixed, Value: 5, Where: "t.conf:2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.conf), "t.conf")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for wwid, want := range tt.want {
				if got := c.ReservationKey(wwid); got != want {
					t.Errorf("ReservationKey(%q) = %+v, want %+v", wwid, got, want)
				}
			}
			if len(c.Files) != 1 || c.Files[0] != "t.conf" {
				t.Errorf("Files = %q, want [t.conf]", c.Files)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		conf string
		want []string // substrings, one per warning, in order
	}{
		{"clean", clusterConf, nil},
		{"lab", labConf, nil},
		{
			"reservation_key where it is not read",
			"overrides {\n reservation_key 0x99\n}\ndevices {\n device {\n  reservation_key 0x97\n }\n}\nmultipaths {\n reservation_key 0x1\n}\n",
			[]string{
				"t.conf:2: reservation_key in section overrides is ignored",
				"t.conf:6: reservation_key in section device is ignored",
				"t.conf:10: reservation_key in section multipaths is ignored",
			},
		},
		{
			"unknown things",
			"foo {\n bar {\n }\n}\ndefaults {\n baz {\n }\n}\nqux 1\n",
			[]string{
				`t.conf:1: unknown section "foo" at the top level skipped`,
				`t.conf:6: unknown section "baz" in section defaults skipped`,
				`t.conf:9: unknown keyword "qux" at the top level ignored`,
			},
		},
		{
			"multipath without wwid",
			"multipaths {\n multipath {\n  reservation_key 0x5\n }\n multipath {\n }\n}\n",
			[]string{
				"t.conf:4: multipath section opened at line 2 has no wwid: its reservation_key applies to no map",
				"t.conf:6: multipath section opened at line 5 has no wwid",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.conf), "t.conf")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(c.Warnings) != len(tt.want) {
				t.Fatalf("Warnings = %q, want %d matching %q", c.Warnings, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(c.Warnings[i], w) {
					t.Errorf("Warnings[%d] = %q, want prefix %q", i, c.Warnings[i], w)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		conf string
		line int
		want string
	}{
		{"unterminated quote", "defaults {\n alias_prefix \"abc\n}\n", 2, "missing closing '\"'"},
		{"one-line section", "multipaths {\n multipath { wwid " + wwidA + " reservation_key 0x1 }\n}\n", 2, `unexpected "wwid" after '{'`},
		{"one-line section without close", "multipaths {\n multipath { wwid " + wwidA + "\n }\n}\n", 2, "put each attribute on its own line"},
		{"text after close", "defaults {\n} defaults {\n}\n", 2, "after '}'"},
		{"double close", "defaults {\n}}\n", 2, "after '}'"},
		{"value glued to close", "defaults {\n reservation_key 0x1}\n", 2, "'}' must be alone"},
		{"stray close", "defaults {\n}\n}\n", 3, "'}' without an open section"},
		{"section without brace", "defaults\n{\n}\n", 1, `section "defaults" must be followed by '{'`},
		{"subsection without brace", "devices {\n device\n}\n", 2, `section "device" must be followed by '{'`},
		{"lone open brace", "defaults {\n {\n }\n}\n", 2, "'{' must follow a section name"},
		{"brace after value", "defaults {\n reservation_key 0x1 {\n}\n", 2, "'{' must directly follow"},
		{"unclosed section", "defaults {\n reservation_key 0x1\n", 1, `section "defaults" is not closed`},
		{"unclosed subsection", "multipaths {\n multipath {\n  wwid x\n}\n", 1, `section "multipaths" is not closed`},
		{"unclosed inner", "devices {\n device {\n  vendor x\n", 2, `section "device" is not closed`},
		{"bad key", "defaults {\n reservation_key 0xZZ\n}\n", 2, "invalid reservation_key \"0xZZ\""},
		{"bad key in multipath", "multipaths {\n multipath {\n  wwid a\n  reservation_key 0\n }\n}\n", 4, "invalid reservation_key \"0\""},
		{"long key", "defaults {\n reservation_key 0x11112222333344445\n}\n", 2, "more than 16"},
		{"wrong suffix", "defaults {\n reservation_key 0x12:APTPL\n}\n", 2, "unknown suffix"},
		{"empty quoted key", "defaults {\n reservation_key \"\"\n}\n", 2, "invalid reservation_key"},
		{"key without value", "defaults {\n reservation_key\n}\n", 2, "reservation_key needs a value"},
		{"key with two values", "defaults {\n reservation_key 0x1 0x2\n}\n", 2, `takes one value, found extra "0x2"`},
		{"wwid with two values", "multipaths {\n multipath {\n  wwid 3600 1405\n }\n}\n", 3, `wwid takes one value, found extra "1405"`},
		{"wwid without value", "multipaths {\n multipath {\n  wwid # none\n }\n}\n", 3, "wwid needs a value"},
		{"quoted keyword", "defaults {\n \"reservation_key\" 0x1\n}\n", 2, "a keyword cannot be quoted"},
		{"nul byte", "defaults {\n reservation_key 0x1\x00\n}\n", 2, "NUL byte"},
		{"too long", "defaults {\n# " + strings.Repeat("x", maxLine) + "\n}\n", 2, "line longer than"},
		{"too deep", strings.Repeat("a {\n", maxDepth+1), maxDepth + 1, "nested more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.conf), "/etc/multipath.conf")
			if err == nil {
				t.Fatalf("Parse = %+v, want error", c)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *SyntaxError", err, err)
			}
			if se.File != "/etc/multipath.conf" || se.Line != tt.line {
				t.Errorf("error at %s:%d, want /etc/multipath.conf:%d (%v)", se.File, se.Line, tt.line, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			prefix := "/etc/multipath.conf:" + itoa(tt.line) + ": "
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
		})
	}
}

func itoa(n int) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

func TestTokenize(t *testing.T) {
	tests := []struct {
		in   string
		want []token
	}{
		{"", nil},
		{"   # all comment", nil},
		{"a b\tc", []token{{text: "a"}, {text: "b"}, {text: "c"}}},
		{"defaults{", []token{{text: "defaults"}, {text: "{"}}},
		{"}", []token{{text: "}"}}},
		{`alias "a b # c ! d"`, []token{{text: "alias"}, {text: "a b # c ! d", quoted: true}}},
		{`product "2.5"" SSD"`, []token{{text: "product"}, {text: `2.5" SSD`, quoted: true}}},
		{`x ""`, []token{{text: "x"}, {text: "", quoted: true}}},
		{`x "{"`, []token{{text: "x"}, {text: "{", quoted: true}}},
		{"k v!c", []token{{text: "k"}, {text: "v"}}},
		{`k a"b"`, []token{{text: "k"}, {text: "a"}, {text: "b", quoted: true}}},
	}
	for _, tt := range tests {
		got, err := tokenize(tt.in)
		if err != nil {
			t.Errorf("tokenize(%q): %v", tt.in, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("tokenize(%q) = %+v, want %+v", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("tokenize(%q) = %+v, want %+v", tt.in, got, tt.want)
				break
			}
		}
	}
}

func TestPRKeysFileSetting(t *testing.T) {
	c, err := Parse(strings.NewReader(""), "t.conf")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.PRKeysFile(); got != DefaultPRKeysFile {
		t.Errorf("PRKeysFile() = %q, want %q", got, DefaultPRKeysFile)
	}
	c, err = Parse(strings.NewReader("defaults {\n prkeys_file \"/var/lib/multipath/prkeys\"\n}\n"), "t.conf")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.PRKeysFile(); got != "/var/lib/multipath/prkeys" {
		t.Errorf("PRKeysFile() = %q, want the configured one", got)
	}
	var zero Config
	if got := zero.ReservationKey(wwidA); got != (Key{}) {
		t.Errorf("zero Config ReservationKey = %+v, want none", got)
	}
}
