package dm

import (
	"encoding/binary"
	"testing"
)

// This file plays the kernel's side of DM_TABLE_STATUS byte by byte, from
// drivers/md/dm-ioctl.c (ctl_ioctl, table_status, retrieve_status) and
// include/uapi/linux/dm-ioctl.h, with literal offsets rather than the
// package's structs, so that a wrong struct shows up as a failing test.

// fakeTarget is one target of a fake dm table.
type fakeTarget struct {
	start, length uint64
	typ, params   string
}

// Reply constants of the fake kernel (a 6.1 kernel reports 4.47.0).
const (
	kernelMinor       = 47
	flagActivePresent = 1 << 5
)

// retrieveStatus turns the request in param (a kernel-side copy of the user
// buffer) into what table_status leaves there for targets, and returns how
// many bytes ctl_ioctl copies back to the user (param->data_size).
func retrieveStatus(param []byte, targets []fakeTarget) int {
	ne := binary.NativeEndian
	inSize := int(ne.Uint32(param[12:]))
	flags := ne.Uint32(param[28:]) &^ (1 << 8) // validate_params clears BUFFER_FULL
	// __dev_status: open count, event number, name and uuid of the map.
	ne.PutUint32(param[24:], 1)
	ne.PutUint32(param[32:], 7)
	flags |= flagActivePresent
	copy(param[48:], "mpatha\x00")
	copy(param[176:], "mpath-36001405aa0bb1cc2dd3ee4ff5a6b7c8d\x00")
	// get_result_buffer
	ne.PutUint32(param[16:], 312)
	out := param[312:inSize]
	n, used := 0, 0
	for _, tg := range targets {
		if len(out)-n <= 40 {
			flags |= 1 << 8
			break
		}
		spec := out[n:]
		ne.PutUint64(spec[0:], tg.start)
		ne.PutUint64(spec[8:], tg.length)
		ne.PutUint32(spec[16:], 0)
		clear(spec[24:40])
		copy(spec[24:40], tg.typ)
		n += 40
		remaining := len(out) - n
		// DMEMIT is scnprintf: at most remaining-1 characters and a NUL.
		s := tg.params
		if len(s) > remaining-1 {
			s = s[:remaining-1]
		}
		copy(out[n:], s)
		out[n+len(s)] = 0
		l := len(s) + 1
		if l == remaining {
			flags |= 1 << 8
			break
		}
		n += l
		used = 312 + n
		n = (n + 7) &^ 7 // align_ptr
		if n > len(out) {
			flags |= 1 << 8
			break
		}
		ne.PutUint32(spec[20:], uint32(n)) // from the first spec, not this one
	}
	size := 312 // ctl_ioctl: param->data_size = sizeof(*param)
	if used != 0 {
		size = used
	}
	ne.PutUint32(param[12:], uint32(size))
	ne.PutUint32(param[20:], uint32(len(targets)))
	ne.PutUint32(param[28:], flags)
	// check_version writes the kernel's version.
	ne.PutUint32(param[0:], 4)
	ne.PutUint32(param[4:], kernelMinor)
	ne.PutUint32(param[8:], 0)
	return size
}

// kernelReply builds the user buffer of size bytes after a DM_TABLE_STATUS
// for targets: a request laid out by hand, then the kernel's copy-back.
func kernelReply(tb testing.TB, size int, flags uint32, targets []fakeTarget) []byte {
	tb.Helper()
	ne := binary.NativeEndian
	user := make([]byte, size)
	ne.PutUint32(user[0:], 4)
	ne.PutUint32(user[12:], uint32(size))
	ne.PutUint32(user[16:], 312)
	ne.PutUint32(user[28:], flags)
	k := append([]byte(nil), user...)
	n := retrieveStatus(k, targets)
	copy(user, k[:n])
	return user
}
