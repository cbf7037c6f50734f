package sched

import (
	"fmt"
	"slices"

	"github.com/petrel-mesh/petrel/models"
)

// canBatch reports whether a model with this signature can be batched
// along dim 0: every input and output has rank >= 1, a dynamic first
// dimension (-1), and a fixed-size datatype (BYTES tensors are not
// batched: their rows are not byte-aligned).
func canBatch(sig *models.Signature) bool {
	ok := func(specs []models.TensorSpec) bool {
		for _, t := range specs {
			if len(t.Shape) == 0 || t.Shape[0] != -1 || t.DataType.Size() == 0 {
				return false
			}
		}
		return true
	}
	return ok(sig.Inputs) && ok(sig.Outputs)
}

// checkRequest validates r against sig: every input of the signature
// exactly once, datatypes and shapes the signature accepts, data lengths
// that agree with the shape, and known, distinct output names.
//
// rows is the request's dim 0 (1 for a scalar first input). solo is true
// when the request cannot share an execution: batching is off, its inputs
// disagree on dim 0, or dim 0 is 0 or above maxBatch.
func checkRequest(sig *models.Signature, r *Request, batching bool, maxBatch int) (rows int64, solo bool, err error) {
	if len(r.Inputs) != len(sig.Inputs) {
		return 0, false, fmt.Errorf("%w: %d inputs, the model takes %d", ErrInvalidRequest, len(r.Inputs), len(sig.Inputs))
	}
	rows, solo = 1, !batching
	for i := range r.Inputs {
		t := &r.Inputs[i]
		spec, ok := sig.Input(t.Name)
		if !ok {
			return 0, false, fmt.Errorf("%w: unknown input %q", ErrInvalidRequest, t.Name)
		}
		for j := range i {
			if r.Inputs[j].Name == t.Name {
				return 0, false, fmt.Errorf("%w: input %q appears twice", ErrInvalidRequest, t.Name)
			}
		}
		if err := spec.Accepts(t.DataType, t.Shape); err != nil {
			return 0, false, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
		}
		if t.DataType.Size() > 0 {
			want, err := models.ByteSize(t.DataType, t.Shape)
			if err != nil {
				return 0, false, fmt.Errorf("%w: input %q: %v", ErrInvalidRequest, t.Name, err)
			}
			if int64(len(t.Data)) != want {
				return 0, false, fmt.Errorf("%w: input %q: shape %v of %s needs %d bytes, got %d",
					ErrInvalidRequest, t.Name, t.Shape, t.DataType, want, len(t.Data))
			}
		}
		switch {
		case i == 0 && len(t.Shape) > 0:
			rows = t.Shape[0]
		case i > 0 && (len(t.Shape) == 0 || t.Shape[0] != rows):
			solo = true
		}
	}
	for i, name := range r.Outputs {
		if _, ok := sig.Output(name); !ok {
			return 0, false, fmt.Errorf("%w: unknown output %q", ErrInvalidRequest, name)
		}
		if slices.Contains(r.Outputs[:i], name) {
			return 0, false, fmt.Errorf("%w: output %q requested twice", ErrInvalidRequest, name)
		}
	}
	if rows <= 0 || rows > int64(maxBatch) {
		solo = true
	}
	return rows, solo, nil
}

// findInput returns the tensor named name, or nil.
func findInput(ts []models.Tensor, name string) *models.Tensor {
	for i := range ts {
		if ts[i].Name == name {
			return &ts[i]
		}
	}
	return nil
}

// compatible reports whether two validated requests can share an
// execution: for every input, equal shapes apart from dim 0. (Validation
// already guarantees the same input names and datatypes.)
func compatible(a, b *Request) bool {
	if len(a.Inputs) != len(b.Inputs) {
		return false
	}
	for i := range a.Inputs {
		ta := &a.Inputs[i]
		tb := &b.Inputs[i] // usually the same order: skip the search
		if tb.Name != ta.Name {
			if tb = findInput(b.Inputs, ta.Name); tb == nil {
				return false
			}
		}
		if ta.DataType != tb.DataType || ta.DataType == models.Bytes ||
			len(ta.Shape) == 0 || !slices.Equal(ta.Shape[1:], tb.Shape[1:]) {
			return false
		}
	}
	return true
}

