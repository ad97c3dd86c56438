package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

func rtpisFor(n int) []uint16 {
	r := make([]uint16, n)
	for i := range r {
		r[i] = uint16(i + 1)
	}
	return r
}

func TestGenerateDeterministic(t *testing.T) {
	for _, n := range []int{2, 3, 4} {
		a, err := Generate(42, rtpisFor(n), 2000)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Generate(42, rtpisFor(n), 2000)
		c, _ := Generate(43, rtpisFor(n), 2000)
		same, differ := true, false
		for k := range a {
			if a[k].Path != b[k].Path || a[k].CDB != b[k].CDB || !bytes.Equal(a[k].Param, b[k].Param) || a[k].Desc != b[k].Desc {
				same = false
			}
			if a[k].CDB != c[k].CDB || !bytes.Equal(a[k].Param, c[k].Param) {
				differ = true
			}
		}
		if !same {
			t.Errorf("n=%d: seed 42 gave two different sequences", n)
		}
		if !differ {
			t.Errorf("n=%d: seeds 42 and 43 gave the same sequence", n)
		}
	}
}

func TestNewGenBounds(t *testing.T) {
	for _, tc := range []struct {
		n  int
		ok bool
	}{{1, false}, {2, true}, {4, true}, {5, false}} {
		_, err := NewGen(1, rtpisFor(tc.n))
		if (err == nil) != tc.ok {
			t.Errorf("NewGen with %d initiators: err=%v, want ok=%v", tc.n, err, tc.ok)
		}
	}
}

// outcome names a result as the coverage table counts it.
func outcome(r pr.Result) string {
	if r.Status == scsi.StatusCheckCondition {
		s, _ := r.ParseSense()
		return s.String()
	}
	return scsi.StatusName(r.Status)
}

