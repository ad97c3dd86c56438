package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// DefaultSocket is qemu-pr-helper's default socket path.
const DefaultSocket = "/var/run/qemu-pr-helper.sock"

// Environment variables: the socket, and sg_persist's switch that opens the
// device read-only for PR IN.
const (
	envSocket     = "PRPERSIST_SOCKET"
	envInReadOnly = "SG_PERSIST_IN_RDONLY"
)

// defaultAllocLen is sg_persist's MX_ALLOC_LEN, which is also the helper
// protocol's PR_HELPER_DATA_SIZE.
const defaultAllocLen = wire.MaxData

// Options is a parsed command line: one PR IN or PR OUT command for one device.
type Options struct {
	Device string
	Socket string

	In      bool // PR IN (else PR OUT)
	SA      byte // service action of the chosen direction
	Implied bool // no service action was given: READ KEYS, as sg_persist
	NoType  bool // RESERVE/RELEASE/PREEMPT without --prout-type (sg_persist warns)

	Key, SAKey   uint64
	Type         byte
	APTPL        bool
	AllTgPt      bool
	Unreg        bool
	RelTgtPort   uint16
	TransportIDs []scsi.TransportID

	AllocLen uint16
	ReadOnly bool // open O_RDONLY instead of sg_persist's default O_RDWR

	Hex     int
	JSON    bool
	Verbose int
}

// errVersion is not a failure: main prints the version and exits 0, as
// sg_persist does for -V.
var errVersion = errors.New("version requested")

// helpError asks for usage; Level 2 is sg_persist's -hh (the other options).
type helpError struct{ Level int }

func (e helpError) Error() string { return "help requested" }

// usageError is a command-line mistake: one line, exit status 1.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// saFlag ties a service-action option to its code.
type saFlag struct {
	long, short string
	in          bool
	sa          byte
	help        string
}

// The service-action options, with sg_persist's names and letters.
var saFlags = []saFlag{
	{"read-keys", "k", true, scsi.SAReadKeys, "PR In: Read Keys (default)"},
	{"read-reservation", "r", true, scsi.SAReadReservation, "PR In: Read Reservation"},
	{"report-capabilities", "c", true, scsi.SAReportCapabilities, "PR In: Report Capabilities"},
	{"read-full-status", "s", true, scsi.SAReadFullStatus, "PR In: Read Full Status"},
	{"register", "G", false, scsi.SARegister, "PR Out: Register"},
	{"reserve", "R", false, scsi.SAReserve, "PR Out: Reserve"},
	{"release", "L", false, scsi.SARelease, "PR Out: Release"},
	{"clear", "C", false, scsi.SAClear, "PR Out: Clear"},
	{"preempt", "P", false, scsi.SAPreempt, "PR Out: Preempt"},
	{"preempt-abort", "A", false, scsi.SAPreemptAndAbort, "PR Out: Preempt and Abort"},
	{"register-ignore", "I", false, scsi.SARegisterAndIgnoreExisting, "PR Out: Register and Ignore"},
	{"register-move", "M", false, scsi.SARegisterAndMove, "PR Out: Register and Move"},
	{"replace-lost", "z", false, scsi.SAReplaceLostReservation, "PR Out: Replace Lost Reservation"},
}

