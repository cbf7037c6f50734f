// Package onnx writes the model families Petrel trains itself as ONNX
// files that ONNX Runtime loads, and runs the same math in pure Go.
//
// Every family is a stack of dense layers:
//
//	h0 = x
//	h(i+1) = act_i(h(i) · W_i + B_i)
//
// where act_i is Model.Hidden for every layer but the last and
// Model.Output for the last. Linear, logistic and softmax regression are
// the one-layer cases; an MLP has any number of layers.
//
// Usage:
//
//  1. Build a model with NewLinear, NewLogistic, NewSoftmax or NewMLP (all
//     weights zero), then RandomInit it or copy trained weights into
//     Layers[i].W and Layers[i].B.
//  2. Forward runs a batch in Go; MarshalONNX or WriteFile produces the
//     ONNX file, which computes the same function.
//  3. Signature describes the file's input and output for a
//     models.Manifest.
//
// The file uses IR version 8 and opset 17 of the default domain: one Gemm
// per layer (transB=0, weights and biases as float32 initializers), and
// Relu, Sigmoid, Tanh or Softmax(axis=-1) nodes for the activations. The
// input is FP32 [batch, in] and the output FP32 [batch, out], with the
// batch dimension symbolic ("batch").
package onnx

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/petrel-mesh/petrel/models"
)

// Versions written into every file.
const (
	IRVersion       = 8        // ModelProto.ir_version
	OpsetVersion    = 17       // opset of the default (ai.onnx) domain
	ProducerName    = "petrel" // ModelProto.producer_name
	ProducerVersion = "1"      // ModelProto.producer_version, bumped when the graph layout changes
)

// Default tensor names.
const (
	DefaultInput = "input"
)

// Metadata keys the writer sets in ModelProto.metadata_props. Model.Metadata
// may not use them.
const (
	MetaFamily = "petrel.family" // the Family
	MetaLayers = "petrel.layers" // layer widths, "in,h1,...,out"
	MetaHidden = "petrel.hidden" // the hidden Activation (only with 2+ layers)
	MetaOutput = "petrel.output" // the output Activation
)

// ErrInvalidModel wraps every validation failure.
var ErrInvalidModel = errors.New("invalid model")

// Family names a trainable model family. It decides the defaults and the
// constraints Validate enforces.
type Family string

// The families.
const (
	// FamilyLinear is linear regression: one layer, Identity output,
	// output tensor "output".
	FamilyLinear Family = "linear"
	// FamilyLogistic is binary logistic regression: one layer with one
	// output, Sigmoid output, output tensor "probability".
	FamilyLogistic Family = "logistic"
	// FamilySoftmax is multinomial (softmax) regression: one layer with
	// two or more outputs, Softmax output, output tensor "probabilities".
	FamilySoftmax Family = "softmax"
	// FamilyMLP is a multilayer perceptron: one or more layers, any
	// hidden activation, Identity ("logits"), Sigmoid ("probability") or
	// Softmax ("probabilities") output.
	FamilyMLP Family = "mlp"
)

// Activation is the function applied after a dense layer. The empty value
// means ReLU for Model.Hidden and Identity for Model.Output.
type Activation string

// The activations. Softmax is over the last axis (each row sums to 1) and
// is only allowed as an output activation.
const (
	Identity Activation = "identity"
	ReLU     Activation = "relu"
	Sigmoid  Activation = "sigmoid"
	Tanh     Activation = "tanh"
	Softmax  Activation = "softmax"
)

// Dense is one fully connected layer: y = x·W + B.
//
// W holds In*Out weights row-major as [In][Out]: the weight from input k to
// output j is W[k*Out+j]. This is the layout of the ONNX initializer
// (shape [In, Out], used by Gemm with transB=0). B holds Out biases.
type Dense struct {
	In, Out int
	W       []float32
	B       []float32
}

// NewDense returns a layer with all weights and biases zero. Sizes below 1
// give a layer without weights that Validate rejects.
func NewDense(in, out int) Dense {
	d := Dense{In: in, Out: out}
	if in > 0 && out > 0 && in <= math.MaxInt32/out {
		d.W = make([]float32, in*out)
		d.B = make([]float32, out)
	}
	return d
}

// Model is a stack of dense layers with its activations and names. The
// zero value is not valid; use a constructor.
type Model struct {
	// Family is required; see the Family constants for what each allows.
	Family Family
	// Name is the ONNX graph name; empty means the family name.
	Name string
	// Doc is written as ModelProto.doc_string.
	Doc string
	// Version is written as ModelProto.model_version (0 leaves it out).
	Version int64
	// Input names the input tensor; empty means DefaultInput.
	Input string
	// OutputName names the output tensor; empty means the family's
	// default (see DefaultOutputName).
	OutputName string
	// Layers in order; Layers[i].In must equal Layers[i-1].Out.
	Layers []Dense
	// Hidden is the activation after every layer but the last (empty:
	// ReLU). Identity, ReLU, Sigmoid or Tanh.
	Hidden Activation
	// Output is the activation after the last layer (empty: Identity).
	// Identity, Sigmoid or Softmax.
	Output Activation
	// Metadata is written into metadata_props next to the petrel.* keys,
	// sorted by key.
	Metadata map[string]string
}

