package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/node/meshtls"
	"go.yaml.in/yaml/v3"
)

const (
	enrolJoinToken = "join-secret-0123456789"
	enrolReadToken = "read-secret-0123456789"
)

// startEnrolCoordinator runs an in-process coordinator (embedded NATS on
// a free port) with enrolment configured, and returns it with its gossip
// key.
func startEnrolCoordinator(t *testing.T) (*coordinator.Coordinator, string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := meshtls.NewDevCA(filepath.Join(dir, "mesh-ca"), 30*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	gossipKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))
	for name, content := range map[string]string{
		"nats.password": "node-password\n",
		"gossip.keys":   gossipKey + "\n",
		"enrol.yaml": `nats_url: nats://coordinator.example:4222
nats_user: node
nats_password_file: nats.password
mesh_ca_dir: mesh-ca
gossip_key_file: gossip.keys
join: ["central-0.example:7946", "central-1.example:7946"]
fallback: ["https://central.example:8443"]
`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	toks, err := coordinator.NewTokens([]coordinator.Token{
		{Name: "edge-join", Secret: enrolJoinToken, Scopes: []string{coordinator.ScopeJoin}},
		{Name: "viewer", Secret: enrolReadToken, Scopes: []string{coordinator.ScopeRead}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.New(coordinator.Config{
		DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", Tokens: toks,
		Embedded:        bus.EmbeddedOptions{Port: 0},
		EnrolConfigFile: filepath.Join(dir, "enrol.yaml"),
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, gossipKey
}

// runEnrolCmd runs `petrel enrol` with args (after the command name).
func runEnrolCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := runEnrol(ctx, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}, args)
	return code, out.String(), errb.String()
}

func writeToken(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "join.token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// readNodeConfig decodes the flat node config into key -> value (strings,
// []any, map[string]any).
func readNodeConfig(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return m
}

func TestEnrolWritesCredentialsAndConfig(t *testing.T) {
	c, gossipKey := startEnrolCoordinator(t)
	dir := filepath.Join(t.TempDir(), "state")
	config := filepath.Join(t.TempDir(), "etc", "node.yaml")
	if err := os.MkdirAll(filepath.Dir(config), 0o755); err != nil {
		t.Fatal(err)
	}
	existing := "# store 42, set up by hand\nlisten: 0.0.0.0:8443 # public port\nid: old-name\nmodel-repo: /srv/models\n"
	if err := os.WriteFile(config, []byte(existing), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--coordinator", c.URL(), "--token-file", writeToken(t, enrolJoinToken), "--id", "store-042",
		"--region", "eu-west", "--labels", "tier=store,country=fr", "--hosts", "store-042.example,127.0.0.1", "--dir", dir, "--config", config}
	code, out, errs := runEnrolCmd(t, args...)
	if code != 0 {
		t.Fatalf("enrol: %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "petrel node --config "+config) || !strings.Contains(out, "need gossip-bind") || strings.Contains(errs, "warning") {
		t.Errorf("output %q, stderr %q", out, errs)
	}

	// Files and modes.
	for rel, mode := range map[string]os.FileMode{
		"mesh/key.pem": 0o600, "mesh/cert.pem": 0o644, "mesh/ca.pem": 0o644, "coordinator.pub": 0o644,
		"nats.password": 0o600, "gossip.keys": 0o600,
	} {
		if got := fileMode(t, filepath.Join(dir, rel)); got != mode {
			t.Errorf("%s: mode %04o, want %04o", rel, got, mode)
		}
	}
	if got := fileMode(t, config); got != 0o640 {
		t.Errorf("config mode %04o, want 0640", got)
	}
	if pw, _ := os.ReadFile(filepath.Join(dir, "nats.password")); strings.TrimSpace(string(pw)) != "node-password" {
		t.Errorf("nats.password %q", pw)
	}
	keys, err := readKeyring(filepath.Join(dir, "gossip.keys"))
	if err != nil || len(keys) != 1 || base64.StdEncoding.EncodeToString(keys[0]) != gossipKey {
		t.Errorf("gossip.keys: %v %v", keys, err)
	}
	pub, err := models.ReadPublicKey(filepath.Join(dir, "coordinator.pub"))
	if err != nil || !pub.Equal(c.PublicKey()) {
		t.Errorf("coordinator.pub: %v (equal %v)", err, err == nil && pub.Equal(c.PublicKey()))
	}

	// The mesh credentials load as the node loads them, and name the node.
	certF, keyF, caF := filepath.Join(dir, "mesh", "cert.pem"), filepath.Join(dir, "mesh", "key.pem"), filepath.Join(dir, "mesh", "ca.pem")
	if _, err := meshtls.ServerConfig(certF, keyF, caF); err != nil {
		t.Fatalf("ServerConfig: %v", err)
	}
	cc, err := meshtls.ClientConfig(certF, keyF, caF)
	if err != nil {
		t.Fatalf("ClientConfig: %v", err)
	}
	leaf := cc.Certificates[0].Leaf
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "petrel://node/store-042" || !slices.Equal(leaf.DNSNames, []string{"store-042.example"}) {
		t.Errorf("certificate names %v %v", leaf.URIs, leaf.DNSNames)
	}

	// The config: keys are node flag names, the hand-written ones kept.
	raw, _ := os.ReadFile(config)
	for _, want := range []string{"# store 42, set up by hand", "listen: 0.0.0.0:8443 # public port"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("config lost %q:\n%s", want, raw)
		}
	}
	m := readNodeConfig(t, config)
	want := map[string]any{
		"listen": "0.0.0.0:8443", "model-repo": "/srv/models",
		"id": "store-042", "region": "eu-west", "labels": map[string]any{"country": "fr", "tier": "store"},
		"nats-url": "nats://coordinator.example:4222", "nats-user": "node", "nats-password-file": filepath.Join(dir, "nats.password"),
		"coordinator-key": filepath.Join(dir, "coordinator.pub"),
		"mesh-ca":         caF, "mesh-cert": certF, "mesh-key": keyF,
		"gossip-key-file": filepath.Join(dir, "gossip.keys"),
		"join":            []any{"central-0.example:7946", "central-1.example:7946"},
		"fallback":        []any{"https://central.example:8443"},
	}
	for k, v := range want {
		if !equalYAML(m[k], v) {
			t.Errorf("config %s = %#v, want %#v", k, m[k], v)
		}
	}
	for k := range m {
		if _, ok := want[k]; !ok {
			t.Errorf("config has unexpected key %q", k)
		}
	}
	// listen keeps its place at the top; id is replaced where it was.
	if i, j := strings.Index(string(raw), "listen:"), strings.Index(string(raw), "id:"); i < 0 || j < i {
		t.Errorf("key order changed:\n%s", raw)
	}

	// Enrolling again replaces the key and keeps one of each key, and
	// the operator's additions.
	f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("gossip-bind: 0.0.0.0:7946\n")
	f.Close()
	oldKey, _ := os.ReadFile(keyF)
	code, out, errs = runEnrolCmd(t, args...)
	if code != 0 {
		t.Fatalf("second enrol: %d\n%s\n%s", code, out, errs)
	}
	if strings.Contains(out, "need gossip-bind") {
		t.Errorf("gossip-bind hint though it is set: %s", out)
	}
	if m := readNodeConfig(t, config); m["gossip-bind"] != "0.0.0.0:7946" || m["listen"] != "0.0.0.0:8443" {
		t.Errorf("second enrolment lost operator keys: %v", m)
	}
	newKey, _ := os.ReadFile(keyF)
	if bytes.Equal(oldKey, newKey) {
		t.Error("second enrolment kept the old key")
	}
	if _, err := meshtls.ServerConfig(certF, keyF, caF); err != nil {
		t.Fatalf("ServerConfig after the second enrolment: %v", err)
	}
	raw2, _ := os.ReadFile(config)
	if strings.Count(string(raw2), "\nid:") != 1 || strings.Count(string(raw2), "listen:") != 1 {
		t.Errorf("keys repeated after a second enrolment:\n%s", raw2)
	}
}

func equalYAML(a, b any) bool {
	switch bv := b.(type) {
	case []any:
		av, ok := a.([]any)
		return ok && slices.Equal(av, bv)
	case map[string]any:
		av, ok := a.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, v := range bv {
			if av[k] != v {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}

// Over HTTPS, --ca-file is the trust root for the coordinator.
func TestEnrolOverHTTPSWithCAFile(t *testing.T) {
	c, _ := startEnrolCoordinator(t)
	target, _ := url.Parse(c.URL())
	ts := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(target))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	ts.StartTLS()
	defer ts.Close()
	caFile := filepath.Join(t.TempDir(), "coordinator-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, config := t.TempDir(), filepath.Join(t.TempDir(), "node.yaml")
	tok := writeToken(t, enrolJoinToken)
	// Without the CA the certificate is not trusted.
	code, _, errs := runEnrolCmd(t, "--coordinator", ts.URL, "--token-file", tok, "--id", "edge-9", "--dir", dir, "--config", config)
	if code != 1 || !strings.Contains(errs, "certificate") {
		t.Fatalf("without --ca-file: %d %q", code, errs)
	}
	code, out, errs := runEnrolCmd(t, "--coordinator", ts.URL, "--token-file", tok, "--id", "edge-9", "--dir", dir, "--config", config, "--ca-file", caFile)
	if code != 0 {
		t.Fatalf("with --ca-file: %d\n%s\n%s", code, out, errs)
	}
	m := readNodeConfig(t, config)
	if m["id"] != "edge-9" || m["mesh-cert"] != filepath.Join(dir, "mesh", "cert.pem") {
		t.Fatalf("config %v", m)
	}
	if _, ok := m["region"]; ok {
		t.Errorf("region written though --region was not given: %v", m)
	}
}

func TestEnrolRefusals(t *testing.T) {
	c, _ := startEnrolCoordinator(t)
	good := writeToken(t, enrolJoinToken)
	dir := filepath.Join(t.TempDir(), "state")
	base := func(extra ...string) []string {
		return append([]string{"--coordinator", c.URL(), "--dir", dir, "--config", filepath.Join(dir, "node.yaml")}, extra...)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing token file", base("--token-file", filepath.Join(t.TempDir(), "absent"), "--id", "edge-1"), 2, "token file"},
		{"no token file", base("--id", "edge-1"), 2, "--token-file is required"},
		{"bad id", base("--token-file", good, "--id", "../etc"), 2, "--id"},
		{"no id", base("--token-file", good), 2, "--id"},
		{"bad labels", base("--token-file", good, "--id", "edge-1", "--labels", "novalue"), 2, "--labels"},
		{"read token", base("--token-file", writeToken(t, enrolReadToken), "--id", "edge-1"), 2, `403 Forbidden: token "viewer" lacks the "join" scope`},
		{"wrong token", base("--token-file", writeToken(t, "not-a-valid-token-at-all"), "--id", "edge-1"), 2, "401"},
		{"bad host", base("--token-file", good, "--id", "edge-1", "--hosts", "bad_host!"), 2, "400 Bad Request"},
		{"ca-file over http", base("--token-file", good, "--id", "edge-1", "--ca-file", good), 2, "https"},
		{"extra args", base("--token-file", good, "--id", "edge-1", "now"), 2, "unexpected arguments"},
		{"no coordinator", []string{"--token-file", good, "--id", "edge-1"}, 2, "--coordinator is required"},
		{"bad coordinator", []string{"--coordinator", "ftp://x", "--token-file", good, "--id", "edge-1"}, 2, "--coordinator"},
		{"unreachable", []string{"--coordinator", "http://127.0.0.1:1", "--token-file", good, "--id", "edge-1", "--dir", dir}, 1, "is the coordinator running"},
	}
	for _, tc := range cases {
		code, _, errs := runEnrolCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: code %d, stderr %q; want %d mentioning %q", tc.name, code, errs, tc.code, tc.want)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a refused enrolment wrote %s (%v)", dir, err)
	}
	if code, _, _ := runEnrolCmd(t, "-h"); code != 0 {
		t.Errorf("-h: code %d", code)
	}
}

func TestMergeNodeConfig(t *testing.T) {
	set := []configEntry{{"id", scalarNode("edge-1")}, {"join", sequenceNode([]string{"a:1", "b:2"})}, {"region", scalarNode("true")}}
	// A new file gets a header comment and the keys in order.
	out, err := mergeNodeConfig(nil, set)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	// "true" stays a string, so the flag gets the word, not a boolean.
	if m["id"] != "edge-1" || m["region"] != "true" || !equalYAML(m["join"], []any{"a:1", "b:2"}) || !strings.HasPrefix(string(out), "# petrel node configuration") {
		t.Fatalf("new file:\n%s", out)
	}
	// Existing keys keep their place and comments; duplicates collapse;
	// other keys stay.
	old := "# head\nid: x # the id\nlisten: :8443\n\n# seeds\njoin:\n  - old:1\nid: y\n"
	out, err = mergeNodeConfig([]byte(old), set)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"# head", "id: edge-1 # the id", "listen: :8443", "# seeds", "- a:1", "region: \"true\""} {
		if !strings.Contains(s, want) {
			t.Errorf("merged file lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "id:") != 1 || strings.Contains(s, "old:1") || strings.Index(s, "id:") > strings.Index(s, "listen:") {
		t.Errorf("merged file:\n%s", s)
	}
	// A file of comments only keeps them.
	out, err = mergeNodeConfig([]byte("# nothing yet\n"), set[:1])
	if err != nil || !strings.Contains(string(out), "# nothing yet") || !strings.Contains(string(out), "id: edge-1") {
		t.Errorf("comments-only file: %v\n%s", err, out)
	}
	// Files that are not one mapping are left alone.
	for _, bad := range []string{"- a\n- b\n", "a: [\n", "a: 1\n---\nb: 2\n"} {
		if _, err := mergeNodeConfig([]byte(bad), set); err == nil || !strings.Contains(err.Error(), "untouched") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// A non-2xx answer's error reaches the user even when it is not JSON.
func TestEnrolPrintsCoordinatorError(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/enrol" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		http.Error(w, `{"error":"enrolment is not configured on this coordinator (start it with --enrol-config FILE)"}`, http.StatusNotFound)
	}))
	defer ts.Close()
	code, _, errs := runEnrolCmd(t, "--coordinator", ts.URL, "--token-file", writeToken(t, enrolJoinToken), "--id", "edge-1",
		"--dir", t.TempDir(), "--config", filepath.Join(t.TempDir(), "n.yaml"))
	if code != 2 || !strings.Contains(errs, "404 Not Found: enrolment is not configured") {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
}
