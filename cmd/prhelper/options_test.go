package main

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spf13/pflag"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		args    []string
		check   func(*options) bool
		wantErr string
	}{
		{nil, func(o *options) bool {
			return o.socket == defaultSocket && !o.socketSet && o.pidfile == defaultPidfile && !o.pidSet && !o.daemon
		}, ""},
		{[]string{"-k", "/run/x.sock", "-f", "/run/x.pid", "-d"}, func(o *options) bool {
			return o.socket == "/run/x.sock" && o.socketSet && o.pidfile == "/run/x.pid" && o.pidSet && o.daemon
		}, ""},
		{[]string{"--socket=/a/b", "--pidfile", "/p", "--daemon", "--user", "qemu", "--group", "kvm"}, func(o *options) bool {
			return o.socket == "/a/b" && o.pidfile == "/p" && o.user == "qemu" && o.group == "kvm"
		}, ""},
		{[]string{"-vv", "-q"}, func(o *options) bool { return o.verbose == 2 && o.quiet }, ""},
		{[]string{"-v", "--verbose"}, func(o *options) bool { return o.verbose == 2 }, ""},
		{[]string{"-T", "enable=pr_*,file=/tmp/t.log", "-T", "events=/x"}, func(o *options) bool {
			return len(o.trace) == 2 && o.traceFile() == "/tmp/t.log"
		}, ""},
		{[]string{"-u", "65534", "-g", "65534"}, func(o *options) bool { return o.user == "65534" && o.group == "65534" }, ""},
		{[]string{"-k/run/attached.sock"}, func(o *options) bool { return o.socket == "/run/attached.sock" }, ""},
		{[]string{"unused-file"}, func(o *options) bool { return true }, ""},
		{[]string{"-h"}, func(o *options) bool { return o.help }, ""},
		{[]string{"-V", "-k", "relative"}, func(o *options) bool { return o.version }, ""},
		{[]string{"-k", "relative.sock"}, nil, "socket path must be absolute"},
		{[]string{"--bogus"}, nil, "unknown flag"},
		{[]string{"-x"}, nil, "unknown shorthand"},
		{[]string{"-k"}, nil, "needs an argument"},
		{[]string{"a", "b"}, nil, "unexpected arguments"},
		{[]string{"-f", ""}, nil, "empty --pidfile"},
		{nil, func(o *options) bool { return o.shutdownGrace == 0 }, ""}, // the server's default
		{[]string{"--shutdown-grace=1m30s"}, func(o *options) bool { return o.shutdownGrace == 90*time.Second }, ""},
		{[]string{"--shutdown-grace", "0"}, nil, "--shutdown-grace must be a positive duration"},
		{[]string{"--shutdown-grace=-1s"}, nil, "--shutdown-grace must be a positive duration"},
		{[]string{"--shutdown-grace=10"}, nil, "must be a duration"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, err := parseOptions("prhelper", tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(o) {
				t.Fatalf("options %+v", o)
			}
		})
	}
}

func TestUsageErrorsAreMarked(t *testing.T) {
	_, err := parseOptions("prhelper", []string{"--nope"})
	if !errors.Is(err, errUsage) {
		t.Fatalf("%v is not a usage error", err)
	}
	_, err = parseOptions("prhelper", []string{"-k", "rel"})
	if errors.Is(err, errUsage) {
		t.Fatal("relative socket path reported as a usage error; qemu-pr-helper prints only its message")
	}
}

func TestUsageNamesEveryFlag(t *testing.T) {
	u := usage("qemu-pr-helper")
	newFlagSet("prhelper", &options{}).VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(u, "--"+f.Name) {
			t.Errorf("usage does not mention --%s", f.Name)
		}
		if f.Shorthand != "" && !strings.Contains(u, "-"+f.Shorthand+", --"+f.Name) {
			t.Errorf("usage does not give -%s as the short form of --%s", f.Shorthand, f.Name)
		}
	})
	for _, f := range []string{defaultSocket, defaultPidfile, defaultDB} {
		if !strings.Contains(u, f) {
			t.Errorf("usage does not mention %s", f)
		}
	}
	if !strings.HasPrefix(u, "Usage: qemu-pr-helper ") {
		t.Errorf("usage does not use the invoked name: %q", u[:30])
	}
}

// TestUsageWithin80Columns: every line of --help fits an 80-column terminal,
// under the longer of the two names the helper is installed as.
func TestUsageWithin80Columns(t *testing.T) {
	for _, name := range []string{"prhelper", "qemu-pr-helper"} {
		for i, line := range strings.Split(usage(name), "\n") {
			if n := utf8.RuneCountInString(line); n > 80 {
				t.Errorf("%s --help line %d has %d columns: %q", name, i+1, n, line)
			}
		}
	}
}
