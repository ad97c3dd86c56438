// Command droptest is the privilege package's test subject: a CGO_ENABLED=0
// program that starts several OS threads, calls privilege.Drop and then waits, so
// the test can read every thread's /proc status. It prints "ok" or "error: ..." on
// a line of its own and blocks until its standard input closes.
//
// Usage: droptest UID GID [CAP...]
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"

	"github.com/prhelper/prhelper/internal/daemon/privilege"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Println("error:", err)
	} else {
		fmt.Println("ok")
	}
	// Keep a thread busy after the drop too, so the runtime may create more.
	go func() {
		runtime.LockOSThread()
		select {}
	}()
	io.Copy(io.Discard, os.Stdin)
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: droptest UID GID [CAP...]")
	}
	uid, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	var keep []privilege.Cap
	for _, a := range args[2:] {
		c, err := strconv.Atoi(a)
		if err != nil {
			return err
		}
		keep = append(keep, privilege.Cap(c))
	}
	// Park goroutines on their own OS threads before the drop: a drop that only
	// changed the calling thread would leave these privileged.
	started := make(chan struct{})
	for i := 0; i < 4; i++ {
		go func() {
			runtime.LockOSThread()
			started <- struct{}{}
			select {}
		}()
	}
	for i := 0; i < 4; i++ {
		<-started
	}
	return privilege.Drop(keep, uid, gid)
}
