package bench

import (
	"context"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/models/onnx"
	petrelort "github.com/petrel-mesh/petrel/models/ort"
)

// These tests load the real ONNX Runtime library and fail, never skip,
// when it cannot be found (set PETREL_ORT_LIB or run `make setup`), like
// the rest of the project's runtime tests.

// testMLP writes a small MLP and returns its path and model.
func testMLP(t *testing.T) (string, *onnx.Model) {
	t.Helper()
	if _, err := petrelort.Init(""); err != nil {
		t.Fatal(err)
	}
	m := onnx.NewMLP([]int{6, 8, 3}, onnx.Softmax).RandomInit(3)
	m.Name = "tiny"
	dir := filepath.Join(t.TempDir(), "tiny", "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "model.onnx")
	if err := m.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path, m
}

func TestBaselineServesOIP(t *testing.T) {
	path, m := testMLP(t)
	lib, err := petrelort.FindLibrary("")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBaseline(lib, path, "tiny")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srv := httptest.NewServer(b)
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	ctx := context.Background()

	p, err := BuildPayload(ctx, c, "tiny", 2, EncodingJSON, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := Probe(ctx, c, p); err != nil {
		t.Fatal(err)
	}
	res, err := c.Post(ctx, p.Path, p.Body, p.HeaderLen, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := oip.DecodeResponse(res.Body, res.HeaderLen)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := FetchModel(ctx, c, "tiny")
	req, _ := RandomRequest(meta, 2, 5, false)
	x, _ := req.Inputs[0].Float64s()
	in := make([]float32, len(x))
	for i, v := range x {
		in[i] = float32(v)
	}
	want, err := m.Forward(in, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := resp.Outputs[0].Float64s()
	if len(got) != len(want) {
		t.Fatalf("got %d values, want %d", len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-float64(want[i])) > 1e-5 {
			t.Fatalf("output %d: %v, want %v", i, got[i], want[i])
		}
	}

	rep, err := Run(ctx, Config{Client: c, MaxRequests: 20, Concurrency: 2, Warmup: 0, Duration: 0, Rows: p.Rows, Path: p.Path, Body: p.Body, HeaderLen: p.HeaderLen})
	if err != nil || rep.Requests != 20 || rep.Errors != 0 {
		t.Fatalf("run against the baseline: %d requests, %d errors %v (%s), err %v", rep.Requests, rep.Errors, rep.ErrorsByStatus, rep.FirstError, err)
	}
	if _, err := FetchModel(ctx, c, "other"); err == nil {
		t.Error("baseline served metadata for an unknown model")
	}
	if err := b.Close(); err != nil {
		t.Error(err)
	}
}

func TestInProcess(t *testing.T) {
	path, _ := testMLP(t)
	rep, err := InProcess(path, 4, 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []InProcessResult{rep.Petrel, rep.Default} {
		if r.Iterations != 20 || r.Batch != 4 || r.P50 <= 0 || r.Mean <= 0 || r.RowsPerSec <= 0 {
			t.Errorf("%s: %+v", r.Runtime, r)
		}
	}
	if rep.Petrel.Runtime != RuntimePetrel || rep.Default.Runtime != RuntimeDefault || rep.Parallel.Runtime != RuntimeParallel {
		t.Errorf("runtimes %q %q %q", rep.Petrel.Runtime, rep.Default.Runtime, rep.Parallel.Runtime)
	}
	if p := rep.Parallel; p.Batch != 4 || p.Iterations < 10 || p.P50 <= 0 || p.RowsPerSec <= 0 {
		t.Errorf("%s: %+v", p.Runtime, p)
	}
	lat, thr := rep.Best()
	if lat.P50 > rep.Petrel.P50 || lat.P50 > rep.Default.P50 || thr.RowsPerSec < rep.Petrel.RowsPerSec || thr.RowsPerSec < rep.Default.RowsPerSec || thr.RowsPerSec < rep.Parallel.RowsPerSec {
		t.Errorf("Best picked %s for latency and %s for throughput from %+v", lat.Runtime, thr.Runtime, rep)
	}
	if _, err := InProcess(path, 0, 20); err == nil {
		t.Error("batch 0 accepted")
	}
	if _, err := InProcess(filepath.Join(t.TempDir(), "missing.onnx"), 1, 20); err == nil {
		t.Error("missing file accepted")
	}
}
