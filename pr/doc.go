// Package pr is prhelper's SPC-4 persistent-reservation engine: a pure function
// from (profile, logical-unit state, I_T nexus, PERSISTENT RESERVE IN/OUT CDB,
// parameter list) to (new state, SCSI status, sense, PR IN data). It performs no
// system calls, reads no clock, draws no random numbers, does no I/O and starts
// no goroutines; a store (SQLite, etcd, memory) keeps State's MarshalBinary
// bytes and runs Execute inside one atomic read-modify-write.
//
// The behaviour follows docs/spc4-pr.md, which records what the
// Linux target (LIO, drivers/target/target_core_pr.c), SCST and tgt do. Comments
// cite its sections (§n) and the SPC-4 clauses. By default (LIO()) the answers
// are byte-exact to current LIO, including its quirks: CHECK CONDITION 02/08/00
// for RESERVE/RELEASE/CLEAR/REGISTER AND MOVE from an unregistered nexus, RC
// for a RELEASE with the wrong type, no generation bump on unregister, READ FULL
// STATUS counting only the descriptors that fit, and so on. Every point where
// LIO, SCST and the standard disagree (§14) is a field of Profile; SPC4() takes
// the standard's side.
//
// What the engine models: registrations per I_T nexus (FC, SAS and iSCSI
// initiator ports, iSCSI with or without ISID) in registration order, the six
// reservation types with the all-registrants "representative" holder LIO
// keeps, PRgeneration, PTPL_A, SPEC_I_PT and ALL_TG_PT against the logical
// unit's configured target ports (State.Ports), REGISTER AND MOVE, the unit
// attentions PR raises (§9) queued per nexus in State, and the SPC-2
// RESERVE/RELEASE interplay (§12). CheckAccess applies the reservation check of
// §10 to any other command.
//
// Identity: a Nexus is an initiator port (FC N_Port name, SAS address, or iSCSI
// name plus ISID) and a RELATIVE TARGET PORT IDENTIFIER. iSCSI names compare byte
// for byte, as in LIO, so callers pass names normalised per RFC 3722; ISIDs
// compare as hex. A registration made without an ISID (SPEC_I_PT with a format
// 00b TransportID) covers every ISID of that initiator at that port (LIO
// core_scsi3_locate_pr_reg). State.Ports describes the logical unit's target
// ports and which initiators may use them; when empty, the commanding nexus's
// port is the only one and is open to everybody.
//
// What it does not do:
//   - It does not fence I/O. prhelper sees only PR commands; the data path goes
//     from QEMU to the device without it. The engine arbitrates who holds the
//     reservation; only a caller that also sees the data path (CheckAccess) can
//     enforce it.
//   - PREEMPT AND ABORT cannot abort anything: there is no task set. It changes
//     the state exactly like PREEMPT.
//   - Unit attentions reach an initiator only through Execute/CheckAccess, that
//     is, on its next PR command to the helper (Profile.ReportUnitAttentions);
//     QEMU guests do not otherwise see them.
//   - APTPL is recorded (PTPL_A, per-registration bit) but persistence across
//     power loss is the store's job: a store that keeps the bytes keeps
//     everything, generation included, which is SCST's behaviour, not LIO's
//     reload (§11, scenario 128).
//   - REPLACE LOST RESERVATION is rejected like LIO (RLR_C = 0).
//   - There is no cap on registrations (05/55/04 is never returned).
//
// Use it to give persistent reservations to storage that has none (a disk
// image, a software target, a test double): keep one State per logical unit,
// call Execute for each PR command with the nexus it came from, and store the
// State between commands; the example shows REGISTER, RESERVE and READ KEYS.
// docs/spc4-pr.md describes the behaviour and the 132 scenarios the tests run.
package pr
