package dm

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeKernel answers DM_VERSION and DM_TABLE_STATUS as drivers/md/dm-ioctl.c
// does for one dm device: it checks the request bytes, then copies back what
// the kernel would (see retrieveStatus).
type fakeKernel struct {
	t   *testing.T
	dev uint64 // the dm device's number, new_encode_dev form
	// tables returns the table (table true) or status targets for the
	// n-th DM_TABLE_STATUS call (0-based); nil tables means no active table.
	tables func(n int, table bool) []fakeTarget
	errno  unix.Errno // returned instead of a reply when non-zero
	calls  []fakeCall
}

type fakeCall struct {
	req   uint
	size  int
	flags uint32
}

func (k *fakeKernel) ioctl(fd int, req uint, arg []byte) error {
	ne := binary.NativeEndian
	if len(arg) < 312 {
		k.t.Fatalf("ioctl %#x with a %d-byte buffer", req, len(arg))
	}
	size := int(ne.Uint32(arg[12:]))
	k.calls = append(k.calls, fakeCall{req: req, size: size, flags: ne.Uint32(arg[28:])})
	if fd != 42 {
		k.t.Errorf("ioctl on fd %d, want the control fd 42", fd)
	}
	if size != len(arg) {
		k.t.Errorf("data_size %d, buffer %d", size, len(arg))
	}
	if v := ne.Uint32(arg[0:]); v != 4 || ne.Uint32(arg[4:]) > kernelMinor {
		k.t.Errorf("version %d.%d: check_version would refuse it", v, ne.Uint32(arg[4:]))
	}
	if k.errno != 0 {
		return k.errno
	}
	switch req {
	case 0xc138fd00:
		ne.PutUint32(arg[4:], kernelMinor)
		return nil
	case 0xc138fd0c:
	default:
		return unix.ENOTTY
	}
	if arg[48] != 0 || arg[176] != 0 {
		k.t.Errorf("request names the device by name or uuid")
	}
	if got := ne.Uint64(arg[40:]); got != k.dev {
		return unix.ENXIO
	}
	flags := ne.Uint32(arg[28:])
	if flags&(1<<11) == 0 {
		k.t.Errorf("flags %#x without DM_NOFLUSH_FLAG", flags)
	}
	var targets []fakeTarget
	if k.tables != nil {
		targets = k.tables(len(k.calls)-1, flags&(1<<4) != 0)
	}
	kern := append([]byte(nil), arg...)
	n := retrieveStatus(kern, targets)
	copy(arg, kern[:n])
	return nil
}

func (k *fakeKernel) control() *Control { return NewControl(42, k.ioctl) }

var mpathDev = Dev{253, 0}

func constant(table, status []fakeTarget) func(int, bool) []fakeTarget {
	return func(_ int, t bool) []fakeTarget {
		if t {
			return table
		}
		return status
	}
}

func TestTableStatus(t *testing.T) {
	long := strings.Repeat("8:16 1 1 ", 2500) // 22,500 bytes: more than the first buffer
	for _, c := range []struct {
		name    string
		table   bool
		targets []fakeTarget
		sizes   []int // buffer sizes of the calls, in order
	}{
		{"one target, table", true, []fakeTarget{{0, 131072, "multipath", labTable + " "}}, []int{16384}},
		{"one target, status", false, []fakeTarget{{0, 131072, "multipath", labStatus + " "}}, []int{16384}},
		{"three targets", true, []fakeTarget{
			{0, 1000, "linear", "8:16 0"},
			{1000, 2000, "striped", "2 128 8:32 0 8:48 2048"},
			{3000, 8, "error", ""},
		}, []int{16384}},
		{"buffer full, then twice as large", true, []fakeTarget{{0, 8, "multipath", long}}, []int{16384, 32768}},
		{"buffer full on the second target", true, []fakeTarget{
			{0, 8, "linear", strings.Repeat("x", 16000)},
			{8, 8, "linear", "8:16 0"},
		}, []int{16384, 32768}},
		{"no active table", true, nil, []int{16384}},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := &fakeKernel{t: t, dev: 0xfd00, tables: constant(c.targets, c.targets)}
			got, err := k.control().TableStatus(mpathDev, c.table)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.targets) {
				t.Fatalf("%d targets, want %d", len(got), len(c.targets))
			}
			for i, w := range c.targets {
				g := got[i]
				if g.Start != w.start || g.Length != w.length || g.Type != w.typ || g.Params != strings.TrimRight(w.params, " ") {
					t.Errorf("target %d = {%d %d %q %.40q}, want {%d %d %q %.40q}",
						i, g.Start, g.Length, g.Type, g.Params, w.start, w.length, w.typ, w.params)
				}
			}
			if len(k.calls) != len(c.sizes) {
				t.Fatalf("%d ioctls, want %d", len(k.calls), len(c.sizes))
			}
			for i, call := range k.calls {
				wantFlags := uint32(1 << 11)
				if c.table {
					wantFlags |= 1 << 4
				}
				if call.req != 0xc138fd0c || call.size != c.sizes[i] || call.flags != wantFlags {
					t.Errorf("call %d = req %#x size %d flags %#x, want %#x %d %#x",
						i, call.req, call.size, call.flags, 0xc138fd0c, c.sizes[i], wantFlags)
				}
			}
		})
	}
}

