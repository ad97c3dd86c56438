package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/backend/sgio"
	"github.com/prhelper/prhelper/internal/daemon/config"
	"github.com/prhelper/prhelper/internal/kernel/device"
	"github.com/prhelper/prhelper/scsi"
)

type named struct {
	name string
	got  []backend.Request
}

func (n *named) Name() string { return n.name }
func (n *named) Execute(ctx context.Context, r *backend.Request) (scsi.Result, error) {
	n.got = append(n.got, *r)
	return scsi.Good(nil), nil
}

const rules = `
rule path=/var/lib/images/shared.img backend=emulate id=shared-1
rule kind=file backend=emulate
rule wwid=naa.6001405* backend=emulate
rule kind=dm-multipath backend=sgio
`

func newRouter(t *testing.T, def backend.Name, infos map[int]device.Info, paths map[int]string) (*Router, map[string]*named) {
	t.Helper()
	c, err := config.Parse(strings.NewReader(rules), "test.conf")
	if err != nil {
		t.Fatal(err)
	}
	bs := map[string]*named{"sgio": {name: "sgio"}, "emulate": {name: "emulate"}}
	r := &Router{
		Default:  def,
		Rules:    c.Rules,
		Plan:     backend.PlanOf(backend.Sgio, backend.Emulate),
		Backends: map[backend.Name]backend.Backend{backend.Sgio: bs["sgio"], backend.Emulate: bs["emulate"]},
		Classify: func(fd int) (device.Info, error) {
			if i, ok := infos[fd]; ok {
				return i, nil
			}
			return device.Info{}, errors.New("no such fd")
		},
		Path: func(fd int) string { return paths[fd] },
	}
	return r, bs
}

func TestDecide(t *testing.T) {
	r, _ := newRouter(t, "sgio", nil, nil)
	file := device.Info{Kind: device.RegularFile, ID: "file:8:1:1234", LUID: "file:8:1:1234"}
	lio := device.Info{Kind: device.SCSIDisk, ID: "naa.6001405abd", LUID: "naa.6001405abd"}
	other := device.Info{Kind: device.SCSIDisk, ID: "naa.5000c500", LUID: "naa.5000c500"}
	mpath := device.Info{Kind: device.DMMultipath, ID: "mpath-36001405abd", LUID: "naa.6001405abd"}
	for _, tc := range []struct {
		name     string
		info     device.Info
		path     string
		backend  backend.Name
		lu       string
		ruleLine int
	}{
		{"image with a configured id", file, "/var/lib/images/shared.img", "emulate", "shared-1", 2},
		{"any other file", file, "/tmp/x.img", "emulate", "file:8:1:1234", 3},
		{"LIO disk by wwid", lio, "/dev/sdb", "emulate", "naa.6001405abd", 4},
		{"multipath map of a LIO LU: wwid rule comes first", mpath, "/dev/dm-0", "emulate", "naa.6001405abd", 4},
		{"other disk: default", other, "/dev/sdc", "sgio", "naa.5000c500", 0},
	} {
		d := r.Decide(tc.info, tc.path)
		line := 0
		if d.Rule != nil {
			line = d.Rule.Line
		}
		if d.Backend != tc.backend || d.LU != tc.lu || line != tc.ruleLine {
			t.Errorf("%s: %+v, want backend %s lu %s line %d", tc.name, d, tc.backend, tc.lu, tc.ruleLine)
		}
		if d.Why == "" {
			t.Errorf("%s: no reason given", tc.name)
		}
	}
}

func TestExecuteDelegatesWithLU(t *testing.T) {
	infos := map[int]device.Info{
		3: {Kind: device.RegularFile, ID: "file:8:1:9", LUID: "file:8:1:9"},
		4: {Kind: device.SCSIDisk, ID: "naa.5000c500", LUID: "naa.5000c500"},
	}
	r, bs := newRouter(t, "sgio", infos, map[int]string{3: "/var/lib/images/shared.img"})
	for _, fd := range []int{3, 4, 99} {
		if _, err := r.Execute(context.Background(), &backend.Request{FD: fd, CDB: scsi.PRInCDB(0, 8)}); err != nil {
			t.Fatalf("fd %d: %v", fd, err)
		}
	}
	if e := bs["emulate"].got; len(e) != 1 || e[0].LU != "shared-1" || e[0].FD != 3 {
		t.Fatalf("emulate got %+v", e)
	}
	// fd 99 cannot be classified: the default backend still gets it, without an LU.
	if s := bs["sgio"].got; len(s) != 2 || s[0].LU != "naa.5000c500" || s[1].FD != 99 || s[1].LU != "" {
		t.Fatalf("sgio got %+v", s)
	}
}

