package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/prhelper/prhelper/internal/daemon/identity"
	"github.com/prhelper/prhelper/internal/daemon/server"
)

// Default paths, as qemu-pr-helper computes them from its local state directory.
const (
	defaultSocket  = "/var/run/qemu-pr-helper.sock"
	defaultPidfile = "/var/run/qemu-pr-helper.pid"
)

// options are the parsed command line. The flag set is qemu-pr-helper's getopt
// string "hVk:f:dT:u:g:vq" with its long names.
type options struct {
	socket    string
	socketSet bool
	pidfile   string
	pidSet    bool
	daemon    bool
	trace     []string
	user      string
	group     string
	verbose   int
	quiet     bool
	help      bool
	version   bool

	// prhelper's own options (not in qemu-pr-helper).
	backend    string
	db         string
	initiator  string
	listen     []string
	configFile string
	explain    string

	// The etcd store (instead of db), named as etcdctl names them.
	etcdEndpoints string
	etcdPrefix    string
	etcdCACert    string
	etcdCert      string
	etcdKey       string
	// shutdownGrace is how long requests in flight at SIGTERM may still run;
	// 0 means the server's default.
	shutdownGrace time.Duration
	// fence is the fencing policy (none, kill, exec:PATH), fenceTimeout its limit.
	fence        string
	fenceTimeout string
	// fenceLeaseTTL and fenceHost: fencing across hosts with the etcd store.
	fenceLeaseTTL string
	fenceHost     string
	// vinitKey is the vinit backend's configured host key (0x… or decimal);
	// "" means the derived one (docs/virtual-initiators.md §2).
	vinitKey string
	// metrics is where Prometheus metrics are served: HOST:PORT or
	// unix:PATH; "" is off.
	metrics string
	// maxRegistrations bounds the registrations of one emulated LU; "" means
	// the configuration file's value, else defaultMaxRegistrations.
	maxRegistrations string

	// Who may connect (docs/security.md §2-§3) and the sandbox (§4).
	socketMode  string
	socketGroup string
	allowUID    string
	allowGID    string
	peerExe     string
	sandbox     string
}

// Defaults of prhelper's own options.
const (
	defaultBackend   = "auto"
	defaultDB        = "/var/lib/prhelper/pr.db"
	defaultInitiator = "host"
	// defaultMaxRegistrations: docs/spc4-pr.md §7.7. A guest cluster registers
	// one key per host and path (tens); 4096 leaves a wide margin and bounds a
	// command's cost (BenchmarkLUSize in internal/backend/emulate).
	defaultMaxRegistrations = 4096
)

// errUsage marks a command-line error: the caller prints it with a hint to --help.
var errUsage = errors.New("usage")

// newFlagSet declares every command-line flag into o. The usage text lists
// them by hand; TestUsageNamesEveryFlag keeps the two in step, and the man
// page test in docs/man keeps prhelper(8) in step with the usage text.
func newFlagSet(name string, o *options) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(true)
	fs.StringVarP(&o.socket, "socket", "k", defaultSocket, "")
	fs.StringVarP(&o.pidfile, "pidfile", "f", defaultPidfile, "")
	fs.BoolVarP(&o.daemon, "daemon", "d", false, "")
	fs.StringArrayVarP(&o.trace, "trace", "T", nil, "")
	fs.StringVarP(&o.user, "user", "u", "", "")
	fs.StringVarP(&o.group, "group", "g", "", "")
	fs.CountVarP(&o.verbose, "verbose", "v", "")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "")
	fs.BoolVarP(&o.help, "help", "h", false, "")
	fs.BoolVarP(&o.version, "version", "V", false, "")
	fs.StringVar(&o.backend, "backend", "", "")
	fs.StringVar(&o.db, "db", "", "")
	fs.StringVar(&o.initiator, "initiator", "", "")
	fs.StringArrayVar(&o.listen, "listen", nil, "")
	fs.StringVar(&o.configFile, "config", "", "")
	fs.StringVar(&o.explain, "explain", "", "")
	fs.StringVar(&o.etcdEndpoints, "etcd-endpoints", "", "")
	fs.StringVar(&o.etcdPrefix, "etcd-prefix", "", "")
	fs.StringVar(&o.etcdCACert, "etcd-cacert", "", "")
	fs.StringVar(&o.etcdCert, "etcd-cert", "", "")
	fs.StringVar(&o.etcdKey, "etcd-key", "", "")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 0, "")
	fs.StringVar(&o.fence, "fence", "", "")
	fs.StringVar(&o.fenceTimeout, "fence-timeout", "", "")
	fs.StringVar(&o.fenceLeaseTTL, "fence-lease-ttl", "", "")
	fs.StringVar(&o.fenceHost, "fence-host", "", "")
	fs.StringVar(&o.vinitKey, "vinit-key", "", "")
	fs.StringVar(&o.metrics, "metrics", "", "")
	fs.StringVar(&o.maxRegistrations, "max-registrations", "", "")
	fs.StringVar(&o.socketMode, "socket-mode", "", "")
	fs.StringVar(&o.socketGroup, "socket-group", "", "")
	fs.StringVar(&o.allowUID, "allow-uid", "", "")
	fs.StringVar(&o.allowGID, "allow-gid", "", "")
	fs.StringVar(&o.peerExe, "peer-exe", "", "")
	fs.StringVar(&o.sandbox, "sandbox", "", "")
	return fs
}

