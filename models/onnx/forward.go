package onnx

import (
	"fmt"
	"math"
)

// Forward runs the model on a batch in pure Go and returns the output,
// batch*OutSize() values row-major. x holds batch*InSize() values
// row-major. It computes the function of the ONNX graph, accumulating in
// float64, so it agrees with ONNX Runtime to float32 rounding.
//
// Forward checks sizes (see Validate) but not that weights are finite.
// It does not modify m and is safe for concurrent use with other
// Forward calls.
func (m *Model) Forward(x []float32, batch int) ([]float32, error) {
	if err := m.checkStructure(); err != nil {
		return nil, err
	}
	in := m.InSize()
	if batch < 0 {
		return nil, fmt.Errorf("forward: batch %d", batch)
	}
	if batch > math.MaxInt32/in || len(x) != batch*in {
		return nil, fmt.Errorf("forward: input has %d values, want batch*in = %d*%d", len(x), batch, in)
	}
	cur := make([]float64, len(x))
	for i, v := range x {
		cur[i] = float64(v)
	}
	for i, l := range m.Layers {
		if batch > math.MaxInt32/l.Out {
			return nil, fmt.Errorf("forward: layer %d output of %d*%d values is too large", i, batch, l.Out)
		}
		next := make([]float64, batch*l.Out)
		act := m.activation(i)
		for r := range batch {
			row := next[r*l.Out : (r+1)*l.Out]
			for j, b := range l.B {
				row[j] = float64(b)
			}
			for k, xv := range cur[r*l.In : (r+1)*l.In] {
				if xv == 0 {
					continue
				}
				for j, w := range l.W[k*l.Out : (k+1)*l.Out] {
					row[j] += xv * float64(w)
				}
			}
			applyActivation(act, row)
		}
		cur = next
	}
	out := make([]float32, len(cur))
	for i, v := range cur {
		out[i] = float32(v)
	}
	return out, nil
}

// applyActivation applies act to one row in place.
func applyActivation(act Activation, row []float64) {
	switch act {
	case Identity:
	case ReLU:
		for j, v := range row {
			row[j] = max(v, 0)
		}
	case Sigmoid:
		for j, v := range row {
			row[j] = sigmoid(v)
		}
	case Tanh:
		for j, v := range row {
			row[j] = math.Tanh(v)
		}
	case Softmax:
		hi := math.Inf(-1)
		for _, v := range row {
			hi = max(hi, v)
		}
		var sum float64
		for j, v := range row {
			row[j] = math.Exp(v - hi)
			sum += row[j]
		}
		for j := range row {
			row[j] /= sum
		}
	default:
		panic("onnx: no Go function for activation " + string(act)) // checkStructure rejects it first
	}
}

// sigmoid is 1/(1+e^-v), computed without overflow for large |v|.
func sigmoid(v float64) float64 {
	if v >= 0 {
		return 1 / (1 + math.Exp(-v))
	}
	e := math.Exp(v)
	return e / (1 + e)
}