// NewLinear returns a linear regression model y = x·W + b with zero
// weights.
func NewLinear(in, out int) *Model {
	return &Model{Family: FamilyLinear, Layers: []Dense{NewDense(in, out)}, Output: Identity}
}

// NewLogistic returns a binary logistic regression model
// p = sigmoid(x·W + b), W of shape [in, 1], with zero weights.
func NewLogistic(in int) *Model {
	return &Model{Family: FamilyLogistic, Layers: []Dense{NewDense(in, 1)}, Output: Sigmoid}
}

// NewSoftmax returns a softmax regression model over classes classes with
// zero weights.
func NewSoftmax(in, classes int) *Model {
	return &Model{Family: FamilySoftmax, Layers: []Dense{NewDense(in, classes)}, Output: Softmax}
}

// NewMLP returns an MLP with ReLU hidden activations and zero weights.
// sizes lists the widths from input to output, so {64, 128, 16} is one
// hidden layer of 128; it needs at least two entries.
func NewMLP(sizes []int, output Activation) *Model {
	m := &Model{Family: FamilyMLP, Hidden: ReLU, Output: output}
	for i := 1; i < len(sizes); i++ {
		m.Layers = append(m.Layers, NewDense(sizes[i-1], sizes[i]))
	}
	return m
}

// DefaultOutputName is the output tensor name used when Model.OutputName is
// empty: "output" for linear regression, otherwise by output activation:
// "logits" (Identity), "probability" (Sigmoid), "probabilities" (Softmax).
func DefaultOutputName(f Family, output Activation) string {
	if f == FamilyLinear {
		return "output"
	}
	switch output {
	case Sigmoid:
		return "probability"
	case Softmax:
		return "probabilities"
	default:
		return "logits"
	}
}

func (m *Model) hidden() Activation {
	if m.Hidden == "" {
		return ReLU
	}
	return m.Hidden
}

func (m *Model) output() Activation {
	if m.Output == "" {
		return Identity
	}
	return m.Output
}

// activation returns the activation after layer i.
func (m *Model) activation(i int) Activation {
	if i == len(m.Layers)-1 {
		return m.output()
	}
	return m.hidden()
}

func (m *Model) inputName() string {
	if m.Input == "" {
		return DefaultInput
	}
	return m.Input
}

func (m *Model) outputName() string {
	if m.OutputName == "" {
		return DefaultOutputName(m.Family, m.output())
	}
	return m.OutputName
}

func (m *Model) graphName() string {
	if m.Name == "" {
		return string(m.Family)
	}
	return m.Name
}

// InSize is the width of the input, or 0 for a model without layers.
func (m *Model) InSize() int {
	if len(m.Layers) == 0 {
		return 0
	}
	return m.Layers[0].In
}

// OutSize is the width of the output, or 0 for a model without layers.
func (m *Model) OutSize() int {
	if len(m.Layers) == 0 {
		return 0
	}
	return m.Layers[len(m.Layers)-1].Out
}

// Signature describes the ONNX file's input and output, with -1 for the
// batch dimension.
func (m *Model) Signature() models.Signature {
	return models.Signature{
		Inputs:  []models.TensorSpec{{Name: m.inputName(), DataType: models.FP32, Shape: []int64{-1, int64(m.InSize())}}},
		Outputs: []models.TensorSpec{{Name: m.outputName(), DataType: models.FP32, Shape: []int64{-1, int64(m.OutSize())}}},
	}
}

func (m *Model) layerSizes() string {
	parts := []string{strconv.Itoa(m.InSize())}
	for _, l := range m.Layers {
		parts = append(parts, strconv.Itoa(l.Out))
	}
	return strings.Join(parts, ",")
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidModel, fmt.Sprintf(format, a...))
}

