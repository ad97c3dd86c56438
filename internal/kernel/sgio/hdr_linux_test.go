package sgio

import (
	"testing"
	"unsafe"
)

// TestHdrLayout checks Hdr against struct sg_io_hdr of include/scsi/sg.h as laid
// out on LP64 Linux (amd64, arm64): 88 bytes, offsets per docs/pr-helper-protocol.md §4.8.
func TestHdrLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("offsets below are for 64-bit Linux")
	}
	var h Hdr
	if got := unsafe.Sizeof(h); got != 88 {
		t.Errorf("sizeof(Hdr) = %d, want 88", got)
	}
	for _, f := range []struct {
		name      string
		off, want uintptr
		size, sz  uintptr
	}{
		{"interface_id", unsafe.Offsetof(h.InterfaceID), 0, unsafe.Sizeof(h.InterfaceID), 4},
		{"dxfer_direction", unsafe.Offsetof(h.DxferDirection), 4, unsafe.Sizeof(h.DxferDirection), 4},
		{"cmd_len", unsafe.Offsetof(h.CmdLen), 8, unsafe.Sizeof(h.CmdLen), 1},
		{"mx_sb_len", unsafe.Offsetof(h.MxSbLen), 9, unsafe.Sizeof(h.MxSbLen), 1},
		{"iovec_count", unsafe.Offsetof(h.IovecCount), 10, unsafe.Sizeof(h.IovecCount), 2},
		{"dxfer_len", unsafe.Offsetof(h.DxferLen), 12, unsafe.Sizeof(h.DxferLen), 4},
		{"dxferp", unsafe.Offsetof(h.Dxferp), 16, unsafe.Sizeof(h.Dxferp), 8},
		{"cmdp", unsafe.Offsetof(h.Cmdp), 24, unsafe.Sizeof(h.Cmdp), 8},
		{"sbp", unsafe.Offsetof(h.Sbp), 32, unsafe.Sizeof(h.Sbp), 8},
		{"timeout", unsafe.Offsetof(h.Timeout), 40, unsafe.Sizeof(h.Timeout), 4},
		{"flags", unsafe.Offsetof(h.Flags), 44, unsafe.Sizeof(h.Flags), 4},
		{"pack_id", unsafe.Offsetof(h.PackID), 48, unsafe.Sizeof(h.PackID), 4},
		{"usr_ptr", unsafe.Offsetof(h.UsrPtr), 56, unsafe.Sizeof(h.UsrPtr), 8},
		{"status", unsafe.Offsetof(h.Status), 64, unsafe.Sizeof(h.Status), 1},
		{"masked_status", unsafe.Offsetof(h.MaskedStatus), 65, unsafe.Sizeof(h.MaskedStatus), 1},
		{"msg_status", unsafe.Offsetof(h.MsgStatus), 66, unsafe.Sizeof(h.MsgStatus), 1},
		{"sb_len_wr", unsafe.Offsetof(h.SbLenWr), 67, unsafe.Sizeof(h.SbLenWr), 1},
		{"host_status", unsafe.Offsetof(h.HostStatus), 68, unsafe.Sizeof(h.HostStatus), 2},
		{"driver_status", unsafe.Offsetof(h.DriverStatus), 70, unsafe.Sizeof(h.DriverStatus), 2},
		{"resid", unsafe.Offsetof(h.Resid), 72, unsafe.Sizeof(h.Resid), 4},
		{"duration", unsafe.Offsetof(h.Duration), 76, unsafe.Sizeof(h.Duration), 4},
		{"info", unsafe.Offsetof(h.Info), 80, unsafe.Sizeof(h.Info), 4},
	} {
		if f.off != f.want {
			t.Errorf("offsetof(%s) = %d, want %d", f.name, f.off, f.want)
		}
		if f.size != f.sz {
			t.Errorf("sizeof(%s) = %d, want %d", f.name, f.size, f.sz)
		}
	}
}

// TestConstants pins the ioctl number and SG_DXFER_* values of include/scsi/sg.h.
func TestConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"SG_IO", SG_IO, 0x2285},
		{"SG_DXFER_NONE", int64(DirNone), -1},
		{"SG_DXFER_TO_DEV", int64(DirToDevice), -2},
		{"SG_DXFER_FROM_DEV", int64(DirFromDevice), -3},
		{"interface_id", InterfaceID, 'S'},
		{"mx_sb_len", SenseLen, 96},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}
