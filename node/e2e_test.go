package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/models/ort/onnxtest"
	"github.com/petrel-mesh/petrel/node/client"
)

// e2eRepo is the repository of the protocol tests: the small MLP written
// by models/onnx and three published ONNX node tests whose inputs have
// several datatypes (BOOL+FP32+FP32, FP32+INT64) and, for TopK, two
// outputs of different datatypes.
type e2eRepo struct {
	*repo
	mlp                 *onnx.Model
	where, gather, topk onnxtest.Case
}

func newE2ERepo(t testing.TB) *e2eRepo {
	r := &e2eRepo{repo: newRepo(t)}
	r.mlp = r.smallMLP("mlp", 1, `{"max_batch_size": 64, "labels": {"family": "mlp"}}`)
	r.where = r.published("where", "test_where_example")
	r.gather = r.published("gather", "test_gather_0")
	r.topk = r.published("topk", "test_top_k")
	return r
}

type tensorMeta struct {
	Name     string  `json:"name"`
	DataType string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

type modelMeta struct {
	Name       string       `json:"name"`
	Versions   []string     `json:"versions"`
	Platform   string       `json:"platform"`
	Inputs     []tensorMeta `json:"inputs"`
	Outputs    []tensorMeta `json:"outputs"`
	Parameters struct {
		Digest            string            `json:"digest"`
		ExecutionProvider string            `json:"execution_provider"`
		MaxBatchSize      int               `json:"max_batch_size"`
		Labels            map[string]string `json:"labels"`
	} `json:"parameters"`
}

var wantProto = map[string]string{client.HTTP1: "HTTP/1.1", client.HTTP2: "HTTP/2.0", client.HTTP3: "HTTP/3.0"}

// TestProtocols runs the Open Inference Protocol surface over HTTP/1.1,
// HTTP/2 (ALPN on TLS, h2c on cleartext) and HTTP/3, against a TLS node
// and a cleartext node.
func TestProtocols(t *testing.T) {
	r := newE2ERepo(t)
	for _, plain := range []bool{false, true} {
		name := "tls"
		if plain {
			name = "plain"
		}
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, r.dir)
			cfg.PlainTCP = plain
			tn := startNode(t, cfg)
			if tn.TLS() == plain {
				t.Fatalf("TLS() = %v with PlainTCP %v", tn.TLS(), plain)
			}
			for _, proto := range protocols {
				t.Run(proto, func(t *testing.T) { testProtocol(t, tn, r, proto) })
			}
		})
	}
}

