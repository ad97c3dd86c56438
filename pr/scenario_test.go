package pr

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

// The scenario files under testdata/scenarios hold the conformance scenarios of
// docs/spc4-pr.md §16, one file per section (A.txt ... M.txt). Format, line by line:
//
//	scenario <id> <title>     starts a scenario; <id> is the §16 number, or a
//	                          number plus a suffix (91spc4) for a profile variant
//	profile lio|spc4          the profile (default lio)
//	port rtpi=N [proto=iscsi|fc|sas] [acl=I1,I2|none]
//	                          a target port of the LU (default: one implicit port)
//	nexus In iscsi|fc|sas <name-or-addr> [isid=...] [rtpi=N]
//	                          (re)defines a nexus; I1..I4 default to iSCSI
//	                          iqn.1994-05.com.example:i<n>, ISID 00023d00000<n>, RTPI 1
//	<nexus>[@rtpi] <CMD> [arg=value|flag ...] => <expectation>
//	RESTART                   PowerOn (power cycle with the state kept by a store)
//
// Commands: PR OUT REGISTER RESERVE RELEASE CLEAR PREEMPT PA RIEK MOVE and
// PROUT sa=N; PR IN RK RR RCAP RFS and PRIN sa=N; anything else (TUR, READ10,
// WRITE10, INQUIRY, MODE_SENSE6, RESERVE6, ...) goes through CheckAccess.
// Arguments: rk= sark= type= scope= byte2= sa= alloc= pll= tpdl= rtpi= tid=In,..
// and the flags spec_i_pt all_tg_pt aptpl unreg. An argument value a|b|c or
// a..b runs the command once per value, with the same expectation.
// Expectations: GOOD | RC | CC k/aa/qq | UA aa/qq, then for PR IN data:
// gen=N al=N len=N keys=K1,K2|- res=KEY/TYPE nores desc=N @off=hexbyte, and
// "data <hex bytes...>" for the exact payload (rest of the line).

const scenarioCount = 132

var keyNames = map[string]uint64{
	"K1": 0x1111111111111111, "K2": 0x2222222222222222,
	"K3": 0x3333333333333333, "K9": 0x9999999999999999,
}

type scenario struct {
	id, section, title, file string
	lines                    []scenarioLine
}

type scenarioLine struct {
	no   int
	text string
}

func loadScenarios(t *testing.T) []scenario {
	t.Helper()
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	var out []scenario
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		section := strings.TrimSuffix(filepath.Base(f), ".txt")
		var cur *scenario
		for i, raw := range strings.Split(string(b), "\n") {
			line := strings.TrimSpace(raw)
			if j := strings.Index(line, "#"); j >= 0 {
				line = strings.TrimSpace(line[:j])
			}
			if line == "" {
				continue
			}
			if rest, ok := strings.CutPrefix(line, "scenario "); ok {
				id, title, _ := strings.Cut(rest, " ")
				out = append(out, scenario{id: id, section: section, title: title, file: f})
				cur = &out[len(out)-1]
				continue
			}
			if cur == nil {
				t.Fatalf("%s:%d: line outside a scenario", f, i+1)
			}
			cur.lines = append(cur.lines, scenarioLine{no: i + 1, text: line})
		}
	}
	return out
}

func TestScenarios(t *testing.T) {
	all := loadScenarios(t)
	seen := map[int]string{}
	for _, sc := range all {
		n, err := strconv.Atoi(sc.id)
		if err != nil {
			continue // a profile variant of a numbered scenario
		}
		if prev, dup := seen[n]; dup {
			t.Errorf("scenario %d defined twice (%s, %s)", n, prev, sc.file)
		}
		seen[n] = sc.file
	}
	var missing []int
	for i := 1; i <= scenarioCount; i++ {
		if _, ok := seen[i]; !ok {
			missing = append(missing, i)
		}
	}
	if len(seen) != scenarioCount || len(missing) > 0 {
		t.Errorf("%d numbered scenarios, want %d; missing %v", len(seen), scenarioCount, missing)
	}
	for _, sc := range all {
		t.Run(sc.section+sc.id, func(t *testing.T) {
			if len(sc.lines) == 0 {
				t.Fatalf("scenario %s %q has no steps", sc.id, sc.title)
			}
			runScenario(t, sc)
		})
	}
}

type runner struct {
	t       *testing.T
	sc      scenario
	line    scenarioLine
	profile Profile
	st      State
	nexus   map[string]Nexus
	steps   int
}

