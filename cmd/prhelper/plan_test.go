package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/internal/daemon/privilege"
	"github.com/prhelper/prhelper/scsi"
)

// TestCapabilitiesFollowThePlan: the daemon keeps what the backends it may
// route to need (backend.Needs), read from the same plan the router uses:
// mpath alone keeps CAP_SYS_RAWIO (SG_IO to the paths), emulation alone keeps
// nothing, and a rule naming sgio next to emulation brings CAP_SYS_RAWIO back.
func TestCapabilitiesFollowThePlan(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the privilege drop starts from root's capabilities")
	}
	const rawio = uint64(1) << 17
	dir := t.TempDir()
	conf := filepath.Join(dir, "sgio-rule.conf")
	if err := os.WriteFile(conf, []byte("rule kind=scsi-disk backend=sgio\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want uint64
	}{
		{[]string{"--backend=mpath"}, rawio},
		{[]string{"--backend=emulate", "--db=" + filepath.Join(dir, "a.db")}, 0},
		{[]string{"--backend=emulate", "--db=" + filepath.Join(dir, "b.db"), "--config=" + conf}, rawio},
	} {
		sock := filepath.Join(t.TempDir(), "c.sock")
		p := startHelper(t, append([]string{"-k", sock}, tc.args...)...)
		waitSocket(t, sock)
		// A request answered: serving starts after the drop.
		f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c := client.New(sock)
		_, err = c.Do(ctx, scsi.PRInCDB(scsi.SAReadKeys, 8192), int(f.Fd()), nil)
		c.Close()
		cancel()
		f.Close()
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		st, err := privilege.ReadStatus(p.cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if st.CapEff != tc.want || st.CapPrm != tc.want || st.CapBnd != tc.want {
			t.Errorf("%v: eff %#x prm %#x bnd %#x, want %#x", tc.args, st.CapEff, st.CapPrm, st.CapBnd, tc.want)
		}
		p.stop(t)
	}
}
