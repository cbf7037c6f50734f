package node_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/federated"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
)

// The feedback tests serve small classifiers written with models/onnx on
// a real node with ONNX Runtime.

// noProfile keeps model loads fast: no batch profile.
const noProfile = `{"profile_batch_sizes": false}`

var jsonHdr = map[string]string{"Content-Type": "application/json"}

// classifier writes a softmax classifier of in features and classes
// outputs as <name>/<version>/model.onnx.
func (r *repo) classifier(name, version string, in, classes int, seed uint64) *onnx.Model {
	r.t.Helper()
	m := onnx.NewSoftmax(in, classes).RandomInit(seed)
	b, err := m.MarshalONNX()
	if err != nil {
		r.t.Fatal(err)
	}
	r.write(filepath.Join(name, version, "model.onnx"), b)
	return m
}

// feedbackConfig is testConfig with a feedback directory.
func feedbackConfig(t *testing.T, repoDir string) node.Config {
	cfg := testConfig(t, repoDir)
	cfg.HTTP3 = false
	cfg.Feedback.Dir = t.TempDir()
	return cfg
}

// jsonFloats formats values as a JSON array.
func jsonFloats(x []float32) string {
	parts := make([]string, len(x))
	for i, v := range x {
		parts[i] = strconv.FormatFloat(float64(v), 'g', -1, 32)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// inputsJSON is the OIP JSON "inputs" array of rows of width features.
func inputsJSON(x []float32, width int) string {
	return fmt.Sprintf(`[{"name":"input","datatype":"FP32","shape":[%d,%d],"data":%s}]`, len(x)/width, width, jsonFloats(x))
}

func example(x []float32, label int) string {
	return fmt.Sprintf(`{"inputs":%s,"label":%d}`, inputsJSON(x, len(x)), label)
}

func examples(xs [][]float32, labels []int) string {
	parts := make([]string, len(xs))
	for i := range xs {
		parts[i] = example(xs[i], labels[i])
	}
	return `{"examples":[` + strings.Join(parts, ",") + `]}`
}

// postFeedback posts a body and checks the answer is 202 with accepted n.
func postFeedback(t *testing.T, c *raw, path, body string, n int) {
	t.Helper()
	rep := c.do(t, http.MethodPost, path, []byte(body), jsonHdr)
	if rep.status != http.StatusAccepted {
		t.Fatalf("POST %s: status %d: %s", path, rep.status, rep.body)
	}
	var got struct{ Accepted int }
	if err := json.Unmarshal(rep.body, &got); err != nil || got.Accepted != n {
		t.Fatalf("POST %s: body %s, want accepted %d", path, rep.body, n)
	}
}

// inferID runs one row with a request id and returns the predicted class.
func inferID(t *testing.T, c *raw, path, id string, x []float32) int {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"inputs":%s}`, id, inputsJSON(x, len(x)))
	resp := decodeReply(t, c.do(t, http.MethodPost, path, []byte(body), jsonHdr))
	if resp.ID != id {
		t.Fatalf("response id %q, want %q", resp.ID, id)
	}
	out := resp.Outputs[0].Data
	best := 0
	for j := 1; j < len(out)/4; j++ {
		if f32at(out, j) > f32at(out, best) {
			best = j
		}
	}
	return best
}

func f32at(b []byte, i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])) }

func row(rng *rand.Rand, width int) []float32 {
	x := make([]float32, width)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

func TestFeedbackDisabled(t *testing.T) {
	r := newRepo(t)
	r.classifier("clf", "1", 4, 2, 1)
	r.config("clf", noProfile)
	cfg := testConfig(t, r.dir)
	cfg.HTTP3 = false
	tn := startNode(t, cfg)
	rep := tn.raw(t, client.HTTP1).do(t, http.MethodPost, "/v2/models/clf/feedback", []byte(example([]float32{1, 2, 3, 4}, 1)), jsonHdr)
	wantError(t, rep, http.StatusNotFound, "feedback is not enabled")
	if _, err := tn.FeedbackDataset("clf", 10); err == nil {
		t.Error("FeedbackDataset on a node without feedback: no error")
	}
	if _, _, ok := tn.LocalModel("clf"); ok {
		t.Error("LocalModel on a node without feedback: ok")
	}
}

// TestFeedbackDurableAcrossRestart: what a 202 acknowledged is there after
// the node restarts on the same directory.
func TestFeedbackDurableAcrossRestart(t *testing.T) {
	r := newRepo(t)
	r.classifier("clf", "1", 6, 3, 1)
	r.config("clf", noProfile)
	cfg := feedbackConfig(t, r.dir)
	tn := startNode(t, cfg)
	c := tn.raw(t, client.HTTP1)
	rng := rand.New(rand.NewPCG(1, 1))
	var xs [][]float32
	labels := []int{2, 0, 1, 1}
	for range labels {
		xs = append(xs, row(rng, 6))
	}
	postFeedback(t, c, "/v2/models/clf/feedback", example(xs[0], labels[0]), 1)
	postFeedback(t, c, "/v2/models/clf/versions/1/feedback", examples(xs[1:], labels[1:]), 3)
	text := scrape(t, c)
	if v, _ := metricValue(text, "petrel_feedback_examples_total", map[string]string{"model": "clf", "source": "inputs"}); v != 4 {
		t.Errorf("petrel_feedback_examples_total = %v, want 4", v)
	}
	if v, ok := metricValue(text, "petrel_feedback_log_bytes", nil); !ok || v <= 0 {
		t.Errorf("petrel_feedback_log_bytes = %v", v)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tn.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	tn2 := startNode(t, cfg)
	d, err := tn2.FeedbackDataset("clf", 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 4 || d.Dim != 6 || d.Classes != 3 {
		t.Fatalf("data set N=%d Dim=%d Classes=%d, want 4, 6, 3", d.N, d.Dim, d.Classes)
	}
	for i, x := range xs {
		if int(d.Y[i]) != labels[i] || fmt.Sprint(d.X[i*6:(i+1)*6]) != fmt.Sprint(x) {
			t.Errorf("row %d: %v label %d, want %v label %d", i, d.X[i*6:(i+1)*6], d.Y[i], x, labels[i])
		}
	}
	if err := d.Validate(); err != nil {
		t.Errorf("data set: %v", err)
	}
	newest, err := tn2.FeedbackDataset("clf", 2)
	if err != nil || newest.N != 2 || newest.Y[0] != int32(labels[2]) {
		t.Errorf("newest 2: %+v, %v", newest, err)
	}
}

// TestFeedbackLabelByID labels earlier requests by id and checks the
// prequential accuracy of the version that served them.
func TestFeedbackLabelByID(t *testing.T) {
	r := newRepo(t)
	r.classifier("clf", "1", 5, 3, 1)
	r.classifier("clf", "2", 5, 3, 2)
	r.config("clf", noProfile)
	cfg := feedbackConfig(t, r.dir)
	cfg.Feedback.KeepInputs = 8
	tn := startNode(t, cfg)
	c := tn.raw(t, client.HTTP1)
	rng := rand.New(rand.NewPCG(2, 2))

	var inputs [][]float32
	var labels []int
	for i := range 6 {
		x := row(rng, 5)
		pred := inferID(t, c, "/v2/models/clf/versions/1/infer", fmt.Sprintf("r%d", i), x)
		label := pred
		if i >= 3 { // the last three are wrong
			label = (pred + 1) % 3
		}
		inputs, labels = append(inputs, x), append(labels, label)
	}
	for i := range 4 {
		postFeedback(t, c, "/v2/models/clf/feedback", fmt.Sprintf(`{"id":"r%d","label":%d}`, i, labels[i]), 1)
	}
	postFeedback(t, c, "/v2/models/clf/feedback", fmt.Sprintf(`{"examples":[{"id":"r4","label":%d},{"id":"r5","label":%d}]}`, labels[4], labels[5]), 2)

	text := scrape(t, c)
	v1 := map[string]string{"model": "clf", "version": "1"}
	if v, ok := metricValue(text, "petrel_prequential_accuracy", v1); !ok || v != 0.5 {
		t.Errorf("petrel_prequential_accuracy{version 1} = %v (%v), want 0.5", v, ok)
	}
	if v, _ := metricValue(text, "petrel_prequential_labels_total", v1); v != 6 {
		t.Errorf("petrel_prequential_labels_total = %v, want 6", v)
	}
	if v, _ := metricValue(text, "petrel_prequential_correct_total", v1); v != 3 {
		t.Errorf("petrel_prequential_correct_total = %v, want 3", v)
	}
	if _, ok := metricValue(text, "petrel_prequential_accuracy", map[string]string{"model": "clf", "version": "2"}); ok {
		t.Error("version 2 served nothing but has a prequential accuracy")
	}
	if v, _ := metricValue(text, "petrel_feedback_examples_total", map[string]string{"model": "clf", "source": "id"}); v != 6 {
		t.Errorf("petrel_feedback_examples_total{source id} = %v, want 6", v)
	}
	d, err := tn.FeedbackDataset("clf", 0)
	if err != nil || d.N != 6 {
		t.Fatalf("data set: %+v, %v", d, err)
	}
	for i := range 6 {
		if fmt.Sprint(d.X[i*5:(i+1)*5]) != fmt.Sprint(inputs[i]) || int(d.Y[i]) != labels[i] {
			t.Errorf("row %d: %v label %d, want the request's %v label %d", i, d.X[i*5:(i+1)*5], d.Y[i], inputs[i], labels[i])
		}
	}

	// A label is taken once; unknown ids and multi-row requests are not there.
	wantError(t, c.do(t, http.MethodPost, "/v2/models/clf/feedback", []byte(`{"id":"r0","label":1}`), jsonHdr), http.StatusNotFound, "no remembered", "r0")
	wantError(t, c.do(t, http.MethodPost, "/v2/models/clf/feedback", []byte(`{"id":"nope","label":1}`), jsonHdr), http.StatusNotFound, "no remembered")
	two := append(row(rng, 5), row(rng, 5)...)
	decodeReply(t, c.do(t, http.MethodPost, "/v2/models/clf/infer", []byte(fmt.Sprintf(`{"id":"multi","inputs":%s}`, inputsJSON(two, 5))), jsonHdr))
	wantError(t, c.do(t, http.MethodPost, "/v2/models/clf/feedback", []byte(`{"id":"multi","label":1}`), jsonHdr), http.StatusNotFound, "one-row")

	// The label must go to the version that served the request; a refused
	// label leaves the request remembered.
	inferID(t, c, "/v2/models/clf/versions/1/infer", "x", row(rng, 5))
	wantError(t, c.do(t, http.MethodPost, "/v2/models/clf/versions/2/feedback", []byte(`{"id":"x","label":1}`), jsonHdr), http.StatusBadRequest, "served by version 1")
	wantError(t, c.do(t, http.MethodPost, "/v2/models/clf/feedback", []byte(`{"examples":[{"id":"x","label":1},{"id":"nope","label":0}]}`), jsonHdr), http.StatusNotFound, "example 1")
	postFeedback(t, c, "/v2/models/clf/feedback", `{"id":"x","label":1}`, 1)

	// KeepInputs bounds what is remembered: the oldest go first.
	for i := range 10 {
		inferID(t, c, "/v2/models/clf/infer", fmt.Sprintf("k%d", i), row(rng, 5))
	}
	wantError(t, c.do(t, http.MethodPost, "/v2/models/clf/feedback", []byte(`{"id":"k1","label":1}`), jsonHdr), http.StatusNotFound, "last 8")
	postFeedback(t, c, "/v2/models/clf/feedback", `{"id":"k2","label":1}`, 1)
	if v, _ := metricValue(scrape(t, c), "petrel_feedback_remembered_requests", map[string]string{"model": "clf"}); v != 7 {
		t.Errorf("petrel_feedback_remembered_requests = %v, want 7", v)
	}
}

// TestFeedbackPersonalData: dropped and hashed features never reach the
// log's files.
func TestFeedbackPersonalData(t *testing.T) {
	r := newRepo(t)
	r.classifier("clf", "1", 6, 2, 1)
	r.config("clf", `{"profile_batch_sizes": false, "personal": {"drop": [1], "hash": [2]}}`)
	cfg := feedbackConfig(t, r.dir)
	cfg.Feedback.Personal = map[string]node.PersonalRule{"clf": {Hash: []int{4}}}
	cfg.Feedback.HashKey = []byte("0123456789abcdef0123456789abcdef")
	tn := startNode(t, cfg)
	c := tn.raw(t, client.HTTP1)

	secrets := []float32{1234.5, 2345.25, 3456.75}
	x := []float32{4567.125, secrets[0], secrets[1], 0.5, secrets[2], -7.25}
	postFeedback(t, c, "/v2/models/clf/feedback", example(x, 1), 1)
	inferID(t, c, "/v2/models/clf/infer", "p1", x)
	postFeedback(t, c, "/v2/models/clf/feedback", `{"id":"p1","label":0}`, 1)

	d, err := tn.FeedbackDataset("clf", 0)
	if err != nil || d.N != 2 {
		t.Fatalf("data set: %+v, %v", d, err)
	}
	for i := range 2 {
		got := d.X[i*6 : (i+1)*6]
		if got[0] != x[0] || got[3] != x[3] || got[5] != x[5] {
			t.Errorf("row %d: features without a rule changed: %v", i, got)
		}
		if got[1] != 0 {
			t.Errorf("row %d: dropped feature 1 is %v, want 0", i, got[1])
		}
		for _, f := range []int{2, 4} {
			if got[f] < 0 || got[f] >= 1 || got[f] == x[f] {
				t.Errorf("row %d: hashed feature %d is %v", i, f, got[f])
			}
		}
		if got[2] != d.X[2] || got[4] != d.X[4] {
			t.Errorf("the same value hashed differently: %v, %v", got, d.X[:6])
		}
	}
	if d.X[2] == d.X[4] {
		t.Errorf("features 2 and 4 hash to the same value %v", d.X[2])
	}

	// The files: the values of features without a rule are there, the
	// personal ones are not.
	files, err := filepath.Glob(filepath.Join(cfg.Feedback.Dir, "*.seg"))
	if err != nil || len(files) == 0 {
		t.Fatalf("segment files: %v %v", files, err)
	}
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	le := func(v float32) []byte { return binary.LittleEndian.AppendUint32(nil, math.Float32bits(v)) }
	if bytes.Count(all, le(x[0])) != 2 {
		t.Fatalf("feature 0's value is not in the log twice: the scan would not find the others either")
	}
	for _, s := range secrets {
		if bytes.Contains(all, le(s)) {
			t.Errorf("personal value %v is in the log files", s)
		}
	}
}

// TestFeedbackHashKeyGenerated: without a configured key, one is made and
// kept private in the feedback directory.
func TestFeedbackHashKeyGenerated(t *testing.T) {
	r := newRepo(t)
	r.classifier("clf", "1", 3, 2, 1)
	r.config("clf", `{"profile_batch_sizes": false, "personal": {"hash": [0]}}`)
	cfg := feedbackConfig(t, r.dir)
	tn := startNode(t, cfg)
	c := tn.raw(t, client.HTTP1)
	postFeedback(t, c, "/v2/models/clf/feedback", example([]float32{42, 1, 2}, 1), 1)
	st, err := os.Stat(filepath.Join(cfg.Feedback.Dir, "hash.key"))
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Fatalf("hash.key: %v %v", st, err)
	}
	d, err := tn.FeedbackDataset("clf", 0)
	if err != nil || d.N != 1 || d.X[0] == 42 || d.X[0] < 0 || d.X[0] >= 1 {
		t.Fatalf("data set %+v, %v", d, err)
	}
	first := d.X[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tn.Shutdown(ctx)
	// The same key after a restart: the same value hashes alike.
	tn2 := startNode(t, cfg)
	postFeedback(t, tn2.raw(t, client.HTTP1), "/v2/models/clf/feedback", example([]float32{42, 1, 2}, 0), 1)
	d, err = tn2.FeedbackDataset("clf", 0)
	if err != nil || d.N != 2 || d.X[3] != first {
		t.Fatalf("after restart: %+v, %v; want feature 0 hashed to %v again", d, err, first)
	}
}

func TestFeedbackBadRequests(t *testing.T) {
	r := newRepo(t)
	r.classifier("clf", "1", 4, 3, 1)
	r.config("clf", noProfile)
	r.published("gather", "test_gather_0")
	cfg := feedbackConfig(t, r.dir)
	cfg.Feedback.MaxBodyBytes = 64 << 10
	tn := startNode(t, cfg)
	c := tn.raw(t, client.HTTP1)
	good := example([]float32{1, 2, 3, 4}, 1)
	in := func(shape, dt, data string) string {
		return fmt.Sprintf(`{"inputs":[{"name":"input","datatype":%q,"shape":%s,"data":%s}],"label":1}`, dt, shape, data)
	}
	cases := []struct {
		name, path, body string
		status           int
		words            []string
	}{
		{"unknown model", "/v2/models/nope/feedback", good, 404, []string{"not found"}},
		{"unknown version", "/v2/models/clf/versions/9/feedback", good, 404, []string{"version"}},
		{"not a classifier", "/v2/models/gather/feedback", good, 400, []string{"does not take feedback", "2 inputs"}},
		{"not JSON", "", `{"inputs": [`, 400, []string{"feedback body"}},
		{"trailing data", "", good + "{}", 400, []string{"after the JSON"}},
		{"unknown field", "", `{"inputs":[],"label":1,"weight":2}`, 400, []string{"unknown field"}},
		{"no label", "", `{"id":"x"}`, 400, []string{"no \"label\""}},
		{"inputs and id", "", `{"id":"x","inputs":[],"label":1}`, 400, []string{"either"}},
		{"no example", "", `{}`, 400, []string{"no example"}},
		{"empty examples", "", `{"examples":[]}`, 400, []string{"empty"}},
		{"examples and label", "", `{"examples":[` + good + `],"label":1}`, 400, []string{"not both"}},
		{"empty id", "", `{"id":"","label":1}`, 400, []string{"empty"}},
		{"label too large", "", example([]float32{1, 2, 3, 4}, 3), 400, []string{"label 3", "0..2", "3 classes"}},
		{"negative label", "", example([]float32{1, 2, 3, 4}, -1), 400, []string{"label -1"}},
		{"fractional label", "", `{"id":"x","label":1.5}`, 400, []string{"label"}},
		{"wrong width", "", in("[1,3]", "FP32", "[1,2,3]"), 400, []string{"shape"}},
		{"wrong datatype", "", in("[1,4]", "INT64", "[1,2,3,4]"), 400, []string{"datatype"}},
		{"two rows", "", in("[2,4]", "FP32", "[1,2,3,4,5,6,7,8]"), 400, []string{"2 rows"}},
		{"data does not fit shape", "", in("[1,4]", "FP32", "[1,2,3]"), 400, []string{"input"}},
		{"wrong input name", "", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}],"label":1}`, 400, []string{"unknown input"}},
		{"unknown id", "", `{"id":"never-sent","label":1}`, 404, []string{"no remembered", "never-sent"}},
		{"one bad example in a batch", "", `{"examples":[` + good + `,` + example([]float32{1, 2, 3, 4}, 7) + `]}`, 400, []string{"example 1", "label 7"}},
		{"huge body", "", `{"examples":[` + strings.Repeat(good+",", 2000) + good + `]}`, 413, []string{"exceeds"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = "/v2/models/clf/feedback"
			}
			wantError(t, c.do(t, http.MethodPost, path, []byte(tc.body), jsonHdr), tc.status, tc.words...)
		})
	}
	// A body without Content-Length over the bound is cut off too.
	rep, err := c.send(http.MethodPost, "/v2/models/clf/feedback", io.MultiReader(strings.NewReader(strings.Repeat(" ", 70<<10)+good)), jsonHdr)
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, rep, http.StatusRequestEntityTooLarge, "exceeds")

	d, err := tn.FeedbackDataset("clf", 0)
	if err != nil || d.N != 0 {
		t.Fatalf("refused requests wrote %d examples (%v)", d.N, err)
	}
	if v, _ := metricValue(scrape(t, c), "petrel_feedback_rejected_total", map[string]string{"code": "400"}); v < 15 {
		t.Errorf("petrel_feedback_rejected_total{code 400} = %v", v)
	}
	postFeedback(t, c, "/v2/models/clf/feedback", good, 1) // the node still takes good feedback
}

