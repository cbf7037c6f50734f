//go:build gpu

package node_test

import (
	"math/rand/v2"
	"testing"

	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node/client"
)

// TestGPUNodeServesOnCUDA: a node configured for the GPU (required, with
// a GPU budget and an arena limit) loads a model on the CUDA provider,
// says so in its metadata and metrics, batches it with the GPU defaults
// and answers correctly. Run on a GPU machine with -tags gpu (docs/gpu.md).
func TestGPUNodeServesOnCUDA(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("mlp", 5, "")
	cfg := testConfig(t, r.dir)
	cfg.Runtime.Provider, cfg.Runtime.RequireProvider = ort.ProviderCUDA, true
	cfg.Runtime.GPUMemLimit = 512 << 20
	cfg.GPUMemoryBytes = 4 << 30
	tn := startNode(t, cfg)
	rc := tn.raw(t, client.HTTP1)
	var meta struct {
		Parameters struct {
			Provider     string `json:"execution_provider"`
			Note         string `json:"provider_note"`
			GPUBytes     int64  `json:"gpu_memory_bytes"`
			MaxBatchSize int    `json:"max_batch_size"`
		} `json:"parameters"`
	}
	rc.getJSON(t, "/v2/models/mlp", &meta)
	p := meta.Parameters
	t.Logf("metadata: %+v", p)
	if p.Provider != "cuda" || p.Note != "" || p.GPUBytes != 512<<20 || p.MaxBatchSize != 256 {
		t.Fatalf("metadata %+v, want cuda, no note, 512 MiB, batch 256", p)
	}
	if v, ok := metricValue(scrape(t, rc), "petrel_model_execution_provider", map[string]string{"model": "mlp", "provider": "cuda"}); !ok || v != 1 {
		t.Fatalf("petrel_model_execution_provider{provider=cuda} = %v (%v)", v, ok)
	}
	cl := tn.client(t, client.HTTP2)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, rows := range []int{1, 32} {
		req, x := mlpRequest(m, rng, rows)
		resp, _, err := cl.Infer(t.Context(), "mlp", "", req, false)
		if err != nil {
			t.Fatalf("infer %d rows: %v", rows, err)
		}
		checkMLP(t, m, x, resp.Outputs)
	}
}
