package validate_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/coordinator/validate"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/models/ort/onnxtest"
)

// These tests load real models in ONNX Runtime. They need its shared
// library (PETREL_ORT_LIB, or .cache/ort/libonnxruntime.so.1 in the
// module root: `make setup`), and fail, never skip, without it.

func setup(t testing.TB) {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		t.Fatalf("these tests need the ONNX Runtime shared library: %v", err)
	}
}

// relaxed are options for tests that must pass: a budget no machine
// misses, so that nothing depends on wall-clock speed.
var relaxed = validate.Options{LatencyBudget: time.Hour, LatencyRuns: 5}

// mlp returns a model of widths in -> 8 -> out with weights from seed.
func mlp(t testing.TB, in, out int, seed uint64) (*onnx.Model, []byte) {
	t.Helper()
	m := onnx.NewMLP([]int{in, 8, out}, onnx.Identity).RandomInit(seed)
	// Non-zero biases, so that zero inputs give non-zero outputs.
	for i := range m.Layers[0].B {
		m.Layers[0].B[i] = 0.1 * float32(i+1)
	}
	b, err := m.MarshalONNX()
	if err != nil {
		t.Fatalf("MarshalONNX: %v", err)
	}
	return m, b
}

// goldenFor computes golden examples for m with its pure-Go forward pass,
// one per row of xs (each a batch of one).
func goldenFor(t testing.TB, m *onnx.Model, xs ...[]float32) []models.Golden {
	t.Helper()
	sig := m.Signature()
	var gs []models.Golden
	for _, x := range xs {
		y, err := m.Forward(x, 1)
		if err != nil {
			t.Fatalf("Forward: %v", err)
		}
		gs = append(gs, models.Golden{
			Inputs:    []models.GoldenTensor{{Name: sig.Inputs[0].Name, DataType: models.FP32, Shape: []int64{1, int64(len(x))}, Data: jsonFloats(x)}},
			Outputs:   []models.GoldenTensor{{Name: sig.Outputs[0].Name, DataType: models.FP32, Shape: []int64{1, int64(len(y))}, Data: jsonFloats(y)}},
			Tolerance: 1e-4,
		})
	}
	return gs
}

func jsonFloats(v []float32) json.RawMessage {
	b := []byte{'['}
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
	}
	return append(b, ']')
}

func manifestOf(version string, model []byte, sig models.Signature, golden []models.Golden) *models.Manifest {
	return &models.Manifest{
		Name: "m", Version: version, Digest: models.DigestBytes(model), Format: models.FormatONNX,
		Signature: sig, Golden: golden,
	}
}

func run(t *testing.T, model []byte, golden []models.Golden, prev *models.Manifest, allowBreaking bool, opts validate.Options) *validate.Report {
	t.Helper()
	setup(t)
	r, err := validate.Validate(context.Background(), model, golden, prev, allowBreaking, opts)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	for _, c := range r.Checks {
		t.Logf("%-9s ok=%-5v skipped=%-5v %s", c.Name, c.OK, c.Skipped, c.Detail)
	}
	checkShape(t, r)
	return r
}

// checkShape checks what holds for every report: the five checks in
// order, OK exactly when all passed, Reason the first failure's detail.
func checkShape(t *testing.T, r *validate.Report) {
	t.Helper()
	var names []string
	ok, reason := true, ""
	for _, c := range r.Checks {
		names = append(names, c.Name)
		if c.Skipped && c.OK {
			t.Errorf("check %s is skipped and OK", c.Name)
		}
		if !c.OK && ok {
			ok, reason = false, c.Detail
		}
		if c.Detail == "" {
			t.Errorf("check %s has no detail", c.Name)
		}
	}
	want := []string{"size", "load", "signature", "golden", "latency"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("checks %v, want %v", names, want)
	}
	if r.OK != ok || r.Reason != reason {
		t.Errorf("OK %v reason %q, want %v %q (checks %+v)", r.OK, r.Reason, ok, reason, r.Checks)
	}
}

func check(t *testing.T, r *validate.Report, name string) validate.Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s check in %+v", name, r.Checks)
	return validate.Check{}
}

