package etcdtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Member is one etcd server process of a Cluster.
type Member struct {
	Name      string
	ID        string // hex member id
	ClientURL string // direct, not proxied
	peerAddr  string // where the member listens for peers
	dataDir   string
	proxy     *Proxy // in front of the peer listener; its address is advertised (nil: StartDirect)
	cmd       *exec.Cmd
	exited    chan struct{}
	log       *os.File
	stopped   bool // SIGSTOPped
}

// Cluster is a set of etcd members on loopback, each with its own data directory,
// whose peer traffic passes through proxies the test controls.
type Cluster struct {
	t       testing.TB
	bin     string
	dir     string
	token   string
	Members []*Member

	mu        sync.Mutex
	isolated  map[string]bool // member names cut off from the others
	partition bool

	// Certs, when set (StartTLS), make the client URLs https:// with client
	// certificates required.
	Certs  *Certs
	tlsCfg *tls.Config
}

// Start starts an n-member cluster and waits until it has a leader. It is stopped
// when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return start(t, n, false)
}

// StartDirect is Start without the peer proxies: the members talk to each other
// directly, as a real cluster's do, so that a benchmark measures etcd and not the
// proxies (which run in the test process). Isolate and Heal fail the test on
// such a cluster.
func StartDirect(t testing.TB, n int) *Cluster {
	t.Helper()
	return startOpts(t, n, false, false)
}

// StartTLS is Start with https:// client URLs that require a client certificate
// signed by the cluster's test CA (c.Certs).
func StartTLS(t testing.TB, n int) *Cluster {
	t.Helper()
	return start(t, n, true)
}

func start(t testing.TB, n int, withTLS bool) *Cluster {
	t.Helper()
	return startOpts(t, n, withTLS, true)
}

func startOpts(t testing.TB, n int, withTLS, proxies bool) *Cluster {
	t.Helper()
	bin := Binary(t)
	c := &Cluster{t: t, bin: bin, dir: t.TempDir(), token: fmt.Sprintf("prhelper-test-%d", time.Now().UnixNano()), isolated: map[string]bool{}}
	t.Cleanup(c.Stop)
	scheme := "http://"
	if withTLS {
		certs, err := MakeCerts(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		info := transport.TLSInfo{CertFile: certs.ClientCert, KeyFile: certs.ClientKey, TrustedCAFile: certs.CA}
		if c.tlsCfg, err = info.ClientConfig(); err != nil {
			t.Fatal(err)
		}
		c.Certs, scheme = certs, "https://"
	}
	var initial []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i), dataDir: filepath.Join(c.dir, fmt.Sprintf("m%d.etcd", i))}
		m.ClientURL = scheme + freeAddr(t)
		m.peerAddr = freeAddr(t)
		if proxies {
			p, err := NewProxy(m.peerAddr, c.owner)
			if err != nil {
				t.Fatal(err)
			}
			m.proxy = p
		}
		initial = append(initial, m.Name+"=http://"+m.advertised())
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		if err := c.launch(m, strings.Join(initial, ","), "new"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatalf("etcd cluster: %v", err)
	}
	cli := c.Client(t)
	resp, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	for _, mm := range resp.Members {
		for _, m := range c.Members {
			if m.Name == mm.Name {
				m.ID = fmt.Sprintf("%x", mm.ID)
			}
		}
	}
	for _, m := range c.Members {
		if m.proxy != nil {
			m.proxy.SetBlocked(c.blockFunc(m))
		}
	}
	return c
}

