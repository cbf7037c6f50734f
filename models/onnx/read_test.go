package onnx_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"

	"github.com/petrel-mesh/petrel/models/onnx"
)

// TestParseRoundTrip writes every round-trip model, parses it back and
// checks the weights, names, metadata and the function are the same, and
// that writing the parsed model gives the same bytes.
func TestParseRoundTrip(t *testing.T) {
	withMeta := randomize(onnx.NewMLP([]int{6, 5, 3}, onnx.Softmax), 20)
	withMeta.Name, withMeta.Doc, withMeta.Version = "graph-x", "a doc string", 42
	withMeta.Metadata = map[string]string{"owner": "team-a", "z.key": ""}
	cases := append(roundTripModels(), namedModel{"metadata-doc-version", withMeta})
	for _, nm := range cases {
		t.Run(nm.name, func(t *testing.T) {
			b, err := nm.model.MarshalONNX()
			if err != nil {
				t.Fatal(err)
			}
			got, err := onnx.Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := nm.model
			if got.Family != want.Family || got.Output != want.Output || got.Input != want.Input ||
				got.OutputName != want.OutputName || got.Name != want.Name || got.Doc != want.Doc || got.Version != want.Version {
				t.Errorf("fields: got %+v", *got)
			}
			if len(want.Layers) > 1 && got.Hidden != want.Hidden {
				t.Errorf("hidden %q, want %q", got.Hidden, want.Hidden)
			}
			if !reflect.DeepEqual(got.Layers, want.Layers) {
				t.Errorf("layers differ")
			}
			if len(want.Metadata) > 0 && !reflect.DeepEqual(got.Metadata, want.Metadata) {
				t.Errorf("metadata %v, want %v", got.Metadata, want.Metadata)
			}
			x := randomRows(rand.New(rand.NewPCG(1, 2)), 7, want.InSize())
			y1, err := want.Forward(x, 7)
			if err != nil {
				t.Fatal(err)
			}
			y2, err := got.Forward(x, 7)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(y1, y2) {
				t.Errorf("Forward differs")
			}
			again, err := got.MarshalONNX()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, b) {
				t.Errorf("re-marshalled bytes differ from the original")
			}
		})
	}
}

func randomRows(rng *rand.Rand, rows, width int) []float32 {
	x := make([]float32, rows*width)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	return x
}

// TestParseRejectsTruncated cuts a model at every length: each prefix is
// an error wrapping ErrNotPetrelModel, never a panic or a model.
func TestParseRejectsTruncated(t *testing.T) {
	b, err := randomize(onnx.NewMLP([]int{3, 4, 2}, onnx.Softmax), 1).MarshalONNX()
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(b) {
		m, err := onnx.Parse(b[:n])
		if err == nil {
			t.Fatalf("prefix of %d/%d bytes parsed as %+v", n, len(b), m)
		}
		if !errors.Is(err, onnx.ErrNotPetrelModel) {
			t.Fatalf("prefix of %d bytes: error %v does not wrap ErrNotPetrelModel", n, err)
		}
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	inputs := [][]byte{nil, {}, []byte("not a protobuf"), {0xff, 0xff, 0xff}, {0x08}}
	for range 200 {
		g := make([]byte, rng.IntN(256))
		for i := range g {
			g[i] = byte(rng.Uint32())
		}
		inputs = append(inputs, g)
	}
	for i, b := range inputs {
		if m, err := onnx.Parse(b); err == nil || !errors.Is(err, onnx.ErrNotPetrelModel) {
			t.Fatalf("input %d (%x): model %v, error %v", i, b, m, err)
		}
	}
}

// TestParseRejectsForeignModel reads a Gemm model of the ONNX test suite:
// a valid ONNX file, but not one Petrel wrote.
func TestParseRejectsForeignModel(t *testing.T) {
	const p = "/usr/share/libonnx-testdata/data/node/test_gemm_default_vector_bias/model.onnx"
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (install Debian package libonnx-testdata: make setup)", err)
	}
	_, err = onnx.Parse(b)
	if !errors.Is(err, onnx.ErrNotPetrelModel) {
		t.Fatalf("Parse of %s: %v, want ErrNotPetrelModel", p, err)
	}
}
