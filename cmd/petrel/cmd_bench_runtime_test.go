package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchRuntime: bad flags exit 2 with a message; a small CPU sweep
// prints its rows and writes the table; asking for CUDA without a usable
// CUDA provider fails with the reason rather than measure the CPU.
func TestBenchRuntime(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		var out, errOut strings.Builder
		e := &env{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
		code := runBench(t.Context(), e, append([]string{"runtime"}, args...))
		return code, out.String(), errOut.String()
	}
	for _, bad := range [][]string{{"--providers", "tpu"}, {"--models", "resnet"}, {"--batches", "0"}, {"--concurrency", "x"},
		{"--duration", "-1s"}, {"--gpu-arena-strategy", "fast"}, {"--gpu-mem-limit", "-5"}, {"extra"}} {
		if code, _, msg := run(bad...); code != 2 || msg == "" {
			t.Errorf("bench runtime %q: exit %d, message %q; want 2 and a message", bad, code, msg)
		}
	}
	table := filepath.Join(t.TempDir(), "t.md")
	code, out, msg := run("--models", "conv", "--batches", "2", "--concurrency", "1", "--duration", "50ms", "--warmup", "0s", "--out", table)
	if code != 0 || !strings.Contains(out, "conv cpu  batch    2") {
		t.Fatalf("exit %d\n%s%s", code, out, msg)
	}
	if b, err := os.ReadFile(table); err != nil || !strings.Contains(string(b), "| conv | 2 | 1 |") {
		t.Fatalf("table %q: %v", b, err)
	}
	code, out, msg = run("--providers", "cuda", "--models", "mlp", "--batches", "1", "--concurrency", "1", "--duration", "50ms")
	if code == 0 {
		if !strings.Contains(out, "mlp cuda") {
			t.Fatalf("CUDA sweep succeeded without CUDA rows:\n%s", out)
		}
		return // a GPU machine
	}
	if code != 1 || !strings.Contains(msg, "cuda") {
		t.Fatalf("cuda without a GPU: exit %d, %q", code, msg)
	}
}
