package node_test

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
)

// index fetches the repository index with method and body.
func index(t *testing.T, rc *raw, method, path, body string) []node.IndexEntry {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	rep := rc.do(t, method, path, b, nil)
	if rep.status != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, rep.status, rep.body)
	}
	var idx []node.IndexEntry
	if err := json.Unmarshal(rep.body, &idx); err != nil {
		t.Fatalf("%s %s: %v in %s", method, path, err, rep.body)
	}
	return idx
}

// entry returns the index rows of model name.
func entry(idx []node.IndexEntry, name string) []node.IndexEntry {
	var out []node.IndexEntry
	for _, e := range idx {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// wantState checks that model name has one index row in state with a
// reason containing every word.
func wantState(t *testing.T, idx []node.IndexEntry, name, state string, words ...string) {
	t.Helper()
	rows := entry(idx, name)
	if len(rows) != 1 || rows[0].State != state {
		t.Errorf("index rows of %s: %+v, want one %s", name, rows, state)
		return
	}
	for _, w := range words {
		if !strings.Contains(strings.ToLower(rows[0].Reason), strings.ToLower(w)) {
			t.Errorf("index reason of %s %q does not mention %q", name, rows[0].Reason, w)
		}
	}
}

// goldenConfig is a config.json with one golden example for a 64-wide
// model whose expected output is all zeros: no softmax gives that.
const goldenConfig = `{"golden": [{
	"inputs":  [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [` + zeros64 + `]}],
	"outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1, 16], "data": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}],
	"tolerance": 1e-5}]}`

const zeros64 = "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0"

// TestRepositoryAPI drives the repository extension: index (GET and POST,
// ready filter), unload, load, reload with a new version, and the reasons
// given for models that do not load.
func TestRepositoryAPI(t *testing.T) {
	r := newRepo(t)
	m1 := r.smallMLP("mlp", 1, `{"labels": {"v": "1"}}`)
	r.write("garbage/1/model.onnx", []byte("this is not an ONNX model"))
	r.smallMLP("badconfig", 1, `{"max_batch_size": 4, "max_batch_sise": 8}`)
	r.smallMLP("badgolden", 1, goldenConfig)
	tn := startNode(t, testConfig(t, r.dir))
	rc := tn.raw(t, client.HTTP2)
	c := tn.client(t, client.HTTP2)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))

	infer := func(model string) (*oip.Response, []float32, *client.Result, error) {
		req, x := mlpRequest(m1, rng, 1)
		resp, res, err := c.Infer(ctx, model, "", req, false)
		return resp, x, res, err
	}

	// The node started although three models do not load; the index says why.
	idx := index(t, rc, http.MethodGet, "/v2/repository/index", "")
	if rows := entry(idx, "mlp"); len(rows) != 1 || rows[0] != (node.IndexEntry{Name: "mlp", Version: "1", State: node.StateReady}) {
		t.Errorf("index rows of mlp: %+v", rows)
	}
	wantState(t, idx, "garbage", node.StateUnavailable, "model.onnx")
	wantState(t, idx, "badconfig", node.StateUnavailable, "max_batch_sise")
	wantState(t, idx, "badgolden", node.StateUnavailable, "golden", "probabilities")
	wantState(t, idx, "garbage", node.StateUnavailable, "garbage/1/model.onnx")
	for _, e := range idx {
		if strings.Contains(e.Reason, r.dir) {
			t.Errorf("index reason of %s shows the repository's absolute path: %q", e.Name, e.Reason)
		}
	}
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/v2/repository/index", ""},
		{http.MethodPost, "/v2/repository/index", `{}`},
		{http.MethodPost, "/v2/repository/index", `{"ready": false}`},
	} {
		if got := index(t, rc, tc.method, tc.path, tc.body); len(got) != len(idx) {
			t.Errorf("%s %s %s: %+v, want %+v", tc.method, tc.path, tc.body, got, idx)
		}
	}
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/v2/repository/index", `{"ready": true}`},
		{http.MethodGet, "/v2/repository/index?ready=true", ""},
	} {
		if got := index(t, rc, tc.method, tc.path, tc.body); len(got) != 1 || got[0].Name != "mlp" {
			t.Errorf("%s %s %s: %+v, want mlp only", tc.method, tc.path, tc.body, got)
		}
	}
	wantError(t, rc.do(t, http.MethodPost, "/v2/repository/index", []byte(`{"ready": "yes"}`), nil), http.StatusBadRequest, "repository index")
	wantError(t, rc.do(t, http.MethodPost, "/v2/repository/index", []byte(`{"readyy": true}`), nil), http.StatusBadRequest, "readyy")
	// A model that failed to load is not ready and cannot serve.
	wantError(t, rc.do(t, http.MethodGet, "/v2/models/garbage/ready", nil, nil), http.StatusServiceUnavailable, "garbage")
	wantError(t, rc.do(t, http.MethodGet, "/v2/models/badconfig", nil, nil), http.StatusServiceUnavailable, "badconfig")

	// Unload: inference and metadata 404, the index says unloaded, and
	// the version's series leave /metrics.
	if _, _, _, err := infer("mlp"); err != nil {
		t.Fatal(err)
	}
	mlpSeries := map[string]string{"model": "mlp", "version": "1", "outcome": "success"}
	if _, ok := metricValue(scrape(t, rc), "petrel_inference_requests_total", mlpSeries); !ok {
		t.Fatal("no request series for mlp before the unload")
	}
	rep := rc.do(t, http.MethodPost, "/v2/repository/models/mlp/unload", nil, nil)
	if rep.status != http.StatusOK {
		t.Fatalf("unload: %d %s", rep.status, rep.body)
	}
	if _, ok := metricValue(scrape(t, rc), "petrel_inference_requests_total", mlpSeries); ok {
		t.Error("the unloaded version's request series is still exported")
	}
	if _, _, res, err := infer("mlp"); err == nil || res.Status != http.StatusNotFound {
		t.Errorf("infer after unload: %v", err)
	}
	wantError(t, rc.do(t, http.MethodGet, "/v2/models/mlp/ready", nil, nil), http.StatusNotFound, "mlp")
	wantState(t, index(t, rc, http.MethodGet, "/v2/repository/index", ""), "mlp", node.StateUnavailable, "unloaded")
	wantError(t, rc.do(t, http.MethodPost, "/v2/repository/models/mlp/unload", nil, nil), http.StatusNotFound, "mlp")

	// Load again.
	rep = rc.do(t, http.MethodPost, "/v2/repository/models/mlp/load", nil, nil)
	if rep.status != http.StatusOK {
		t.Fatalf("load: %d %s", rep.status, rep.body)
	}
	resp, x, _, err := infer("mlp")
	if err != nil {
		t.Fatalf("infer after load: %v", err)
	}
	checkMLP(t, m1, x, resp.Outputs)

	// Unknown models, and names that cannot be models.
	wantError(t, rc.do(t, http.MethodPost, "/v2/repository/models/nosuch/load", nil, nil), http.StatusNotFound, "nosuch")
	wantError(t, rc.do(t, http.MethodPost, "/v2/repository/models/..%2Fetc/load", nil, nil), http.StatusNotFound)

	// Models that do not load: 4xx with the reason, still UNAVAILABLE.
	wantError(t, rc.do(t, http.MethodPost, "/v2/repository/models/garbage/load", nil, nil), http.StatusBadRequest, "garbage", "model.onnx")
	wantError(t, rc.do(t, http.MethodPost, "/v2/repository/models/badconfig/load", nil, nil), http.StatusBadRequest, "unknown field", "max_batch_sise")
	wantError(t, rc.do(t, http.MethodPost, "/v2/repository/models/badgolden/load", nil, nil), http.StatusBadRequest, "golden")
	idx = index(t, rc, http.MethodGet, "/v2/repository/index", "")
	wantState(t, idx, "garbage", node.StateUnavailable, "model.onnx")
	wantState(t, idx, "badconfig", node.StateUnavailable, "max_batch_sise")
	wantState(t, idx, "badgolden", node.StateUnavailable, "golden")

	// Fixing the files and loading again makes them ready.
	if err := os.Remove(filepath.Join(r.dir, "badconfig", "config.json")); err != nil {
		t.Fatal(err)
	}
	if rep := rc.do(t, http.MethodPost, "/v2/repository/models/badconfig/load", nil, nil); rep.status != http.StatusOK {
		t.Errorf("load fixed badconfig: %d %s", rep.status, rep.body)
	}
	if _, _, _, err := infer("badconfig"); err != nil {
		t.Errorf("infer fixed badconfig: %v", err)
	}

	// A failed reload keeps the loaded versions serving.
	r.write("mlp/2/model.onnx", []byte("garbage"))
	wantError(t, rc.do(t, http.MethodPost, "/v2/repository/models/mlp/load", nil, nil), http.StatusBadRequest, "version 2")
	if rows := entry(index(t, rc, http.MethodGet, "/v2/repository/index", ""), "mlp"); len(rows) != 1 || rows[0].State != node.StateReady {
		t.Errorf("after a failed reload: %+v", rows)
	}
	if resp, x, _, err := infer("mlp"); err != nil {
		t.Errorf("infer after a failed reload: %v", err)
	} else {
		checkMLP(t, m1, x, resp.Outputs)
	}

	// A good version 2: both serve, the default is the highest.
	m2 := r.mlp("mlp", "2", []int{64, 128, 16}, 2)
	if rep := rc.do(t, http.MethodPost, "/v2/repository/models/mlp/load", nil, nil); rep.status != http.StatusOK {
		t.Fatalf("load version 2: %d %s", rep.status, rep.body)
	}
	if rows := entry(index(t, rc, http.MethodGet, "/v2/repository/index", ""), "mlp"); len(rows) != 2 || rows[0].Version != "1" || rows[1].Version != "2" {
		t.Errorf("index rows of mlp with two versions: %+v", rows)
	}
	var meta modelMeta
	rc.getJSON(t, "/v2/models/mlp", &meta)
	if strings.Join(meta.Versions, ",") != "1,2" {
		t.Errorf("versions %v", meta.Versions)
	}
	for _, tc := range []struct {
		version string
		m       interface {
			Forward([]float32, int) ([]float32, error)
		}
	}{{"", m2}, {"1", m1}, {"2", m2}} {
		req, x := mlpRequest(m1, rng, 2)
		resp, _, err := c.Infer(ctx, "mlp", tc.version, req, true)
		if err != nil {
			t.Fatalf("version %q: %v", tc.version, err)
		}
		want, _ := tc.m.Forward(x, 2)
		if err := sameFloats(resp.Outputs, want, []int64{2, 16}); err != nil {
			t.Errorf("version %q: %v", tc.version, err)
		}
		if wantV := map[string]string{"": "2", "1": "1", "2": "2"}[tc.version]; resp.ModelVersion != wantV {
			t.Errorf("version %q answered as %q", tc.version, resp.ModelVersion)
		}
	}
	if _, res, err := c.Infer(ctx, "mlp", "3", &oip.Request{Inputs: []models.Tensor{f32("input", []int64{1, 64}, make([]float32, 64))}}, false); err == nil || res.Status != http.StatusNotFound {
		t.Errorf("unknown version: %v", err)
	}
}

