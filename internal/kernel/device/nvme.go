package device

import (
	"os"
	"path/filepath"
	"strings"
)

// isNVMeNamespaceName reports whether name is an NVMe namespace block device,
// nvme<ctrl>n<ns> (drivers/nvme/host/core.c). Hidden per-path devices
// nvme<subsys>c<ctrl>n<ns> have no device node, so they never reach us.
func isNVMeNamespaceName(name string) bool {
	rest, ok := strings.CutPrefix(name, "nvme")
	return ok && isNumNNum(rest)
}

// isNVMeGenericName reports whether name is an nvme-generic character device,
// ng<ctrl>n<ns>.
func isNVMeGenericName(name string) bool {
	rest, ok := strings.CutPrefix(name, "ng")
	return ok && isNumNNum(rest)
}

// isNumNNum matches <digits>n<digits>.
func isNumNNum(s string) bool {
	a, b, ok := strings.Cut(s, "n")
	return ok && isDigits(a) && isDigits(b)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// fillNVMe sets the identity of the namespace whose block directory is p from
// its wwid attribute (drivers/nvme/host/sysfs.c wwid_show). When wwid is
// missing it builds the same string from the attributes wwid_show reads, in its
// order: uuid -> "uuid.<uuid>", nguid -> "eui.<32 hex>", eui -> "eui.<16 hex>".
// The "nvme.<vid>-<serial>-<model>-<nsid>" last resort needs controller
// attributes and is left to the kernel. A missing directory (an ngXnY whose
// nvmeXnY name differs under native multipath) leaves the ID empty.
func fillNVMe(info *Info, p string) error {
	if _, err := os.Stat(p); err != nil {
		if os.IsNotExist(err) {
			info.Disk = ""
			return nil
		}
		return err
	}
	id, err := readText(filepath.Join(p, "wwid"))
	if err != nil {
		return err
	}
	if id == "" {
		if id, err = nvmeIDFromParts(p); err != nil {
			return err
		}
	}
	info.ID, info.LUID = id, id
	return nil
}

func nvmeIDFromParts(p string) (string, error) {
	u, err := readText(filepath.Join(p, "uuid"))
	if err != nil {
		return "", err
	}
	if h, ok := lowerHex(strings.ReplaceAll(u, "-", "")); ok && len(h) == 32 && strings.Trim(h, "0") != "" {
		return "uuid." + strings.ToLower(u), nil
	}
	for _, a := range []struct {
		file string
		n    int
	}{{"nguid", 32}, {"eui", 16}} {
		v, err := readText(filepath.Join(p, a.file))
		if err != nil {
			return "", err
		}
		// nguid is printed as a UUID (%pU), eui as blank-separated bytes (%8ph).
		v = strings.NewReplacer("-", "", " ", "").Replace(v)
		if h, ok := lowerHex(v); ok && len(h) == a.n && strings.Trim(h, "0") != "" {
			return "eui." + h, nil
		}
	}
	return "", nil
}