func defaultNexus(i int) Nexus {
	return Nexus{Initiator: ISCSIInitiator(fmt.Sprintf("iqn.1994-05.com.example:i%d", i), fmt.Sprintf("00023d%06d", i)), RTPI: 1}
}

func runScenario(t *testing.T, sc scenario) {
	r := &runner{t: t, sc: sc, profile: LIO(), nexus: map[string]Nexus{}}
	for i := 1; i <= 4; i++ {
		r.nexus[fmt.Sprintf("I%d", i)] = defaultNexus(i)
	}
	for _, l := range sc.lines {
		r.line = l
		r.step(l.text)
	}
	if r.steps == 0 {
		t.Fatalf("scenario %s ran no command", sc.id)
	}
	if err := r.st.Validate(); err != nil {
		t.Errorf("final state: %v", err)
	}
}

func (r *runner) fatalf(format string, a ...any) {
	r.t.Helper()
	r.t.Fatalf("%s:%d: %s: %s", r.sc.file, r.line.no, r.line.text, fmt.Sprintf(format, a...))
}

func (r *runner) errorf(format string, a ...any) {
	r.t.Helper()
	r.t.Errorf("%s:%d: %s: %s", r.sc.file, r.line.no, r.line.text, fmt.Sprintf(format, a...))
}

func (r *runner) step(text string) {
	f := strings.Fields(text)
	switch f[0] {
	case "profile":
		switch f[1] {
		case "lio":
			r.profile = LIO()
		case "spc4":
			r.profile = SPC4()
		default:
			r.fatalf("unknown profile")
		}
		return
	case "port":
		r.port(f[1:])
		return
	case "nexus":
		r.defineNexus(f[1:])
		return
	case "RESTART":
		PowerOn(r.profile, &r.st)
		b, err := r.st.MarshalBinary()
		if err != nil {
			r.fatalf("marshal: %v", err)
		}
		var n State
		if err := n.UnmarshalBinary(b); err != nil {
			r.fatalf("unmarshal: %v", err)
		}
		r.st = n
		return
	}
	cmd, exp, ok := strings.Cut(text, "=>")
	if !ok {
		r.fatalf("no => expectation")
	}
	cf := strings.Fields(cmd)
	if len(cf) < 2 {
		r.fatalf("want <nexus> <command>")
	}
	for _, args := range expand(cf[2:]) {
		r.steps++
		r.run(cf[0], cf[1], args, strings.TrimSpace(exp))
	}
}

// expand returns one argument list per combination of a|b|c and a..b values.
func expand(args []string) [][]string {
	out := [][]string{nil}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		var vals []string
		switch {
		case ok && strings.Contains(v, ".."):
			lo, hi, _ := strings.Cut(v, "..")
			l, _ := strconv.ParseUint(lo, 0, 64)
			h, _ := strconv.ParseUint(hi, 0, 64)
			for x := l; x <= h; x++ {
				vals = append(vals, strconv.FormatUint(x, 10))
			}
		case ok && strings.Contains(v, "|"):
			vals = strings.Split(v, "|")
		default:
			var next [][]string
			for _, o := range out {
				next = append(next, append(append([]string(nil), o...), a))
			}
			out = next
			continue
		}
		var next [][]string
		for _, o := range out {
			for _, x := range vals {
				next = append(next, append(append([]string(nil), o...), k+"="+x))
			}
		}
		out = next
	}
	return out
}

func (r *runner) num(s string) uint64 {
	if k, ok := keyNames[s]; ok {
		return k
	}
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		r.fatalf("bad number %q", s)
	}
	return v
}

func protoOf(s string) (byte, bool) {
	switch s {
	case "iscsi":
		return scsi.ProtoISCSI, true
	case "fc":
		return scsi.ProtoFC, true
	case "sas":
		return scsi.ProtoSAS, true
	}
	return 0, false
}

func (r *runner) port(args []string) {
	pt := Port{Protocol: scsi.ProtoISCSI}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "rtpi":
			pt.RTPI = uint16(r.num(v))
		case "proto":
			p, ok := protoOf(v)
			if !ok {
				r.fatalf("bad protocol")
			}
			pt.Protocol = p
		case "acl":
			pt.Initiators = []Initiator{}
			if v != "none" {
				for _, n := range strings.Split(v, ",") {
					pt.Initiators = append(pt.Initiators, r.nx(n).Initiator)
				}
			}
		default:
			r.fatalf("bad port argument %q", a)
		}
	}
	r.st.Ports = append(r.st.Ports, pt)
}

