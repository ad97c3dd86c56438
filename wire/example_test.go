package wire_test

import (
	"fmt"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// Encode a helper's answer to READ KEYS: the 104-byte header (status, size,
// 96 sense bytes) and the data.
func ExampleEncodeReply() {
	cdb := scsi.PRInCDB(scsi.SAReadKeys, 0x2000)
	rep := &wire.Reply{Status: scsi.StatusGood, Data: []byte{
		0, 0, 0, 5, 0, 0, 0, 8, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
	}}
	b := wire.EncodeReply(cdb[:], rep)
	fmt.Printf("%d bytes\n", len(b))
	fmt.Printf("header % x\n", b[:8])
	fmt.Printf("data   % x\n", b[wire.HeaderSize:])

	status, size, _, err := wire.DecodeReplyHeader(b[:wire.HeaderSize])
	fmt.Println(scsi.StatusName(byte(status)), size, err)
	// Output:
	// 120 bytes
	// header 00 00 00 00 00 00 00 10
	// data   00 00 00 05 00 00 00 08 11 22 33 44 55 66 77 88
	// GOOD 16 <nil>
}

// EncodeReply keeps the rules QEMU's client asserts on whatever the caller
// hands it: no data for PR OUT or for a status other than GOOD, and never more
// than the allocation length.
func ExampleEncodeReply_rules() {
	data := make([]byte, 64)

	short := scsi.PRInCDB(scsi.SAReadKeys, 12)
	fmt.Println(len(wire.EncodeReply(short[:], &wire.Reply{Status: scsi.StatusGood, Data: data})) - wire.HeaderSize)

	out := scsi.PROutCDB(scsi.SARegister, 0, 0, 24)
	fmt.Println(len(wire.EncodeReply(out[:], &wire.Reply{Status: scsi.StatusGood, Data: data})) - wire.HeaderSize)

	var conflict wire.Reply
	conflict.Status = scsi.StatusReservationConflict
	conflict.Data = data
	in := scsi.PRInCDB(scsi.SAReadKeys, 8192)
	fmt.Println(len(wire.EncodeReply(in[:], &conflict)) - wire.HeaderSize)
	// Output:
	// 12
	// 0
	// 0
}