// TestOnlineLearning: the local copy learns a linearly separable task
// from feedback; the served model does not change.
func TestOnlineLearning(t *testing.T) {
	const dim = 8
	r := newRepo(t)
	served := r.classifier("clf", "1", dim, 2, 11)
	r.config("clf", noProfile)
	cfg := feedbackConfig(t, r.dir)
	cfg.Feedback.Online = node.OnlineConfig{LR: 0.5, BatchSize: 32}
	tn := startNode(t, cfg)
	c := tn.raw(t, client.HTTP1)

	local, base, ok := tn.LocalModel("clf")
	if !ok || base != "1" {
		t.Fatalf("LocalModel before any feedback: ok %v base %q", ok, base)
	}
	if fmt.Sprint(local.Layers) != fmt.Sprint(served.Layers) {
		t.Fatal("the local copy does not start from the served weights")
	}

	rng := rand.New(rand.NewPCG(5, 5))
	flip := false
	gen := func(n int) *federated.Dataset {
		d := &federated.Dataset{N: n, Dim: dim, Classes: 2}
		for range n {
			x := make([]float32, dim)
			for i := range x {
				x[i] = rng.Float32()*2 - 1
			}
			y := int32(0)
			if x[0]-x[1] > 0 {
				y = 1
			}
			if flip {
				y = 1 - y
			}
			d.X, d.Y = append(d.X, x...), append(d.Y, y)
		}
		return d
	}
	test := gen(2000)
	before, _ := federated.Evaluate(served, test)
	if before > 0.5 { // make the task one the served model gets wrong
		flip = true
		for i := range test.Y {
			test.Y[i] = 1 - test.Y[i]
		}
		before = 1 - before
	}
	const total = 3000
	train := gen(total)
	for b := 0; b < total; b += 100 {
		var xs [][]float32
		var ys []int
		for i := b; i < b+100; i++ {
			xs, ys = append(xs, train.X[i*dim:(i+1)*dim]), append(ys, int(train.Y[i]))
		}
		postFeedback(t, c, "/v2/models/clf/feedback", examples(xs, ys), 100)
	}
	if !eventually(20*time.Second, func() bool {
		v, _ := metricValue(scrape(t, c), "petrel_online_learning_examples_total", map[string]string{"model": "clf"})
		return v == total
	}) {
		t.Fatalf("the local copy was not trained on all %d examples", total)
	}
	local, base, ok = tn.LocalModel("clf")
	if !ok || base != "1" {
		t.Fatalf("LocalModel: ok %v base %q", ok, base)
	}
	after, _ := federated.Evaluate(local, test)
	t.Logf("held-out accuracy: served %.3f, local copy after %d examples %.3f", before, total, after)
	if after < 0.9 || after < before+0.3 {
		t.Errorf("local copy accuracy %.3f (served %.3f): want at least 0.9", after, before)
	}
	text := scrape(t, c)
	if v, _ := metricValue(text, "petrel_online_learning_steps_total", map[string]string{"model": "clf"}); v < total/32 {
		t.Errorf("petrel_online_learning_steps_total = %v", v)
	}
	// Serving still uses the served version.
	x := test.X[:dim]
	resp := decodeReply(t, c.do(t, http.MethodPost, "/v2/models/clf/infer", []byte(`{"inputs":`+inputsJSON(x, dim)+`}`), jsonHdr))
	checkMLP(t, served, x, resp.Outputs)
}