func (r *runner) defineNexus(args []string) {
	if len(args) < 3 {
		r.fatalf("want nexus <In> <proto> <name>")
	}
	var n Nexus
	n.RTPI = 1
	switch args[1] {
	case "iscsi":
		n.Initiator = ISCSIInitiator(args[2], "")
	case "fc":
		n.Initiator = FCInitiator(r.num(args[2]))
	case "sas":
		n.Initiator = SASInitiator(r.num(args[2]))
	default:
		r.fatalf("bad protocol")
	}
	for _, a := range args[3:] {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "isid":
			n.Initiator.ISID = strings.ToLower(v)
		case "rtpi":
			n.RTPI = uint16(r.num(v))
		default:
			r.fatalf("bad nexus argument %q", a)
		}
	}
	r.nexus[args[0]] = n
}

// nx resolves "I2" or "I2@2" (I2 through the port with RTPI 2).
func (r *runner) nx(s string) Nexus {
	name, port, hasPort := strings.Cut(s, "@")
	n, ok := r.nexus[name]
	if !ok {
		r.fatalf("unknown nexus %q", name)
	}
	if hasPort {
		n.RTPI = uint16(r.num(port))
	}
	return n
}

// tid encodes the TransportID of nexus s with the scsi package's encoder (an
// implementation independent of the engine's LIO encoder).
func (r *runner) tid(s string) []byte {
	i := r.nx(s).Initiator
	var t scsi.TransportID
	switch i.Protocol {
	case scsi.ProtoISCSI:
		if i.ISID == "" {
			t = scsi.ISCSITransportID(i.Name)
		} else {
			t = scsi.ISCSIPortTransportID(i.Name, i.ISID)
		}
	case scsi.ProtoFC:
		t = scsi.FCTransportID(i.Addr)
	case scsi.ProtoSAS:
		t = scsi.SASTransportID(i.Addr)
	}
	b, err := t.Encode()
	if err != nil {
		r.fatalf("TransportID of %s: %v", s, err)
	}
	return b
}

var prOutSA = map[string]byte{
	"REGISTER": scsi.SARegister, "RESERVE": scsi.SAReserve, "RELEASE": scsi.SARelease,
	"CLEAR": scsi.SAClear, "PREEMPT": scsi.SAPreempt, "PA": scsi.SAPreemptAndAbort,
	"RIEK": scsi.SARegisterAndIgnoreExisting, "MOVE": scsi.SARegisterAndMove, "PROUT": 0,
}

var prInSA = map[string]byte{
	"RK": scsi.SAReadKeys, "RR": scsi.SAReadReservation, "RCAP": scsi.SAReportCapabilities,
	"RFS": scsi.SAReadFullStatus, "PRIN": 0,
}

