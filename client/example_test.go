package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// fakeHelper serves one connection the way a helper does, with package wire's
// server side: the handshake, then request → reply until the client hangs up.
// It remembers the keys registered and answers READ KEYS with them; a real
// helper would send the CDB to the device it received instead.
func fakeHelper(l *net.UnixListener) {
	c, err := l.AcceptUnix()
	if err != nil {
		return
	}
	defer c.Close()
	if err := wire.ServerHandshake(c); err != nil {
		return
	}
	var keys scsi.Keys
	for {
		req, err := wire.ReadRequest(c)
		if err != nil {
			return // io.EOF when the client is done
		}
		unix.Close(req.FD) // the request owns the device's descriptor
		rep := wire.Reply{Status: scsi.StatusGood}
		switch {
		case req.IsPRIn() && scsi.ServiceAction(req.CDB[:]) == scsi.SAReadKeys:
			rep.Data = keys.Encode()
		case !req.IsPRIn() && scsi.ServiceAction(req.CDB[:]) == scsi.SARegister:
			p, err := scsi.DecodePROutParams(req.Param)
			if err != nil {
				rep = wire.Reply{Status: scsi.StatusCheckCondition}
				rep.SetSense(scsi.SenseInvalidField.Fixed())
				break
			}
			keys.Generation++
			keys.Keys = append(keys.Keys, p.SAKey)
			keys.AdditionalLength += 8
		default:
			rep = wire.Reply{Status: scsi.StatusCheckCondition}
			rep.SetSense(scsi.SenseInvalidField.Fixed())
		}
		if err := wire.WriteReply(c, req.CDB[:], &rep); err != nil {
			return
		}
	}
}

// Talk to a helper socket as QEMU does: register a key on a device, then read
// the keys back. The helper here is an in-process fake, so the example needs
// neither root nor a SCSI disk; against prhelper or qemu-pr-helper the code is
// the same, with the socket path of the daemon and a descriptor of the disk.
func Example() {
	dir, err := os.MkdirTemp("", "prhelper-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "helper.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	go fakeHelper(l)

	// The device: any open descriptor travels with each request (SCM_RIGHTS).
	dev, err := os.Open(os.DevNull)
	if err != nil {
		panic(err)
	}
	defer dev.Close()

	ctx := context.Background()
	c, err := client.Dial(ctx, sock)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	param, err := scsi.PROutParams{SAKey: 0x1122334455667788}.Encode()
	if err != nil {
		panic(err)
	}
	rep, err := c.PROut(ctx, int(dev.Fd()), scsi.SARegister, 0, 0, param)
	if err != nil {
		panic(err)
	}
	fmt.Println("REGISTER:", scsi.StatusName(rep.Status))

	rep, keys, err := c.ReadKeys(ctx, int(dev.Fd()), 8192)
	if err != nil {
		panic(err)
	}
	fmt.Printf("READ KEYS: %s, generation %d, keys %#x\n", scsi.StatusName(rep.Status), keys.Generation, keys.Keys)

	// A CDB the protocol cannot carry is refused before anything is sent.
	var bad [wire.CDBSize]byte
	bad[0] = 0x12 // INQUIRY
	_, err = c.Do(ctx, bad, int(dev.Fd()), nil)
	fmt.Println(errors.Is(err, client.ErrRequest), errors.Is(err, io.EOF))
	// Output:
	// REGISTER: GOOD
	// READ KEYS: GOOD, generation 1, keys [0x1122334455667788]
	// true false
}
