package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// KubeVirt's pr-helper container: command and arguments as virt-handler's
// DaemonSet gives them (contrib/kubevirt/Containerfile).
// Older releases run kubevirtCommand, the current one kubevirtEntrypoint
// (docs/virtual-initiators.md §10); the image has the binary at both.
const (
	kubevirtCommand    = "/usr/bin/qemu-pr-helper"
	kubevirtEntrypoint = "/entrypoint.sh"
	kubevirtSocket     = "/var/run/kubevirt/daemons/pr/pr-helper.sock"
)

// TestKubeVirtContainer lays out the image contrib/kubevirt/Containerfile
// describes (its COPY of bin/prhelper, with the binary this test built) in a
// directory, then runs it there as KubeVirt does: chrooted, as root, as
// /usr/bin/qemu-pr-helper and as /entrypoint.sh, -k /var/run/kubevirt/daemons/pr/pr-helper.sock. The
// helper must serve a READ KEYS on that socket and stop on SIGTERM. The chroot
// needs root (and the host's /proc bound into the directory, as the pod has
// it); other users run the same command line without it.
func TestKubeVirtContainer(t *testing.T) {
	cf, err := os.Open("../../contrib/kubevirt/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	root := t.TempDir()
	var entry, cmdArgs string
	sc := bufio.NewScanner(cf)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "FROM":
			if f[1] != "scratch" {
				t.Fatalf("FROM %s: this test lays out a scratch image only", f[1])
			}
		case "COPY":
			if len(f) != 3 || f[1] != "bin/prhelper" {
				t.Fatalf("unexpected COPY %v", f[1:])
			}
			dst := filepath.Join(root, f[2])
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(binary)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o755); err != nil {
				t.Fatal(err)
			}
		case "ENTRYPOINT":
			entry = strings.Join(f[1:], " ")
		case "CMD":
			cmdArgs = strings.Join(f[1:], " ")
		default:
			t.Fatalf("instruction %s not laid out by this test", f[0])
		}
	}
	if entry != `["`+kubevirtCommand+`"]` || cmdArgs != `["-k", "`+kubevirtSocket+`"]` {
		t.Fatalf("ENTRYPOINT %s CMD %s, want KubeVirt's command and arguments", entry, cmdArgs)
	}
	for _, c := range []string{kubevirtCommand, kubevirtEntrypoint} {
		if fi, err := os.Stat(filepath.Join(root, c)); err != nil || fi.Mode()&0o111 == 0 {
			t.Fatalf("no executable %s in the image: %v", c, err)
		}
	}
	// KubeVirt mounts the socket directory into the container.
	if err := os.MkdirAll(filepath.Join(root, filepath.Dir(kubevirtSocket)), 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// virt-handler's pod shares the host's pid namespace (hostPID), and
		// the helper reads /proc (capabilities, peers): the host's, bound in.
		mountProc(t, root)
	}
	for _, c := range []string{kubevirtCommand, kubevirtEntrypoint} {
		t.Run(strings.TrimPrefix(c, "/"), func(t *testing.T) { runKubeVirtCommand(t, root, c) })
	}
}

// runKubeVirtCommand runs the image laid out at root as KubeVirt does, with
// command c and arguments -k kubevirtSocket, and checks that it serves.
func runKubeVirtCommand(t *testing.T, root, c string) {
	cmd := exec.Command(filepath.Join(root, c), "-k", kubevirtSocket)
	sock := filepath.Join(root, kubevirtSocket)
	if os.Geteuid() == 0 {
		cmd.Path = c
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		cmd.Dir = "/"
	} else {
		t.Logf("not root: no chroot; running %s -k %s", cmd.Path, sock)
		cmd.Args = []string{c, "-k", sock}
	}
	p := &proc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-p.done; p.done <- nil })
	waitSocket(t, sock)
	readKeysOnFile(t, sock)
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM; log:\n%s", code, p.stderr)
	}
	log := p.stderr.String()
	if !strings.Contains(log, "prhelper ready") || !strings.Contains(log, "request failed") {
		t.Fatalf("log of the helper:\n%s", log)
	}
	t.Logf("served as %s -k %s; log:\n%s", c, kubevirtSocket, log)
}

// mountProc binds the host's /proc at root/proc until the test ends.
func mountProc(t *testing.T, root string) {
	t.Helper()
	dir := filepath.Join(root, "proc")
	if err := os.Mkdir(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("/proc", dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind /proc: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}