// TestCoverageOnEngine runs 2000 generated steps per seed and initiator count
// straight against the engine (LIO profile, the lab's ports) and requires every
// service action and type to have succeeded, the error classes to occur, and
// the state to stay valid.
func TestCoverageOnEngine(t *testing.T) {
	for _, n := range []int{2, 3, 4} {
		for _, seed := range []int64{1, 2, 3} {
			t.Run(fmt.Sprintf("n%d-seed%d", n, seed), func(t *testing.T) {
				g, err := NewGen(seed, rtpisFor(n))
				if err != nil {
					t.Fatal(err)
				}
				st := pr.State{Ports: LabPorts(rtpisFor(n))}
				seen := map[string]int{}
				for k := 1; k <= 2000; k++ {
					s := g.Next()
					if s.CDB[0] == scsi.OpPersistentReserveOut && len(s.Param) > 28 && s.Param[20]&0x08 != 0 {
						seenTID := map[string]bool{hex.EncodeToString(SASTransportID(InitiatorAddr(s.Path))): true}
						end := min(len(s.Param), 28+int(binary.BigEndian.Uint32(s.Param[24:28])))
						for off := 28; off+24 <= end && s.Param[off] == 0x06; off += 24 {
							h := hex.EncodeToString(s.Param[off : off+24])
							if seenTID[h] {
								t.Errorf("step %d (%s): SPEC_I_PT list names the caller or repeats an initiator without DupTIDs", k, s.Desc)
							}
							seenTID[h] = true
						}
					}
					if res := st.Reservation; s.CDB[0] == scsi.OpPersistentReserveOut && len(s.Param) == 0 && res != nil &&
						(res.Type == 1 || res.Type == 5 || res.Type == 7) && !res.Holder.Equal(g.Nexus(s.Path)) &&
						!slices.ContainsFunc(st.Registrations, func(r pr.Registration) bool { return r.Nexus.Equal(g.Nexus(s.Path)) }) {
						t.Errorf("step %d (%s): zero-length PR OUT from an unregistered nexus under Write Exclusive without ZeroLenWE", k, s.Desc)
					}
					r := pr.Execute(pr.LIO(), &st, g.Nexus(s.Path), s.CDB[:], s.Param)
					if err := st.Validate(); err != nil {
						t.Fatalf("step %d (%s): invalid state: %v", k, s.Desc, err)
					}
					o := outcome(r)
					seen[s.Kind()+" "+o]++
					seen["any "+o]++
					seen[s.Kind()]++
					if r.Status == scsi.StatusGood && s.CDB[0] == scsi.OpPersistentReserveOut {
						switch sa := s.CDB[1] & 0x1f; sa {
						case scsi.SAReserve, scsi.SAPreempt, scsi.SARegisterAndMove:
							seen[fmt.Sprintf("type%d GOOD", s.CDB[2]&0x0f)]++
						case scsi.SARegister, scsi.SARegisterAndIgnoreExisting:
							if len(s.Param) > 20 && s.Param[20]&0x08 != 0 {
								seen["SPEC_I_PT GOOD"]++
							}
							if len(s.Param) > 20 && s.Param[20]&0x04 != 0 {
								seen["ALL_TG_PT GOOD"]++
							}
							if len(s.Param) > 20 && s.Param[20]&0x01 != 0 {
								seen["APTPL GOOD"]++
							}
						}
					}
					if s.CDB[0] == scsi.OpPersistentReserveIn && scsi.TransferLength(s.CDB[:]) < 8 && r.Status == scsi.StatusCheckCondition {
						seen["small alloc CHECK"]++
					}
				}
				want := []string{
					"IN/READ_KEYS GOOD", "IN/READ_RESERVATION GOOD", "IN/REPORT_CAPABILITIES GOOD", "IN/READ_FULL_STATUS GOOD",
					"OUT/REGISTER GOOD", "OUT/RESERVE GOOD", "OUT/RELEASE GOOD", "OUT/CLEAR GOOD", "OUT/PREEMPT GOOD",
					"OUT/REGISTER_AND_IGNORE GOOD", "OUT/REGISTER_AND_MOVE GOOD", "OUT/PREEMPT_AND_ABORT",
					"OUT/REPLACE_LOST", "type1 GOOD", "type3 GOOD", "type5 GOOD", "type6 GOOD", "type7 GOOD", "type8 GOOD",
					"SPEC_I_PT GOOD", "ALL_TG_PT GOOD", "APTPL GOOD", "small alloc CHECK",
					"any RESERVATION CONFLICT",
					"any " + scsi.SenseInvalidParamLen.String(), "any " + scsi.SenseInvalidField.String(),
					"any " + (scsi.Sense{Key: 5, ASC: 0x26}).String(),
					"any " + (scsi.Sense{Key: 6, ASC: 0x2a, ASCQ: 3}).String(),
					"any " + (scsi.Sense{Key: 6, ASC: 0x2a, ASCQ: 4}).String(),
					"any " + (scsi.Sense{Key: 6, ASC: 0x2a, ASCQ: 5}).String(),
				}
				for _, w := range want {
					if seen[w] == 0 {
						t.Errorf("2000 steps never gave %q", w)
					}
				}
				t.Logf("GOOD %d, RESERVATION CONFLICT %d, CHECK CONDITION %d of 2000", seen["any GOOD"], seen["any RESERVATION CONFLICT"], 2000-seen["any GOOD"]-seen["any RESERVATION CONFLICT"])
				if seen["OUT/PREEMPT_AND_ABORT GOOD"] != 0 {
					t.Errorf("PREEMPT AND ABORT succeeded %d times; it must be sent only where LIO aborts nothing", seen["OUT/PREEMPT_AND_ABORT GOOD"])
				}
			})
		}
	}
}

