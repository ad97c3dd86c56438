package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// serveEcho is the floor of the host measurements: the least a Go helper must
// do per request (docs/pr-helper-protocol.md §2): receive the CDB with its
// descriptor, close the descriptor, read a PR OUT parameter list, write one
// reply. It answers every request CHECK CONDITION, INVALID COMMAND OPERATION
// CODE (what both helpers answer on a regular file), one goroutine per
// connection on Go's netpoller, with no classification, logging, deadline or
// allocation per request. (Blocking system calls on a goroutine per
// connection were tried first: at 16 clients their p99 was 3 to 8 times
// qemu-pr-helper's, a worse floor than this.)
func serveEcho(sock string) error {
	os.Remove(sock)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return err
	}
	answer := floorAnswer()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		go echoConn(c, answer)
	}
}

// floorAnswer is the reply of both floors to every request: CHECK
// CONDITION, INVALID COMMAND OPERATION CODE, encoded as for a PR IN.
func floorAnswer() []byte {
	rep := wire.Reply{Status: scsi.StatusCheckCondition}
	rep.SetSense(scsi.SenseInvalidOpcode.Fixed())
	var cdb [wire.CDBSize]byte
	cdb[0] = scsi.OpPersistentReserveIn
	return wire.EncodeReply(cdb[:], &rep)
}

// floorOOB is a floor's control buffer: room for 8 descriptors, so that
// extra ones are received (and closed) rather than cut off.
func floorOOB() []byte { return make([]byte, unix.CmsgSpace(4*8)) }

// echoConn serves one connection until the peer closes it or breaks the
// protocol.
func echoConn(c *net.UnixConn, answer []byte) {
	defer c.Close()
	var feat [wire.FeatureSize]byte
	if _, err := c.Write(feat[:]); err != nil {
		return
	}
	if _, err := io.ReadFull(c, feat[:]); err != nil {
		return
	}
	var cdb [wire.CDBSize]byte
	param := make([]byte, wire.MaxData)
	oob := floorOOB()
	for {
		if readCDB(c, cdb[:], oob) != nil || wire.ValidateCDB(cdb[:]) != nil {
			return
		}
		if cdb[0] == scsi.OpPersistentReserveOut {
			if _, err := io.ReadFull(c, param[:scsi.TransferLength(cdb[:])]); err != nil {
				return
			}
		}
		if _, err := c.Write(answer); err != nil {
			return
		}
	}
}

// readCDB reads len(b) bytes, closing the descriptors that come with them.
func readCDB(c *net.UnixConn, b, oob []byte) error {
	for got := 0; got < len(b); {
		n, oobn, _, _, err := c.ReadMsgUnix(b[got:], oob)
		closeRights(oob[:oobn])
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("peer closed")
		}
		got += n
	}
	return nil
}