func TestFirstVersionPasses(t *testing.T) {
	m, model := mlp(t, 4, 3, 1)
	golden := goldenFor(t, m, []float32{1, 2, 3, 4}, []float32{-1, 0.5, 0, 2})
	r := run(t, model, golden, nil, false, relaxed)
	if !r.OK {
		t.Fatalf("not OK: %s (checks %+v)", r.Reason, r.Checks)
	}
	if !reflect.DeepEqual(r.Signature, m.Signature()) {
		t.Errorf("signature %+v, want %+v", r.Signature, m.Signature())
	}
	if r.Compatibility != "first version" || r.Breaking {
		t.Errorf("compatibility %q breaking %v, want first version", r.Compatibility, r.Breaking)
	}
	if r.Golden != "passed 2 examples" {
		t.Errorf("golden %q", r.Golden)
	}
	if r.LatencyP50 <= 0 || r.LatencyP99 < r.LatencyP50 {
		t.Errorf("latency p50 %v p99 %v", r.LatencyP50, r.LatencyP99)
	}
	if d := check(t, r, "latency").Detail; !strings.Contains(d, "5 runs with golden inputs") {
		t.Errorf("latency detail %q does not say it timed 5 runs of the golden inputs", d)
	}
}

func TestBadModelBytes(t *testing.T) {
	_, model := mlp(t, 4, 3, 1)
	tests := []struct {
		name   string
		model  []byte
		opts   validate.Options
		failed string
		reason string
	}{
		{"empty", nil, relaxed, "size", "model is empty"},
		{"too large", model, validate.Options{MaxBytes: 100}, "size", "more than the limit of 100 bytes"},
		{"truncated", model[:len(model)/2], relaxed, "load", "model does not load: "},
		{"garbage", []byte("this is not an ONNX model at all"), relaxed, "load", "model does not load: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.model, nil, nil, false, tc.opts)
			if r.OK {
				t.Fatal("bad model passed")
			}
			if !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", r.Reason, tc.reason)
			}
			if c := check(t, r, tc.failed); c.OK || c.Skipped {
				t.Errorf("%s check %+v, want failed", tc.failed, c)
			}
			after := false
			for _, c := range r.Checks {
				if after && !c.Skipped {
					t.Errorf("check %s after the failed %s ran", c.Name, tc.failed)
				}
				after = after || c.Name == tc.failed
			}
		})
	}
}

func TestTruncatedModelGivesRuntimeMessage(t *testing.T) {
	_, model := mlp(t, 4, 3, 1)
	r := run(t, model[:len(model)-7], nil, nil, false, relaxed)
	if r.OK || len(r.Reason) <= len("model does not load: ") {
		t.Fatalf("OK %v, reason %q: want the runtime's message", r.OK, r.Reason)
	}
	if (r.Signature.Inputs != nil) || r.Compatibility != "" {
		t.Errorf("signature %+v and compatibility %q for a model that did not load", r.Signature, r.Compatibility)
	}
}

func TestBreakingChange(t *testing.T) {
	m4, model4 := mlp(t, 4, 3, 1)
	_, model5 := mlp(t, 5, 3, 2)
	prev := manifestOf("v1", model4, m4.Signature(), nil)
	const change = `input "input": dimension 1: 4 -> 5`

	r := run(t, model5, nil, prev, false, relaxed)
	if r.OK {
		t.Fatal("breaking change passed without allowBreaking")
	}
	if !r.Breaking || r.Compatibility != "breaking: "+change {
		t.Errorf("breaking %v compatibility %q, want breaking: %s", r.Breaking, r.Compatibility, change)
	}
	if !strings.Contains(r.Reason, change) || !strings.Contains(r.Reason, "v1") {
		t.Errorf("reason %q does not say what changed from v1", r.Reason)
	}
	// The later checks still ran, for a complete report.
	if c := check(t, r, "latency"); !c.OK {
		t.Errorf("latency check %+v", c)
	}

	r = run(t, model5, nil, prev, true, relaxed)
	if !r.OK {
		t.Fatalf("breaking change refused with allowBreaking: %s", r.Reason)
	}
	if !r.Breaking || !strings.Contains(check(t, r, "signature").Detail, "allowed: "+change) {
		t.Errorf("breaking %v, signature check %+v", r.Breaking, check(t, r, "signature"))
	}
}