// concatInputs joins the requests' inputs along dim 0, in signature order.
// Row-major layout makes that a byte concatenation.
func concatInputs(sig *models.Signature, reqs []*Request, total int64) []models.Tensor {
	ins := make([]models.Tensor, len(sig.Inputs))
	for i, spec := range sig.Inputs {
		first := findInput(reqs[0].Inputs, spec.Name)
		size := 0
		for _, r := range reqs {
			size += len(findInput(r.Inputs, spec.Name).Data)
		}
		buf := make([]byte, 0, size)
		for _, r := range reqs {
			buf = append(buf, findInput(r.Inputs, spec.Name).Data...)
		}
		shape := slices.Clone(first.Shape)
		shape[0] = total
		ins[i] = models.Tensor{Name: spec.Name, DataType: first.DataType, Shape: shape, Data: buf}
	}
	return ins
}

// unionOutputs is the outputs any request asked for, in signature order;
// all of them if any request asked for all (nil Outputs).
func unionOutputs(sig *models.Signature, reqs []*Request) []string {
	names := make([]string, 0, len(sig.Outputs))
	for _, spec := range sig.Outputs {
		for _, r := range reqs {
			if len(r.Outputs) == 0 || slices.Contains(r.Outputs, spec.Name) {
				names = append(names, spec.Name)
				break
			}
		}
	}
	return names
}

// splitOutputs checks that out holds the requested names, each with dim 0
// equal to total, and cuts every output into the requests' row ranges.
// Request i gets the outputs it asked for, in its order (signature order
// for nil), sharing out's backing arrays with capacity capped at its rows.
func splitOutputs(names []string, out []models.Tensor, reqs []*Request, rows []int64, total int64) ([][]models.Tensor, error) {
	if len(out) != len(names) {
		return nil, fmt.Errorf("%w: executor returned %d outputs for %d requested", ErrOutputMismatch, len(out), len(names))
	}
	for j := range out {
		t := &out[j]
		if t.Name != "" && t.Name != names[j] {
			return nil, fmt.Errorf("%w: output %d is %q, requested %q", ErrOutputMismatch, j, t.Name, names[j])
		}
		if t.DataType.Size() == 0 {
			return nil, fmt.Errorf("%w: output %q has datatype %q, which cannot be split by rows", ErrOutputMismatch, names[j], t.DataType)
		}
		if len(t.Shape) == 0 || t.Shape[0] != total {
			return nil, fmt.Errorf("%w: output %q has shape %v, want dim 0 = %d (the batch's total rows)", ErrOutputMismatch, names[j], t.Shape, total)
		}
		if want, err := models.ByteSize(t.DataType, t.Shape); err != nil || int64(len(t.Data)) != want {
			return nil, fmt.Errorf("%w: output %q: shape %v of %s needs %d bytes, got %d", ErrOutputMismatch, names[j], t.Shape, t.DataType, want, len(t.Data))
		}
	}
	parts := make([][]models.Tensor, len(reqs))
	var off int64
	for i, r := range reqs {
		asked := r.Outputs
		if len(asked) == 0 {
			asked = names // someone asked for all: names is every output, in signature order
		}
		ts := make([]models.Tensor, len(asked))
		for k, name := range asked {
			j := slices.Index(names, name)
			t := &out[j]
			rowBytes := int64(len(t.Data)) / total
			lo, hi := off*rowBytes, (off+rows[i])*rowBytes
			shape := slices.Clone(t.Shape)
			shape[0] = rows[i]
			ts[k] = models.Tensor{Name: name, DataType: t.DataType, Shape: shape, Data: t.Data[lo:hi:hi]}
		}
		parts[i] = ts
		off += rows[i]
	}
	return parts, nil
}
