package multipathd

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// within fails the test when fn takes longer than d: the client must never
// hang on a misbehaving peer.
func within(t *testing.T, d time.Duration, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("still blocked after %v", d)
	}
}

func TestCommandRoundTripBytes(t *testing.T) {
	addr := pathSocket(t)
	d := startCanned(t, addr, map[string]string{"show daemon": "pid 42 idle\n"})
	c := New(Options{Addresses: []string{addr}})
	got, err := c.Command(context.Background(), "show daemon")
	if err != nil {
		t.Fatal(err)
	}
	if got != "pid 42 idle\n" {
		t.Fatalf("reply %q", got)
	}
	cmds, raws := d.received()
	if len(cmds) != 1 || cmds[0] != "show daemon" {
		t.Fatalf("daemon received %q", cmds)
	}
	want := append(sizeBytes(uint64(len("show daemon")+1)), "show daemon\x00"...)
	if !bytes.Equal(raws[0], want) {
		t.Fatalf("frame on the wire\n got % x\nwant % x", raws[0], want)
	}
}

func TestCommandTypedErrors(t *testing.T) {
	tests := []struct {
		reply string
		want  error // nil: no error
	}{
		{"fail\n", ErrFailed},
		{"timeout\n", ErrTimeout},
		{"permission deny: need to be root\n", ErrPermission},
		{"permission deny: need to be root", ErrPermission}, // before 0.9
		{"frobnicate: not found\nmultipath-tools v0.9.4 (12/19, 2022)\nCLI commands reference:\n list|show paths\n", ErrUnknownCommand},
		{"ok\n", nil},
		{"failed paths: 0\n", nil},
		{"", nil},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(shorten(tt.reply, 20)), func(t *testing.T) {
			addr := pathSocket(t)
			startCanned(t, addr, map[string]string{"cmd x": tt.reply})
			c := New(Options{Addresses: []string{addr}})
			got, err := c.Command(context.Background(), "cmd x")
			if tt.want == nil {
				if err != nil || got != tt.reply {
					t.Fatalf("Command = %q, %v; want %q", got, err, tt.reply)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var ce *CommandError
			if !errors.As(err, &ce) || ce.Cmd != "cmd x" || ce.Reply != tt.reply {
				t.Fatalf("err = %#v, want a *CommandError with the command and reply", err)
			}
			if !strings.Contains(err.Error(), `"cmd x"`) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error text %q: want one line naming the command", err.Error())
			}
		})
	}
}

// TestFallbackToAbstract: the pathname socket is missing (multipath-tools
// before 0.12), the abstract one answers, as on Debian 12.
func TestFallbackToAbstract(t *testing.T) {
	missing := pathSocket(t)
	abs := abstractSocket(t)
	d := startCanned(t, abs, map[string]string{"show status": "ok\n"})
	c := New(Options{Addresses: []string{missing, abs}})
	if _, err := c.Command(context.Background(), "show status"); err != nil {
		t.Fatal(err)
	}
	if cmds, _ := d.received(); len(cmds) != 1 {
		t.Fatalf("abstract daemon got %d commands, want 1", len(cmds))
	}
}

// TestPathnameFirst: with both sockets up, the pathname socket is used, as
// libmpathcmd 0.12+ does.
func TestPathnameFirst(t *testing.T) {
	path := pathSocket(t)
	abs := abstractSocket(t)
	p := startCanned(t, path, map[string]string{"show status": "from path\n"})
	a := startCanned(t, abs, map[string]string{"show status": "from abstract\n"})
	got, err := New(Options{Addresses: []string{path, abs}}).Command(context.Background(), "show status")
	if err != nil || got != "from path\n" {
		t.Fatalf("Command = %q, %v", got, err)
	}
	if p.connections() != 1 || a.connections() != 0 {
		t.Fatalf("connections: path %d, abstract %d; want 1, 0", p.connections(), a.connections())
	}
}

func TestUnreachable(t *testing.T) {
	a, b := pathSocket(t), pathSocket(t)
	_, err := New(Options{Addresses: []string{a, b}}).Command(context.Background(), "show status")
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, a) || !strings.Contains(msg, b) || strings.Contains(msg, "\n") {
		t.Fatalf("error %q: want one line naming both addresses", msg)
	}
}

