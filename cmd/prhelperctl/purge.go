package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/kernel/device"
	"github.com/prhelper/prhelper/internal/store"
)

// Verdicts of purge's look at one LU.
const (
	verdictPresent = "present"
	verdictGone    = "gone"
	verdictUnknown = "unknown" // cannot tell: kept
)

// purgeItem is purge's finding for one LU.
type purgeItem struct {
	LU      string `json:"lu"`
	Verdict string `json:"verdict"`
	Why     string `json:"why"`
	Removed bool   `json:"removed"`
}

// presence tells whether the device or disk image an LU name stands for still
// exists on this host. It works on the LU names the daemon gives (package
// device): "file:<maj>:<min>:<inode>" for a disk image, the wwid or dm uuid
// (Info.Key) for a device. A name from a rule's id= is neither, and is kept.
type presence struct {
	search  []string                  // --search: where images are, else their whole filesystem
	devices map[string]string         // Info.Key of every device -> its name
	inodes  map[[2]uint32]*inodeIndex // by filesystem device number
	mounts  map[[2]uint32][]string    // mount points by device number
}

type inodeIndex struct {
	root   string
	inodes map[uint64]string
	err    error // the walk did not see everything
}

func newPresence(search []string) (*presence, error) {
	devs, err := device.Present(device.Sysfs{})
	if err != nil {
		return nil, err
	}
	mounts, err := mountPoints("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return &presence{search: search, devices: devs, inodes: map[[2]uint32]*inodeIndex{}, mounts: mounts}, nil
}

// check returns the verdict for one LU name and why.
func (p *presence) check(name string) (string, string) {
	if maj, min, ino, ok := parseFileID(name); ok {
		v, why := p.checkFile(maj, min, ino)
		if v == verdictPresent && strings.Count(name, ":") == 4 {
			// The name carries the birth time (device.FileID): a file that
			// reused the inode is another image, and this LU is stale.
			path := strings.TrimPrefix(why, "image ")
			if id, err := fileIDOf(path); err != nil {
				return verdictUnknown, fmt.Sprintf("image %s: %v: kept", path, err)
			} else if id != name {
				return verdictGone, fmt.Sprintf("inode %d is now %s, a newer file (%s)", ino, path, id)
			}
		}
		return v, why
	}
	if dev, ok := p.devices[name]; ok {
		return verdictPresent, "device " + dev
	}
	if looksLikeDeviceID(name) {
		return verdictGone, "no block or SCSI generic device on this host has this identity"
	}
	return verdictUnknown, "not a device or disk-image identity (an id= from a rule?): kept"
}

// looksLikeDeviceID reports whether name has the form of an identity the
// kernel reports (package device, Info.ID): wwid designators, dm uuids.
func looksLikeDeviceID(name string) bool {
	for _, p := range []string{"naa.", "eui.", "t10.", "uuid.", "nvme.", "mpath-", "LVM-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	// A partition's dm uuid: "part<N>-<its disk's uuid>".
	if rest, ok := strings.CutPrefix(name, "part"); ok {
		n, tail, ok := strings.Cut(rest, "-")
		_, err := strconv.Atoi(n)
		return ok && err == nil && tail != ""
	}
	return false
}

// parseFileID reads device.FileID's "file:<maj>:<min>:<inode>", with or
// without the ":<seconds>.<nanoseconds>" birth time that follows.
func parseFileID(name string) (maj, min uint32, ino uint64, ok bool) {
	f := strings.Split(name, ":")
	if (len(f) != 4 && len(f) != 5) || f[0] != "file" {
		return 0, 0, 0, false
	}
	a, e1 := strconv.ParseUint(f[1], 10, 32)
	b, e2 := strconv.ParseUint(f[2], 10, 32)
	c, e3 := strconv.ParseUint(f[3], 10, 64)
	return uint32(a), uint32(b), c, e1 == nil && e2 == nil && e3 == nil
}

// fileIDOf is the LU name the helper gives the image at path today
// (device.FileID from statx, birth time included where the filesystem has it).
func fileIDOf(path string) (string, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_SYNC_AS_STAT,
		unix.STATX_BASIC_STATS|unix.STATX_BTIME, &stx); err != nil {
		return "", fmt.Errorf("statx: %w", err)
	}
	var birth int64
	if stx.Mask&unix.STATX_BTIME != 0 {
		birth = stx.Btime.Sec*1e9 + int64(stx.Btime.Nsec)
	}
	return device.FileID(stx.Dev_major, stx.Dev_minor, stx.Ino, birth), nil
}

// checkFile looks for a regular file with inode ino on the filesystem maj:min,
// walking it once from a mount point (without crossing into other
// filesystems). An inode that a new file reuses looks present: the LU name
// cannot tell them apart (the hardening issue's finding).
func (p *presence) checkFile(maj, min uint32, ino uint64) (string, string) {
	key := [2]uint32{maj, min}
	idx, ok := p.inodes[key]
	if !ok {
		roots := p.mounts[key]
		if len(p.search) > 0 {
			roots = nil
			for _, d := range p.search {
				if devOf(d) == key {
					roots = append(roots, d)
				}
			}
		}
		if len(roots) > 0 {
			idx = walkInodes(roots, key)
		}
		p.inodes[key] = idx
	}
	if idx == nil {
		if len(p.search) > 0 {
			return verdictUnknown, fmt.Sprintf("no --search directory is on filesystem %d:%d: kept", maj, min)
		}
		return verdictUnknown, fmt.Sprintf("filesystem %d:%d is not mounted here: kept", maj, min)
	}
	if path, ok := idx.inodes[ino]; ok {
		return verdictPresent, "image " + path
	}
	if idx.err != nil {
		return verdictUnknown, fmt.Sprintf("no file with inode %d found under %s, but not everything could be read (%v): kept", ino, idx.root, idx.err)
	}
	return verdictGone, fmt.Sprintf("no file on %d:%d under %s has inode %d", maj, min, idx.root, ino)
}

// devOf returns the device number of the filesystem holding path.
func devOf(path string) [2]uint32 {
	fi, err := os.Stat(path)
	if err != nil {
		return [2]uint32{^uint32(0), ^uint32(0)}
	}
	st := fi.Sys().(*syscall.Stat_t)
	return [2]uint32{devMajor(uint64(st.Dev)), devMinor(uint64(st.Dev))}
}

// devMajor and devMinor decode a Linux dev_t (glibc's gnu_dev_major/minor).
func devMajor(d uint64) uint32 { return uint32((d>>8)&0xfff | (d>>32)&^0xfff) }
func devMinor(d uint64) uint32 { return uint32(d&0xff | (d>>12)&^0xff) }

// walkInodes indexes the regular files of the filesystem dev under roots.
func walkInodes(roots []string, dev [2]uint32) *inodeIndex {
	idx := &inodeIndex{root: strings.Join(roots, ", "), inodes: map[uint64]string{}}
	for _, root := range roots {
		walkInodesUnder(idx, root, dev)
	}
	return idx
}

func walkInodesUnder(idx *inodeIndex, root string, dev [2]uint32) {
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if idx.err == nil {
				idx.err = err
			}
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return nil
			}
			if devMajor(uint64(st.Dev)) != dev[0] || devMinor(uint64(st.Dev)) != dev[1] {
				if d.IsDir() {
					return fs.SkipDir // another filesystem mounted here
				}
				return nil
			}
			if d.Type().IsRegular() {
				if _, seen := idx.inodes[st.Ino]; !seen {
					idx.inodes[st.Ino] = path
				}
			}
		}
		return nil
	})
}

