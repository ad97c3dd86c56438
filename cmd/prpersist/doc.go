// Command prpersist is sg_persist for a persistent-reservation helper: it opens a
// device (or any file), passes its descriptor over a qemu-pr-helper compatible
// socket exactly as QEMU's pr-manager-helper does, and runs one PERSISTENT
// RESERVE IN or OUT command there, with sg_persist's option names, output lines
// and exit statuses.
//
// It lets an administrator see and change reservations the way a guest would
// through the helper (prhelper or qemu-pr-helper), including in emulation mode
// where no SCSI device answers sg_persist directly.
//
// Differences from sg_persist, on purpose: a PR OUT service action implies
// --out; no INQUIRY is sent (-n is accepted and has no effect); the helper
// returns no data with CHECK CONDITION, so NO SENSE and RECOVERED ERROR exit 20
// and 21 instead of printing an empty payload; usage errors exit 1 (sg3_utils
// 1.45+ uses 31 for contradictory options) and open errors 15; --json prints one
// JSON object; --socket selects the helper.
package main