func TestDefaultAddresses(t *testing.T) {
	got := New(Options{}).Addresses()
	if len(got) != 2 || got[0] != "/run/multipathd.socket" || got[1] != "@/org/kernel/linux/storage/multipathd" {
		t.Fatalf("default addresses %q", got)
	}
	got[0] = "changed"
	if DefaultAddresses()[0] != PathnameSocket {
		t.Fatal("DefaultAddresses shares its slice")
	}
}

// TestMisbehavingDaemon: every broken peer ends in an error, quickly.
func TestMisbehavingDaemon(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		serve   func(f *fakeDaemon, c net.Conn)
		want    error
	}{
		{"closes before replying", time.Minute, func(f *fakeDaemon, c net.Conn) {
			readFrame(c)
		}, ErrProtocol},
		{"closes mid length", time.Minute, func(f *fakeDaemon, c net.Conn) {
			readFrame(c)
			c.Write(sizeBytes(100)[:3])
		}, ErrProtocol},
		{"closes mid reply", time.Minute, func(f *fakeDaemon, c net.Conn) {
			readFrame(c)
			c.Write(append(sizeBytes(100), "only ten.."...))
		}, ErrProtocol},
		{"huge length", time.Minute, func(f *fakeDaemon, c net.Conn) {
			readFrame(c)
			c.Write(sizeBytes(1 << 40))
			<-f.done
		}, ErrProtocol},
		{"reply without NUL", time.Minute, func(f *fakeDaemon, c net.Conn) {
			readFrame(c)
			c.Write(append(sizeBytes(2), "ok"...))
		}, ErrProtocol},
		{"stalls mid reply", 200 * time.Millisecond, func(f *fakeDaemon, c net.Conn) {
			readFrame(c)
			c.Write(append(sizeBytes(100), "partial"...))
			<-f.done
		}, context.DeadlineExceeded},
		{"never reads", 200 * time.Millisecond, func(f *fakeDaemon, c net.Conn) {
			<-f.done
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := pathSocket(t)
			startFake(t, addr, tt.serve)
			c := New(Options{Addresses: []string{addr}, Timeout: tt.timeout})
			within(t, 10*time.Second, func() {
				_, err := c.Command(context.Background(), "show paths")
				if !errors.Is(err, tt.want) {
					t.Errorf("err = %v, want %v", err, tt.want)
				}
			})
		})
	}
}

// TestContextCancel: cancelling the context ends a command blocked on a
// silent daemon even with the client's own timeout disabled.
func TestContextCancel(t *testing.T) {
	addr := pathSocket(t)
	startFake(t, addr, func(f *fakeDaemon, c net.Conn) {
		readFrame(c)
		<-f.done
	})
	c := New(Options{Addresses: []string{addr}, Timeout: -1})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	within(t, 10*time.Second, func() {
		_, err := c.Command(ctx, "show paths")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func TestContextDeadline(t *testing.T) {
	addr := pathSocket(t)
	startFake(t, addr, func(f *fakeDaemon, c net.Conn) {
		readFrame(c)
		<-f.done
	})
	c := New(Options{Addresses: []string{addr}}) // DefaultTimeout: the context's deadline is earlier
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Command(ctx, "show paths")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("took %v, the context allowed 150ms", el)
	}
}

func TestCancelledBeforeDial(t *testing.T) {
	addr := pathSocket(t)
	f := startFake(t, addr, func(f *fakeDaemon, c net.Conn) { readFrame(c) })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := New(Options{Addresses: []string{addr}}).Command(ctx, "show paths")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if f.connections() != 0 {
		t.Fatalf("%d connections after a cancelled context", f.connections())
	}
}

func TestInvalidCommandNotSent(t *testing.T) {
	addr := pathSocket(t)
	f := startFake(t, addr, func(f *fakeDaemon, c net.Conn) { readFrame(c) })
	_, err := New(Options{Addresses: []string{addr}}).Command(context.Background(), strings.Repeat("x", 600))
	if !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("err = %v, want ErrInvalidCommand", err)
	}
	if f.connections() != 0 {
		t.Fatal("an invalid command opened a connection")
	}
}