// replay runs the sequence of a recording made by prgen -record in the lab
// against the engine with the lab's ports and compares every reply with LIO's
// as prhelper would send it (sense padded to 96 bytes, data cut to the
// allocation length). It returns the number of recorded steps, the header's
// step count and the first step that differs (0 if none), with both lines.
func replay(t *testing.T, file string) (lines, steps, first int, lio, engine string) {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() {
		t.Fatal("empty recording")
	}
	var seed int64
	var rt string
	var dup, own, zero, move bool
	hdr := sc.Text()
	if !strings.Contains(hdr, "move-no-unreg") {
		hdr += " move-no-unreg true" // recordings made before the option existed
	}
	if _, err := fmt.Sscanf(hdr, "# prgen seed %d steps %d rtpi %s dup-tids %t own-key-preempt %t zero-len-we %t move-no-unreg %t", &seed, &steps, &rt, &dup, &own, &zero, &move); err != nil {
		t.Fatalf("header %q: %v", sc.Text(), err)
	}
	rtpis, err := parseRTPIs(rt)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGen(seed, rtpis)
	if err != nil {
		t.Fatal(err)
	}
	_ = own // the own-key switch no longer changes the sequence
	g.DupTIDs, g.ZeroLenWE, g.MoveNoUnreg = dup, zero, move
	st := pr.State{Ports: LabPorts(rtpis)}
	for sc.Scan() {
		lines++
		s := g.Next()
		r := pr.Execute(pr.LIO(), &st, g.Nexus(s.Path), s.CDB[:], s.Param)
		got := wire.Reply{Status: r.Status, Data: r.Data}
		got.SetSense(r.Sense)
		if n := min(scsi.TransferLength(s.CDB[:]), wire.MaxData); len(got.Data) > n {
			got.Data = got.Data[:n]
		}
		line := recordLine(lines, &got)
		if first == 0 && strings.TrimSpace(line) != strings.TrimSpace(sc.Text()) {
			first, lio, engine = lines, sc.Text(), line+"   ("+s.Desc+")"
		}
	}
	return lines, steps, first, lio, engine
}

// TestLIORecordings replays the green runs recorded from LIO in the lab
// (testdata/lio-*.txt.gz, prgen -record in tests/emulate-vs-lio.sh): every
// reply of the engine must be LIO's, byte for byte.
func TestLIORecordings(t *testing.T) {
	files, _ := filepath.Glob("testdata/lio-*.txt.gz")
	if len(files) == 0 {
		t.Fatal("no recordings in testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			lines, steps, first, lio, engine := replay(t, f)
			if first != 0 {
				t.Fatalf("step %d:\n  lio:    %s\n  engine: %s", first, lio, engine)
			}
			if lines != steps {
				t.Errorf("recording has %d steps, header says %d", lines, steps)
			}
		})
	}
}

// TestFormerMismatches replays lab recordings that were cut at what was a
// difference between LIO and the engine (testdata/former-*.txt.gz): a
// SPEC_I_PT list naming the caller, where LIO registers one I_T nexus twice
// (seed 1007, step 339: READ KEYS with the caller's key three times), which
// the LIO profile now reproduces (pr.Profile.SpecIPTDuplicates,
// docs/spc4-pr.md §14 D27). Every recorded step, the last included, must match.
func TestFormerMismatches(t *testing.T) {
	files, _ := filepath.Glob("testdata/former-*.txt.gz")
	if len(files) != 1 {
		t.Fatalf("want 1 former-mismatch recording, have %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			lines, _, first, lio, engine := replay(t, f)
			if lines == 0 {
				t.Fatal("empty recording")
			}
			if first != 0 {
				t.Fatalf("step %d (of %d):\n  lio:    %s\n  engine: %s", first, lines, lio, engine)
			}
		})
	}
}

func TestParseRTPIs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []uint16
		ok   bool
	}{
		{"1,2", []uint16{1, 2}, true},
		{" 3, 7 ,9", []uint16{3, 7, 9}, true},
		{"0,1", nil, false},
		{"1,,2", nil, false},
		{"65536", nil, false},
		{"", nil, false},
	} {
		got, err := parseRTPIs(tc.in)
		if (err == nil) != tc.ok || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("parseRTPIs(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseRTPIs(f *testing.F) {
	for _, s := range []string{"1,2", "0", "65535,1", ",", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseRTPIs(s)
		if err != nil {
			return
		}
		parts := strings.Split(s, ",")
		if len(r) != len(parts) {
			t.Fatalf("%q: %d values from %d fields", s, len(r), len(parts))
		}
		for i, v := range r {
			if v == 0 || strconv.Itoa(int(v)) != strings.TrimLeft(strings.TrimSpace(parts[i]), "+0") {
				t.Fatalf("%q: value %d is %d", s, i, v)
			}
		}
	})
}

