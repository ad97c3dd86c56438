package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/prhelper/prhelper/internal/daemon/config"
)

// defaultDB is prhelper's default --db.
const defaultDB = "/var/lib/prhelper/pr.db"

// options is a parsed command line.
type options struct {
	cmd  string
	args []string

	db                            string
	etcdEndpoints                 []string
	etcdPrefix                    string
	etcdCACert, etcdCert, etcdKey string

	json    bool
	force   bool
	dryRun  bool
	replace bool
	search  []string
	help    bool
	version bool
}

// commands and how many operands each takes.
var commands = map[string]struct{ min, max int }{
	"list": {0, 0}, "show": {1, 1}, "clear": {1, 1}, "purge": {0, 0}, "export": {0, 0}, "import": {0, 1},
}

var errUsage = errors.New("usage")

func usagef(format string, a ...any) error {
	return fail(exitSyntax, fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...))
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := pflag.NewFlagSet("prhelperctl", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(true)
	var endpoints string
	fs.StringVar(&o.db, "db", "", "")
	fs.StringVar(&endpoints, "etcd-endpoints", "", "")
	fs.StringVar(&o.etcdPrefix, "etcd-prefix", "", "")
	fs.StringVar(&o.etcdCACert, "etcd-cacert", "", "")
	fs.StringVar(&o.etcdCert, "etcd-cert", "", "")
	fs.StringVar(&o.etcdKey, "etcd-key", "", "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.BoolVarP(&o.force, "force", "f", false, "")
	fs.BoolVarP(&o.dryRun, "dry-run", "n", false, "")
	fs.BoolVar(&o.replace, "replace", false, "")
	fs.StringArrayVar(&o.search, "search", nil, "")
	fs.BoolVarP(&o.help, "help", "h", false, "")
	fs.BoolVarP(&o.version, "version", "V", false, "")
	if err := fs.Parse(args); err != nil {
		return nil, usagef("%v", err)
	}
	if o.help || o.version {
		return o, nil
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return nil, usagef("no command given (list, show, clear, purge, export, import)")
	}
	o.cmd, o.args = rest[0], rest[1:]
	n, ok := commands[o.cmd]
	if !ok {
		return nil, usagef("unknown command %q (list, show, clear, purge, export, import)", o.cmd)
	}
	if len(o.args) < n.min || len(o.args) > n.max {
		switch {
		case n.min == 1 && len(o.args) == 0:
			return nil, usagef("%s needs the LU's name (prhelperctl list shows them)", o.cmd)
		default:
			return nil, usagef("%s: unexpected arguments: %s", o.cmd, strings.Join(o.args[n.max:], " "))
		}
	}
	if endpoints != "" {
		if o.db != "" {
			return nil, usagef("--db and --etcd-endpoints: give one store")
		}
		eps, err := config.ParseEndpoints(endpoints)
		if err != nil {
			return nil, usagef("--etcd-endpoints: %v", err)
		}
		o.etcdEndpoints = eps
	} else if o.etcdPrefix != "" || o.etcdCACert != "" || o.etcdCert != "" || o.etcdKey != "" {
		return nil, usagef("--etcd-prefix, --etcd-cacert, --etcd-cert and --etcd-key need --etcd-endpoints")
	}
	if o.etcdPrefix != "" && !strings.HasSuffix(o.etcdPrefix, "/") {
		return nil, usagef("--etcd-prefix %q must end with /", o.etcdPrefix)
	}
	if o.db == "" && len(o.etcdEndpoints) == 0 {
		o.db = defaultDB
	}
	if o.dryRun && o.cmd != "purge" {
		return nil, usagef("--dry-run is for purge")
	}
	if len(o.search) > 0 && o.cmd != "purge" {
		return nil, usagef("--search is for purge")
	}
	if o.replace && o.cmd != "import" {
		return nil, usagef("--replace is for import")
	}
	return o, nil
}

func usage() string {
	return `Usage: prhelperctl [OPTIONS] COMMAND [ARG]
Read and repair the emulated persistent reservations prhelper keeps, while
helpers serve them: every change is one transaction of the store, as a
helper's own commands are.

Commands:
  list                 every LU with its generation, registrations, reservation
                       holder and type, and last change
  show LU              the LU's state as READ FULL STATUS decodes it, and what
                       that does not show (pending unit attentions, PTPL_A,
                       fence records)
  clear LU             what PERSISTENT RESERVE OUT CLEAR does: the reservation
                       and every registration go, every registered I_T nexus
                       gets RESERVATIONS PREEMPTED; asks first unless --force
  purge                remove LUs whose device or disk image no longer exists
                       on this host (-n, --dry-run: only say which)
  export               print the state as a JSON document (a backup)
  import [FILE]        write the LUs of an exported document (stdin without
                       FILE); an LU that exists with another state is left
                       as it is unless --replace

Store (as prhelper names it):
      --db=PATH              SQLite file (default '` + defaultDB + `')
      --etcd-endpoints=URL[,URL...]
                             etcd instead of --db
      --etcd-prefix=PREFIX   key prefix in etcd (default '/prhelper/')
      --etcd-cacert=FILE     CA certificate of the etcd members (PEM)
      --etcd-cert=FILE       client certificate (PEM)
      --etcd-key=FILE        client certificate's key (PEM)

Options:
      --json                 one JSON object on stdout (export: the document)
  -f, --force                clear without asking; purge an etcd store
  -n, --dry-run              purge: change nothing
      --search=DIR           purge: look for disk images only under DIR
                             (repeatable) instead of in the whole filesystem
                             that held them; an image elsewhere counts as gone
      --replace              import: overwrite LUs whose state differs
  -h, --help                 display this help and exit
  -V, --version              output version information and exit

Exit status: 0 done, 1 syntax error or declined, 2 no such LU, 3 import
conflict, 15 store or file cannot be opened, 97 malformed state, 99 other.
`
}