func TestTableStatusErrors(t *testing.T) {
	huge := []fakeTarget{{0, 8, "multipath", strings.Repeat("8:16 A 0 ", 600000)}}
	for _, c := range []struct {
		name  string
		k     *fakeKernel
		dev   Dev
		is    error
		want  string
		calls int
	}{
		{"not a dm device", &fakeKernel{dev: 0xfd00}, Dev{8, 16}, unix.ENXIO, "DM_TABLE_STATUS 8:16 (table)", 1},
		{"no CAP_SYS_ADMIN", &fakeKernel{dev: 0xfd00, errno: unix.EACCES}, mpathDev, unix.EACCES, "permission denied", 1},
		{"reply never fits", &fakeKernel{dev: 0xfd00, tables: constant(huge, huge)}, mpathDev, nil, "does not fit in 4194304 bytes", 9},
		{"major beyond 12 bits", &fakeKernel{dev: 0xfd00}, Dev{4096, 0}, nil, "out of the kernel's", 0},
		{"minor beyond 20 bits", &fakeKernel{dev: 0xfd00}, Dev{253, 1 << 20}, nil, "out of the kernel's", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.k.t = t
			_, err := c.k.control().TableStatus(c.dev, true)
			if err == nil || !strings.Contains(err.Error(), c.want) || (c.is != nil && !errors.Is(err, c.is)) {
				t.Fatalf("err = %v, want %q (%v)", err, c.want, c.is)
			}
			if len(c.k.calls) != c.calls {
				t.Errorf("%d ioctls, want %d", len(c.k.calls), c.calls)
			}
		})
	}
}

// TestTableStatusCorruptReply feeds a reply whose data_size claims more than
// the buffer: an error, not a read past it.
func TestTableStatusCorruptReply(t *testing.T) {
	c := NewControl(42, func(fd int, req uint, arg []byte) error {
		binary.NativeEndian.PutUint32(arg[12:], uint32(len(arg)+100))
		binary.NativeEndian.PutUint32(arg[20:], 1)
		return nil
	})
	_, err := c.TableStatus(mpathDev, false)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
}

func TestVersion(t *testing.T) {
	k := &fakeKernel{t: t}
	v, err := k.control().Version()
	if err != nil {
		t.Fatal(err)
	}
	if v != [3]uint32{4, kernelMinor, 0} {
		t.Errorf("version %v", v)
	}
	if len(k.calls) != 1 || k.calls[0].req != 0xc138fd00 || k.calls[0].size != 312 {
		t.Errorf("calls %+v", k.calls)
	}
	k = &fakeKernel{t: t, errno: unix.EACCES}
	if _, err := k.control().Version(); !errors.Is(err, unix.EACCES) {
		t.Errorf("err = %v, want EACCES", err)
	}
}

func TestIsMultipath(t *testing.T) {
	for _, c := range []struct {
		targets []Target
		want    bool
	}{
		{nil, false},
		{[]Target{{Type: "multipath"}}, true},
		{[]Target{{Type: "linear"}, {Type: "multipath"}}, false},
		{[]Target{{Type: "multipath"}, {Type: "linear"}}, true},
		{[]Target{{Type: "multipathX"}}, false},
	} {
		if got := IsMultipath(c.targets); got != c.want {
			t.Errorf("IsMultipath(%+v) = %v", c.targets, got)
		}
	}
}

