//go:build gpu

// GPU integration tests: built only with -tags gpu and run on a machine
// with an NVIDIA GPU and the CUDA build of ONNX Runtime (PETREL_ORT_LIB;
// see docs/gpu.md and scripts/gpu-bench.sh). Here a missing or unusable
// GPU is a failure: that is what these tests are for.

package ort_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/models/ort/rtbench"
)

// TestGPUSessionMatchesCPU: both benchmark models load on CUDA with the
// node's GPU options, report it, and compute what the CPU computes.
func TestGPUSessionMatchesCPU(t *testing.T) {
	setup(t)
	for _, name := range []string{rtbench.ModelMLP, rtbench.ModelConv} {
		b, err := rtbench.Model(name, 7)
		if err != nil {
			t.Fatal(err)
		}
		gpu, err := ort.Load(b, ort.Options{Provider: ort.ProviderCUDA, RequireProvider: true, DeviceID: 0,
			GPUMemLimit: 2 << 30, ArenaExtendStrategy: ort.ArenaSameAsRequested})
		if err != nil {
			t.Fatalf("%s on CUDA: %v", name, err)
		}
		defer gpu.Close()
		if gpu.Provider() != ort.ProviderCUDA || gpu.ProviderNote() != "" {
			t.Fatalf("%s: provider %q, note %q", name, gpu.Provider(), gpu.ProviderNote())
		}
		cpu, err := ort.Load(b, ort.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer cpu.Close()
		for _, batch := range []int{1, 64, 256} {
			in := rtbench.Inputs(name, batch, 3)
			g, err := gpu.Run(context.Background(), in, nil)
			if err != nil {
				t.Fatalf("%s batch %d on CUDA: %v", name, batch, err)
			}
			c, err := cpu.Run(context.Background(), in, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxAbsDiff(t, g[0], c[0]); d > 1e-3 {
				t.Errorf("%s batch %d: CUDA and CPU differ by %g", name, batch, d)
			}
		}
	}
}

// TestGPUBadDevice: a device that does not exist falls back to the CPU
// with the reason, or fails when the GPU is required.
func TestGPUBadDevice(t *testing.T) {
	setup(t)
	b, err := rtbench.Model(rtbench.ModelMLP, 1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.Load(b, ort.Options{Provider: ort.ProviderCUDA, DeviceID: 97})
	if err != nil {
		t.Fatalf("without RequireProvider: %v", err)
	}
	defer s.Close()
	if s.Provider() != ort.ProviderCPU || !strings.Contains(s.ProviderNote(), "cuda") {
		t.Errorf("device 97: provider %q, note %q; want a CPU fallback that says why", s.Provider(), s.ProviderNote())
	}
	t.Logf("note: %s", s.ProviderNote())
	if _, err := ort.Load(b, ort.Options{Provider: ort.ProviderCUDA, DeviceID: 97, RequireProvider: true}); !errors.Is(err, ort.ErrProviderUnavailable) {
		t.Errorf("device 97 required: %v, want ErrProviderUnavailable", err)
	}
}

func maxAbsDiff(t *testing.T, a, b models.Tensor) float64 {
	t.Helper()
	if len(a.Data) != len(b.Data) || a.DataType != models.FP32 {
		t.Fatalf("outputs differ in size or type: %d vs %d bytes, %s", len(a.Data), len(b.Data), a.DataType)
	}
	d := 0.0
	for i := 0; i+4 <= len(a.Data); i += 4 {
		x := math.Float32frombits(uint32(a.Data[i]) | uint32(a.Data[i+1])<<8 | uint32(a.Data[i+2])<<16 | uint32(a.Data[i+3])<<24)
		y := math.Float32frombits(uint32(b.Data[i]) | uint32(b.Data[i+1])<<8 | uint32(b.Data[i+2])<<16 | uint32(b.Data[i+3])<<24)
		d = max(d, math.Abs(float64(x-y)))
	}
	return d
}
