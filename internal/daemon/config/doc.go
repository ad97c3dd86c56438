// Package config reads prhelper's configuration file: the default backend, the
// state database, identity policies, extra listening sockets, and the rules that
// choose a backend per device. It is a pure parser; the daemon applies the result
// and lets command-line flags override it.
//
// The format is one directive per line, '#' starts a comment:
//
//	backend auto                     # for devices no rule matches: auto | sgio | linuxpr | mpath | emulate
//	db /var/lib/prhelper/pr.db       # state of emulated reservations (SQLite)
//	etcd-endpoints https://e1:2379,https://e2:2379   # or: state in etcd, shared across hosts
//	etcd-prefix /prhelper/           # with etcd-cacert, etcd-cert, etcd-key (absolute paths)
//	initiator host                   # identity of -k connections: host | peer | name:NAME
//	listen /run/prhelper/vm1.sock initiator=peer port=1
//	rule kind=file backend=emulate
//	rule wwid=naa.6001405* backend=emulate
//	rule path=/var/lib/images/shared.img backend=emulate id=shared-disk-1
//
// Rules are tried in order and the first whose every condition matches decides.
// wwid, path and kind take shell patterns (path.Match); kind is a device kind name
// (file, scsi-disk, scsi-generic, dm-multipath, dm, nvme, partition, other). id gives
// the logical unit its identity, which a disk image needs so that every host sharing
// it names it alike.
package config