func TestDatatypeChange(t *testing.T) {
	setup(t)
	identity := func(dt models.DataType) []byte {
		return onnxtest.Model(onnxtest.Graph{
			Nodes:   []onnxtest.Node{{Op: "Identity", Inputs: []string{"x"}, Outputs: []string{"y"}}},
			Inputs:  []onnxtest.Value{{Name: "x", Type: dt, Shape: []int64{-1, 3}}},
			Outputs: []onnxtest.Value{{Name: "y", Type: dt, Shape: []int64{-1, 3}}},
		}, 17)
	}
	v1 := identity(models.FP32)
	sig, err := ort.Inspect(v1)
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, identity(models.FP64), nil, manifestOf("v1", v1, sig, nil), false, relaxed)
	want := `breaking: input "x": datatype FP32 -> FP64; output "y": datatype FP32 -> FP64`
	if r.OK || r.Compatibility != want {
		t.Fatalf("OK %v compatibility %q, want not OK and %q", r.OK, r.Compatibility, want)
	}
	if !strings.Contains(r.Reason, `input "x": datatype FP32 -> FP64`) {
		t.Errorf("reason %q", r.Reason)
	}
}

func TestCompatibleNewVersion(t *testing.T) {
	m1, model1 := mlp(t, 4, 3, 1)
	_, model2 := mlp(t, 4, 3, 2)
	r := run(t, model2, nil, manifestOf("v1", model1, m1.Signature(), nil), false, relaxed)
	if !r.OK || r.Compatibility != "compatible" || r.Breaking {
		t.Fatalf("OK %v compatibility %q breaking %v (%s)", r.OK, r.Compatibility, r.Breaking, r.Reason)
	}
	if r.Golden != "none given" {
		t.Errorf("golden %q, want none given", r.Golden)
	}
	if d := check(t, r, "latency").Detail; !strings.Contains(d, "zero inputs") {
		t.Errorf("latency detail %q, want zero inputs", d)
	}
}

func TestGoldenFails(t *testing.T) {
	m, model := mlp(t, 4, 3, 1)
	golden := goldenFor(t, m, []float32{1, 2, 3, 4})
	// Corrupt the second output element.
	var want []float64
	if err := json.Unmarshal(golden[0].Outputs[0].Data, &want); err != nil {
		t.Fatal(err)
	}
	want[1] += 1
	golden[0].Outputs[0].Data, _ = json.Marshal(want)

	r := run(t, model, golden, nil, false, relaxed)
	if r.OK {
		t.Fatal("wrong golden output passed")
	}
	if !strings.HasPrefix(r.Reason, `golden example 0: output "logits" element 1: `) || r.Golden != r.Reason {
		t.Errorf("reason %q golden %q", r.Reason, r.Golden)
	}
}

func TestGoldenInputsDoNotFit(t *testing.T) {
	m, model := mlp(t, 4, 3, 1)
	bad := goldenFor(t, m, []float32{1, 2, 3, 4})
	bad[0].Inputs[0].Shape = []int64{1, 2}
	bad[0].Inputs[0].Data = json.RawMessage("[1,2]")
	r := run(t, model, bad, nil, false, relaxed)
	if r.OK || !strings.HasPrefix(r.Reason, "golden example 0: ") {
		t.Fatalf("OK %v reason %q", r.OK, r.Reason)
	}
}

func TestPreviousGoldenInputs(t *testing.T) {
	m1, model1 := mlp(t, 4, 3, 1)
	_, model2 := mlp(t, 4, 3, 2) // other weights: v1's outputs no longer hold
	prev := manifestOf("v1", model1, m1.Signature(), goldenFor(t, m1, []float32{1, 2, 3, 4}, []float32{0, 0, 1, 1}))
	r := run(t, model2, nil, prev, false, relaxed)
	if !r.OK {
		t.Fatalf("not OK: %s", r.Reason)
	}
	want := "none given; ran the inputs of 2 of version v1's 2 golden examples (outputs not compared)"
	if r.Golden != want {
		t.Errorf("golden %q, want %q", r.Golden, want)
	}
	if d := check(t, r, "latency").Detail; !strings.Contains(d, "golden inputs") {
		t.Errorf("latency detail %q, want golden inputs", d)
	}

	// A breaking change: v1's inputs (width 4) do not fit width 5.
	_, model5 := mlp(t, 5, 3, 3)
	r = run(t, model5, nil, prev, true, relaxed)
	if !r.OK {
		t.Fatalf("not OK: %s", r.Reason)
	}
	if !strings.Contains(r.Golden, "do not fit the new signature") {
		t.Errorf("golden %q", r.Golden)
	}
}

