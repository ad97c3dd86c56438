package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// fsyncRate measures the disk's serial rate of durable writes, the floor a
// store that commits one command at a time cannot pass: n times, one 4 KiB
// write at the next offset of a preallocated 4 MiB file (cycling, as SQLite
// reuses its write-ahead log after a checkpoint), then fdatasync. The file is
// created at path and removed afterwards.
func fsyncRate(path string, n int) (result, error) {
	const page, size = 4096, 4 << 20
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return result{}, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, page)
	for off := int64(0); off < size; off += page {
		if _, err := f.WriteAt(buf, off); err != nil {
			return result{}, err
		}
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return result{}, fmt.Errorf("fdatasync %s: %w", path, err)
	}
	lat := make([]time.Duration, 0, n)
	sts := make([]byte, 0, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		t := time.Now()
		buf[0] = byte(i)
		if _, err := f.WriteAt(buf, int64(i)*page%size); err != nil {
			return result{}, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return result{}, fmt.Errorf("fdatasync %s: %w", path, err)
		}
		lat = append(lat, time.Since(t))
		sts = append(sts, 0)
	}
	return summarize("fdatasync", 1, lat, sts, time.Since(start)), nil
}