// TestDriftPSI: the PSI stays low while inputs follow the baseline (the
// first inputs) and rises when a feature shifts.
func TestDriftPSI(t *testing.T) {
	const dim, window = 8, 400
	r := newRepo(t)
	r.classifier("clf", "1", dim, 3, 1)
	r.config("clf", noProfile)
	cfg := feedbackConfig(t, r.dir)
	cfg.Feedback.DriftWindow, cfg.Feedback.DriftBaseline = window, window
	tn := startNode(t, cfg)
	c := tn.raw(t, client.HTTP1)
	if _, ok := tn.Drift("clf"); ok {
		t.Fatal("Drift before any input: ok")
	}
	rng := rand.New(rand.NewPCG(9, 9))
	send := func(n int, shift float64) {
		for sent := 0; sent < n; sent += 50 {
			x := make([]float32, 50*dim)
			for i := range x {
				v := rng.NormFloat64()
				if i%dim == 3 {
					v += shift
				}
				x[i] = float32(v)
			}
			decodeReply(t, c.do(t, http.MethodPost, "/v2/models/clf/infer", []byte(`{"inputs":`+inputsJSON(x, dim)+`}`), jsonHdr))
		}
	}
	send(window, 0) // the baseline
	if _, ok := tn.Drift("clf"); ok {
		t.Fatal("Drift with an empty window: ok")
	}
	send(window, 0)
	same, ok := tn.Drift("clf")
	if !ok || same > 0.15 {
		t.Fatalf("same distribution: PSI %v (ok %v), want below 0.15", same, ok)
	}
	text := scrape(t, c)
	if v, ok := metricValue(text, "petrel_drift_psi_max", map[string]string{"model": "clf", "version": "1"}); !ok || v != same {
		t.Errorf("petrel_drift_psi_max = %v (%v), Drift says %v", v, ok, same)
	}
	send(window, 3)
	shifted, ok := tn.Drift("clf")
	t.Logf("max PSI: same distribution %.3f, feature 3 shifted by 3 sd %.3f", same, shifted)
	if !ok || shifted < 1 {
		t.Fatalf("shifted: PSI %v, want above 1", shifted)
	}
	text = scrape(t, c)
	f3, _ := metricValue(text, "petrel_feature_psi", map[string]string{"model": "clf", "version": "1", "feature": "3"})
	if math.Abs(f3-shifted) > 1e-9 {
		t.Errorf("petrel_feature_psi{feature 3} = %v, want the max %v", f3, shifted)
	}
	for f := range dim {
		if f == 3 {
			continue
		}
		if v, _ := metricValue(text, "petrel_feature_psi", map[string]string{"model": "clf", "feature": strconv.Itoa(f)}); v > 0.15 {
			t.Errorf("feature %d did not shift but has PSI %v", f, v)
		}
	}
}
