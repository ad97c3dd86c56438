// Package etcdtest runs real etcd clusters on loopback for tests: an etcd server built
// from the version pinned in test/etcdserver/go.mod (so every machine with Go and the
// module proxy gets the same server), members started and stopped as processes, and
// TCP proxies that partition members or lose replies on purpose.
package etcdtest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// BinaryEnv names an etcd server binary to use instead of building one.
const BinaryEnv = "PRHELPER_ETCD_BIN"

// Binary returns the path of the pinned etcd server, building it on first use into the
// user's cache directory (keyed by the pinned go.mod and go.sum, under a file lock so
// that test packages running in parallel build it once). When it cannot be had the
// test is skipped, except under CI=true where that is a failure: CI must run these.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := Build()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("etcd server for the tests: %v", err)
		}
		t.Skipf("etcd server for the tests unavailable (set %s or allow building it): %v", BinaryEnv, err)
	}
	return bin
}

// Build returns the path of the pinned etcd server (or of the binary BinaryEnv names),
// building it on first use into the user's cache directory, keyed by the pinned go.mod,
// go.sum and main.go, under a file lock so that concurrent callers build it once. The
// server is static (CGO_ENABLED=0), so it also runs in the storage lab's VMs
// (test/lab/gobuild.sh copies it from here through cmd etcdpath). It finds
// test/etcdserver from the working directory upwards.
func Build() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w", BinaryEnv, err)
		}
		return p, nil
	}
	src, err := sourceDir()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "prhelper-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "etcd-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	lock, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built by another package meanwhile
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	tmp := bin + ".tmp"
	cmd := exec.Command(gobin, "build", "-trimpath", "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build etcd server in %s: %v\n%s", src, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// sourceDir finds test/etcdserver from the working directory (a package directory of
// this module when run by go test).
func sourceDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "test", "etcdserver", "go.mod")
		if _, err := os.Stat(p); err == nil {
			return filepath.Dir(p), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("test/etcdserver not found above the working directory")
		}
		dir = parent
	}
}
