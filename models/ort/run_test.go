package ort_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/models/ort/onnxtest"
)

// sample returns n elements of dt (n <= 6) covering edge values.
func sample(dt models.DataType, shape []int64) models.Tensor {
	n, _ := models.NumElements(shape)
	switch dt {
	case models.FP32:
		return onnxtest.Tensor("x", dt, shape, []float32{1.5, -2, float32(math.Inf(1)), 1e30, float32(math.Copysign(0, -1)), 3.25}[:n]...)
	case models.FP64:
		return onnxtest.Tensor("x", dt, shape, []float64{1.5, -2, math.MaxFloat64, 1e-300, math.Inf(-1), 3.25}[:n]...)
	case models.Int8:
		return onnxtest.Tensor("x", dt, shape, []int8{-128, 127, 0, -1, 5, 6}[:n]...)
	case models.Int16:
		return onnxtest.Tensor("x", dt, shape, []int16{-32768, 32767, 0, -1, 5, 6}[:n]...)
	case models.Int32:
		return onnxtest.Tensor("x", dt, shape, []int32{math.MinInt32, math.MaxInt32, 0, -1, 5, 6}[:n]...)
	case models.Int64:
		return onnxtest.Tensor("x", dt, shape, []int64{math.MinInt64, math.MaxInt64, 0, -1, 5, 6}[:n]...)
	case models.Uint8:
		return onnxtest.Tensor("x", dt, shape, []uint8{0, 255, 1, 128, 5, 6}[:n]...)
	case models.Uint16:
		return onnxtest.Tensor("x", dt, shape, []uint16{0, 65535, 1, 32768, 5, 6}[:n]...)
	case models.Uint32:
		return onnxtest.Tensor("x", dt, shape, []uint32{0, math.MaxUint32, 1, 1 << 31, 5, 6}[:n]...)
	case models.Uint64:
		return onnxtest.Tensor("x", dt, shape, []uint64{0, math.MaxUint64, 1, 1 << 63, 5, 6}[:n]...)
	case models.Bool:
		return onnxtest.Tensor("x", dt, shape, []bool{true, false, false, true, true, false}[:n]...)
	case models.FP16: // 1, -2, 65504, smallest subnormal, +Inf, 0.5
		return onnxtest.Tensor("x", dt, shape, []uint16{0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x3800}[:n]...)
	case models.BF16: // 1, -2, max, smallest subnormal, +Inf, 0.5
		return onnxtest.Tensor("x", dt, shape, []uint16{0x3f80, 0xc000, 0x7f7f, 0x0001, 0x7f80, 0x3f00}[:n]...)
	case models.Bytes:
		return onnxtest.Strings("x", shape, []string{"", "héllo", "a", "\xff\xfe binary", "five", "6"}[:n]...)
	}
	panic(dt)
}

var allTypes = []models.DataType{
	models.FP32, models.FP64, models.Int8, models.Int16, models.Int32, models.Int64,
	models.Uint8, models.Uint16, models.Uint32, models.Uint64, models.Bool,
	models.FP16, models.BF16, models.Bytes,
}

func renamed(t models.Tensor, name string) models.Tensor {
	t.Name = name
	return t
}