func parseOptions(name string, args []string) (*options, error) {
	o := &options{}
	fs := newFlagSet(name, o)
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	o.socketSet = fs.Changed("socket")
	o.pidSet = fs.Changed("pidfile")
	// qemu-pr-helper's usage names a FILE operand it never uses; accept and
	// ignore one so that existing command lines keep working.
	if fs.NArg() > 1 {
		return nil, fmt.Errorf("%w: unexpected arguments: %s", errUsage, strings.Join(fs.Args()[1:], " "))
	}
	if o.help || o.version || o.explain != "" {
		return o, nil
	}
	if !filepath.IsAbs(o.socket) {
		// qemu-pr-helper's exact message.
		return nil, fmt.Errorf("socket path must be absolute")
	}
	if o.pidSet && o.pidfile == "" {
		return nil, fmt.Errorf("%w: empty --pidfile", errUsage)
	}
	if fs.Changed("shutdown-grace") && o.shutdownGrace <= 0 {
		return nil, fmt.Errorf("%w: --shutdown-grace must be a positive duration, such as 10s", errUsage)
	}
	return o, nil
}

// traceFile returns the file= value of the -T options, if any: prhelper maps
// QEMU's trace options onto its log, debug level, written to that file.
func (o *options) traceFile() string {
	file := ""
	for _, t := range o.trace {
		for _, kv := range strings.Split(t, ",") {
			if v, ok := strings.CutPrefix(kv, "file="); ok {
				file = v
			}
		}
	}
	return file
}

