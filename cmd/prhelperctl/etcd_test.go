package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/internal/store/etcd/etcdtest"
	"github.com/prhelper/prhelper/scsi"
)

// TestMoveSQLiteToEtcd: the state a helper made in SQLite, with a pending
// unit attention and a reservation, exported, imported into etcd while a
// helper serves etcd, and exported again, is the same document; the etcd
// helper then answers from it; import is idempotent, refuses to overwrite a
// changed LU without --replace, and list, show and clear work on etcd too.
func TestMoveSQLiteToEtcd(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "pr.db")
	h := startHelper(t, "--db="+db)
	f, g := image(t, dir, "one.img"), image(t, dir, "two.img")
	lu := registerAndReserve(t, h, db, f)
	mustDo(t, h.b, g, scsi.PROutCDB(scsi.SARegister, 0, 0, 24), param(0, 0xb2))
	mustDo(t, h.a, g, scsi.PROutCDB(scsi.SARegister, 0, 0, 24), param(0, 0xa2))
	// vm-a preempts vm-b on two.img: vm-b has a unit attention pending.
	mustDo(t, h.a, g, scsi.PROutCDB(scsi.SAPreempt, 0, scsi.TypeExclusiveAccess, 24), param(0xa2, 0xb2))

	code, fromSQLite, _ := ctl(t, "", "--db="+db, "export")
	if code != 0 || !strings.Contains(fromSQLite, `"unit_attentions"`) || strings.Count(fromSQLite, `"lu": `) != 2 {
		t.Fatalf("export from SQLite: %d\n%s", code, fromSQLite)
	}

	c := etcdtest.Start(t, 1)
	eps := "--etcd-endpoints=" + strings.Join(c.Endpoints(), ",")
	he := startHelper(t, eps, "--etcd-prefix=/moved/")
	if code, out, _ := ctl(t, fromSQLite, eps, "--etcd-prefix=/moved/", "import"); code != 0 || strings.Count(out, "created") != 2 {
		t.Fatalf("import into etcd: %d %q", code, out)
	}
	code, fromEtcd, _ := ctl(t, "", eps, "--etcd-prefix=/moved/", "export")
	if code != 0 || fromEtcd != fromSQLite {
		t.Fatalf("export from etcd differs:\nSQLite:\n%s\netcd:\n%s", fromSQLite, fromEtcd)
	}
	// Again: nothing to do.
	if code, out, _ := ctl(t, fromSQLite, eps, "--etcd-prefix=/moved/", "import"); code != 0 || strings.Count(out, "unchanged") != 2 {
		t.Fatalf("second import: %d %q", code, out)
	}

	// The etcd helper serves the moved state: vm-b's pending unit attention
	// on two.img, and vm-a's reservation of one.img.
	st, sn, _ := do(t, he.b, g, scsi.PRInCDB(scsi.SAReadKeys, 8192), nil)
	if st != scsi.StatusCheckCondition || sn.Key != scsi.KeyUnitAttention || sn.ASC != 0x2a || sn.ASCQ != 0x05 {
		t.Fatalf("vm-b on etcd after the move: %s %v, want UNIT ATTENTION 2A/05", scsi.StatusName(st), sn)
	}
	res, err := scsi.DecodeReservation(mustDo(t, he.b, f, scsi.PRInCDB(scsi.SAReadReservation, 8192), nil))
	if err != nil || !res.Held || res.Key != 0xa || res.Type != scsi.TypeWriteExclusive {
		t.Fatalf("reservation of one.img on etcd: %+v %v", res, err)
	}

	// The LU changed in etcd (the unit attention was reported): a new import
	// is a conflict, --replace puts the exported state back.
	if code, out, _ := ctl(t, fromSQLite, eps, "--etcd-prefix=/moved/", "import"); code != exitConflict || !strings.Contains(out, "conflict") {
		t.Fatalf("import over a changed LU: %d %q", code, out)
	}
	if code, out, _ := ctl(t, fromSQLite, eps, "--etcd-prefix=/moved/", "import", "--replace"); code != 0 || !strings.Contains(out, "replaced") {
		t.Fatalf("import --replace: %d %q", code, out)
	}

	// list, show and clear on etcd.
	items := result(t, ctlJSON(t, exitOK, eps, "--etcd-prefix=/moved/", "list"))["lus"].([]any)
	if len(items) != 2 || items[0].(map[string]any)["revision"] == nil {
		t.Fatalf("list on etcd: %v", items)
	}
	if code, out, _ := ctl(t, "", eps, "--etcd-prefix=/moved/", "show", lu); code != 0 || !strings.Contains(out, "revision") || !strings.Contains(out, "Key=0xa") {
		t.Fatalf("show on etcd: %d %q", code, out)
	}
	if j := result(t, ctlJSON(t, exitOK, eps, "--etcd-prefix=/moved/", "clear", "--force", lu)); j["changed"] != true {
		t.Fatalf("clear on etcd: %v", j)
	}
	st, sn, _ = do(t, he.a, f, scsi.PRInCDB(scsi.SAReadKeys, 8192), nil)
	if st != scsi.StatusCheckCondition || sn.ASC != 0x2a || sn.ASCQ != 0x03 {
		t.Fatalf("vm-a on etcd after clear: %s %v, want UNIT ATTENTION 2A/03", scsi.StatusName(st), sn)
	}
	// purge on etcd needs --force (or --dry-run).
	if code, _, errOut := ctl(t, "", eps, "--etcd-prefix=/moved/", "purge"); code != exitSyntax || !strings.Contains(errOut, "--force") {
		t.Fatalf("purge on etcd without --force: %d %q", code, errOut)
	}
}