// TestIdentityEveryDatatype passes each datatype through Identity with
// fixed, dynamic, zero-size and scalar shapes, and wants the bytes back.
func TestIdentityEveryDatatype(t *testing.T) {
	setup(t)
	for _, dt := range allTypes {
		t.Run(string(dt), func(t *testing.T) {
			t.Run("fixed", func(t *testing.T) {
				s := load(t, identity(dt, []int64{2, 2}, []int64{2, 2}))
				in := sample(dt, []int64{2, 2})
				expect(t, run(t, s, nil, in)[0], renamed(in, "y"), 0)
			})
			t.Run("dynamic", func(t *testing.T) {
				s := load(t, identity(dt, []int64{-1, 2}, []int64{-1, 2}))
				for _, shape := range [][]int64{{1, 2}, {3, 2}, {2, 2}, {0, 2}} {
					in := sample(dt, shape)
					expect(t, run(t, s, nil, in)[0], renamed(in, "y"), 0)
				}
			})
			t.Run("zero-size fixed", func(t *testing.T) {
				s := load(t, identity(dt, []int64{0, 3}, []int64{0, 3}))
				in := sample(dt, []int64{0, 3})
				out := run(t, s, nil, in)[0]
				expect(t, out, renamed(in, "y"), 0)
				if out.Data == nil {
					t.Error("zero-size output has nil Data, want empty")
				}
			})
			t.Run("scalar", func(t *testing.T) {
				g := identity(dt, []int64{}, []int64{})
				setup(t)
				s, err := ort.Load(onnxtest.Model(g, 17), ort.Options{})
				if dt == models.FP16 || dt == models.BF16 || dt == models.Bytes {
					if !errors.Is(err, models.ErrUnsupportedDataType) {
						t.Fatalf("Load of a rank-0 %s model: err = %v, want ErrUnsupportedDataType", dt, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				in := sample(dt, []int64{})
				expect(t, run(t, s, nil, in)[0], renamed(in, "y"), 0)
			})
		})
	}
}

// TestUndeclaredShapes covers outputs and inputs without a declared shape
// (rank unknown): any rank goes in, the real shape comes out.
func TestUndeclaredShapes(t *testing.T) {
	s := load(t, identity(models.Int32, nil, nil))
	sig := s.Signature()
	if sig.Inputs[0].Shape != nil || sig.Outputs[0].Shape != nil {
		t.Errorf("signature %+v: want nil shapes for undeclared rank", sig)
	}
	for _, shape := range [][]int64{{4}, {1, 2, 3}, {2, 0}} {
		in := sample(models.Int32, shape)
		if n, _ := models.NumElements(shape); n > 4 {
			in = onnxtest.Tensor[int32]("x", models.Int32, shape, 1, 2, 3, 4, 5, 6)
		}
		expect(t, run(t, s, nil, in)[0], renamed(in, "y"), 0)
	}
	// A scalar through an output of undeclared rank is something
	// onnxruntime_go cannot convert: an error, not a crash or wrong data.
	if _, err := s.Run(context.Background(), []models.Tensor{sample(models.Int32, []int64{})}, nil); err == nil {
		t.Error("scalar through undeclared-rank output: want an error")
	} else {
		t.Logf("scalar through undeclared-rank output: %v", err)
	}
	// The session still works afterwards.
	in := sample(models.Int32, []int64{2})
	expect(t, run(t, s, nil, in)[0], renamed(in, "y"), 0)
}

// TestHalfDynamicOutputs: FP16/BF16 outputs with symbolic dimensions are
// sized from the inputs that share the dimension names.
func TestHalfDynamicOutputs(t *testing.T) {
	for _, dt := range []models.DataType{models.FP16, models.BF16} {
		t.Run(string(dt), func(t *testing.T) {
			g := onnxtest.Graph{
				Nodes: []onnxtest.Node{
					{Op: "Identity", Inputs: []string{"x"}, Outputs: []string{"y"}},
					{Op: "Transpose", Inputs: []string{"x"}, Outputs: []string{"yt"}},
				},
				Inputs: []onnxtest.Value{{Name: "x", Type: dt, Shape: []int64{-1, -1}, Params: []string{"batch", "n"}}},
				Outputs: []onnxtest.Value{
					{Name: "y", Type: dt, Shape: []int64{-1, -1}, Params: []string{"batch", "n"}},
					{Name: "yt", Type: dt, Shape: []int64{-1, -1}, Params: []string{"n", "batch"}},
				},
			}
			s := load(t, g)
			in := sample(dt, []int64{2, 3})
			out := run(t, s, nil, in)
			expect(t, out[0], renamed(in, "y"), 0)
			want := onnxtest.Tensor("yt", dt, []int64{3, 2}, transpose(onnxtest.Values[uint16](in), 2, 3)...)
			expect(t, out[1], want, 0)

			in = sample(dt, []int64{0, 3})
			expect(t, run(t, s, []string{"y"}, in)[0], renamed(in, "y"), 0)
		})
		t.Run(string(dt)+" unresolvable", func(t *testing.T) {
			setup(t)
			for name, out := range map[string]onnxtest.Value{
				"undeclared rank":   {Name: "y", Type: dt},
				"unknown dim_param": {Name: "y", Type: dt, Shape: []int64{-1}, Params: []string{"other"}},
			} {
				g := onnxtest.Graph{
					Nodes:   []onnxtest.Node{{Op: "Identity", Inputs: []string{"x"}, Outputs: []string{"y"}}},
					Inputs:  []onnxtest.Value{{Name: "x", Type: dt, Shape: []int64{-1}, Params: []string{"n"}}},
					Outputs: []onnxtest.Value{out},
				}
				_, err := ort.Load(onnxtest.Model(g, 17), ort.Options{})
				if !errors.Is(err, models.ErrUnsupportedDataType) {
					t.Errorf("%s: err = %v, want ErrUnsupportedDataType", name, err)
				}
			}
		})
	}
}

func transpose[T any](v []T, rows, cols int) []T {
	out := make([]T, len(v))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = v[r*cols+c]
		}
	}
	return out
}

// mixedGraph has three inputs of different datatypes and two outputs:
// y = Gather(a, idx) and m = Not(mask).
func mixedGraph() onnxtest.Graph {
	return onnxtest.Graph{
		Nodes: []onnxtest.Node{
			{Op: "Gather", Inputs: []string{"a", "idx"}, Outputs: []string{"y"}, Attrs: []onnxtest.Attr{onnxtest.Int("axis", 0)}},
			{Op: "Not", Inputs: []string{"mask"}, Outputs: []string{"m"}},
		},
		Inputs: []onnxtest.Value{
			{Name: "a", Type: models.FP32, Shape: []int64{-1, 3}, Params: []string{"n"}},
			{Name: "idx", Type: models.Int64, Shape: []int64{-1}, Params: []string{"k"}},
			{Name: "mask", Type: models.Bool, Shape: []int64{2, 2}},
		},
		Outputs: []onnxtest.Value{
			{Name: "y", Type: models.FP32, Shape: []int64{-1, 3}, Params: []string{"k"}},
			{Name: "m", Type: models.Bool, Shape: []int64{2, 2}},
		},
	}
}

func mixedInputs(n int) []models.Tensor {
	a := make([]float32, 3*n)
	for i := range a {
		a[i] = float32(i) + 0.5
	}
	return []models.Tensor{
		onnxtest.Tensor("mask", models.Bool, []int64{2, 2}, true, false, false, true),
		onnxtest.Tensor("idx", models.Int64, []int64{3}, int64(n-1), 0, int64(n-1)),
		onnxtest.Tensor("a", models.FP32, []int64{int64(n), 3}, a...),
	}
}

func mixedWant(n int) (y, m models.Tensor) {
	row := func(r int) []float32 {
		return []float32{float32(3*r) + 0.5, float32(3*r+1) + 0.5, float32(3*r+2) + 0.5}
	}
	var ys []float32
	ys = append(ys, row(n-1)...)
	ys = append(ys, row(0)...)
	ys = append(ys, row(n-1)...)
	return onnxtest.Tensor("y", models.FP32, []int64{3, 3}, ys...),
		onnxtest.Tensor("m", models.Bool, []int64{2, 2}, false, true, true, false)
}

func TestMultipleInputsAndOutputs(t *testing.T) {
	s := load(t, mixedGraph())
	sig := s.Signature()
	wantSig := models.Signature{
		Inputs: []models.TensorSpec{
			{Name: "a", DataType: models.FP32, Shape: []int64{-1, 3}},
			{Name: "idx", DataType: models.Int64, Shape: []int64{-1}},
			{Name: "mask", DataType: models.Bool, Shape: []int64{2, 2}},
		},
		Outputs: []models.TensorSpec{
			{Name: "y", DataType: models.FP32, Shape: []int64{-1, 3}},
			{Name: "m", DataType: models.Bool, Shape: []int64{2, 2}},
		},
	}
	if fmt.Sprint(sig) != fmt.Sprint(wantSig) {
		t.Errorf("signature\n got %+v\nwant %+v", sig, wantSig)
	}
	// Signature returns a copy.
	sig.Inputs[0].Shape[0] = 99
	if s.Signature().Inputs[0].Shape[0] != -1 {
		t.Error("Signature shares its slices with the session")
	}

	for _, n := range []int{1, 4, 7} {
		y, m := mixedWant(n)
		out := run(t, s, nil, mixedInputs(n)...) // inputs out of signature order
		if len(out) != 2 {
			t.Fatalf("got %d outputs, want 2", len(out))
		}
		expect(t, out[0], y, 0)
		expect(t, out[1], m, 0)

		out = run(t, s, []string{"m", "y"}, mixedInputs(n)...)
		expect(t, out[0], m, 0)
		expect(t, out[1], y, 0)

		out = run(t, s, []string{"y"}, mixedInputs(n)...)
		if len(out) != 1 {
			t.Fatalf("got %d outputs, want 1", len(out))
		}
		expect(t, out[0], y, 0)
	}
}

// TestScalarInputs feeds rank-0 tensors of several types.
func TestScalarInputs(t *testing.T) {
	g := onnxtest.Graph{
		Nodes: []onnxtest.Node{
			{Op: "Add", Inputs: []string{"x", "s"}, Outputs: []string{"y"}},
			{Op: "Mul", Inputs: []string{"i", "j"}, Outputs: []string{"k"}},
			{Op: "Not", Inputs: []string{"b"}, Outputs: []string{"nb"}},
		},
		Inputs: []onnxtest.Value{
			{Name: "x", Type: models.FP64, Shape: []int64{-1}},
			{Name: "s", Type: models.FP64, Shape: []int64{}},
			{Name: "i", Type: models.Int64, Shape: []int64{}},
			{Name: "j", Type: models.Int64, Shape: []int64{}},
			{Name: "b", Type: models.Bool, Shape: []int64{}},
		},
		Outputs: []onnxtest.Value{
			{Name: "y", Type: models.FP64, Shape: []int64{-1}},
			{Name: "k", Type: models.Int64, Shape: []int64{}},
			{Name: "nb", Type: models.Bool, Shape: []int64{}},
		},
	}
	s := load(t, g)
	out := run(t, s, nil,
		onnxtest.Tensor("x", models.FP64, []int64{3}, 1.0, 2, 3),
		onnxtest.Tensor("s", models.FP64, []int64{}, 0.5),
		onnxtest.Tensor("i", models.Int64, []int64{}, int64(-7)),
		onnxtest.Tensor("j", models.Int64, []int64{}, int64(6)),
		onnxtest.Tensor("b", models.Bool, []int64{}, true),
	)
	expect(t, out[0], onnxtest.Tensor("y", models.FP64, []int64{3}, 1.5, 2.5, 3.5), 0)
	expect(t, out[1], onnxtest.Tensor("k", models.Int64, []int64{}, int64(-42)), 0)
	expect(t, out[2], onnxtest.Tensor("nb", models.Bool, []int64{}, false), 0)
	if out[1].Shape == nil {
		t.Error("scalar output has a nil Shape, want empty")
	}
}

// TestUnalignedInput feeds data that does not start on an element
// boundary, as a tensor cut from a larger request body does.
func TestUnalignedInput(t *testing.T) {
	s := load(t, identity(models.FP64, []int64{-1}, []int64{-1}))
	want := onnxtest.Tensor("x", models.FP64, []int64{3}, 1.25, -2.5, 1e300)
	buf := make([]byte, len(want.Data)+1)
	copy(buf[1:], want.Data)
	in := models.Tensor{Name: "x", DataType: models.FP64, Shape: []int64{3}, Data: buf[1:]}
	expect(t, run(t, s, nil, in)[0], renamed(want, "y"), 0)
}

// TestStrings runs BYTES through string ops.
func TestStrings(t *testing.T) {
	g := onnxtest.Graph{
		Nodes: []onnxtest.Node{
			{Op: "Cast", Inputs: []string{"n"}, Outputs: []string{"s"}, Attrs: []onnxtest.Attr{onnxtest.Int("to", 8)}},
			{Op: "Concat", Inputs: []string{"x", "s"}, Outputs: []string{"y"}, Attrs: []onnxtest.Attr{onnxtest.Int("axis", 0)}},
		},
		Inputs: []onnxtest.Value{
			{Name: "x", Type: models.Bytes, Shape: []int64{-1}},
			{Name: "n", Type: models.Int32, Shape: []int64{-1}},
		},
		Outputs: []onnxtest.Value{{Name: "y", Type: models.Bytes, Shape: []int64{-1}}},
	}
	s := load(t, g)
	out := run(t, s, nil,
		onnxtest.Strings("x", []int64{3}, "", "héllo", "\xff\x01"),
		onnxtest.Tensor("n", models.Int32, []int64{2}, int32(42), -7),
	)
	expect(t, out[0], onnxtest.Strings("y", []int64{5}, "", "héllo", "\xff\x01", "42", "-7"), 0)

	_, err := s.Run(context.Background(), []models.Tensor{
		onnxtest.Strings("x", []int64{1}, "nul\x00inside"),
		onnxtest.Tensor[int32]("n", models.Int32, []int64{0}),
	}, nil)
	if !errors.Is(err, ort.ErrInvalidInput) || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("string with NUL: err = %v, want ErrInvalidInput naming the NUL byte", err)
	}
}

