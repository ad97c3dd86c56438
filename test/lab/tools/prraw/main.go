// Command prraw sends one raw PERSISTENT RESERVE IN/OUT CDB through a helper
// socket (qemu-pr-helper protocol) and prints the reply; it is a lab tool for
// the cases prpersist does not cover on purpose: a read-only device fd, an
// arbitrary CDB, and the same request repeated many times (fd-leak checks).
//
// Usage: prraw [-ro] [-n COUNT] [-fresh] SOCKET DEVICE CDBHEX [PARAMHEX]
//
// Exit status follows sg_persist where it can: 0 GOOD, 24 RESERVATION CONFLICT,
// 6 CHECK CONDITION with UNIT ATTENTION, 5 CHECK CONDITION with ILLEGAL REQUEST,
// 2 any other CHECK CONDITION, 3 any other status, 1 on errors.
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func parseHex(s string) ([]byte, error) {
	s = strings.NewReplacer(" ", "", ":", "", ",", "").Replace(s)
	return hex.DecodeString(s)
}

func run(args []string) int {
	fs := flag.NewFlagSet("prraw", flag.ContinueOnError)
	ro := fs.Bool("ro", false, "open DEVICE read-only (O_RDONLY) instead of O_RDWR")
	count := fs.Int("n", 1, "send the request COUNT times, print the last reply")
	fresh := fs.Bool("fresh", false, "use a new connection for every request")
	timeout := fs.Duration("timeout", 60*time.Second, "time limit for each request")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if fs.NArg() < 3 || fs.NArg() > 4 {
		fmt.Fprintln(os.Stderr, "usage: prraw [-ro] [-n COUNT] [-fresh] SOCKET DEVICE CDBHEX [PARAMHEX]")
		return 1
	}
	sock, dev := fs.Arg(0), fs.Arg(1)
	c, err := parseHex(fs.Arg(2))
	if err != nil || len(c) == 0 || len(c) > wire.CDBSize {
		fmt.Fprintf(os.Stderr, "prraw: bad CDB %q\n", fs.Arg(2))
		return 1
	}
	var cdb [wire.CDBSize]byte
	copy(cdb[:], c)
	var param []byte
	if fs.NArg() == 4 {
		if param, err = parseHex(fs.Arg(3)); err != nil {
			fmt.Fprintf(os.Stderr, "prraw: bad parameter list %q\n", fs.Arg(3))
			return 1
		}
	}
	mode := os.O_RDWR
	if *ro {
		mode = os.O_RDONLY
	}
	f, err := os.OpenFile(dev, mode, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "prraw: %v\n", err)
		return 1
	}
	defer f.Close()

	cl := client.New(sock, client.WithReconnect(1, 0))
	defer func() { cl.Close() }()
	var rep *wire.Reply
	for i := 0; i < *count; i++ {
		if *fresh && i > 0 {
			cl.Close()
			cl = client.New(sock, client.WithReconnect(1, 0))
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		rep, err = cl.Do(ctx, cdb, int(f.Fd()), param)
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "prraw: request %d: %v\n", i+1, err)
			return 1
		}
	}
	fmt.Printf("status: 0x%02x %s, data bytes: %d\n", rep.Status, scsi.StatusName(rep.Status), len(rep.Data))
	fmt.Printf("sense: % x\n", rep.Sense[:])
	if len(rep.Data) > 0 {
		fmt.Printf("data: % x\n", rep.Data)
	}
	switch rep.Status {
	case scsi.StatusGood:
		return 0
	case scsi.StatusReservationConflict:
		return 24
	case scsi.StatusCheckCondition:
		s, ok := scsi.ParseSense(rep.Sense[:])
		if ok {
			fmt.Printf("sense key/asc/ascq: %s\n", s)
			switch s.Key {
			case 6:
				return 6
			case 5:
				return 5
			}
		}
		return 2
	}
	return 3
}
