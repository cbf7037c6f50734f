package edge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/internal/testproc"
)

const joinToken = "join-0123456789abcdef"
const readToken = "read-0123456789abcdef"

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func write(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// proc is a background process whose output is kept for failure reports.
type proc struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out bytes.Buffer
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func start(t *testing.T, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
	})
	return p
}

func get(url, token string) (int, []byte, error) {
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}

func waitFor(t *testing.T, what string, p *proc, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; output:\n%s", what, p.output())
}

// TestInstallIntoDestdir installs an edge node into a temporary root the
// way a store's box would get it: a release directory (the binary and the
// ONNX Runtime library), install.sh with a join token against a real
// coordinator process, then checks what landed where, runs the installed
// node from that tree until the coordinator sees it, re-runs the install
// as an upgrade, and verifies the systemd unit with systemd-analyze.
func TestInstallIntoDestdir(t *testing.T) {
	ort := os.Getenv("PETREL_ORT_LIB")
	if ort == "" {
		ort = filepath.Join(testproc.ModuleRoot(t), ".cache", "ort", "libonnxruntime.so.1")
	}
	if _, err := os.Stat(ort); err != nil {
		t.Fatalf("ONNX Runtime library: %v (run make setup)", err)
	}
	for _, tool := range []string{"systemd-analyze", "useradd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (make setup installs it): %v", tool, err)
		}
	}
	bin := testproc.BuildPetrel(t)
	work := t.TempDir()

	// A release tree, as make release unpacks.
	rel := filepath.Join(work, "petrel-test-linux-amd64")
	for src, dst := range map[string]string{bin: "bin/petrel", ort: "lib/libonnxruntime.so.1"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(rel, dst), string(b), 0o755)
	}

	// The coordinator, with enrolment configured: a mesh CA, the NATS
	// user nodes get, a join token.
	cdir := filepath.Join(work, "coordinator")
	run(t, nil, bin, "cert", "ca", "--dir", filepath.Join(cdir, "mesh-ca"))
	write(t, filepath.Join(cdir, "gossip.keys"), run(t, nil, bin, "cert", "gossip-key"), 0o600)
	write(t, filepath.Join(cdir, "nats-node.password"), "node-secret-password\n", 0o600)
	users, _ := json.Marshal([]map[string]string{{"name": "node", "password": "node-secret-password"}})
	write(t, filepath.Join(cdir, "nats-users.json"), string(users), 0o600)
	toks, _ := json.Marshal([]map[string]any{
		{"name": "store-installer", "token": joinToken, "scopes": []string{"join"}},
		{"name": "viewer", "token": readToken, "scopes": []string{"read"}},
	})
	write(t, filepath.Join(cdir, "tokens.json"), string(toks), 0o600)
	apiPort, natsPort := freePort(t), freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	write(t, filepath.Join(cdir, "enrol.yaml"), fmt.Sprintf(`nats_url: %s
nats_user: node
nats_password_file: %s
mesh_ca_dir: %s
gossip_key_file: %s
cert_validity: 720h
`, natsURL, filepath.Join(cdir, "nats-node.password"), filepath.Join(cdir, "mesh-ca"), filepath.Join(cdir, "gossip.keys")), 0o600)
	coord := start(t, []string{"PETREL_ORT_LIB=" + ort}, bin, "coordinator",
		"--data-dir", filepath.Join(cdir, "state"), "--listen", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort), "--nats-users-file", filepath.Join(cdir, "nats-users.json"),
		"--tokens-file", filepath.Join(cdir, "tokens.json"), "--enrol-config", filepath.Join(cdir, "enrol.yaml"))
	base := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	waitFor(t, "the coordinator", coord, func() bool {
		st, _, err := get(base+"/healthz", "")
		return err == nil && st == 200
	})

	// The target root: a passwd database for useradd --prefix.
	root := filepath.Join(work, "root")
	write(t, filepath.Join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n", 0o644)
	write(t, filepath.Join(root, "etc/group"), "root:x:0:\n", 0o644)
	write(t, filepath.Join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\n", 0o640)
	write(t, filepath.Join(root, "etc/gshadow"), "root:*::\n", 0o640)
	write(t, filepath.Join(work, "join-token"), joinToken+"\n", 0o600)
	script := filepath.Join(testproc.ModuleRoot(t), "deploy", "edge", "install.sh")
	install := func() string {
		return run(t, []string{"DESTDIR=" + root}, "bash", script, "--from", rel,
			"--coordinator", base, "--join-token-file", filepath.Join(work, "join-token"),
			"--id", "store-042", "--region", "eu-west", "--hosts", "127.0.0.1", "--listen", "127.0.0.1:0",
			"--gossip-bind", "127.0.0.1:0")
	}
	out := install()
	t.Logf("install.sh:\n%s", out)

	// What landed where.
	for path, mode := range map[string]os.FileMode{
		"usr/local/bin/petrel":                     0o755,
		"usr/local/lib/petrel/libonnxruntime.so.1": 0o644,
		"etc/systemd/system/petrel-node.service":   0o644,
		"etc/petrel/node.yaml":                     0o640,
		"var/lib/petrel":                           0o750 | os.ModeDir,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if fi.Mode()&(os.ModeDir|os.ModePerm) != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	m := regexp.MustCompile(`(?m)^petrel:x:(\d+):(\d+):[^:]*:/var/lib/petrel:/usr/sbin/nologin$`).FindStringSubmatch(string(passwd))
	if m == nil {
		t.Fatalf("no system user petrel in the root's passwd:\n%s", passwd)
	}
	if uid, _ := strconv.Atoi(m[1]); uid >= 1000 || uid == 0 {
		t.Errorf("petrel has uid %d, want a system uid", uid)
	}
	conf, err := os.ReadFile(filepath.Join(root, "etc/petrel/node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	plain := strings.ReplaceAll(string(conf), "'", "") // install.sh quotes its values
	for _, key := range []string{"id: store-042", "region: eu-west", "nats-url:", "nats-user: node", "nats-password-file: /var/lib/petrel/",
		"coordinator-key: /var/lib/petrel/", "gossip-key-file: /var/lib/petrel/", "mesh-ca: /var/lib/petrel/", "mesh-cert: /var/lib/petrel/", "mesh-key: /var/lib/petrel/"} {
		if !strings.Contains(plain, key) {
			t.Errorf("node.yaml lacks %q:\n%s", key, conf)
		}
	}
	if strings.Contains(string(conf), root) {
		t.Errorf("node.yaml names the install root:\n%s", conf)
	}

	// The installed tree runs: the config, with the root put back in
	// front of its paths, passes --check-config, and the node reaches the
	// coordinator with the enrolled credentials.
	rooted := strings.ReplaceAll(string(conf), " /var/lib/petrel", " "+filepath.Join(root, "var/lib/petrel"))
	rooted = strings.ReplaceAll(rooted, " /usr/local/", " "+root+"/usr/local/")
	rootedConf := filepath.Join(work, "node-rooted.yaml")
	write(t, rootedConf, rooted, 0o600)
	installed := filepath.Join(root, "usr/local/bin/petrel")
	env := []string{"PETREL_ORT_LIB=" + filepath.Join(root, "usr/local/lib/petrel/libonnxruntime.so.1")}
	if got := run(t, env, installed, "node", "--config", rootedConf, "--check-config"); !strings.Contains(got, "config is valid: id store-042") {
		t.Fatalf("--check-config: %s", got)
	}
	nodeProc := start(t, env, installed, "node", "--config", rootedConf)
	waitFor(t, "the coordinator to see store-042", nodeProc, func() bool {
		st, body, err := get(base+"/v1/nodes", readToken)
		return err == nil && st == 200 && strings.Contains(string(body), `"store-042"`)
	})

	// An upgrade: the same install again keeps the configuration and the
	// enrolment.
	keyBefore, _ := os.ReadFile(filepath.Join(root, "var/lib/petrel/mesh/key.pem"))
	install()
	conf2, _ := os.ReadFile(filepath.Join(root, "etc/petrel/node.yaml"))
	keyAfter, _ := os.ReadFile(filepath.Join(root, "var/lib/petrel/mesh/key.pem"))
	if !bytes.Equal(conf, conf2) || len(keyBefore) == 0 || !bytes.Equal(keyBefore, keyAfter) {
		t.Error("re-running the install changed the configuration or the node's key")
	}

	// The unit: systemd-analyze verify in a root with what it resolves
	// (the targets it orders against, kill for ExecReload), and the
	// offline security review.
	for _, src := range []string{"/bin/kill"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(root, src), string(b), 0o755)
	}
	targets, _ := filepath.Glob("/lib/systemd/system/*.target")
	if len(targets) == 0 {
		t.Fatal("no systemd targets under /lib/systemd/system (is systemd installed?)")
	}
	for _, src := range targets {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(root, "usr/lib/systemd/system", filepath.Base(src)), string(b), 0o644)
	}
	run(t, nil, "systemd-analyze", "verify", "--root="+root, "petrel-node.service")
	sec := run(t, nil, "systemd-analyze", "security", "--offline=yes", "--root="+root, "petrel-node.service")
	lm := regexp.MustCompile(`Overall exposure level for petrel-node\.service: ([0-9.]+)`).FindStringSubmatch(sec)
	if lm == nil {
		t.Fatalf("no exposure level in:\n%s", sec)
	}
	if level, _ := strconv.ParseFloat(lm[1], 64); level > 2.0 {
		t.Errorf("exposure level %v, want at most 2.0 (systemd's OK band):\n%s", level, sec)
	}
	t.Logf("systemd-analyze security: exposure %s", lm[1])
}
