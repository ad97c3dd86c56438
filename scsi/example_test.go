package scsi_test

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/scsi"
)

// Build a PERSISTENT RESERVE OUT REGISTER: the CDB and its 24-byte parameter
// list, then read them back as a target would.
func Example_registerCommand() {
	params := scsi.PROutParams{SAKey: 0x1122334455667788}
	list, err := params.Encode()
	if err != nil {
		panic(err)
	}
	cdb := scsi.PROutCDB(scsi.SARegister, 0, 0, uint32(len(list)))
	fmt.Printf("%s\n", scsi.CommandName(cdb[:]))
	fmt.Printf("CDB % x\n", cdb[:10])
	fmt.Printf("list % x\n", list)

	got, err := scsi.DecodePROutParams(list)
	if err != nil {
		panic(err)
	}
	fmt.Printf("framed length %d, SARK %#x\n", scsi.TransferLength(cdb[:]), got.SAKey)
	// Output:
	// PR OUT REGISTER
	// CDB 5f 00 00 00 00 00 00 00 18 00
	// list 00 00 00 00 00 00 00 00 11 22 33 44 55 66 77 88 00 00 00 00 00 00 00 00
	// framed length 24, SARK 0x1122334455667788
}

// Decode the READ KEYS data a device returned.
func ExampleDecodeKeys() {
	data := []byte{
		0, 0, 0, 5, // PRGENERATION
		0, 0, 0, 16, // ADDITIONAL LENGTH: two keys
		0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
		0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
	}
	keys, err := scsi.DecodeKeys(data)
	if err != nil {
		panic(err)
	}
	fmt.Printf("generation %d, %d keys: %#x\n", keys.Generation, len(keys.Keys), keys.Keys)
	// Output:
	// generation 5, 2 keys: [0x1111111111111111 0x2222222222222222]
}

// Turn a failed SG_IO into the status and sense QEMU would report, encode the
// sense, and parse it back.
func ExampleFromErrno() {
	status, sense := scsi.FromErrno(unix.EINVAL)
	fixed := sense.Fixed()
	fmt.Println(scsi.StatusName(status), sense)
	fmt.Printf("% x\n", fixed)
	parsed, ok := scsi.ParseSense(fixed)
	fmt.Println(parsed == sense, ok)
	// Output:
	// CHECK CONDITION 5/24/00
	// 70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 00 00 00
	// true true
}
