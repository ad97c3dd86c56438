package privilege

import (
	"os/user"
	"strings"
	"testing"
)

func TestLookupUser(t *testing.T) {
	tests := []struct {
		in       string
		uid, gid int
		wantErr  string
	}{
		{"root", 0, 0, ""},
		{"0", 0, 0, ""},
		{"4242", 4242, -1, ""},
		{"4294967294", 4294967294, -1, ""},
		{"4294967295", -1, -1, "invalid user"},
		{"4294967296", -1, -1, "invalid user"},
		{"-1", -1, -1, "invalid user"},
		{"", -1, -1, "invalid user"},
		{"no-such-user-prhelper", -1, -1, `invalid user "no-such-user-prhelper"`},
	}
	if u, err := user.Lookup("nobody"); err == nil {
		uid, _ := parseID(u.Uid)
		gid, _ := parseID(u.Gid)
		tests = append(tests, struct {
			in       string
			uid, gid int
			wantErr  string
		}{"nobody", uid, gid, ""})
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			uid, gid, err := LookupUser(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || uid != tc.uid || gid != tc.gid {
				t.Errorf("LookupUser(%q) = %d, %d, %v; want %d, %d", tc.in, uid, gid, err, tc.uid, tc.gid)
			}
		})
	}
}

func TestLookupGroup(t *testing.T) {
	tests := []struct {
		in      string
		gid     int
		wantErr string
	}{
		{"root", 0, ""},
		{"0", 0, ""},
		{"4242", 4242, ""},
		{"4294967295", -1, "invalid group"},
		{"1e3", -1, "invalid group"},
		{"", -1, "invalid group"},
		{"no-such-group-prhelper", -1, `invalid group "no-such-group-prhelper"`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			gid, err := LookupGroup(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || gid != tc.gid {
				t.Errorf("LookupGroup(%q) = %d, %v; want %d", tc.in, gid, err, tc.gid)
			}
		})
	}
}
