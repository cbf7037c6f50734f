package onnx

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	valid := func() *Model { return NewMLP([]int{3, 4, 2}, Softmax).RandomInit(1) }
	cases := []struct {
		name   string
		model  func() *Model
		errHas string
	}{
		{"empty", func() *Model { return &Model{Family: FamilyMLP} }, "no layers"},
		{"no family", func() *Model { m := valid(); m.Family = ""; return m }, "no family"},
		{"unknown family", func() *Model { m := valid(); m.Family = "svm"; return m }, "unknown family"},
		{"mismatched layer sizes", func() *Model {
			m := valid()
			m.Layers[1] = NewDense(5, 2)
			return m
		}, "layer 1: input size 5 does not match layer 0 output size 4"},
		{"short W", func() *Model { m := valid(); m.Layers[0].W = m.Layers[0].W[:11]; return m }, "W has 11 weights"},
		{"long B", func() *Model { m := valid(); m.Layers[1].B = append(m.Layers[1].B, 0); return m }, "B has 3 biases"},
		{"nil weights", func() *Model { m := valid(); m.Layers[0].W = nil; return m }, "W has 0 weights"},
		{"zero size", func() *Model { return NewLinear(0, 3) }, "size 0x3"},
		{"negative size", func() *Model { return NewSoftmax(4, -2) }, "size 4x-2"},
		{"NaN weight", func() *Model { m := valid(); m.Layers[1].W[3] = float32(math.NaN()); return m }, "W[3] is NaN"},
		{"Inf bias", func() *Model { m := valid(); m.Layers[0].B[0] = float32(math.Inf(1)); return m }, "B[0] is +Inf"},
		{"linear with two layers", func() *Model {
			m := NewLinear(3, 4)
			m.Layers = append(m.Layers, NewDense(4, 1))
			return m
		}, "family linear has one layer, got 2"},
		{"linear with sigmoid", func() *Model { m := NewLinear(3, 1); m.Output = Sigmoid; return m }, "needs output activation identity"},
		{"logistic with two outputs", func() *Model {
			m := NewLogistic(3)
			m.Layers[0] = NewDense(3, 2)
			return m
		}, "one output, got 2"},
		{"softmax regression with identity", func() *Model { m := NewSoftmax(3, 4); m.Output = ""; return m }, "needs output activation softmax"},
		{"softmax over one class", func() *Model { return NewSoftmax(3, 1) }, "softmax over 1 output"},
		{"mlp softmax over one output", func() *Model { return NewMLP([]int{3, 4, 1}, Softmax) }, "softmax over 1 output"},
		{"mlp with one size", func() *Model { return NewMLP([]int{3}, Identity) }, "no layers"},
		{"hidden softmax", func() *Model { m := valid(); m.Hidden = Softmax; return m }, "hidden activation"},
		{"output tanh", func() *Model { m := valid(); m.Output = Tanh; return m }, "output activation"},
		{"same input and output name", func() *Model { m := valid(); m.Input = "probabilities"; return m }, "both named"},
		{"name used by writer", func() *Model { m := valid(); m.OutputName = "dense0.out"; return m }, "used by the writer"},
		{"reserved metadata key", func() *Model { m := valid(); m.Metadata = map[string]string{MetaFamily: "x"}; return m }, "set by the writer"},
		{"empty metadata key", func() *Model { m := valid(); m.Metadata = map[string]string{"": "x"}; return m }, "empty metadata key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.model().Validate()
			if !errors.Is(err, ErrInvalidModel) {
				t.Fatalf("Validate() = %v, want ErrInvalidModel", err)
			}
			if !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("Validate() = %q, want it to mention %q", err, tc.errHas)
			}
			if _, err := tc.model().MarshalONNX(); !errors.Is(err, ErrInvalidModel) {
				t.Fatalf("MarshalONNX() error = %v, want ErrInvalidModel", err)
			}
		})
	}
}

func TestConstructorsValid(t *testing.T) {
	for name, m := range map[string]*Model{
		"linear":      NewLinear(5, 3),
		"logistic":    NewLogistic(8),
		"softmax":     NewSoftmax(10, 4),
		"mlp":         NewMLP([]int{64, 128, 16}, Softmax),
		"mlp-logits":  NewMLP([]int{4, 8, 8, 3}, Identity),
		"mlp-sigmoid": NewMLP([]int{4, 8, 1}, Sigmoid),
	} {
		if err := m.Validate(); err != nil {
			t.Errorf("%s zero weights: %v", name, err)
		}
		if err := m.RandomInit(3).Validate(); err != nil {
			t.Errorf("%s random weights: %v", name, err)
		}
	}
}