func TestBadInputs(t *testing.T) {
	s := load(t, mixedGraph())
	good := func() []models.Tensor { return mixedInputs(2) }
	with := func(i int, f func(*models.Tensor)) []models.Tensor {
		in := good()
		f(&in[i])
		return in
	}
	// mixedInputs order: 0 mask BOOL [2,2], 1 idx INT64 [-1], 2 a FP32 [-1,3]
	tests := []struct {
		name    string
		inputs  []models.Tensor
		outputs []string
		mention string
	}{
		{"wrong datatype", with(2, func(t *models.Tensor) {
			*t = onnxtest.Tensor("a", models.FP64, []int64{2, 3}, 1.0, 2, 3, 4, 5, 6)
		}), nil, "datatype FP64, model expects FP32"},
		{"wrong rank", with(2, func(t *models.Tensor) { t.Shape = []int64{6} }), nil, "rank 1"},
		{"wrong fixed dim", with(2, func(t *models.Tensor) { t.Shape = []int64{3, 2} }), nil, "model expects [-1 3]"},
		{"wrong fixed dim of a fixed shape", with(0, func(t *models.Tensor) { t.Shape = []int64{4, 1} }), nil, `"mask"`},
		{"data too short", with(2, func(t *models.Tensor) { t.Data = t.Data[:len(t.Data)-1] }), nil, "needs 24 bytes, got 23"},
		{"data too long", with(1, func(t *models.Tensor) { t.Data = append(t.Data, 0) }), nil, "needs 24 bytes, got 25"},
		{"negative dimension", with(1, func(t *models.Tensor) { t.Shape = []int64{-1} }), nil, "negative dimension"},
		{"bool not 0 or 1", with(0, func(t *models.Tensor) { t.Data[1] = 2 }), nil, "not 0 or 1"},
		{"unknown datatype", with(0, func(t *models.Tensor) { t.DataType = "FP8" }), nil, "FP8"},
		{"unknown input", append(good(), onnxtest.Tensor("extra", models.FP32, []int64{1}, float32(1))), nil, `unknown input "extra"`},
		{"missing input", good()[1:], nil, "missing input(s) mask"},
		{"all inputs missing", nil, nil, "missing input(s) a, idx, mask"},
		{"duplicate input", append(good(), good()[0]), nil, `"mask" given twice`},
		{"unknown output", good(), []string{"y", "nope"}, `unknown output "nope"`},
		{"duplicate output", good(), []string{"y", "y"}, `"y" requested twice`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := s.Run(context.Background(), tc.inputs, tc.outputs)
			if err == nil {
				t.Fatalf("Run succeeded with %d outputs, want an error", len(out))
			}
			if !errors.Is(err, ort.ErrInvalidInput) {
				t.Errorf("err = %v, want it to wrap ErrInvalidInput", err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("err = %q, want it to mention %q", err, tc.mention)
			}
		})
	}
	// The session is fine afterwards.
	y, _ := mixedWant(2)
	expect(t, run(t, s, []string{"y"}, good()...)[0], y, 0)
}

