package onnx_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/petrel-mesh/petrel/models/onnx"
)

// The round-trip tests load the written bytes in the real ONNX Runtime and
// compare its outputs with Forward. They fail, never skip, when the
// library cannot be found: set PETREL_ORT_LIB, or put it at
// .cache/ort/libonnxruntime.so.1 in the module root.

var (
	ortOnce sync.Once
	ortErr  error
)

func ortLibrary() (string, error) {
	if p := os.Getenv("PETREL_ORT_LIB"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("PETREL_ORT_LIB=%q: %w", p, err)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, ".cache", "ort", "libonnxruntime.so.1")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("no ONNX Runtime library at %s (set PETREL_ORT_LIB to its path): %w", p, err)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory to find .cache/ort/libonnxruntime.so.1 from; set PETREL_ORT_LIB")
		}
		dir = parent
	}
}

// requireORT initializes ONNX Runtime once for the test binary, failing
// the test if it cannot.
func requireORT(t *testing.T) {
	t.Helper()
	ortOnce.Do(func() {
		lib, err := ortLibrary()
		if err != nil {
			ortErr = err
			return
		}
		ort.SetSharedLibraryPath(lib)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			ortErr = fmt.Errorf("initialize ONNX Runtime from %s: %w", lib, err)
		}
	})
	if ortErr != nil {
		t.Fatalf("ONNX Runtime is required for the round-trip tests: %v", ortErr)
	}
	t.Logf("ONNX Runtime %s", ort.GetVersion())
}

func TestMain(m *testing.M) {
	code := m.Run()
	if ort.IsInitialized() {
		ort.DestroyEnvironment()
	}
	os.Exit(code)
}

// runORT loads model bytes and runs one batch.
func runORT(t *testing.T, b []byte, in, out string, x []float32, batch, outSize int) []float32 {
	t.Helper()
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(b, []string{in}, []string{out}, nil)
	if err != nil {
		t.Fatalf("ONNX Runtime rejected the model: %v", err)
	}
	defer sess.Destroy()
	xt, err := ort.NewTensor(ort.NewShape(int64(batch), int64(len(x)/batch)), x)
	if err != nil {
		t.Fatal(err)
	}
	defer xt.Destroy()
	outputs := []ort.Value{nil}
	if err := sess.Run([]ort.Value{xt}, outputs); err != nil {
		t.Fatalf("run: %v", err)
	}
	defer outputs[0].Destroy()
	yt, ok := outputs[0].(*ort.Tensor[float32])
	if !ok {
		t.Fatalf("output is %T, want *Tensor[float32]", outputs[0])
	}
	if shape := yt.GetShape(); len(shape) != 2 || shape[0] != int64(batch) || shape[1] != int64(outSize) {
		t.Fatalf("output shape %v, want [%d %d]", shape, batch, outSize)
	}
	return append([]float32(nil), yt.GetData()...)
}

// closeTo is 1e-5 relative to max(1, |want|): relative for large values,
// absolute near zero where float32 accumulation order dominates.
func closeTo(got, want float32) bool {
	return math.Abs(float64(got)-float64(want)) <= 1e-5*max(1, math.Abs(float64(want)))
}

