package dm

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// Lines of the lab's two-path map as Linux 6.1 printed them (internal/kernel/dm/testdata/lab.sh,
// TestLab; the same as `dmsetup table|status`): multipathd 0.9.4 with ALUA
// puts both paths in one service-time group; then the status after sda's SCSI
// device was set offline, and after it was set running again.
const (
	labTable            = "1 queue_if_no_path 1 alua 1 1 service-time 0 2 2 8:0 1 1 8:16 1 1"
	labStatus           = "2 0 1 0 1 1 A 0 2 2 8:0 A 0 0 1 8:16 A 0 0 1"
	labStatusFailed     = "2 0 1 0 1 1 A 0 2 2 8:0 F 1 0 1 8:16 A 0 0 1"
	labStatusReinstated = "2 0 1 0 1 1 A 0 2 2 8:0 A 1 0 1 8:16 A 0 0 1"
)

// A failover map (path_grouping_policy failover: one path per group), in the
// shape multipath_status prints it.
const (
	failoverTable  = "0 0 2 1 service-time 0 1 2 8:16 1 1 service-time 0 1 2 8:32 1 1"
	failoverStatus = "2 0 0 0 2 1 A 0 1 2 8:16 A 0 0 1 E 0 1 2 8:32 A 0 0 1"
)

// Table lines in the shapes dm-mpath.c multipath_status (STATUSTYPE_TABLE)
// prints with each path selector of drivers/md/dm-ps-*.c.
var tableSeeds = []string{
	failoverTable,
	"1 queue_if_no_path 0 1 1 service-time 0 2 2 8:16 1 1 8:32 1 1 ",
	"4 queue_if_no_path pg_init_retries 50 retain_attached_hw_handler 1 alua 2 1 service-time 0 1 2 8:16 1 1 service-time 0 1 2 8:32 1 1",
	"2 queue_mode bio 0 1 1 round-robin 0 2 1 8:16 1000 8:32 1000",
	"0 0 1 1 queue-length 0 2 1 65:0 1 65:16 1",
	"0 0 1 1 historical-service-time 0 1 1 259:1048575 1",
	"0 0 0 0",
	labTable,
}

var statusSeeds = []string{
	failoverStatus,
	"2 0 0 0 1 1 A 0 2 2 8:16 A 0 0 1 8:32 F 3 0 1 ",
	"2 0 1 0 2 2 D 0 1 2 8:16 F 1 0 1 A 0 1 2 8:32 A 0 -4096 1",
	"2 0 0 0 1 1 A 0 2 0 8:16 A 0 8:32 A 0",
	"2 0 0 0 1 1 A 0 2 1 65:0 A 0 0 65:16 A 0 3",
	"2 1 0 0 0 0",
	labStatus,
	labStatusFailed,
	labStatusReinstated,
}

