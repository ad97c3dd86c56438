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
//     KEY), but only while the map still holds the key, so that a host another
//     node has preempted (fenced) is never registered again. A path that holds
//     the key proves it: REGISTER with the key as both keys is GOOD there and
//     changes nothing, and RESERVATION CONFLICT once another host's PREEMPT or
//     CLEAR removed it (from every path at once). READ KEYS decides only when
//     no usable path held the key; it cannot tell the map's key from another
//     host's same key. A path that was away while the map unregistered comes
//     back holding the old key; it gets a REGISTER of that key to 0 (a
//     conflict there means its registration changed meanwhile and is left
//     alone). These upkeep registrations carry the LU's PTPL_A as REPORT
//     CAPABILITIES shows it: the device keeps one APTPL for the LU and every
//     REGISTER sets it, so the map's own APTPL would undo the bit another host
//     set last;
//   - keeps the map's reservation on a usable path, as a host with one nexus
//     would hold it: before a PR OUT, a reservation held through a path that
//     is away (with the map's key, or the key that path was left with) is
//     moved to a usable path with a PREEMPT of the holder's key, which the
//     device takes as moving the reservation (SPC-4 §5.13.11.4.3), followed by
//     a REGISTER AND IGNORE EXISTING KEY on the other usable paths (the
//     PREEMPT removed their registrations). A RESERVE that conflicts or a
//     RELEASE that leaves the reservation in place because another path of the
//     map holds it goes to that path when it is usable, and otherwise moves
//     the reservation first (multipath-tools 0.13 moves it for these two).
//     The map acts only on a reservation whose holder, in READ FULL STATUS, is
//     a nexus it has seen itself hold through (learned right after its own
//     RESERVE, a PREEMPT after which a reservation of its type and key is held
//     that was not before, and a move): a key proves nothing, since another
//     host may register the same one, and a host must never act on another
//     host's reservation. The cost: after prhelper restarts, or when the
//     reservation came to the map through another host's REGISTER AND MOVE, a
//     reservation held through a path that is away is not recognised, and the
//     device's answers are those of a map that does not hold it until the path
//     returns. Another host that preempts the map with the map's own key in
//     the instant between its RESERVE and the READ FULL STATUS that follows
//     would be learned as the map; the window is one PR IN long and needs a
//     host using the map's key. A move removes every registration of the
//     holder's key but the issuer's: another host that registered the same
//     key loses its registration;
//   - before the map changes its key or unregisters under an all-registrants
//     reservation, removes the registrations its paths that are away still
//     hold (PREEMPT of their key, which under all-registrants keeps the
//     issuer's): every registrant holds such a reservation (SPC-4 §5.13.10),
//     so a path that is away would keep it alive after the map, for the guest
//     one host, left, and another host's PREEMPT of the old key would still
//     find it (on LIO, as the reservation's representative holder, it would
//     even hand the reservation over);
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
//   - while a path is away it cannot be changed: it keeps the key it held,
//     which READ KEYS and READ FULL STATUS show, until it returns and the
//     map's next command brings it in line (catch up, old key removed); its
//     registration still counts on the LU meanwhile, so another host's PREEMPT
//     of that key may succeed where the reference has nothing to preempt. The
//     differential counts these steps apart and measures how long the map
//     takes to match the reference after the path returns (mpath-diff.sh
//     allows 10 s; prhelper sees a path again within pathsTTL, 1 s, of
//     multipathd reinstating it, and at once for a PR OUT: lookAgain). One case does not converge: the map
//     unregisters while a path is away and no all-registrants reservation is
//     held; if another host then makes one, the path's old registration keeps
//     it alive after that host leaves (1 of 1000 seeds of
//     TestDifferentialWithFaults);
//   - a move takes another host's registration of the same key with it (see
//     above): the differentials with faults give the hosts disjoint keys.
//
// # What mpathpersist 0.9.4 does in these cases
//
// From the lab (mpath-diff.sh's informative part: mpathpersist and multipathd
// 0.9.4 with reservation_key file, the map over two paths, host B a third
// nexus; transcript in test/lab/transcripts/mpath-diff.txt):
//
//   - PREEMPT naming the map's own key with no reservation: right, as issue 16
//     says: the map ends unregistered on both paths, and a later REGISTER of
//     the key conflicts.
//   - Host B holds a Write Exclusive reservation with the map's key: the map's
//     RELEASE is GOOD and removes host B's registration and reservation (the
//     same defect prhelper had); the map's RESERVE then succeeds, nothing
//     being held any more.
//   - PREEMPT with SARK 0 under Write Exclusive All Registrants: the same bug
//     prhelper had (issue 16): the issuing path holds the new reservation, the
//     map's other path stays unregistered (and host B is preempted, rightly).
//   - REGISTER AND MOVE: mpathpersist 0.9.4 has no option for it, so it was
//     not run.
//   - Unregister while a path is away: the path comes back still holding the
//     old key (shared, as issue 16 says).
//   - A returning path is registered again (by multipathd, which has the key
//     in its prkeys file) with the map's APTPL: PTPL_A, which host B's APTPL
//     REGISTER had set, is clear afterwards (shared).
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
