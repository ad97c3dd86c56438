// Command tcpproxy forwards TCP connections, for the lab's etcd tests
// (tests/etcd-two-hosts.sh): a helper that reaches etcd only through it can be
// cut off from etcd, a network partition seen from that helper.
//
//	tcpproxy LISTEN=TARGET...   forward each LISTEN address (host:port) to its
//	                            TARGET until killed
//
// SIGUSR1 cuts: every open connection is closed and new ones are closed as soon
// as they are accepted, until SIGUSR2 forwards again. Each change is printed with
// the time, to line up with the helpers' logs.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proxy holds the open connections and whether they are cut.
type proxy struct {
	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tcpproxy LISTEN=TARGET...")
		os.Exit(2)
	}
	p := &proxy{conns: map[net.Conn]struct{}{}}
	for _, a := range os.Args[1:] {
		listen, target, ok := strings.Cut(a, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "tcpproxy: %q: want LISTEN=TARGET\n", a)
			os.Exit(2)
		}
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			fmt.Fprintln(os.Stderr, "tcpproxy:", err)
			os.Exit(1)
		}
		go p.accept(ln, target)
	}
	fmt.Printf("%s tcpproxy: forwarding %s\n", stamp(), strings.Join(os.Args[1:], " "))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	for s := range sig {
		p.setCut(s == syscall.SIGUSR1)
	}
}

func stamp() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000Z") }

// setCut cuts (closing every connection) or forwards again.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	n := 0
	if cut {
		for c := range p.conns {
			c.Close()
			n++
		}
	}
	fmt.Printf("%s tcpproxy: cut=%v (%d connections closed)\n", stamp(), cut, n)
}

// track adds c to the open connections, or closes it when cut.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *proxy) accept(ln net.Listener, target string) {
	for {
		down, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "tcpproxy: accept:", err)
			return
		}
		go p.serve(down, target)
	}
}

func (p *proxy) serve(down net.Conn, target string) {
	if !p.track(down) {
		return
	}
	defer p.untrack(down)
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(up) {
		return
	}
	defer p.untrack(up)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, down); done <- struct{}{} }()
	go func() { io.Copy(down, up); done <- struct{}{} }()
	<-done
}