// TestGoldenAccepted: a golden example that the model reproduces lets it
// load (the sample models of `petrel model sample` rely on it).
func TestGoldenAccepted(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("mlp", 4, "")
	in := make([]float32, 64)
	for i := range in {
		in[i] = float32(i%5)/5 - 0.3
	}
	out, err := m.Forward(in, 1)
	if err != nil {
		t.Fatal(err)
	}
	inJSON, _ := json.Marshal(in)
	outJSON, _ := json.Marshal(out)
	cfg, _ := json.Marshal(map[string]any{"golden": []models.Golden{{
		Inputs:    []models.GoldenTensor{{Name: "input", DataType: models.FP32, Shape: []int64{1, 64}, Data: inJSON}},
		Outputs:   []models.GoldenTensor{{Name: "probabilities", DataType: models.FP32, Shape: []int64{1, 16}, Data: outJSON}},
		Tolerance: 1e-5,
	}}})
	r.config("mlp", string(cfg))
	tn := startNode(t, testConfig(t, r.dir))
	if rows := entry(index(t, tn.raw(t, client.HTTP1), http.MethodGet, "/v2/repository/index", ""), "mlp"); len(rows) != 1 || rows[0].State != node.StateReady {
		t.Errorf("index rows of mlp: %+v", rows)
	}
}
