package rtbench_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/models/ort/rtbench"
)

func setup(t *testing.T) {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		t.Fatalf("these tests need the ONNX Runtime shared library: %v", err)
	}
}

// TestModels: both benchmark models load and compute a distribution per
// row of the batch.
func TestModels(t *testing.T) {
	setup(t)
	for _, name := range []string{rtbench.ModelMLP, rtbench.ModelConv} {
		b, err := rtbench.Model(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ort.Load(b, ort.Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out, err := s.Run(context.Background(), rtbench.Inputs(name, 3, 1), nil)
		s.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(out) != 1 || len(out[0].Shape) != 2 || out[0].Shape[0] != 3 || out[0].Shape[1] != 10 {
			t.Fatalf("%s: outputs %v", name, out)
		}
		if out[0].DataType != models.FP32 || len(out[0].Data) != 4*30 {
			t.Fatalf("%s: output %s of %d bytes", name, out[0].DataType, len(out[0].Data))
		}
		p := make([]float32, 30)
		for i := range p {
			p[i] = math.Float32frombits(binary.LittleEndian.Uint32(out[0].Data[4*i:]))
		}
		for r := range 3 {
			sum := float32(0)
			for _, v := range p[10*r : 10*r+10] {
				sum += v
			}
			if math.Abs(float64(sum-1)) > 1e-4 {
				t.Errorf("%s: row %d sums to %v", name, r, sum)
			}
		}
	}
}

// TestRunCPU: a small sweep measures every combination.
func TestRunCPU(t *testing.T) {
	setup(t)
	cfg := rtbench.Config{
		Providers: []string{ort.ProviderCPU}, Batches: []int{1, 4}, Concurrency: []int{1, 2},
		Duration: 100 * time.Millisecond, Warmup: 10 * time.Millisecond,
	}
	var seen int
	rows, err := rtbench.Run(context.Background(), cfg, func(rtbench.Row) { seen++ })
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 8 || seen != 8 {
		t.Fatalf("%d rows (%d reported), want 2 models × 2 batches × 2 concurrencies", len(rows), seen)
	}
	for _, r := range rows {
		if r.Provider != ort.ProviderCPU || r.Runs < 1 || r.RowsPerSec <= 0 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Errorf("row %+v", r)
		}
	}
	var buf bytes.Buffer
	if err := rtbench.WriteTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 2+8 {
		t.Errorf("table of %d lines, want 2 header lines + 8 rows:\n%s", n, buf.String())
	}
}

// TestCUDARefusedWithoutGPU: on a machine without a usable CUDA provider
// the benchmark refuses to measure CUDA rather than fall back to the CPU,
// and says why (with the CPU-only library, the provider is missing); on a
// GPU machine it must measure on CUDA.
func TestCUDARefusedWithoutGPU(t *testing.T) {
	setup(t)
	cfg := rtbench.Config{Providers: []string{ort.ProviderCUDA}, Models: []string{rtbench.ModelMLP}, Batches: []int{1}, Concurrency: []int{1}, Duration: 10 * time.Millisecond}
	rows, err := rtbench.Run(context.Background(), cfg, nil)
	if err == nil {
		// A GPU machine: then the rows must really be CUDA rows.
		if len(rows) != 1 || rows[0].Provider != ort.ProviderCUDA {
			t.Fatalf("CUDA sweep gave %+v", rows)
		}
		return
	}
	if !strings.Contains(err.Error(), "cuda") {
		t.Fatalf("error %q does not say the CUDA provider is the problem", err)
	}
}

func TestWriteTableSideBySide(t *testing.T) {
	rows := []rtbench.Row{
		{Model: "mlp", Provider: ort.ProviderCPU, Batch: 64, Conc: 1, RowsPerSec: 1000, P50: time.Millisecond, P99: 2 * time.Millisecond},
		{Model: "mlp", Provider: ort.ProviderCUDA, Batch: 64, Conc: 1, RowsPerSec: 25000, P50: 100 * time.Microsecond, P99: 150 * time.Microsecond},
		{Model: "conv", Provider: ort.ProviderCPU, Batch: 1, Conc: 4, RowsPerSec: 500, P50: time.Millisecond, P99: time.Millisecond},
	}
	var buf bytes.Buffer
	if err := rtbench.WriteTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"| mlp | 64 | 1 | 1000 | 1000 µs | 2000 µs | 25000 | 100 µs | 150 µs | ×25.0 |", "| conv | 1 | 4 | 500 | 1000 µs | 1000 µs | — | — | — | — |"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestValidate(t *testing.T) {
	bad := rtbench.Config{Providers: []string{"tpu"}, Models: []string{"resnet"}, Batches: []int{0}, Concurrency: []int{1000}, Duration: -1}
	err := bad.Validate()
	for _, want := range []string{`"tpu"`, `"resnet"`, "batch 0", "concurrency 1000", "duration"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}