// mountPoints reads mountinfo (proc(5)): field 3 is the filesystem's
// major:minor, field 5 the mount point (octal escapes for blanks).
func mountPoints(path string) (map[[2]uint32][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[[2]uint32][]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		a, b, ok := strings.Cut(f[2], ":")
		if !ok {
			continue
		}
		x, e1 := strconv.ParseUint(a, 10, 32)
		y, e2 := strconv.ParseUint(b, 10, 32)
		if e1 != nil || e2 != nil {
			continue
		}
		key := [2]uint32{uint32(x), uint32(y)}
		out[key] = append(out[key], unescapeMount(f[4]))
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's \040-style escapes.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var errChanged = errors.New("changed since it was checked")

// purge removes the LUs whose device or image is gone. Each removal is one
// store update that deletes the LU only if its value is still the one that
// was checked, so an LU a helper is using right now is never removed under it.
func (e *env) purge(ctx context.Context, st store.Store) (any, error) {
	if len(e.o.etcdEndpoints) > 0 && !e.o.force && !e.o.dryRun {
		return nil, fail(exitSyntax, errors.New("purge on etcd sees only this host's devices: LUs that other hosts serve would look gone; give --force if this host sees every device (or --dry-run)"))
	}
	all, err := lus(ctx, st)
	if err != nil {
		return nil, err
	}
	p, err := newPresence(e.o.search)
	if err != nil {
		return nil, err
	}
	var items []purgeItem
	gone, removed := 0, 0
	for _, l := range all {
		it := purgeItem{LU: l.name}
		it.Verdict, it.Why = p.check(l.name)
		if it.Verdict == verdictGone {
			gone++
			if !e.o.dryRun {
				seen := l.value
				err := st.Update(ctx, emulate.KeyPrefix+l.name, func(cur []byte) ([]byte, bool, error) {
					if !bytes.Equal(cur, seen) {
						return nil, false, errChanged
					}
					return nil, true, nil
				})
				switch {
				case errors.Is(err, errChanged):
					it.Why += "; " + errChanged.Error() + ": kept"
				case err != nil:
					return items, fmt.Errorf("remove LU %s: %w", l.name, err)
				default:
					it.Removed = true
					removed++
				}
			}
		}
		items = append(items, it)
		if !e.o.json {
			action := it.Verdict
			switch {
			case it.Removed:
				action = "removed"
			case it.Verdict == verdictGone && e.o.dryRun:
				action = "would remove"
			}
			fmt.Fprintf(e.stdout, "%-12s %s: %s\n", action, l.name, it.Why)
		}
	}
	if !e.o.json {
		if e.o.dryRun {
			fmt.Fprintf(e.stdout, "dry run: %d of %d LU(s) would be removed\n", gone, len(all))
		} else {
			fmt.Fprintf(e.stdout, "%d of %d LU(s) removed\n", removed, len(all))
		}
		return nil, nil
	}
	if items == nil {
		items = []purgeItem{}
	}
	return map[string]any{"dry_run": e.o.dryRun, "lus": items}, nil
}
