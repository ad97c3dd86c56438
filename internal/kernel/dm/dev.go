package dm

import (
	"fmt"
	"strconv"
	"strings"
)

// Dev is a device number split into major and minor, as the kernel prints it
// in dm tables ("8:16", format_dev_t).
type Dev struct {
	Major, Minor uint32
}

// String formats d as the kernel does in dm tables: "major:minor".
func (d Dev) String() string {
	return strconv.FormatUint(uint64(d.Major), 10) + ":" + strconv.FormatUint(uint64(d.Minor), 10)
}

// Encode returns d in the form struct dm_ioctl's dev field takes: the kernel
// decodes it with huge_decode_dev, which is new_decode_dev of the low 32 bits
// (include/linux/kdev_t.h), so it is new_encode_dev: minor bits 0-7 in bits
// 0-7, the major in bits 8-19, minor bits 8-19 in bits 20-31. Majors are 12
// bits and minors 20 bits in the kernel (MINORBITS); larger values cannot name
// a device and are not representable.
func (d Dev) Encode() uint64 {
	return uint64(d.Minor&0xff) | uint64(d.Major&0xfff)<<8 | uint64(d.Minor&^0xff&0xfffff)<<12
}

// DevFromRdev splits a dev_t as stat(2) returns it (unix.Stat_t.Rdev) into
// major and minor, with glibc's gnu_dev_major/gnu_dev_minor encoding (the
// same as unix.Major/unix.Minor): major bits 0-11 at 8-19 and 12-31 at 44-63,
// minor bits 0-7 at 0-7 and 8-31 at 20-43. For every real device number this
// equals the kernel's new_encode_dev, but converting through Dev keeps the
// two encodings from being confused.
func DevFromRdev(rdev uint64) Dev {
	return Dev{
		Major: uint32((rdev>>8)&0xfff | (rdev>>32)&^0xfff),
		Minor: uint32(rdev&0xff | (rdev>>12)&^0xff),
	}
}

// ParseDev parses "major:minor" in decimal, the form of path devices in
// multipath table and status lines.
func ParseDev(s string) (Dev, error) {
	maj, min, ok := strings.Cut(s, ":")
	if !ok {
		return Dev{}, fmt.Errorf("%w: device %q is not major:minor", ErrMalformed, s)
	}
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return Dev{}, fmt.Errorf("%w: device %q is not major:minor", ErrMalformed, s)
	}
	return Dev{Major: uint32(ma), Minor: uint32(mi)}, nil
}
