package federated

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/petrel-mesh/petrel/models/onnx"
)

// MaxModelParams bounds the number of parameters NewModel builds (2^26,
// 256 MiB of float32), so a bad Spec from a config file or the wire cannot
// allocate without limit.
const MaxModelParams = 1 << 26

// Spec names a trainable model: its family and layer widths.
//
// Family is one of
//
//	"softmax"   multinomial logistic regression, Sizes {in, classes}, classes >= 2
//	"logistic"  binary logistic regression, Sizes {in, 1} (or just {in})
//	"mlp"       ReLU hidden layers and a softmax output,
//	            Sizes {in, hidden..., classes}, classes >= 2
//
// An "mlp" with only {in, classes} has no hidden layer and computes the
// same function as "softmax".
type Spec struct {
	Family string
	Sizes  []int
}

// String formats the spec as "family:in,h1,...,out".
func (s Spec) String() string {
	parts := make([]string, len(s.Sizes))
	for i, n := range s.Sizes {
		parts[i] = strconv.Itoa(n)
	}
	return s.Family + ":" + strings.Join(parts, ",")
}

// Validate checks the family, the number of sizes, that every size is
// positive and that the model has at most MaxModelParams parameters.
func (s Spec) Validate() error {
	for i, n := range s.Sizes {
		if n < 1 || n > MaxModelParams {
			return fmt.Errorf("model spec %s: size %d is %d, want 1..%d", s, i, n, MaxModelParams)
		}
	}
	switch s.Family {
	case string(onnx.FamilySoftmax):
		if len(s.Sizes) != 2 {
			return fmt.Errorf("model spec %s: softmax needs sizes {in, classes}, got %d sizes", s, len(s.Sizes))
		}
	case string(onnx.FamilyLogistic):
		if len(s.Sizes) != 1 && len(s.Sizes) != 2 {
			return fmt.Errorf("model spec %s: logistic needs sizes {in, 1}, got %d sizes", s, len(s.Sizes))
		}
		if len(s.Sizes) == 2 && s.Sizes[1] != 1 {
			return fmt.Errorf("model spec %s: logistic has one output, got %d", s, s.Sizes[1])
		}
	case string(onnx.FamilyMLP):
		if len(s.Sizes) < 2 {
			return fmt.Errorf("model spec %s: mlp needs sizes {in, hidden..., classes}, got %d sizes", s, len(s.Sizes))
		}
	case "":
		return fmt.Errorf("model spec %s: no family (want softmax, logistic or mlp)", s)
	default:
		return fmt.Errorf("model spec %s: unknown family %q (want softmax, logistic or mlp)", s, s.Family)
	}
	if s.Family != string(onnx.FamilyLogistic) && s.Sizes[len(s.Sizes)-1] < 2 {
		return fmt.Errorf("model spec %s: %s needs at least 2 classes, got %d", s, s.Family, s.Sizes[len(s.Sizes)-1])
	}
	total := 0
	for i := 1; i < len(s.Sizes); i++ {
		in, out := s.Sizes[i-1], s.Sizes[i]
		if in > (MaxModelParams-total)/out {
			return fmt.Errorf("model spec %s: more than %d parameters", s, MaxModelParams)
		}
		total += in*out + out
		if total > MaxModelParams {
			return fmt.Errorf("model spec %s: more than %d parameters", s, MaxModelParams)
		}
	}
	return nil
}

// NewModel builds the model spec describes with weights drawn by
// onnx.Model.RandomInit(seed) (He normal before a ReLU, Xavier uniform
// otherwise) and zero biases. The same spec and seed always give the same
// model. An MLP has ReLU hidden layers and a Softmax output.
func NewModel(spec Spec, seed uint64) (*onnx.Model, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	var m *onnx.Model
	switch spec.Family {
	case string(onnx.FamilySoftmax):
		m = onnx.NewSoftmax(spec.Sizes[0], spec.Sizes[1])
	case string(onnx.FamilyLogistic):
		m = onnx.NewLogistic(spec.Sizes[0])
	default:
		m = onnx.NewMLP(spec.Sizes, onnx.Softmax)
	}
	m.RandomInit(seed)
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("model spec %s: %w", spec, err)
	}
	return m, nil
}

// NumParams is the number of trainable parameters of m: the sum of every
// layer's weights and biases. It is the length of Flatten(m).
func NumParams(m *onnx.Model) int {
	if m == nil {
		return 0
	}
	n := 0
	for _, l := range m.Layers {
		n += len(l.W) + len(l.B)
	}
	return n
}

// Flatten returns a copy of m's parameters as one vector, layer by layer:
// layer 0's W (row-major [In][Out]), layer 0's B, layer 1's W, and so on.
// Updates, aggregation and gradients all use this layout.
func Flatten(m *onnx.Model) []float32 {
	p := make([]float32, 0, NumParams(m))
	if m == nil {
		return p
	}
	for _, l := range m.Layers {
		p = append(p, l.W...)
		p = append(p, l.B...)
	}
	return p
}

// SetParams copies p, laid out as Flatten's result, into m's weights and
// biases. It fails, leaving m unchanged, if p has the wrong length or a
// value that is NaN or infinite.
func SetParams(m *onnx.Model, p []float32) error {
	if m == nil {
		return fmt.Errorf("set params: nil model")
	}
	if n := NumParams(m); len(p) != n {
		return fmt.Errorf("set params: got %d values, the model has %d parameters", len(p), n)
	}
	if i := firstNonFinite(p); i >= 0 {
		return fmt.Errorf("set params: value %d is %v", i, p[i])
	}
	off := 0
	for _, l := range m.Layers {
		off += copy(l.W, p[off:])
		off += copy(l.B, p[off:])
	}
	return nil
}

// firstNonFinite returns the index of the first NaN or infinite value in
// p, or -1.
func firstNonFinite(p []float32) int {
	for i, v := range p {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return i
		}
	}
	return -1
}
