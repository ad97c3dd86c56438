package main

import (
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/daemon/identity"
	"github.com/prhelper/prhelper/internal/daemon/sandbox"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/multipath/mpathconf"
)

// sandboxConfig is what the settings' backends need once the helper serves
// (docs/security.md §4). removeIn are the directories of the files the helper
// removes at exit (its sockets and pid file).
func sandboxConfig(s *settings, plan backend.Plan, exe *identity.ExeList, removeIn []string) sandbox.Config {
	c := sandbox.Config{
		Devices:  plan.Has(backend.Sgio) || plan.Has(backend.LinuxPR) || plan.Has(backend.Mpath),
		RemoveIn: removeIn,
	}
	if plan.Has(backend.Mpath) {
		c.Connect = true
		c.ReadFiles = append(c.ReadFiles, mpathconf.DefaultConfigFile, filepath.Dir(mpathconf.DefaultPRKeysFile))
	}
	if plan.Has(backend.Emulate) {
		if s.etcd.enabled() {
			c.Connect = true
			c.ReadFiles = append(c.ReadFiles, "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf",
				"/etc/host.conf", "/etc/gai.conf", "/etc/services")
		} else {
			c.DBDir = filepath.Dir(s.db)
		}
		if _, ok := s.fencing.policy.(fence.Exec); ok {
			c.Exec = true
		}
	}
	if exe != nil {
		// Landlock forbids ptrace access from its domain to processes
		// outside it, and /proc/PID/exe needs ptrace read access.
		c.SkipLandlock = "the --peer-exe check reads /proc/PID/exe of QEMU processes, which a Landlock domain may not (use --peer-exe=any to keep Landlock)"
		for _, p := range strings.Split(exe.String(), ",") {
			if d := filepath.Dir(p); !strings.ContainsAny(d, "*?[") {
				c.ReadDirs = append(c.ReadDirs, d)
			}
		}
	}
	return c
}

// applySandbox confines the helper under --sandbox=on and logs what it did.
func applySandbox(log *slog.Logger, sb *sandbox.Sandbox) error {
	rep, err := sb.Apply()
	if err != nil {
		return err
	}
	log.Info("sandbox", "seccomp", rep.Seccomp, "landlock", rep.Landlock,
		"denied_calls", "fail with EPERM; the kernel's audit log names them (type=SECCOMP)")
	return nil
}