// otherCDB builds the CDB of a non-PR command by name.
var otherCDB = map[string][]byte{
	"TUR":              {0x00, 0, 0, 0, 0, 0},
	"INQUIRY":          {0x12, 0, 0, 0, 0x24, 0},
	"REPORT_LUNS":      {0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0},
	"REQUEST_SENSE":    {0x03, 0, 0, 0, 0x12, 0},
	"LOG_SENSE":        {0x4d, 0, 0, 0, 0, 0, 0, 0x10, 0, 0},
	"READ_CAPACITY10":  {0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	"READ_CAPACITY16":  {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0},
	"MODE_SENSE6":      {0x1a, 0, 0x3f, 0, 0xff, 0},
	"READ10":           {0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0},
	"WRITE10":          {0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0},
	"READ16":           {0x88, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0},
	"VERIFY10":         {0x2f, 0, 0, 0, 0, 1, 0, 0, 1, 0},
	"SYNC_CACHE10":     {0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	"UNMAP":            {0x42, 0, 0, 0, 0, 0, 0, 0, 0x18, 0},
	"WRITE_SAME10":     {0x41, 0, 0, 0, 0, 1, 0, 0, 1, 0},
	"RESERVE6":         {0x16, 0, 0, 0, 0, 0},
	"RELEASE6":         {0x17, 0, 0, 0, 0, 0},
	"MAINT_IN_RTPG":    {0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
	"MAINT_IN_UNKNOWN": {0xa3, 0x1f, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
}

func (r *runner) run(who, name string, args []string, exp string) {
	n := r.nx(who)
	var res Result
	var isPRIn bool
	var cdb []byte
	if sa, ok := prOutSA[name]; ok {
		cdb, param := r.prOut(sa, name == "MOVE", args)
		res = Execute(r.profile, &r.st, n, cdb, param)
	} else if sa, ok := prInSA[name]; ok {
		isPRIn = true
		alloc := uint64(8192)
		for _, a := range args {
			k, v, _ := strings.Cut(a, "=")
			switch k {
			case "alloc":
				alloc = r.num(v)
			case "sa":
				sa = byte(r.num(v))
			default:
				r.fatalf("bad PR IN argument %q", a)
			}
		}
		c := scsi.PRInCDB(sa, uint16(alloc))
		cdb = c[:]
		res = Execute(r.profile, &r.st, n, cdb, nil)
		if len(res.Data) > int(alloc) {
			r.errorf("PR IN returned %d bytes, allocation length %d", len(res.Data), alloc)
		}
	} else if c, ok := otherCDB[name]; ok {
		if len(args) != 0 {
			r.fatalf("%s takes no arguments", name)
		}
		res = CheckAccess(r.profile, &r.st, n, c)
	} else {
		r.fatalf("unknown command %q", name)
	}
	if err := r.st.Validate(); err != nil {
		r.errorf("state after command: %v", err)
	}
	r.check(res, isPRIn, exp)
}

// prOut builds the CDB and parameter list of a PR OUT command.
func (r *runner) prOut(sa byte, move bool, args []string) ([]byte, []byte) {
	var rk, sark uint64
	var typ, scope byte
	byte2 := -1
	var flags20, flags17 byte
	var tids []byte
	haveTID := false
	pll, tpdl := int64(-1), int64(-1)
	rtpi := uint16(1)
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "rk":
			rk = r.num(v)
		case "sark":
			sark = r.num(v)
		case "type":
			typ = byte(r.num(v))
		case "scope":
			scope = byte(r.num(v))
		case "byte2":
			byte2 = int(r.num(v))
		case "sa":
			sa = byte(r.num(v))
		case "pll":
			pll = int64(r.num(v))
		case "tpdl":
			tpdl = int64(r.num(v))
		case "rtpi":
			rtpi = uint16(r.num(v))
		case "tid":
			haveTID = true
			for _, x := range strings.Split(v, ",") {
				tids = append(tids, r.tid(x)...)
			}
		case "spec_i_pt":
			flags20 |= scsi.ParamSpecIPT
		case "all_tg_pt":
			flags20 |= scsi.ParamAllTgPt
		case "aptpl":
			flags20 |= scsi.ParamAPTPL
			flags17 |= scsi.MoveAPTPL
		case "unreg":
			flags17 |= scsi.MoveUnreg
		default:
			r.fatalf("bad PR OUT argument %q", a)
		}
	}
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:8], rk)
	binary.BigEndian.PutUint64(p[8:16], sark)
	if move {
		p[17] = flags17
		binary.BigEndian.PutUint16(p[18:20], rtpi)
		if tpdl < 0 {
			tpdl = int64(len(tids))
		}
		binary.BigEndian.PutUint32(p[20:24], uint32(tpdl))
		p = append(p, tids...)
	} else {
		p[20] = flags20
		if haveTID || tpdl >= 0 {
			if tpdl < 0 {
				tpdl = int64(len(tids))
			}
			p = binary.BigEndian.AppendUint32(p, uint32(tpdl))
			p = append(p, tids...)
		}
	}
	if pll >= 0 {
		q := make([]byte, pll)
		copy(q, p)
		p = q
	}
	c := scsi.PROutCDB(sa, scope, typ, uint32(len(p)))
	if byte2 >= 0 {
		c[2] = byte(byte2)
	}
	return c[:], p
}

func (r *runner) check(res Result, isPRIn bool, exp string) {
	r.t.Helper()
	f := strings.Fields(exp)
	if len(f) == 0 {
		r.fatalf("empty expectation")
	}
	got := describe(res)
	i := 1
	var want string
	switch f[0] {
	case "GOOD", "RC":
		want = f[0]
	case "CC":
		want = "CC " + strings.ToLower(f[1])
		i = 2
	case "UA":
		want = "CC 6/" + strings.ToLower(f[1])
		i = 2
	default:
		r.fatalf("bad expectation %q", f[0])
	}
	if got != want {
		r.errorf("got %s, want %s", got, want)
		return
	}
	for ; i < len(f); i++ {
		tok := f[i]
		if tok == "data" {
			want, err := hex.DecodeString(strings.Join(f[i+1:], ""))
			if err != nil {
				r.fatalf("bad data hex: %v", err)
			}
			if !bytes.Equal(res.Data, want) {
				r.errorf("data\n got % x\nwant % x", res.Data, want)
			}
			return
		}
		r.checkData(res.Data, tok, isPRIn)
	}
}

