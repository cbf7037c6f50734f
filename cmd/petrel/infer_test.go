package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/node"
)

// TestInferAgainstNode runs `petrel infer` against a real node over each
// protocol and encoding, and checks the printed outputs.
func TestInferAgainstNode(t *testing.T) {
	repo := t.TempDir()
	if code, _, errs := runCmd(t, "model", "sample", "--repo", repo); code != 0 {
		t.Fatal(errs)
	}
	certs := t.TempDir()
	cfg := node.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.ModelRepository = repo
	cfg.PlainTCP = true
	cfg.DevCertDir = certs
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n.Shutdown(sctx)
	})
	url := "http://" + n.Addr()
	for _, c := range []struct {
		name  string
		extra []string
		proto string
	}{
		{"h1-json", nil, "HTTP/1.1"},
		{"h1-binary", []string{"--binary", "--binary-output"}, "HTTP/1.1"},
		{"h2-json", []string{"--protocol", "h2"}, "HTTP/2.0"},
		{"h3-binary", []string{"--protocol", "h3", "--ca", filepath.Join(certs, "cert.pem"), "--binary"}, "HTTP/3.0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"infer", "--url", url, "--model", "mlp-small", "--input", "input:FP32:2x64:random", "--id", "req-7"}, c.extra...)
			code, out, errs := runCmd(t, args...)
			if code != 0 {
				t.Fatalf("code %d: %s", code, errs)
			}
			for _, want := range []string{"model mlp-small version 1 id req-7", "over " + c.proto, "probabilities FP32 [2 16]:", "(32 values)"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
	code, _, errs := runCmd(t, "infer", "--url", url, "--model", "mlp-small", "--input", "input:FP32:1x63:random")
	if code != 1 || !strings.Contains(errs, "status 400") || !strings.Contains(errs, "[1 63]") {
		t.Fatalf("bad shape: code %d, stderr %q", code, errs)
	}
	code, _, errs = runCmd(t, "infer", "--url", url, "--model", "absent", "--input", "input:FP32:1x64:random")
	if code != 1 || !strings.Contains(errs, "status 404") {
		t.Fatalf("unknown model: code %d, stderr %q", code, errs)
	}
}