func TestDefaultNamesAndSignature(t *testing.T) {
	cases := []struct {
		m       *Model
		out     string
		in, dim int64
	}{
		{NewLinear(5, 3), "output", 5, 3},
		{NewLogistic(8), "probability", 8, 1},
		{NewSoftmax(10, 4), "probabilities", 10, 4},
		{NewMLP([]int{64, 128, 16}, Softmax), "probabilities", 64, 16},
		{NewMLP([]int{64, 128, 16}, Identity), "logits", 64, 16},
		{NewMLP([]int{64, 128, 1}, Sigmoid), "probability", 64, 1},
	}
	for _, tc := range cases {
		sig := tc.m.Signature()
		if err := sig.Validate(); err != nil {
			t.Fatal(err)
		}
		in, out := sig.Inputs[0], sig.Outputs[0]
		if in.Name != "input" || in.DataType != "FP32" || in.Shape[0] != -1 || in.Shape[1] != tc.in {
			t.Errorf("%s input = %+v", tc.m.Family, in)
		}
		if out.Name != tc.out || out.DataType != "FP32" || out.Shape[0] != -1 || out.Shape[1] != tc.dim {
			t.Errorf("%s output = %+v, want %q [-1,%d]", tc.m.Family, out, tc.out, tc.dim)
		}
	}
	m := NewLinear(2, 2)
	m.Input, m.OutputName = "features", "y"
	if sig := m.Signature(); sig.Inputs[0].Name != "features" || sig.Outputs[0].Name != "y" {
		t.Errorf("custom names: %+v", sig)
	}
}

func assertClose(t *testing.T, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d values %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range got {
		if math.Abs(float64(got[i])-float64(want[i])) > tol {
			t.Fatalf("value %d = %v, want %v (all: got %v want %v)", i, got[i], want[i], got, want)
		}
	}
}

func TestForwardHandComputed(t *testing.T) {
	linear := NewLinear(2, 2)
	linear.Layers[0].W = []float32{1, 2, 3, 4} // [[1,2],[3,4]]
	linear.Layers[0].B = []float32{0.5, -1}

	logistic := NewLogistic(2)
	logistic.Layers[0].W = []float32{1, -1}

	softmax := NewSoftmax(2, 3)
	softmax.Layers[0].W = []float32{1, 0, 0, 0, 1, 0}
	softmax.Layers[0].B = []float32{0, 0, float32(math.Ln2)}

	mlp := NewMLP([]int{2, 2, 1}, Identity)
	mlp.Layers[0].W = []float32{1, -1, 1, 1} // h = relu([x0+x1, x1-x0])
	mlp.Layers[1].W = []float32{1, 2}
	mlp.Layers[1].B = []float32{0.5}

	mlpTanh := NewMLP([]int{2, 2, 1}, Sigmoid)
	mlpTanh.Hidden = Tanh
	mlpTanh.Layers[0].W = []float32{1, 0, 0, 1}
	mlpTanh.Layers[1].W = []float32{1, 1}

	cases := []struct {
		name  string
		m     *Model
		x     []float32
		batch int
		want  []float32
	}{
		{"linear", linear, []float32{1, 1, 2, -1}, 2, []float32{4.5, 5, -0.5, -1}},
		{"logistic", logistic, []float32{2, 0, 0, 0, -1, 1}, 3, []float32{0.880797077977882, 0.5, 0.119202922022118}},
		{"softmax", softmax, []float32{0, 0, math.Ln2, 0}, 2, []float32{0.25, 0.25, 0.5, 0.4, 0.2, 0.4}},
		{"mlp relu", mlp, []float32{1, 2, 2, -3}, 2, []float32{5.5, 0.5}},
		{"mlp tanh sigmoid", mlpTanh, []float32{1, -1, 0, 0}, 2, []float32{0.5, 0.5}},
		{"mlp tanh sigmoid 2", mlpTanh, []float32{1, 2}, 1, []float32{float32(1 / (1 + math.Exp(-math.Tanh(1)-math.Tanh(2))))}},
		{"empty batch", linear, nil, 0, []float32{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.m.Forward(tc.x, tc.batch)
			if err != nil {
				t.Fatal(err)
			}
			assertClose(t, got, tc.want, 1e-6)
		})
	}
}

