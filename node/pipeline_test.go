package node_test

import (
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
)

// TestPipeline: a chain of two MLPs answers as their composed forward
// pass; pipelines that do not fit, or name a missing step, are
// UNAVAILABLE with the reason; a request to a pipeline whose step is
// unloaded is a 503.
func TestPipeline(t *testing.T) {
	r := newRepo(t)
	ext := r.mlp("extractor", "1", []int{8, 16, 6}, 1)
	head := r.mlp("head", "1", []int{6, 12, 4}, 2)
	r.config("pipe", `{"pipeline": {"steps": [{"model": "extractor"}, {"model": "head", "version": "1"}]}}`)
	r.config("backwards", `{"pipeline": {"steps": [{"model": "head"}, {"model": "extractor"}]}}`)
	r.config("ghost", `{"pipeline": {"steps": [{"model": "extractor"}, {"model": "nope"}]}}`)
	tn := startNode(t, testConfig(t, r.dir))
	rc := tn.raw(t, client.HTTP1)

	rng := rand.New(rand.NewPCG(7, 8))
	for _, rows := range []int{1, 5} {
		for _, bin := range []bool{false, true} {
			x := randomRows(rng, rows, 8)
			req := &oip.Request{Inputs: []models.Tensor{f32("input", []int64{int64(rows), 8}, x)}, BinaryOutput: bin}
			body, hl := encode(t, req, bin)
			resp := decodeReply(t, rc.do(t, http.MethodPost, "/v2/models/pipe/infer", body, inferHeaders(hl)))
			mid, err := ext.Forward(x, rows)
			if err != nil {
				t.Fatal(err)
			}
			want, err := head.Forward(mid, rows)
			if err != nil {
				t.Fatal(err)
			}
			if resp.ModelName != "pipe" || len(resp.Outputs) != 1 {
				t.Fatalf("answer of %q with %d outputs", resp.ModelName, len(resp.Outputs))
			}
			got := probs(t, resp.Outputs[0])
			if len(got) != len(want) {
				t.Fatalf("%d values, want %d", len(got), len(want))
			}
			for i := range want {
				if math.Abs(float64(got[i]-want[i])) > 1e-5 {
					t.Fatalf("rows %d: value %d = %v, composed forward pass says %v", rows, i, got[i], want[i])
				}
			}
		}
	}

	var idx []node.IndexEntry
	rc.getJSON(t, "/v2/repository/index", &idx)
	want := map[string][]string{
		"pipe":      {node.StateReady, ""},
		"backwards": {node.StateUnavailable, `step 1 (head) output "probabilities" does not fit step 2 (extractor) input "input"`},
		"ghost":     {node.StateUnavailable, `step 2: model not found: "nope"`},
	}
	for _, e := range idx {
		if w, ok := want[e.Name]; ok {
			if e.State != w[0] || !strings.Contains(e.Reason, w[1]) {
				t.Errorf("%s: %s %q, want %s mentioning %q", e.Name, e.State, e.Reason, w[0], w[1])
			}
			delete(want, e.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("not in the index: %v", want)
	}

	// The metadata shows the pipeline's signature: the first step's
	// inputs, the last step's outputs.
	var meta struct {
		Inputs  []struct{ Shape []int64 } `json:"inputs"`
		Outputs []struct{ Shape []int64 } `json:"outputs"`
	}
	rc.getJSON(t, "/v2/models/pipe", &meta)
	if len(meta.Inputs) != 1 || meta.Inputs[0].Shape[1] != 8 || len(meta.Outputs) != 1 || meta.Outputs[0].Shape[1] != 4 {
		t.Errorf("pipeline metadata %+v", meta)
	}

	// A step unloaded: 503 with the reason.
	if rep := rc.do(t, http.MethodPost, "/v2/repository/models/head/unload", nil, nil); rep.status != http.StatusOK {
		t.Fatalf("unload head: %d %s", rep.status, rep.body)
	}
	x := randomRows(rng, 1, 8)
	body, hl := encode(t, &oip.Request{Inputs: []models.Tensor{f32("input", []int64{1, 8}, x)}}, false)
	wantError(t, rc.do(t, http.MethodPost, "/v2/models/pipe/infer", body, inferHeaders(hl)), http.StatusServiceUnavailable, "step 2", "head")
	// Loading it again is enough.
	if rep := rc.do(t, http.MethodPost, "/v2/repository/models/head/load", nil, nil); rep.status != http.StatusOK {
		t.Fatalf("load head: %d %s", rep.status, rep.body)
	}
	decodeReply(t, rc.do(t, http.MethodPost, "/v2/models/pipe/infer", body, inferHeaders(hl)))
}

// TestPipelineBadRepository: a pipeline directory that also holds a model
// file, or that names itself, is rejected with the reason.
func TestPipelineBadRepository(t *testing.T) {
	r := newRepo(t)
	r.mlp("a", "1", []int{4, 4}, 1)
	r.mlp("both", "1", []int{4, 4}, 1)
	r.config("both", `{"pipeline": {"steps": [{"model": "a"}, {"model": "a"}]}}`)
	r.config("loop", `{"pipeline": {"steps": [{"model": "a"}, {"model": "loop"}]}}`)
	r.config("short", `{"pipeline": {"steps": [{"model": "a"}]}}`)
	tn := startNode(t, testConfig(t, r.dir))
	var idx []node.IndexEntry
	tn.raw(t, client.HTTP1).getJSON(t, "/v2/repository/index", &idx)
	want := map[string]string{"both": "also holds model versions", "loop": "the pipeline itself", "short": "1 steps: want 2..16"}
	for _, e := range idx {
		if w, ok := want[e.Name]; ok {
			if e.State != node.StateUnavailable || !strings.Contains(e.Reason, w) {
				t.Errorf("%s: %s %q, want UNAVAILABLE mentioning %q", e.Name, e.State, e.Reason, w)
			}
			delete(want, e.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("not in the index: %v", want)
	}
}
