package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMaxRegistrationsSetting: --max-registrations and the configuration
// file's max-registrations set the bound of the emulation's profile
// (docs/spc4-pr.md §7.7); the flag overrides the file.
func TestMaxRegistrationsSetting(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "prhelper.conf")
	if err := os.WriteFile(conf, []byte("max-registrations 64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want int
		err  string
	}{
		{nil, defaultMaxRegistrations, ""},
		{[]string{"--max-registrations=10"}, 10, ""},
		{[]string{"--config=" + conf}, 64, ""},
		{[]string{"--config=" + conf, "--max-registrations=5"}, 5, ""},
		{[]string{"--max-registrations=0"}, 0, "whole number from 1"},
		{[]string{"--max-registrations=many"}, 0, "whole number from 1"},
	} {
		o, err := parseOptions("prhelper", tc.args)
		if err != nil {
			t.Fatal(err)
		}
		s, err := loadSettings(o)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if p := s.profile(); p.MaxRegistrations != tc.want || p.Name != "lio" {
			t.Errorf("%v: profile %s with MaxRegistrations %d, want lio with %d", tc.args, p.Name, p.MaxRegistrations, tc.want)
		}
	}
}
