package pr_test

import (
	"fmt"

	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// Run REGISTER, RESERVE and READ KEYS through the engine for two initiators,
// then show that the second one's RESERVE conflicts. A caller keeps st between
// commands (prhelper keeps its MarshalBinary bytes in a store).
func Example() {
	profile := pr.LIO()
	var st pr.State
	vm1 := pr.Nexus{Initiator: pr.ISCSIInitiator("iqn.2025-01.example:vm1", "00023d000001"), RTPI: 1}
	vm2 := pr.Nexus{Initiator: pr.ISCSIInitiator("iqn.2025-01.example:vm2", "00023d000002"), RTPI: 1}

	out := func(n pr.Nexus, sa, typ byte, key, saKey uint64) pr.Result {
		list, err := scsi.PROutParams{Key: key, SAKey: saKey}.Encode()
		if err != nil {
			panic(err)
		}
		cdb := scsi.PROutCDB(sa, 0, typ, uint32(len(list)))
		return pr.Execute(profile, &st, n, cdb[:], list)
	}
	show := func(what string, r pr.Result) {
		fmt.Printf("%-14s %s\n", what, scsi.StatusName(r.Status))
	}

	show("vm1 REGISTER", out(vm1, scsi.SARegister, 0, 0, 0xaaaa))
	show("vm2 REGISTER", out(vm2, scsi.SARegister, 0, 0, 0xbbbb))
	show("vm1 RESERVE", out(vm1, scsi.SAReserve, scsi.TypeWriteExclusive, 0xaaaa, 0))
	show("vm2 RESERVE", out(vm2, scsi.SAReserve, scsi.TypeWriteExclusive, 0xbbbb, 0))

	cdb := scsi.PRInCDB(scsi.SAReadKeys, 8192)
	r := pr.Execute(profile, &st, vm2, cdb[:], nil)
	keys, err := scsi.DecodeKeys(r.Data)
	if err != nil {
		panic(err)
	}
	fmt.Printf("READ KEYS      generation %d, keys %#x\n", keys.Generation, keys.Keys)
	fmt.Printf("holder         %s, type %d\n", st.Reservation.Holder, st.Reservation.Type)
	// Output:
	// vm1 REGISTER   GOOD
	// vm2 REGISTER   GOOD
	// vm1 RESERVE    GOOD
	// vm2 RESERVE    RESERVATION CONFLICT
	// READ KEYS      generation 2, keys [0xaaaa 0xbbbb]
	// holder         iqn.2025-01.example:vm1,i,0x00023d000001@1, type 1
}