func describe(res Result) string {
	switch res.Status {
	case scsi.StatusGood:
		return "GOOD"
	case scsi.StatusReservationConflict:
		return "RC"
	case scsi.StatusCheckCondition:
		sn, ok := res.ParseSense()
		if !ok || !bytes.Equal(res.Sense, sn.Fixed()) {
			return fmt.Sprintf("CC with sense % x, not fixed format", res.Sense)
		}
		return fmt.Sprintf("CC %x/%02x/%02x", sn.Key, sn.ASC, sn.ASCQ)
	}
	return fmt.Sprintf("status %#x", res.Status)
}

func (r *runner) checkData(d []byte, tok string, isPRIn bool) {
	r.t.Helper()
	k, v, _ := strings.Cut(tok, "=")
	be32 := func(off int) uint64 {
		if len(d) < off+4 {
			r.errorf("%s: only %d bytes", tok, len(d))
			return 1<<64 - 1
		}
		return uint64(binary.BigEndian.Uint32(d[off:]))
	}
	switch {
	case k == "gen":
		if g := be32(0); g != r.num(v) {
			r.errorf("generation %d, want %s", g, v)
		}
	case k == "al":
		if a := be32(4); a != r.num(v) {
			r.errorf("ADDITIONAL LENGTH %d, want %s", a, v)
		}
	case k == "len":
		if uint64(len(d)) != r.num(v) {
			r.errorf("%d bytes, want %s", len(d), v)
		}
	case k == "keys":
		ks, err := scsi.DecodeKeys(d)
		if err != nil {
			r.errorf("READ KEYS: %v", err)
			return
		}
		var want []uint64
		if v != "-" {
			for _, x := range strings.Split(v, ",") {
				want = append(want, r.num(x))
			}
		}
		if fmt.Sprint(ks.Keys) != fmt.Sprint(want) && !(len(ks.Keys) == 0 && len(want) == 0) {
			r.errorf("keys %x, want %x", ks.Keys, want)
		}
		if int(ks.AdditionalLength) != 8*len(want) {
			r.errorf("ADDITIONAL LENGTH %d for %d keys", ks.AdditionalLength, len(want))
		}
	case k == "res":
		rv, err := scsi.DecodeReservation(d)
		if err != nil || !rv.Held {
			r.errorf("READ RESERVATION %+v, %v: want held", rv, err)
			return
		}
		key, typ, _ := strings.Cut(v, "/")
		if rv.Key != r.num(key) || uint64(rv.Type) != r.num(typ) || rv.Scope != 0 {
			r.errorf("reservation key %#x type %d scope %d, want %s", rv.Key, rv.Type, rv.Scope, v)
		}
	case k == "nores":
		rv, err := scsi.DecodeReservation(d)
		if err != nil || rv.Held || len(d) != 8 {
			r.errorf("READ RESERVATION %+v (%d bytes), %v: want not held", rv, len(d), err)
		}
	case k == "desc":
		fs, err := scsi.DecodeFullStatus(d)
		if err != nil {
			r.errorf("READ FULL STATUS: %v", err)
			return
		}
		if uint64(len(fs.Descriptors)) != r.num(v) {
			r.errorf("%d descriptors, want %s", len(fs.Descriptors), v)
		}
	case strings.HasPrefix(k, "@"):
		off := int(r.num(k[1:]))
		want, err := strconv.ParseUint(v, 16, 8)
		if err != nil {
			r.fatalf("bad byte %q", v)
		}
		if off >= len(d) {
			r.errorf("byte %d: only %d bytes", off, len(d))
		} else if uint64(d[off]) != want {
			r.errorf("byte %d = %02x, want %02x", off, d[off], want)
		}
	default:
		r.fatalf("bad data check %q", tok)
	}
	_ = isPRIn
}

// TestScenarioFilesSorted keeps the scenario files in §16 order, so that a
// reader finds scenario n after n-1.
func TestScenarioFilesSorted(t *testing.T) {
	all := loadScenarios(t)
	bySection := map[string][]int{}
	for _, sc := range all {
		if n, err := strconv.Atoi(sc.id); err == nil {
			bySection[sc.section] = append(bySection[sc.section], n)
		}
	}
	for s, ids := range bySection {
		if !sort.IntsAreSorted(ids) {
			t.Errorf("section %s: scenarios out of order: %v", s, ids)
		}
	}
}