func testProtocol(t *testing.T, tn *testNode, r *e2eRepo, proto string) {
	c := tn.client(t, proto)
	rc := tn.raw(t, proto)
	ctx := t.Context()

	t.Run("server", func(t *testing.T) {
		var meta struct {
			Name       string   `json:"name"`
			Version    string   `json:"version"`
			Extensions []string `json:"extensions"`
		}
		rep := rc.getJSON(t, "/v2", &meta)
		if meta.Name != "petrel" || meta.Version == "" {
			t.Errorf("server metadata %+v", meta)
		}
		for _, ext := range []string{"binary_tensor_data", "model_repository", "statistics", "petrel_timeout"} {
			if !slices.Contains(meta.Extensions, ext) {
				t.Errorf("extensions %v lack %s", meta.Extensions, ext)
			}
		}
		if rep.proto != wantProto[proto] {
			t.Errorf("response protocol %s, want %s", rep.proto, wantProto[proto])
		}
		if got := rep.header.Get("Petrel-Served-By"); got != tn.cfg.ID {
			t.Errorf("Petrel-Served-By %q, want %q", got, tn.cfg.ID)
		}
		altSvc := rep.header.Get("Alt-Svc")
		if proto == client.HTTP3 {
			if altSvc != "" {
				t.Errorf("HTTP/3 response advertises Alt-Svc %q", altSvc)
			}
		} else if want := `h3=":` + tn.port() + `"; ma=86400`; altSvc != want {
			t.Errorf("Alt-Svc %q, want %q (the UDP port is the TCP port)", altSvc, want)
		}
		// The same through node/client.
		res, err := c.Get(ctx, "/v2")
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != http.StatusOK || res.ServedBy != tn.cfg.ID || res.Proto != wantProto[proto] {
			t.Errorf("client GET /v2: status %d, served by %q, proto %s", res.Status, res.ServedBy, res.Proto)
		}
	})

	t.Run("health", func(t *testing.T) {
		for _, p := range []string{"/v2/health/live", "/v2/health/ready"} {
			res, err := c.Get(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != http.StatusOK {
				t.Errorf("GET %s: %d %s", p, res.Status, res.Body)
			}
		}
	})

	t.Run("metadata", func(t *testing.T) {
		var m modelMeta
		rc.getJSON(t, "/v2/models/mlp", &m)
		file, err := os.ReadFile(filepath.Join(r.dir, "mlp", "1", "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		wantIn := []tensorMeta{{"input", "FP32", []int64{-1, 64}}}
		wantOut := []tensorMeta{{"probabilities", "FP32", []int64{-1, 16}}}
		if m.Name != "mlp" || !slices.Equal(m.Versions, []string{"1"}) || m.Platform != "onnxruntime_onnx" ||
			fmt.Sprint(m.Inputs) != fmt.Sprint(wantIn) || fmt.Sprint(m.Outputs) != fmt.Sprint(wantOut) {
			t.Errorf("metadata %+v", m)
		}
		if m.Parameters.Digest != models.DigestBytes(file) || m.Parameters.ExecutionProvider != "cpu" ||
			m.Parameters.MaxBatchSize != 64 || m.Parameters.Labels["family"] != "mlp" {
			t.Errorf("metadata parameters %+v", m.Parameters)
		}
		var v modelMeta
		rc.getJSON(t, "/v2/models/mlp/versions/1", &v)
		if v.Parameters.Digest != m.Parameters.Digest {
			t.Errorf("version metadata %+v", v)
		}
		var w modelMeta
		rc.getJSON(t, "/v2/models/where", &w)
		wantWhere := []tensorMeta{{"condition", "BOOL", []int64{2, 2}}, {"x", "FP32", []int64{2, 2}}, {"y", "FP32", []int64{2, 2}}}
		if fmt.Sprint(w.Inputs) != fmt.Sprint(wantWhere) {
			t.Errorf("where inputs %+v, want %+v", w.Inputs, wantWhere)
		}
		var k modelMeta
		rc.getJSON(t, "/v2/models/topk", &k)
		wantTopK := []tensorMeta{{"values", "FP32", []int64{3, 3}}, {"indices", "INT64", []int64{3, 3}}}
		if fmt.Sprint(k.Outputs) != fmt.Sprint(wantTopK) {
			t.Errorf("topk outputs %+v, want %+v", k.Outputs, wantTopK)
		}
	})

	t.Run("ready", func(t *testing.T) {
		for _, p := range []string{"/v2/models/mlp/ready", "/v2/models/mlp/versions/1/ready", "/v2/models/gather/ready"} {
			var v struct {
				Ready bool `json:"ready"`
			}
			rc.getJSON(t, p, &v)
			if !v.Ready {
				t.Errorf("GET %s: ready false", p)
			}
		}
		wantError(t, rc.do(t, http.MethodGet, "/v2/models/nope/ready", nil, nil), http.StatusNotFound, "nope")
		wantError(t, rc.do(t, http.MethodGet, "/v2/models/mlp/versions/9/ready", nil, nil), http.StatusNotFound, "version")
		wantError(t, rc.do(t, http.MethodGet, "/v2/models/nope", nil, nil), http.StatusNotFound, "nope")
	})

	t.Run("infer-json", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, uint64(proto[1])))
		req, x := mlpRequest(r.mlp, rng, 3)
		req.ID = "json-" + proto
		resp, res, err := c.Infer(ctx, "mlp", "", req, false)
		if err != nil {
			t.Fatal(err)
		}
		if res.HeaderLen != -1 {
			t.Errorf("JSON response has %s %d", oip.HeaderContentLength, res.HeaderLen)
		}
		if resp.ModelName != "mlp" || resp.ModelVersion != "1" || resp.ID != req.ID {
			t.Errorf("response model %q version %q id %q, want mlp 1 %q", resp.ModelName, resp.ModelVersion, resp.ID, req.ID)
		}
		if res.ServedBy != tn.cfg.ID || res.Proto != wantProto[proto] {
			t.Errorf("served by %q over %s", res.ServedBy, res.Proto)
		}
		checkMLP(t, r.mlp, x, resp.Outputs)
	})

	t.Run("infer-binary", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(2, uint64(proto[1])))
		for _, tc := range []struct{ binIn, binOut bool }{{true, true}, {true, false}, {false, true}} {
			req, x := mlpRequest(r.mlp, rng, 5)
			req.ID = fmt.Sprintf("bin-%v-%v", tc.binIn, tc.binOut)
			req.BinaryOutput = tc.binOut
			body, hl := encode(t, req, tc.binIn)
			if tc.binIn && hl < 0 {
				t.Fatal("binary request encoded without a header length")
			}
			rep := rc.do(t, http.MethodPost, "/v2/models/mlp/versions/1/infer", body, inferHeaders(hl))
			resp := decodeReply(t, rep)
			hasHL := rep.header.Get(oip.HeaderContentLength) != ""
			if hasHL != tc.binOut {
				t.Errorf("binary in %v out %v: response %s present %v", tc.binIn, tc.binOut, oip.HeaderContentLength, hasHL)
			}
			wantCT := oip.ContentTypeJSON
			if tc.binOut {
				wantCT = oip.ContentTypeBinary
			}
			if ct := rep.header.Get("Content-Type"); ct != wantCT {
				t.Errorf("Content-Type %q, want %q", ct, wantCT)
			}
			if resp.ID != req.ID {
				t.Errorf("id %q, want %q", resp.ID, req.ID)
			}
			checkMLP(t, r.mlp, x, resp.Outputs)
		}
	})

	t.Run("published", func(t *testing.T) {
		for _, tc := range []struct {
			model string
			c     onnxtest.Case
		}{{"where", r.where}, {"gather", r.gather}, {"topk", r.topk}} {
			for _, bin := range []bool{false, true} {
				req := &oip.Request{ID: tc.model, Inputs: tc.c.Inputs, BinaryOutput: bin}
				resp, _, err := c.Infer(ctx, tc.model, "", req, bin)
				if err != nil {
					t.Fatalf("%s (binary %v): %v", tc.model, bin, err)
				}
				checkCase(t, tc.c, resp.Outputs)
			}
		}
	})

	t.Run("outputs", func(t *testing.T) {
		// One of two outputs.
		req := &oip.Request{Inputs: r.topk.Inputs, Outputs: []oip.RequestedOutput{{Name: "indices"}}}
		resp, _, err := c.Infer(ctx, "topk", "", req, false)
		if err != nil {
			t.Fatal(err)
		}
		checkCase(t, r.topk, resp.Outputs, "indices")

		// Both, in the order asked, each binary or not as asked: the
		// output's own binary_data wins over binary_data_output.
		req = &oip.Request{Inputs: r.topk.Inputs, BinaryOutput: true, Outputs: []oip.RequestedOutput{
			{Name: "indices", Binary: true}, {Name: "values", Binary: false},
		}}
		body, hl := encode(t, req, true)
		rep := rc.do(t, http.MethodPost, "/v2/models/topk/infer", body, inferHeaders(hl))
		resp = decodeReply(t, rep)
		checkCase(t, r.topk, resp.Outputs, "indices", "values")
		hdrLen, _ := strconv.Atoi(rep.header.Get(oip.HeaderContentLength))
		var head struct {
			Outputs []struct {
				Name       string          `json:"name"`
				Data       json.RawMessage `json:"data"`
				Parameters map[string]any  `json:"parameters"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(rep.body[:hdrLen], &head); err != nil {
			t.Fatalf("response header: %v", err)
		}
		for _, o := range head.Outputs {
			_, isBin := o.Parameters["binary_data_size"]
			if wantBin := o.Name == "indices"; isBin != wantBin || (o.Data == nil) != wantBin {
				t.Errorf("output %s: binary %v, want %v", o.Name, isBin, wantBin)
			}
		}
	})

	t.Run("parameters", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 3))
		req, x := mlpRequest(r.mlp, rng, 1)
		req.Parameters = map[string]any{"priority": int64(2), "tag": "e2e", "flags": map[string]any{"trace": true}}
		req.Timeout = requestTimeout // the "timeout" parameter, in microseconds
		resp, _, err := c.Infer(ctx, "mlp", "", req, false)
		if err != nil {
			t.Fatal(err)
		}
		checkMLP(t, r.mlp, x, resp.Outputs)
	})
}

// TestDynamicBatching sends many concurrent one-to-three-row requests to a
// model with max_batch_size 64 over all three protocols: the runtime must
// execute fewer times than there were requests, and every caller must get
// exactly its own rows.
func TestDynamicBatching(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("mlp", 7, `{"max_batch_size": 64, "max_queue_delay_microseconds": 5000}`)
	tn := startNode(t, testConfig(t, r.dir))
	clients := map[string]*client.Client{}
	for _, p := range protocols {
		clients[p] = tn.client(t, p)
	}
	const workers, perWorker = 48, 4
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		rows     int
		failures []string
	)
	for w := range workers {
		wg.Go(func() {
			c := clients[protocols[w%len(protocols)]]
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for i := range perWorker {
				n := 1 + (w+i)%3
				req, x := mlpRequest(m, rng, n)
				req.ID = fmt.Sprintf("w%d-%d", w, i)
				resp, _, err := c.Infer(t.Context(), "mlp", "", req, w%2 == 0)
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %v", req.ID, err))
					mu.Unlock()
					continue
				}
				if resp.ID != req.ID {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: response id %q", req.ID, resp.ID))
					mu.Unlock()
				}
				// checkMLP calls t.Fatal, which must run on the test
				// goroutine; compare here and report below.
				want, _ := m.Forward(x, n)
				if err := sameFloats(resp.Outputs, want, []int64{int64(n), 16}); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %v", req.ID, err))
					mu.Unlock()
				}
				mu.Lock()
				rows += n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if t.Failed() {
		return
	}

	var stats statsReply
	tn.raw(t, client.HTTP1).getJSON(t, "/v2/models/mlp/stats", &stats)
	if len(stats.ModelStats) != 1 {
		t.Fatalf("stats %+v", stats)
	}
	s := stats.ModelStats[0]
	const requests = workers * perWorker
	t.Logf("%d requests, %d rows, %d executions", requests, s.InferenceCount, s.ExecutionCount)
	if s.InferenceCount != int64(rows) {
		t.Errorf("inference_count %d, want %d rows", s.InferenceCount, rows)
	}
	if s.ExecutionCount >= requests {
		t.Errorf("execution_count %d for %d requests: no request shared an execution", s.ExecutionCount, requests)
	}
	metrics := scrape(t, tn.raw(t, client.HTTP1))
	lbl := map[string]string{"model": "mlp", "version": "1"}
	if v, _ := metricValue(metrics, "petrel_inference_batch_size_sum", lbl); int(v) != rows {
		t.Errorf("batch size histogram sum %v, want %d rows", v, rows)
	}
	if v, _ := metricValue(metrics, "petrel_inference_batch_size_count", lbl); int64(v) != s.ExecutionCount {
		t.Errorf("batch size histogram count %v, want %d executions", v, s.ExecutionCount)
	}
	if v, _ := metricValue(metrics, "petrel_inference_batch_size_bucket", map[string]string{"model": "mlp", "le": "4"}); int64(v) == s.ExecutionCount {
		t.Errorf("no execution carried more than 4 rows (%v of %d)", v, s.ExecutionCount)
	}
}

// sameFloats compares one FP32 output with want.
func sameFloats(outs []models.Tensor, want []float32, shape []int64) error {
	if len(outs) != 1 {
		return fmt.Errorf("%d outputs", len(outs))
	}
	got := outs[0]
	if got.DataType != models.FP32 || !slices.Equal(got.Shape, shape) {
		return fmt.Errorf("output %s %v, want FP32 %v", got.DataType, got.Shape, shape)
	}
	g := onnxtest.Values[float32](got)
	if len(g) != len(want) {
		return fmt.Errorf("%d values, want %d", len(g), len(want))
	}
	for i := range g {
		if d := g[i] - want[i]; d > 1e-5 || d < -1e-5 {
			return fmt.Errorf("element %d = %v, Forward says %v", i, g[i], want[i])
		}
	}
	return nil
}

type statDuration struct {
	Count int64 `json:"count"`
	Ns    int64 `json:"ns"`
}

type modelStats struct {
	Name           string                  `json:"name"`
	Version        string                  `json:"version"`
	LastInference  int64                   `json:"last_inference"`
	InferenceCount int64                   `json:"inference_count"`
	ExecutionCount int64                   `json:"execution_count"`
	InferenceStats map[string]statDuration `json:"inference_stats"`
	QueueLength    *int                    `json:"queue_length"`
	InFlight       *int                    `json:"in_flight"`
	Provider       string                  `json:"execution_provider"`
}

type statsReply struct {
	ModelStats []modelStats `json:"model_stats"`
}

// TestStatsAndMetrics checks the statistics endpoint's shape and counts
// and the Prometheus series after a known sequence of requests.
func TestStatsAndMetrics(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("mlp", 3, `{"max_batch_size": 64}`)
	r.published("topk", "test_top_k")
	mc := r.smallMLP("cached", 3, `{"response_cache": true}`)
	tn := startNode(t, testConfig(t, r.dir))
	c := tn.client(t, client.HTTP2)
	rc := tn.raw(t, client.HTTP2)
	ctx := t.Context()

	rng := rand.New(rand.NewPCG(5, 5))
	for range 3 {
		req, x := mlpRequest(m, rng, 2)
		resp, _, err := c.Infer(ctx, "mlp", "", req, false)
		if err != nil {
			t.Fatal(err)
		}
		checkMLP(t, m, x, resp.Outputs)
	}
	bad := &oip.Request{Inputs: []models.Tensor{f32("nope", []int64{1, 64}, make([]float32, 64))}}
	if _, res, err := c.Infer(ctx, "mlp", "", bad, false); err == nil || res.Status != http.StatusBadRequest {
		t.Fatalf("unknown input: %v", err)
	}
	creq, _ := mlpRequest(mc, rng, 1)
	for range 2 {
		if _, _, err := c.Infer(ctx, "cached", "", creq, false); err != nil {
			t.Fatal(err)
		}
	}

	var all statsReply
	rc.getJSON(t, "/v2/models/stats", &all)
	var names []string
	for _, s := range all.ModelStats {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"cached", "mlp", "topk"}) {
		t.Errorf("/v2/models/stats lists %v", names)
	}

	for _, p := range []string{"/v2/models/mlp/stats", "/v2/models/mlp/versions/1/stats"} {
		var one statsReply
		rc.getJSON(t, p, &one)
		if len(one.ModelStats) != 1 {
			t.Fatalf("GET %s: %d rows", p, len(one.ModelStats))
		}
		s := one.ModelStats[0]
		if s.Name != "mlp" || s.Version != "1" || s.InferenceCount != 6 || s.ExecutionCount != 3 || s.LastInference == 0 ||
			s.QueueLength == nil || *s.QueueLength != 0 || s.InFlight == nil || *s.InFlight != 0 || s.Provider != "cpu" {
			t.Errorf("GET %s: %+v", p, s)
		}
		want := map[string]int64{"success": 3, "fail": 1, "queue": 3, "compute_infer": 3, "cache_hit": 0, "cache_miss": 0}
		for k, n := range want {
			d, ok := s.InferenceStats[k]
			if !ok || d.Count != n {
				t.Errorf("GET %s: inference_stats.%s = %+v, want count %d", p, k, d, n)
			}
			if n > 0 && k != "cache_miss" && d.Ns <= 0 {
				t.Errorf("GET %s: inference_stats.%s.ns = %d", p, k, d.Ns)
			}
		}
	}
	var cached statsReply
	rc.getJSON(t, "/v2/models/cached/stats", &cached)
	if s := cached.ModelStats[0]; s.InferenceStats["cache_hit"].Count != 1 || s.InferenceStats["cache_miss"].Count != 1 || s.ExecutionCount != 1 {
		t.Errorf("cached model stats %+v", s)
	}
	wantError(t, rc.do(t, http.MethodGet, "/v2/models/nope/stats", nil, nil), http.StatusNotFound, "nope")
	wantError(t, rc.do(t, http.MethodGet, "/v2/models/mlp/versions/9/stats", nil, nil), http.StatusNotFound, "version")

	text := scrape(t, rc)
	mlp := map[string]string{"model": "mlp", "version": "1"}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"petrel_inference_requests_total", map[string]string{"model": "mlp", "outcome": "success"}, 3},
		{"petrel_inference_requests_total", map[string]string{"model": "mlp", "outcome": "failure"}, 1},
		{"petrel_inference_request_duration_seconds_count", mlp, 4},
		{"petrel_inference_queue_duration_seconds_count", mlp, 3},
		{"petrel_inference_compute_duration_seconds_count", mlp, 3},
		{"petrel_inference_batch_size_count", mlp, 3},
		{"petrel_inference_batch_size_sum", mlp, 6},
		{"petrel_response_cache_hits_total", map[string]string{"model": "cached"}, 1},
		{"petrel_response_cache_misses_total", map[string]string{"model": "cached"}, 1},
		{"petrel_models_loaded", nil, 3},
		{"petrel_model_execution_provider", map[string]string{"model": "mlp", "provider": "cpu"}, 1},
	} {
		got, ok := metricValue(text, tc.name, tc.labels)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	for _, h := range []string{"petrel_inference_request_duration_seconds_bucket", "petrel_inference_queue_duration_seconds_bucket",
		"petrel_inference_compute_duration_seconds_bucket", "petrel_inference_batch_size_bucket"} {
		if _, ok := metricValue(text, h, map[string]string{"le": "+Inf"}); !ok {
			t.Errorf("no histogram %s", h)
		}
	}
	var size int64
	for _, p := range []string{"mlp/1/model.onnx", "topk/1/model.onnx", "cached/1/model.onnx"} {
		st, err := os.Stat(filepath.Join(r.dir, p))
		if err != nil {
			t.Fatal(err)
		}
		size += st.Size()
	}
	if got, _ := metricValue(text, "petrel_models_loaded_bytes", nil); int64(got) != size {
		t.Errorf("petrel_models_loaded_bytes %v, want %d", got, size)
	}
}

// TestResponseCache: a model with response_cache answers a repeated
// identical request from the cache (Petrel-Cache: hit, same outputs, the
// new request's id), whatever the encoding; different inputs, another
// output selection and a model without the cache miss.
func TestResponseCache(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("cached", 11, `{"response_cache": true}`)
	r.smallMLP("uncached", 11, "")
	tn := startNode(t, testConfig(t, r.dir))
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			rc := tn.raw(t, proto)
			rng := rand.New(rand.NewPCG(uint64(proto[1]), 17))
			req, x := mlpRequest(m, rng, 2)
			send := func(model string, req *oip.Request, bin bool) (*oip.Response, reply) {
				body, hl := encode(t, req, bin)
				rep := rc.do(t, http.MethodPost, "/v2/models/"+model+"/infer", body, inferHeaders(hl))
				return decodeReply(t, rep), rep
			}
			req.ID = "first"
			first, rep := send("cached", req, false)
			if h := rep.header.Get("Petrel-Cache"); h != "" {
				t.Errorf("first request: Petrel-Cache %q", h)
			}
			checkMLP(t, m, x, first.Outputs)
			req.ID = "second"
			second, rep := send("cached", req, true) // same tensors, binary encoding
			if h := rep.header.Get("Petrel-Cache"); h != "hit" {
				t.Errorf("repeated request: Petrel-Cache %q, want hit", h)
			}
			if second.ID != "second" {
				t.Errorf("cached response id %q, want second", second.ID)
			}
			if !bytes.Equal(first.Outputs[0].Data, second.Outputs[0].Data) || !slices.Equal(first.Outputs[0].Shape, second.Outputs[0].Shape) {
				t.Error("cached outputs differ from the first response")
			}
			checkMLP(t, m, x, second.Outputs)

			other, x2 := mlpRequest(m, rng, 2)
			resp, rep := send("cached", other, false)
			if h := rep.header.Get("Petrel-Cache"); h != "" {
				t.Errorf("different inputs: Petrel-Cache %q", h)
			}
			checkMLP(t, m, x2, resp.Outputs)

			req.Outputs = []oip.RequestedOutput{{Name: "probabilities"}}
			if _, rep := send("cached", req, false); rep.header.Get("Petrel-Cache") != "" {
				t.Error("another output selection hit the entry of all outputs")
			}
			req.Outputs = nil
			for range 2 {
				if _, rep := send("uncached", req, false); rep.header.Get("Petrel-Cache") != "" {
					t.Error("a model without response_cache answered from the cache")
				}
			}
		})
	}
}

// TestStartTwice: a node starts once.
func TestStartTwice(t *testing.T) {
	r := newRepo(t)
	r.smallMLP("mlp", 1, "")
	tn := startNode(t, testConfig(t, r.dir))
	if err := tn.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
}

// TestWithoutHTTP3: a node with HTTP/3 off advertises no Alt-Svc.
func TestWithoutHTTP3(t *testing.T) {
	r := newRepo(t)
	r.smallMLP("mlp", 1, "")
	cfg := testConfig(t, r.dir)
	cfg.HTTP3 = false
	tn := startNode(t, cfg)
	for _, p := range []string{client.HTTP1, client.HTTP2} {
		rep := tn.raw(t, p).getJSON(t, "/v2", nil)
		if h := rep.header.Get("Alt-Svc"); h != "" {
			t.Errorf("%s: Alt-Svc %q with HTTP/3 off", p, h)
		}
	}
}

// twoHeads is a model of two inputs and two outputs of different
// datatypes, all with a dynamic batch dimension: negx = -x (FP32 [b,4])
// and twice = n+n (INT64 [b,2]).
func twoHeads() []byte {
	batch := []string{"batch", ""}
	return onnxtest.Model(onnxtest.Graph{
		Name: "twoheads",
		Nodes: []onnxtest.Node{
			{Op: "Neg", Inputs: []string{"x"}, Outputs: []string{"negx"}},
			{Op: "Add", Inputs: []string{"n", "n"}, Outputs: []string{"twice"}},
		},
		Inputs: []onnxtest.Value{
			{Name: "x", Type: models.FP32, Shape: []int64{-1, 4}, Params: batch},
			{Name: "n", Type: models.Int64, Shape: []int64{-1, 2}, Params: batch},
		},
		Outputs: []onnxtest.Value{
			{Name: "negx", Type: models.FP32, Shape: []int64{-1, 4}, Params: batch},
			{Name: "twice", Type: models.Int64, Shape: []int64{-1, 2}, Params: batch},
		},
	}, 17)
}

// TestDynamicBatchingMixed batches requests of a two-input, two-output
// model (FP32 and INT64) that ask for different outputs, in different
// orders and encodings: each caller gets exactly the outputs it asked for,
// computed from its own rows.
func TestDynamicBatchingMixed(t *testing.T) {
	r := newRepo(t)
	r.write("twoheads/1/model.onnx", twoHeads())
	r.config("twoheads", `{"max_batch_size": 32, "max_queue_delay_microseconds": 5000}`)
	tn := startNode(t, testConfig(t, r.dir))
	clients := map[string]*client.Client{}
	for _, p := range protocols {
		clients[p] = tn.client(t, p)
	}
	selections := [][]string{nil, {"negx"}, {"twice"}, {"twice", "negx"}}
	const workers, perWorker = 24, 4
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
	)
	fail := func(format string, a ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, a...))
		mu.Unlock()
	}
	for w := range workers {
		wg.Go(func() {
			c := clients[protocols[w%len(protocols)]]
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range perWorker {
				rows := 1 + rng.IntN(3)
				x := randomRows(rng, rows, 4)
				n := make([]int64, rows*2)
				for k := range n {
					n[k] = rng.Int64N(1<<40) - 1<<39
				}
				sel := selections[(w+i)%len(selections)]
				req := &oip.Request{
					ID: fmt.Sprintf("w%d-%d", w, i),
					Inputs: []models.Tensor{
						onnxtest.Tensor("n", models.Int64, []int64{int64(rows), 2}, n...), // not in signature order
						f32("x", []int64{int64(rows), 4}, x),
					},
					BinaryOutput: rng.IntN(2) == 0,
				}
				for _, name := range sel {
					req.Outputs = append(req.Outputs, oip.RequestedOutput{Name: name, Binary: rng.IntN(2) == 0})
				}
				resp, _, err := c.Infer(t.Context(), "twoheads", "", req, rng.IntN(2) == 0)
				if err != nil {
					fail("%s: %v", req.ID, err)
					continue
				}
				want := sel
				if want == nil {
					want = []string{"negx", "twice"}
				}
				if len(resp.Outputs) != len(want) {
					fail("%s: %d outputs, want %v", req.ID, len(resp.Outputs), want)
					continue
				}
				for k, name := range want {
					o := resp.Outputs[k]
					if o.Name != name {
						fail("%s: output %d is %q, want %q", req.ID, k, o.Name, name)
						continue
					}
					switch name {
					case "negx":
						got := onnxtest.Values[float32](o)
						if o.DataType != models.FP32 || !slices.Equal(o.Shape, []int64{int64(rows), 4}) || len(got) != len(x) {
							fail("%s: negx %s %v", req.ID, o.DataType, o.Shape)
							continue
						}
						for e := range x {
							if got[e] != -x[e] {
								fail("%s: negx[%d] = %v, want %v", req.ID, e, got[e], -x[e])
								break
							}
						}
					case "twice":
						got := onnxtest.Values[int64](o)
						if o.DataType != models.Int64 || !slices.Equal(o.Shape, []int64{int64(rows), 2}) || len(got) != len(n) {
							fail("%s: twice %s %v", req.ID, o.DataType, o.Shape)
							continue
						}
						for e := range n {
							if got[e] != 2*n[e] {
								fail("%s: twice[%d] = %v, want %v", req.ID, e, got[e], 2*n[e])
								break
							}
						}
					}
				}
			}
		})
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	var stats statsReply
	tn.raw(t, client.HTTP1).getJSON(t, "/v2/models/twoheads/stats", &stats)
	s := stats.ModelStats[0]
	t.Logf("%d requests, %d rows, %d executions", workers*perWorker, s.InferenceCount, s.ExecutionCount)
	if s.ExecutionCount >= workers*perWorker {
		t.Errorf("execution_count %d for %d requests: no request shared an execution", s.ExecutionCount, workers*perWorker)
	}
}
