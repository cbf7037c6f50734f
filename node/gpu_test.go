package node_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
)

// claimedGPU is a real ONNX Runtime CPU session that reports the CUDA
// provider: the node's GPU bookkeeping (batch defaults, memory accounting,
// the report) is pure logic over what the session says, and this machine
// has no GPU. What the real CUDA provider does is checked by the gpu-tagged
// tests on a GPU machine (models/ort/gpu_test.go, scripts/gpu-bench.sh).
type claimedGPU struct{ models.Session }

func (claimedGPU) Provider() string { return ort.ProviderCUDA }

func gpuLoader(b []byte, mc *node.ModelConfig) (models.Session, error) {
	s, err := ort.Load(b, ort.DefaultOptions())
	if err != nil {
		return nil, err
	}
	if mc.Runtime != nil && mc.Runtime.Provider == ort.ProviderCUDA {
		return claimedGPU{s}, nil
	}
	return s, nil
}

// TestGPUAccounting: versions on the GPU batch more by default, count
// their GPU memory (the arena limit, or the estimate) against the node's
// GPU budget, and one that does not fit is refused with the reason.
func TestGPUAccounting(t *testing.T) {
	r := newRepo(t)
	r.smallMLP("a", 1, `{"runtime": {"provider": "cuda", "gpu_mem_limit": 300000000}}`)
	r.smallMLP("b", 2, `{"runtime": {"provider": "cuda"}}`)
	r.smallMLP("c", 3, `{"runtime": {"provider": "cuda", "gpu_mem_limit": 100000000}}`)
	r.smallMLP("cpu", 4, `{"max_batch_size": 8}`)
	cfg := testConfig(t, r.dir)
	cfg.GPUMemoryBytes = 600_000_000
	tn := startNode(t, cfg, node.WithSessionLoader(gpuLoader))
	rc := tn.raw(t, client.HTTP1)

	type meta struct {
		Parameters struct {
			Provider     string `json:"execution_provider"`
			GPUBytes     int64  `json:"gpu_memory_bytes"`
			MaxBatchSize int    `json:"max_batch_size"`
			Concurrency  int    `json:"concurrency"`
		} `json:"parameters"`
	}
	get := func(name string) meta {
		var m meta
		rc.getJSON(t, "/v2/models/"+name, &m)
		return m
	}
	// a counts its limit, b the estimate (the model is small: the floor).
	for name, want := range map[string]int64{"a": 300_000_000, "b": node.MinGPUFootprint} {
		p := get(name).Parameters
		if p.Provider != "cuda" || p.GPUBytes != want || p.MaxBatchSize != node.GPUMaxBatchSize || p.Concurrency != node.GPUConcurrency {
			t.Errorf("%s: %+v, want cuda, %d GPU bytes, batch %d, concurrency %d", name, p, want, node.GPUMaxBatchSize, node.GPUConcurrency)
		}
	}
	if p := get("cpu").Parameters; p.Provider != "cpu" || p.GPUBytes != 0 || p.MaxBatchSize != 8 {
		t.Errorf("cpu: %+v", p)
	}
	// 300 MB + 256 MiB + 100 MB > 600 MB: c, loaded last, is refused.
	index := func() map[string]node.IndexEntry {
		var idx []node.IndexEntry
		rc.getJSON(t, "/v2/repository/index", &idx)
		m := map[string]node.IndexEntry{}
		for _, e := range idx {
			m[e.Name] = e
		}
		return m
	}
	if e := index()["c"]; e.State != node.StateUnavailable || !strings.Contains(e.Reason, node.ErrGPUMemory.Error()) || !strings.Contains(e.Reason, "gpu_memory_bytes") {
		t.Fatalf("c: %s %q, want UNAVAILABLE for GPU memory", e.State, e.Reason)
	}
	// Unloading a frees its share: c now fits.
	if rep := rc.do(t, "POST", "/v2/repository/models/a/unload", nil, nil); rep.status != 200 {
		t.Fatalf("unload a: %d %s", rep.status, rep.body)
	}
	if rep := rc.do(t, "POST", "/v2/repository/models/c/load", nil, nil); rep.status != 200 {
		t.Fatalf("load c after unloading a: %d %s", rep.status, rep.body)
	}
	if p := get("c").Parameters; p.GPUBytes != 100_000_000 {
		t.Errorf("c: %+v", p)
	}
}

// TestGPUBudgetCountsVersions: the versions of one model loaded together
// count together; a reload of the same model does not count the versions
// it replaces.
func TestGPUBudgetCountsVersions(t *testing.T) {
	r := newRepo(t)
	for _, v := range []string{"1", "2"} {
		r.mlp("two", v, []int{64, 128, 16}, 1)
	}
	r.config("two", `{"runtime": {"provider": "cuda", "gpu_mem_limit": 300000000}}`)
	r.smallMLP("one", 2, `{"runtime": {"provider": "cuda", "gpu_mem_limit": 400000000}}`)
	cfg := testConfig(t, r.dir)
	cfg.GPUMemoryBytes = 700_000_000
	tn := startNode(t, cfg, node.WithSessionLoader(gpuLoader))
	rc := tn.raw(t, client.HTTP1)
	var idx []node.IndexEntry
	rc.getJSON(t, "/v2/repository/index", &idx)
	states := map[string]node.IndexEntry{}
	for _, e := range idx {
		states[e.Name] = e
	}
	// "one" (400 MB) loads first (name order); "two" has room for one of
	// its versions (300 MB) but not for both.
	if e := states["one"]; e.State != node.StateReady {
		t.Fatalf("one: %s %q", e.State, e.Reason)
	}
	if e := states["two"]; e.State != node.StateUnavailable || !strings.Contains(e.Reason, "not enough GPU memory") {
		t.Fatalf("two: %s %q, want UNAVAILABLE for GPU memory", e.State, e.Reason)
	}
	// Reloading "one" with a new version in place of the old replaces its
	// 400 MB rather than adding to it.
	r.mlp("one", "2", []int{64, 128, 16}, 3)
	if err := os.RemoveAll(filepath.Join(r.dir, "one", "1")); err != nil {
		t.Fatal(err)
	}
	if rep := rc.do(t, "POST", "/v2/repository/models/one/load", nil, nil); rep.status != 200 {
		t.Fatalf("reload one: %d %s", rep.status, rep.body)
	}
}