func TestUnconfiguredBackend(t *testing.T) {
	r, _ := newRouter(t, "sgio", map[int]device.Info{3: {Kind: device.RegularFile, ID: "f"}}, nil)
	delete(r.Backends, backend.Emulate)
	rep, err := r.Execute(context.Background(), &backend.Request{FD: 3, CDB: scsi.PRInCDB(0, 8)})
	if err == nil || rep.Status != scsi.StatusCheckCondition {
		t.Fatalf("status %#x err %v", rep.Status, err)
	}
	// The reason is built only for this error (decide), and is Decide's.
	why := r.Decide(device.Info{Kind: device.RegularFile, ID: "f"}, "").Why
	if why == "" || !strings.Contains(err.Error(), "("+why+")") {
		t.Fatalf("error %q does not give the decision's reason %q", err, why)
	}
}

func TestAuto(t *testing.T) {
	r := &Router{Default: Auto, Plan: backend.PlanOf(backend.Sgio, backend.LinuxPR)}
	for _, tc := range []struct {
		kind    device.Kind
		want    backend.Name
		withEmu backend.Name
		withMP  backend.Name
	}{
		{device.SCSIDisk, "sgio", "sgio", "sgio"},
		{device.SCSIGeneric, "sgio", "sgio", "sgio"},
		{device.NVMeNamespace, "linuxpr", "linuxpr", "linuxpr"},
		{device.DMMultipath, "linuxpr", "linuxpr", "mpath"},
		{device.DM, "linuxpr", "linuxpr", "linuxpr"},
		{device.RegularFile, "sgio", "emulate", "sgio"},
		{device.Partition, "sgio", "sgio", "sgio"},
		{device.Other, "sgio", "sgio", "sgio"},
	} {
		info := device.Info{Kind: tc.kind, ID: "x"}
		wantRefusal := backend.NotRefused
		if tc.kind == device.RegularFile {
			wantRefusal = backend.RefusedFileWithoutEmulation
		}
		if d := r.Decide(info, ""); d.Backend != tc.want || !strings.Contains(d.Why, "auto:") || d.Refusal != wantRefusal {
			t.Errorf("%v: %+v, want %q", tc.kind, d, tc.want)
		}
		r.Plan = backend.PlanOf(backend.Sgio, backend.LinuxPR, backend.Emulate)
		if d := r.Decide(info, ""); d.Backend != tc.withEmu || d.Refusal != backend.NotRefused {
			t.Errorf("%v with emulation: %+v, want %q", tc.kind, d, tc.withEmu)
		}
		r.Plan = backend.PlanOf(backend.Sgio, backend.LinuxPR, backend.Mpath)
		if d := r.Decide(info, ""); d.Backend != tc.withMP {
			t.Errorf("%v with mpath: %+v, want %q", tc.kind, d, tc.withMP)
		}
		r.Plan = backend.PlanOf(backend.Sgio, backend.LinuxPR)
	}
}

// TestAutoRefusesFileAsQEMU: without emulation, auto refuses a disk image with
// exactly the reply qemu-pr-helper gives (its SG_IO fails with ENOTTY), and the
// log error says why and what would serve the file.
func TestAutoRefusesFileAsQEMU(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "disk.img")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sg, err := sgio.New(sgio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	cdb := scsi.PRInCDB(0, 8)
	want, _ := sg.Execute(context.Background(), &backend.Request{FD: fd, CDB: cdb})
	r := &Router{Default: Auto, Plan: backend.PlanOf(backend.Sgio, backend.LinuxPR),
		Backends: map[backend.Name]backend.Backend{backend.Sgio: sg, backend.LinuxPR: &named{}},
		Classify: func(int) (device.Info, error) { return device.Info{Kind: device.RegularFile}, nil }}
	rep, err := r.Execute(context.Background(), &backend.Request{FD: fd, CDB: cdb})
	if rep.Status != scsi.StatusCheckCondition || !bytes.Equal(rep.Sense, want.Sense) || len(rep.Data) != 0 {
		t.Fatalf("reply %#x %x, want qemu-pr-helper's %#x %x", rep.Status, rep.Sense, want.Status, want.Sense)
	}
	if err == nil || !errors.Is(err, backend.RefusedFileWithoutEmulation) || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "--backend=emulate") {
		t.Fatalf("log error %v", err)
	}
}

