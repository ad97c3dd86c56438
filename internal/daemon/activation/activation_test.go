package activation

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// childEnv makes the re-executed test binary act as a socket-activated daemon.
const childEnv = "ACTIVATION_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		if err := activatedChild(); err != nil {
			fmt.Println("error:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// activatedChild takes its socket from fd 3, reports what it saw and serves one
// connection with a greeting.
func activatedChild() error {
	lns, err := Listeners(os.Getenv, os.Unsetenv, os.Getpid())
	if err != nil {
		return err
	}
	ln, err := Single(lns, false)
	if err != nil {
		return err
	}
	if ln == nil {
		return errors.New("not activated")
	}
	for _, k := range []string{EnvPID, EnvFDs, EnvFDNames} {
		if v, ok := os.LookupEnv(k); ok {
			return fmt.Errorf("%s still set to %q", k, v)
		}
	}
	if _, err := unix.FcntlInt(uintptr(FirstFD), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		return fmt.Errorf("fd %d still open after wrapping (err %v)", FirstFD, err)
	}
	fmt.Println("listening", ln.Addr())
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte("hello\n"))
	return err
}

// TestActivatedChild runs the test binary the way systemd runs a socket-activated
// service: the listening socket at fd 3 and LISTEN_PID set to the pid of the
// exec'd program (sh's exec keeps $$).
func TestActivatedChild(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "act.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lf, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()

	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=prhelper exec "$0" -test.run='^$'`, os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.ExtraFiles = []*os.File{lf}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	buf := make([]byte, 512)
	n, _ := out.Read(buf)
	if got, want := strings.TrimSpace(string(buf[:n])), "listening "+sock; got != want {
		t.Fatalf("child said %q, want %q (stderr %q)", got, want, stderr.String())
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n, _ = c.Read(buf)
	if string(buf[:n]) != "hello\n" {
		t.Errorf("greeting %q, want hello", buf[:n])
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("child: %v, stderr %q", err, stderr.String())
	}
}

// fakeEnv is an environment for Listeners that records removals.
type fakeEnv map[string]string

func (e fakeEnv) get(k string) string { return e[k] }
func (e fakeEnv) unset(k string) error {
	delete(e, k)
	return nil
}

// placeFD duplicates f's descriptor to the exact number fd, closing it at the end
// of the test.
func placeFD(t *testing.T, from, fd int) {
	t.Helper()
	if err := unix.Dup3(from, fd, unix.O_CLOEXEC); err != nil {
		t.Fatalf("dup3 to %d: %v", fd, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
}

// A block of descriptor numbers far above what the test process uses.
const base = 700

type setup func(t *testing.T)

func unixListener(fd int) setup {
	return func(t *testing.T) {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.File()
		if err != nil {
			t.Fatal(err)
		}
		placeFD(t, int(f.Fd()), fd)
		f.Close()
		ln.SetUnlinkOnClose(false) // the duplicate at fd still listens on the path
		ln.Close()
	}
}

func rawSocket(fd, domain, typ int, bind unix.Sockaddr, listen bool) setup {
	return func(t *testing.T) {
		s, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(s)
		if sa, ok := bind.(*unix.SockaddrUnix); ok {
			bind = &unix.SockaddrUnix{Name: filepath.Join(t.TempDir(), sa.Name)}
		}
		if bind != nil {
			if err := unix.Bind(s, bind); err != nil {
				t.Fatal(err)
			}
		}
		if listen {
			if err := unix.Listen(s, 1); err != nil {
				t.Fatal(err)
			}
		}
		placeFD(t, s, fd)
	}
}

func pipeEnd(fd int) setup {
	return func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		placeFD(t, int(r.Fd()), fd)
	}
}

func TestListeners(t *testing.T) {
	me := os.Getpid()
	pid := strconv.Itoa(me)
	all := func(fds string) fakeEnv {
		return fakeEnv{EnvPID: pid, EnvFDs: fds, EnvFDNames: "a:b", "OTHER": "x"}
	}
	tests := []struct {
		name      string
		env       fakeEnv
		setup     []setup
		want      int
		wantErr   string
		wantUnset bool // else the environment must be left as it was
	}{
		{"not activated", fakeEnv{"OTHER": "x"}, nil, 0, "", false},
		{"other pid", fakeEnv{EnvPID: strconv.Itoa(me + 1), EnvFDs: "1"}, nil, 0, "", false},
		{"garbage pid", fakeEnv{EnvPID: "12ab", EnvFDs: "1"}, nil, 0, "", false},
		{"zero fds", all("0"), nil, 0, "", true},
		{"garbage fds", all("one"), nil, 0, `LISTEN_FDS="one" is not a descriptor count`, true},
		{"empty fds", all(""), nil, 0, "not a descriptor count", true},
		{"negative fds", all("-1"), nil, 0, "not a descriptor count", true},
		{"huge fds", all("99999999"), nil, 0, "not a descriptor count", true},
		{"one listener", all("1"), []setup{unixListener(base)}, 1, "", true},
		{"two listeners", all("2"), []setup{unixListener(base), unixListener(base + 1)}, 2, "", true},
		{"second fd missing", all("2"), []setup{unixListener(base)}, 0, "fd 701 is not a socket", true},
		{"closed fd", all("1"), nil, 0, "fd 700 is not a socket", true},
		{"pipe", all("1"), []setup{pipeEnd(base)}, 0, "fd 700 is not a socket", true},
		{"datagram socket", all("1"), []setup{rawSocket(base, unix.AF_UNIX, unix.SOCK_DGRAM, &unix.SockaddrUnix{Name: "d"}, false)}, 0, "not a stream socket", true},
		{"tcp listener", all("1"), []setup{rawSocket(base, unix.AF_INET, unix.SOCK_STREAM, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}, true)}, 0, "not an AF_UNIX socket", true},
		{"bound, not listening", all("1"), []setup{rawSocket(base, unix.AF_UNIX, unix.SOCK_STREAM, &unix.SockaddrUnix{Name: "n"}, false)}, 0, "not listening", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range tc.setup {
				s(t)
			}
			env := tc.env
			envLen := len(env)
			_, hadOther := env["OTHER"]
			lns, err := listeners(env.get, env.unset, me, base)
			for _, l := range lns {
				defer l.Close()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				if lns != nil {
					t.Errorf("listeners %v returned with an error", lns)
				}
			} else if err != nil {
				t.Fatalf("listeners: %v", err)
			}
			if len(lns) != tc.want {
				t.Fatalf("got %d listeners, want %d", len(lns), tc.want)
			}
			_, pidSet := env[EnvPID]
			_, fdsSet := env[EnvFDs]
			_, namesSet := env[EnvFDNames]
			if tc.wantUnset && (pidSet || fdsSet || namesSet) {
				t.Errorf("environment not cleaned: %v", env)
			}
			if !tc.wantUnset && len(env) != envLen {
				t.Errorf("environment changed to %v", env)
			}
			if hadOther && env["OTHER"] != "x" {
				t.Errorf("unrelated variable removed")
			}
			for i, l := range lns {
				if _, err := unix.FcntlInt(uintptr(base+i), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
					t.Errorf("fd %d left open after wrapping", base+i)
				}
				// The listener must accept a real connection.
				c, err := net.Dial("unix", l.Addr().String())
				if err != nil {
					t.Fatalf("dial listener %d: %v", i, err)
				}
				s, err := l.Accept()
				if err != nil {
					t.Fatalf("accept listener %d: %v", i, err)
				}
				s.Close()
				c.Close()
			}
		})
	}
}

func TestListenersKeepsEnvWhenNotOurs(t *testing.T) {
	env := fakeEnv{EnvPID: "1", EnvFDs: "1", EnvFDNames: "x"}
	if lns, err := listeners(env.get, env.unset, os.Getpid(), base); lns != nil || err != nil {
		t.Fatalf("got %v, %v; want nil, nil", lns, err)
	}
	if len(env) != 3 {
		t.Errorf("environment for another process was modified: %v", env)
	}
}

func TestListenersUnsetError(t *testing.T) {
	env := fakeEnv{EnvPID: strconv.Itoa(os.Getpid()), EnvFDs: "1"}
	_, err := listeners(env.get, func(string) error { return errors.New("read-only") }, os.Getpid(), base)
	if err == nil || !strings.Contains(err.Error(), "unset LISTEN_FDS: read-only") {
		t.Errorf("err = %v, want unset error", err)
	}
}

func TestListenersCloexec(t *testing.T) {
	// A listener inherited without FD_CLOEXEC must come out close-on-exec; the
	// check happens before wrapping, so test it through checkListener directly.
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	if err := unix.Bind(s, &unix.SockaddrUnix{Name: filepath.Join(t.TempDir(), "c")}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(s, 1); err != nil {
		t.Fatal(err)
	}
	if err := checkListener(s); err != nil {
		t.Fatal(err)
	}
	flags, err := unix.FcntlInt(uintptr(s), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("F_GETFD = %#x, %v; want FD_CLOEXEC", flags, err)
	}
}

func TestSingle(t *testing.T) {
	l1, l2 := &net.UnixListener{}, &net.UnixListener{}
	tests := []struct {
		name    string
		lns     []*net.UnixListener
		pathSet bool
		want    *net.UnixListener
		wantErr error
	}{
		{"not activated", nil, false, nil, nil},
		{"not activated, -k", nil, true, nil, nil},
		{"one", []*net.UnixListener{l1}, false, l1, nil},
		{"one with -k", []*net.UnixListener{l1}, true, nil, ErrSocketPathSet},
		{"two", []*net.UnixListener{l1, l2}, false, nil, ErrTooManyFDs},
		{"two with -k", []*net.UnixListener{l1, l2}, true, nil, ErrSocketPathSet},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Single(tc.lns, tc.pathSet)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("Single = %p, %v; want %p, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	if ErrSocketPathSet.Error() != "Unix socket can't be set when using socket activation" ||
		ErrTooManyFDs.Error() != "does not support socket activation with LISTEN_FDS > 1" {
		t.Errorf("messages differ from qemu-pr-helper's: %q, %q", ErrSocketPathSet, ErrTooManyFDs)
	}
}

// FuzzListenersEnv feeds arbitrary LISTEN_PID/LISTEN_FDS values. The descriptors
// at the fuzz block are never open, so any activation must end in an error, and
// the variables must be gone whenever LISTEN_PID named us.
func FuzzListenersEnv(f *testing.F) {
	const fuzzBase = 900
	me := os.Getpid()
	f.Add(strconv.Itoa(me), "1")
	f.Add(strconv.Itoa(me), "0")
	f.Add(strconv.Itoa(me), "x")
	f.Add(strconv.Itoa(me), "-5")
	f.Add("1", "1")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, pid, fds string) {
		env := fakeEnv{EnvPID: pid, EnvFDs: fds}
		lns, err := listeners(env.get, env.unset, me, fuzzBase)
		if len(lns) != 0 {
			t.Fatalf("got %d listeners from closed descriptors", len(lns))
		}
		p, perr := strconv.Atoi(pid)
		ours := pid != "" && perr == nil && p == me
		if !ours && (err != nil || len(env) != 2) {
			t.Fatalf("not addressed to us: err %v, env %v", err, env)
		}
		if ours && len(env) != 0 {
			t.Fatalf("addressed to us but environment kept: %v", env)
		}
		if n, nerr := strconv.Atoi(fds); ours && nerr == nil && n > 0 && err == nil {
			t.Fatalf("LISTEN_FDS=%d over closed descriptors gave no error", n)
		}
	})
}
