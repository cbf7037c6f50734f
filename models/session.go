package models

import "context"

// Session is a loaded model that can run inference. The ONNX Runtime
// implementation lives in models/ort; tests of code above it may use an
// in-memory twin.
//
// Run must be safe for concurrent use. inputs must match Signature().Inputs
// by name (all of them, any order); outputs names which outputs to return,
// in that order (nil means all, in signature order). Returned tensors own
// their Data.
type Session interface {
	Signature() Signature
	Run(ctx context.Context, inputs []Tensor, outputs []string) ([]Tensor, error)
	// Provider is the execution provider actually in use ("cpu", "cuda").
	Provider() string
	Close() error
}
