package builder

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/kernel/device"
	"github.com/prhelper/prhelper/scsi"
)

// TestBuild: every backend of the plan is built under its own name, and
// nothing else; a backend that cannot be built fails the whole build.
func TestBuild(t *testing.T) {
	devices := device.NewCache(device.Sysfs{}, time.Second, nil, "")
	env := Env{Devices: devices, DB: filepath.Join(t.TempDir(), "pr.db"), Host: "host-a"}
	for _, p := range []backend.Plan{
		backend.NewPlan(backend.Auto, nil, true),
		backend.NewPlan(backend.Sgio, nil, false),
		backend.NewPlan(backend.Emulate, nil, true),
		backend.NewPlan(backend.Vinit, nil, false),
		{},
	} {
		s, err := Build(p, env)
		if err != nil {
			t.Fatalf("%v: %v", p.Names(), err)
		}
		var got []backend.Name
		for n, b := range s.Backends {
			if b.Name() != string(n) {
				t.Errorf("%s built as %q", n, b.Name())
			}
			got = append(got, n)
		}
		if want := p.Names(); len(got) != len(want) {
			t.Errorf("built %v, want %v", got, want)
		}
		for _, n := range p.Names() {
			if s.Backends[n] == nil {
				t.Errorf("plan %v: %s not built", p.Names(), n)
			}
		}
		s.Close()
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := Env{Devices: devices, DB: filepath.Join(notDir, "pr.db")}
	if _, err := Build(backend.NewPlan(backend.Auto, nil, true), bad); err == nil || !strings.Contains(err.Error(), "emulation state") {
		t.Errorf("emulation state under a regular file: %v", err)
	}
	// vinit's backend below is chosen by the kind of descriptor: a file has none.
	s, err := Build(backend.NewPlan(backend.Vinit, nil, false), env)
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.CreateTemp(t.TempDir(), "img")
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	req := &backend.Request{CDB: scsi.PRInCDB(scsi.SAReadKeys, 64), FD: int(img.Fd()), Initiator: "iqn.2026-01.test:vm", LU: "lu"}
	if res, err := s.Backends[backend.Vinit].Execute(context.Background(), req); res.Status != scsi.StatusCheckCondition ||
		err == nil || !strings.Contains(err.Error(), "vinit serves SCSI disks and multipath maps, not a file") {
		t.Errorf("vinit on a file: %s %v", res, err)
	}
	s.Close()
	noHost := Env{Devices: devices, DB: filepath.Join(t.TempDir(), "pr.db")}
	if _, err := Build(backend.NewPlan(backend.Vinit, nil, false), noHost); err == nil || !strings.Contains(err.Error(), "host id") {
		t.Errorf("vinit without a host id: %v", err)
	}
	if _, err := Build(backend.NewPlan(backend.Sgio, nil, false), Env{}); err == nil {
		t.Error("built without a device classifier")
	}
}
