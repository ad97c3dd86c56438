// Command etcdpath prints the path of the pinned etcd server the tests use
// (etcdtest.Build: built from test/etcdserver on first use into the user's cache
// directory, static). test/lab/gobuild.sh runs it from the repository's root to put
// the same server into the storage lab's binaries (test/lab/README.md), so the lab
// and the Go tests share one build and one cache.
package main

import (
	"fmt"
	"os"

	"github.com/prhelper/prhelper/internal/store/etcd/etcdtest"
)

func main() {
	bin, err := etcdtest.Build()
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdpath: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(bin)
}
