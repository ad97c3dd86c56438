package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// Refused reports whether the map's reply is prhelper's own refusal: CHECK
// CONDITION ABORTED COMMAND, LOGICAL UNIT COMMUNICATION FAILURE (0B/08/00),
// what the mpath backend answers when the map has no usable path or every
// path failed on the way (internal/backend/mpath, docs/multipath.md §9). LIO
// never answers it, so the reference never does. A guest's SCSI layer retries
// it as a transport failure.
func Refused(r Reply) bool {
	return r.Status == scsi.StatusCheckCondition && r.Sense.Key == scsi.KeyAbortedCommand && r.Sense.ASC == 0x08
}

// rawState is the map LU's PR state as host B reads it, byte for byte
// (generation included): READ FULL STATUS, which lists every nexus's
// registration and the holder, and READ RESERVATION. A PR OUT that reached
// any path of the map and changed anything changes it (SPC-4 §6.15.5: every
// registration change bumps PRGENERATION; a reservation change shows in the
// holder fields).
func (l *lab) rawState() (string, error) {
	s := ""
	for _, sa := range []byte{scsi.SAReadFullStatus, scsi.SAReadReservation} {
		r, _, err := l.mapB.do(scsi.PRInCDB(sa, wire.MaxData), nil)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%s %x; ", scsi.StatusName(r.Status), r.Data)
	}
	return s, nil
}

// pathStates describes the map's paths for a refusal's report: the SCSI
// device state in sysfs and multipathd's dm state and checker state.
func pathStates(devs []string) string {
	out, _ := exec.Command("multipathd", "show", "paths", "format", "%d %t %T").Output()
	mp := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 3 {
			mp[f[0]] = f[1] + "/" + f[2]
		}
	}
	var s []string
	for _, d := range devs {
		st, _ := os.ReadFile("/sys/block/" + d + "/device/state")
		s = append(s, fmt.Sprintf("%s sysfs %s multipathd %s", d, strings.TrimSpace(string(st)), mp[d]))
	}
	return strings.Join(s, ", ")
}

// WithoutNexus is a PR IN reply of the map with the registration of one
// nexus (initiator port addr, the path that is away) taken out: READ KEYS
// loses one entry of key (the key that nexus holds, from READ FULL STATUS),
// READ FULL STATUS that nexus's descriptors. A difference while a path is
// away is explained when the map's reply without the away path's
// registration folds to the reference's: the path that is down keeps what it
// held, and cannot be changed until it returns (docs/multipath.md §9).
// ok is false for other replies, which no such registration explains.
func WithoutNexus(cdb [wire.CDBSize]byte, r Reply, addr, key uint64) (Reply, bool) {
	if r.Status != scsi.StatusGood || cdb[0] != scsi.OpPersistentReserveIn {
		return r, false
	}
	switch scsi.ServiceAction(cdb[:]) {
	case scsi.SAReadKeys:
		k, err := scsi.DecodeKeys(r.Data)
		if err != nil || k.Truncated || key == 0 {
			return r, false
		}
		i := slices.Index(k.Keys, key)
		if i < 0 {
			return r, false
		}
		k.Keys = slices.Delete(slices.Clone(k.Keys), i, i+1)
		return Reply{Status: r.Status, Data: k.Encode()}, true
	case scsi.SAReadFullStatus:
		fs, err := scsi.DecodeFullStatus(r.Data)
		if err != nil || fs.Truncated {
			return r, false
		}
		n := len(fs.Descriptors)
		fs.Descriptors = slices.DeleteFunc(fs.Descriptors, func(d scsi.StatusDescriptor) bool { return d.TransportID.Addr == addr })
		if len(fs.Descriptors) == n {
			return r, false
		}
		b, err := fs.Encode()
		if err != nil {
			return r, false
		}
		return Reply{Status: r.Status, Data: b}, true
	}
	return r, false
}

// nexusKey is the key the nexus of initiator port addr holds on the map's LU,
// from READ FULL STATUS through host B (0: none, or unreadable).
func (l *lab) nexusKey(addr uint64) uint64 {
	r, _, err := l.mapB.do(scsi.PRInCDB(scsi.SAReadFullStatus, wire.MaxData), nil)
	if err != nil || r.Status != scsi.StatusGood {
		return 0
	}
	fs, err := scsi.DecodeFullStatus(r.Data)
	if err != nil {
		return 0
	}
	for _, d := range fs.Descriptors {
		if d.TransportID.Addr == addr {
			return d.Key
		}
	}
	return 0
}

// NamesKey reports whether a PR OUT names key, as RESERVATION KEY or SERVICE
// ACTION RESERVATION KEY. While a path is away its registration with the
// map's old key still counts on the LU, where a host with one nexus has none:
// another host's PREEMPT of that key finds it, a REGISTER or RESERVE by it
// meets it (doc comment of internal/backend/mpath, "Against a single-nexus
// host"; docs/multipath.md §9). A different answer to such a command while
// the path is away is explained; the states must still converge after the
// return.
func NamesKey(cdb [wire.CDBSize]byte, param []byte, key uint64) bool {
	if key == 0 || cdb[0] != scsi.OpPersistentReserveOut || len(param) < scsi.PROutParamLen {
		return false
	}
	return binary.BigEndian.Uint64(param[0:8]) == key || binary.BigEndian.Uint64(param[8:16]) == key
}