func TestSameReply(t *testing.T) {
	base := wire.Reply{Status: scsi.StatusGood, Data: []byte{1, 2, 3}}
	mod := func(f func(r *wire.Reply)) wire.Reply {
		r := base
		r.Data = append([]byte(nil), base.Data...)
		f(&r)
		return r
	}
	for _, tc := range []struct {
		name string
		b    wire.Reply
		want string
	}{
		{"same", mod(func(*wire.Reply) {}), ""},
		{"status", mod(func(r *wire.Reply) { r.Status = scsi.StatusReservationConflict }), "status differs"},
		{"size", mod(func(r *wire.Reply) { r.Data = r.Data[:2] }), "data size differs"},
		{"data", mod(func(r *wire.Reply) { r.Data[2] = 9 }), "data differs"},
		{"sense byte 40", mod(func(r *wire.Reply) { r.Sense[40] = 1 }), "sense differs"},
	} {
		if got := sameReply(&base, &tc.b); got != tc.want {
			t.Errorf("%s: sameReply = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPrintAndSeedPorts(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := run([]string{"-print", "-seed", "7", "-steps", "5", "-rtpi", "1,2"}, &out, &errb); rc != 0 {
		t.Fatalf("-print: rc %d: %s", rc, errb.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 6 {
		t.Errorf("-print -steps 5 printed %d lines:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "seed 7") {
		t.Errorf("-print does not name the seed:\n%s", out.String())
	}
	db := filepath.Join(t.TempDir(), "pr.db")
	args := []string{"-seed-db", db, "-lu", "x", "-rtpi", "3,5", "-steps", "0"}
	if rc := run(args, &out, &errb); rc != 0 {
		t.Fatalf("-seed-db: rc %d: %s", rc, errb.String())
	}
	s, err := sqlite.Open(db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Get(context.Background(), "lu/x")
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	var st pr.State
	if err := st.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if len(st.Ports) != 2 || st.Ports[1].RTPI != 5 || len(st.Ports[1].Initiators) != 1 || !st.Ports[1].Initiators[0].Equal(pr.SASInitiator(0x5001405b00000002)) {
		t.Errorf("stored ports %+v", st.Ports)
	}
	if rc := run(args, &out, &errb); rc == 0 {
		t.Error("-seed-db over an existing state succeeded")
	}
	if rc := run([]string{"-rtpi", "1"}, &out, &errb); rc == 0 {
		t.Error("one initiator accepted")
	}
	if rc := run([]string{"-rtpi", "1,2", "-lio", "/nonexistent"}, &out, &errb); rc == 0 {
		t.Error("missing devices accepted")
	}
}

func TestSASTransportID(t *testing.T) {
	got := hex.EncodeToString(SASTransportID(InitiatorAddr(2)))
	want := "06000000" + "5001405b00000003" + strings.Repeat("00", 12)
	if got != want {
		t.Errorf("SAS TransportID of path 3 = %s, want %s", got, want)
	}
}

// TestDump checks -print -dump: one line per step, the initiator index, the
// 16-byte CDB and the parameter list, which is exactly the CDB's PARAMETER
// LIST LENGTH for PR OUT ("-" when 0 or for PR IN), the same steps as
// Generate.
func TestDump(t *testing.T) {
	file := filepath.Join(t.TempDir(), "seq.txt")
	var out, errOut bytes.Buffer
	if rc := run([]string{"-print", "-rtpi", "1,2,3", "-seed", "14", "-steps", "300", "-dump", file}, &out, &errOut); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errOut.String())
	}
	want, err := Generate(14, []uint16{1, 2, 3}, 300)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d", len(lines), len(want))
	}
	for k, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("line %d: %q", k+1, l)
		}
		cdb, err := hex.DecodeString(f[1])
		if err != nil || !bytes.Equal(cdb, want[k].CDB[:]) || f[0] != strconv.Itoa(want[k].Path) {
			t.Fatalf("line %d: %q, want step %+v", k+1, l, want[k])
		}
		var param []byte
		if f[2] != "-" {
			if param, err = hex.DecodeString(f[2]); err != nil {
				t.Fatalf("line %d: %v", k+1, err)
			}
		}
		if !bytes.Equal(param, want[k].Param) {
			t.Fatalf("line %d: parameter list %x, want %x", k+1, param, want[k].Param)
		}
		if cdb[0] == 0x5f && len(param) != int(binary.BigEndian.Uint32(cdb[5:9])) {
			t.Fatalf("line %d: %d parameter bytes, CDB says %d", k+1, len(param), binary.BigEndian.Uint32(cdb[5:9]))
		}
	}
}
