package node

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/prometheus/client_golang/prometheus"
)

func TestPersonalRuleValidate(t *testing.T) {
	cases := []struct {
		rule PersonalRule
		want string // "" for valid
	}{
		{PersonalRule{}, ""},
		{PersonalRule{Drop: []int{0, 5}, Hash: []int{1, 2}}, ""},
		{PersonalRule{Drop: []int{-1}}, "outside"},
		{PersonalRule{Hash: []int{1 << 20}}, "outside"},
		{PersonalRule{Drop: []int{3, 3}}, "listed twice"},
		{PersonalRule{Drop: []int{3}, Hash: []int{3}}, "both dropped and hashed"},
	}
	for _, c := range cases {
		err := c.rule.validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.rule, err, c.want)
		}
	}
	// config.json validates it too.
	if _, err := parseModelConfig([]byte(`{"personal": {"drop": [1], "hash": [1]}}`)); err == nil || !strings.Contains(err.Error(), "personal") {
		t.Errorf("config.json with a bad rule: %v", err)
	}
	if c, err := parseModelConfig([]byte(`{"personal": {"drop": [1], "hash": [2]}}`)); err != nil || c.Personal == nil || c.Personal.Hash[0] != 2 {
		t.Errorf("config.json with a rule: %+v, %v", c.Personal, err)
	}
}

func TestFeedbackConfigValidate(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.ModelRepository = t.TempDir()
		c.Feedback.Dir = t.TempDir()
		return c
	}
	cases := []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.Feedback = FeedbackConfig{Fsync: "never"} }, ""}, // no Dir: off, not checked
		{func(c *Config) { c.Feedback.Fsync = "never" }, "fsync"},
		{func(c *Config) { c.Feedback.MaxBytes = 100 }, "max bytes"},
		{func(c *Config) { c.Feedback.KeepInputs = -1 }, "keep inputs"},
		{func(c *Config) { c.Feedback.HashKey = []byte("short") }, "hash key"},
		{func(c *Config) { c.Feedback.DriftWindow = 1 << 20 }, "drift window"},
		{func(c *Config) { c.Feedback.Personal = map[string]PersonalRule{"m": {Drop: []int{-2}}} }, "model \"m\""},
		{func(c *Config) { c.Feedback.Online.LR = math.NaN() }, "learning rate"},
		{func(c *Config) { c.Feedback.Online.Momentum = 1 }, "momentum"},
		{func(c *Config) { c.Feedback.Online.BatchSize = -1 }, "batch size"},
	}
	for i, tc := range cases {
		c := base()
		tc.mutate(&c)
		err := c.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("case %d: %v, want %q", i, err, tc.want)
		}
	}
	d := FeedbackConfig{Dir: "x", MaxBodyBytes: 1 << 30}.withDefaults(1 << 20)
	if d.MaxBodyBytes != 1<<20 || d.KeepInputs != DefaultFeedbackKeepInputs || d.Online.LR != DefaultOnlineLR || d.Fsync != "always" {
		t.Errorf("defaults: %+v", d)
	}
}

func sig(in []int64, inType models.DataType, outs ...models.TensorSpec) models.Signature {
	return models.Signature{Inputs: []models.TensorSpec{{Name: "input", DataType: inType, Shape: in}}, Outputs: outs}
}

func TestClassify(t *testing.T) {
	probs := func(shape ...int64) models.TensorSpec {
		return models.TensorSpec{Name: "p", DataType: models.FP32, Shape: shape}
	}
	two := sig([]int64{-1, 4}, models.FP32, probs(-1, 3))
	two.Inputs = append(two.Inputs, models.TensorSpec{Name: "b", DataType: models.FP32, Shape: []int64{-1, 1}})
	cases := []struct {
		name    string
		sig     models.Signature
		classes int
		want    string
	}{
		{"softmax", sig([]int64{-1, 4}, models.FP32, probs(-1, 3)), 3, ""},
		{"fixed batch", sig([]int64{1, 4}, models.FP32, probs(1, 3)), 3, ""},
		{"binary probability", sig([]int64{-1, 4}, models.FP32, probs(-1, 1)), 2, ""},
		{"two inputs", two, 0, "2 inputs"},
		{"int input", sig([]int64{-1, 4}, models.Int64, probs(-1, 3)), 0, "FP32 [batch, features]"},
		{"rank 1", sig([]int64{4}, models.FP32, probs(-1, 3)), 0, "FP32 [batch, features]"},
		{"dynamic features", sig([]int64{-1, -1}, models.FP32, probs(-1, 3)), 0, "fixed number"},
		{"dynamic classes", sig([]int64{-1, 4}, models.FP32, probs(-1, -1)), 0, "not a classifier"},
		{"int output", sig([]int64{-1, 4}, models.FP32, models.TensorSpec{Name: "p", DataType: models.Int64, Shape: []int64{-1, 3}}), 0, "not a classifier"},
	}
	for _, c := range cases {
		got := classify(&c.sig)
		if c.want == "" {
			if got.err != nil || got.classes != c.classes || got.dim != 4 {
				t.Errorf("%s: %+v", c.name, got)
			}
		} else if got.err == nil || !strings.Contains(got.err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, got.err, c.want)
		}
	}
}

