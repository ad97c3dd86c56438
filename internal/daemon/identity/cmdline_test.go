package identity

import (
	"errors"
	"strings"
	"testing"
)

// argv joins arguments the way /proc/<pid>/cmdline holds them.
func argv(args ...string) []byte { return []byte(strings.Join(args, "\x00") + "\x00") }

const testUUID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"

// libvirtLine is the head of a QEMU command line as libvirt 9 writes it.
func libvirtLine(extra ...string) []byte {
	args := []string{"/usr/bin/qemu-system-x86_64",
		"-name", "guest=vm1,debug-threads=on",
		"-S",
		"-object", `{"qom-type":"secret","id":"masterKey0","format":"raw","file":"/var/lib/libvirt/qemu/domain-1-vm1/master-key.aes"}`,
		"-machine", "pc-q35-7.2,usb=off,vmport=off,dump-guest-core=off,memory-backend=pc.ram",
		"-accel", "kvm",
		"-m", "size=2097152k",
		"-uuid", testUUID,
		"-no-user-config", "-nodefaults",
		"-chardev", "socket,id=charmonitor,fd=31,server=on,wait=off",
		"-object", `{"qom-type":"pr-manager-helper","id":"pr-helper0","path":"/var/lib/libvirt/qemu/domain-1-vm1/pr-helper0.sock"}`,
		"-blockdev", `{"driver":"host_device","filename":"/dev/mapper/mpatha","pr-manager":"pr-helper0","node-name":"libvirt-1-storage"}`,
		"-device", `{"driver":"scsi-block","bus":"scsi0.0","drive":"libvirt-1-storage","id":"scsi0-0-0-0"}`,
	}
	return argv(append(args, extra...)...)
}

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name    string
		cmdline []byte
		want    VM
	}{
		{"libvirt", libvirtLine(), VM{UUID: testUUID, Name: "vm1"}},
		{"double dash", argv("qemu-system-x86_64", "--uuid", testUUID, "--name", "web"), VM{UUID: testUUID, Name: "web"}},
		{"plain -name", argv("qemu", "-name", "plain"), VM{Name: "plain"}},
		{"escaped commas", argv("qemu", "-name", "guest=a,,b,,,,c,process=qemu:a", "-uuid", testUUID), VM{UUID: testUUID, Name: "a,b,,c"}},
		{"implied name with escaped comma", argv("qemu", "-name", "x,,y,debug-threads=on"), VM{Name: "x,y"}},
		{"guest= not first", argv("qemu", "-name", "process=foo,guest=late"), VM{Name: "late"}},
		{"process only", argv("qemu", "-name", "process=foo,debug-threads=on"), VM{}},
		{"flags around", argv("qemu", "-name", "vm2,debug-threads,nofoo"), VM{Name: "vm2"}},
		{"last guest= wins", argv("qemu", "-name", "guest=a,guest=b"), VM{Name: "b"}},
		{"trailing comma", argv("qemu", "-name", "vm3,"), VM{Name: "vm3"}},
		{"empty -name", argv("qemu", "-name", ""), VM{}},
		{"last -uuid wins", argv("qemu", "-uuid", "00000000-0000-0000-0000-000000000001", "-uuid", testUUID), VM{UUID: testUUID}},
		{"-uuid= is not QEMU syntax", argv("qemu", "-uuid="+testUUID), VM{}},
		{"argv[0] is not an option", argv("-uuid", testUUID), VM{}},
		{"value consumed: -name -uuid", argv("qemu", "-name", "-uuid", "x"), VM{Name: "-uuid"}},
		{"no trailing NUL", []byte("qemu\x00-uuid\x00" + testUUID), VM{UUID: testUUID}},
		{"no uuid, no name", argv("/usr/bin/qemu-system-x86_64", "-m", "1024", "-nographic"), VM{}},
		{"sh -c with args", argv("sh", "-c", "sleep 30; :", "-uuid", testUUID), VM{UUID: testUUID}},
		{"lone dashes", argv("qemu", "-", "--", "---uuid", testUUID), VM{}},
		{"garbage bytes", []byte("\xff\xfe\x00\x01-uuid\x00\x00"), VM{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCmdline(tc.cmdline)
			if err != nil {
				t.Fatalf("ParseCmdline: %v", err)
			}
			if got != tc.want {
				t.Errorf("ParseCmdline = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseCmdlineErrors(t *testing.T) {
	tests := []struct {
		name    string
		cmdline []byte
		is      error
		msg     string
	}{
		{"empty", nil, ErrEmptyCmdline, "empty command line"},
		{"only NUL", []byte{0}, ErrEmptyCmdline, "empty command line"},
		{"-uuid last", argv("qemu", "-m", "1", "-uuid"), nil, "option -uuid at argument 3 has no value"},
		{"--name last", argv("qemu", "--name"), nil, "option --name at argument 1 has no value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCmdline(tc.cmdline)
			if err == nil || err.Error() != tc.msg {
				t.Fatalf("ParseCmdline error = %v, want %q", err, tc.msg)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
}

func TestFromCmdline(t *testing.T) {
	tests := []struct {
		name    string
		cmdline []byte
		want    Initiator
		err     string
	}{
		{"uuid preferred", libvirtLine(), Initiator{Prefix + ":vm:" + testUUID, SourceUUID}, ""},
		{"uuid lower-cased", argv("qemu", "-uuid", strings.ToUpper(testUUID)), Initiator{Prefix + ":vm:" + testUUID, SourceUUID}, ""},
		{"name", argv("qemu", "-name", "guest=Web_01,debug-threads=on"), Initiator{Prefix + ":vm-name:web:5f01", SourceName}, ""},
		{"bad uuid", argv("qemu", "-uuid", "not-a-uuid", "-name", "x"), Initiator{}, `invalid VM uuid "not-a-uuid"`},
		{"uuid with wrong dashes", argv("qemu", "-uuid", "1b4e28ba2-fa1-11d2-883f-0016d3cca427"), Initiator{}, "invalid VM uuid"},
		{"nothing", argv("qemu", "-m", "1024"), Initiator{}, ErrNoVMIdentity.Error()},
		{"empty", nil, Initiator{}, "empty command line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromCmdline(tc.cmdline)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("FromCmdline = %v, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("FromCmdline = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestParseCmdlineHuge: a 3 MiB line with the identity at the end.
func TestParseCmdlineHuge(t *testing.T) {
	args := []string{"qemu"}
	for i := 0; i < 100000; i++ {
		args = append(args, "-device", "virtio-blk,drive=d,id=disk"+strings.Repeat("x", 5))
	}
	args = append(args, "-name", "guest=big", "-uuid", testUUID)
	line := argv(args...)
	if len(line) < 3<<20 {
		t.Fatalf("line is only %d bytes", len(line))
	}
	got, err := ParseCmdline(line)
	if err != nil || got != (VM{UUID: testUUID, Name: "big"}) {
		t.Errorf("ParseCmdline = %+v, %v", got, err)
	}
}

// FuzzParseCmdline: no panics; whatever is found yields a legal iSCSI name.
func FuzzParseCmdline(f *testing.F) {
	f.Add(libvirtLine())
	f.Add(argv("qemu", "-name", "guest=a,,b,,,,c,process=qemu:a"))
	f.Add(argv("qemu", "--uuid", testUUID))
	f.Add(argv("qemu", "-name", ",,,"))
	f.Add(argv("qemu", "-name"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, cmdline []byte) {
		in, err := FromCmdline(cmdline)
		if err != nil {
			return
		}
		checkLegal(t, in.Name)
		if in.Source != SourceUUID && in.Source != SourceName {
			t.Fatalf("source %q", in.Source)
		}
	})
}

func FuzzGuestName(f *testing.F) {
	for _, s := range []string{"guest=vm1,debug-threads=on", "a,,b", ",", ",,", "=", "guest=", "x,guest=,y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		name := guestName(arg)
		if len(name) > len(arg) {
			t.Fatalf("guestName(%q) = %q, longer than its input", arg, name)
		}
		// A name with no '=' or ',' written alone reads back as itself.
		if !strings.ContainsAny(arg, "=,") && name != arg {
			t.Fatalf("guestName(%q) = %q", arg, name)
		}
	})
}
