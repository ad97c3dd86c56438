package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

// registerAndReserve makes vm-a (key 0xa) hold a Write Exclusive reservation
// and vm-b (key 0xb) a registrant of f's LU, and returns the LU's name.
func registerAndReserve(t *testing.T, h *helper, db string, f *os.File) string {
	t.Helper()
	mustDo(t, h.a, f, scsi.PROutCDB(scsi.SARegister, 0, 0, 24), param(0, 0xa))
	mustDo(t, h.b, f, scsi.PROutCDB(scsi.SARegister, 0, 0, 24), param(0, 0xb))
	mustDo(t, h.a, f, scsi.PROutCDB(scsi.SAReserve, 0, scsi.TypeWriteExclusive, 24), param(0xa, 0))
	lus := result(t, ctlJSON(t, exitOK, "--db="+db, "list"))["lus"].([]any)
	if len(lus) != 1 {
		t.Fatalf("list: %v", lus)
	}
	return lus[0].(map[string]any)["lu"].(string)
}

// TestWhileHelperServes: list, show and clear on the SQLite file a running
// helper serves; after the clear the helper's next commands see exactly what
// a PR CLEAR leaves: no keys, one more generation, and RESERVATIONS PREEMPTED
// for each nexus that was registered.
func TestWhileHelperServes(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "pr.db")
	h := startHelper(t, "--db="+db)
	f := image(t, dir, "disk.img")
	lu := registerAndReserve(t, h, db, f)
	if !strings.HasPrefix(lu, "file:") {
		t.Fatalf("LU name %q", lu)
	}

	item := result(t, ctlJSON(t, exitOK, "--db="+db, "list"))["lus"].([]any)[0].(map[string]any)
	for k, want := range map[string]any{"generation": 2.0, "registrations": 2.0, "holder": "iqn.2026-01.test:vm-a@1",
		"holder_key": "0xa", "type": 1.0, "type_name": "Write Exclusive"} {
		if item[k] != want {
			t.Errorf("list: %s = %v, want %v", k, item[k], want)
		}
	}
	if _, err := timeOf(item["changed"]); err != nil {
		t.Errorf("list: changed: %v", err)
	}
	code, out, _ := ctl(t, "", "--db="+db, "list")
	if code != 0 || !strings.Contains(out, lu) || !strings.Contains(out, "iqn.2026-01.test:vm-a@1") || !strings.Contains(out, "WE") {
		t.Fatalf("list: %d %q", code, out)
	}

	// show: what READ FULL STATUS through the helper returns, decoded.
	data := mustDo(t, h.b, f, scsi.PRInCDB(scsi.SAReadFullStatus, 8192), nil)
	fs, err := scsi.DecodeFullStatus(data)
	if err != nil {
		t.Fatal(err)
	}
	show := result(t, ctlJSON(t, exitOK, "--db="+db, "show", lu))
	full := show["full_status"].(map[string]any)
	descs := full["descriptors"].([]any)
	if uint32(full["generation"].(float64)) != fs.Generation || len(descs) != len(fs.Descriptors) {
		t.Fatalf("show: %v, helper: %+v", full, fs)
	}
	for i, d := range fs.Descriptors {
		got := descs[i].(map[string]any)
		if got["key"] != fmt.Sprintf("0x%x", d.Key) || got["r_holder"] != d.Holder || uint16(got["relative_target_port"].(float64)) != d.RelativeTargetPort ||
			got["transport_id"] != d.TransportID.String() {
			t.Errorf("show descriptor %d: %v, helper: %+v", i, got, d)
		}
	}
	code, out, _ = ctl(t, "", "--db="+db, "show", lu)
	if code != 0 || !strings.Contains(out, "<< Reservation holder >>") || !strings.Contains(out, "iSCSI name: iqn.2026-01.test:vm-b") {
		t.Fatalf("show: %d %q", code, out)
	}

	// clear, declined: nothing changes.
	if code, _, errOut := ctl(t, "n\n", "--db="+db, "clear", lu); code != exitSyntax || !strings.Contains(errOut, "nothing changed") {
		t.Fatalf("declined clear: %d %q", code, errOut)
	}
	if code, _, _ := ctl(t, "", "--db="+db, "clear", lu); code != exitSyntax {
		t.Fatalf("clear without an answer: %d", code)
	}
	if g := result(t, ctlJSON(t, exitOK, "--db="+db, "show", lu))["full_status"].(map[string]any)["generation"]; g != 2.0 {
		t.Fatalf("generation after a declined clear: %v", g)
	}
	// Confirmed.
	code, out, _ = ctl(t, "y\n", "--db="+db, "clear", lu)
	if code != 0 || !strings.Contains(out, "generation 0x2 -> 0x3") || !strings.Contains(out, "iqn.2026-01.test:vm-b@2") {
		t.Fatalf("clear: %d %q", code, out)
	}
	for _, sock := range []string{h.a, h.b} {
		st, sn, _ := do(t, sock, f, scsi.PRInCDB(scsi.SAReadKeys, 8192), nil)
		if st != scsi.StatusCheckCondition || sn.Key != scsi.KeyUnitAttention || sn.ASC != 0x2a || sn.ASCQ != 0x03 {
			t.Fatalf("READ KEYS via %s after clear: %s %v, want UNIT ATTENTION 2A/03", filepath.Base(sock), scsi.StatusName(st), sn)
		}
	}
	keys, err := scsi.DecodeKeys(mustDo(t, h.a, f, scsi.PRInCDB(scsi.SAReadKeys, 8192), nil))
	if err != nil || keys.Generation != 3 || len(keys.Keys) != 0 {
		t.Fatalf("READ KEYS after clear: %+v %v", keys, err)
	}
	// The helper goes on: vm-b registers and reserves as on a new LU.
	mustDo(t, h.b, f, scsi.PROutCDB(scsi.SARegister, 0, 0, 24), param(0, 0xbb))
	mustDo(t, h.b, f, scsi.PROutCDB(scsi.SAReserve, 0, scsi.TypeExclusiveAccess, 24), param(0xbb, 0))
	j := result(t, ctlJSON(t, exitOK, "--db="+db, "clear", lu, "--force"))
	if j["changed"] != true || j["registrations_removed"] != 1.0 || j["reservation_released"] != true {
		t.Fatalf("clear --force: %v", j)
	}
	// Nothing to clear now: exit 0, unchanged.
	if j := result(t, ctlJSON(t, exitOK, "--db="+db, "clear", lu, "--force")); j["changed"] != false {
		t.Fatalf("second clear: %v", j)
	}
	if code, _, errOut := ctl(t, "", "--db="+db, "show", "naa.600140500000000000000000000000ff"); code != exitNotFound || !strings.Contains(errOut, "no LU") {
		t.Fatalf("show of an absent LU: %d %q", code, errOut)
	}
}

