package main

import (
	"github.com/prhelper/prhelper/internal/backend"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEtcdSettings(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "c.conf")
	os.WriteFile(conf, []byte("backend emulate\netcd-endpoints http://a:2379\netcd-prefix /file/\n"), 0o600)
	dbconf := filepath.Join(dir, "db.conf")
	os.WriteFile(dbconf, []byte("db /var/lib/x.db\n"), 0o600)
	both := filepath.Join(dir, "both.conf")
	os.WriteFile(both, []byte("db /var/lib/x.db\netcd-endpoints http://a:2379\n"), 0o600)
	for _, tc := range []struct {
		args    []string
		eps     string
		prefix  string
		wantErr string
	}{
		{args: []string{"--etcd-endpoints=http://x:1,https://y:2", "--etcd-cert=/c", "--etcd-key=/k"}, eps: "http://x:1,https://y:2"},
		{args: []string{"--config=" + conf}, eps: "http://a:2379", prefix: "/file/"},
		{args: []string{"--config=" + conf, "--etcd-prefix=/flag/", "--etcd-endpoints=http://b:1"}, eps: "http://b:1", prefix: "/flag/"},
		{args: []string{"--config=" + conf, "--db=/tmp/x.db"}, eps: ""}, // --db replaces the file's etcd store
		{args: []string{"--config=" + dbconf, "--etcd-endpoints=http://b:1"}, eps: "http://b:1"},
		{args: []string{"--config=" + both}, wantErr: "give one store"},
		{args: []string{"--db=/x.db", "--etcd-endpoints=http://b:1"}, wantErr: "give one store"},
		{args: []string{"--etcd-endpoints=b:1"}, wantErr: "want http://HOST:PORT"},
		{args: []string{"--etcd-prefix=/p/"}, wantErr: "need --etcd-endpoints"},
		{args: []string{"--etcd-endpoints=http://b:1", "--etcd-prefix=/p"}, wantErr: "must end with /"},
	} {
		o, err := parseOptions("prhelper", tc.args)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		s, err := loadSettings(o)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := strings.Join(s.etcd.endpoints, ","); got != tc.eps || s.etcd.prefix != tc.prefix {
			t.Errorf("%v: endpoints %q prefix %q, want %q %q", tc.args, got, s.etcd.prefix, tc.eps, tc.prefix)
		}
		if tc.eps != "" && !s.plan().Has(backend.Emulate) {
			t.Errorf("%v: etcd store does not enable emulation", tc.args)
		}
	}
	if !strings.Contains(usage("prhelper"), "--etcd-endpoints=URL[,URL...]") {
		t.Error("--help does not list --etcd-endpoints")
	}
}
