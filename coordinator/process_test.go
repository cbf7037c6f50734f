package coordinator_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/internal/testproc"
	"github.com/petrel-mesh/petrel/models"
)

// proc is a child process whose output is kept for failure messages.
type proc struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out strings.Builder
}

func startProc(t testing.TB, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...)}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if os.Getenv("PETREL_TEST_LOG") != "" {
				fmt.Fprintln(os.Stderr, sc.Text())
			}
		}
	}()
	go func() { p.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func waitHTTP(t testing.TB, url string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not come up; output:\n%s", url, p.output())
}

// TestCoordinatorKill9MidRollout kills the coordinator process (SIGKILL)
// in the middle of a rollout, while nodes serve traffic, and restarts it
// on the same data directory: the registry and the rollout are still
// there, the rollout resumes from its step and completes, and no client
// request failed meanwhile.
func TestCoordinatorKill9MidRollout(t *testing.T) {
	initORT(t)
	bin := testproc.BuildPetrel(t)
	dir := t.TempDir()
	toks, _ := json.Marshal([]coordinator.Token{
		{Name: "alice", Secret: adminToken, Scopes: []string{"admin"}},
		{Name: "ci", Secret: pushToken, Scopes: []string{"push"}},
		{Name: "viewer", Secret: readToken, Scopes: []string{"read"}},
	})
	tokFile := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(tokFile, toks, 0o600); err != nil {
		t.Fatal(err)
	}
	apiPort, natsPort := freePort(t), freePort(t)
	args := []string{"coordinator", "--data-dir", filepath.Join(dir, "state"), "--listen", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort), "--tokens-file", tokFile, "--latency-budget", "1h", "--log-level", "debug"}
	p := startProc(t, bin, args...)
	base := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	waitHTTP(t, base+"/healthz", p)
	pub, err := models.ReadPublicKey(filepath.Join(dir, "state", "coordinator.pub"))
	if err != nil {
		t.Fatal(err)
	}
	m := &testMesh{t: t, dir: dir, base: base, pub: pub, natsU: fmt.Sprintf("nats://127.0.0.1:%d", natsPort)}
	m.cfg.NATSURL = m.natsU // nodes connect without credentials
	t.Cleanup(m.close)
	for i := 0; i < 2; i++ {
		m.addNode(i)
	}
	v1, g1 := mlpVersion(t, 1)
	v2, g2 := mlpVersion(t, 2)
	if st, body := m.push(pushToken, "demand", "1", v1, g1, nil); st != 201 {
		t.Fatalf("push v1: %d %s", st, body)
	}
	m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil)
	m.readyEverywhere("demand", "1", 30*time.Second)
	if st, body := m.push(pushToken, "demand", "2", v2, g2, nil); st != 201 {
		t.Fatalf("push v2: %d %s", st, body)
	}
	l := startLoad(t, m, "demand", 0.25, 2)
	defer l.halt()
	var ro rollout.Rollout
	if st, body := m.api("POST", "/v1/rollouts/demand", pushToken, coordinator.RolloutRequest{
		Version: "2", Steps: []float64{10, 40, 70, 100}, Interval: "1500ms", MaxErrorRate: 0.01, MinRequests: 10}, &ro); st != 201 {
		t.Fatalf("start: %d %s", st, body)
	}
	var before rollout.Rollout
	waitFor(t, 30*time.Second, "the rollout's second step", func() (bool, string) {
		m.api("GET", "/v1/rollouts/demand", readToken, nil, &before)
		return before.Step >= 1, fmt.Sprintf("%s step %d", before.State, before.Step)
	})
	p.kill()
	p.cmd.Process.Wait()
	t.Logf("killed the coordinator (SIGKILL) at step %d (%s)", before.Step, before.State)
	// Nodes serve on without it.
	time.Sleep(500 * time.Millisecond)
	for _, n := range m.nodes {
		if st, ver := infer(t, n, "demand", "x", 0.25); st != 200 {
			t.Fatalf("with the coordinator dead: %d %s", st, ver)
		}
	}
	p2 := startProc(t, bin, args...)
	waitHTTP(t, base+"/healthz", p2)
	var after rollout.Rollout
	if st, body := m.api("GET", "/v1/rollouts/demand", readToken, nil, &after); st != 200 {
		t.Fatalf("rollout after restart: %d %s", st, body)
	}
	if after.ID != ro.ID || after.Step < before.Step || (after.State != rollout.StateRunning && after.State != rollout.StatePromoted) {
		t.Fatalf("after restart: %s %s step %d; before: %s step %d", after.ID, after.State, after.Step, before.State, before.Step)
	}
	var list []coordinator.ModelSummary
	if st, _ := m.api("GET", "/v1/models", readToken, nil, &list); st != 200 || len(list) != 1 || len(list[0].Versions) != 2 {
		t.Fatalf("registry after restart: %+v", list)
	}
	waitFor(t, 60*time.Second, "promotion after the restart", func() (bool, string) {
		var r rollout.Rollout
		m.api("GET", "/v1/rollouts/demand", readToken, nil, &r)
		return r.State == rollout.StatePromoted, fmt.Sprintf("%s step %d %s", r.State, r.Step, r.Reason)
	})
	l.halt()
	statuses, byVer := l.snapshot()
	t.Logf("requests through the crash: statuses %v versions %v", statuses, byVer)
	for st, n := range statuses {
		if st != 200 {
			t.Errorf("%d requests got %d", n, st)
		}
	}
	var evs []bus.AuditEvent
	m.api("GET", "/v1/audit?model=demand&kind=rollout.resume", readToken, nil, &evs)
	if len(evs) == 0 {
		t.Fatalf("no rollout.resume audit event after the restart")
	}
}

