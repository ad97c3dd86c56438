package identity

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// ErrNoVMIdentity means the peer's command line names no VM: no -uuid and no
// -name guest name. Under the peer policy such a connection cannot be served.
var ErrNoVMIdentity = errors.New("no -uuid or -name in the peer's command line (is the peer QEMU?)")

// ErrEmptyCmdline means /proc/<pid>/cmdline was empty: a kernel thread, or a
// process that has exited and is not yet reaped.
var ErrEmptyCmdline = errors.New("empty command line")

// VM is what a QEMU command line says about the guest.
type VM struct {
	// UUID is the -uuid argument as written (QEMU: 8-4-4-4-12 hex digits).
	UUID string
	// Name is the guest name from -name ([guest=]NAME[,…]), ",," unescaped.
	Name string
}

// ParseCmdline reads a QEMU command line as /proc/<pid>/cmdline holds it:
// arguments separated (and usually terminated) by NUL bytes, argv[0] first.
//
// It follows QEMU's option syntax (softmmu/vl.c lookup_opt): an option is
// "-opt" or "--opt" and takes its argument from the next word; QEMU has no
// "-opt=value" form ("-uuid=…" makes QEMU exit with "invalid option"), so
// such words are not options here either. When an option repeats, the last
// one counts, as in QEMU. Arguments of other options are not skipped, because
// their arity is QEMU-version specific: a word "-uuid" that is really the
// argument of another option would be misread; libvirt never writes one.
// -uuid and -name given through -readconfig files are not seen.
//
// It fails with ErrEmptyCmdline for an empty line, and for -uuid or -name
// with no following word.
func ParseCmdline(cmdline []byte) (VM, error) {
	cmdline = bytes.TrimSuffix(cmdline, []byte{0})
	if len(cmdline) == 0 {
		return VM{}, ErrEmptyCmdline
	}
	args := strings.Split(string(cmdline), "\x00")
	var vm VM
	for i := 1; i < len(args); i++ {
		opt, ok := optionName(args[i])
		if !ok || (opt != "uuid" && opt != "name") {
			continue
		}
		if i+1 >= len(args) {
			return VM{}, fmt.Errorf("option %s at argument %d has no value", args[i], i)
		}
		i++
		if opt == "uuid" {
			vm.UUID = args[i]
		} else {
			vm.Name = guestName(args[i])
		}
	}
	return vm, nil
}

// optionName strips the one or two leading dashes QEMU accepts.
func optionName(arg string) (string, bool) {
	rest, ok := strings.CutPrefix(arg, "-")
	if !ok {
		return "", false
	}
	rest = strings.TrimPrefix(rest, "-")
	return rest, rest != ""
}

// guestName extracts the guest name from a -name argument, whose syntax is
// QemuOpts with "guest" as the implied first key (qemu-options.hx: -name
// [guest=]name[,process=name][,debug-threads=on|off]): parameters are
// separated by ',' and ",," stands for a literal comma in a value; a first
// parameter without '=' is the guest name; later ones without '=' are flags.
// The last guest= wins. "" when there is none.
func guestName(arg string) string {
	name := ""
	first := true
	for p := arg; ; first = false {
		var key, val string
		n := strings.IndexAny(p, "=,")
		switch {
		case n < 0 || p[n] == ',':
			if first {
				key = "guest"
				val, p = optValue(p)
			} else {
				// A flag ("debug-threads", "nofoo"): no value, skip it.
				if n < 0 {
					p = ""
				} else {
					p = p[n:]
				}
			}
		default:
			key = p[:n]
			val, p = optValue(p[n+1:])
		}
		if key == "guest" {
			name = val
		}
		if p == "" {
			return name
		}
		p = p[1:] // the separating ','
		if p == "" {
			return name
		}
	}
}

// optValue reads a QemuOpts value up to a single ',' (",," is a literal
// comma) and returns it and the rest, which starts at that ',' or is empty.
func optValue(p string) (string, string) {
	var b strings.Builder
	for {
		i := strings.IndexByte(p, ',')
		if i < 0 {
			b.WriteString(p)
			return b.String(), ""
		}
		if i+1 < len(p) && p[i+1] == ',' {
			b.WriteString(p[:i+1])
			p = p[i+2:]
			continue
		}
		b.WriteString(p[:i])
		return b.String(), p[i:]
	}
}

// FromCmdline names the VM whose QEMU command line is cmdline (see
// ParseCmdline and VMInitiator): by -uuid, else by -name, else
// ErrNoVMIdentity.
func FromCmdline(cmdline []byte) (Initiator, error) {
	vm, err := ParseCmdline(cmdline)
	if err != nil {
		return Initiator{}, err
	}
	return VMInitiator(vm)
}