// TestPurge: of three LUs the helper served, the one whose image was deleted
// is removed; a dry run changes nothing; an LU named by a rule's id= and one
// whose device is present are kept; an absent device's LU is removed.
func TestPurge(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "pr.db")
	h := startHelper(t, "--db="+db)
	keep, del := image(t, dir, "keep.img"), image(t, dir, "gone.img")
	for _, f := range []*os.File{keep, del} {
		mustDo(t, h.a, f, scsi.PROutCDB(scsi.SARegister, 0, 0, 24), param(0, 0xa))
	}
	// Two LUs a helper cannot make here: a rule's id= and a SCSI device that
	// this host does not have, imported.
	doc := `{"format":"prhelper-state","version":1,"lus":[
	  {"lu":"naa.60014050000000000000000000000bad","state":{"v":1,"generation":1}},
	  {"lu":"shared-disk-1","state":{"v":1,"generation":4}}]}`
	if code, _, _ := ctl(t, doc, "--db="+db, "import"); code != 0 {
		t.Fatalf("import: %d", code)
	}
	var delLU string
	for _, it := range result(t, ctlJSON(t, exitOK, "--db="+db, "list"))["lus"].([]any) {
		name := it.(map[string]any)["lu"].(string)
		st, _ := os.Stat(del.Name())
		if f := strings.Split(name, ":"); len(f) >= 4 && f[0] == "file" && f[3] == fmt.Sprint(inode(st)) {
			delLU = name
		}
	}
	if delLU == "" {
		t.Fatal("no LU for gone.img")
	}
	del.Close()
	if err := os.Remove(del.Name()); err != nil {
		t.Fatal(err)
	}

	j := result(t, ctlJSON(t, exitOK, "--db="+db, "purge", "--dry-run", "--search="+dir))
	verdicts := map[string]string{}
	for _, it := range j["lus"].([]any) {
		m := it.(map[string]any)
		verdicts[m["lu"].(string)] = m["verdict"].(string)
		if m["removed"] != false {
			t.Errorf("dry run removed %v", m)
		}
	}
	want := map[string]string{delLU: "gone", "naa.60014050000000000000000000000bad": "gone", "shared-disk-1": "unknown"}
	for lu, v := range want {
		if verdicts[lu] != v {
			t.Errorf("purge --dry-run: %s is %q, want %q (%v)", lu, verdicts[lu], v, verdicts)
		}
	}
	if len(verdicts) != 4 {
		t.Fatalf("purge --dry-run saw %v", verdicts)
	}
	if n := len(result(t, ctlJSON(t, exitOK, "--db="+db, "list"))["lus"].([]any)); n != 4 {
		t.Fatalf("after the dry run: %d LUs", n)
	}
	code, out, _ := ctl(t, "", "--db="+db, "purge", "--search", dir)
	if code != 0 || !strings.Contains(out, "2 of 4 LU(s) removed") || !strings.Contains(out, "removed      "+delLU) {
		t.Fatalf("purge: %d %q", code, out)
	}
	var left []string
	for _, it := range result(t, ctlJSON(t, exitOK, "--db="+db, "list"))["lus"].([]any) {
		left = append(left, it.(map[string]any)["lu"].(string))
	}
	if len(left) != 2 || left[1] != "shared-disk-1" || !strings.HasPrefix(left[0], "file:") {
		t.Fatalf("left after purge: %v", left)
	}
	// The image that is still there keeps its registration in the helper.
	keys, err := scsi.DecodeKeys(mustDo(t, h.a, keep, scsi.PRInCDB(scsi.SAReadKeys, 8192), nil))
	if err != nil || len(keys.Keys) != 1 || keys.Keys[0] != 0xa {
		t.Fatalf("READ KEYS of keep.img after purge: %+v %v", keys, err)
	}
}

