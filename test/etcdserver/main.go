// Command etcdserver is the etcd server the etcd store's tests run: etcd's own main
// (go.etcd.io/etcd/server/v3/etcdmain) at the version pinned in this directory's go.mod.
// It is a separate module so that prhelper's go.mod does not depend on the server; the
// tests build it with "go build" from here (internal/store/etcd/etcdtest).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
