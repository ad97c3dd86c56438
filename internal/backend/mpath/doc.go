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
//     host another node has preempted (fenced) is never registered again. A
//     path that was away while the map unregistered comes back holding the old
//     key; it gets a REGISTER of that key to 0 (a conflict there means its
//     registration changed meanwhile and is left alone). These upkeep
//     registrations carry the LU's PTPL_A as REPORT CAPABILITIES shows it: the
//     device keeps one APTPL for the LU and every REGISTER sets it, so the
//     map's own APTPL would undo the bit another host set last;
//   - moves a reservation held through another path of the map (typically one
//     that failed) to a usable one, as multipath-tools 0.13 does: a RESERVE of
//     the reservation the map already holds, or a RELEASE that leaves it in
//     place, is answered by a PREEMPT of the map's own key through a usable
//     path, which the device takes as moving the reservation, followed by a
//     REGISTER AND IGNORE EXISTING KEY on the other usable paths (the PREEMPT
//     removed their registrations); when the holding path is usable, the
//     command goes there instead. The map acts only on a reservation whose
//     holder, in READ FULL STATUS, is a nexus it has seen itself hold through
//     (learned right after its own RESERVE, after a PREEMPT that READ
//     RESERVATION showed would take the reservation, and after a move): a
//     key proves nothing, since another host may register the same one, and a
//     host must never act on another host's reservation. The cost: after
//     prhelper restarts, or when the reservation came to the map through
//     another host's REGISTER AND MOVE, a reservation held through a path that
//     is away is not recognised, and RESERVE answers the device's
//     RESERVATION CONFLICT until the path returns. Another host that
//     preempts the map with the map's own key in the instant between its
//     RESERVE and the READ FULL STATUS that follows would be learned as the
//     map; the window is one PR IN long and needs a host using the map's key;
//   - after a PREEMPT whose SERVICE ACTION RESERVATION KEY is the map's own
//     key, or 0 under an all-registrants reservation, READ KEYS tells what
//     the issuing path kept (SPC-4 §5.13.11.4): the key is still there when
//     SARK named the holder or the reservation is all-registrants (the issuer
//     keeps its registration; the map's other paths, which the device
//     removed, register again); it is gone when no reservation was held or
//     another key held it (every registration with the key went, the
//     issuer's too on LIO), and the map is unregistered, as a host with one
//     nexus would be;
//   - REGISTER AND MOVE goes to the paths in turn until one is not refused
//     with RESERVATION CONFLICT (only the holder may move); a path that fails
//     on the way does not replace a conflict another path answered;
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
// # Path timeout
//
// Each SG_IO on a path has PathTimeout, 10 s (libmpathpersist uses 2 s,
// prhelper's passthrough 30 s, QEMU's scsi-block I/O timeout). A path that
// hangs instead of failing holds a command that long before the next path is
// tried, so a map whose first path hangs still answers within the guest's
// 30 s; and a PR OUT, a durable metadata update on the array, may take a
// loaded but healthy array seconds, which 2 s would count as a path failure
// and leave the paths with different keys until the next command.
//
// # Against a single-nexus host
//
// The guest sees the map as one disk, so prhelper must make the map answer as
// a host with one nexus would. test/lab/tests/mpath-diff.sh (tool
// test/lab/tools/mpdiff) checks that with seeded random commands from the map
// and from another host against an identical LU on which the map's host is
// one nexus, comparing replies with the map's nexuses folded into one host
// (READ KEYS as a set of distinct keys, generations ignored, READ FULL STATUS
// one entry per host and key); TestDifferentialSingleNexus does the same on
// the fake kernel. What cannot be equal, and is left out of the generators:
//
//   - unit attentions: the backend sends a command again after a unit
//     attention on a path (uaRetries) and the guest never sees it; the
//     differential sends again after a unit attention on the reference too;
//   - SPEC_I_PT and ALL_TG_PT name or register single nexuses, and another
//     host's REGISTER AND MOVE towards the map names one of its nexuses: the
//     map's other paths are not touched, and prhelper does not watch other
//     hosts' commands, so the map holds two keys until the guest registers
//     again;
//   - while a path is away it cannot be changed: it keeps the key, or the
//     reservation, it held, which READ KEYS and READ FULL STATUS show, until it
//     returns and the map's next command brings it in line (catch up, stale
//     key removed). A reservation held through a path that is away is moved
//     with a PREEMPT of the map's own key, which also removes another host's
//     registration of the same key. The differential measures how long the
//     map takes to match the reference after a path returns (mpath-diff.sh
//     allows 10 s; prhelper sees a path again within pathsTTL, 1 s, of
//     multipathd reinstating it).
//
// # What mpathpersist 0.9.4 does in these cases
//
// From the lab (mpath-diff.sh's informative part, with multipathd 0.9.4 and
// reservation_key file) and issue 16:
//
//   - PREEMPT naming the map's own key with no reservation or another key's:
//     right (issue 16): the map ends unregistered, a later REGISTER of the key
//     conflicts.
//   - another host holding a reservation with the map's key: MPATHPERSIST_CASE2
//   - PREEMPT with SARK 0 under all-registrants: the same bug prhelper had
//     (issue 16): the map's other paths stay unregistered.
//   - REGISTER AND MOVE: MPATHPERSIST_CASE4
//   - unregister while a path is away: MPATHPERSIST_SEEN1
//   - a returning path registered again: MPATHPERSIST_SEEN2
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
