//go:build lab

package multipathd

// TestLab runs inside the storage lab VM (test/lab: Debian 12, multipath-tools
// 0.9.4, a dm-multipath map over two LIO nexuses), driven by testdata/lab.sh,
// against the real multipathd. It checks what the unit tests can only assume:
// 0.9.4 listens on the abstract socket only (so the default addresses fall
// back), the reply forms of getprkey/getprstatus, the raw path format, the
// "ok" replies, the command reference for an unknown command, and that a
// non-root caller may list but not run PR commands.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestLab(t *testing.T) {
	mapName := os.Getenv("MULTIPATHD_LAB_MAP")
	if mapName == "" {
		t.Skip("MULTIPATHD_LAB_MAP not set: run through testdata/lab.sh in the lab VM")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := New(Options{})

	if _, err := os.Stat(PathnameSocket); err != nil {
		t.Logf("%s absent (%v): the default addresses must fall back to %s", PathnameSocket, err, AbstractSocket)
	}
	daemon, err := c.Command(ctx, "show daemon")
	if err != nil {
		t.Fatalf("show daemon: %v", err)
	}
	t.Logf("show daemon: %q", daemon)

	paths, err := c.MapPaths(ctx, mapName)
	if err != nil {
		t.Fatalf("MapPaths: %v", err)
	}
	for _, p := range paths {
		t.Logf("path %+v usable=%v", p, p.Usable())
		if !p.Usable() || !p.Online {
			t.Errorf("path %s not usable/online", p.Dev)
		}
	}
	if len(paths) != 2 {
		t.Errorf("%d paths in %s, want 2", len(paths), mapName)
	}
	maps, err := c.Maps(ctx)
	if err != nil {
		t.Fatalf("Maps: %v", err)
	}
	t.Logf("maps %+v", maps)
	if len(maps) != 1 || maps[0].Name != mapName || maps[0].DMState != "active" {
		t.Errorf("maps %+v, want one active %s", maps, mapName)
	}

	st, err := c.GetPRStatus(ctx, mapName)
	t.Logf("GetPRStatus: %v, %v", st, err)
	if err != nil {
		t.Errorf("GetPRStatus: %v", err)
	}
	raw, err := c.Command(ctx, "getprstatus map "+mapName)
	t.Logf("getprstatus raw reply %q (%v)", raw, err)

	checkKey := func(wantKey uint64, wantAPTPL, wantSet bool) {
		t.Helper()
		raw, _ := c.Command(ctx, "getprkey map "+mapName)
		key, aptpl, set, err := c.GetPRKey(ctx, mapName)
		t.Logf("getprkey raw %q → %#x aptpl=%v set=%v err=%v", raw, key, aptpl, set, err)
		if err != nil || key != wantKey || aptpl != wantAPTPL || set != wantSet {
			t.Errorf("GetPRKey = %#x, %v, %v, %v; want %#x, %v, %v", key, aptpl, set, err, wantKey, wantAPTPL, wantSet)
		}
	}
	checkKey(0, false, false)
	if err := c.SetPRKey(ctx, mapName, 0x123abc, false); err != nil {
		t.Errorf("SetPRKey: %v", err)
	}
	checkKey(0x123abc, false, true)
	if err := c.SetPRKey(ctx, mapName, 0xfeedface00000001, true); err != nil {
		t.Errorf("SetPRKey aptpl: %v", err)
	}
	checkKey(0xfeedface00000001, true, true)
	if err := c.UnsetPRKey(ctx, mapName); err != nil {
		t.Errorf("UnsetPRKey: %v", err)
	}
	checkKey(0, false, false)

	if err := c.SetPRStatus(ctx, mapName); err != nil {
		t.Errorf("SetPRStatus: %v", err)
	}
	if st, err := c.GetPRStatus(ctx, mapName); err != nil || st != PRStatusSet {
		t.Errorf("GetPRStatus after set = %v, %v", st, err)
	}
	if err := c.UnsetPRStatus(ctx, mapName); err != nil {
		t.Errorf("UnsetPRStatus: %v", err)
	}
	if st, err := c.GetPRStatus(ctx, mapName); err != nil || st != PRStatusUnset {
		t.Errorf("GetPRStatus after unset = %v, %v", st, err)
	}

	// 0.9.4 answers a command it does not know with "fail\n"; later
	// releases with their command reference.
	for _, cmd := range []string{"setprhold map " + mapName, "frobnicate"} {
		raw, err := c.Command(ctx, cmd)
		t.Logf("%q: reply %q, %v", cmd, raw, err)
	}
	err = c.SetPRHold(ctx, mapName)
	t.Logf("SetPRHold: %v", err)
	if err != nil && !errors.Is(err, ErrUnknownCommand) && !errors.Is(err, ErrFailed) {
		t.Errorf("SetPRHold: %v, want nil (0.13+), ErrFailed (0.9.4) or ErrUnknownCommand", err)
	}
	if _, err := c.GetPRStatus(ctx, "nosuchmap"); !errors.Is(err, ErrFailed) {
		t.Errorf("GetPRStatus(nosuchmap) = %v, want ErrFailed", err)
	}

	// The same binary as nobody: list commands pass, PR commands are refused.
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.v", "-test.run", "^TestLabNonRoot$")
	cmd.Env = append(os.Environ(), "MULTIPATHD_LAB_NONROOT=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("as uid 65534:\n%s", out)
	if err != nil {
		t.Errorf("non-root run: %v", err)
	}
}

func TestLabNonRoot(t *testing.T) {
	if os.Getenv("MULTIPATHD_LAB_NONROOT") == "" {
		t.Skip("run by TestLab")
	}
	mapName := os.Getenv("MULTIPATHD_LAB_MAP")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := New(Options{})
	t.Logf("uid %d", os.Getuid())
	if paths, err := c.Paths(ctx); err != nil || len(paths) == 0 {
		t.Errorf("Paths as non-root = %v, %v; want the paths", paths, err)
	}
	_, _, _, err := c.GetPRKey(ctx, mapName)
	t.Logf("GetPRKey as non-root: %v", err)
	if !errors.Is(err, ErrPermission) {
		t.Errorf("GetPRKey as non-root: %v, want ErrPermission", err)
	}
	if err := c.SetPRStatus(ctx, mapName); !errors.Is(err, ErrPermission) {
		t.Errorf("SetPRStatus as non-root: %v, want ErrPermission", err)
	}
}
