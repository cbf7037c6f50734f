package node_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/models/wasm/wasmtest"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
)

// fashion are the class names the topk example uses by default.
var fashion = []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

// transformRepo writes a 4 -> 16 -> 10 softmax MLP ("input" ->
// "probabilities", matching the features and topk examples) as
// <name>/1 with the given transforms, and returns it.
func (r *repo) transformModel(name string, seed uint64, pre, post []byte) *onnx.Model {
	r.t.Helper()
	m := r.mlp(name, "1", []int{4, 16, 10}, seed)
	if pre != nil {
		r.write(filepath.Join(name, "1", "pre.wasm"), pre)
	}
	if post != nil {
		r.write(filepath.Join(name, "1", "post.wasm"), post)
	}
	return m
}

type prediction struct {
	Label string  `json:"label"`
	Score float64 `json:"score"`
}

func TestPredictEndToEnd(t *testing.T) {
	features := wasmtest.BuildExample(t, "features")
	topk := wasmtest.BuildExample(t, "topk")
	r := newRepo(t)
	m := r.transformModel("iris", 7, features, topk)
	r.transformModel("preonly", 8, features, nil)
	r.smallMLP("plain", 9, "")
	tn := startNode(t, testConfig(t, r.dir))
	c := tn.raw(t, client.HTTP2)

	x := []float32{5.1, 3.5, 1.4, 0.2}
	want, err := m.Forward(x, 1)
	if err != nil {
		t.Fatal(err)
	}
	best := 0
	for i, p := range want {
		if p > want[best] {
			best = i
		}
	}
	body, _ := json.Marshal(map[string]any{"features": map[string]float32{
		"sepal_length": x[0], "sepal_width": x[1], "petal_length": x[2], "petal_width": x[3]}})
	for _, path := range []string{"/v2/models/iris/predict", "/v2/models/iris/versions/1/predict"} {
		rep := c.do(t, http.MethodPost, path, body, map[string]string{"Content-Type": "application/json", "Accept": "application/json"})
		if rep.status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", path, rep.status, rep.body)
		}
		if ct := rep.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: content type %q, want application/json", path, ct)
		}
		var got struct {
			Predictions []prediction `json:"predictions"`
		}
		if err := json.Unmarshal(rep.body, &got); err != nil {
			t.Fatalf("%s: %v: %s", path, err, rep.body)
		}
		if len(got.Predictions) != 3 {
			t.Fatalf("%s: %d predictions, want 3: %s", path, len(got.Predictions), rep.body)
		}
		if got.Predictions[0].Label != fashion[best] || abs(got.Predictions[0].Score-float64(want[best])) > 1e-5 {
			t.Errorf("%s: top prediction %+v, want %s %.6f", path, got.Predictions[0], fashion[best], want[best])
		}
	}

	// Without post: the outputs as OIP JSON.
	rep := c.do(t, http.MethodPost, "/v2/models/preonly/predict", body, map[string]string{"Content-Type": "application/json"})
	if rep.status != http.StatusOK {
		t.Fatalf("preonly: status %d: %s", rep.status, rep.body)
	}
	var resp struct {
		Outputs []struct {
			Name string    `json:"name"`
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(rep.body, &resp); err != nil || len(resp.Outputs) != 1 || resp.Outputs[0].Name != "probabilities" || len(resp.Outputs[0].Data) != 10 {
		t.Fatalf("preonly: want OIP JSON with output probabilities, got %s (%v)", rep.body, err)
	}

	for _, tc := range []struct {
		name, path, ct, accept string
		body                   string
		status                 int
		words                  []string
	}{
		{"unknown feature", "/v2/models/iris/predict", "application/json", "", `{"features":{"colour":1}}`, 400, []string{"pre transform refused"}},
		{"not json", "/v2/models/iris/predict", "text/plain", "", `hello`, 400, []string{"not JSON"}},
		{"wrong width", "/v2/models/iris/predict", "application/json", "", `{"instances":[[1,2,3]]}`, 400, nil},
		{"post refuses accept", "/v2/models/iris/predict", "application/json", "image/png", string(body), 400, []string{"post transform refused"}},
		{"no transforms", "/v2/models/plain/predict", "application/json", "", string(body), 404, []string{"no pre-processing transform", "/infer"}},
		{"unknown model", "/v2/models/nope/predict", "application/json", "", string(body), 404, nil},
		{"unknown version", "/v2/models/iris/versions/9/predict", "application/json", "", string(body), 404, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{"Content-Type": tc.ct}
			if tc.accept != "" {
				hdr["Accept"] = tc.accept
			}
			rep := c.do(t, http.MethodPost, tc.path, []byte(tc.body), hdr)
			wantError(t, rep, tc.status, tc.words...)
		})
	}

	text := scrape(t, c)
	if v, ok := metricValue(text, "petrel_transform_errors_total", map[string]string{"model": "iris", "stage": "pre", "kind": "client"}); !ok || v < 2 {
		t.Errorf("petrel_transform_errors_total{iris,pre,client} = %v (present %v), want >= 2", v, ok)
	}
	if _, ok := metricValue(text, "petrel_transform_duration_seconds_count", map[string]string{"model": "iris", "stage": "post"}); !ok {
		t.Error("petrel_transform_duration_seconds{iris,post} is missing")
	}
	// The version's metadata carries the transforms' digests.
	var meta map[string]any
	c.getJSON(t, "/v2/models/iris", &meta)
}