// randomize gives biases random values (RandomInit leaves them zero) so the
// round trip covers them.
func randomize(m *onnx.Model, seed uint64) *onnx.Model {
	m.RandomInit(seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range m.Layers {
		for j := range m.Layers[i].B {
			m.Layers[i].B[j] = float32(rng.NormFloat64() * 0.1)
		}
	}
	return m
}

type namedModel struct {
	name  string
	model *onnx.Model
}

func roundTripModels() []namedModel {
	tanh := onnx.NewMLP([]int{12, 24, 24, 3}, onnx.Sigmoid)
	tanh.Hidden = onnx.Tanh
	sigmoidHidden := onnx.NewMLP([]int{9, 17, 5}, onnx.Identity)
	sigmoidHidden.Hidden = onnx.Sigmoid
	named := onnx.NewLinear(4, 2)
	named.Input, named.OutputName = "features", "prediction"
	return []namedModel{
		{"linear", randomize(onnx.NewLinear(5, 3), 1)},
		{"linear-custom-names", randomize(named, 2)},
		{"logistic", randomize(onnx.NewLogistic(8), 3)},
		{"softmax", randomize(onnx.NewSoftmax(10, 4), 4)},
		{"small-mlp-64-128-16", randomize(onnx.NewMLP([]int{64, 128, 16}, onnx.Softmax), 5)},
		{"small-mlp-64-128-16-logits", randomize(onnx.NewMLP([]int{64, 128, 16}, onnx.Identity), 6)},
		{"mlp-sigmoid-output", randomize(onnx.NewMLP([]int{64, 32, 1}, onnx.Sigmoid), 7)},
		{"mlp-tanh-hidden", randomize(tanh, 8)},
		{"mlp-sigmoid-hidden", randomize(sigmoidHidden, 9)},
		{"wide-mlp-256-1024-512-32", randomize(onnx.NewMLP([]int{256, 1024, 512, 32}, onnx.Softmax), 10)},
		{"wide-mlp-256-1024-512-32-l", randomize(onnx.NewMLP([]int{256, 1024, 512, 32}, onnx.Identity), 11)},
	}
}

func TestRoundTripONNXRuntime(t *testing.T) {
	requireORT(t)
	for _, nm := range roundTripModels() {
		m := nm.model
		t.Run(nm.name, func(t *testing.T) {
			b, err := m.MarshalONNX()
			if err != nil {
				t.Fatal(err)
			}
			sig := m.Signature()
			in, out := sig.Inputs[0].Name, sig.Outputs[0].Name
			for _, batch := range []int{1, 7} {
				rng := rand.New(rand.NewPCG(uint64(batch), 2))
				x := make([]float32, batch*m.InSize())
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				want, err := m.Forward(x, batch)
				if err != nil {
					t.Fatal(err)
				}
				got := runORT(t, b, in, out, x, batch, m.OutSize())
				if len(got) != len(want) {
					t.Fatalf("batch %d: ORT gave %d values, Forward %d", batch, len(got), len(want))
				}
				var worst float64
				for i := range got {
					worst = max(worst, math.Abs(float64(got[i])-float64(want[i])))
					if !closeTo(got[i], want[i]) {
						t.Fatalf("batch %d: value %d: ORT %v, Forward %v", batch, i, got[i], want[i])
					}
				}
				t.Logf("batch %d: %d values, max |ORT-Forward| = %.3g", batch, len(got), worst)
			}
		})
	}
}

// TestONNXRuntimeSeesSignatureAndMetadata checks the declared input and
// output (names, FP32, dynamic batch) and metadata_props as ORT reads them.
func TestONNXRuntimeSeesSignatureAndMetadata(t *testing.T) {
	requireORT(t)
	m := randomize(onnx.NewMLP([]int{64, 128, 16}, onnx.Softmax), 1)
	m.Name, m.Doc, m.Version = "small-mlp", "test model", 3
	m.Metadata = map[string]string{"petrel.round": "12", "trainer": "fedavg"}
	b, err := m.MarshalONNX()
	if err != nil {
		t.Fatal(err)
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(b)
	if err != nil {
		t.Fatal(err)
	}
	check := func(kind string, got []ort.InputOutputInfo, name string, dim int64) {
		t.Helper()
		if len(got) != 1 {
			t.Fatalf("%d %ss", len(got), kind)
		}
		g := got[0]
		if g.Name != name || g.DataType != ort.TensorElementDataTypeFloat || len(g.Dimensions) != 2 || g.Dimensions[0] != -1 || g.Dimensions[1] != dim {
			t.Errorf("%s = %v, want %s float [-1 %d]", kind, &g, name, dim)
		}
	}
	check("input", ins, "input", 64)
	check("output", outs, "probabilities", 16)

	meta, err := ort.GetModelMetadataWithONNXData(b)
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Destroy()
	for k, want := range map[string]string{
		onnx.MetaFamily: "mlp", onnx.MetaLayers: "64,128,16", onnx.MetaHidden: "relu",
		onnx.MetaOutput: "softmax", "petrel.round": "12", "trainer": "fedavg",
	} {
		got, ok, err := meta.LookupCustomMetadataMap(k)
		if err != nil || !ok || got != want {
			t.Errorf("metadata %q = %q, %v, %v; want %q", k, got, ok, err, want)
		}
	}
	if v, err := meta.GetProducerName(); err != nil || v != "petrel" {
		t.Errorf("producer = %q, %v", v, err)
	}
	if v, err := meta.GetGraphName(); err != nil || v != "small-mlp" {
		t.Errorf("graph name = %q, %v", v, err)
	}
	if v, err := meta.GetDescription(); err != nil || v != "test model" {
		t.Errorf("description = %q, %v", v, err)
	}
	if v, err := meta.GetVersion(); err != nil || v != 3 {
		t.Errorf("version = %d, %v", v, err)
	}
}

// TestONNXRuntimeLoadsWrittenFile loads a WriteFile result from disk.
func TestONNXRuntimeLoadsWrittenFile(t *testing.T) {
	requireORT(t)
	m := randomize(onnx.NewLogistic(6), 2)
	path := filepath.Join(t.TempDir(), "logistic.onnx")
	if err := m.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	sess, err := ort.NewDynamicAdvancedSession(path, []string{"input"}, []string{"probability"}, nil)
	if err != nil {
		t.Fatalf("ONNX Runtime rejected %s: %v", path, err)
	}
	sess.Destroy()
}
