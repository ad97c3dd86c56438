package main

import (
	"bufio"
	"context"
	be "encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/scsi"
)

// fakeQEMUEnv makes the test binary a stand-in for a VM's QEMU: started with
// "-uuid U -name guest=N" (what --initiator=peer reads), it connects to the
// helper socket in PRHELPER_FAKE_SOCKET as QEMU does and keeps the connection,
// runs the PR OUT steps in PRHELPER_FAKE_STEPS on the disk image
// PRHELPER_FAKE_DISK, prints "step NAME STATUS SENSE NANOS" per step, and with
// PRHELPER_FAKE_WRITE=1 then writes sequence-numbered 512-byte blocks to the
// image without pause, until killed or its stdin closes.
const fakeQEMUEnv = "PRHELPER_FAKE_QEMU"

func fakeQEMU() int {
	disk, err := os.OpenFile(os.Getenv("PRHELPER_FAKE_DISK"), os.O_RDWR, 0)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx := context.Background()
	c, err := client.Dial(ctx, os.Getenv("PRHELPER_FAKE_SOCKET"))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	for _, step := range strings.Fields(os.Getenv("PRHELPER_FAKE_STEPS")) {
		// name:rk:sark:type
		f := strings.Split(step, ":")
		rk, _ := strconv.ParseUint(f[1], 16, 64)
		sark, _ := strconv.ParseUint(f[2], 16, 64)
		typ, _ := strconv.Atoi(f[3])
		sa := map[string]byte{"register": scsi.SARegister, "reserve": scsi.SAReserve, "preempt": scsi.SAPreempt}[f[0]]
		p := make([]byte, 24)
		be.BigEndian.PutUint64(p[0:], rk)
		be.BigEndian.PutUint64(p[8:], sark)
		start := time.Now()
		rep, err := c.PROut(ctx, int(disk.Fd()), sa, 0, byte(typ), p)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		s, _ := scsi.ParseSense(rep.Sense[:])
		fmt.Printf("step %s %s %s %d %d\n", f[0], strings.ReplaceAll(scsi.StatusName(rep.Status), " ", "_"), s, start.UnixNano(), time.Now().UnixNano())
	}
	fmt.Println("ready")
	go func() { io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	if os.Getenv("PRHELPER_FAKE_WRITE") != "1" {
		select {}
	}
	block := make([]byte, 512)
	for seq := uint64(1); ; seq++ {
		be.BigEndian.PutUint64(block, seq)
		if _, err := disk.WriteAt(block, int64(seq%1024)*512); err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
}

// vm is a running fake QEMU.
type vm struct {
	cmd   *exec.Cmd
	out   *bufio.Scanner
	stdin io.WriteCloser
	done  chan error
	// start is the process's start time (/proc/PID/stat field 22), read
	// before anything could reap it: a PID the kernel gave to another
	// process since (pid_max is 32768 here) has another start time.
	start string
}

func startVM(t *testing.T, sock, disk, uuid, name, steps string, write bool) *vm {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-uuid", uuid, "-name", "guest="+name)
	cmd.Env = append(os.Environ(), fakeQEMUEnv+"=1", "PRHELPER_FAKE_SOCKET="+sock, "PRHELPER_FAKE_DISK="+disk,
		"PRHELPER_FAKE_STEPS="+steps)
	if write {
		cmd.Env = append(cmd.Env, "PRHELPER_FAKE_WRITE=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	v := &vm{cmd: cmd, out: bufio.NewScanner(out), stdin: in, done: make(chan error, 1)}
	if f := procStat(cmd.Process.Pid); len(f) > 19 {
		v.start = f[19]
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		<-v.done
		v.done <- nil
	})
	go func() { v.done <- cmd.Wait() }()
	return v
}

// steps reads the VM's step lines until "ready": name -> fields.
func (v *vm) steps(t *testing.T) map[string][]string {
	t.Helper()
	m := map[string][]string{}
	for v.out.Scan() {
		l := v.out.Text()
		if l == "ready" {
			return m
		}
		f := strings.Fields(l)
		if f[0] != "step" {
			t.Fatalf("fake QEMU: %s", l)
		}
		m[f[1]] = f[2:]
	}
	t.Fatalf("fake QEMU ended before ready: %v", v.out.Err())
	return nil
}

// killed reports whether the VM was ended by SIGKILL, waiting up to d.
func (v *vm) killed(d time.Duration) bool {
	select {
	case err := <-v.done:
		v.done <- err
		ee, ok := err.(*exec.ExitError)
		if !ok {
			return false
		}
		ws, ok := ee.Sys().(syscall.WaitStatus)
		return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	case <-time.After(d):
		return false
	}
}

// exitedNow reports whether v's process has exited: reaped by the test's
// Wait, a zombie not yet reaped, or its PID now another process's (another
// start time).
func (v *vm) exitedNow() bool {
	select {
	case err := <-v.done:
		v.done <- err
		return true
	default:
	}
	f := procStat(v.cmd.Process.Pid)
	if f == nil || f[0] == "Z" || f[0] == "X" {
		return true
	}
	return len(f) > 19 && v.start != "" && f[19] != v.start
}

// procStat is /proc/PID/stat's fields after the command name (state first,
// start time at index 19), nil when there is no such process.
func procStat(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

// maxSeq is the highest sequence number on the image.
func maxSeq(t *testing.T, disk string) uint64 {
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	var m uint64
	for i := 0; i+8 <= len(b); i += 512 {
		if s := be.BigEndian.Uint64(b[i:]); s > m {
			m = s
		}
	}
	return m
}

const (
	uuid1 = "0e6b9d1c-5a7f-4c1e-9f00-000000000001"
	uuid2 = "0e6b9d1c-5a7f-4c1e-9f00-000000000002"
)

// fenceScenario: VM1 registers, reserves Write Exclusive Registrants Only and
// writes without pause; VM2 registers and preempts it. It returns VM1, VM2's
// PREEMPT step and the disk.
func fenceScenario(t *testing.T, sock1, sock2, disk string) (*vm, []string) {
	t.Helper()
	v1 := startVM(t, sock1, disk, uuid1, "vm1", "register:0:a1:0 reserve:a1:0:5", true)
	if st := v1.steps(t); st["reserve"][0] != "GOOD" {
		t.Fatalf("vm1: %v", st)
	}
	time.Sleep(100 * time.Millisecond)
	if maxSeq(t, disk) == 0 {
		t.Fatal("vm1 does not write")
	}
	v2 := startVM(t, sock2, disk, uuid2, "vm2", "register:0:b2:0 preempt:b2:a1:5", false)
	return v1, v2.steps(t)["preempt"]
}

func diskFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "shared.img")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkFencedBeforeGood: VM2 got GOOD, VM1 was killed, and not one more block
// of VM1 reached the disk after the GOOD.
func checkFencedBeforeGood(t *testing.T, v1 *vm, preempt []string, disk string) {
	t.Helper()
	if preempt[0] != "GOOD" {
		t.Fatalf("vm2 PREEMPT: %v", preempt)
	}
	atGood := maxSeq(t, disk)
	if !v1.exitedNow() {
		t.Fatal("vm2 got GOOD while vm1 still runs")
	}
	if !v1.killed(5 * time.Second) {
		t.Fatal("vm1 did not end by SIGKILL")
	}
	time.Sleep(200 * time.Millisecond)
	if after := maxSeq(t, disk); after != atGood {
		t.Fatalf("vm1 wrote after the GOOD: sequence %d then %d", atGood, after)
	}
	sent, got := atoi64(preempt[2]), atoi64(preempt[3])
	t.Logf("PREEMPT sent to GOOD received by vm2: %v; vm1's last block: %d", time.Duration(got-sent), atGood)
}

func atoi64(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }

// TestFenceKillOneHelper: one helper, two fake QEMUs as peers, --fence=kill.
func TestFenceKillOneHelper(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "prh.sock")
	p := startHelper(t, "--backend=emulate", "--db="+filepath.Join(dir, "pr.db"), "--initiator=peer", "--peer-exe="+os.Args[0], "-k", sock, "--fence=kill", "-vv")
	waitSocket(t, sock)
	disk := diskFile(t)
	v1, preempt := fenceScenario(t, sock, sock, disk)
	checkFencedBeforeGood(t, v1, preempt, disk)
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	log := p.stderr.String()
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "PREEMPT") || strings.Contains(l, "fence") {
			t.Log(l)
		}
	}
	for _, want := range []string{"fence=kill", "a VM evicted from an emulated LU is killed", `msg=fenced`, "victim=iqn.2025-01.dev.prhelper:vm:" + uuid1} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestFenceKillTwoHelpers: libvirt's managed mode, one helper process per VM
// on one database: VM1's helper kills VM1 when it sees the record VM2's
// helper wrote, and VM2's helper answers GOOD only after that confirmation.
func TestFenceKillTwoHelpers(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "pr.db")
	s1, s2 := filepath.Join(dir, "vm1.sock"), filepath.Join(dir, "vm2.sock")
	p1 := startHelper(t, "--backend=emulate", "--db="+db, "--initiator=peer", "--peer-exe="+os.Args[0], "-k", s1, "--fence=kill", "-v")
	p2 := startHelper(t, "--backend=emulate", "--db="+db, "--initiator=peer", "--peer-exe="+os.Args[0], "-k", s2, "--fence=kill", "-v")
	defer func() {
		if t.Failed() {
			t.Logf("helper 1:\n%s\nhelper 2:\n%s", p1.stderr, p2.stderr)
		}
	}()
	waitSocket(t, s1)
	waitSocket(t, s2)
	disk := diskFile(t)
	v1, preempt := fenceScenario(t, s1, s2, disk)
	checkFencedBeforeGood(t, v1, preempt, disk)
}