// advertised is the peer address the other members reach m at: its proxy's, or
// its own without proxies.
func (m *Member) advertised() string {
	if m.proxy == nil {
		return m.peerAddr
	}
	return m.proxy.Addr()
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (c *Cluster) launch(m *Member, initial, state string) error {
	logf, err := os.OpenFile(filepath.Join(c.dir, m.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin,
		"--name", m.Name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", "http://"+m.peerAddr,
		"--initial-advertise-peer-urls", "http://"+m.advertised(),
		"--initial-cluster", initial,
		"--initial-cluster-state", state,
		"--initial-cluster-token", c.token,
		"--heartbeat-interval", "100",
		"--election-timeout", "1000",
		"--log-level", "warn",
	)
	if c.Certs != nil {
		cmd.Args = append(cmd.Args, "--cert-file", c.Certs.ServerCert, "--key-file", c.Certs.ServerKey,
			"--trusted-ca-file", c.Certs.CA, "--client-cert-auth")
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	c.mu.Lock()
	m.cmd, m.log, m.stopped = cmd, logf, false
	c.mu.Unlock()
	m.exited = make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(m.exited)
	return nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Client returns a client of the whole cluster, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: c.tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Leader returns the member that a running member reports as leader, or nil.
func (c *Cluster) Leader(ctx context.Context) *Member {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: time.Second, Logger: zap.NewNop(), TLS: c.tlsCfg})
	if err != nil {
		return nil
	}
	defer cli.Close()
	for _, m := range c.Members {
		if m.cmd == nil || m.stopped || c.isIsolated(m) {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err := cli.Status(sctx, m.ClientURL)
		cancel()
		if err != nil || st.Leader == 0 {
			continue
		}
		id := fmt.Sprintf("%x", st.Leader)
		for _, l := range c.Members {
			if l.ID == id || (l.ID == "" && st.Header.MemberId == st.Leader && l == m) {
				return l
			}
		}
	}
	return nil
}

// WaitLeader waits until a member that can reach a quorum is leader.
func (c *Cluster) WaitLeader(ctx context.Context) (*Member, error) {
	for {
		if l := c.Leader(ctx); l != nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) isIsolated(m *Member) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.isolated[m.Name]
}

// blockFunc decides for member dst's peer proxy which sources to cut: a source on the
// other side of the current partition.
func (c *Cluster) blockFunc(dst *Member) func(src string) bool {
	return func(src string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		var from *Member
		for _, m := range c.Members {
			if m.Name == src {
				from = m
			}
		}
		if from == nil {
			return false
		}
		return c.isolated[from.Name] != c.isolated[dst.Name]
	}
}

// Isolate cuts m off from the other members (both directions) until Heal.
func (c *Cluster) Isolate(m *Member) {
	c.needProxies("Isolate")
	c.mu.Lock()
	c.isolated[m.Name] = true
	c.mu.Unlock()
	for _, d := range c.Members {
		d.proxy.SetBlocked(c.blockFunc(d))
	}
}

// Heal ends every partition.
func (c *Cluster) Heal() {
	c.needProxies("Heal")
	c.mu.Lock()
	clear(c.isolated)
	c.mu.Unlock()
	for _, d := range c.Members {
		d.proxy.SetBlocked(c.blockFunc(d))
	}
}

func (c *Cluster) needProxies(op string) {
	if len(c.Members) > 0 && c.Members[0].proxy == nil {
		c.t.Fatalf("etcdtest: %s needs the peer proxies (Start, not StartDirect)", op)
	}
}

// Kill sends SIGKILL to m and waits for it to exit.
func (c *Cluster) Kill(m *Member) {
	if m.cmd == nil {
		return
	}
	if m.stopped {
		_ = m.cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
	m.log.Close()
	c.mu.Lock()
	m.cmd = nil
	c.mu.Unlock()
}

// Restart starts a killed member again on its data directory.
func (c *Cluster) Restart(m *Member) error {
	var initial []string
	for _, o := range c.Members {
		initial = append(initial, o.Name+"=http://"+o.advertised())
	}
	return c.launch(m, strings.Join(initial, ","), "existing")
}

// Pause sends SIGSTOP to m; Resume sends SIGCONT.
func (c *Cluster) Pause(m *Member) {
	if m.cmd != nil {
		_ = m.cmd.Process.Signal(syscall.SIGSTOP)
		m.stopped = true
	}
}

// Resume continues a paused member.
func (c *Cluster) Resume(m *Member) {
	if m.cmd != nil {
		_ = m.cmd.Process.Signal(syscall.SIGCONT)
		m.stopped = false
	}
}

// Stop kills every member and closes the proxies.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		c.Kill(m)
		if m.proxy != nil {
			m.proxy.Close()
		}
	}
}

// LogTail returns the end of every member's log, for a failing test's message.
func (c *Cluster) LogTail() string {
	var b strings.Builder
	for _, m := range c.Members {
		data, _ := os.ReadFile(filepath.Join(c.dir, m.Name+".log"))
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", m.Name, data)
	}
	return b.String()
}

// PeerConnsCut counts the peer connections the partition proxies cut or refused.
func (c *Cluster) PeerConnsCut() int {
	n := 0
	for _, m := range c.Members {
		if m.proxy != nil {
			n += m.proxy.Dropped()
		}
	}
	return n
}
