package validate_test

import (
	"reflect"
	"testing"

	"github.com/petrel-mesh/petrel/coordinator/validate"
	"github.com/petrel-mesh/petrel/models"
)

func spec(name string, dt models.DataType, shape ...int64) models.TensorSpec {
	if shape == nil {
		shape = []int64{}
	}
	return models.TensorSpec{Name: name, DataType: dt, Shape: shape}
}

func anyRank(name string, dt models.DataType) models.TensorSpec {
	return models.TensorSpec{Name: name, DataType: dt}
}

func sig(in []models.TensorSpec, out ...models.TensorSpec) models.Signature {
	return models.Signature{Inputs: in, Outputs: out}
}

func ins(s ...models.TensorSpec) []models.TensorSpec { return s }

func TestCompareSignatures(t *testing.T) {
	const f32, f64, i64 = models.FP32, models.FP64, models.Int64
	base := sig(ins(spec("x", f32, -1, 4)), spec("y", f32, -1, 2))
	tests := []struct {
		name            string
		prev, next      models.Signature
		breaking, notes []string
	}{
		{"identical", base, base, nil, nil},
		{"input datatype", base, sig(ins(spec("x", f64, -1, 4)), spec("y", f32, -1, 2)),
			[]string{`input "x": datatype FP32 -> FP64`}, nil},
		{"input width", base, sig(ins(spec("x", f32, -1, 5)), spec("y", f32, -1, 2)),
			[]string{`input "x": dimension 1: 4 -> 5`}, nil},
		{"input dynamic to fixed", base, sig(ins(spec("x", f32, 1, 4)), spec("y", f32, -1, 2)),
			[]string{`input "x": dimension 0: dynamic -> 1`}, nil},
		{"input fixed to dynamic", sig(ins(spec("x", f32, 1, 4)), spec("y", f32, 1, 2)), base,
			nil, []string{`input "x": dimension 0: 1 -> dynamic`, `output "y": dimension 0: 1 -> dynamic`}},
		{"input rank", base, sig(ins(spec("x", f32, -1, 4, 1)), spec("y", f32, -1, 2)),
			[]string{`input "x": rank 2 -> 3 (shape [-1 4] -> [-1 4 1])`}, nil},
		{"input rank declared", sig(ins(anyRank("x", f32)), spec("y", f32, -1, 2)), base,
			[]string{`input "x": shape any -> [-1 4]`}, nil},
		{"input rank undeclared", base, sig(ins(anyRank("x", f32)), spec("y", f32, -1, 2)),
			nil, []string{`input "x": shape [-1 4] -> any`}},
		{"input renamed", base, sig(ins(spec("features", f32, -1, 4)), spec("y", f32, -1, 2)),
			[]string{`input "x" removed`, `input "features" added (every input is required)`}, nil},
		{"input added", base, sig(ins(spec("x", f32, -1, 4), spec("mask", i64, -1)), spec("y", f32, -1, 2)),
			[]string{`input "mask" added (every input is required)`}, nil},
		{"inputs reordered", sig(ins(spec("a", f32, 1), spec("b", f32, 1)), spec("y", f32, 1)),
			sig(ins(spec("b", f32, 1), spec("a", f32, 1)), spec("y", f32, 1)), nil, nil},
		{"output removed", sig(ins(spec("x", f32, -1, 4)), spec("y", f32, -1, 2), spec("z", f32)), base,
			[]string{`output "z" removed`}, nil},
		{"output added", base, sig(ins(spec("x", f32, -1, 4)), spec("y", f32, -1, 2), spec("z", f32)),
			nil, []string{`output "z" added`}},
		{"output width", base, sig(ins(spec("x", f32, -1, 4)), spec("y", f32, -1, 3)),
			[]string{`output "y": dimension 1: 2 -> 3`}, nil},
		{"output datatype", base, sig(ins(spec("x", f32, -1, 4)), spec("y", i64, -1, 2)),
			[]string{`output "y": datatype FP32 -> INT64`}, nil},
		{"output rank", base, sig(ins(spec("x", f32, -1, 4)), spec("y", f32, -1)),
			[]string{`output "y": rank 2 -> 1 (shape [-1 2] -> [-1])`}, nil},
		{"output dynamic to fixed", base, sig(ins(spec("x", f32, -1, 4)), spec("y", f32, 1, 2)),
			nil, []string{`output "y": dimension 0: dynamic -> 1`}},
		{"output rank declared", sig(ins(spec("x", f32, -1, 4)), anyRank("y", f32)), base,
			nil, []string{`output "y": shape any -> [-1 2]`}},
		{"scalar to vector", sig(ins(spec("x", f32)), spec("y", f32)), sig(ins(spec("x", f32, 1)), spec("y", f32)),
			[]string{`input "x": rank 0 -> 1 (shape [] -> [1])`}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, n := validate.CompareSignatures(tc.prev, tc.next)
			if !reflect.DeepEqual(b, tc.breaking) {
				t.Errorf("breaking\n got %q\nwant %q", b, tc.breaking)
			}
			if !reflect.DeepEqual(n, tc.notes) {
				t.Errorf("notes\n got %q\nwant %q", n, tc.notes)
			}
		})
	}
}