// newFlagSet declares every option. Aliases sg_persist also accepts
// (--read-status, --param-unreg, --alloc_length style underscores) are hidden or
// normalised.
func newFlagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("prpersist", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		name = strings.ReplaceAll(name, "_", "-")
		switch name {
		case "read-status":
			name = "read-full-status"
		case "param-unreg":
			name = "unreg"
		}
		return pflag.NormalizedName(name)
	})
	fs.BoolP("in", "i", false, "request PR In command (default)")
	fs.BoolP("out", "o", false, "request PR Out command")
	for _, f := range saFlags {
		fs.BoolP(f.long, f.short, false, f.help)
	}
	fs.StringP("param-rk", "K", "", "PR Out parameter reservation key (RK is in hex)")
	fs.StringP("param-sark", "S", "", "PR Out parameter service action reservation key (hex)")
	fs.StringP("prout-type", "T", "", "PR Out type field (hex, see -hh)")
	fs.BoolP("param-aptpl", "Z", false, "PR Out parameter 'APTPL'")
	fs.BoolP("param-alltgpt", "Y", false, "PR Out parameter 'ALL_TG_PT'")
	fs.StringArrayP("transport-id", "X", nil, "TransportID: hex bytes, sas,ADDR, fcp,WWPN or iqn.NAME[,i,0xISID]")
	fs.StringP("relative-target-port", "Q", "", "relative target port identifier (hex, --register-move)")
	fs.BoolP("unreg", "U", false, "optional with PR Out Register and Move")
	fs.StringP("alloc-length", "l", "", "allocation length in hex (default: 2000)")
	fs.StringP("maxlen", "m", "", "allocation length in decimal, or 0x hex (default: 8192)")
	fs.StringP("device", "d", "", "supply DEVICE as an option rather than an argument")
	fs.String("socket", "", "helper socket (default $"+envSocket+", else "+DefaultSocket+")")
	fs.CountP("readonly", "y", "open DEVICE read-only (default: read-write); -yy forces read-write")
	fs.Bool("readwrite", false, "open DEVICE read-write even with "+envInReadOnly+" set")
	fs.BoolP("no-inquiry", "n", false, "accepted for sg_persist compatibility; prpersist never sends INQUIRY")
	fs.CountP("hex", "H", "output response in hex; -HH whole response")
	fs.Bool("json", false, "output one JSON object")
	fs.CountP("verbose", "v", "increase verbosity")
	fs.CountP("help", "h", "print usage message, twice for more")
	fs.BoolP("version", "V", false, "output version string")
	return fs
}

// parseOptions parses the arguments (without the program name). getenv reads
// the environment. It returns helpError, errVersion or a usageError when there
// is nothing to run.
func parseOptions(args []string, getenv func(string) string) (Options, error) {
	fs := newFlagSet()
	if err := fs.Parse(args); err != nil {
		return Options{}, usageError{err.Error()}
	}
	if n, _ := fs.GetCount("help"); n > 0 {
		return Options{}, helpError{Level: n}
	}
	if v, _ := fs.GetBool("version"); v {
		return Options{}, errVersion
	}
	o := Options{AllocLen: defaultAllocLen}

	// The device: -d or the one positional argument.
	o.Device, _ = fs.GetString("device")
	rest := fs.Args()
	if o.Device == "" && len(rest) > 0 {
		o.Device, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return Options{}, usagef("Unexpected extra argument: %s", rest[0])
	}
	if o.Device == "" {
		return Options{}, usagef("No device name given")
	}

	if err := o.direction(fs); err != nil {
		return Options{}, err
	}
	if err := o.parameters(fs); err != nil {
		return Options{}, err
	}

	o.Socket, _ = fs.GetString("socket")
	if o.Socket == "" {
		o.Socket = getenv(envSocket)
	}
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}

	// sg_persist opens the device read-write unless -y; SG_PERSIST_IN_RDONLY
	// makes PR IN open read-only; -yy (or --readwrite) forces read-write.
	y, _ := fs.GetCount("readonly")
	rw, _ := fs.GetBool("readwrite")
	force := rw || y >= 2
	o.ReadOnly = y == 1 && !force
	if !force && o.In && getenv(envInReadOnly) != "" {
		o.ReadOnly = true
	}
	o.Hex, _ = fs.GetCount("hex")
	o.JSON, _ = fs.GetBool("json")
	o.Verbose, _ = fs.GetCount("verbose")
	return o, nil
}

