package node_test

import (
	"slices"
	"testing"

	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
)

// modelParams is the part of a model's metadata that profiling fills in.
type modelParams struct {
	Parameters struct {
		Concurrency    int                `json:"concurrency"`
		IntraOpThreads int                `json:"intra_op_threads"`
		MaxBatchSize   int                `json:"max_batch_size"`
		Preferred      []int              `json:"preferred_batch_size"`
		Profile        *node.BatchProfile `json:"batch_profile"`
	} `json:"parameters"`
}

// TestBatchProfile: a batchable model without preferred sizes is timed at
// 1, 2, 4, … max_batch_size as it loads (the real runtime, so the costs
// are real), and the sizes it prefers come from those costs; a config
// that names preferred sizes, turns profiling off, or cannot batch is not
// profiled.
func TestBatchProfile(t *testing.T) {
	r := newRepo(t)
	r.smallMLP("auto", 1, `{"max_batch_size": 16}`)
	r.smallMLP("named", 2, `{"max_batch_size": 16, "preferred_batch_size": [4, 8]}`)
	r.smallMLP("off", 3, `{"max_batch_size": 16, "profile_batch_sizes": false}`)
	r.smallMLP("unbatched", 4, `{"max_batch_size": 1}`)
	r.smallMLP("pinned", 5, `{"concurrency": 3, "runtime": {"intra_op_threads": 2}}`)
	tn := startNode(t, testConfig(t, r.dir))
	c := tn.raw(t, client.HTTP1)
	get := func(name string) modelParams {
		var m modelParams
		c.getJSON(t, "/v2/models/"+name, &m)
		return m
	}

	auto := get("auto").Parameters
	if auto.Profile == nil {
		t.Fatal("auto: not profiled")
	}
	var sizes []int
	for _, k := range auto.Profile.Costs {
		sizes = append(sizes, k.Batch)
		if k.RunMicros <= 0 || k.RowMicros*float64(k.Batch) != k.RunMicros {
			t.Errorf("auto: cost %+v", k)
		}
	}
	// mlp-small runs in microseconds: every size fits the budget.
	if want := []int{1, 2, 4, 8, 16}; !slices.Equal(sizes, want) {
		t.Errorf("auto: profiled sizes %v, want %v", sizes, want)
	}
	if len(auto.Preferred) == 0 || !slices.Equal(auto.Preferred, auto.Profile.Preferred) {
		t.Errorf("auto: preferred %v, profile %v", auto.Preferred, auto.Profile.Preferred)
	}
	cheapest := auto.Profile.Costs[0].RowMicros
	for _, k := range auto.Profile.Costs {
		cheapest = min(cheapest, k.RowMicros)
	}
	for _, k := range auto.Profile.Costs {
		if in := slices.Contains(auto.Preferred, k.Batch); in != (k.RowMicros <= cheapest*1.10) {
			t.Errorf("auto: batch %d (%.2f µs/row, cheapest %.2f) preferred=%v", k.Batch, k.RowMicros, cheapest, in)
		}
	}
	if auto.IntraOpThreads != node.AutoIntraOpThreads || auto.Concurrency != node.AutoConcurrency(node.AutoIntraOpThreads) {
		t.Errorf("auto: %d threads × %d executions, want the automatic ones", auto.IntraOpThreads, auto.Concurrency)
	}

	if p := get("named").Parameters; p.Profile != nil || !slices.Equal(p.Preferred, []int{4, 8}) {
		t.Errorf("named: profile %+v, preferred %v", p.Profile, p.Preferred)
	}
	if p := get("off").Parameters; p.Profile != nil || len(p.Preferred) != 0 {
		t.Errorf("off: profile %+v, preferred %v", p.Profile, p.Preferred)
	}
	if p := get("unbatched").Parameters; p.Profile != nil || p.MaxBatchSize != 0 {
		t.Errorf("unbatched: profile %+v, max batch %d", p.Profile, p.MaxBatchSize)
	}
	if p := get("pinned").Parameters; p.IntraOpThreads != 2 || p.Concurrency != 3 {
		t.Errorf("pinned: %d threads × %d executions, want 2 × 3", p.IntraOpThreads, p.Concurrency)
	}
}