func usage(name string) string {
	return fmt.Sprintf(`Usage: %[1]s [OPTIONS] [FILE]
Persistent Reservation helper program for QEMU (prhelper, a drop-in for
qemu-pr-helper).

QEMU's pr-manager-helper object sends each PERSISTENT RESERVE IN/OUT command
of a guest, with the host device's descriptor, to this helper over a Unix
socket; the helper runs it on the device (SG_IO passthrough by default) and
returns the SCSI status, sense and data.

  -h, --help                display this help and exit
  -V, --version             output version information and exit

  -d, --daemon              run in the background (logs then go to /dev/null
                            unless -T file=PATH is given)
  -f, --pidfile=PATH        PID file, written with -d or -f, locked while
                            running
                            (default '%[2]s')
  -k, --socket=PATH         path to the unix socket, absolute
                            (default '%[3]s')
  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]
                            QEMU tracing options; prhelper logs at debug level
                            instead, to file=<file> if given
  -u, --user=USER           user to drop privileges to (name or number)
  -g, --group=GROUP         group to drop privileges to (name or number)
  -v, --verbose             more log output (-vv: per-request debug lines)
  -q, --quiet               log only errors

prhelper's own options:
      --backend=NAME        backend for devices no configuration rule matches:
                            auto (default: SCSI disks sgio, NVMe and dm linuxpr,
                            dm-multipath maps mpath, disk images emulate when
                            --db is given, else refused as qemu-pr-helper does),
                            sgio (SG_IO passthrough only, as qemu-pr-helper),
                            linuxpr (<linux/pr.h> ioctls: NVMe, dm, sd),
                            mpath (dm-multipath maps: every path registered,
                            multipathd kept informed),
                            emulate (reservations kept by prhelper in --db), or
                            vinit (emulated per-VM initiators over a real
                            SCSI disk or map: one registration per host on
                            the LUN, --fence-host's key; never auto;
                            docs/virtual-initiators.md)
      --db=PATH             SQLite file of emulated reservations, shared by
                            every prhelper of the host
                            (default '%[4]s')
      --etcd-endpoints=URL[,URL...]
                            keep emulated reservations in etcd instead of --db,
                            shared by the helpers of every host using the same
                            cluster and prefix (http:// or https:// client URLs)
      --etcd-prefix=PREFIX  key prefix in etcd (default '/prhelper/')
      --etcd-cacert=FILE    CA certificate of the etcd members (PEM)
      --etcd-cert=FILE      client certificate for etcd (PEM); with --etcd-key,
                            the documented way: write access to the prefix is
                            control of every reservation stored there
      --etcd-key=FILE       client certificate's key (PEM)
      --initiator=POLICY    who the initiator of a -k connection is, for
                            emulation:
                            host (default: one initiator for the whole host, as
                            real storage sees it), peer (the QEMU process on the
                            other end: its -uuid, else its -name), name:NAME
      --listen=PATH[,initiator=POLICY][,port=N]
                            one more socket, with its own identity policy and
                            relative target port (repeatable); when --listen is
                            given without -k, no -k socket is created
      --config=FILE         configuration file: backend, db, initiator, listen
                            and rules choosing a backend per device by wwid,
                            path or kind (prhelper.conf(5)); flags override it
      --explain=DEVICE      print what DEVICE is and which backend would serve
                            it, and why, then exit (a request that fails is
                            logged as "request failed" with the backend that
                            served it and why)
      --shutdown-grace=DURATION
                            how long requests in flight at SIGTERM may still
                            run and be answered (default %[5]v)
      --fence=POLICY        what happens to a VM whose registration on an
                            emulated LU another VM's PREEMPT (or PREEMPT AND
                            ABORT) removed while a reservation keeps it from
                            writing (CLEAR fences nobody): none (default:
                            nothing; emulation then arbitrates but does not
                            stop its writes), kill (SIGKILL to its QEMU
                            processes, known from their connections, and wait
                            until they exited), or
                            exec:PATH (run PATH with the VM's identity in
                            PRHELPER_FENCE_* variables; exit 0 = fenced). The
                            evictor gets GOOD only once the VM is fenced, else
                            CHECK CONDITION 04/44/00 (docs/fencing.md)
      --fence-timeout=DUR   how long a command waits for its fences (default
                            10s; with etcd twice --fence-lease-ttl, and it
                            must exceed it)
      --fence-lease-ttl=DUR with etcd: the TTL of this helper's etcd lease, its
                            proof of life to other hosts (whole seconds, at
                            least 2s; default 10s). A helper that cannot renew
                            it for 3/4 of the TTL kills its VMs that hold
                            registrations; an evicted VM's host that neither
                            confirms the fence nor renews its lease counts as
                            fenced once the lease expired (docs/fencing.md)
      --fence-host=NAME     with etcd: this host's name in fence records and
                            logs (default: the host name)
      --vinit-key=KEY       the vinit backend's key for this host on the real
                            LUN (0x-prefixed hexadecimal or decimal, not 0);
                            default: derived from --fence-host, else the host
                            name (docs/virtual-initiators.md)
      --metrics=ADDR        serve Prometheus metrics at http://ADDR/metrics
                            (HOST:PORT, e.g. 127.0.0.1:9851) or, with
                            unix:PATH, on a Unix socket; off by default
      --max-registrations=N at most N registrations on one emulated LU; a
                            command that would add more gets CHECK CONDITION
                            05/55/04 INSUFFICIENT REGISTRATION RESOURCES
                            (default %[6]d; config file: max-registrations N)

Who may connect (docs/security.md):
      --socket-mode=MODE    mode of the socket files prhelper creates, octal
                            (default 0600, or 0660 with --socket-group); the
                            umask does not change it
      --socket-group=GROUP  group of those socket files (name or number)
      --allow-uid=UID[,UID...]
      --allow-gid=GID[,GID...]
                            serve only peers with one of these uids, or one of
                            these gids as primary or supplementary group (names
                            or numbers), as the kernel recorded them at connect
                            (SO_PEERCRED); others are closed without a reply
                            and logged once a minute per uid
      --peer-exe=PATH[,PATH...]
                            under --initiator=peer, the QEMU binaries a peer
                            must run for its -uuid/-name to name it (shell
                            patterns allowed; 'any' turns the check off);
                            default:
                              %[7]s
      --sandbox=on|off      after start-up: no_new_privs, a seccomp filter of
                            the syscalls the configured backends use (others
                            fail with EPERM, logged by the kernel's audit), and
                            Landlock file access where the kernel has it
                            (default on)

Systemd socket activation: exactly one listening AF_UNIX stream socket (fd 3);
-k may not be given then. SIGTERM, SIGINT and SIGHUP stop the helper: it stops
accepting, removes its socket, closes idle connections and answers the requests
in flight; those still running after the grace period are cut (their
connections closed without a reply) and the helper exits 1.

After start-up the helper keeps only what its backends need: CAP_SYS_RAWIO (PR
commands through SG_IO), plus CAP_SYS_ADMIN when the linuxpr or auto backend may
serve a device (the <linux/pr.h> ioctls need it before Linux 6.5), plus
CAP_SYS_PTRACE under --initiator=peer with the --peer-exe check (to read the
executable of a QEMU of another user; the sandbox refuses ptrace itself);
emulation alone needs none of them. It clears its bounding set. FILE is
accepted and ignored, like qemu-pr-helper's.
`, name, defaultPidfile, defaultSocket, defaultDB, server.DefaultGrace, defaultMaxRegistrations, strings.Join(identity.DefaultPeerExe, "\n                              "))
}
