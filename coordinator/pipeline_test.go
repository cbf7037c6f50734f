package coordinator_test

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/node"
)

// TestPipelinePushDeployServe: a pipeline over two pushed models is
// checked at push time, signed, deployed like any version, and served by
// every node with the answer of the two models composed; pipelines whose
// steps do not fit, or do not exist, are refused with the reason.
func TestPipelinePushDeployServe(t *testing.T) {
	m := newTestMesh(t, meshOpts{nodes: 2})
	a, ga := mlpVersion(t, 1)             // [N,64] -> [N,16]
	b, gb := mlpVersion(t, 2, 16, 8, 4)   // [N,16] -> [N,4]
	wide, _ := mlpVersion(t, 3, 32, 8, 4) // [N,32]: does not fit a's output
	for _, p := range []struct {
		name  string
		model []byte
		g     []models.Golden
	}{{"a", a, ga}, {"b", b, gb}, {"wide", wide, nil}} {
		if st, body := m.push(pushToken, p.name, "1", p.model, p.g, nil); st != 201 {
			t.Fatalf("push %s: %d %s", p.name, st, body)
		}
	}
	steps := func(s ...string) coordinator.PipelineRequest {
		var r coordinator.PipelineRequest
		for _, x := range s {
			mv := strings.SplitN(x, ":", 2)
			r.Steps = append(r.Steps, coordinator.PipelineStepRef{Model: mv[0], Version: mv[1]})
		}
		return r
	}
	for _, tc := range []struct {
		what, name, token string
		req               coordinator.PipelineRequest
		status            int
		want              string
	}{
		{"read token", "p", readToken, steps("a:1", "b:1"), 403, "push"},
		{"widths differ", "p", pushToken, steps("a:1", "wide:1"), 422, `step 1 (a 1) output`},
		{"widths differ, the shapes", "p", pushToken, steps("a:1", "wide:1"), 422, "dimension 1"},
		{"unknown step version", "p", pushToken, steps("a:1", "b:9"), 422, `model \"b\" has no version \"9\"`},
		{"unknown step model", "p", pushToken, steps("nope:1", "b:1"), 422, "step 1"},
		{"one step", "p", pushToken, steps("a:1"), 400, "1 steps"},
		{"self reference", "p", pushToken, steps("a:1", "p:1"), 400, "the pipeline itself"},
		{"version not pinned", "p", pushToken, steps("a:1", "b:"), 400, "pins every step"},
		{"bad step name", "p", pushToken, steps("a:1", "../b:1"), 400, "step 2"},
	} {
		st, body := m.api("POST", "/v1/models/"+tc.name+"/versions/1/pipeline", tc.token, tc.req, nil)
		if st != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s: got %d %s, want %d containing %q", tc.what, st, body, tc.status, tc.want)
		}
	}
	if st, _ := m.api("GET", "/v1/models/p/versions/1", readToken, nil, nil); st != 404 {
		t.Fatalf("a refused pipeline is in the registry: %d", st)
	}

	var res struct {
		Manifest models.Manifest `json:"manifest"`
	}
	if st, body := m.api("POST", "/v1/models/p/versions/1/pipeline", pushToken, steps("a:1", "b:1"), &res); st != 201 {
		t.Fatalf("push pipeline: %d %s", st, body)
	}
	man := res.Manifest
	if man.Format != models.FormatPipeline || man.Digest != "" || man.Pipeline == nil || len(man.Pipeline.Steps) != 2 ||
		man.Pipeline.Steps[0].Digest != models.DigestBytes(a) || man.Pipeline.Steps[1].Digest != models.DigestBytes(b) {
		t.Fatalf("pipeline manifest: %+v", man)
	}
	if in, out := man.Signature.Inputs, man.Signature.Outputs; len(in) != 1 || in[0].Shape[1] != 64 || len(out) != 1 || out[0].Shape[1] != 4 {
		t.Fatalf("pipeline signature: %+v", man.Signature)
	}
	if st, body := m.api("POST", "/v1/models/p/versions/1/pipeline", pushToken, steps("a:1", "b:1"), nil); st != 409 {
		t.Fatalf("push the pipeline again: %d %s", st, body)
	}

	if st, body := m.api("POST", "/v1/models/p/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil); st != 200 {
		t.Fatalf("deploy pipeline: %d %s", st, body)
	}
	m.readyEverywhere("p", "1", 30*time.Second)

	in := make([]float32, 64)
	for i := range in {
		in[i] = float32(i%7)/7 - 0.3
	}
	for _, n := range m.nodes {
		got := inferRow(t, n, "p", "", in)
		mid := inferRow(t, n, "a", "1", in) // the steps are served too, pinned
		want := inferRow(t, n, "b", "1", mid)
		if len(got) != 4 || len(want) != 4 {
			t.Fatalf("%s: pipeline answered %d values, composition %d; want 4", n.Addr(), len(got), len(want))
		}
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-5 {
				t.Fatalf("%s: pipeline value %d = %v, a then b gives %v", n.Addr(), i, got[i], want[i])
			}
		}
	}

	// A pinned step is in use.
	if st, body := m.api("DELETE", "/v1/models/a/versions/1", adminToken, nil, nil); st != 409 || !strings.Contains(body, "pipeline") {
		t.Fatalf("rm a pipeline's step: %d %s", st, body)
	}
	// Undeployed, the pipeline and its steps leave the nodes.
	if st, body := m.api("DELETE", "/v1/models/p", adminToken, nil, nil); st != 200 {
		t.Fatalf("rm pipeline: %d %s", st, body)
	}
	waitFor(t, 30*time.Second, "the pipeline and its steps unloaded", func() (bool, string) {
		var nodes []coordinator.NodeView
		m.api("GET", "/v1/nodes", readToken, nil, &nodes)
		var left []string
		for _, n := range nodes {
			for _, s := range n.Models {
				left = append(left, n.Node+":"+s.Model+"/"+s.Version)
			}
		}
		return len(nodes) == len(m.nodes) && len(left) == 0, strings.Join(left, " ")
	})
	if st, body := m.api("DELETE", "/v1/models/a/versions/1", adminToken, nil, nil); st != 200 {
		t.Fatalf("rm a step no pipeline pins any more: %d %s", st, body)
	}
}

// inferRow sends one row to a node's model (a version when ver != "")
// and returns the first output's values.
func inferRow(t *testing.T, n *node.Node, model, ver string, row []float32) []float32 {
	t.Helper()
	type tensor struct {
		Name     string    `json:"name"`
		Shape    []int     `json:"shape"`
		DataType string    `json:"datatype"`
		Data     []float32 `json:"data"`
	}
	body, _ := json.Marshal(map[string]any{"inputs": []tensor{{Name: "input", Shape: []int{1, len(row)}, DataType: "FP32", Data: row}}})
	path := "/v2/models/" + model
	if ver != "" {
		path += "/versions/" + ver
	}
	resp, err := http.Post("http://"+n.Addr()+path+"/infer", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Outputs []tensor `json:"outputs"`
		Error   string   `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Outputs) == 0 {
		t.Fatalf("infer %s on %s: %d %s %v", path, n.Addr(), resp.StatusCode, out.Error, err)
	}
	return out.Outputs[0].Data
}