// TestFenceExecFails: an agent that exits 1: VM2 does not get GOOD but
// CHECK CONDITION 04/44/00, and VM1 (not fenced) keeps running.
func TestFenceExecFails(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "agent.sh")
	os.WriteFile(agent, []byte("#!/bin/sh\necho refusing to fence $PRHELPER_FENCE_NAME\nexit 1\n"), 0o755)
	sock := filepath.Join(dir, "prh.sock")
	p := startHelper(t, "--backend=emulate", "--db="+filepath.Join(dir, "pr.db"), "--initiator=peer", "--peer-exe="+os.Args[0], "-k", sock,
		"--fence=exec:"+agent, "--fence-timeout=2s")
	waitSocket(t, sock)
	disk := diskFile(t)
	v1, preempt := fenceScenario(t, sock, sock, disk)
	if preempt[0] != "CHECK_CONDITION" || preempt[1] != scsi.SenseTargetFailure.String() {
		t.Fatalf("vm2 PREEMPT with a failing agent: %v", preempt)
	}
	if v1.killed(100 * time.Millisecond) {
		t.Fatal("vm1 was killed by an exec: policy")
	}
	p.stop(t)
	if !strings.Contains(p.stderr.String(), "refusing to fence vm1") {
		t.Errorf("the agent's output is not in the log:\n%s", p.stderr)
	}
}