// TestExternalNATSServer runs the coordinator and nodes against a
// separately started nats-server process (the --nats-url mode).
func TestExternalNATSServer(t *testing.T) {
	srvBin := testproc.NATSServer(t)
	port := freePort(t)
	p := startProc(t, srvBin, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", fmt.Sprint(port))
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.output(), "Server is ready") {
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not start:\n%s", p.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := newTestMesh(t, meshOpts{nodes: 2, natsURL: url})
	if m.c.NATSURL() != url {
		t.Fatalf("coordinator uses %s, want the external %s", m.c.NATSURL(), url)
	}
	v1, g1 := mlpVersion(t, 1)
	if st, body := m.push(pushToken, "demand", "1", v1, g1, nil); st != 201 {
		t.Fatalf("push: %d %s", st, body)
	}
	m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil)
	m.readyEverywhere("demand", "1", 30*time.Second)
	v2, g2 := mlpVersion(t, 2)
	m.push(pushToken, "demand", "2", v2, g2, nil)
	l := startLoad(t, m, "demand", 0.25, 2)
	if st, body := m.api("POST", "/v1/rollouts/demand", pushToken, coordinator.RolloutRequest{
		Version: "2", Steps: []float64{50, 100}, Interval: "1s", MaxErrorRate: 0.01, MinRequests: 5}, nil); st != 201 {
		t.Fatalf("rollout: %d %s", st, body)
	}
	waitFor(t, 30*time.Second, "promotion", func() (bool, string) {
		var r rollout.Rollout
		m.api("GET", "/v1/rollouts/demand", readToken, nil, &r)
		return r.State == rollout.StatePromoted, string(r.State) + " " + r.Reason
	})
	l.halt()
	statuses, _ := l.snapshot()
	if len(statuses) != 1 || statuses[200] == 0 {
		t.Fatalf("statuses: %v", statuses)
	}
	// The state is in the external server: the stream and buckets exist.
	if !strings.Contains(p.output(), "Server is ready") {
		t.Fatal("server output lost")
	}
}
