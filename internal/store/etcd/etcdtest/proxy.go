package etcdtest

import (
	"io"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy on loopback in front of one address. It can cut the
// connections of chosen sources (a network partition) and lose the replies of the
// next exchange (an outcome the client cannot learn).
type Proxy struct {
	ln       net.Listener
	target   string
	identify func(remote net.Addr) string

	mu      sync.Mutex
	conns   map[*pconn]struct{}
	blocked func(src string) bool
	lose    bool
	closed  bool
	wg      sync.WaitGroup
	dropped int
}

type pconn struct {
	down, up net.Conn
	src      string
}

// NewProxy listens on a free loopback port and forwards to target. identify, when not
// nil, names the source of each accepted connection (for the cluster: the member
// whose process owns the connecting socket), so a partition can cut the connections
// of one member to another.
func NewProxy(target string, identify func(remote net.Addr) string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, identify: identify, conns: map[*pconn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listening address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Dropped counts the connections the proxy cut or refused.
func (p *Proxy) Dropped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// SetBlocked cuts, now and until the next call, every connection whose source
// blocked(src) reports (src as identify named it, "" when unknown). nil blocks
// nothing.
func (p *Proxy) SetBlocked(blocked func(src string) bool) {
	p.mu.Lock()
	p.blocked = blocked
	var cut []*pconn
	for c := range p.conns {
		if blocked != nil && blocked(c.src) {
			cut = append(cut, c)
		}
	}
	p.mu.Unlock()
	for _, c := range cut {
		p.drop(c)
	}
}

// LoseReplies discards every byte from the target to the clients from now on, and
// after d closes every connection and forwards normally again: requests sent in that
// window reach the target and are applied, their replies never arrive.
func (p *Proxy) LoseReplies(d time.Duration) {
	p.mu.Lock()
	p.lose = true
	p.mu.Unlock()
	time.AfterFunc(d, func() {
		p.mu.Lock()
		p.lose = false
		var cut []*pconn
		for c := range p.conns {
			cut = append(cut, c)
		}
		p.mu.Unlock()
		for _, c := range cut {
			p.drop(c)
		}
	})
}

func (p *Proxy) losing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lose
}

func (p *Proxy) drop(c *pconn) {
	p.mu.Lock()
	if _, ok := p.conns[c]; ok {
		delete(p.conns, c)
		p.dropped++
	}
	p.mu.Unlock()
	c.down.Close()
	c.up.Close()
}

// Close stops the proxy and cuts its connections.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	var all []*pconn
	for c := range p.conns {
		all = append(all, c)
	}
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range all {
		c.down.Close()
		c.up.Close()
	}
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(down)
	}
}

func (p *Proxy) serve(down net.Conn) {
	src := ""
	if p.identify != nil {
		src = p.identify(down.RemoteAddr())
	}
	p.mu.Lock()
	// A connection whose source cannot be named could cross a partition unseen:
	// refuse it; the member dials again.
	refuse := p.closed || (p.identify != nil && src == "") || (p.blocked != nil && p.blocked(src))
	if refuse {
		p.dropped++
	}
	p.mu.Unlock()
	if refuse {
		down.Close()
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		down.Close()
		return
	}
	c := &pconn{down: down, up: up, src: src}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		down.Close()
		up.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(up, down)
		p.drop(c)
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 && !p.losing() {
			if _, werr := down.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.drop(c)
}