func TestMultipathPaths(t *testing.T) {
	mp := func(p string) []fakeTarget { return []fakeTarget{{0, 131072, "multipath", p}} }
	reloaded := "2 0 0 0 1 1 A 0 1 2 8:48 A 0 0 1 "
	for _, c := range []struct {
		name   string
		tables func(int, bool) []fakeTarget
		want   []Path
		is     error
		calls  int
	}{
		{"lab map", constant(mp(labTable+" "), mp(labStatus+" ")), []Path{
			{Dev: Dev{8, 0}, Group: 1, GroupState: GroupActive, Active: true},
			{Dev: Dev{8, 16}, Group: 1, GroupState: GroupActive, Active: true},
		}, nil, 2},
		{"lab map, sda offline", constant(mp(labTable+" "), mp(labStatusFailed+" ")), []Path{
			{Dev: Dev{8, 0}, Group: 1, GroupState: GroupActive, Active: false, Failures: 1},
			{Dev: Dev{8, 16}, Group: 1, GroupState: GroupActive, Active: true},
		}, nil, 2},
		{"failover map", constant(mp(failoverTable), mp(failoverStatus)), []Path{
			{Dev: Dev{8, 16}, Group: 1, GroupState: GroupActive, Active: true},
			{Dev: Dev{8, 32}, Group: 2, GroupState: GroupEnabled, Active: true},
		}, nil, 2},
		{"failed path", constant(mp(tableSeeds[1]), mp(statusSeeds[1])), []Path{
			{Dev: Dev{8, 16}, Group: 1, GroupState: GroupActive, Active: true},
			{Dev: Dev{8, 32}, Group: 1, GroupState: GroupActive, Active: false, Failures: 3},
		}, nil, 2},
		{"reloaded between the reads, then stable", func(n int, table bool) []fakeTarget {
			switch {
			case n == 0:
				return mp(failoverTable)
			case table:
				return mp("0 0 1 1 service-time 0 1 2 8:48 1 1")
			}
			return mp(reloaded)
		}, []Path{{Dev: Dev{8, 48}, Group: 1, GroupState: GroupActive, Active: true}}, nil, 4},
		{"always disagreeing", constant(mp(failoverTable), mp(reloaded)), nil, ErrMismatch, 6},
		{"linear map", constant([]fakeTarget{{0, 8, "linear", "8:16 0"}}, []fakeTarget{{0, 8, "linear", ""}}), nil, ErrNotMultipath, 1},
		{"no table", constant(nil, nil), nil, ErrNotMultipath, 1},
		{"two targets", constant(append(mp(labTable), mp(labTable)...), nil), nil, ErrMalformed, 1},
		{"bad table", constant(mp("0 0 1 1 x"), mp(labStatus)), nil, ErrMalformed, 2},
		{"bad status", constant(mp(labTable), mp("2 0 0 0 2 1 Q")), nil, ErrMalformed, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := &fakeKernel{t: t, dev: 0xfd00, tables: c.tables}
			got, err := k.control().MultipathPaths(mpathDev)
			if c.is != nil {
				if !errors.Is(err, c.is) {
					t.Fatalf("err = %v, want %v", err, c.is)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("path %d = %+v, want %+v", i, got[i], c.want[i])
				}
			}
			if len(k.calls) != c.calls {
				t.Errorf("%d ioctls, want %d", len(k.calls), c.calls)
			}
		})
	}
	k := &fakeKernel{t: t, dev: 0xfd00}
	if _, err := k.control().MultipathPaths(Dev{8, 16}); !errors.Is(err, unix.ENXIO) {
		t.Errorf("not a dm device: err = %v, want ENXIO", err)
	}
}

// TestControlClose checks that Close closes the fd it was given, once.
func TestControlClose(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	c := NewControl(p[0], nil)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(p[0]), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("fd still open after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestOpenMissing checks the error of a missing control node.
func TestOpenMissing(t *testing.T) {
	_, err := Open(t.TempDir() + "/control")
	if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "open ") {
		t.Fatalf("err = %v", err)
	}
}

// TestSysIoctlRealErrno runs the real ioctl(2) on a pipe, which has no dm
// ioctls: the errno comes back as an error.
func TestSysIoctlRealErrno(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	c := NewControl(-1, nil)
	c.fd = p[0]
	if _, err := c.Version(); !errors.Is(err, unix.ENOTTY) {
		t.Fatalf("err = %v, want ENOTTY", err)
	}
	if err := sysIoctl(p[0], ioctlVersion, nil); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("empty buffer: err = %v, want EINVAL", err)
	}
}
