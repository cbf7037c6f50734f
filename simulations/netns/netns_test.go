package netns

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// helperEnv selects what TestHelperProcess does when the test binary is
// re-executed inside a namespace; helperAddr is the address it uses.
const (
	helperEnv  = "PETREL_NETNS_HELPER"
	helperAddr = "PETREL_NETNS_ADDR"
)

// testTimeout bounds waits on helper processes; a safety net only.
const testTimeout = 20 * time.Second

// TestHelperProcess is not a test: run by the tests below as a child
// process inside a namespace (os.Args[0] -test.run=^TestHelperProcess$),
// it acts as a tiny TCP echo server or client, as helperEnv says.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return // an ordinary test run
	}
	addr := os.Getenv(helperAddr)
	switch mode {
	case "echo-server":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(2)
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(3)
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	case "echo-client":
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(1)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := "hello across the lab"
		if _, err := io.WriteString(c, msg); err != nil {
			fmt.Println("write:", err)
			os.Exit(1)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			fmt.Printf("echo: %q %v\n", buf, err)
			os.Exit(1)
		}
		fmt.Println("ok from", c.LocalAddr())
		os.Exit(0)
	case "sleep":
		fmt.Println("ready")
		time.Sleep(time.Minute)
		os.Exit(0)
	case "exit":
		os.Exit(0)
	default:
		fmt.Println("unknown helper mode", mode)
		os.Exit(2)
	}
}

// helper returns a command that re-runs this test binary in mode, inside
// h when h is not nil.
func helper(ctx context.Context, h *Host, mode, addr string) *exec.Cmd {
	args := []string{"-test.run=^TestHelperProcess$"}
	var cmd *exec.Cmd
	if h != nil {
		cmd = h.Command(ctx, os.Args[0], args...)
	} else {
		cmd = exec.CommandContext(ctx, os.Args[0], args...)
	}
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperAddr+"="+addr)
	return cmd
}

// startHelper starts a long-running helper and waits for its "ready".
func startHelper(t *testing.T, h *Host, mode, addr string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := helper(ctx, h, mode, addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- strings.TrimSpace(line)
	}()
	select {
	case line := <-ready:
		if line != "ready" {
			t.Fatalf("helper %s: %q", mode, line)
		}
	case <-time.After(testTimeout):
		t.Fatalf("helper %s never became ready", mode)
	}
	return cmd
}

// echoFrom runs the echo client helper in h against addr and returns its
// output and error.
func echoFrom(t *testing.T, h *Host, addr string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	out, err := helper(ctx, h, "echo-client", addr).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// requireAvailable fails (never skips) the test when labs cannot be built.
func requireAvailable(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatalf("network namespaces unavailable: %v", err)
	}
}

