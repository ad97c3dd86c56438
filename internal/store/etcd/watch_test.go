package etcd_test

import (
	"context"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/store/etcd"
	"github.com/prhelper/prhelper/internal/store/etcd/etcdtest"
)

// signalled waits for one signal on ch, failing the test after a minute (a
// guard against a hang, not a measure of speed).
func signalled(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the watch channel closed", what)
		}
	case <-time.After(time.Minute):
		t.Fatalf("%s: no signal", what)
	}
}

// TestWatch: a watch signals at its start and after another helper's write
// under its prefix (the fence coordinator's wake-up), and closes when its
// context ends or the store is closed.
func TestWatch(t *testing.T) {
	c := etcdtest.Start(t, 3)
	s1 := open(t, c, nil)
	s2 := open(t, c, func(o *etcd.Options) { o.Prefix = s1.Prefix() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s1.Watch(ctx, "lu/")
	signalled(t, ch, "start")
	for i, key := range []string{"lu/a", "lu/b", "lu/a"} {
		if err := s2.Update(ctx, key, func([]byte) ([]byte, bool, error) { return []byte{byte(i)}, true, nil }); err != nil {
			t.Fatal(err)
		}
		signalled(t, ch, "after the write of "+key)
	}
	cancel()
	for range ch { // drained, then closed
	}
	ch2 := s1.Watch(context.Background(), "lu/")
	signalled(t, ch2, "start of the second watch")
	s1.Close()
	for range ch2 {
	}
}
