package dm

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDevEncode checks Dev.Encode against new_encode_dev of
// include/linux/kdev_t.h, written out: (minor & 0xff) | (major << 8) |
// ((minor & ~0xff) << 12).
func TestDevEncode(t *testing.T) {
	for _, c := range []struct {
		d    Dev
		want uint64
	}{
		{Dev{8, 16}, 0x810},
		{Dev{253, 0}, 0xfd00},
		{Dev{8, 256}, 0x100800},
		{Dev{259, 1048575}, 0xfff103ff},
		{Dev{4095, 255}, 0xfffff},
		{Dev{0, 0}, 0},
	} {
		if got := c.d.Encode(); got != c.want {
			t.Errorf("%s.Encode() = %#x, want %#x", c.d, got, c.want)
		}
	}
}

// TestDevFromRdev checks that a dev_t as Go's stat returns it (unix.Mkdev,
// glibc's encoding) gives back major and minor, and that for every real
// device number the two encodings agree, so st_rdev could be passed as is.
func TestDevFromRdev(t *testing.T) {
	for _, d := range []Dev{{8, 16}, {253, 3}, {259, 1048575}, {4095, 0}, {65, 300}, {0, 0}} {
		rdev := unix.Mkdev(d.Major, d.Minor)
		if got := DevFromRdev(rdev); got != d {
			t.Errorf("DevFromRdev(Mkdev(%s)) = %s", d, got)
		}
		if got := d.Encode(); got != rdev {
			t.Errorf("%s: kernel encoding %#x, stat's %#x", d, got, rdev)
		}
		if unix.Major(rdev) != d.Major || unix.Minor(rdev) != d.Minor {
			t.Errorf("%s: unix.Major/Minor disagree", d)
		}
	}
	// Beyond the kernel's 12-bit majors the encodings differ; DevFromRdev
	// still decodes glibc's form.
	big := Dev{0x12345, 0x1234567}
	if got := DevFromRdev(unix.Mkdev(big.Major, big.Minor)); got != big {
		t.Errorf("DevFromRdev(Mkdev(%s)) = %s", big, got)
	}
}

func TestParseDev(t *testing.T) {
	for s, want := range map[string]Dev{"8:16": {8, 16}, "259:0": {259, 0}, "0:0": {0, 0}, "4294967295:4294967295": {1<<32 - 1, 1<<32 - 1}} {
		got, err := ParseDev(s)
		if err != nil || got != want {
			t.Errorf("ParseDev(%q) = %s, %v, want %s", s, got, err, want)
		}
		if err == nil && got.String() != s {
			t.Errorf("%q formats as %q", s, got)
		}
	}
	for _, s := range []string{"", "8", "8:", ":16", "8:16:1", "a:b", "-1:0", "8 :16", "4294967296:0", "sda"} {
		if d, err := ParseDev(s); err == nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseDev(%q) = %s, %v, want ErrMalformed", s, d, err)
		}
	}
}

func FuzzParseDev(f *testing.F) {
	for _, s := range []string{"8:16", "259:1048575", "8:", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDev(s)
		if err != nil {
			return
		}
		if again, err := ParseDev(d.String()); err != nil || again != d {
			t.Fatalf("%q → %s → %s, %v", s, d, again, err)
		}
	})
}