func newLab(t *testing.T) *Lab {
	t.Helper()
	requireAvailable(t)
	lab, err := New("petrelnstest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return lab
}

func mustHost(t *testing.T, lab *Lab, name string) *Host {
	t.Helper()
	h, err := lab.AddHost(name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func namespacesWithPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	names, err := listNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

// hostLinks lists the interfaces of the namespace the test runs in.
func hostLinks(t *testing.T) string {
	t.Helper()
	out, err := runIP("-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAvailable(t *testing.T) {
	requireAvailable(t)
	// No probe namespace is left behind.
	if left := namespacesWithPrefix(t, probePrefix+"-"); len(left) != 0 {
		t.Errorf("probe namespaces left: %v", left)
	}
}

func TestLineTopologyRoutesThroughMiddleHost(t *testing.T) {
	before := hostLinks(t)
	lab := newLab(t)
	a, b, c := mustHost(t, lab, "a"), mustHost(t, lab, "b"), mustHost(t, lab, "c")
	if err := lab.Link(a, b, "10.77.0.1/30", "10.77.0.2/30"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Link(b, c, "10.77.0.5/30", "10.77.0.6/30"); err != nil {
		t.Fatal(err)
	}
	if got := hostLinks(t); got != before {
		t.Fatalf("the test's own namespace changed:\nbefore:\n%s\nafter:\n%s", before, got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	out, err := b.Run(ctx, "ip", "-4", "-o", "addr", "show")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lo    inet 127.0.0.1/8", "eth0    inet 10.77.0.2/30", "eth1    inet 10.77.0.5/30"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("b's addresses lack %q:\n%s", want, out)
		}
	}

	const server = "10.77.0.6:7000"
	startHelper(t, c, "echo-server", server)

	// b is c's neighbour: reachable at once.
	if out, err := echoFrom(t, b, server); err != nil {
		t.Fatalf("b → c: %v: %s", err, out)
	}
	// a has no route to c's subnet yet.
	out, err = echoFrom(t, a, server)
	if err == nil || !strings.Contains(out, "unreachable") {
		t.Fatalf("a → c without a route: err %v, output %q; want network unreachable", err, out)
	}
	if err := a.AddRoute("10.77.0.4/30", "10.77.0.2"); err != nil {
		t.Fatal(err)
	}
	if err := c.AddRoute("10.77.0.0/30", "10.77.0.5"); err != nil {
		t.Fatal(err)
	}
	// Routes alone are not enough: b does not forward yet.
	if out, err := echoFrom(t, a, server); err == nil || !strings.Contains(out, "timeout") {
		t.Fatalf("a → c before b forwards: err %v, output %q; want a dial timeout", err, out)
	}
	if err := b.EnableForwarding(); err != nil {
		t.Fatal(err)
	}
	out, err = echoFrom(t, a, server)
	if err != nil {
		t.Fatalf("a → c through b: %v: %s", err, out)
	}
	if !strings.Contains(out, "ok from 10.77.0.1:") {
		t.Errorf("client output %q, want it to come from a's address 10.77.0.1", out)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	requireAvailable(t)
	before := hostLinks(t)
	lab, err := New("petrelnstest")
	if err != nil {
		t.Fatal(err)
	}
	x, y := mustHost(t, lab, "x"), mustHost(t, lab, "y")
	if err := lab.Link(x, y, "10.78.0.1/31", "10.78.0.0/31"); err != nil {
		t.Fatal(err)
	}
	if got := namespacesWithPrefix(t, lab.Prefix()+"-"); !slices.Equal(sortStrings(got), []string{x.Namespace(), y.Namespace()}) {
		t.Fatalf("namespaces %v, want %s and %s", got, x.Namespace(), y.Namespace())
	}
	if want := lab.Prefix() + "-x"; x.Namespace() != want {
		t.Errorf("namespace %q, want %q", x.Namespace(), want)
	}
	// A process left running inside is killed by Close.
	sleeper := startHelper(t, x, "sleep", "")
	if err := lab.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := lab.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if left := namespacesWithPrefix(t, lab.Prefix()+"-"); len(left) != 0 {
		t.Errorf("namespaces left after Close: %v", left)
	}
	waited := make(chan error, 1)
	go func() { waited <- sleeper.Wait() }()
	select {
	case <-waited:
	case <-time.After(testTimeout):
		t.Fatal("process inside the lab survived Close")
	}
	if got := hostLinks(t); got != before {
		t.Errorf("interfaces of the test's namespace changed:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	if _, err := lab.AddHost("z"); err == nil {
		t.Error("AddHost on a closed lab succeeded")
	}
	if err := lab.Link(x, y, "10.78.0.1/31", "10.78.0.0/31"); err == nil {
		t.Error("Link on a closed lab succeeded")
	}
}

func sortStrings(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestParallelLabsDoNotCollide(t *testing.T) {
	l1, l2 := newLab(t), newLab(t)
	if l1.Prefix() == l2.Prefix() {
		t.Fatalf("two labs share the prefix %q", l1.Prefix())
	}
	if !strings.HasPrefix(l1.Prefix(), fmt.Sprintf("petrelnstest-%d-", os.Getpid())) {
		t.Errorf("prefix %q does not carry the pid", l1.Prefix())
	}
	h1, h2 := mustHost(t, l1, "n"), mustHost(t, l2, "n")
	if h1.Namespace() == h2.Namespace() {
		t.Fatal("hosts of two labs share a namespace")
	}
	if err := l1.Close(); err != nil {
		t.Fatal(err)
	}
	if got := namespacesWithPrefix(t, h2.Namespace()); len(got) != 1 {
		t.Errorf("closing one lab removed the other's namespace: %v", got)
	}
	// A new lab with the same prefix must not clean up a live one.
	l3 := newLab(t)
	if got := namespacesWithPrefix(t, h2.Namespace()); len(got) != 1 {
		t.Errorf("New(%q) removed a live lab's namespace", "petrelnstest")
	}
	_ = l3
}

func TestNewRemovesStaleNamespacesOfCrashedRuns(t *testing.T) {
	requireAvailable(t)
	// A pid that surely ran and exited.
	exited := helper(context.Background(), nil, "exit", "")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	deadPid := exited.Process.Pid
	if processAlive(deadPid) {
		t.Fatalf("pid %d still alive", deadPid)
	}
	stale := fmt.Sprintf("petrelnsstale-%d-0-a", deadPid)
	live := fmt.Sprintf("petrelnsstale-%d-999-b", os.Getpid()) // this process: alive
	other := fmt.Sprintf("otherprefix-%d-0-c", deadPid)        // another suite's
	for _, ns := range []string{stale, live, other} {
		if _, err := runIP("netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = removeNamespace(ns) })
	}
	// A process of the crashed run still inside its namespace.
	staleHost := &Host{name: "a", ns: stale}
	orphan := startHelper(t, staleHost, "sleep", "")

	lab, err := New("petrelnsstale")
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	if namespaceExists(stale) {
		t.Errorf("stale namespace %s survived New", stale)
	}
	if !namespaceExists(live) {
		t.Errorf("New removed %s, which belongs to a live process", live)
	}
	if !namespaceExists(other) {
		t.Errorf("New removed %s, which has another prefix", other)
	}
	waited := make(chan error, 1)
	go func() { waited <- orphan.Wait() }()
	select {
	case <-waited:
	case <-time.After(testTimeout):
		t.Fatal("process in the stale namespace survived New")
	}
}

func TestValidation(t *testing.T) {
	for _, p := range []string{"", "Upper", "with-hyphen", "9start", "a b", strings.Repeat("a", 17)} {
		if _, err := New(p); err == nil {
			t.Errorf("New(%q) succeeded", p)
		}
	}
	lab := newLab(t)
	for _, n := range []string{"", "-a", "A", "a_b", "a.b", "a/b", strings.Repeat("a", 33)} {
		if _, err := lab.AddHost(n); err == nil {
			t.Errorf("AddHost(%q) succeeded", n)
		}
	}
	a, b := mustHost(t, lab, "a"), mustHost(t, lab, "b")
	if _, err := lab.AddHost("a"); err == nil {
		t.Error("duplicate AddHost succeeded")
	}
	other := newLab(t)
	foreign := mustHost(t, other, "f")
	linkCases := []struct {
		name   string
		a, b   *Host
		aa, ba string
	}{
		{"nil host", a, nil, "10.79.0.1/30", "10.79.0.2/30"},
		{"self link", a, a, "10.79.0.1/30", "10.79.0.2/30"},
		{"foreign host", a, foreign, "10.79.0.1/30", "10.79.0.2/30"},
		{"outside 10/8", a, b, "192.168.1.1/24", "192.168.1.2/24"},
		{"one outside", a, b, "10.79.0.1/8", "11.0.0.1/8"},
		{"no prefix length", a, b, "10.79.0.1", "10.79.0.2"},
		{"IPv6", a, b, "fd00::1/64", "fd00::2/64"},
		{"different subnets", a, b, "10.79.0.1/30", "10.79.0.5/30"},
		{"different lengths", a, b, "10.79.0.1/30", "10.79.0.2/29"},
		{"same address", a, b, "10.79.0.1/30", "10.79.0.1/30"},
		{"network address", a, b, "10.79.0.0/30", "10.79.0.1/30"},
		{"broadcast address", a, b, "10.79.0.1/30", "10.79.0.3/30"},
		{"/32", a, b, "10.79.0.1/32", "10.79.0.2/32"},
		{"garbage", a, b, "ten/8", "10.79.0.2/30"},
	}
	for _, tc := range linkCases {
		if err := lab.Link(tc.a, tc.b, tc.aa, tc.ba); err == nil {
			t.Errorf("Link %s succeeded", tc.name)
		}
	}
	// Failed Links created nothing: the first real link is still eth0.
	if err := lab.Link(a, b, "10.79.0.1/30", "10.79.0.2/30"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if out, err := a.Run(ctx, "ip", "-o", "link", "show"); err != nil || !strings.Contains(out, "eth0@") || strings.Contains(out, "eth1") {
		t.Errorf("a's links after failed Link calls: %v\n%s", err, out)
	}
	for _, r := range [][2]string{{"192.168.0.0/16", "10.79.0.2"}, {"10.80.0.0/16", "192.168.0.1"}, {"10.80.0.1/16", "10.79.0.2"}, {"x", "10.79.0.2"}, {"10.80.0.0/16", "fd00::1"}} {
		if err := a.AddRoute(r[0], r[1]); err == nil {
			t.Errorf("AddRoute(%q, %q) succeeded", r[0], r[1])
		}
	}
	for _, kv := range [][2]string{{"kernel.hostname", "x"}, {"vm.swappiness", "1"}, {"net..x", "1"}, {"net.ipv4.ip_forward", ""}, {"net.ipv4.ip_forward", "1; reboot"}, {"net/../kernel", "1"}} {
		if err := a.SetSysctl(kv[0], kv[1]); err == nil {
			t.Errorf("SetSysctl(%q, %q) succeeded", kv[0], kv[1])
		}
	}
}