func TestImpossibleLatencyBudget(t *testing.T) {
	_, model := mlp(t, 4, 3, 1)
	r := run(t, model, nil, nil, false, validate.Options{LatencyBudget: time.Nanosecond, LatencyRuns: 3})
	if r.OK {
		t.Fatal("1ns budget met")
	}
	if !strings.Contains(r.Reason, "exceeds the budget of 1ns") || !strings.Contains(r.Reason, r.LatencyP50.String()) {
		t.Errorf("reason %q does not give the p50 (%v) and the budget", r.Reason, r.LatencyP50)
	}
	if r.LatencyP50 <= 0 {
		t.Errorf("p50 %v", r.LatencyP50)
	}
}

func TestZeroInputsOfEveryKind(t *testing.T) {
	setup(t)
	// Two inputs, one BYTES, one of undeclared rank; dynamic dimensions.
	model := onnxtest.Model(onnxtest.Graph{
		Nodes: []onnxtest.Node{
			{Op: "Identity", Inputs: []string{"s"}, Outputs: []string{"s_out"}},
			{Op: "Identity", Inputs: []string{"n"}, Outputs: []string{"n_out"}},
		},
		Inputs: []onnxtest.Value{
			{Name: "s", Type: models.Bytes, Shape: []int64{-1, 2}},
			{Name: "n", Type: models.Int64},
		},
		Outputs: []onnxtest.Value{
			{Name: "s_out", Type: models.Bytes, Shape: []int64{-1, 2}},
			{Name: "n_out", Type: models.Int64},
		},
	}, 17)
	r := run(t, model, nil, nil, false, relaxed)
	if !r.OK {
		t.Fatalf("not OK: %s", r.Reason)
	}
}

func TestErrors(t *testing.T) {
	setup(t)
	_, model := mlp(t, 4, 3, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := validate.Validate(ctx, model, nil, nil, false, relaxed); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: error %v", err)
	}
	bad := []validate.Options{
		{LatencyBudget: -1},
		{LatencyRuns: -1},
		{LatencyRuns: 1 << 20},
		{MaxBytes: -5},
		{Runtime: ort.Options{Provider: "tpu"}},
	}
	for _, o := range bad {
		if _, err := validate.Validate(context.Background(), model, nil, nil, false, o); !errors.Is(err, validate.ErrInvalidOptions) {
			t.Errorf("options %+v: error %v, want ErrInvalidOptions", o, err)
		}
	}
}

// countdown is a context cancelled by its own n-th Err call, so that a
// test can cancel at a given point of Validate without timing.
type countdown struct {
	context.Context
	cancel context.CancelFunc
	n      atomic.Int64
}

func (c *countdown) Err() error {
	if c.n.Add(-1) == 0 {
		c.cancel()
	}
	return c.Context.Err()
}

func TestCancelMidway(t *testing.T) {
	setup(t)
	m, model := mlp(t, 4, 3, 1)
	golden := goldenFor(t, m, []float32{1, 2, 3, 4})
	for _, n := range []int64{2, 3, 5, 9} {
		ctx, cancel := context.WithCancel(context.Background())
		c := &countdown{Context: ctx, cancel: cancel}
		c.n.Store(n)
		r, err := validate.Validate(c, model, golden, nil, false, validate.Options{LatencyBudget: time.Hour, LatencyRuns: 100})
		cancel()
		if !errors.Is(err, context.Canceled) || r != nil {
			t.Errorf("cancelled at Err call %d: report %v, error %v; want only context.Canceled", n, r, err)
		}
	}
}
