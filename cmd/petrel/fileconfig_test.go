package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testFlagSet() (*flag.FlagSet, map[string]any) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	v := map[string]any{
		"id":                 fs.String("id", "node-1", ""),
		"listen":             fs.String("listen", "127.0.0.1:8000", ""),
		"labels":             fs.String("labels", "", ""),
		"join":               fs.String("join", "", ""),
		"max-hops":           fs.Int("max-hops", 2, ""),
		"http3":              fs.Bool("http3", true, ""),
		"status-interval":    fs.Duration("status-interval", time.Second, ""),
		"nats-password-file": fs.String("nats-password-file", "", ""),
		"config":             fs.String("config", "", ""),
	}
	return fs, v
}

func writeConfig(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFilePrecedence: defaults < file < flags, lists and mappings
// become the flags' comma forms, relative paths follow the file.
func TestConfigFilePrecedence(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, "node.yaml", `# an edge node
id: store-042
listen: 0.0.0.0:8443
labels: {tier: store, country: fr}
join:
  - central-0.example:7946
  - central-1.example:7946
max-hops: 3
http3: false
status-interval: 5s
nats-password-file: secrets/nats.password
`)
	fs, v := testFlagSet()
	if err := fs.Parse([]string{"--listen", "127.0.0.1:9000", "--config", path}); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(fs, path); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": "store-042", "listen": "127.0.0.1:9000", "labels": "tier=store,country=fr",
		"join": "central-0.example:7946,central-1.example:7946", "max-hops": 3, "http3": false,
		"status-interval": 5 * time.Second, "nats-password-file": filepath.Join(dir, "secrets/nats.password"),
	}
	for name, w := range want {
		var got any
		switch p := v[name].(type) {
		case *string:
			got = *p
		case *int:
			got = *p
		case *bool:
			got = *p
		case *time.Duration:
			got = *p
		}
		if got != w {
			t.Errorf("%s = %v, want %v", name, got, w)
		}
	}
}

// TestConfigFileErrors: every kind of bad file is refused with the file,
// the line and what is wrong.
func TestConfigFileErrors(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"unknown key", "id: a\nlistn: x\n", `node.yaml:2: unknown key "listn" (did you mean "listen"?)`},
		{"duplicate", "id: a\nid: b\n", `node.yaml:2: "id" is already set on line 1`},
		{"bad int", "max-hops: lots\n", `node.yaml:1: max-hops: invalid value "lots"`},
		{"bad duration", "status-interval: 5 parsecs\n", `node.yaml:1: status-interval: invalid value`},
		{"null", "id:\n", `node.yaml:1: id: no value`},
		{"nested", "join: [[a]]\n", `node.yaml:1: join: a list may only hold plain values`},
		{"config in file", "config: other.yaml\n", `"config" can only be given on the command line`},
		{"not a mapping", "- a\n- b\n", `node.yaml:1: want a mapping`},
		{"syntax", "id: [a\n", `node.yaml`},
		{"two documents", "id: a\n---\nid: b\n", `more than one YAML document`},
		{"broken second document", "id: a\n---\nid: [b\n", `node.yaml`},
		{"comma in list", "join: [\"a,b\"]\n", `contains a comma`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, t.TempDir(), "node.yaml", tc.body)
			fs, _ := testFlagSet()
			err := applyConfigFile(fs, path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	fs, _ := testFlagSet()
	if err := applyConfigFile(fs, filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

// TestConfigFileEmpty: an empty file or one of comments sets nothing.
func TestConfigFileEmpty(t *testing.T) {
	for _, body := range []string{"", "# nothing yet\n"} {
		fs, v := testFlagSet()
		if err := applyConfigFile(fs, writeConfig(t, t.TempDir(), "n.yaml", body)); err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if *v["id"].(*string) != "node-1" {
			t.Fatalf("%q changed id", body)
		}
	}
}

// TestNodeCheckConfig runs `petrel node --check-config` through the
// command: a valid file passes, a file naming a missing certificate fails
// with a message naming it, and the node never starts.
func TestNodeCheckConfig(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if err := os.Mkdir(repo, 0o700); err != nil {
		t.Fatal(err)
	}
	good := writeConfig(t, dir, "good.yaml", "id: store-1\nmodel-repo: repo\nlisten: 127.0.0.1:0\nplain-tcp: true\n")
	bad := writeConfig(t, dir, "bad.yaml", "id: store-1\nmodel-repo: repo\ntls-cert: cert.pem\ntls-key: key.pem\n")
	var out, errOut strings.Builder
	e := &env{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
	if code := runNode(t.Context(), e, []string{"--config", good, "--check-config"}); code != 0 {
		t.Fatalf("good config: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "config is valid: id store-1") {
		t.Fatalf("good config printed %q", out.String())
	}
	errOut.Reset()
	if code := runNode(t.Context(), e, []string{"--config", bad, "--check-config"}); code != 2 {
		t.Fatalf("bad config: exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), filepath.Join(dir, "cert.pem")) {
		t.Fatalf("bad config: %q does not name the missing certificate", errOut.String())
	}
}
