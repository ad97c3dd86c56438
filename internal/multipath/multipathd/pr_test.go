package multipathd

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"mpatha", true},
		{"36001405abcdef0123456789abcdef012", true},
		{"dm-3", true},
		{"vg_data-lv.1+x@y:z", true},
		{strings.Repeat("a", 127), true},
		{strings.Repeat("a", 128), false}, // DM_NAME_LEN 128 counts the NUL
		{"", false},
		{"mpath a", false},
		{"mpath\ta", false},
		{"mpath\na", false},
		{"mpath\x00a", false},
		{`mpath"a`, false},
		{"mpath'a", false},
		{"mpath#a", false}, // comment
		{"mpath!a", false}, // comment
		{"mpath{a", false},
		{"mpath}a", false},
		{"mpathä", false}, // non-ASCII separates words
		{"mpath\x7f", false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if tt.ok && err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", tt.name, err)
		}
	}
}

func TestFormatPRKey(t *testing.T) {
	tests := []struct {
		key   uint64
		aptpl bool
		want  string
	}{
		{0xabcde, false, "0x00000000000abcde"},
		{0xabcde, true, "0x00000000000abcde:aptpl"},
		{0xffffffffffffffff, false, "0xffffffffffffffff"},
		{1, true, "0x0000000000000001:aptpl"},
	}
	for _, tt := range tests {
		if got := FormatPRKey(tt.key, tt.aptpl); got != tt.want {
			t.Errorf("FormatPRKey(%#x, %v) = %q, want %q", tt.key, tt.aptpl, got, tt.want)
		}
	}
}

func TestParsePRKey(t *testing.T) {
	tests := []struct {
		reply      string
		key        uint64
		aptpl, set bool
		bad        bool
	}{
		{reply: "none\n"},
		{reply: "0x123abc\n", key: 0x123abc, set: true},
		{reply: "0x123abc:aptpl\n", key: 0x123abc, aptpl: true, set: true},
		{reply: "0xffffffffffffffff\n", key: 0xffffffffffffffff, set: true},
		{reply: "0X00000000000000Ab", key: 0xab, set: true},
		{reply: "0x1 \n", key: 1, set: true},
		{reply: "0x0\n", bad: true},
		{reply: "0x\n", bad: true},
		{reply: "123abc\n", bad: true},
		{reply: "0x1ffffffffffffffff\n", bad: true},
		{reply: "0x12g\n", bad: true},
		{reply: "0x+12\n", bad: true},
		{reply: "0x12:foo\n", bad: true},
		{reply: "fail\n", bad: true},
		{reply: "", bad: true},
	}
	for _, tt := range tests {
		key, aptpl, set, err := ParsePRKey(tt.reply)
		if tt.bad {
			if !errors.Is(err, ErrUnexpectedReply) {
				t.Errorf("ParsePRKey(%q) err = %v, want ErrUnexpectedReply", tt.reply, err)
			}
			continue
		}
		if err != nil || key != tt.key || aptpl != tt.aptpl || set != tt.set {
			t.Errorf("ParsePRKey(%q) = %#x, %v, %v, %v; want %#x, %v, %v", tt.reply, key, aptpl, set, err, tt.key, tt.aptpl, tt.set)
		}
	}
}

