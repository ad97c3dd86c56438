package blkpr

import (
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

type field struct {
	name           string
	off, wantOff   uintptr
	size, wantSize uintptr
}

func checkFields(t *testing.T, what string, size, wantSize uintptr, fields []field) {
	t.Helper()
	if size != wantSize {
		t.Errorf("sizeof(%s) = %d, want %d", what, size, wantSize)
	}
	for _, f := range fields {
		if f.off != f.wantOff {
			t.Errorf("offsetof(%s.%s) = %d, want %d", what, f.name, f.off, f.wantOff)
		}
		if f.size != f.wantSize {
			t.Errorf("sizeof(%s.%s) = %d, want %d", what, f.name, f.size, f.wantSize)
		}
	}
}

// TestStructLayout checks every struct against include/uapi/linux/pr.h and
// include/uapi/linux/nvme_ioctl.h (docs/linux-pr.md §1). The layouts have only
// naturally aligned fixed-size fields, so they are the same on every
// architecture.
func TestStructLayout(t *testing.T) {
	var reg Registration
	checkFields(t, "pr_registration", unsafe.Sizeof(reg), 24, []field{
		{"old_key", unsafe.Offsetof(reg.OldKey), 0, unsafe.Sizeof(reg.OldKey), 8},
		{"new_key", unsafe.Offsetof(reg.NewKey), 8, unsafe.Sizeof(reg.NewKey), 8},
		{"flags", unsafe.Offsetof(reg.Flags), 16, unsafe.Sizeof(reg.Flags), 4},
	})
	var res Reservation
	checkFields(t, "pr_reservation", unsafe.Sizeof(res), 16, []field{
		{"key", unsafe.Offsetof(res.Key), 0, unsafe.Sizeof(res.Key), 8},
		{"type", unsafe.Offsetof(res.Type), 8, unsafe.Sizeof(res.Type), 4},
		{"flags", unsafe.Offsetof(res.Flags), 12, unsafe.Sizeof(res.Flags), 4},
	})
	var pre Preempt
	checkFields(t, "pr_preempt", unsafe.Sizeof(pre), 24, []field{
		{"old_key", unsafe.Offsetof(pre.OldKey), 0, unsafe.Sizeof(pre.OldKey), 8},
		{"new_key", unsafe.Offsetof(pre.NewKey), 8, unsafe.Sizeof(pre.NewKey), 8},
		{"type", unsafe.Offsetof(pre.Type), 16, unsafe.Sizeof(pre.Type), 4},
		{"flags", unsafe.Offsetof(pre.Flags), 20, unsafe.Sizeof(pre.Flags), 4},
	})
	var clr Clear
	checkFields(t, "pr_clear", unsafe.Sizeof(clr), 16, []field{
		{"key", unsafe.Offsetof(clr.Key), 0, unsafe.Sizeof(clr.Key), 8},
		{"flags", unsafe.Offsetof(clr.Flags), 8, unsafe.Sizeof(clr.Flags), 4},
	})
	var rk ReadKeys
	checkFields(t, "pr_read_keys", unsafe.Sizeof(rk), 16, []field{
		{"generation", unsafe.Offsetof(rk.Generation), 0, unsafe.Sizeof(rk.Generation), 4},
		{"num_keys", unsafe.Offsetof(rk.NumKeys), 4, unsafe.Sizeof(rk.NumKeys), 4},
		{"keys_ptr", unsafe.Offsetof(rk.KeysPtr), 8, unsafe.Sizeof(rk.KeysPtr), 8},
	})
	var rr ReadReservation
	checkFields(t, "pr_read_reservation", unsafe.Sizeof(rr), 16, []field{
		{"key", unsafe.Offsetof(rr.Key), 0, unsafe.Sizeof(rr.Key), 8},
		{"generation", unsafe.Offsetof(rr.Generation), 8, unsafe.Sizeof(rr.Generation), 4},
		{"type", unsafe.Offsetof(rr.Type), 12, unsafe.Sizeof(rr.Type), 4},
	})
	var c NVMePassthru
	checkFields(t, "nvme_passthru_cmd", unsafe.Sizeof(c), 72, []field{
		{"opcode", unsafe.Offsetof(c.Opcode), 0, unsafe.Sizeof(c.Opcode), 1},
		{"flags", unsafe.Offsetof(c.Flags), 1, unsafe.Sizeof(c.Flags), 1},
		{"rsvd1", unsafe.Offsetof(c.Rsvd1), 2, unsafe.Sizeof(c.Rsvd1), 2},
		{"nsid", unsafe.Offsetof(c.NSID), 4, unsafe.Sizeof(c.NSID), 4},
		{"cdw2", unsafe.Offsetof(c.CDW2), 8, unsafe.Sizeof(c.CDW2), 4},
		{"cdw3", unsafe.Offsetof(c.CDW3), 12, unsafe.Sizeof(c.CDW3), 4},
		{"metadata", unsafe.Offsetof(c.Metadata), 16, unsafe.Sizeof(c.Metadata), 8},
		{"addr", unsafe.Offsetof(c.Addr), 24, unsafe.Sizeof(c.Addr), 8},
		{"metadata_len", unsafe.Offsetof(c.MetadataLen), 32, unsafe.Sizeof(c.MetadataLen), 4},
		{"data_len", unsafe.Offsetof(c.DataLen), 36, unsafe.Sizeof(c.DataLen), 4},
		{"cdw10", unsafe.Offsetof(c.CDW10), 40, unsafe.Sizeof(c.CDW10), 4},
		{"cdw11", unsafe.Offsetof(c.CDW11), 44, unsafe.Sizeof(c.CDW11), 4},
		{"cdw12", unsafe.Offsetof(c.CDW12), 48, unsafe.Sizeof(c.CDW12), 4},
		{"cdw13", unsafe.Offsetof(c.CDW13), 52, unsafe.Sizeof(c.CDW13), 4},
		{"cdw14", unsafe.Offsetof(c.CDW14), 56, unsafe.Sizeof(c.CDW14), 4},
		{"cdw15", unsafe.Offsetof(c.CDW15), 60, unsafe.Sizeof(c.CDW15), 4},
		{"timeout_ms", unsafe.Offsetof(c.TimeoutMs), 64, unsafe.Sizeof(c.TimeoutMs), 4},
		{"result", unsafe.Offsetof(c.Result), 68, unsafe.Sizeof(c.Result), 4},
	})
}

// TestIoctlNumbers checks the request numbers against the values docs/linux-pr.md
// §1 lists for x86/arm64, and NVME_IOCTL_* against nvme-cli's.
func TestIoctlNumbers(t *testing.T) {
	switch runtime.GOARCH {
	case "amd64", "arm64", "386", "arm", "riscv64", "s390x", "loong64":
	default:
		t.Skipf("reference values are for the asm-generic encoding, not %s", runtime.GOARCH)
	}
	for _, c := range []struct {
		name      string
		got, want uint
	}{
		{"IOC_PR_REGISTER", IOC_PR_REGISTER, 0x401870c8},
		{"IOC_PR_RESERVE", IOC_PR_RESERVE, 0x401070c9},
		{"IOC_PR_RELEASE", IOC_PR_RELEASE, 0x401070ca},
		{"IOC_PR_PREEMPT", IOC_PR_PREEMPT, 0x401870cb},
		{"IOC_PR_PREEMPT_ABORT", IOC_PR_PREEMPT_ABORT, 0x401870cc},
		{"IOC_PR_CLEAR", IOC_PR_CLEAR, 0x401070cd},
		{"IOC_PR_READ_KEYS", IOC_PR_READ_KEYS, 0xc01070ce},
		{"IOC_PR_READ_RESERVATION", IOC_PR_READ_RESERVATION, 0x801070cf},
		{"NVME_IOCTL_ID", NVME_IOCTL_ID, 0x4e40},
		{"NVME_IOCTL_IO_CMD", NVME_IOCTL_IO_CMD, 0xc0484e43},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

// TestIocEncoding checks this architecture's _IOC constants against request
// numbers x/sys/unix generated from the kernel headers for it: BLKGETSIZE64 is
// _IOR(0x12, 114, size_t), BLKFLSBUF _IO(0x12, 97), FS_IOC_SETFLAGS
// _IOW('f', 2, long).
func TestIocEncoding(t *testing.T) {
	sz := unsafe.Sizeof(uintptr(0))
	for _, c := range []struct {
		name      string
		got, want uint
	}{
		{"BLKGETSIZE64", iocRead<<iocDirShift | uint(sz)<<16 | 0x12<<8 | 114, unix.BLKGETSIZE64},
		{"BLKFLSBUF", iocNone<<iocDirShift | 0x12<<8 | 97, unix.BLKFLSBUF},
		{"FS_IOC_SETFLAGS", iocWrite<<iocDirShift | uint(sz)<<16 | 'f'<<8 | 2, unix.FS_IOC_SETFLAGS},
	} {
		if c.got != c.want {
			t.Errorf("%s: encoded %#x, unix has %#x", c.name, c.got, c.want)
		}
	}
	for _, c := range []struct {
		req  uint
		size uintptr
	}{
		{IOC_PR_REGISTER, 24}, {IOC_PR_RESERVE, 16}, {IOC_PR_CLEAR, 16},
		{IOC_PR_READ_KEYS, 16}, {IOC_PR_READ_RESERVATION, 16}, {NVME_IOCTL_IO_CMD, 72}, {NVME_IOCTL_ID, 0},
	} {
		if got := ArgSize(c.req); got != c.size {
			t.Errorf("ArgSize(%#x) = %d, want %d", c.req, got, c.size)
		}
	}
}

// TestTypeMapping checks enum pr_type ↔ SCSI type (block_pr_type_to_scsi) and
// that everything else is refused both ways.
func TestTypeMapping(t *testing.T) {
	want := map[uint32]byte{1: 0x1, 2: 0x3, 3: 0x5, 4: 0x6, 5: 0x7, 6: 0x8}
	for p := uint32(0); p < 300; p++ {
		s, ok := ToSCSIType(p)
		w, wok := want[p]
		if ok != wok || s != w {
			t.Errorf("ToSCSIType(%d) = %#x, %v; want %#x, %v", p, s, ok, w, wok)
		}
	}
	for s := 0; s < 256; s++ {
		p, ok := FromSCSIType(byte(s))
		var wp uint32
		for k, v := range want {
			if int(v) == s {
				wp = k
			}
		}
		if ok != (wp != 0) || p != wp {
			t.Errorf("FromSCSIType(%#x) = %d, %v; want %d", s, p, ok, wp)
		}
	}
}