// TestPredictHostileGuests serves one model per hostile guest next to a
// healthy one: each hostile request fails alone with its status while
// /infer and /predict of the healthy model keep succeeding.
func TestPredictHostileGuests(t *testing.T) {
	features := wasmtest.BuildExample(t, "features")
	topk := wasmtest.BuildExample(t, "topk")
	r := newRepo(t)
	r.transformModel("good", 1, features, topk)
	for _, g := range []string{"loop", "membomb", "trap", "hugeout"} {
		r.transformModel(g, 2, wasmtest.BuildExample(t, g), nil)
	}
	cfg := testConfig(t, r.dir)
	// Long enough that the memory bomb runs out of memory before its
	// deadline even on a loaded machine; the loop still hits it.
	cfg.TransformTimeout = 2 * time.Second
	tn := startNode(t, cfg)
	c := tn.raw(t, client.HTTP2)

	// Under load on two cores the membomb may hit the call deadline
	// before the memory limit: either fails only its own request. A
	// sequential request below checks that it is the memory limit.
	cases := []struct {
		model, body string
		status      int
		words       []string
		kind        string
	}{
		{"loop", "x", http.StatusGatewayTimeout, []string{"pre transform", "time"}, "timeout"},
		{"membomb", "x", 0, []string{"pre transform"}, ""},
		{"trap", "panic", http.StatusInternalServerError, []string{"pre transform failed"}, "trap"},
		{"trap", "nil", http.StatusInternalServerError, []string{"pre transform failed"}, "trap"},
		{"hugeout", "lie", http.StatusInternalServerError, []string{"pre transform failed"}, ""},
	}
	goodBody := []byte(`{"features":{"sepal_length":1,"sepal_width":2,"petal_length":3,"petal_width":4}}`)
	rng := rand.New(rand.NewPCG(1, 2))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for round := 0; round < 2; round++ {
		for _, tc := range cases {
			wg.Go(func() {
				rep, err := c.try(http.MethodPost, "/v2/models/"+tc.model+"/predict", []byte(tc.body), map[string]string{"Content-Type": "text/plain"})
				if err != nil {
					errs <- fmt.Errorf("%s: %v", tc.model, err)
					return
				}
				if rep.status != tc.status && (tc.status != 0 || (rep.status != 500 && rep.status != 504)) {
					errs <- fmt.Errorf("%s %q: status %d, want %d: %s", tc.model, tc.body, rep.status, tc.status, rep.body)
					return
				}
				for _, w := range tc.words {
					if !strings.Contains(string(rep.body), w) {
						errs <- fmt.Errorf("%s %q: error %s does not mention %q", tc.model, tc.body, rep.body, w)
					}
				}
			})
		}
		for i := 0; i < 4; i++ {
			wg.Go(func() {
				rep, err := c.try(http.MethodPost, "/v2/models/good/predict", goodBody, map[string]string{"Content-Type": "application/json"})
				if err != nil || rep.status != http.StatusOK {
					errs <- fmt.Errorf("good predict during hostile requests: %v %d %s", err, rep.status, rep.body)
				}
			})
		}
		req := &oip.Request{Inputs: []models.Tensor{f32("input", []int64{1, 4}, randomRows(rng, 1, 4))}}
		b, hl := encode(t, req, false)
		wg.Go(func() {
			rep, err := c.try(http.MethodPost, "/v2/models/good/infer", b, inferHeaders(hl))
			if err != nil || rep.status != http.StatusOK {
				errs <- fmt.Errorf("good infer during hostile requests: %v %d %s", err, rep.status, rep.body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wantError(t, c.do(t, http.MethodPost, "/v2/models/membomb/predict", []byte("x"), nil), http.StatusInternalServerError, "out of memory")
	// The node is still healthy and every model still ready.
	if rep := c.do(t, http.MethodGet, "/v2/health/ready", nil, nil); rep.status != http.StatusOK {
		t.Errorf("ready: %d", rep.status)
	}
	text := scrape(t, c)
	for _, tc := range cases {
		if tc.kind == "" {
			continue
		}
		if v, ok := metricValue(text, "petrel_transform_errors_total", map[string]string{"model": tc.model, "stage": "pre", "kind": tc.kind}); !ok || v < 1 {
			t.Errorf("petrel_transform_errors_total{%s,pre,%s} = %v (present %v)", tc.model, tc.kind, v, ok)
		}
	}
	if v, ok := metricValue(text, "petrel_transform_errors_total", map[string]string{"model": "membomb", "stage": "pre", "kind": "oom"}); !ok || v < 1 {
		t.Errorf("petrel_transform_errors_total{membomb,pre,oom} = %v (present %v)", v, ok)
	}
	var idx []node.IndexEntry
	c.getJSON(t, "/v2/repository/index", &idx)
	for _, e := range idx {
		if e.State != node.StateReady {
			t.Errorf("after the hostile requests %s is %s: %s", e.Name, e.State, e.Reason)
		}
	}
}

// TestRepositoryBadTransform: a version whose transform does not compile
// leaves the model UNAVAILABLE with the reason; others load.
func TestRepositoryBadTransform(t *testing.T) {
	r := newRepo(t)
	r.transformModel("bad", 1, wasmtest.BuildExample(t, "badimport"), nil)
	r.transformModel("notwasm", 1, []byte("not wasm at all"), nil)
	r.transformModel("ok", 1, wasmtest.BuildExample(t, "features"), nil)
	r.config("granted", `{"transforms":{"grants":{"pre":["clock"]}}}`)
	r.transformModel("granted", 1, wasmtest.BuildExample(t, "features"), nil)
	r.config("badgrant", `{"transforms":{"grants":{"pre":["network"]}}}`)
	r.transformModel("badgrant", 1, wasmtest.BuildExample(t, "features"), nil)
	tn := startNode(t, testConfig(t, r.dir))
	c := tn.raw(t, client.HTTP1)
	var idx []node.IndexEntry
	c.getJSON(t, "/v2/repository/index", &idx)
	got := map[string]node.IndexEntry{}
	for _, e := range idx {
		got[e.Name] = e
	}
	for name, want := range map[string][]string{
		"bad":      {"pre transform", "invalid transform module"},
		"notwasm":  {"pre transform", "invalid transform module"},
		"badgrant": {"grant", "network"},
	} {
		e := got[name]
		if e.State != node.StateUnavailable {
			t.Errorf("%s: state %q, want UNAVAILABLE", name, e.State)
			continue
		}
		for _, w := range want {
			if !strings.Contains(e.Reason, w) {
				t.Errorf("%s: reason %q does not mention %q", name, e.Reason, w)
			}
		}
	}
	for _, name := range []string{"ok", "granted"} {
		if got[name].State != node.StateReady {
			t.Errorf("%s: state %q (%s), want READY", name, got[name].State, got[name].Reason)
		}
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
