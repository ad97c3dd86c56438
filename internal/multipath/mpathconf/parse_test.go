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
		// The next cases are read as multipath-tools 0.9.4 reads them in the
		// storage lab (multipath -t, multipathd getprkey).
		{
			name: "unknown keywords are ignored",
			conf: "defaults {\n future_option yes\n reservation_key 0x3\n}\nstray_keyword 1\n",
			want: map[string]Key{"": {Source: Fixed, Value: 3, Where: "t.conf:3"}},
		},
		{
			name: "unknown top-level section is not entered",
			conf: "foo {\n\tdefaults {\n\t\treservation_key 0x61\n\t}\n}\n",
			want: map[string]Key{"": {Source: Fixed, Value: 0x61, Where: "t.conf:3"}},
		},
		{
			name: "stray close at the top level is ignored",
			conf: "defaults {\n reservation_key 0x1a2b\n}\n}\nmultipaths {\n multipath {\n  wwid " + wwidA + "\n  reservation_key 0x62\n }\n}\n",
			want: map[string]Key{"": {Source: Fixed, Value: 0x1a2b, Where: "t.conf:2"}, wwidA: {Source: Fixed, Value: 0x62, Where: "t.conf:8"}},
		},
		{
			name: "sections left open at end of file apply",
			conf: "defaults {\n reservation_key 0x1a2b\n}\nmultipaths {\n multipath {\n  wwid " + wwidA + "\n  reservation_key 0x63\n",
			want: map[string]Key{"": {Source: Fixed, Value: 0x1a2b, Where: "t.conf:2"}, wwidA: {Source: Fixed, Value: 0x63, Where: "t.conf:7"}},
		},
		{
			name: "brace on the line after the section name",
			conf: "defaults\n{\n reservation_key 0x66\n}\n",
			want: map[string]Key{"": {Source: Fixed, Value: 0x66, Where: "t.conf:3"}},
		},
		{
			name: "unterminated quote runs to the end of the line",
			conf: "defaults {\n reservation_key \"0x68\n}\n",
			want: map[string]Key{"": {Source: Fixed, Value: 0x68, Where: "t.conf:2"}},
		},
		{
			name: "quoted keyword is no keyword",
			conf: "defaults {\n \"reservation_key\" 0x1\n}\n",
			want: map[string]Key{"": {}},
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
				"t.conf:2: reservation_key in section overrides ignored",
				"t.conf:6: reservation_key in section device ignored",
				"t.conf:10: reservation_key in section multipaths ignored",
			},
		},
		{
			"unknown things",
			"foo {\n bar {\n }\n}\ndefaults {\n baz 1\n}\nqux 1\n",
			[]string{
				`t.conf:1: unknown section "foo" at the top level: not entered`,
				`t.conf:2: unknown section "bar" at the top level: not entered`,
				`t.conf:3: '}' without an open section ignored`,
				`t.conf:4: '}' without an open section ignored`,
				`t.conf:8: unknown keyword "qux" at the top level ignored`,
			},
		},
		{
			"loose syntax multipath-tools accepts",
			"defaults\n{\n alias_prefix \"x\n \"k\" v\n config_dir /etc/other\n}\nmultipaths {\n multipath {\n",
			[]string{
				`t.conf:1: section "defaults" without '{'`,
				`t.conf:2: '{' alone on a line ignored`,
				`t.conf:3: missing closing '"'`,
				`t.conf:4: quoted keyword "k" ignored`,
				`t.conf:5: config_dir ignored`,
				`t.conf:8: section "multipath" opened at line 8 not closed`,
				`t.conf:8: multipath section opened at line 8 has no wwid`,
				`t.conf:8: section "multipaths" opened at line 7 not closed`,
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
		{"one-line section", "multipaths {\n multipath { wwid " + wwidA + " reservation_key 0x1 }\n}\n", 2, `unexpected "wwid" after '{'`},
		{"one-line section without close", "multipaths {\n multipath { wwid " + wwidA + "\n }\n}\n", 2, "put each attribute on its own line"},
		{"text after close", "defaults {\n} defaults {\n}\n", 2, `unexpected "defaults" after '}'`},
		{"double close", "defaults {\n}}\n", 2, "after '}'"},
		{"value glued to close", "defaults {\n reservation_key 0x1}\n", 2, `"}" after "reservation_key"`},
		{"close after attribute", "devices {\n device {\n  vendor X }\n}\n", 3, `"}" after "vendor"`},
		{"brace after value", "defaults {\n reservation_key 0x1 {\n}\n", 2, `"{" after "reservation_key"`},
		{"section name with a word", "defaults all\n}\n", 1, `section "defaults" must be followed by '{', found "all"`},
		{"unknown subsection", "defaults {\n future_section {\n  x 1\n }\n reservation_key 0x77\n}\n", 2, `unknown section "future_section" in section defaults`},
		{"section in the wrong place", "defaults {\n reservation_key 0x1\nmultipaths {\n}\n", 3, `unknown section "multipaths" in section defaults`},
		{"bad key", "defaults {\n reservation_key 0xZZ\n}\n", 2, "invalid reservation_key \"0xZZ\""},
		{"bad key in multipath", "multipaths {\n multipath {\n  wwid a\n  reservation_key 0\n }\n}\n", 4, "invalid reservation_key \"0\""},
		{"long key", "defaults {\n reservation_key 0x11112222333344445\n}\n", 2, "more than 16"},
		{"wrong suffix", "defaults {\n reservation_key 0x12:APTPL\n}\n", 2, "unknown suffix"},
		{"empty quoted key", "defaults {\n reservation_key \"\"\n}\n", 2, "invalid reservation_key"},
		{"key in unterminated quote with spaces", "defaults {\n reservation_key \"0x1  \n}\n", 2, "invalid reservation_key"},
		{"key without value", "defaults {\n reservation_key\n}\n", 2, "reservation_key needs a value"},
		{"key with two values", "defaults {\n reservation_key 0x1 0x2\n}\n", 2, `takes one value, found extra "0x2"`},
		{"key with a detached suffix", "defaults {\n reservation_key 0x1 :aptpl\n}\n", 2, `takes one value, found extra ":aptpl"`},
		{"wwid with two values", "multipaths {\n multipath {\n  wwid 3600 1405\n }\n}\n", 3, `wwid takes one value, found extra "1405"`},
		{"wwid without value", "multipaths {\n multipath {\n  wwid # none\n }\n}\n", 3, "wwid needs a value"},
		{"prkeys_file without value", "defaults {\n prkeys_file\n}\n", 2, "prkeys_file needs a value"},
		{"nul byte", "defaults {\n reservation_key 0x1\x00\n}\n", 2, "NUL byte"},
		{"too long", "defaults {\n# " + strings.Repeat("x", maxLine) + "\n}\n", 2, "line longer than"},
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
		in       string
		want     []token
		unclosed bool
	}{
		{"", nil, false},
		{"   # all comment", nil, false},
		{"a b\tc", []token{{text: "a"}, {text: "b"}, {text: "c"}}, false},
		{"defaults{", []token{{text: "defaults"}, {text: "{"}}, false},
		{"}", []token{{text: "}"}}, false},
		{`alias "a b # c ! d"`, []token{{text: "alias"}, {text: "a b # c ! d", quoted: true}}, false},
		{`product "2.5"" SSD"`, []token{{text: "product"}, {text: `2.5" SSD`, quoted: true}}, false},
		{`x ""`, []token{{text: "x"}, {text: "", quoted: true}}, false},
		{`x "{"`, []token{{text: "x"}, {text: "{", quoted: true}}, false},
		{"k v!c", []token{{text: "k"}, {text: "v"}}, false},
		{`k a"b"`, []token{{text: "k"}, {text: "a"}, {text: "b", quoted: true}}, false},
		{`k "a # b`, []token{{text: "k"}, {text: "a # b", quoted: true}}, true},
		{`k "a""`, []token{{text: "k"}, {text: `a"`, quoted: true}}, true},
	}
	for _, tt := range tests {
		got, unclosed := tokenize(tt.in)
		if unclosed != tt.unclosed {
			t.Errorf("tokenize(%q) unclosed = %v, want %v", tt.in, unclosed, tt.unclosed)
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
