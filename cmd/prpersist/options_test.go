package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseOptions(t *testing.T) {
	base := func(mod func(*Options)) Options {
		o := Options{Device: "/dev/sda", Socket: DefaultSocket, In: true, SA: scsi.SAReadKeys, AllocLen: 8192}
		if mod != nil {
			mod(&o)
		}
		return o
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want Options
	}{
		{"no action: READ KEYS, like sg_persist", []string{"/dev/sda"}, nil, base(func(o *Options) { o.Implied = true })},
		{"transcript: -n -i -k", []string{"-n", "-i", "-k", "/dev/sda"}, nil, base(nil)},
		{"--in --read-reservation", []string{"--in", "--read-reservation", "/dev/sda"}, nil,
			base(func(o *Options) { o.SA = scsi.SAReadReservation })},
		{"-s without --in", []string{"-s", "/dev/sda"}, nil, base(func(o *Options) { o.SA = scsi.SAReadFullStatus })},
		{"--read-status alias", []string{"--read-status", "/dev/sda"}, nil, base(func(o *Options) { o.SA = scsi.SAReadFullStatus })},
		{"-c -d DEVICE", []string{"-c", "-d", "/dev/sda"}, nil, base(func(o *Options) { o.SA = scsi.SAReportCapabilities })},
		{"transcript: --out --register --param-sark=0x1", []string{"-n", "--out", "--register", "--param-sark=0x1", "/dev/sda"}, nil,
			base(func(o *Options) { o.In, o.SA, o.SAKey = false, scsi.SARegister, 1 })},
		{"PR OUT action implies --out; keys are hex like sg_persist", []string{"-G", "-S", "abc", "/dev/sda"}, nil,
			base(func(o *Options) { o.In, o.SA, o.SAKey = false, scsi.SARegister, 0xabc })},
		{"transcript: preempt", []string{"--out", "--preempt", "--param-rk=0xdef", "--param-sark=0xabc", "--prout-type=5", "/dev/sda"}, nil,
			base(func(o *Options) { o.In, o.SA, o.Key, o.SAKey, o.Type = false, scsi.SAPreempt, 0xdef, 0xabc, 5 })},
		{"reserve without type warns", []string{"-o", "-R", "-K", "1", "/dev/sda"}, nil,
			base(func(o *Options) { o.In, o.SA, o.Key, o.NoType = false, scsi.SAReserve, 1, true })},
		{"register-ignore with APTPL and ALL_TG_PT", []string{"-I", "-S", "0xabc", "-Z", "-Y", "/dev/sda"}, nil,
			base(func(o *Options) {
				o.In, o.SA, o.SAKey, o.APTPL, o.AllTgPt = false, scsi.SARegisterAndIgnoreExisting, 0xabc, true, true
			})},
		{"register-move", []string{"-M", "-K", "1", "-S", "2", "-Q", "a", "-U", "-X", "sas,5001405b00000002", "/dev/sda"}, nil,
			base(func(o *Options) {
				o.In, o.SA, o.Key, o.SAKey, o.RelTgtPort, o.Unreg = false, scsi.SARegisterAndMove, 1, 2, 0xa, true
				o.TransportIDs = []scsi.TransportID{scsi.SASTransportID(0x5001405b00000002)}
			})},
		{"--param_rk underscore spelling", []string{"-C", "--param_rk", "5", "/dev/sda"}, nil,
			base(func(o *Options) { o.In, o.SA, o.Key = false, scsi.SAClear, 5 })},
		{"-l is hex", []string{"-k", "-l", "20", "/dev/sda"}, nil, base(func(o *Options) { o.AllocLen = 32 })},
		{"--maxlen is decimal", []string{"-k", "--maxlen", "20", "/dev/sda"}, nil, base(func(o *Options) { o.AllocLen = 20 })},
		{"--maxlen 0x", []string{"-k", "-m", "0x100", "/dev/sda"}, nil, base(func(o *Options) { o.AllocLen = 256 })},
		{"--maxlen 8k", []string{"-k", "-m", "8k", "/dev/sda"}, nil, base(nil)},
		{"socket from the environment", []string{"/dev/sda"}, map[string]string{envSocket: "/run/x.sock"},
			base(func(o *Options) { o.Implied, o.Socket = true, "/run/x.sock" })},
		{"--socket beats the environment", []string{"--socket", "/run/y.sock", "-k", "/dev/sda"}, map[string]string{envSocket: "/run/x.sock"},
			base(func(o *Options) { o.Socket = "/run/y.sock" })},
		{"-y opens read-only", []string{"-y", "-k", "/dev/sda"}, nil, base(func(o *Options) { o.ReadOnly = true })},
		{"-yy forces read-write", []string{"-yy", "-k", "/dev/sda"}, map[string]string{envInReadOnly: "1"}, base(nil)},
		{"SG_PERSIST_IN_RDONLY for PR IN", []string{"-k", "/dev/sda"}, map[string]string{envInReadOnly: "1"},
			base(func(o *Options) { o.ReadOnly = true })},
		{"SG_PERSIST_IN_RDONLY not for PR OUT", []string{"-C", "/dev/sda"}, map[string]string{envInReadOnly: "1"},
			base(func(o *Options) { o.In, o.SA = false, scsi.SAClear })},
		{"--readwrite beats SG_PERSIST_IN_RDONLY", []string{"--readwrite", "-k", "/dev/sda"}, map[string]string{envInReadOnly: "1"}, base(nil)},
		{"-HH -vv --json", []string{"-HH", "-vv", "--json", "-k", "/dev/sda"}, nil,
			base(func(o *Options) { o.Hex, o.Verbose, o.JSON = 2, 2, true })},
		{"TransportIDs with register set SPEC_I_PT later", []string{"-G", "-S", "1", "-X", "iqn.1994-05.com.example:i1,i,0x00023d000001", "/dev/sda"}, nil,
			base(func(o *Options) {
				o.In, o.SA, o.SAKey = false, scsi.SARegister, 1
				o.TransportIDs = []scsi.TransportID{scsi.ISCSIPortTransportID("iqn.1994-05.com.example:i1", "00023d000001")}
			})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOptions(tc.args, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // substring of the one-line message
	}{
		{"no device", []string{"-k"}, "No device name given"},
		{"two devices", []string{"/dev/sda", "/dev/sdb"}, "Unexpected extra argument: /dev/sdb"},
		{"--in and --out", []string{"-i", "-o", "-k", "/dev/sda"}, "choose '--in' _or_ '--out' (not both)"},
		{"PR IN and PR OUT actions", []string{"-k", "-G", "/dev/sda"}, "choose one service action"},
		{"two PR IN actions", []string{"-k", "-r", "/dev/sda"}, "too many service actions"},
		{"two PR OUT actions", []string{"-R", "-L", "/dev/sda"}, "too many service actions"},
		{"--in with a PR OUT action", []string{"--in", "--register", "/dev/sda"}, "--in given with the PR Out service action --register"},
		{"--out with a PR IN action", []string{"--out", "-k", "/dev/sda"}, "--out given with the PR In service action --read-keys"},
		{"--out alone", []string{"--out", "/dev/sda"}, "one service action must be chosen"},
		{"--unreg without --register-move", []string{"-G", "-U", "/dev/sda"}, "only useful with --register-move"},
		{"-Q without --register-move", []string{"-G", "-Q", "1", "/dev/sda"}, "only useful with --register-move"},
		{"register-move without TransportID", []string{"-M", "/dev/sda"}, "one (and only one) --transport-id"},
		{"register-move with two TransportIDs", []string{"-M", "-X", "sas,5001405b00000001", "-X", "sas,5001405b00000002", "/dev/sda"},
			"one (and only one) --transport-id"},
		{"bad key", []string{"-G", "-S", "xyz", "/dev/sda"}, "bad argument to '--param-sark'"},
		{"key over 64 bits", []string{"-G", "-S", "0x1ffffffffffffffff", "/dev/sda"}, "bad argument to '--param-sark'"},
		{"type over 4 bits", []string{"-R", "-T", "10", "/dev/sda"}, "bad argument to '--prout-type'"},
		{"RTPI over 16 bits", []string{"-M", "-Q", "10000", "-X", "sas,5001405b00000001", "/dev/sda"}, "bad argument to '--relative-target-port'"},
		{"maxlen too large", []string{"-k", "-m", "8193", "/dev/sda"}, "'--maxlen' argument exceeds maximum value (8192)"},
		{"alloc-length too large", []string{"-k", "-l", "2001", "/dev/sda"}, "'--alloc-length' argument exceeds maximum value (8192)"},
		{"maxlen not a number", []string{"-k", "-m", "lots", "/dev/sda"}, "bad argument to '--maxlen'"},
		{"both length options", []string{"-k", "-m", "8", "-l", "8", "/dev/sda"}, "not both"},
		{"bad TransportID", []string{"-G", "-X", "sas,123", "/dev/sda"}, "bad argument to '--transport-id'"},
		{"unknown option", []string{"--frobnicate", "/dev/sda"}, "unknown flag: --frobnicate"},
		{"missing option value", []string{"/dev/sda", "-K"}, "flag needs an argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseOptions(tc.args, env(nil))
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("parseOptions = %+v, %v; want a usage error", o, err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("message %q: want one line containing %q", msg, tc.want)
			}
		})
	}
}

func TestParseOptionsHelpVersion(t *testing.T) {
	var h helpError
	if _, err := parseOptions([]string{"-hh"}, env(nil)); !errors.As(err, &h) || h.Level != 2 {
		t.Fatalf("-hh: %v", err)
	}
	if _, err := parseOptions([]string{"-V"}, env(nil)); !errors.Is(err, errVersion) {
		t.Fatalf("-V: %v", err)
	}
	if u := usage(1); !strings.Contains(u, "--read-keys|-k") || strings.Contains(u, "--alloc-length") {
		t.Fatalf("usage(1) lists the wrong options:\n%s", u)
	}
	if u := usage(2); !strings.Contains(u, "--alloc-length=LEN|-l LEN") || !strings.Contains(u, "8:    exclusive access, all registrants") {
		t.Fatalf("usage(2):\n%s", u)
	}
}

func TestParseTransportIDArg(t *testing.T) {
	tests := []struct {
		in   string
		want string // hex of the encoding
	}{
		{"sas,5001405B00000001", "060000005001405b000000010000000000000000" + "00000000"},
		{"fcp,21000024ff3a8b2c", "000000000000000021000024ff3a8b2c0000000000000000"},
		{"fc,21000024ff3a8b2c", "000000000000000021000024ff3a8b2c0000000000000000"},
		{"iqn.1994-05.com.example:i1", "0500001c" + hexOf("iqn.1994-05.com.example:i1") + "0000"},
		{"iqn.1994-05.com.example:i1,i,0x00023d000001", "4500002c" + hexOf("iqn.1994-05.com.example:i1,i,0x00023d000001") + "00"},
		{"6,0,0,0,50,1,40,5b,0,0,0,2", "060000005001405b000000020000000000000000" + "00000000"},
		{"06 00 00 00 50 01 40 5b", "060000005001405b000000000000000000000000" + "00000000"},
		{"5,0,0,18," + strings.TrimSuffix(strings.Repeat("41,", 8), ","), "05000018" + strings.Repeat("41", 8) + strings.Repeat("00", 16)},
	}
	for _, tc := range tests {
		tid, err := parseTransportIDArg(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		b, err := tid.Encode()
		if err != nil || hexOfBytes(b) != tc.want {
			t.Errorf("%q encodes to %s, %v; want %s", tc.in, hexOfBytes(b), err, tc.want)
		}
	}
	for _, bad := range []string{"sas,12", "sas,zz01405b00000001", "fcp,", "iqn.x,i,0x12", "", "1ff", "6,0,0,0,50,1,40,5b,0,0,0,2,0,0,0,0,0,0,0,0,0,0,0,0,9",
		"file=/tmp/x", "-", "srp,00", "spi,1,2"} {
		if tid, err := parseTransportIDArg(bad); err == nil {
			t.Errorf("%q parsed as %+v", bad, tid)
		}
	}
}

func hexOf(s string) string { return hexOfBytes([]byte(s)) }

func hexOfBytes(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
