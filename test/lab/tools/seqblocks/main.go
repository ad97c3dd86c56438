// Command seqblocks writes and reads sequence-numbered blocks with O_DIRECT, for
// the lab's fencing test (tests/fence-kill.sh): a guest writes without pause,
// the lab host reads back the highest sequence number that reached the disk.
//
//	seqblocks write DEV [MIB]  write 4 KiB blocks 1, 2, 3, ... round-robin over
//	                           the 1 MiB of DEV at offset MIB MiB (default 0)
//	                           until killed or a write fails
//	seqblocks max DEV [MIB]    print the highest sequence number in that 1 MiB
//
// Writers given different MIB use separate regions, so the lab host can follow
// each one on a shared disk.
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
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
	if len(os.Args) != 3 && len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: seqblocks write|max DEV [MIB]")
		os.Exit(2)
	}
	var base int64
	if len(os.Args) == 4 {
		mib, err := strconv.ParseUint(os.Args[3], 10, 20)
		if err != nil {
			fmt.Fprintf(os.Stderr, "seqblocks: offset %q: want MiB as a whole number\n", os.Args[3])
			os.Exit(2)
		}
		base = int64(mib) << 20
	}
	switch os.Args[1] {
	case "write":
		os.Exit(write(os.Args[2], base))
	case "max":
		os.Exit(readMax(os.Args[2], base))
	}
	fmt.Fprintln(os.Stderr, "usage: seqblocks write|max DEV [MIB]")
	os.Exit(2)
}

func write(dev string, base int64) int {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	buf := aligned(blockSize)
	copy(buf[8:], magic)
	for seq := uint64(1); ; seq++ {
		binary.BigEndian.PutUint64(buf, seq)
		if _, err := unix.Pwrite(fd, buf, base+int64(seq%blocks)*blockSize); err != nil {
			fmt.Fprintf(os.Stderr, "write %d: %v\n", seq, err)
			return 1
		}
		if seq == 1 || seq%500 == 0 { // the first: the writer got one block to the device
			fmt.Printf("seqblocks: wrote %d\n", seq)
		}
	}
}

func readMax(dev string, base int64) int {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	defer unix.Close(fd)
	buf := aligned(blocks * blockSize)
	n, err := unix.Pread(fd, buf, base)
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
