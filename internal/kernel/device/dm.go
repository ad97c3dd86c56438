package device

import (
	"path/filepath"
	"strings"
)

// mpathPrefix starts the dm uuid of every map multipathd creates
// (multipath-tools: "mpath-" + the map's WWID).
const mpathPrefix = "mpath-"

// fillDM reads dm/name, dm/uuid and slaves/ of the dm device at p.
func fillDM(info *Info, p string) error {
	var err error
	if info.DMName, err = readText(filepath.Join(p, "dm", "name")); err != nil {
		return err
	}
	if info.DMUUID, err = readText(filepath.Join(p, "dm", "uuid")); err != nil {
		return err
	}
	if info.Slaves, err = listDir(filepath.Join(p, "slaves")); err != nil {
		return err
	}
	info.ID = info.DMUUID
	info.Kind = DM
	if strings.HasPrefix(info.DMUUID, mpathPrefix) {
		info.Kind = DMMultipath
		info.LUID = MultipathLUID(info.DMUUID)
	}
	return nil
}

// MultipathLUID converts the dm uuid of a multipath map ("mpath-" + WWID) to
// the form the kernel's wwid attribute gives the map's paths, so that the map
// and a bare path of the same LU share one emulated state. It returns "" when
// the form cannot be derived.
//
// multipathd takes a SCSI path's WWID from udev's ID_SERIAL by default, which
// scsi_id (and sg_inq --export) write as the designator type as one hex digit
// followed by the designator (SPC-4 §7.8.6, table 482):
//
//	3<hex>  NAA          -> naa.<hex>  (e.g. mpath-36001405ab… -> naa.6001405ab…)
//	2<hex>  EUI-64       -> eui.<hex>
//	8<str>  SCSI name    -> <str>      (the kernel reports the string as is)
//	1<…>    T10 vendor   -> ""         (scsi_id squeezes blanks to '_', the
//	                                     kernel keeps them: not reversible)
//
// NVMe paths and maps configured with uid_attribute = wwid already carry the
// kernel's form ("eui.…", "naa.…", "t10.…", "uuid.…", "nvme.…"): returned
// lower-case-hex normalised as they are. Anything else is "". Where a LU has a
// LU-associated SCSI name string and an NAA designator, the kernel's wwid is
// the name string and scsi_id's is the NAA: the forms then differ and the
// caller should configure the id.
func MultipathLUID(uuid string) string {
	w, ok := strings.CutPrefix(uuid, mpathPrefix)
	if !ok || w == "" {
		return ""
	}
	for _, p := range []string{"naa.", "eui.", "t10.", "uuid.", "nvme."} {
		if strings.HasPrefix(w, p) {
			return w
		}
	}
	switch w[0] {
	case '3':
		if h, ok := lowerHex(w[1:]); ok && (len(h) == 16 || len(h) == 32) {
			return "naa." + h
		}
	case '2':
		if h, ok := lowerHex(w[1:]); ok && (len(h) == 16 || len(h) == 24 || len(h) == 32) {
			return "eui." + h
		}
	case '8':
		if len(w) > 1 {
			return w[1:]
		}
	}
	return ""
}

// lowerHex returns s in lower case if it is all hex digits.
func lowerHex(s string) (string, bool) {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			b[i] = c + 'a' - 'A'
		default:
			return "", false
		}
	}
	return string(b), true
}
