package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/scsi"
)

// The tests run the real binaries: prhelper serving a real SQLite file (or
// etcd), prhelperctl working on the same store at the same time.
var bin struct{ prhelper, ctl string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "prhelperctl-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.prhelper, bin.ctl = filepath.Join(dir, "prhelper"), filepath.Join(dir, "prhelperctl")
	for out, pkg := range map[string]string{bin.prhelper: "../prhelper", bin.ctl: "."} {
		build := exec.Command("go", "build", "-o", out, pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, b)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helper is a running prhelper with two sockets, one initiator each: vm-a on
// target port 1 and vm-b on port 2.
type helper struct {
	a, b string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func startHelper(t *testing.T, store ...string) *helper {
	t.Helper()
	dir := t.TempDir()
	h := &helper{a: filepath.Join(dir, "a.sock"), b: filepath.Join(dir, "b.sock"), log: &bytes.Buffer{}}
	args := append([]string{"--backend=emulate",
		"--listen=" + h.a + ",initiator=name:iqn.2026-01.test:vm-a",
		"--listen=" + h.b + ",initiator=name:iqn.2026-01.test:vm-b,port=2"}, store...)
	h.cmd = exec.Command(bin.prhelper, args...)
	h.cmd.Stderr = h.log
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		h.cmd.Wait()
	})
	for _, s := range []string{h.a, h.b} {
		for i := 0; ; i++ {
			if fi, err := os.Stat(s); err == nil && fi.Mode()&os.ModeSocket != 0 {
				break
			}
			if i == 200 {
				t.Fatalf("socket %s never appeared; log:\n%s", s, h.log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return h
}

// do sends one command through a helper socket for the image f.
func do(t *testing.T, sock string, f *os.File, cdb [16]byte, param []byte) (byte, scsi.Sense, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := client.New(sock)
	defer c.Close()
	rep, err := c.Do(ctx, cdb, int(f.Fd()), param)
	if err != nil {
		t.Fatalf("%s via %s: %v", scsi.CommandName(cdb[:]), sock, err)
	}
	s, _ := scsi.ParseSense(rep.Sense[:])
	return rep.Status, s, rep.Data
}

func param(rk, sark uint64) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:], rk)
	binary.BigEndian.PutUint64(p[8:], sark)
	return p
}

func mustDo(t *testing.T, sock string, f *os.File, cdb [16]byte, p []byte) []byte {
	t.Helper()
	st, sn, data := do(t, sock, f, cdb, p)
	if st != scsi.StatusGood {
		t.Fatalf("%s via %s: %s %v", scsi.CommandName(cdb[:]), filepath.Base(sock), scsi.StatusName(st), sn)
	}
	return data
}

func image(t *testing.T, dir, name string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 20)
	t.Cleanup(func() { f.Close() })
	return f
}

// ctl runs prhelperctl with stdin and returns its exit status, stdout and stderr.
func ctl(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin.ctl, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("$ prhelperctl %s -> %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// ctlJSON runs prhelperctl --json and decodes its object.
func ctlJSON(t *testing.T, want int, args ...string) map[string]any {
	t.Helper()
	code, out, _ := ctl(t, "", append(args, "--json")...)
	if code != want {
		t.Fatalf("prhelperctl %v: exit %d, want %d", args, code, want)
	}
	var j map[string]any
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("prhelperctl %v --json: %v: %q", args, err, out)
	}
	if int(j["exit_status"].(float64)) != want {
		t.Fatalf("exit_status %v, want %d", j["exit_status"], want)
	}
	return j
}

func result(t *testing.T, j map[string]any) map[string]any {
	t.Helper()
	r, ok := j["result"].(map[string]any)
	if !ok {
		t.Fatalf("no result in %v", j)
	}
	return r
}