func TestKeptRequestsEviction(t *testing.T) {
	k := &keptRequests{byID: map[string]keptEntry{}}
	for i := range 10 {
		k.put(fmt.Sprintf("r%d", i), keptEntry{version: "1", predicted: int32(i)}, 4)
	}
	if k.len() != 4 {
		t.Fatalf("len %d, want 4", k.len())
	}
	for i := range 6 {
		if _, ok := k.take(fmt.Sprintf("r%d", i)); ok {
			t.Errorf("r%d survived", i)
		}
	}
	e, ok := k.take("r9")
	if !ok || e.predicted != 9 {
		t.Fatalf("r9: %+v %v", e, ok)
	}
	// A reused id replaces the entry; the stale queue key does not evict
	// the new one.
	k.put("r6", keptEntry{predicted: 60}, 4)
	k.put("a", keptEntry{}, 4)
	k.put("b", keptEntry{}, 4)
	if e, ok := k.take("r6"); !ok || e.predicted != 60 {
		t.Fatalf("r6: %+v %v", e, ok)
	}
	k.restore("r6", keptEntry{predicted: 61}, 4)
	if e, ok := k.take("r6"); !ok || e.predicted != 61 {
		t.Fatalf("restored r6: %+v %v", e, ok)
	}
	// Take-and-put churn does not grow the queue without bound.
	for i := range 10000 {
		id := fmt.Sprintf("c%d", i)
		k.put(id, keptEntry{}, 4)
		k.take(id)
	}
	if len(k.queue) > 2*4+64+1 {
		t.Errorf("queue holds %d keys", len(k.queue))
	}
}