// direction resolves --in/--out and the service action. Unlike sg_persist, which
// insists on --out "as a safeguard", a PR OUT service action implies --out; every
// contradiction is still refused.
func (o *Options) direction(fs *pflag.FlagSet) error {
	in, _ := fs.GetBool("in")
	out, _ := fs.GetBool("out")
	if in && out {
		return usagef("choose '--in' _or_ '--out' (not both)")
	}
	var ins, outs []saFlag
	for _, f := range saFlags {
		if v, _ := fs.GetBool(f.long); v {
			if f.in {
				ins = append(ins, f)
			} else {
				outs = append(outs, f)
			}
		}
	}
	switch {
	case len(ins) > 0 && len(outs) > 0:
		return usagef("--%s is PR In and --%s is PR Out: choose one service action", ins[0].long, outs[0].long)
	case len(ins) > 1 || len(outs) > 1:
		all := append(ins, outs...)
		return usagef("too many service actions (--%s, --%s): choose one only", all[0].long, all[1].long)
	case in && len(outs) == 1:
		return usagef("--in given with the PR Out service action --%s", outs[0].long)
	case out && len(ins) == 1:
		return usagef("--out given with the PR In service action --%s", ins[0].long)
	case out && len(outs) == 0:
		return usagef("for Persistent Reserve Out one service action must be chosen (e.g. '--register')")
	case len(outs) == 1:
		o.In, o.SA = false, outs[0].sa
	case len(ins) == 1:
		o.In, o.SA = true, ins[0].sa
	default:
		o.In, o.SA, o.Implied = true, scsi.SAReadKeys, true
	}
	return nil
}

// parameters reads the PR OUT parameters and the allocation length.
func (o *Options) parameters(fs *pflag.FlagSet) error {
	var err error
	hexOpt := func(name string, bits int) (uint64, error) {
		s, _ := fs.GetString(name)
		if !fs.Changed(name) {
			return 0, nil
		}
		v, err := parseHex(s, bits)
		if err != nil {
			return 0, usagef("bad argument to '--%s': %v", name, err)
		}
		return v, nil
	}
	if o.Key, err = hexOpt("param-rk", 64); err != nil {
		return err
	}
	if o.SAKey, err = hexOpt("param-sark", 64); err != nil {
		return err
	}
	t, err := hexOpt("prout-type", 4)
	if err != nil {
		return err
	}
	o.Type = byte(t)
	rtp, err := hexOpt("relative-target-port", 16)
	if err != nil {
		return err
	}
	o.RelTgtPort = uint16(rtp)
	o.APTPL, _ = fs.GetBool("param-aptpl")
	o.AllTgPt, _ = fs.GetBool("param-alltgpt")
	o.Unreg, _ = fs.GetBool("unreg")
	tids, _ := fs.GetStringArray("transport-id")
	for _, s := range tids {
		t, err := parseTransportIDArg(s)
		if err != nil {
			return usagef("bad argument to '--transport-id': %v", err)
		}
		o.TransportIDs = append(o.TransportIDs, t)
	}

	move := !o.In && o.SA == scsi.SARegisterAndMove
	if (o.Unreg || fs.Changed("relative-target-port")) && !move {
		return usagef("--unreg or --relative-target-port only useful with --register-move")
	}
	if move && len(o.TransportIDs) != 1 {
		return usagef("with --register-move one (and only one) --transport-id should be given")
	}
	if !o.In && !fs.Changed("prout-type") {
		switch o.SA {
		case scsi.SAReserve, scsi.SARelease, scsi.SAPreempt, scsi.SAPreemptAndAbort:
			o.NoType = true
		}
	}

	if fs.Changed("alloc-length") && fs.Changed("maxlen") {
		return usagef("give '--alloc-length' or '--maxlen', not both")
	}
	var n uint64
	var name string
	switch {
	case fs.Changed("alloc-length"):
		name = "alloc-length"
		s, _ := fs.GetString(name)
		n, err = parseHex(s, 32)
	case fs.Changed("maxlen"):
		name = "maxlen"
		s, _ := fs.GetString(name)
		n, err = parseNum(s)
	default:
		return nil
	}
	if err != nil {
		return usagef("bad argument to '--%s': %v", name, err)
	}
	if n > defaultAllocLen {
		return usagef("'--%s' argument exceeds maximum value (%d)", name, defaultAllocLen)
	}
	o.AllocLen = uint16(n)
	return nil
}

