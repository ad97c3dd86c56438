package access

import (
	"fmt"
	"strconv"
	"testing"
)

func TestAdmits(t *testing.T) {
	peer := Cred{PID: 10, UID: 107, GID: 107, Groups: []uint32{107, 36}}
	for _, tc := range []struct {
		name string
		p    Policy
		c    Cred
		want bool
	}{
		{"empty policy admits all", Policy{}, peer, true},
		{"uid listed", Policy{UIDs: []uint32{0, 107}}, peer, true},
		{"uid not listed", Policy{UIDs: []uint32{0}}, peer, false},
		{"primary gid listed", Policy{GIDs: []uint32{107}}, Cred{UID: 5, GID: 107}, true},
		{"supplementary gid listed", Policy{GIDs: []uint32{36}}, peer, true},
		{"no gid listed", Policy{GIDs: []uint32{6}}, peer, false},
		{"uid or gid", Policy{UIDs: []uint32{1}, GIDs: []uint32{36}}, peer, true},
		{"root not implied", Policy{UIDs: []uint32{107}}, Cred{UID: 0, GID: 0}, false},
	} {
		if got := tc.p.Admits(tc.c); got != tc.want {
			t.Errorf("%s: Admits(%+v) under %v = %v, want %v", tc.name, tc.c, tc.p, got, tc.want)
		}
	}
}

func TestParseIDs(t *testing.T) {
	lookup := func(s string) (int, error) {
		if s == "qemu" {
			return 107, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("no such user %q", s)
		}
		return n, nil
	}
	got, err := ParseIDs("qemu, 0,107,", lookup)
	if err != nil || fmt.Sprint(got) != "[107 0]" {
		t.Fatalf("ParseIDs = %v, %v; want [107 0]", got, err)
	}
	for _, bad := range []string{"", ",", "nobody-here", "-1", "4294967295"} {
		if ids, err := ParseIDs(bad, lookup); err == nil {
			t.Errorf("ParseIDs(%q) = %v, want an error", bad, ids)
		}
	}
}
