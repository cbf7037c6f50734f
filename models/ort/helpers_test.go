package ort_test

import (
	"context"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/models/ort/onnxtest"
)

// setup initialises the real ONNX Runtime, found as FindLibrary("") finds
// it. These tests need it: a missing library is a failure, and the error
// says how to install it.
func setup(t testing.TB) {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		t.Fatalf("these tests need the ONNX Runtime shared library: %v", err)
	}
}

// load builds a model from g and loads it with default options.
func load(t testing.TB, g onnxtest.Graph) *ort.Session {
	t.Helper()
	return loadWith(t, g, ort.Options{})
}

func loadWith(t testing.TB, g onnxtest.Graph, opts ort.Options) *ort.Session {
	t.Helper()
	setup(t)
	s, err := ort.Load(onnxtest.Model(g, 17), opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// identity is y = Identity(x) with the given types and shapes.
func identity(dt models.DataType, in, out []int64) onnxtest.Graph {
	return onnxtest.Graph{
		Nodes:   []onnxtest.Node{{Op: "Identity", Inputs: []string{"x"}, Outputs: []string{"y"}}},
		Inputs:  []onnxtest.Value{{Name: "x", Type: dt, Shape: in}},
		Outputs: []onnxtest.Value{{Name: "y", Type: dt, Shape: out}},
	}
}

func run(t testing.TB, s *ort.Session, outputs []string, inputs ...models.Tensor) []models.Tensor {
	t.Helper()
	out, err := s.Run(context.Background(), inputs, outputs)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return out
}

func expect(t testing.TB, got, want models.Tensor, tol float64) {
	t.Helper()
	if got.Name != want.Name {
		t.Errorf("output name %q, want %q", got.Name, want.Name)
	}
	if err := onnxtest.Compare(got, want, tol); err != nil {
		t.Error(err)
	}
}