func TestInvalidModels(t *testing.T) {
	setup(t)
	valid := onnxtest.Model(mixedGraph(), 17)
	cases := map[string][]byte{
		"nil":             nil,
		"empty":           {},
		"text":            []byte("this is not an ONNX model"),
		"json":            []byte(`{"graph": {}}`),
		"zeros":           make([]byte, 64),
		"0xff":            []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"no graph":        {0x08, 0x08}, // ir_version only
		"unknown op":      onnxtest.Model(onnxtest.Graph{Nodes: []onnxtest.Node{{Op: "NoSuchOp", Inputs: []string{"x"}, Outputs: []string{"y"}}}, Inputs: identity(models.FP32, nil, nil).Inputs, Outputs: identity(models.FP32, nil, nil).Outputs}, 17),
		"dangling output": onnxtest.Model(onnxtest.Graph{Inputs: identity(models.FP32, nil, nil).Inputs, Outputs: identity(models.FP32, nil, nil).Outputs}, 17),
		"no inputs":       onnxtest.Model(onnxtest.Graph{Nodes: []onnxtest.Node{{Op: "Constant", Outputs: []string{"y"}, Attrs: []onnxtest.Attr{onnxtest.TensorAttr("value", onnxtest.Tensor("c", models.FP32, []int64{1}, float32(1)))}}}, Outputs: identity(models.FP32, nil, nil).Outputs}, 17),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := ort.Load(b, ort.Options{})
			if err == nil {
				s.Close()
				t.Fatal("Load succeeded, want an error")
			}
			if !errors.Is(err, ort.ErrInvalidModel) {
				t.Errorf("err = %v, want ErrInvalidModel", err)
			}
			if _, err := ort.Inspect(b); err == nil {
				t.Error("Inspect succeeded, want an error")
			}
		})
	}
	t.Run("every truncation", func(t *testing.T) {
		for n := 0; n < len(valid); n++ {
			if s, err := ort.Load(valid[:n], ort.Options{}); err == nil {
				// A prefix can be a valid model only if it drops whole
				// trailing fields; then it must still run or fail cleanly.
				s.Close()
			}
		}
	})
	t.Run("unsupported types", func(t *testing.T) {
		for name, v := range map[string]onnxtest.Value{
			"complex64": {Name: "x", RawType: 14, Shape: []int64{2}},
			"float8":    {Name: "x", RawType: 17, Shape: []int64{2}},
		} {
			g := onnxtest.Graph{
				Nodes:   []onnxtest.Node{{Op: "Identity", Inputs: []string{"x"}, Outputs: []string{"y"}}},
				Inputs:  []onnxtest.Value{v},
				Outputs: []onnxtest.Value{{Name: "y", RawType: v.RawType, Shape: v.Shape}},
			}
			_, err := ort.Load(onnxtest.Model(g, 17), ort.Options{})
			if !errors.Is(err, models.ErrUnsupportedDataType) {
				t.Errorf("%s: err = %v, want ErrUnsupportedDataType", name, err)
			}
		}
	})
}

