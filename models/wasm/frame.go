package wasm

import (
	"fmt"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/wasm/guest"
)

// EncodeFrame encodes tensors as an ABI v1 tensor frame. Each tensor is
// validated first.
func EncodeFrame(ts []models.Tensor) ([]byte, error) {
	gs := make([]guest.Tensor, len(ts))
	for i := range ts {
		if err := ts[i].Validate(); err != nil {
			return nil, fmt.Errorf("encode tensor frame: %w", err)
		}
		gs[i] = guest.Tensor{Name: ts[i].Name, DataType: string(ts[i].DataType), Shape: ts[i].Shape, Data: ts[i].Data}
	}
	b, err := guest.EncodeFrame(gs)
	if err != nil {
		return nil, fmt.Errorf("encode tensor frame: %w", err)
	}
	return b, nil
}

// DecodeFrame decodes an ABI v1 tensor frame into validated tensors with
// distinct, non-empty names. Data slices alias b.
func DecodeFrame(b []byte) ([]models.Tensor, error) {
	gs, err := guest.DecodeFrame(b)
	if err != nil {
		return nil, err
	}
	ts := make([]models.Tensor, len(gs))
	seen := make(map[string]bool, len(gs))
	for i, g := range gs {
		if g.Name == "" {
			return nil, fmt.Errorf("%w: tensor %d has no name", guest.ErrFrame, i)
		}
		if seen[g.Name] {
			return nil, fmt.Errorf("%w: tensor %q appears twice", guest.ErrFrame, g.Name)
		}
		seen[g.Name] = true
		dt, err := models.ParseDataType(g.DataType)
		if err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", guest.ErrFrame, g.Name, err)
		}
		t := models.Tensor{Name: g.Name, DataType: dt, Shape: g.Shape, Data: g.Data}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", guest.ErrFrame, err)
		}
		ts[i] = t
	}
	return ts, nil
}

// decodeTensors decodes a pre output, blaming the guest for any fault.
func decodeTensors(b []byte) ([]models.Tensor, error) {
	ts, err := DecodeFrame(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", ExportPre, ErrInvalidOutput, err)
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("%s: %w: no tensors", ExportPre, ErrInvalidOutput)
	}
	return ts, nil
}