func TestParseMultipathTable(t *testing.T) {
	for _, c := range []struct {
		line string
		want MultipathTable
	}{
		{labTable, MultipathTable{
			Features: []string{"queue_if_no_path"}, HWHandler: []string{"alua"}, InitialGroup: 1,
			Groups: []TableGroup{{"service-time", []string{}, []TablePath{
				{Dev{8, 0}, []string{"1", "1"}}, {Dev{8, 16}, []string{"1", "1"}},
			}}},
		}},
		{failoverTable, MultipathTable{
			Features: []string{}, HWHandler: []string{}, InitialGroup: 1,
			Groups: []TableGroup{
				{"service-time", []string{}, []TablePath{{Dev{8, 16}, []string{"1", "1"}}}},
				{"service-time", []string{}, []TablePath{{Dev{8, 32}, []string{"1", "1"}}}},
			},
		}},
		{tableSeeds[1], MultipathTable{
			Features: []string{"queue_if_no_path"}, HWHandler: []string{}, InitialGroup: 1,
			Groups: []TableGroup{{"service-time", []string{}, []TablePath{
				{Dev{8, 16}, []string{"1", "1"}}, {Dev{8, 32}, []string{"1", "1"}},
			}}},
		}},
		{tableSeeds[2], MultipathTable{
			Features:  []string{"queue_if_no_path", "pg_init_retries", "50", "retain_attached_hw_handler"},
			HWHandler: []string{"alua"}, InitialGroup: 1,
			Groups: []TableGroup{
				{"service-time", []string{}, []TablePath{{Dev{8, 16}, []string{"1", "1"}}}},
				{"service-time", []string{}, []TablePath{{Dev{8, 32}, []string{"1", "1"}}}},
			},
		}},
		{tableSeeds[3], MultipathTable{
			Features: []string{"queue_mode", "bio"}, HWHandler: []string{}, InitialGroup: 1,
			Groups: []TableGroup{{"round-robin", []string{}, []TablePath{
				{Dev{8, 16}, []string{"1000"}}, {Dev{8, 32}, []string{"1000"}},
			}}},
		}},
		{tableSeeds[5], MultipathTable{
			Features: []string{}, HWHandler: []string{}, InitialGroup: 1,
			Groups: []TableGroup{{"historical-service-time", []string{}, []TablePath{
				{Dev{259, 1048575}, []string{"1"}},
			}}},
		}},
		{"0 0 0 0", MultipathTable{Features: []string{}, HWHandler: []string{}, Groups: []TableGroup{}}},
		{"0 0 1 1 service-time 2 a b 0 0", MultipathTable{
			Features: []string{}, HWHandler: []string{}, InitialGroup: 1,
			Groups: []TableGroup{{"service-time", []string{"a", "b"}, []TablePath{}}},
		}},
	} {
		t.Run(c.line, func(t *testing.T) {
			got, err := ParseMultipathTable(c.line)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseMultipathTableErrors(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"", "before feature count"},
		{"0", "before hardware handler count"},
		{"0 0", "before priority group count"},
		{"0 0 1", "priority group count 1 (word 3) but only 0 words follow"},
		{"0 0 0", "before group number"},
		{"x 0 0 0", `feature count "x"`},
		{"-1 0 0 0", `feature count "-1"`},
		{"4294967296 0 0 0", "is not a number"},
		{"4294967295 0 0 0", "only 3 words follow"},
		{"4 queue_if_no_path 0 0", "only 3 words follow"},
		{"0 0 1 0 service-time 0 1 2 8:16 1 1", "group number 0"},
		{"0 0 1 2 service-time 0 1 2 8:16 1 1", "group number 2"},
		{"0 0 0 1", "group number 1"},
		{"0 0 2 1 service-time 0 1 2 8:16 1 1", "group 2: malformed device-mapper data: line ends before path selector"},
		{"0 0 1 1 service-time 0 1 2 8:16 1", "1 paths of 3 words each but only 2"},
		{"0 0 1 1 service-time 0 1 4294967295 8:16 1 1", "1 paths of 4294967296 words"},
		{"0 0 1 1 service-time 0 1 x 8:16", "path argument count"},
		{"0 0 1 1 service-time 0 1 0 816", `device "816"`},
		{"0 0 1 1 service-time 0 1 0 8:x", `device "8:x"`},
		{"0 0 1 1 service-time 0 1 0 8:16 extra", "1 unexpected words"},
		{"0 0 0 0 extra", `from word 5 "extra"`},
	} {
		t.Run(c.line, func(t *testing.T) {
			_, err := ParseMultipathTable(c.line)
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrMalformed mentioning %q", err, c.want)
			}
		})
	}
}

func TestParseMultipathStatus(t *testing.T) {
	for _, c := range []struct {
		line string
		want MultipathStatus
	}{
		{labStatusFailed, MultipathStatus{
			Features: []string{"0", "1"}, HWHandler: []string{}, Group: 1,
			Groups: []StatusGroup{{GroupActive, []string{}, []StatusPath{
				{Dev{8, 0}, false, 1, []string{"0", "1"}},
				{Dev{8, 16}, true, 0, []string{"0", "1"}},
			}}},
		}},
		{failoverStatus, MultipathStatus{
			Features: []string{"0", "0"}, HWHandler: []string{}, Group: 1,
			Groups: []StatusGroup{
				{GroupActive, []string{}, []StatusPath{{Dev{8, 16}, true, 0, []string{"0", "1"}}}},
				{GroupEnabled, []string{}, []StatusPath{{Dev{8, 32}, true, 0, []string{"0", "1"}}}},
			},
		}},
		{statusSeeds[1], MultipathStatus{
			Features: []string{"0", "0"}, HWHandler: []string{}, Group: 1,
			Groups: []StatusGroup{{GroupActive, []string{}, []StatusPath{
				{Dev{8, 16}, true, 0, []string{"0", "1"}},
				{Dev{8, 32}, false, 3, []string{"0", "1"}},
			}}},
		}},
		{statusSeeds[2], MultipathStatus{
			Features: []string{"0", "1"}, HWHandler: []string{}, Group: 2,
			Groups: []StatusGroup{
				{GroupDisabled, []string{}, []StatusPath{{Dev{8, 16}, false, 1, []string{"0", "1"}}}},
				{GroupActive, []string{}, []StatusPath{{Dev{8, 32}, true, 0, []string{"-4096", "1"}}}},
			},
		}},
		{statusSeeds[3], MultipathStatus{
			Features: []string{"0", "0"}, HWHandler: []string{}, Group: 1,
			Groups: []StatusGroup{{GroupActive, []string{}, []StatusPath{
				{Dev{8, 16}, true, 0, []string{}}, {Dev{8, 32}, true, 0, []string{}},
			}}},
		}},
		{"2 1 0 0 0 0", MultipathStatus{Features: []string{"1", "0"}, HWHandler: []string{}, Groups: []StatusGroup{}}},
	} {
		t.Run(c.line, func(t *testing.T) {
			got, err := ParseMultipathStatus(c.line)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseMultipathStatusErrors(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"", "before status argument count"},
		{"2 0 0", "before hardware handler status count"},
		{"3 0 0", "only 2 words follow"},
		{"2 0 0 0", "before priority group count"},
		{"2 0 0 0 1 1 X 0 1 2 8:16 A 0 0 1", `state "X"`},
		{"2 0 0 0 1 1 AE 0 1 2 8:16 A 0 0 1", `state "AE"`},
		{"2 0 0 0 1 1 A 0 1 2 8:16 B 0 0 1", `state "B"`},
		{"2 0 0 0 1 1 A 0 1 2 8:16 A -1 0 1", `fail count "-1"`},
		{"2 0 0 0 1 1 A 0 1 2 8:16 A 0 0", "1 paths of 5 words each but only 4"},
		{"2 0 0 0 1 1 A 0 1 0 8:16 A 0 0", "1 unexpected words"},
		{"2 0 0 0 1 1 A 0 1 0 sda A 0", `device "sda"`},
		{"2 0 0 0 1 0 A 0 1 0 8:16 A 0", "group number 0"},
		{"2 0 0 0 1 1 A 3 x y", "selector status count 3"},
	} {
		t.Run(c.line, func(t *testing.T) {
			_, err := ParseMultipathStatus(c.line)
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrMalformed mentioning %q", err, c.want)
			}
		})
	}
}

func TestMergePaths(t *testing.T) {
	mustTable := func(s string) MultipathTable {
		t.Helper()
		v, err := ParseMultipathTable(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	mustStatus := func(s string) MultipathStatus {
		t.Helper()
		v, err := ParseMultipathStatus(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	got, err := MergePaths(mustTable(failoverTable), mustStatus("2 0 0 0 2 2 E 0 1 2 8:16 F 2 0 1 A 0 1 2 8:32 A 0 0 1"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Path{
		{Dev: Dev{8, 16}, Group: 1, GroupState: GroupEnabled, Active: false, Failures: 2},
		{Dev: Dev{8, 32}, Group: 2, GroupState: GroupActive, Active: true, Failures: 0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	for _, c := range []struct{ table, status, want string }{
		{failoverTable, "2 0 0 0 1 1 A 0 2 2 8:16 A 0 0 1 8:32 A 0 0 1", "2 priority groups in the table, 1 in the status"},
		{failoverTable, "2 0 0 0 2 1 A 0 1 2 8:16 A 0 0 1 E 0 0 2", "group 2 has 1 paths in the table, 0 in the status"},
		{failoverTable, "2 0 0 0 2 1 A 0 1 2 8:16 A 0 0 1 E 0 1 2 8:48 A 0 0 1", "group 2 path 1 is 8:32 in the table, 8:48 in the status"},
	} {
		_, err := MergePaths(mustTable(c.table), mustStatus(c.status))
		if err == nil || !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("status %q: err = %v, want ErrMismatch mentioning %q", c.status, err, c.want)
		}
	}
}

func TestGroupStateString(t *testing.T) {
	for s, want := range map[GroupState]string{
		GroupActive: "active", GroupEnabled: "enabled", GroupDisabled: "disabled", 'Q': `GroupState('Q')`,
	} {
		if got := s.String(); got != want {
			t.Errorf("%c: %q, want %q", byte(s), got, want)
		}
	}
}

// formatTable writes t back in the kernel's table syntax.
func formatTable(t MultipathTable) string {
	var b strings.Builder
	list := func(l []string) {
		fmt.Fprintf(&b, "%d ", len(l))
		for _, w := range l {
			b.WriteString(w + " ")
		}
	}
	list(t.Features)
	list(t.HWHandler)
	fmt.Fprintf(&b, "%d %d ", len(t.Groups), t.InitialGroup)
	for _, g := range t.Groups {
		b.WriteString(g.Selector + " ")
		list(g.SelectorArgs)
		nargs := 0
		if len(g.Paths) > 0 {
			nargs = len(g.Paths[0].Args)
		}
		fmt.Fprintf(&b, "%d %d ", len(g.Paths), nargs)
		for _, p := range g.Paths {
			b.WriteString(p.Dev.String() + " " + strings.Join(p.Args, " ") + " ")
		}
	}
	return b.String()
}

// formatStatus writes s back in the kernel's status syntax.
func formatStatus(s MultipathStatus) string {
	var b strings.Builder
	list := func(l []string) {
		fmt.Fprintf(&b, "%d ", len(l))
		for _, w := range l {
			b.WriteString(w + " ")
		}
	}
	list(s.Features)
	list(s.HWHandler)
	fmt.Fprintf(&b, "%d %d ", len(s.Groups), s.Group)
	for _, g := range s.Groups {
		fmt.Fprintf(&b, "%c ", byte(g.State))
		list(g.SelectorStatus)
		nargs := 0
		if len(g.Paths) > 0 {
			nargs = len(g.Paths[0].SelectorStatus)
		}
		fmt.Fprintf(&b, "%d %d ", len(g.Paths), nargs)
		for _, p := range g.Paths {
			st := "F"
			if p.Active {
				st = "A"
			}
			fmt.Fprintf(&b, "%s %s %d %s ", p.Dev, st, p.Failures, strings.Join(p.SelectorStatus, " "))
		}
	}
	return b.String()
}

// FuzzParseMultipathTable checks that no line panics the parser, that errors
// wrap ErrMalformed, and that what parses formats back to the same table.
func FuzzParseMultipathTable(f *testing.F) {
	for _, s := range tableSeeds {
		f.Add(s)
	}
	f.Add("0 0 1 1 service-time 0 4294967295 4294967295 8:16")
	f.Fuzz(func(t *testing.T, line string) {
		v, err := ParseMultipathTable(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := ParseMultipathTable(formatTable(v))
		if err != nil {
			t.Fatalf("reformatted %q: %v", formatTable(v), err)
		}
		if !reflect.DeepEqual(again, v) {
			t.Fatalf("round trip: %+v, want %+v", again, v)
		}
	})
}

// FuzzParseMultipathStatus is FuzzParseMultipathTable for status lines.
func FuzzParseMultipathStatus(f *testing.F) {
	for _, s := range statusSeeds {
		f.Add(s)
	}
	f.Add("2 0 0 0 1 1 A 0 4294967295 4294967295 8:16 A 0")
	f.Fuzz(func(t *testing.T, line string) {
		v, err := ParseMultipathStatus(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := ParseMultipathStatus(formatStatus(v))
		if err != nil {
			t.Fatalf("reformatted %q: %v", formatStatus(v), err)
		}
		if !reflect.DeepEqual(again, v) {
			t.Fatalf("round trip: %+v, want %+v", again, v)
		}
	})
}

// FuzzMergePaths merges fuzzed table and status lines: never a panic, and on
// success one Path per table path with the status's state.
func FuzzMergePaths(f *testing.F) {
	f.Add(labTable, labStatus)
	f.Add(labTable, labStatusFailed)
	f.Add(failoverTable, failoverStatus)
	f.Add(tableSeeds[1], statusSeeds[1])
	f.Add(failoverTable, statusSeeds[2])
	f.Fuzz(func(t *testing.T, tl, sl string) {
		tb, err1 := ParseMultipathTable(tl)
		st, err2 := ParseMultipathStatus(sl)
		if err1 != nil || err2 != nil {
			return
		}
		paths, err := MergePaths(tb, st)
		if err != nil {
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("error %v does not wrap ErrMismatch", err)
			}
			return
		}
		i := 0
		for g, grp := range st.Groups {
			for _, p := range grp.Paths {
				q := paths[i]
				if q.Dev != p.Dev || q.Group != g+1 || q.Active != p.Active || q.Failures != p.Failures || q.GroupState != grp.State {
					t.Fatalf("path %d = %+v, status has %+v in group %d", i, q, p, g+1)
				}
				i++
			}
		}
		if i != len(paths) {
			t.Fatalf("%d paths, status lists %d", len(paths), i)
		}
	})
}
