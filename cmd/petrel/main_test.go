package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := run(ctx, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: os.Getenv}, args)
	return code, out.String(), errb.String()
}

func TestUsageAndVersion(t *testing.T) {
	if code, _, errs := runCmd(t); code != 2 || !strings.Contains(errs, "usage: petrel") {
		t.Fatalf("no args: code %d, stderr %q", code, errs)
	}
	if code, _, errs := runCmd(t, "frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Fatalf("unknown: code %d, stderr %q", code, errs)
	}
	if code, out, _ := runCmd(t, "version"); code != 0 || !strings.HasPrefix(out, "petrel ") {
		t.Fatalf("version: code %d, out %q", code, out)
	}
}

func TestModelSampleAndInspect(t *testing.T) {
	repo := t.TempDir()
	code, out, errs := runCmd(t, "model", "sample", "--repo", repo)
	if code != 0 {
		t.Fatalf("sample: code %d: %s", code, errs)
	}
	path := filepath.Join(repo, "mlp-small", "1", "model.onnx")
	if !strings.Contains(out, path) {
		t.Fatalf("sample output %q does not name %s", out, path)
	}
	code, out, errs = runCmd(t, "model", "inspect", path)
	if code != 0 {
		t.Fatalf("inspect: code %d: %s", code, errs)
	}
	for _, want := range []string{"digest:  sha256:", "input", "FP32", "[-1 64]", "probabilities", "[-1 16]"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCmd(t, "model", "inspect", "--json", path)
	if code != 0 || !strings.Contains(out, `"datatype": "FP32"`) {
		t.Fatalf("inspect --json: code %d, out %s", code, out)
	}
}

func TestModelInspectRejectsGarbage(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.onnx")
	if err := os.WriteFile(bad, []byte("this is not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCmd(t, "model", "inspect", bad)
	if code != 1 || !strings.Contains(errs, "is not a valid ONNX model") {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
	code, _, errs = runCmd(t, "model", "inspect", filepath.Join(t.TempDir(), "missing.onnx"))
	if code != 1 || !strings.Contains(errs, "no such file") {
		t.Fatalf("missing: code %d, stderr %q", code, errs)
	}
}

func TestNodeConfigErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"node"}, "model repository directory is not set"},
		{[]string{"node", "--model-repo", t.TempDir(), "--listen", "nonsense"}, "listen address"},
		{[]string{"node", "--model-repo", t.TempDir(), "--tls-cert", "c.pem"}, "give both a certificate file and a key file"},
		{[]string{"node", "--model-repo", t.TempDir(), "--graph-optimization", "max"}, "runtime"},
		{[]string{"node", "--model-repo", t.TempDir(), "--log-level", "loud"}, "--log-level"},
		{[]string{"node", "--model-repo", filepath.Join(t.TempDir(), "absent"), "--listen", "127.0.0.1:0"}, "model repository"},
		{[]string{"node", "--model-repo", t.TempDir(), "extra"}, "unexpected arguments"},
	}
	for _, c := range cases {
		code, _, errs := runCmd(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: code %d, stderr %q, want it to mention %q", c.args, code, errs, c.want)
		}
	}
}

func TestInferFlagErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"infer"}, "give --model"},
		{[]string{"infer", "--model", "m", "--input", "x:FP32"}, "want NAME:DATATYPE:SHAPE:VALUES"},
		{[]string{"infer", "--model", "m", "--input", "x:FP99:1:1"}, "unknown datatype"},
		{[]string{"infer", "--model", "m", "--input", "x:FP32:1xq:1"}, "shape"},
		{[]string{"infer", "--model", "m", "--input", "x:INT8:2:1,300"}, "INT8"},
		{[]string{"infer", "--model", "m", "--protocol", "h9", "--input", "x:FP32:1:1"}, "protocol"},
		{[]string{"infer", "--model", "m", "--url", "ftp://x", "--input", "x:FP32:1:1"}, "base URL"},
	}
	for _, c := range cases {
		code, _, errs := runCmd(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: code %d, stderr %q, want it to mention %q", c.args, code, errs, c.want)
		}
	}
}

func TestParseInputSpec(t *testing.T) {
	tt, err := parseInputSpec("x:INT64:2x2:1,2,3,4", nil)
	if err != nil {
		t.Fatal(err)
	}
	if tt.Name != "x" || len(tt.Shape) != 2 || len(tt.Data) != 32 {
		t.Fatalf("got %+v", tt)
	}
	s, err := parseInputSpec("s:BOOL:scalar:true", nil)
	if err != nil || len(s.Shape) != 0 || len(s.Data) != 1 || s.Data[0] != 1 {
		t.Fatalf("scalar: %+v %v", s, err)
	}
}
