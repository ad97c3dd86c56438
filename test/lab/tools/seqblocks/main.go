// Command seqblocks writes and reads sequence-numbered blocks with O_DIRECT, for
// the lab's fencing test (tests/fence-kill.sh): a guest writes without pause,
// the lab host reads back the highest sequence number that reached the disk.
//
//	seqblocks write DEV   write 4 KiB blocks 1, 2, 3, ... round-robin over the
//	                      first 1 MiB of DEV until killed or a write fails
//	seqblocks max DEV     print the highest sequence number in the first 1 MiB
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	blockSize = 4096
	blocks    = 256
	magic     = "PRHSEQ01"
)

// aligned returns a buffer of n bytes aligned for O_DIRECT.
func aligned(n int) []byte {
	b := make([]byte, n+blockSize)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (blockSize - 1))
	if off != 0 {
		off = blockSize - off
	}
	return b[off : off+n]
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: seqblocks write|max DEV")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "write":
		os.Exit(write(os.Args[2]))
	case "max":
		os.Exit(readMax(os.Args[2]))
	}
	fmt.Fprintln(os.Stderr, "usage: seqblocks write|max DEV")
	os.Exit(2)
}

func write(dev string) int {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	buf := aligned(blockSize)
	copy(buf[8:], magic)
	for seq := uint64(1); ; seq++ {
		binary.BigEndian.PutUint64(buf, seq)
		if _, err := unix.Pwrite(fd, buf, int64(seq%blocks)*blockSize); err != nil {
			fmt.Fprintf(os.Stderr, "write %d: %v\n", seq, err)
			return 1
		}
		if seq%500 == 0 {
			fmt.Printf("seqblocks: wrote %d\n", seq)
		}
	}
}

func readMax(dev string) int {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	defer unix.Close(fd)
	buf := aligned(blocks * blockSize)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "read:", err)
		return 1
	}
	var m uint64
	for i := 0; i+blockSize <= n; i += blockSize {
		if string(buf[i+8:i+8+len(magic)]) == magic {
			if s := binary.BigEndian.Uint64(buf[i:]); s > m {
				m = s
			}
		}
	}
	fmt.Println(m)
	return 0
}
