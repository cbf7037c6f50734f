package golden_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/golden"
)

// doubler is an in-memory session: output "y" is 2 * input "x" (FP32,
// any shape). It counts runs and can be told to return too few outputs.
type doubler struct {
	runs      int
	dropOuts  bool
	failAfter int // fail runs after this many (0: never)
}

func (d *doubler) Signature() models.Signature {
	return models.Signature{
		Inputs:  []models.TensorSpec{{Name: "x", DataType: models.FP32, Shape: []int64{-1, 2}}},
		Outputs: []models.TensorSpec{{Name: "y", DataType: models.FP32, Shape: []int64{-1, 2}}},
	}
}

func (d *doubler) Run(ctx context.Context, in []models.Tensor, outputs []string) ([]models.Tensor, error) {
	d.runs++
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if d.failAfter > 0 && d.runs > d.failAfter {
		return nil, errors.New("runtime exploded")
	}
	if len(in) != 1 || in[0].Name != "x" || in[0].DataType != models.FP32 {
		return nil, fmt.Errorf("want one FP32 input x, got %d inputs", len(in))
	}
	if outputs == nil {
		outputs = []string{"y"}
	}
	if len(outputs) != 1 || outputs[0] != "y" {
		return nil, fmt.Errorf("unknown outputs %v", outputs)
	}
	if d.dropOuts {
		return nil, nil
	}
	out := make([]byte, len(in[0].Data))
	for i := 0; i+4 <= len(out); i += 4 {
		v := math.Float32frombits(binary.LittleEndian.Uint32(in[0].Data[i:]))
		binary.LittleEndian.PutUint32(out[i:], math.Float32bits(2*v))
	}
	return []models.Tensor{{Name: "y", DataType: models.FP32, Shape: append([]int64{}, in[0].Shape...), Data: out}}, nil
}

func (d *doubler) Provider() string { return "cpu" }
func (d *doubler) Close() error     { return nil }

var _ models.Session = (*doubler)(nil)

func gt(name string, dt models.DataType, shape []int64, data string) models.GoldenTensor {
	return models.GoldenTensor{Name: name, DataType: dt, Shape: shape, Data: json.RawMessage(data)}
}

func example(in, out string, tol float64) models.Golden {
	return models.Golden{
		Inputs:    []models.GoldenTensor{gt("x", models.FP32, []int64{1, 2}, in)},
		Outputs:   []models.GoldenTensor{gt("y", models.FP32, []int64{1, 2}, out)},
		Tolerance: tol,
	}
}

func TestRunGolden(t *testing.T) {
	tests := []struct {
		name    string
		golden  []models.Golden
		session *doubler
		want    string // "" for success
		runs    int
	}{
		{"none", nil, &doubler{}, "", 0},
		{"exact", []models.Golden{example("[1,2]", "[2,4]", 0)}, &doubler{}, "", 1},
		{"within tolerance", []models.Golden{example("[1,2]", "[2.001,4]", 0.01)}, &doubler{}, "", 1},
		{"two examples", []models.Golden{example("[1,2]", "[2,4]", 0), example("[0.5,-1]", "[1,-2]", 0)}, &doubler{}, "", 2},
		{"wrong output", []models.Golden{example("[1,2]", "[2,4]", 0), example("[1,2]", "[2,5]", 0.1)}, &doubler{},
			`golden example 1: output "y" element 1: 4, golden 5 (tolerance 0.1)`, 2},
		{"bad input data", []models.Golden{example("[1,2,3]", "[2,4]", 0)}, &doubler{}, "golden example 0 inputs: ", 0},
		{"bad output data", []models.Golden{example("[1,2]", `["a","b"]`, 0)}, &doubler{}, "golden example 0 outputs: ", 0},
		{"run fails", []models.Golden{example("[1,2]", "[2,4]", 0), example("[1,2]", "[2,4]", 0)}, &doubler{failAfter: 1},
			"golden example 1: runtime exploded", 2},
		{"session drops outputs", []models.Golden{example("[1,2]", "[2,4]", 0)}, &doubler{dropOuts: true},
			"golden example 0: the session returned 0 outputs for the 1 asked for", 1},
		{"wrong output shape", []models.Golden{{
			Inputs:  []models.GoldenTensor{gt("x", models.FP32, []int64{1, 2}, "[1,2]")},
			Outputs: []models.GoldenTensor{gt("y", models.FP32, []int64{2, 1}, "[2,4]")},
		}}, &doubler{}, `golden example 0: output "y": shape [1 2], golden [2 1]`, 1},
		{"wrong output datatype", []models.Golden{{
			Inputs:  []models.GoldenTensor{gt("x", models.FP32, []int64{1, 2}, "[1,2]")},
			Outputs: []models.GoldenTensor{gt("y", models.FP64, []int64{1, 2}, "[2,4]")},
		}}, &doubler{}, `golden example 0: output "y": datatype FP32, golden FP64`, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := golden.RunGolden(context.Background(), tc.session, tc.golden)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("RunGolden: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("RunGolden error = %v, want one containing %q", err, tc.want)
			}
			if tc.session.runs != tc.runs {
				t.Errorf("%d runs, want %d", tc.session.runs, tc.runs)
			}
		})
	}
}

func TestRunGoldenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := golden.RunGolden(ctx, &doubler{}, []models.Golden{example("[1,2]", "[2,4]", 0)})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

func TestRunInputs(t *testing.T) {
	s := &doubler{}
	// Outputs are not compared: a wrong expected output still passes.
	if err := golden.RunInputs(context.Background(), s, []models.Golden{example("[1,2]", "[9,9]", 0), example("[3,4]", "[0,0]", 0)}); err != nil {
		t.Fatalf("RunInputs: %v", err)
	}
	if s.runs != 2 {
		t.Errorf("%d runs, want 2", s.runs)
	}
	err := golden.RunInputs(context.Background(), &doubler{failAfter: 1}, []models.Golden{example("[1,2]", "[]", 0), example("[1,2]", "[]", 0)})
	if err == nil || !strings.Contains(err.Error(), "golden example 1: runtime exploded") {
		t.Errorf("failing run: error %v", err)
	}
	err = golden.RunInputs(context.Background(), &doubler{}, []models.Golden{example("[1]", "[]", 0)})
	if err == nil || !strings.Contains(err.Error(), "golden example 0 inputs:") {
		t.Errorf("bad input: error %v", err)
	}
}

func TestGoldenTensors(t *testing.T) {
	ts, err := golden.GoldenTensors([]models.GoldenTensor{
		gt("a", models.FP32, []int64{2}, "[1.5, -2]"),
		gt("b", models.Int64, []int64{1, 1}, "[[7]]"),
		gt("c", models.Bool, []int64{2}, "[true,false]"),
		gt("d", models.Bytes, []int64{1}, `["hi"]`),
		gt(`we"ird\name`, models.FP64, []int64{}, "[3]"),
	})
	if err != nil {
		t.Fatalf("GoldenTensors: %v", err)
	}
	if len(ts) != 5 {
		t.Fatalf("%d tensors, want 5", len(ts))
	}
	if v, _ := ts[0].Float64s(); len(v) != 2 || v[0] != 1.5 || v[1] != -2 {
		t.Errorf("a = %v", v)
	}
	if v, _ := ts[1].Float64s(); len(v) != 1 || v[0] != 7 {
		t.Errorf("b = %v", v)
	}
	if string(ts[3].Data) != "\x02\x00\x00\x00hi" {
		t.Errorf("d data %q", ts[3].Data)
	}
	if ts[4].Name != `we"ird\name` || len(ts[4].Shape) != 0 {
		t.Errorf("e = %q shape %v", ts[4].Name, ts[4].Shape)
	}

	bad := []struct {
		name string
		g    models.GoldenTensor
		want string
	}{
		{"no data", gt("x", models.FP32, []int64{1}, ""), `tensor "x" has no data`},
		{"invalid JSON", gt("x", models.FP32, []int64{1}, "[1,"), `tensor "x": data is not valid JSON`},
		{"injection", gt("x", models.FP32, []int64{1}, `[1]},{"name":"z"`), "not valid JSON"},
		{"count", gt("x", models.FP32, []int64{3}, "[1,2]"), "x"},
		{"datatype", gt("x", "FP33", []int64{1}, "[1]"), "FP33"},
		{"out of range", gt("x", models.Uint8, []int64{1}, "[300]"), "x"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := golden.GoldenTensors([]models.GoldenTensor{tc.g}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func f32(name string, shape []int64, v ...float32) models.Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return models.Tensor{Name: name, DataType: models.FP32, Shape: shape, Data: b}
}

func bytesTensor(name string, s ...string) models.Tensor {
	var b []byte
	for _, e := range s {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return models.Tensor{Name: name, DataType: models.Bytes, Shape: []int64{int64(len(s))}, Data: b}
}

func TestCompareTensors(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	tests := []struct {
		name      string
		got, want models.Tensor
		tol       float64
		err       string // "" for equal
	}{
		{"equal", f32("y", []int64{2}, 1, 2), f32("y", []int64{2}, 1, 2), 0, ""},
		{"within", f32("y", []int64{2}, 1, 2.05), f32("y", []int64{2}, 1, 2), 0.1, ""},
		{"outside", f32("y", []int64{2}, 1, 2.5), f32("y", []int64{2}, 1, 2), 0.1, `output "y" element 1: 2.5, golden 2 (tolerance 0.1)`},
		{"nan matches nan", f32("y", []int64{1}, nan), f32("y", []int64{1}, nan), 0, ""},
		{"nan vs number", f32("y", []int64{1}, nan), f32("y", []int64{1}, 1), 10, "element 0: NaN, golden 1"},
		{"equal infinities", f32("y", []int64{1}, inf), f32("y", []int64{1}, inf), 0, ""},
		{"opposite infinities", f32("y", []int64{1}, -inf), f32("y", []int64{1}, inf), 1e9, "element 0"},
		{"shape", f32("y", []int64{1, 2}, 1, 2), f32("y", []int64{2}, 1, 2), 0, `output "y": shape [1 2], golden [2]`},
		{"datatype", models.Tensor{Name: "y", DataType: models.FP64, Shape: []int64{}, Data: make([]byte, 8)}, f32("y", []int64{}, 0), 0, "datatype FP64, golden FP32"},
		{"bytes equal", bytesTensor("s", "a", "bc"), bytesTensor("s", "a", "bc"), 0, ""},
		{"bytes differ", bytesTensor("s", "a", "bc"), bytesTensor("s", "a", "bd"), 0, `output "s" element 1: "bc", golden "bd"`},
		{"bytes truncated", models.Tensor{Name: "s", DataType: models.Bytes, Shape: []int64{1}, Data: []byte{9, 0, 0, 0, 'a'}}, bytesTensor("s", "a"), 0, "BYTES element 0 needs 9 bytes"},
		{"short data", models.Tensor{Name: "y", DataType: models.FP32, Shape: []int64{2}, Data: make([]byte, 4)}, f32("y", []int64{2}, 0, 0), 0, "1 elements, golden 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := golden.CompareTensors(&tc.got, &tc.want, tc.tol)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("CompareTensors: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("CompareTensors error = %v, want one containing %q", err, tc.err)
			}
		})
	}
}

const oneExample = `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}],
 "outputs":[{"name":"y","datatype":"FP32","shape":[1,2],"data":[2,4]}],"tolerance":0.001}`

func TestParseGoldenFile(t *testing.T) {
	good := []struct {
		name string
		in   string
		n    int
	}{
		{"array", "[" + oneExample + "]", 1},
		{"object", `{"golden":[` + oneExample + "," + oneExample + "]}", 2},
		{"manifest", `{"name":"m","version":"v1","golden":[` + oneExample + `],"labels":{"a":"b"}}`, 1},
		{"whitespace", "\n\t [" + oneExample + "]\n", 1},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			gs, err := golden.ParseGoldenFile([]byte(tc.in))
			if err != nil {
				t.Fatalf("ParseGoldenFile: %v", err)
			}
			if len(gs) != tc.n {
				t.Fatalf("%d examples, want %d", len(gs), tc.n)
			}
			if gs[0].Tolerance != 0.001 || gs[0].Inputs[0].Name != "x" {
				t.Errorf("example decoded as %+v", gs[0])
			}
			if err := golden.RunGolden(context.Background(), &doubler{}, gs); err != nil {
				t.Errorf("parsed examples do not run: %v", err)
			}
		})
	}
	bad := []struct {
		name, in, want string
	}{
		{"empty", "  ", "golden file is empty"},
		{"scalar", "42", "want a JSON array of examples"},
		{"no golden field", `{"examples":[]}`, `object has no "golden" field`},
		{"golden not array", `{"golden":{}}`, `"golden" is not an array`},
		{"no examples", `[]`, "has no examples"},
		{"no examples in object", `{"golden":[]}`, "has no examples"},
		{"broken JSON", `[{"inputs":`, "golden file:"},
		{"misspelt field", `[{"input":[]}]`, `unknown field "input"`},
		{"trailing data", "[" + oneExample + "] []", "unexpected data after the examples"},
		{"no inputs", `[{"inputs":[],"outputs":[{"name":"y","datatype":"FP32","shape":[1],"data":[1]}]}]`, "golden example 0 has no inputs"},
		{"no outputs", `[{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}]}]`, "golden example 0 has no outputs"},
		{"negative tolerance", `[{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"outputs":[{"name":"y","datatype":"FP32","shape":[1],"data":[1]}],"tolerance":-1}]`, "tolerance -1"},
		{"duplicate input", `[{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]},{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"outputs":[{"name":"y","datatype":"FP32","shape":[1],"data":[1]}]}]`, `inputs: "x" appears twice`},
		{"unnamed output", `[{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"outputs":[{"datatype":"FP32","shape":[1],"data":[1]}]}]`, "outputs: tensor 0 has no name"},
		{"data does not fit shape", `[{"inputs":[{"name":"x","datatype":"FP32","shape":[3],"data":[1]}],"outputs":[{"name":"y","datatype":"FP32","shape":[1],"data":[1]}]}]`, "golden example 0 inputs:"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			gs, err := golden.ParseGoldenFile([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseGoldenFile error = %v, want one containing %q", err, tc.want)
			}
			if gs != nil {
				t.Error("examples came back with the error")
			}
		})
	}
}

func TestValidateGoldenTolerance(t *testing.T) {
	for _, tol := range []float64{math.NaN(), math.Inf(1)} {
		if err := golden.ValidateGolden([]models.Golden{example("[1,2]", "[2,4]", tol)}); err == nil || !strings.Contains(err.Error(), "tolerance") {
			t.Errorf("tolerance %v: error %v", tol, err)
		}
	}
	if err := golden.ValidateGolden([]models.Golden{example("[1,2]", "[2,4]", 0.5)}); err != nil {
		t.Errorf("valid example: %v", err)
	}
}
