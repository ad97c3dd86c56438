package privilege

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// sampleStatus is a /proc/self/status of a Linux 6.1 process, trimmed of lines the
// parser ignores only where that keeps it readable.
const sampleStatus = `Name:	prhelper
Umask:	0022
State:	S (sleeping)
Tgid:	1234
Pid:	1234
PPid:	1
Uid:	0	65534	65534	65534
Gid:	0	65534	65534	65534
FDSize:	64
Groups:	4 24 27 
NStgid:	1234
VmRSS:	   10240 kB
CapInh:	0000000000000000
CapPrm:	0000000000020000
CapEff:	0000000000020000
CapBnd:	000001ffffffffff
CapAmb:	0000000000000000
NoNewPrivs:	1
Seccomp:	0
`

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Status
		wantErr string
	}{
		{"full", sampleStatus, Status{
			Uid: [4]int{0, 65534, 65534, 65534}, Gid: [4]int{0, 65534, 65534, 65534},
			Groups: []int{4, 24, 27},
			CapPrm: 1 << 17, CapEff: 1 << 17, CapBnd: 1<<41 - 1, NoNewPrivs: true,
		}, ""},
		{"no groups, no ambient or NoNewPrivs (pre-4.3 kernel)",
			"Uid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t\nCapInh:\t1\nCapPrm:\tff\nCapEff:\t0f\nCapBnd:\tffffffffffffffff\n",
			Status{Uid: [4]int{1, 2, 3, 4}, Gid: [4]int{5, 6, 7, 8}, CapInh: 1, CapPrm: 0xff, CapEff: 0xf, CapBnd: ^uint64(0)}, ""},
		{"missing CapBnd", strings.Replace(sampleStatus, "CapBnd:", "XapBnd:", 1), Status{}, "no CapBnd line"},
		{"missing Uid", strings.Replace(sampleStatus, "Uid:", "Vid:", 1), Status{}, "no Uid line"},
		{"three uids", strings.Replace(sampleStatus, "Uid:\t0\t", "Uid:\t", 1), Status{}, "want 4 ids"},
		{"negative gid", strings.Replace(sampleStatus, "Gid:\t0", "Gid:\t-1", 1), Status{}, "Gid"},
		{"bad group", strings.Replace(sampleStatus, "Groups:\t4", "Groups:\tx", 1), Status{}, "Groups"},
		{"cap mask too long", strings.Replace(sampleStatus, "CapEff:\t0", "CapEff:\t00", 1), Status{}, "CapEff"},
		{"cap mask not hex", strings.Replace(sampleStatus, "CapPrm:\t0", "CapPrm:\tg", 1), Status{}, "CapPrm"},
		{"empty cap mask", strings.Replace(sampleStatus, "CapInh:\t0000000000000000", "CapInh:\t", 1), Status{}, "CapInh"},
		{"bad NoNewPrivs", strings.Replace(sampleStatus, "NoNewPrivs:\t1", "NoNewPrivs:\t2", 1), Status{}, "NoNewPrivs"},
		{"duplicate CapEff", sampleStatus + "CapEff:\t0000000000000000\n", Status{}, "duplicate CapEff"},
		{"empty", "", Status{}, "no Uid line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStatus([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseStatus: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestReadStatusSelf(t *testing.T) {
	s, err := ReadStatus(os.Getpid())
	if err != nil {
		t.Fatalf("ReadStatus: %v", err)
	}
	if s.Uid[0] != os.Getuid() || s.Uid[1] != os.Geteuid() || s.Gid[0] != os.Getgid() {
		t.Errorf("Uid %v Gid %v, want real uid %d euid %d gid %d", s.Uid, s.Gid, os.Getuid(), os.Geteuid(), os.Getgid())
	}
	threads, err := ReadThreadStatuses(os.Getpid())
	if err != nil {
		t.Fatalf("ReadThreadStatuses: %v", err)
	}
	if _, ok := threads[os.Getpid()]; !ok || len(threads) < 1 {
		t.Errorf("threads %v lack the leader %d", len(threads), os.Getpid())
	}
	if _, err := ReadStatus(-1); err == nil {
		t.Error("ReadStatus(-1): want error")
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(sampleStatus))
	f.Add([]byte("Uid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t\nCapInh:\t1\nCapPrm:\tff\nCapEff:\t0f\nCapBnd:\tffffffffffffffff\n"))
	f.Add([]byte("Uid: x\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStatus(b)
		if err != nil {
			return
		}
		for _, id := range append(append(s.Uid[:], s.Gid[:]...), s.Groups...) {
			if id < 0 || id > 1<<32-1 {
				t.Fatalf("id %d out of range", id)
			}
		}
	})
}