func TestInspectAndLoadFile(t *testing.T) {
	setup(t)
	model := onnxtest.Model(mixedGraph(), 17)
	sig, err := ort.Inspect(model)
	if err != nil {
		t.Fatal(err)
	}
	if err := sig.Validate(); err != nil {
		t.Errorf("Inspect's signature does not validate: %v", err)
	}
	s := load(t, mixedGraph())
	if fmt.Sprint(sig) != fmt.Sprint(s.Signature()) {
		t.Errorf("Inspect %+v, Load %+v", sig, s.Signature())
	}

	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(path, model, 0o644); err != nil {
		t.Fatal(err)
	}
	fs, err := ort.LoadFile(path, ort.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	y, _ := mixedWant(3)
	expect(t, run(t, fs, []string{"y"}, mixedInputs(3)...)[0], y, 0)

	if _, err := ort.LoadFile(filepath.Join(t.TempDir(), "missing.onnx"), ort.Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFile of a missing file: err = %v, want ErrNotExist", err)
	}
}

func TestOptions(t *testing.T) {
	if err := ort.DefaultOptions().Validate(); err != nil {
		t.Errorf("DefaultOptions: %v", err)
	}
	if err := (ort.Options{}).Validate(); err != nil {
		t.Errorf("zero Options: %v", err)
	}
	bad := map[string]ort.Options{
		"negative intra":  {IntraOpThreads: -1},
		"negative inter":  {InterOpThreads: -2},
		"opt level":       {GraphOptimization: "max"},
		"provider":        {Provider: "tpu"},
		"device":          {Provider: "cuda", DeviceID: -1},
		"gpu mem":         {GPUMemLimit: -5},
		"arena extension": {ArenaExtendStrategy: "kDoubling"},
	}
	for name, o := range bad {
		if err := o.Validate(); !errors.Is(err, ort.ErrInvalidOptions) {
			t.Errorf("%s: Validate = %v, want ErrInvalidOptions", name, err)
		}
		setup(t)
		if _, err := ort.Load(onnxtest.Model(mixedGraph(), 17), o); !errors.Is(err, ort.ErrInvalidOptions) {
			t.Errorf("%s: Load = %v, want ErrInvalidOptions", name, err)
		}
	}

	yes, no := true, false
	good := map[string]ort.Options{
		"defaults":          ort.DefaultOptions(),
		"threads, spinning": {IntraOpThreads: 4, InterOpThreads: 2, Spinning: &yes},
		"no arena":          {MemArena: &no},
		"disable":           {GraphOptimization: ort.OptimizeDisable},
		"basic":             {GraphOptimization: ort.OptimizeBasic},
		"extended":          {GraphOptimization: ort.OptimizeExtended},
		"all":               {GraphOptimization: ort.OptimizeAll, Spinning: &no, MemArena: &yes},
	}
	for name, o := range good {
		t.Run(name, func(t *testing.T) {
			s := loadWith(t, mixedGraph(), o)
			if s.Provider() != ort.ProviderCPU || s.ProviderNote() != "" {
				t.Errorf("provider %q (%q), want cpu", s.Provider(), s.ProviderNote())
			}
			y, m := mixedWant(5)
			out := run(t, s, nil, mixedInputs(5)...)
			expect(t, out[0], y, 0)
			expect(t, out[1], m, 0)
		})
	}
}

// TestCUDAFallback: with the CPU-only library setup installs, CUDA falls
// back with a note, or fails when required; with a CUDA build on a GPU it
// runs on CUDA.
func TestCUDAFallback(t *testing.T) {
	s := loadWith(t, mixedGraph(), ort.Options{Provider: ort.ProviderCUDA, DeviceID: 0, GPUMemLimit: 1 << 30, ArenaExtendStrategy: ort.ArenaSameAsRequested})
	if s.Provider() == ort.ProviderCUDA {
		// A CUDA-enabled library with a GPU: no fallback to check, but the
		// session must run on CUDA, say nothing of a fallback, and agree.
		if s.ProviderNote() != "" {
			t.Errorf("running on CUDA, yet ProviderNote = %q", s.ProviderNote())
		}
		y, _ := mixedWant(2)
		expect(t, run(t, s, []string{"y"}, mixedInputs(2)...)[0], y, 0)
		return
	}
	if s.Provider() != ort.ProviderCPU {
		t.Fatalf("provider %q, want cpu (fallback) or cuda", s.Provider())
	}
	if !strings.Contains(s.ProviderNote(), "cuda") {
		t.Errorf("ProviderNote %q does not explain the fallback", s.ProviderNote())
	}
	t.Logf("note: %s", s.ProviderNote())
	y, _ := mixedWant(2)
	expect(t, run(t, s, []string{"y"}, mixedInputs(2)...)[0], y, 0)

	_, err := ort.Load(onnxtest.Model(mixedGraph(), 17), ort.Options{Provider: ort.ProviderCUDA, RequireProvider: true})
	if !errors.Is(err, ort.ErrProviderUnavailable) || errors.Is(err, ort.ErrInvalidModel) {
		t.Errorf("RequireProvider: err = %v, want ErrProviderUnavailable (and not ErrInvalidModel)", err)
	}
	// A model the CPU cannot load either is reported as such.
	_, err = ort.Load([]byte("garbage"), ort.Options{Provider: ort.ProviderCUDA, RequireProvider: true})
	if !errors.Is(err, ort.ErrInvalidModel) {
		t.Errorf("garbage with cuda: err = %v, want ErrInvalidModel", err)
	}
}

func TestConcurrentRuns(t *testing.T) {
	s := loadWith(t, mixedGraph(), ort.Options{IntraOpThreads: 1})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				n := 1 + (g+i)%9
				out, err := s.Run(context.Background(), mixedInputs(n), nil)
				if err != nil {
					errs <- err
					return
				}
				y, m := mixedWant(n)
				if err := onnxtest.Compare(out[0], y, 0); err != nil {
					errs <- err
					return
				}
				if err := onnxtest.Compare(out[1], m, 0); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// slowGraph chains MatMuls so a run takes long enough to cancel.
func slowGraph(n int) onnxtest.Graph {
	g := onnxtest.Graph{
		Inputs:  []onnxtest.Value{{Name: "x", Type: models.FP32, Shape: []int64{-1, -1}}},
		Outputs: []onnxtest.Value{{Name: fmt.Sprintf("h%d", n), Type: models.FP32, Shape: []int64{-1, -1}}},
	}
	prev := "x"
	for i := 1; i <= n; i++ {
		cur := fmt.Sprintf("h%d", i)
		g.Nodes = append(g.Nodes, onnxtest.Node{Op: "MatMul", Inputs: []string{prev, "x"}, Outputs: []string{cur}})
		prev = cur
	}
	return g
}

func TestContext(t *testing.T) {
	const n, short, long = 256, 50, 3000
	x := onnxtest.Tensor("x", models.FP32, []int64{n, n}, make([]float32, n*n)...)
	s := loadWith(t, slowGraph(short), ort.Options{IntraOpThreads: 1})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Run(ctx, []models.Tensor{x}, nil); err != context.Canceled {
		t.Errorf("done context: err = %v, want context.Canceled", err)
	}

	// Time the short chain to estimate the long one, which never runs to
	// the end.
	start := time.Now()
	if _, err := s.Run(context.Background(), []models.Tensor{x}, nil); err != nil {
		t.Fatal(err)
	}
	estimate := time.Since(start) * long / short

	s = loadWith(t, slowGraph(long), ort.Options{IntraOpThreads: 1})
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err := s.Run(ctx, []models.Tensor{x}, nil)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled run: err = %v, want DeadlineExceeded", err)
	}
	t.Logf("full run would take about %v; cancelled after %v", estimate, took)
	if took > estimate/4 {
		t.Errorf("cancelled run took %v of an estimated %v: not stopped early", took, estimate)
	}
	// And the session still runs.
	if _, err := s.Run(context.Background(), []models.Tensor{onnxtest.Tensor("x", models.FP32, []int64{1, 1}, float32(1))}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestClose(t *testing.T) {
	setup(t)
	s, err := ort.Load(onnxtest.Model(slowGraph(40), 17), ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 128
	x := onnxtest.Tensor("x", models.FP32, []int64{n, n}, make([]float32, n*n)...)
	var wg sync.WaitGroup
	results := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Run(context.Background(), []models.Tensor{x}, nil)
			results <- err
		}()
	}
	time.Sleep(5 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	for err := range results {
		// Runs in flight finish; runs that start after Close get ErrClosed.
		if err != nil && !errors.Is(err, ort.ErrClosed) {
			t.Errorf("run around Close: %v", err)
		}
	}
	if _, err := s.Run(context.Background(), []models.Tensor{x}, nil); !errors.Is(err, ort.ErrClosed) {
		t.Errorf("Run after Close: err = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestInit(t *testing.T) {
	setup(t)
	lib, err := ort.FindLibrary("")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	versions := make(chan string, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := ort.Init("")
			if err != nil {
				t.Error(err)
			}
			versions <- v
		}()
	}
	wg.Wait()
	close(versions)
	first := ""
	for v := range versions {
		if first == "" {
			first = v
		}
		if v != first || v == "" {
			t.Errorf("Init returned %q and %q", first, v)
		}
	}
	if v, err := ort.Init(lib); err != nil || v != first {
		t.Errorf("Init(%s) = %q, %v; want %q", lib, v, err, first)
	}
	other := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ort.Init(other); !errors.Is(err, ort.ErrAlreadyInitialized) {
		t.Errorf("Init with another library: err = %v, want ErrAlreadyInitialized", err)
	}
}

// TestNoLeaks runs many large runs through the preallocated, the
// runtime-allocated and the failing paths, and wants the process's
// resident memory to stay flat.
func TestNoLeaks(t *testing.T) {
	if _, err := os.Stat("/proc/self/statm"); err != nil {
		t.Fatalf("reading /proc/self/statm (this leak check needs Linux): %v", err)
	}
	fixed := load(t, identity(models.FP32, []int64{256, 256}, []int64{256, 256}))
	dyn := load(t, identity(models.FP32, []int64{-1, 256}, []int64{-1, 256}))
	str := load(t, identity(models.Bytes, []int64{-1}, []int64{-1}))
	x := onnxtest.Tensor("x", models.FP32, []int64{256, 256}, make([]float32, 256*256)...) // 256 KiB
	strs := make([]string, 1024)
	for i := range strs {
		strs[i] = strings.Repeat("s", 200)
	}
	xs := onnxtest.Strings("x", []int64{1024}, strs...)
	round := func() {
		for i := 0; i < 100; i++ {
			run(t, fixed, nil, x)
			run(t, dyn, nil, x)
			run(t, str, nil, xs)
			bad := x
			bad.Shape = []int64{128, 256}
			if _, err := fixed.Run(context.Background(), []models.Tensor{bad}, nil); err == nil {
				t.Fatal("bad shape accepted")
			}
		}
	}
	round() // warm up arenas and the Go heap
	before := rss(t)
	for i := 0; i < 5; i++ {
		round()
	}
	after := rss(t)
	t.Logf("RSS %d MiB -> %d MiB over 1500 runs moving ~750 MiB", before>>20, after>>20)
	if after-before > 64<<20 {
		t.Errorf("RSS grew by %d MiB", (after-before)>>20)
	}
}

func rss(t *testing.T) int64 {
	t.Helper()
	debug.FreeOSMemory() // return Go garbage, so only C allocations count
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		t.Fatal(err)
	}
	return resident * int64(os.Getpagesize())
}
