package etcdtest

import (
	"path/filepath"
	"runtime"
	"testing"
)

// recorder is a testing.TB that records whether the test would have failed or been
// skipped instead of stopping.
type recorder struct {
	testing.TB
	failed, skipped bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true; runtime.Goexit() }
func (r *recorder) Skipf(string, ...any)  { r.skipped = true; runtime.Goexit() }

func run(tb testing.TB) *recorder {
	r := &recorder{TB: tb}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Binary(r)
	}()
	<-done
	return r
}

// TestMissingBinaryFailsUnderCI: without an etcd server the tests skip on a
// developer's machine but fail under CI=true, so CI never counts a skip as a pass.
func TestMissingBinaryFailsUnderCI(t *testing.T) {
	t.Setenv(BinaryEnv, filepath.Join(t.TempDir(), "no-such-etcd"))
	t.Setenv("CI", "true")
	if r := run(t); !r.failed || r.skipped {
		t.Fatalf("CI=true: failed=%v skipped=%v, want a failure", r.failed, r.skipped)
	}
	t.Setenv("CI", "")
	if r := run(t); r.failed || !r.skipped {
		t.Fatalf("no CI: failed=%v skipped=%v, want a skip", r.failed, r.skipped)
	}
}