// TestFenceSettings: --fence and --fence-timeout, from flags and the
// configuration file (flags win), and their errors.
func TestFenceSettings(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "prhelper.conf")
	os.WriteFile(conf, []byte("backend emulate\nfence exec:/bin/true\nfence-timeout 3s\n"), 0o644)
	for _, tc := range []struct {
		args    []string
		policy  string
		timeout time.Duration
		err     string
	}{
		{nil, "none", 10 * time.Second, ""},
		{[]string{"--fence=kill"}, "kill", 10 * time.Second, ""},
		{[]string{"--fence=exec:/usr/bin/agent", "--fence-timeout=500ms"}, "exec:/usr/bin/agent", 500 * time.Millisecond, ""},
		{[]string{"--config=" + conf}, "exec:/bin/true", 3 * time.Second, ""},
		{[]string{"--config=" + conf, "--fence=kill"}, "kill", 3 * time.Second, ""},
		{[]string{"--fence=exec:relative"}, "", 0, "absolute path"},
		{[]string{"--fence=shoot"}, "", 0, "want none, kill or exec:PATH"},
		{[]string{"--fence-timeout=0"}, "", 0, "positive duration"},
		{[]string{"--fence=kill", "--etcd-endpoints=http://127.0.0.1:2379"}, "kill", 20 * time.Second, ""},
		{[]string{"--fence=kill", "--etcd-endpoints=http://127.0.0.1:2379", "--fence-lease-ttl=3s"}, "kill", 6 * time.Second, ""},
		{[]string{"--fence=kill", "--etcd-endpoints=http://127.0.0.1:2379", "--fence-lease-ttl=5s", "--fence-timeout=5s"}, "", 0, "must exceed --fence-lease-ttl"},
		{[]string{"--fence=kill", "--etcd-endpoints=http://127.0.0.1:2379", "--fence-lease-ttl=1s"}, "", 0, "at least 2s"},
		{[]string{"--fence=kill", "--etcd-endpoints=http://127.0.0.1:2379", "--fence-lease-ttl=2500ms"}, "", 0, "whole seconds"},
		{[]string{"--fence=kill", "--etcd-endpoints=http://127.0.0.1:2379", "--fence-host=a/b"}, "", 0, "--fence-host"},
		{[]string{"--fence=kill", "--fence-lease-ttl=3s"}, "", 0, "need the etcd store"},
		{[]string{"--etcd-endpoints=http://127.0.0.1:2379"}, "none", 20 * time.Second, ""},
		{[]string{"--etcd-endpoints=http://127.0.0.1:2379", "--config=" + conf}, "", 0, "must exceed --fence-lease-ttl"},
		{[]string{"--etcd-endpoints=http://127.0.0.1:2379", "--config=" + conf, "--fence-lease-ttl=2s"}, "exec:/bin/true", 3 * time.Second, ""},
	} {
		o, err := parseOptions("prhelper", tc.args)
		if err != nil {
			t.Fatal(err)
		}
		s, err := loadSettings(o)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if s.fencing.String() != tc.policy || s.fencing.timeout != tc.timeout {
			t.Errorf("%v: fence %s timeout %v, want %s %v", tc.args, s.fencing, s.fencing.timeout, tc.policy, tc.timeout)
		}
	}
}
