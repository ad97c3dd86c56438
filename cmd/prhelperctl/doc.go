// Command prhelperctl is the administrator's tool for emulated persistent
// reservations: it reads and repairs the state the emulate backend keeps, in
// the SQLite file (--db) or in etcd (--etcd-endpoints and the other --etcd-*
// flags, named as prhelper names them), while helpers serve it. Every change
// is one store.Update, the same atomic read-modify-write the daemon's commands
// run, so a helper never sees half of it and no helper's command is lost.
//
//	prhelperctl list                 every LU: generation, registrations, holder, type, last change
//	prhelperctl show LU              the state as READ FULL STATUS decodes it, plus what it does not show
//	prhelperctl clear LU             what PERSISTENT RESERVE OUT CLEAR does (pr.Clear), after a confirmation or --force
//	prhelperctl purge [--dry-run]    remove LUs whose device or disk image no longer exists
//	prhelperctl export               the state as a JSON document on stdout
//	prhelperctl import [FILE]        write a document's LUs (stdin when FILE is absent or -)
//
// Output and exit statuses follow prpersist: human lines on stdout, errors as
// "prhelperctl: ..." on stderr, --json one JSON object with "exit_status" and
// "category". The exit statuses:
//
//	0   done
//	1   syntax error, or the confirmation was declined
//	2   no such LU
//	3   import: LUs exist with other states (they are left as they are; --replace overwrites)
//	15  the store (or the import file) cannot be opened or read
//	97  malformed: a stored state or the import document cannot be decoded
//	99  any other failure (store busy, etcd unreachable, a write failed)
//
// What a clear does to guests: every I_T nexus that was registered gets the
// unit attention RESERVATIONS PREEMPTED on its next PR command through a
// helper (emulation reports unit attentions only there, package emulate).
package main
