package identity

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in   string
		want Policy
		str  string
		err  string
	}{
		{"host", Policy{Kind: PolicyHost}, "host", ""},
		{"peer", Policy{Kind: PolicyPeer}, "peer", ""},
		{"name:iqn.1994-05.com.redhat:node1", Policy{PolicyFixed, Initiator{"iqn.1994-05.com.redhat:node1", SourceFixed}}, "name:iqn.1994-05.com.redhat:node1", ""},
		{"name:cluster-a", Policy{PolicyFixed, Initiator{Prefix + ":name:cluster-a", SourceFixed}}, "name:" + Prefix + ":name:cluster-a", ""},
		{"name:", Policy{}, "", `identity policy "name:": fixed initiator name is empty`},
		{"name:naa.5001405b00000001", Policy{PolicyFixed, Initiator{"naa.5001405b00000001", SourceFixed}}, "name:naa.5001405b00000001", ""},
		{"name:naa.12", Policy{}, "", "16 hex digits"},
		{"Host", Policy{}, "", `identity policy "Host": want host, peer or name:NAME`},
		{"", Policy{}, "", `identity policy "": want host, peer or name:NAME`},
		{"peer ", Policy{}, "", "want host, peer or name:NAME"},
		{"uuid", Policy{}, "", "want host, peer or name:NAME"},
	}
	for _, tc := range tests {
		got, err := ParsePolicy(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePolicy(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParsePolicy(%q) = %#v (%q), %v; want %#v (%q)", tc.in, got, got.String(), err, tc.want, tc.str)
		}
		// String reads back to the same policy.
		again, err := ParsePolicy(got.String())
		if err != nil || again != got {
			t.Errorf("ParsePolicy(%q) = %v, %v; want %v", got.String(), again, err, got)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{"host", "peer", "name:x", "name:iqn.a:b", "name:eui.0123456789abcdef", "name:", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			return
		}
		if p.Kind == PolicyFixed {
			checkLegal(t, p.Fixed.Name)
		}
		again, err := ParsePolicy(p.String())
		if err != nil || again != p {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, p, p.String(), again, err)
		}
	})
}

func TestHostSources(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "machine-id")
	if err := os.WriteFile(good, []byte("4c4c4544004e3610804bb2c04f4e5931\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	uninit := filepath.Join(dir, "uninit")
	if err := os.WriteFile(uninit, []byte("uninitialized\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h, err := MachineID(good)(); err != nil || h != "4c4c4544004e3610804bb2c04f4e5931" {
		t.Errorf("MachineID = %q, %v", h, err)
	}
	for _, p := range []string{empty, uninit, filepath.Join(dir, "missing")} {
		if h, err := MachineID(p)(); err == nil {
			t.Errorf("MachineID(%s) = %q, want an error", p, h)
		}
	}
	fixed := func(s string) HostSource { return func() (string, error) { return s, nil } }
	failing := func(msg string) HostSource { return func() (string, error) { return "", errors.New(msg) } }
	if h, err := FirstOf(MachineID(empty), fixed("node1"))(); err != nil || h != "node1" {
		t.Errorf("FirstOf fallback = %q, %v", h, err)
	}
	if _, err := FirstOf(failing("a"), failing("b"))(); err == nil || err.Error() != "no host identity: a; b" {
		t.Errorf("FirstOf all failing: %v", err)
	}
	if h, err := Hostname()(); err != nil || h == "" {
		t.Errorf("Hostname = %q, %v", h, err)
	}
}

func TestResolverPolicies(t *testing.T) {
	host := func() (string, error) { return "node1", nil }
	noHost := func() (string, error) { return "", errors.New("no machine id") }
	qemu := func() ([]byte, string, error) { return libvirtLine(), "peer pid 42", nil }
	notQemu := func() ([]byte, string, error) { return argv("socat", "-", "UNIX:x"), "peer pid 43", nil }
	gone := func() ([]byte, string, error) { return nil, "", errors.New("pid 44 exited") }
	fixed, _ := ParsePolicy("name:cluster-a")
	tests := []struct {
		name string
		r    Resolver
		peer func() ([]byte, string, error)
		want Initiator
		err  string
	}{
		{"host", Resolver{Policy: Policy{Kind: PolicyHost}, Host: host}, gone, Initiator{Prefix + ":host:node1", SourceHost}, ""},
		{"host without identity", Resolver{Policy: Policy{Kind: PolicyHost}, Host: noHost}, gone, Initiator{}, "identity policy host: no machine id"},
		{"fixed", Resolver{Policy: fixed}, gone, Initiator{Prefix + ":name:cluster-a", SourceFixed}, ""},
		{"peer qemu", Resolver{Policy: Policy{Kind: PolicyPeer}}, qemu, Initiator{Prefix + ":vm:" + testUUID, SourceUUID}, ""},
		{"peer not qemu", Resolver{Policy: Policy{Kind: PolicyPeer}}, notQemu, Initiator{}, "identity policy peer: peer pid 43: no -uuid or -name"},
		{"peer gone", Resolver{Policy: Policy{Kind: PolicyPeer}}, gone, Initiator{}, "identity policy peer: pid 44 exited"},
		{"zero policy", Resolver{}, qemu, Initiator{}, "not set"},
		{"fixed without name", Resolver{Policy: Policy{Kind: PolicyFixed}}, qemu, Initiator{}, "empty name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.r.resolve(tc.peer)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("resolve = %v, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("resolve = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