// testFeedback is a feedbackState with metrics on a private registry.
func testFeedback(t *testing.T, cfg FeedbackConfig) (*feedbackState, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	n := &Node{metrics: newMetrics(reg), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cfg.Dir = "unused"
	fb := &feedbackState{n: n, cfg: cfg.withDefaults(0), key: []byte("0123456789abcdef"), warned: map[string]bool{}}
	return fb, reg
}

func fp32Rows(rows [][]float32) []byte {
	var b []byte
	for _, r := range rows {
		for _, v := range r {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	return b
}

// TestDriftManifestBaseline checks the PSI against a hand computation.
func TestDriftManifestBaseline(t *testing.T) {
	fb, _ := testFeedback(t, FeedbackConfig{DriftWindow: 4})
	v := &version{manifest: models.Manifest{Name: "m", Version: "1",
		Signature: sig([]int64{-1, 2}, models.FP32, models.TensorSpec{Name: "p", DataType: models.FP32, Shape: []int64{-1, 2}}),
		Baseline: &models.FeatureBaseline{Features: []models.FeatureBins{
			{Edges: []float64{0}, Expected: []float64{0.5, 0.5}},
			{Edges: []float64{0, 1}, Expected: []float64{0.25, 0.5, 0.25}},
		}}}}
	m := newDriftMonitor(fb, v, 2)
	// Feature 0: three below 0, one above; feature 1: all in the middle bin.
	m.observe(fp32Rows([][]float32{{-1, 0.5}, {-2, 0.5}, {-3, 0.5}, {4, 0.5}}), 4)
	got, ok := m.max()
	if !ok {
		t.Fatal("no PSI with a full window")
	}
	psi := func(a, e []float64) float64 {
		var s float64
		for i := range a {
			ai, ei := max(a[i], psiFloor), max(e[i], psiFloor)
			s += (ai - ei) * math.Log(ai/ei)
		}
		return s
	}
	want0 := psi([]float64{0.75, 0.25}, []float64{0.5, 0.5})
	want1 := psi([]float64{0, 1, 0}, []float64{0.25, 0.5, 0.25})
	if math.Abs(m.psi[0]-want0) > 1e-12 || math.Abs(m.psi[1]-want1) > 1e-12 || got != max(want0, want1) {
		t.Errorf("PSI %v (max %v), want %v %v", m.psi, got, want0, want1)
	}
	// The window slides: four rows like the baseline push the others out.
	m.observe(fp32Rows([][]float32{{-1, -1}, {1, 0.5}, {-1, 0.5}, {1, 2}}), 4)
	if m.counts[0][0] != 2 || m.counts[1][0] != 1 || m.counts[1][1] != 2 || m.counts[1][2] != 1 {
		t.Errorf("counts after sliding: %v", m.counts)
	}
}

// TestDriftBaselineFromInputs builds decile bins from the first inputs and
// exports at most 16 features.
func TestDriftBaselineFromInputs(t *testing.T) {
	const dim = 40
	fb, reg := testFeedback(t, FeedbackConfig{DriftWindow: 200, DriftBaseline: 100})
	v := &version{manifest: models.Manifest{Name: "m", Version: "3",
		Signature: sig([]int64{-1, dim}, models.FP32, models.TensorSpec{Name: "p", DataType: models.FP32, Shape: []int64{-1, 2}})}}
	m := newDriftMonitor(fb, v, dim)
	rows := func(n int, f func(r, i int) float32) []byte {
		var rs [][]float32
		for r := range n {
			row := make([]float32, dim)
			for i := range row {
				row[i] = f(r, i)
			}
			rs = append(rs, row)
		}
		return fp32Rows(rs)
	}
	ramp := func(r, i int) float32 {
		if i == 0 {
			return 7 // a constant feature
		}
		return float32((r*7 + i) % 100)
	}
	for r := 0; r < 100; r += 50 {
		m.observe(rows(50, func(k, i int) float32 { return ramp(r+k, i) }), 50)
	}
	if m.baseline == nil {
		t.Fatal("no baseline after 100 inputs")
	}
	if b := m.baseline[1]; len(b.Edges) != 9 || math.Abs(b.Expected[0]-0.1) > 1e-9 {
		t.Errorf("feature 1 bins: %+v, want deciles", b)
	}
	if b := m.baseline[0]; len(b.Edges) != 1 || b.Expected[1] != 1 {
		t.Errorf("constant feature bins: %+v", b)
	}
	for r := 0; r < 200; r += 50 {
		m.observe(rows(50, func(k, i int) float32 { return ramp(r+k, i) + float32(i) }), 50)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, mf := range mfs {
		if mf.GetName() == "petrel_feature_psi" {
			series = len(mf.GetMetric())
		}
	}
	if series != driftExported {
		t.Errorf("%d petrel_feature_psi series, want %d", series, driftExported)
	}
	m.forget()
	mfs, _ = reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "petrel_feature_psi" || mf.GetName() == "petrel_drift_psi_max" {
			t.Errorf("%s still has %d series after forget", mf.GetName(), len(mf.GetMetric()))
		}
	}
}

func TestHashFeature(t *testing.T) {
	fb, _ := testFeedback(t, FeedbackConfig{})
	other, _ := testFeedback(t, FeedbackConfig{})
	other.key = []byte("another key, 16+")
	seen := map[float32]bool{}
	for i := range 1000 {
		h := fb.hashFeature("m", 3, float32(i))
		if h < 0 || h >= 1 {
			t.Fatalf("hash %v outside [0, 1)", h)
		}
		if h != fb.hashFeature("m", 3, float32(i)) {
			t.Fatal("not deterministic")
		}
		seen[h] = true
	}
	if len(seen) < 999 {
		t.Errorf("%d distinct hashes of 1000 values", len(seen))
	}
	x := float32(12.5)
	if fb.hashFeature("m", 3, x) == fb.hashFeature("m", 4, x) || fb.hashFeature("m", 3, x) == fb.hashFeature("n", 3, x) ||
		fb.hashFeature("m", 3, x) == other.hashFeature("m", 3, x) {
		t.Error("feature index, model and key do not all change the hash")
	}
	if fb.hashFeature("m", 0, float32(math.Copysign(0, -1))) != fb.hashFeature("m", 0, 0) {
		t.Error("-0 and 0 hash differently")
	}
}