func TestForwardErrors(t *testing.T) {
	m := NewLinear(3, 2)
	if _, err := m.Forward(make([]float32, 5), 2); err == nil || !strings.Contains(err.Error(), "want batch*in = 2*3") {
		t.Errorf("short input: %v", err)
	}
	if _, err := m.Forward(nil, -1); err == nil {
		t.Error("negative batch: no error")
	}
	bad := NewMLP([]int{3, 4, 2}, Identity)
	bad.Layers[1].In = 5
	if _, err := bad.Forward(make([]float32, 3), 1); !errors.Is(err, ErrInvalidModel) {
		t.Errorf("invalid model: %v", err)
	}
}

func TestSoftmaxRowsSumToOne(t *testing.T) {
	m := NewMLP([]int{16, 32, 10}, Softmax).RandomInit(7)
	const batch = 50
	x := make([]float32, batch*16)
	for i := range x {
		// Large magnitudes check the max-subtraction keeps exp finite.
		x[i] = float32((i%7)-3) * float32(math.Pow(10, float64(i%4)))
	}
	y, err := m.Forward(x, batch)
	if err != nil {
		t.Fatal(err)
	}
	for r := range batch {
		var sum float64
		for _, p := range y[r*10 : (r+1)*10] {
			if !(p >= 0 && p <= 1) {
				t.Fatalf("row %d has probability %v", r, p)
			}
			sum += float64(p)
		}
		if math.Abs(sum-1) > 1e-6 {
			t.Fatalf("row %d sums to %v", r, sum)
		}
	}
}

func TestSigmoidSaturates(t *testing.T) {
	m := NewLogistic(1)
	m.Layers[0].W[0] = 1
	y, err := m.Forward([]float32{-1000, 1000, 0}, 3)
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, y, []float32{0, 1, 0.5}, 0)
}

func TestRandomInitDeterministic(t *testing.T) {
	a := NewMLP([]int{64, 128, 16}, Softmax).RandomInit(42)
	b := NewMLP([]int{64, 128, 16}, Softmax).RandomInit(42)
	c := NewMLP([]int{64, 128, 16}, Softmax).RandomInit(43)
	for i := range a.Layers {
		for k := range a.Layers[i].W {
			if a.Layers[i].W[k] != b.Layers[i].W[k] {
				t.Fatalf("seed 42 twice: layer %d W[%d] %v != %v", i, k, a.Layers[i].W[k], b.Layers[i].W[k])
			}
		}
		for k, v := range a.Layers[i].B {
			if v != 0 {
				t.Fatalf("layer %d B[%d] = %v, want 0", i, k, v)
			}
		}
	}
	same := 0
	for k := range a.Layers[0].W {
		if a.Layers[0].W[k] == c.Layers[0].W[k] {
			same++
		}
	}
	if same > len(a.Layers[0].W)/100 {
		t.Errorf("seeds 42 and 43 share %d of %d weights", same, len(a.Layers[0].W))
	}
	ab, _ := a.MarshalONNX()
	bb, _ := b.MarshalONNX()
	if string(ab) != string(bb) {
		t.Error("same seed gives different ONNX bytes")
	}
}

func TestRandomInitScale(t *testing.T) {
	m := NewMLP([]int{256, 512, 10}, Softmax).RandomInit(1)
	// Layer 0 is followed by ReLU: He normal, std sqrt(2/256).
	var sum, sq float64
	for _, w := range m.Layers[0].W {
		sum += float64(w)
		sq += float64(w) * float64(w)
	}
	n := float64(len(m.Layers[0].W))
	std, want := math.Sqrt(sq/n-(sum/n)*(sum/n)), math.Sqrt(2.0/256)
	if math.Abs(std-want)/want > 0.02 || math.Abs(sum/n) > 0.01*want {
		t.Errorf("He layer: mean %v std %v, want 0 and %v", sum/n, std, want)
	}
	// Layer 1 is followed by softmax: Xavier uniform in ±sqrt(6/(512+10)).
	limit := math.Sqrt(6.0 / 522)
	var maxAbs float64
	for _, w := range m.Layers[1].W {
		maxAbs = max(maxAbs, math.Abs(float64(w)))
	}
	if maxAbs > limit || maxAbs < 0.95*limit {
		t.Errorf("Xavier layer: max |w| %v, want just under %v", maxAbs, limit)
	}
}