// TestErrors: the exit statuses of doc.go.
func TestErrors(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "pr.db")
	for _, c := range []struct {
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"", []string{}, exitSyntax, "no command"},
		{"", []string{"frob"}, exitSyntax, "unknown command"},
		{"", []string{"show"}, exitSyntax, "needs the LU's name"},
		{"", []string{"list", "extra"}, exitSyntax, "unexpected arguments"},
		{"", []string{"--db=x", "--etcd-endpoints=http://127.0.0.1:1", "list"}, exitSyntax, "give one store"},
		{"", []string{"--etcd-prefix=/p/", "list"}, exitSyntax, "need --etcd-endpoints"},
		{"", []string{"--dry-run", "list"}, exitSyntax, "--dry-run is for purge"},
		{"", []string{"--db=" + db, "list"}, exitFile, "no state database"},
		{"{", []string{"--db=" + db, "import"}, exitMalformed, "not an exported state document"},
		{`{"format":"prhelper-state","version":1,"lus":[{"lu":"x","state":{"v":1,"generation":1,"registrations":[{"nexus":{"initiator":{"proto":5,"name":"i"},"rtpi":1},"key":0}]}}]}`,
			[]string{"--db=" + db, "import"}, exitMalformed, "key 0"},
		{"", []string{"--db=" + db, "import", filepath.Join(dir, "missing.json")}, exitFile, "no such file"},
	} {
		code, _, errOut := ctl(t, c.stdin, c.args...)
		if code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("prhelperctl %v: exit %d %q, want %d and %q", c.args, code, errOut, c.code, c.msg)
		}
	}
	if code, out, _ := ctl(t, "", "--help"); code != 0 || !strings.Contains(out, "Usage: prhelperctl") {
		t.Fatalf("--help: %d", code)
	}
	for _, l := range strings.Split(usage(), "\n") {
		if len(l) > 80 {
			t.Errorf("--help line over 80 columns: %q", l)
		}
	}
}
