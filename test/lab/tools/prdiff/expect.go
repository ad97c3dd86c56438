package main

import (
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// linuxprExpect lists where prhelper --backend=linuxpr differs by design from
// prhelper --backend=sgio on the script, on the lab's Linux 6.1 (prdiff -expect
// linuxpr; test/lab/tests/linuxpr-vs-sgio.sh).
//
//go:embed linuxpr.expect
var linuxprExpect string

// builtinExpect are the expectation sets -expect accepts by name.
var builtinExpect = map[string]string{"linuxpr": linuxprExpect}

// expected is one documented difference: at step Step the helper under test
// must give exactly Status, Sense (fixed format, zeros after byte 17) and Data,
// and that reply must differ from the reference's.
type expected struct {
	Step   int // 1-based, as prdiff prints it
	Desc   string
	Status byte
	Sense  *scsi.Sense // when Status is CHECK CONDITION
	Data   []byte
	Why    string
}

// loadExpect returns the expectation set -expect names: a built-in name or a
// file; "" means none.
func loadExpect(name string, steps []step) (map[int]expected, error) {
	if name == "" {
		return nil, nil
	}
	text, ok := builtinExpect[name]
	if !ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("expectations: %w", err)
		}
		text = string(b)
	}
	return parseExpect(text, steps)
}

// parseExpect reads an expectation file. Blank lines and lines starting with #
// are ignored; each entry is
//
//	step N: DESCRIPTION        (the script's description of step N, verbatim)
//	test: REPLY                (good | conflict | check K/AA/QQ, then optionally "data HEX…")
//	why: REASON                (indented lines continue it)
//
// Every entry needs all three; a step may appear once.
func parseExpect(text string, steps []step) (map[int]expected, error) {
	out := map[int]expected{}
	var cur *expected
	finish := func() error {
		if cur == nil {
			return nil
		}
		if cur.Status == 0xff || cur.Why == "" {
			return fmt.Errorf("expectations: step %d: needs a test: and a why: line", cur.Step)
		}
		out[cur.Step] = *cur
		cur = nil
		return nil
	}
	last := ""
	for n, line := range strings.Split(text, "\n") {
		bad := func(format string, a ...any) error {
			return fmt.Errorf("expectations line %d: %s", n+1, fmt.Sprintf(format, a...))
		}
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur == nil || last != "why" {
				return nil, bad("continuation line outside a why:")
			}
			cur.Why += " " + t
			continue
		}
		key, val, ok := strings.Cut(t, ":")
		val = strings.TrimSpace(val)
		switch {
		case !ok:
			return nil, bad("want \"step N: …\", \"test: …\" or \"why: …\"")
		case strings.HasPrefix(key, "step "):
			if err := finish(); err != nil {
				return nil, err
			}
			i, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(key, "step ")))
			if err != nil || i < 1 || i > len(steps) {
				return nil, bad("step %q is not 1..%d", key, len(steps))
			}
			if _, dup := out[i]; dup {
				return nil, bad("step %d listed twice", i)
			}
			if val != steps[i-1].desc {
				return nil, bad("step %d is %q in the script, not %q", i, steps[i-1].desc, val)
			}
			cur = &expected{Step: i, Desc: val, Status: 0xff}
		case cur == nil:
			return nil, bad("%s: before any step line", key)
		case key == "test":
			if err := parseReply(val, cur); err != nil {
				return nil, bad("%v", err)
			}
		case key == "why":
			cur.Why = val
		default:
			return nil, bad("unknown key %q", key)
		}
		last = key
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return out, nil
}

// parseReply reads "good|conflict|check K/AA/QQ [data HEX…]" into e.
func parseReply(s string, e *expected) error {
	head, data, hasData := strings.Cut(s, "data")
	f := strings.Fields(head)
	switch {
	case len(f) == 1 && f[0] == "good":
		e.Status = scsi.StatusGood
	case len(f) == 1 && f[0] == "conflict":
		e.Status = scsi.StatusReservationConflict
	case len(f) == 2 && f[0] == "check":
		var k, asc, ascq uint8
		if n, err := fmt.Sscanf(f[1], "%x/%x/%x", &k, &asc, &ascq); n != 3 || err != nil {
			return fmt.Errorf("sense %q is not K/ASC/ASCQ in hex", f[1])
		}
		e.Status = scsi.StatusCheckCondition
		e.Sense = &scsi.Sense{Key: k, ASC: asc, ASCQ: ascq}
	default:
		return fmt.Errorf("reply %q is not good, conflict or check K/ASC/ASCQ", head)
	}
	if hasData {
		b, err := hex.DecodeString(strings.Join(strings.Fields(data), ""))
		if err != nil || len(b) == 0 {
			return fmt.Errorf("data %q is not hex", data)
		}
		e.Data = b
	}
	return nil
}

// String renders the reply the way the file spells it.
func (e expected) String() string {
	s := "good"
	switch e.Status {
	case scsi.StatusReservationConflict:
		s = "conflict"
	case scsi.StatusCheckCondition:
		s = "check " + e.Sense.String()
	}
	if len(e.Data) > 0 {
		s += fmt.Sprintf(" data % x", e.Data)
	}
	return s
}

// matchExpected returns "" when test is exactly the reply e documents.
func matchExpected(e expected, test *wire.Reply) string {
	var sense [wire.SenseSize]byte
	if e.Sense != nil {
		copy(sense[:], e.Sense.Fixed())
	}
	if test.Status != e.Status || test.Sense != sense || string(test.Data) != string(e.Data) {
		return fmt.Sprintf("documented test reply %s, got %s", e, summary(test))
	}
	return ""
}
