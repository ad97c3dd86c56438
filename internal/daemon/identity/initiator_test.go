package identity

import (
	"strings"
	"testing"
)

// checkLegal fails unless name is a legal iSCSI name (RFC 3720 §3.2.6).
func checkLegal(t *testing.T, name string) {
	t.Helper()
	if len(name) == 0 || len(name) > MaxNameLen {
		t.Fatalf("name %q: length %d", name, len(name))
	}
	checkChars(t, name)
}

// checkChars fails unless s holds only characters legal in an iSCSI name.
func checkChars(t *testing.T, name string) {
	t.Helper()
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':') {
			t.Fatalf("name %q: byte %q at %d", name, c, i)
		}
	}
}

func TestEncodeComponent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"vm1", "vm1"},
		{"Web-01.prod", "web-01.prod"},
		{"my_vm", "my:5fvm"},
		{"a:b", "a:3ab"},
		{"a b", "a:20b"},
		{"a,b", "a:2cb"},
		{"ümlaut", ":c3:bcmlaut"},
		{"\x00\xff", ":00:ff"},
		{"", ""},
		{"ABCXYZ", "abcxyz"},
		{"@[`{", ":40:5b:60:7b"},
	}
	for _, tc := range tests {
		if got := EncodeComponent(tc.in); got != tc.want {
			t.Errorf("EncodeComponent(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLongNames(t *testing.T) {
	long := strings.Repeat("v", 300)
	in, err := VMInitiator(VM{Name: long})
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Name) != MaxNameLen || !strings.HasPrefix(in.Name, Prefix+":vm-name:vvv") {
		t.Errorf("long name -> %q (%d bytes)", in.Name, len(in.Name))
	}
	other, _ := VMInitiator(VM{Name: long + "w"})
	if other.Name == in.Name {
		t.Errorf("two long names share %q", in.Name)
	}
	exact := strings.Repeat("v", MaxNameLen-len(Prefix+":vm-name:"))
	in, _ = VMInitiator(VM{Name: exact})
	if in.Name != Prefix+":vm-name:"+exact {
		t.Errorf("name of exactly %d bytes changed: %q", MaxNameLen, in.Name)
	}
}

func TestHostInitiator(t *testing.T) {
	in, err := HostInitiator("4c4c4544004e3610804bb2c04f4e5931")
	if err != nil || in != (Initiator{Prefix + ":host:4c4c4544004e3610804bb2c04f4e5931", SourceHost}) {
		t.Errorf("HostInitiator = %v, %v", in, err)
	}
	in, err = HostInitiator("Node_1.example.com")
	if err != nil || in.Name != Prefix+":host:node:5f1.example.com" {
		t.Errorf("HostInitiator = %v, %v", in, err)
	}
	if _, err := HostInitiator(" \n"); err == nil {
		t.Error("HostInitiator accepted a blank host")
	}
}

func TestFixedInitiator(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"iqn.1994-05.com.redhat:node1", "iqn.1994-05.com.redhat:node1", ""},
		{"IQN.1994-05.COM.RedHat:Node1", "iqn.1994-05.com.redhat:node1", ""},
		{"eui.02004567A425678D", "eui.02004567a425678d", ""},
		{"cluster-a", Prefix + ":name:cluster-a", ""},
		{"Cluster A", Prefix + ":name:cluster:20a", ""},
		{"iqn.2025-01.x:a_b", "", `character "_" at byte 15`},
		{"eui.1234", "", "16 hex digits"},
		{"NAA.5001405B00000001", "naa.5001405b00000001", ""},
		{"naa.5001405b0000001", "", "16 hex digits"},
		{"iqn." + strings.Repeat("a", 220), "", "longer than 223"},
		{"", "", "empty"},
	}
	for _, tc := range tests {
		got, err := FixedInitiator(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("FixedInitiator(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != (Initiator{tc.want, SourceFixed}) {
			t.Errorf("FixedInitiator(%q) = %v, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzEncodeComponent: the output is legal and decodes back to the input
// with ASCII letters folded, so distinct VMs keep distinct names.
func FuzzEncodeComponent(f *testing.F) {
	for _, s := range []string{"vm1", "my_vm", "a:3ab", "ümlaut", "\x00", ":", "A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := EncodeComponent(s)
		checkChars(t, enc) // any length: join caps the whole name
		if dec := decodeComponent(t, enc); dec != asciiLowerBytes(s) {
			t.Fatalf("EncodeComponent(%q) = %q decodes to %q", s, enc, dec)
		}
		in, err := VMInitiator(VM{Name: s})
		if s != "" && err != nil {
			t.Fatalf("VMInitiator(%q): %v", s, err)
		}
		if s != "" {
			checkLegal(t, in.Name)
		}
	})
}

func asciiLowerBytes(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// decodeComponent inverts EncodeComponent (up to case).
func decodeComponent(t *testing.T, s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != ':' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			t.Fatalf("truncated escape in %q", s)
		}
		var v byte
		for _, c := range []byte(s[i+1 : i+3]) {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= c - '0'
			case c >= 'a' && c <= 'f':
				v |= c - 'a' + 10
			default:
				t.Fatalf("bad escape in %q", s)
			}
		}
		b = append(b, v)
		i += 2
	}
	return string(b)
}
