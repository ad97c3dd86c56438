// Package fence makes emulated persistent reservations safe for cluster stacks
// that count on the storage to stop an evicted node's writes (docs/fencing.md).
//
// prhelper is not on the data path: when one VM preempts another, real storage
// refuses the evicted initiator's next WRITE, but an emulated logical unit cannot.
// This package closes that gap in three parts:
//
//   - Evicted, a pure function over the logical unit's state before and after a
//     PR OUT, says who must be fenced: an initiator whose registration another
//     initiator's command removed and that the access table (pr.CheckAccess) then
//     refuses writes.
//   - Records of pending fences are kept in the store with the state, in the same
//     transaction as the eviction, so that a helper restarted between the commit
//     and the fence, or the victim's own helper, completes them.
//   - A Coordinator carries the fences out (Policy: kill the victim's QEMU
//     processes through the pidfds of its live connections, or run a fence
//     agent) and waits for every helper that serves the victim to confirm,
//     before the evictor's command is answered GOOD.
package fence
