package main

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
)

func TestBench(t *testing.T) {
	var n atomic.Int64
	mk := func() (doer, func()) { return func() error { n.Add(1); return nil }, func() {} }
	r, err := bench("fake", 4, 100, mk)
	if err != nil {
		t.Fatal(err)
	}
	if r.n != 100 || r.clients != 4 || r.p50 > r.p99 || r.rate <= 0 {
		t.Errorf("result %+v", r)
	}
	if n.Load() != 104 { // 4 warm-up requests + 100
		t.Errorf("%d requests sent, want 104", n.Load())
	}
	bad := func() (doer, func()) { return func() error { return errors.New("boom") }, func() {} }
	if _, err := bench("bad", 1, 10, bad); err == nil {
		t.Error("failing doer: no error")
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"-dev", "/dev/null", "-n", "1"}, {"-dev", "/nonexistent"}} {
		if rc := run(args, io.Discard); rc != 1 {
			t.Errorf("run(%q) = %d, want 1", args, rc)
		}
	}
}
