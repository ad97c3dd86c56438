package etcd_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/etcd"
	"github.com/prhelper/prhelper/internal/store/etcd/etcdtest"
	"github.com/prhelper/prhelper/internal/store/storetest"
)

// Every store of a test gets its own prefix, so it starts empty on a shared cluster.
var (
	prefixes   sync.Mutex
	nextPrefix int
)

func freshPrefix() string {
	prefixes.Lock()
	defer prefixes.Unlock()
	nextPrefix++
	return fmt.Sprintf("/prhelper-test/%d/", nextPrefix)
}

func open(t *testing.T, c *etcdtest.Cluster, mod func(*etcd.Options)) *etcd.Store {
	t.Helper()
	opts := etcd.Options{Endpoints: c.Endpoints(), Prefix: freshPrefix()}
	if mod != nil {
		mod(&opts)
	}
	s, err := etcd.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	c := etcdtest.Start(t, 3)
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, c, nil) })
}