// checkStructure validates everything but the weight values: family
// rules, activations, layer sizes and slice lengths.
func (m *Model) checkStructure() error {
	if len(m.Layers) == 0 {
		return invalid("no layers")
	}
	hidden, output := m.hidden(), m.output()
	switch hidden {
	case Identity, ReLU, Sigmoid, Tanh:
	default:
		return invalid("hidden activation %q: want identity, relu, sigmoid or tanh", m.Hidden)
	}
	switch output {
	case Identity, Sigmoid, Softmax:
	default:
		return invalid("output activation %q: want identity, sigmoid or softmax", m.Output)
	}
	for i, l := range m.Layers {
		if l.In < 1 || l.Out < 1 {
			return invalid("layer %d: size %dx%d, want at least 1x1", i, l.In, l.Out)
		}
		if i > 0 && l.In != m.Layers[i-1].Out {
			return invalid("layer %d: input size %d does not match layer %d output size %d", i, l.In, i-1, m.Layers[i-1].Out)
		}
		if l.In > math.MaxInt32/l.Out || len(l.W) != l.In*l.Out {
			return invalid("layer %d: W has %d weights, want In*Out = %d*%d", i, len(l.W), l.In, l.Out)
		}
		if len(l.B) != l.Out {
			return invalid("layer %d: B has %d biases, want Out = %d", i, len(l.B), l.Out)
		}
	}
	single := func() error {
		if len(m.Layers) != 1 {
			return invalid("family %s has one layer, got %d", m.Family, len(m.Layers))
		}
		return nil
	}
	want := func(a Activation) error {
		if output != a {
			return invalid("family %s needs output activation %s, got %s", m.Family, a, output)
		}
		return nil
	}
	switch m.Family {
	case FamilyLinear:
		if err := single(); err != nil {
			return err
		}
		return want(Identity)
	case FamilyLogistic:
		if err := single(); err != nil {
			return err
		}
		if m.OutSize() != 1 {
			return invalid("family logistic has one output, got %d", m.OutSize())
		}
		return want(Sigmoid)
	case FamilySoftmax:
		if err := single(); err != nil {
			return err
		}
		if err := want(Softmax); err != nil {
			return err
		}
	case FamilyMLP:
	case "":
		return invalid("no family")
	default:
		return invalid("unknown family %q", m.Family)
	}
	if output == Softmax && m.OutSize() < 2 {
		return invalid("softmax over %d output, want at least 2", m.OutSize())
	}
	return nil
}

// internalNames returns the tensor and node names the writer uses itself.
func (m *Model) internalNames() map[string]bool {
	names := map[string]bool{}
	for i := range m.Layers {
		for _, suffix := range []string{"W", "B", "gemm", "out", string(m.activation(i))} {
			names[layerName(i, suffix)] = true
		}
	}
	return names
}

func layerName(i int, suffix string) string { return "dense" + strconv.Itoa(i) + "." + suffix }

// Validate checks the model can be written and run: a known family and its
// constraints, chained layer sizes, weight and bias lengths, finite
// weights, distinct tensor names, and metadata keys. Every error wraps
// ErrInvalidModel.
func (m *Model) Validate() error {
	if err := m.checkStructure(); err != nil {
		return err
	}
	for i, l := range m.Layers {
		for k, w := range l.W {
			if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) {
				return invalid("layer %d: W[%d] is %v", i, k, w)
			}
		}
		for k, b := range l.B {
			if math.IsNaN(float64(b)) || math.IsInf(float64(b), 0) {
				return invalid("layer %d: B[%d] is %v", i, k, b)
			}
		}
	}
	in, out := m.inputName(), m.outputName()
	if in == out {
		return invalid("input and output are both named %q", in)
	}
	internal := m.internalNames()
	for _, n := range []string{in, out} {
		if internal[n] {
			return invalid("tensor name %q is used by the writer", n)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.Metadata)) {
		switch k {
		case "":
			return invalid("empty metadata key")
		case MetaFamily, MetaLayers, MetaHidden, MetaOutput:
			return invalid("metadata key %q is set by the writer", k)
		}
	}
	return nil
}

// RandomInit fills the weights from a generator seeded with seed, so the
// same seed always gives the same weights, and sets biases to zero. A
// layer followed by ReLU gets He (Kaiming) normal weights, std
// sqrt(2/In); any other layer gets Xavier (Glorot) uniform weights in
// ±sqrt(6/(In+Out)). Layers whose slices have the wrong length are
// reallocated. It returns m.
func (m *Model) RandomInit(seed uint64) *Model {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for i := range m.Layers {
		l := &m.Layers[i]
		if l.In < 1 || l.Out < 1 || l.In > math.MaxInt32/l.Out {
			continue
		}
		if len(l.W) != l.In*l.Out {
			l.W = make([]float32, l.In*l.Out)
		}
		if len(l.B) != l.Out {
			l.B = make([]float32, l.Out)
		}
		if m.activation(i) == ReLU {
			std := math.Sqrt(2 / float64(l.In))
			for k := range l.W {
				l.W[k] = float32(rng.NormFloat64() * std)
			}
		} else {
			limit := math.Sqrt(6 / float64(l.In+l.Out))
			for k := range l.W {
				l.W[k] = float32((2*rng.Float64() - 1) * limit)
			}
		}
		clear(l.B)
	}
	return m
}
