package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCertCommands(t *testing.T) {
	dir := t.TempDir()
	if code, out, errs := runCmd(t, "cert", "ca", "--dir", dir); code != 0 || !strings.Contains(out, dir) {
		t.Fatalf("cert ca: %d %q %q", code, out, errs)
	}
	code, out, errs := runCmd(t, "cert", "node", "--ca-dir", dir, "--id", "edge-1")
	if code != 0 || !strings.Contains(out, filepath.Join(dir, "nodes", "edge-1.pem")) {
		t.Fatalf("cert node: %d %q %q", code, out, errs)
	}
	code, out, _ = runCmd(t, "cert", "gossip-key")
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if code != 0 || err != nil || len(k) != 32 {
		t.Fatalf("gossip-key: %d %q (%v)", code, out, err)
	}
	keyFile := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(keyFile, []byte("# comment\n"+strings.TrimSpace(out)+"\n"), 0o600)
	badKeys := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(badKeys, []byte("c2hvcnQ=\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"cert"}, "usage"},
		{[]string{"cert", "ca"}, "--dir"},
		{[]string{"cert", "node", "--ca-dir", dir}, "--id"},
		{[]string{"cert", "node", "--ca-dir", t.TempDir(), "--id", "x"}, "petrel cert node"},
		{[]string{"cert", "node", "--ca-dir", dir, "--id", "bad id/../x"}, "petrel cert node"},
		{[]string{"cert", "gossip-key", "--bytes", "20"}, "16, 24 or 32"},
		{[]string{"cert", "frob"}, "unknown subcommand"},
		{[]string{"node", "--model-repo", t.TempDir(), "--join", "127.0.0.1:7946"}, "need --gossip-bind"},
		{[]string{"node", "--model-repo", t.TempDir(), "--gossip-bind", "127.0.0.1:0"}, "gossip encryption key is required"},
		{[]string{"node", "--model-repo", t.TempDir(), "--gossip-bind", "127.0.0.1:0", "--dev"}, "mesh TLS"},
		{[]string{"node", "--model-repo", t.TempDir(), "--gossip-bind", "127.0.0.1:0", "--gossip-key-file", badKeys}, "5-byte key"},
		{[]string{"node", "--model-repo", t.TempDir(), "--gossip-bind", "127.0.0.1:0", "--gossip-key-file", keyFile, "--mesh-tls-dir", dir, "--role", "king"}, "mesh role"},
		{[]string{"node", "--model-repo", t.TempDir(), "--gossip-bind", "127.0.0.1:0", "--dev", "--mesh-tls-dir", dir, "--location", "91,0"}, "location"},
		{[]string{"node", "--model-repo", t.TempDir(), "--gossip-bind", "127.0.0.1:0", "--dev", "--mesh-tls-dir", dir, "--routing-policy", "random"}, "routing policy"},
		{[]string{"node", "--model-repo", t.TempDir(), "--gossip-bind", "127.0.0.1:0", "--dev", "--mesh-tls-dir", dir, "--fallback", "ftp://x"}, "fallback URL"},
		{[]string{"node", "--model-repo", t.TempDir(), "--gossip-bind", "127.0.0.1:0", "--dev", "--mesh-tls-dir", dir, "--max-hops", "0"}, "max hops"},
	} {
		code, _, errs := runCmd(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: code %d, stderr %q, want it to mention %q", c.args, code, errs, c.want)
		}
	}
}
