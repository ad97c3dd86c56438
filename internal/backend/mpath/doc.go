// Package mpath serves persistent reservations on a dm-multipath map by
// sending them to the map's paths, in Go, without libmpathpersist.
//
// A SCSI persistent reservation belongs to an I_T nexus (SPC-4 §5.13). A
// multipath map reaches one logical unit through several nexuses, one per path,
// and SG_IO on the map goes down only one of them; the guest, which sees the map
// as one disk, expects its key to hold on all of them. The backend therefore:
//
//   - sends PR IN through one usable path and returns the device's reply as it
//     came (its length, not zero-padded to the allocation length as
//     libmpathpersist's; the device's own sense on errors);
//   - sends REGISTER and REGISTER AND IGNORE EXISTING KEY to every usable path
//     in parallel. When the device refuses it on one path while others took
//     it, the others are rolled back to their previous key and the refusal is
//     the reply. A path that fails on the way (SG_IO error, transport status)
//     is left out, as dm-multipath would fail it; it is registered again when
//     it is usable again. With SPEC_I_PT or ALL_TG_PT the first path gets the
//     list as sent, the others a plain REGISTER AND IGNORE EXISTING KEY, since
//     the TransportIDs or target ports are registered once;
//   - sends RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT AND ABORT and
//     REGISTER AND MOVE to one usable path, and to the next when a path fails;
//   - keeps every usable path registered: before each command, a usable path
//     not known to hold the map's key gets it (REGISTER AND IGNORE EXISTING
//     KEY), but only while READ KEYS still shows the key on the LU, so that a
//     host another node has preempted (fenced) is never registered again;
//   - moves a reservation held through another path of the map (typically one
//     that failed) to a usable one, as multipath-tools 0.13 does: a RESERVE of
//     the reservation the map already holds, or a RELEASE that leaves it in
//     place, is answered by a PREEMPT of the map's own key through a usable
//     path, which the device takes as moving the reservation, followed by a
//     REGISTER AND IGNORE EXISTING KEY on the other usable paths (the PREEMPT
//     removed their registrations). A PREEMPT naming the map's own key is
//     followed by the same re-registration;
//   - tells multipathd the map's key and registration status (setprkey,
//     setprstatus; unsetprstatus and unsetprkey after an unregister or CLEAR),
//     so that multipathd itself registers paths that appear or come back;
//   - honours a reservation_key fixed in multipath.conf as libmpathpersist
//     does: a REGISTER to another non-zero key, or any other service action
//     whose RESERVATION KEY is not the configured one, is refused with CHECK
//     CONDITION ABORTED COMMAND / LOGICAL UNIT COMMUNICATION FAILURE
//     (0B/08/00), the answer QEMU gives its guests for libmpathpersist's
//     MPATH_PR_SYNTAX_ERROR, and a log line that says why.
//
// Commands on one map are serialised: a registration fan-out or a reservation
// move is never interleaved with another command on the same map.
//
// Privileges: SG_IO to the path devices (CAP_SYS_RAWIO, and read access to
// /dev/sdX: root, or a user in the disk group), sysfs to find the paths, and,
// to keep multipathd informed, its socket: multipathd takes commands that change
// state only from uid 0, so with -u the daemon still serves the map and
// registers returning paths itself, but multipathd is not told. The
// device-mapper control node is not needed.
package mpath
