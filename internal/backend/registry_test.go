package backend

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParseName(t *testing.T) {
	for _, n := range Names() {
		if got, err := ParseName(string(n)); err != nil || got != n {
			t.Errorf("ParseName(%q) = %q, %v", n, got, err)
		}
	}
	_, err := ParseName("scsi")
	if err == nil || err.Error() != `unknown backend "scsi" (one of: auto, sgio, linuxpr, mpath, emulate, vinit)` {
		t.Errorf("ParseName(scsi): %v", err)
	}
}

// TestPlan: the backends a configuration may route to and the capabilities
// the daemon keeps for them, for the set-ups the daemon's tests and the lab
// run (qemu-pr-helper's SG_IO-only, auto with and without --db, one backend,
// a default with rules).
func TestPlan(t *testing.T) {
	rawio := []Capability{CapSysRawio}
	both := []Capability{CapSysRawio, CapSysAdmin} // 17, 21: ascending
	none := []Capability(nil)
	for _, tc := range []struct {
		def   Name
		rules []Name
		emu   bool
		want  []Name
		caps  []Capability
	}{
		{Sgio, nil, false, []Name{Sgio}, rawio},
		{Auto, nil, false, []Name{Sgio, LinuxPR, Mpath}, both},
		{Auto, nil, true, []Name{Sgio, LinuxPR, Mpath, Emulate}, both},
		{LinuxPR, nil, false, []Name{LinuxPR}, both},
		{Mpath, nil, false, []Name{Mpath}, rawio},
		{Emulate, nil, true, []Name{Emulate}, none},
		{Emulate, []Name{"", Sgio}, true, []Name{Sgio, Emulate}, rawio},
		{Sgio, []Name{Emulate, Emulate, ""}, false, []Name{Sgio, Emulate}, rawio},
		{Emulate, []Name{Auto}, false, []Name{Sgio, LinuxPR, Mpath, Emulate}, both},
		{Vinit, nil, false, []Name{Sgio, Mpath, Emulate, Vinit}, rawio},
		{Sgio, []Name{Vinit}, true, []Name{Sgio, Mpath, Emulate, Vinit}, rawio},
		{Auto, nil, true, []Name{Sgio, LinuxPR, Mpath, Emulate}, both},
	} {
		p := NewPlan(tc.def, tc.rules, tc.emu)
		caps := p.Capabilities()
		if !slices.Equal(p.Names(), tc.want) || !slices.Equal(caps, tc.caps) {
			t.Errorf("NewPlan(%s, %v, %v) = %v %v, want %v %v", tc.def, tc.rules, tc.emu, p.Names(), caps, tc.want, tc.caps)
		}
		for _, n := range Names() {
			if p.Has(n) != slices.Contains(tc.want, n) {
				t.Errorf("NewPlan(%s, %v, %v).Has(%s) = %v", tc.def, tc.rules, tc.emu, n, p.Has(n))
			}
		}
	}
	if (Plan{}).Has(Sgio) || len((Plan{}).Capabilities()) != 0 {
		t.Error("the zero plan holds something")
	}
}

func TestRefusal(t *testing.T) {
	err := fmt.Errorf("router: file refused: %w: %w", RefusedFileWithoutEmulation, errors.New("SG_IO: ENOTTY"))
	if !errors.Is(err, RefusedFileWithoutEmulation) || errors.Is(err, NotRefused) {
		t.Errorf("errors.Is on %v", err)
	}
	if s := RefusedFileWithoutEmulation.Error(); !strings.HasPrefix(s, "auto: refused: ") || !strings.Contains(s, "--backend=emulate") {
		t.Errorf("refusal text %q", s)
	}
}