func TestParsePRStatus(t *testing.T) {
	tests := []struct {
		reply string
		want  PRStatus
		bad   bool
	}{
		{reply: "1", want: PRStatusSet},   // 0.9.4
		{reply: "0", want: PRStatusUnset}, // 0.9.4
		{reply: "set\n", want: PRStatusSet},
		{reply: "unset\n", want: PRStatusUnset},
		{reply: "unknown\n", want: PRStatusUnknown},
		{reply: "registered\n", bad: true},
		{reply: "2", bad: true},
		{reply: "", bad: true},
	}
	for _, tt := range tests {
		got, err := ParsePRStatus(tt.reply)
		if tt.bad {
			if !errors.Is(err, ErrUnexpectedReply) {
				t.Errorf("ParsePRStatus(%q) err = %v, want ErrUnexpectedReply", tt.reply, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParsePRStatus(%q) = %v, %v; want %v", tt.reply, got, err, tt.want)
		}
	}
	if PRStatusSet.String() != "set" || PRStatusUnset.String() != "unset" || PRStatusUnknown.String() != "unknown" {
		t.Error("PRStatus.String")
	}
}

// TestPRHelpers checks the exact command words each helper sends and how it
// reads the answer, against canned replies in the forms 0.9.4 and later
// releases use.
func TestPRHelpers(t *testing.T) {
	addr := pathSocket(t)
	d := startCanned(t, addr, map[string]string{
		"setprkey map mpatha key 0x00000000000abcde:aptpl": "ok\n",
		"setprkey map mpatha key 0x0000000000000007":       "ok\n",
		"unsetprkey map mpatha":                            "ok\n",
		"getprkey map mpatha":                              "0xabcde:aptpl\n",
		"getprkey map mpathb":                              "none\n",
		"setprstatus map mpatha":                           "ok\n",
		"unsetprstatus map mpatha":                         "ok\n",
		"getprstatus map mpatha":                           "1",
		"getprstatus map mpathb":                           "unset\n",
		"setprhold map mpatha":                             "setprhold map mpatha: not found\nmultipath-tools v0.11.0 (01/01, 2025)\nCLI commands reference:\n",
		"unsetprhold map mpatha":                           "ok\n",
		"getprhold map mpatha":                             "set\n",
		"setprstatus map odd":                              "done\n",
		"getprstatus map odd":                              "maybe\n",
	})
	c := New(Options{Addresses: []string{addr}})
	ctx := context.Background()

	if err := c.SetPRKey(ctx, "mpatha", 0xabcde, true); err != nil {
		t.Errorf("SetPRKey aptpl: %v", err)
	}
	if err := c.SetPRKey(ctx, "mpatha", 7, false); err != nil {
		t.Errorf("SetPRKey: %v", err)
	}
	if err := c.UnsetPRKey(ctx, "mpatha"); err != nil {
		t.Errorf("UnsetPRKey: %v", err)
	}
	if key, aptpl, set, err := c.GetPRKey(ctx, "mpatha"); err != nil || key != 0xabcde || !aptpl || !set {
		t.Errorf("GetPRKey(mpatha) = %#x, %v, %v, %v", key, aptpl, set, err)
	}
	if key, aptpl, set, err := c.GetPRKey(ctx, "mpathb"); err != nil || key != 0 || aptpl || set {
		t.Errorf("GetPRKey(mpathb) = %#x, %v, %v, %v", key, aptpl, set, err)
	}
	if err := c.SetPRStatus(ctx, "mpatha"); err != nil {
		t.Errorf("SetPRStatus: %v", err)
	}
	if err := c.UnsetPRStatus(ctx, "mpatha"); err != nil {
		t.Errorf("UnsetPRStatus: %v", err)
	}
	if st, err := c.GetPRStatus(ctx, "mpatha"); err != nil || st != PRStatusSet {
		t.Errorf("GetPRStatus(mpatha) = %v, %v", st, err)
	}
	if st, err := c.GetPRStatus(ctx, "mpathb"); err != nil || st != PRStatusUnset {
		t.Errorf("GetPRStatus(mpathb) = %v, %v", st, err)
	}
	if err := c.SetPRHold(ctx, "mpatha"); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("SetPRHold answered by the command reference = %v, want ErrUnknownCommand", err)
	}
	if err := c.UnsetPRHold(ctx, "mpatha"); err != nil {
		t.Errorf("UnsetPRHold: %v", err)
	}
	if st, err := c.GetPRHold(ctx, "mpatha"); err != nil || st != PRStatusSet {
		t.Errorf("GetPRHold = %v, %v", st, err)
	}
	// Failures and odd answers.
	if err := c.SetPRStatus(ctx, "nosuchmap"); !errors.Is(err, ErrFailed) {
		t.Errorf("SetPRStatus(unknown map) = %v, want ErrFailed", err)
	}
	if err := c.SetPRStatus(ctx, "odd"); !errors.Is(err, ErrUnexpectedReply) || !strings.Contains(err.Error(), "done") {
		t.Errorf("SetPRStatus(odd) = %v, want ErrUnexpectedReply quoting the reply", err)
	}
	if _, err := c.GetPRStatus(ctx, "odd"); !errors.Is(err, ErrUnexpectedReply) {
		t.Errorf("GetPRStatus(odd) = %v, want ErrUnexpectedReply", err)
	}

	cmds, _ := d.received()
	want := []string{
		"setprkey map mpatha key 0x00000000000abcde:aptpl",
		"setprkey map mpatha key 0x0000000000000007",
		"unsetprkey map mpatha",
		"getprkey map mpatha",
		"getprkey map mpathb",
		"setprstatus map mpatha",
		"unsetprstatus map mpatha",
		"getprstatus map mpatha",
		"getprstatus map mpathb",
		"setprhold map mpatha",
		"unsetprhold map mpatha",
		"getprhold map mpatha",
		"setprstatus map nosuchmap",
		"setprstatus map odd",
		"getprstatus map odd",
	}
	if strings.Join(cmds, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands sent:\n%s\nwant:\n%s", strings.Join(cmds, "\n"), strings.Join(want, "\n"))
	}
}

// TestPRHelpersRefuseBeforeSending: a bad name or a zero key never reaches
// the socket.
func TestPRHelpersRefuseBeforeSending(t *testing.T) {
	addr := pathSocket(t)
	f := startFake(t, addr, func(f *fakeDaemon, c net.Conn) { readFrame(c) })
	c := New(Options{Addresses: []string{addr}})
	ctx := context.Background()
	bad := "mpatha unsetprkey"
	type check struct {
		name      string
		err, want error
	}
	checks := []check{
		{"SetPRKey name", c.SetPRKey(ctx, bad, 1, false), ErrInvalidName},
		{"SetPRKey zero key", c.SetPRKey(ctx, "mpatha", 0, false), ErrInvalidKey},
		{"UnsetPRKey", c.UnsetPRKey(ctx, bad), ErrInvalidName},
		{"SetPRStatus", c.SetPRStatus(ctx, "a#b"), ErrInvalidName},
		{"UnsetPRStatus", c.UnsetPRStatus(ctx, `a"b`), ErrInvalidName},
		{"SetPRHold", c.SetPRHold(ctx, ""), ErrInvalidName},
		{"UnsetPRHold", c.UnsetPRHold(ctx, "a\x00"), ErrInvalidName},
	}
	_, _, _, err := c.GetPRKey(ctx, bad)
	checks = append(checks, check{"GetPRKey", err, ErrInvalidName})
	_, err = c.GetPRStatus(ctx, bad)
	checks = append(checks, check{"GetPRStatus", err, ErrInvalidName})
	_, err = c.GetPRHold(ctx, bad)
	checks = append(checks, check{"GetPRHold", err, ErrInvalidName})
	_, err = c.MapPaths(ctx, bad)
	checks = append(checks, check{"MapPaths", err, ErrInvalidName})
	for _, ch := range checks {
		if !errors.Is(ch.err, ch.want) {
			t.Errorf("%s: err = %v, want %v", ch.name, ch.err, ch.want)
		}
	}
	if n := f.connections(); n != 0 {
		t.Fatalf("%d connections for refused requests", n)
	}
}
