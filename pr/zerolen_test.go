package pr

import (
	"fmt"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

// TestZeroLengthPROutUnderWE is issue 12 item 9 (§14 D26): a PR OUT with
// PARAMETER LIST LENGTH 0 from an unregistered nexus while another holds a
// Write Exclusive family reservation carries no data-out, so LIO's reservation
// check lets it through by data direction and its handler answers 05/1A/00;
// the lab's differential saw that for RELEASE and PREEMPT where the emulation
// answered RESERVATION CONFLICT. SPC4() keeps the conflict; the Exclusive
// Access types, a registered nexus and a non-empty list are not affected.
func TestZeroLengthPROutUnderWE(t *testing.T) {
	sas := []byte{scsi.SAReserve, scsi.SARelease, scsi.SAClear, scsi.SAPreempt, scsi.SAPreemptAndAbort, scsi.SARegisterAndMove}
	for _, typ := range []byte{1, 3, 5, 6, 7, 8} {
		for _, sa := range sas {
			for _, pll := range []uint32{0, 24} {
				for _, p := range []Profile{LIO(), SPC4()} {
					name := fmt.Sprintf("%s/type%d/sa%d/pll%d", p.Name, typ, sa, pll)
					t.Run(name, func(t *testing.T) {
						var st State
						reg := scsi.PROutCDB(scsi.SARegister, 0, 0, 24)
						res := scsi.PROutCDB(scsi.SAReserve, 0, typ, 24)
						Execute(p, &st, nx1, reg[:], registerParam(0, k1, 0))
						if r := Execute(p, &st, nx1, res[:], registerParam(k1, 0, 0)); r.Status != scsi.StatusGood {
							t.Fatalf("setup RESERVE: %s", describe(r))
						}
						cdb := scsi.PROutCDB(sa, 0, typ, pll)
						var param []byte
						if pll > 0 {
							param = registerParam(k2, k1, 0)
						}
						got := describe(Execute(p, &st, nx2, cdb[:], param))
						want := "RC"
						we := typ == 1 || typ == 5 || typ == 7
						if p.Name == "lio" && pll == 0 && we {
							want = "CC 5/1a/00"
						}
						if got != want {
							t.Fatalf("unregistered %s: got %s, want %s", name, got, want)
						}
					})
				}
			}
		}
	}
}
