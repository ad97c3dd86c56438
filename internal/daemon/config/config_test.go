package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/internal/backend"
)

const sample = `
# prhelper.conf
backend sgio
db /var/lib/prhelper/pr.db
initiator host
listen /run/prhelper/vm1.sock initiator=peer port=2
listen /run/prhelper/fixed.sock initiator=name:iqn.2025-01.example:node1
rule kind=file backend=emulate   # disk images
rule wwid=naa.6001405* backend=emulate
rule path=/var/lib/images/shared.img id=shared-disk-1 backend=emulate
`

func TestParseSample(t *testing.T) {
	c, err := Parse(strings.NewReader(sample), "prhelper.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Backend: "sgio", DB: "/var/lib/prhelper/pr.db", Initiator: "host",
		Listen: []Listen{
			{Path: "/run/prhelper/vm1.sock", Initiator: "peer", Port: 2},
			{Path: "/run/prhelper/fixed.sock", Initiator: "name:iqn.2025-01.example:node1"},
		},
		Rules: []Rule{
			{Kind: "file", Backend: "emulate", Line: 8},
			{WWID: "naa.6001405*", Backend: "emulate", Line: 9},
			{Path: "/var/lib/images/shared.img", ID: "shared-disk-1", Backend: "emulate", Line: 10},
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"backend", "conf:1: backend takes one value"},
		{"backend nvme-magic", `conf:1: unknown backend "nvme-magic"`},
		{"\n\ndb relative.db", `conf:3: db path "relative.db" must be absolute`},
		{"listen", "listen needs a socket path"},
		{"listen rel.sock", "must be absolute"},
		{"listen /a port=0", "relative target port identifier"},
		{"listen /a port=70000", "relative target port identifier"},
		{"listen /a colour=red", `unknown option "colour"`},
		{"rule", "rule needs conditions"},
		{"rule kind=file", "rule does nothing"},
		{"rule kind=tape backend=sgio", `unknown kind "tape"`},
		{"rule wwid=[ backend=sgio", "bad pattern"},
		{"rule size=1 backend=sgio", `unknown key "size"`},
		{"rule kind backend=sgio", `"kind" is not key=value`},
		{"frobnicate yes", `unknown directive "frobnicate"`},
	} {
		_, err := Parse(strings.NewReader(tc.in), "conf")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestRuleMatches(t *testing.T) {
	r := Rule{Kind: "scsi-*", WWID: "naa.6001405*", Backend: "emulate"}
	for _, tc := range []struct {
		kind, wwid, path string
		want             bool
	}{
		{"scsi-disk", "naa.6001405abc", "/dev/sdb", true},
		{"scsi-generic", "naa.6001405abc", "/dev/sg1", true},
		{"nvme", "naa.6001405abc", "/dev/nvme0n1", false},
		{"scsi-disk", "t10.LIO-ORG", "/dev/sdb", false},
		{"scsi-disk", "", "/dev/sdb", false},
	} {
		if got := r.Matches(tc.kind, tc.wwid, tc.path); got != tc.want {
			t.Errorf("%+v.Matches(%q, %q, %q) = %v", r, tc.kind, tc.wwid, tc.path, got)
		}
	}
	if !(Rule{Backend: "sgio"}).Matches("other", "", "") {
		t.Error("a rule without conditions must match everything")
	}
	if s := r.String(); s != "rule kind=scsi-* wwid=naa.6001405* backend=emulate" {
		t.Errorf("String() = %q", s)
	}
}

func TestParseListen(t *testing.T) {
	l, err := ParseListen("/run/a.sock,initiator=peer,port=3")
	if err != nil || l != (Listen{Path: "/run/a.sock", Initiator: "peer", Port: 3}) {
		t.Fatalf("%+v %v", l, err)
	}
	if _, err := ParseListen("a.sock"); err == nil {
		t.Fatal("relative path accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("rule kind=file\x00 backend=emulate")
	f.Add("listen /x,port=1 initiator=")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(strings.NewReader(s), "fuzz")
		if err != nil {
			return
		}
		for _, r := range c.Rules {
			if r.Backend == "" && r.ID == "" {
				t.Fatalf("rule without effect accepted: %+v", r)
			}
			if r.Backend != "" && !slices.Contains(backend.Names(), r.Backend) {
				t.Fatalf("unknown backend accepted: %+v", r)
			}
		}
		for _, l := range c.Listen {
			if !strings.HasPrefix(l.Path, "/") {
				t.Fatalf("relative listen accepted: %+v", l)
			}
		}
	})
}

func TestEtcdKeys(t *testing.T) {
	c, err := Parse(strings.NewReader("etcd-endpoints https://a:2379,http://b:2379\netcd-prefix /x/\netcd-cacert /ca.pem\netcd-cert /c.pem\netcd-key /k.pem\n"), "f")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.EtcdEndpoints) != 2 || c.EtcdEndpoints[1] != "http://b:2379" || c.EtcdPrefix != "/x/" ||
		c.EtcdCACert != "/ca.pem" || c.EtcdCert != "/c.pem" || c.EtcdKey != "/k.pem" {
		t.Fatalf("%+v", c)
	}
	for _, bad := range []string{"etcd-endpoints ftp://a", "etcd-endpoints a:2379", "etcd-prefix /x", "etcd-cert rel.pem", "etcd-endpoints"} {
		if _, err := Parse(strings.NewReader(bad+"\n"), "f"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseFence(t *testing.T) {
	c, err := Parse(strings.NewReader("fence exec:/usr/local/libexec/fence-vm\nfence-timeout 20s\n"), "f.conf")
	if err != nil {
		t.Fatal(err)
	}
	if c.Fence != "exec:/usr/local/libexec/fence-vm" || c.FenceTimeout != "20s" {
		t.Fatalf("%+v", c)
	}
	if _, err := Parse(strings.NewReader("fence kill extra\n"), "f.conf"); err == nil || !strings.Contains(err.Error(), "f.conf:1: fence takes one value") {
		t.Fatalf("err %v", err)
	}
}

func TestParseAccessAndSandbox(t *testing.T) {
	c, err := Parse(strings.NewReader(`socket-mode 0660
socket-group kvm
allow-uid qemu,0
allow-gid 36
peer-exe /usr/bin/qemu-system-*,/usr/libexec/qemu-kvm
sandbox off
`), "conf")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{SocketMode: "0660", SocketGroup: "kvm", AllowUID: "qemu,0", AllowGID: "36",
		PeerExe: "/usr/bin/qemu-system-*,/usr/libexec/qemu-kvm", Sandbox: "off"}
	if c.SocketMode != want.SocketMode || c.SocketGroup != want.SocketGroup || c.AllowUID != want.AllowUID ||
		c.AllowGID != want.AllowGID || c.PeerExe != want.PeerExe || c.Sandbox != want.Sandbox {
		t.Fatalf("got %+v", c)
	}
	for in, msg := range map[string]string{
		"sandbox maybe":     `sandbox "maybe": want on or off`,
		"allow-uid 1 2":     "allow-uid takes one value",
		"socket-mode":       "socket-mode takes one value",
		"peer-exe a b":      "peer-exe takes one value",
		"socket-group a b ": "socket-group takes one value",
	} {
		if _, err := Parse(strings.NewReader(in), "conf"); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: err %v, want %q", in, err, msg)
		}
	}
}

func TestParseVinitKey(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0xb0b0", 0xb0b0, true},
		{"0XFFFFFFFFFFFFFFFF", 0xffffffffffffffff, true},
		{"45232", 45232, true},
		{"010", 10, true}, // decimal, not octal
		{"0", 0, false},
		{"0x0", 0, false},
		{"0x1_0", 0, false},
		{"0x10000000000000000", 0, false},
		{"-1", 0, false},
		{"key", 0, false},
		{"", 0, false},
	} {
		got, err := ParseVinitKey(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseVinitKey(%q) = %#x, %v; want %#x, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
	c, err := Parse(strings.NewReader("vinit-key 0xb0b0\n"), "t.conf")
	if err != nil || c.VinitKey != "0xb0b0" {
		t.Fatalf("vinit-key directive: %+v, %v", c, err)
	}
	if _, err := Parse(strings.NewReader("vinit-key 0\n"), "t.conf"); err == nil || !strings.Contains(err.Error(), "not a reservation key") {
		t.Fatalf("vinit-key 0: %v", err)
	}
}