// parseHex reads a number the way sg_persist reads keys, types, the relative
// target port and --alloc-length (sscanf "%x"): hexadecimal, with or without a
// 0x prefix. Unlike sscanf it refuses trailing garbage.
func parseHex(s string, bits int) (uint64, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X")
	v, err := strconv.ParseUint(t, 16, bits)
	if err != nil {
		return 0, fmt.Errorf("%q is not a %d-bit hex number", s, bits)
	}
	return v, nil
}

// parseNum reads --maxlen like sg_persist's sg_get_num: decimal, 0x-prefixed or
// h-suffixed hex, or decimal with a k (×1024) suffix.
func parseNum(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	var v uint64
	var err error
	switch {
	case strings.HasPrefix(t, "0x") || strings.HasPrefix(t, "0X"):
		v, err = strconv.ParseUint(t[2:], 16, 32)
	case strings.HasSuffix(t, "h") || strings.HasSuffix(t, "H"):
		v, err = strconv.ParseUint(t[:len(t)-1], 16, 32)
	case strings.HasSuffix(t, "k") || strings.HasSuffix(t, "K"):
		v, err = strconv.ParseUint(t[:len(t)-1], 10, 22)
		v *= 1024
	default:
		v, err = strconv.ParseUint(t, 10, 32)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return v, nil
}

// usage is the help text; level 2 adds the other options and TYPE values, as
// sg_persist's -hh does.
func usage(level int) string {
	var b strings.Builder
	b.WriteString(`Usage: prpersist [OPTIONS] [DEVICE]
Performs a SCSI PERSISTENT RESERVE (IN or OUT) command on DEVICE through a
qemu-pr-helper compatible socket, with sg_persist's options.
Invoking 'prpersist DEVICE' does a PR In Read Keys command.

`)
	mainOpts := map[string]bool{"in": true, "out": true, "param-rk": true, "param-sark": true, "prout-type": true,
		"help": true, "socket": true, "unreg": true, "json": true}
	for _, f := range saFlags {
		mainOpts[f.long] = true
	}
	args := map[string]string{"param-rk": "RK", "param-sark": "SARK", "prout-type": "TYPE", "transport-id": "TIDS",
		"relative-target-port": "RTPI", "alloc-length": "LEN", "maxlen": "LEN", "device": "DEVICE", "socket": "PATH"}
	if level < 2 {
		b.WriteString("where the main OPTIONS are (use -hh for the others):\n")
	} else {
		b.WriteString("where the other OPTIONS are:\n")
	}
	newFlagSet().VisitAll(func(f *pflag.Flag) {
		if mainOpts[f.Name] != (level < 2) {
			return
		}
		name := "--" + f.Name
		if a := args[f.Name]; a != "" {
			name += "=" + a
		}
		if f.Shorthand != "" {
			name += "|-" + f.Shorthand
			if a := args[f.Name]; a != "" {
				name += " " + a
			}
		}
		fmt.Fprintf(&b, "    %-36s %s\n", name, f.Usage)
	})
	if level >= 2 {
		b.WriteString(`
PR Out TYPE field value meanings:
  0:    obsolete (was 'read shared' in SPC)
  1:    write exclusive
  2:    obsolete (was 'read exclusive')
  3:    exclusive access
  4:    obsolete (was 'shared access')
  5:    write exclusive, registrants only
  6:    exclusive access, registrants only
  7:    write exclusive, all registrants
  8:    exclusive access, all registrants
`)
	}
	b.WriteString(`
Exit status follows sg_persist (sg3_utils SG_LIB_CAT_*): 0 ok, 1 syntax error,
2 not ready, 3 medium/hardware error, 5 illegal request, 6 unit attention,
9 invalid opcode, 11 aborted command, 15 file error, 20 no sense, 24 reservation
conflict, 26 busy, 27 task set full, 97 malformed response, 98 other sense,
99 other error (e.g. the helper socket cannot be reached).
`)
	return b.String()
}