// TestPassthroughLooksAtNothing: the qemu-pr-helper set-up (sgio, no rules) does
// not classify the device at all: a busy guest costs no sysfs walk.
func TestPassthroughLooksAtNothing(t *testing.T) {
	sg := &named{name: "sgio"}
	r := &Router{Default: backend.Sgio, Plan: backend.PlanOf(backend.Sgio), Backends: map[backend.Name]backend.Backend{backend.Sgio: sg},
		Classify: func(int) (device.Info, error) { t.Fatal("classified"); return device.Info{}, nil },
		Path:     func(int) string { t.Fatal("path looked up"); return "" }}
	if _, err := r.Execute(context.Background(), &backend.Request{FD: 3}); err != nil || len(sg.got) != 1 {
		t.Fatalf("%v %d", err, len(sg.got))
	}
}

// TestExecuteNamesServingBackend: the router records which backend served a
// request, for the server's log line (README: Logs).
func TestExecuteNamesServingBackend(t *testing.T) {
	infos := map[int]device.Info{
		3: {Kind: device.RegularFile, ID: "file:8:1:9"},
		4: {Kind: device.SCSIDisk, ID: "naa.5000c500"},
	}
	r, _ := newRouter(t, Auto, infos, nil)
	r.Rules = nil
	for fd, want := range map[int]backend.Name{3: backend.Emulate, 4: backend.Sgio} {
		req := &backend.Request{FD: fd, CDB: scsi.PRInCDB(0, 8)}
		if _, err := r.Execute(context.Background(), req); err != nil {
			t.Fatalf("fd %d: %v", fd, err)
		}
		if req.Served != want {
			t.Errorf("fd %d served by %q, want %q", fd, req.Served, want)
		}
	}
	r.Default = backend.Sgio // the qemu-pr-helper set-up, which does not classify
	req := &backend.Request{FD: 3, CDB: scsi.PRInCDB(0, 8)}
	if _, err := r.Execute(context.Background(), req); err != nil || req.Served != backend.Sgio {
		t.Fatalf("passthrough: served by %q, err %v", req.Served, err)
	}
}

// TestBackendErrText checks that the lazily built error reads exactly as the
// fmt.Errorf chain it replaced, and unwraps to the refusal and the backend's
// error.
func TestBackendErrText(t *testing.T) {
	inner := errors.New("SG_IO on fd 7: inappropriate ioctl for device")
	info := device.Info{Kind: device.RegularFile, Major: 8, Minor: 1, ID: "file:8:1:12:3.4"}
	for _, c := range []struct {
		path    string
		refusal backend.Refusal
	}{{"", backend.NotRefused}, {"", backend.RefusedFileWithoutEmulation}, {"/dev/sdz", backend.NotRefused}} {
		want := fmt.Errorf("%s on %s: %w", backend.Sgio, describe(info, c.path), inner)
		if c.refusal != backend.NotRefused {
			want = fmt.Errorf("router: %s refused: %w: %w", describe(info, c.path), c.refusal, want)
		}
		var err error = &backendErr{backend: backend.Sgio, info: info, path: c.path, refusal: c.refusal, err: inner}
		if err.Error() != want.Error() {
			t.Errorf("text\n got %q\nwant %q", err, want)
		}
		if !errors.Is(err, inner) {
			t.Error("does not unwrap to the backend's error")
		}
		if got := errors.Is(err, c.refusal); got != (c.refusal != backend.NotRefused) {
			t.Errorf("errors.Is(refusal %v) = %v", c.refusal, got)
		}
	}
}
