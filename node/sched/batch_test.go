package sched

import (
	"errors"
	"slices"
	"testing"

	"github.com/petrel-mesh/petrel/models"
)

func TestCanBatch(t *testing.T) {
	spec := func(dt models.DataType, shape ...int64) models.TensorSpec {
		return models.TensorSpec{Name: "t", DataType: dt, Shape: shape}
	}
	cases := []struct {
		name    string
		in, out models.TensorSpec
		want    bool
	}{
		{"dynamic dim 0", spec(models.FP32, -1, 3), spec(models.Int64, -1), true},
		{"fixed input dim 0", spec(models.FP32, 1, 3), spec(models.FP32, -1), false},
		{"fixed output dim 0", spec(models.FP32, -1, 3), spec(models.FP32, 4), false},
		{"scalar input", spec(models.FP32), spec(models.FP32, -1), false},
		{"BYTES input", spec(models.Bytes, -1), spec(models.FP32, -1), false},
		{"BYTES output", spec(models.FP32, -1), spec(models.Bytes, -1), false},
		{"other dims dynamic", spec(models.FP16, -1, -1, -1), spec(models.Bool, -1, -1), true},
	}
	for _, c := range cases {
		sig := models.Signature{Inputs: []models.TensorSpec{c.in}, Outputs: []models.TensorSpec{c.out}}
		if got := canBatch(&sig); got != c.want {
			t.Errorf("%s: canBatch = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCompatible(t *testing.T) {
	two := func(ax, bx []int64) *Request {
		return &Request{Inputs: []models.Tensor{
			{Name: "a", DataType: models.FP32, Shape: ax},
			{Name: "b", DataType: models.Int64, Shape: bx},
		}}
	}
	swapped := func(r *Request) *Request {
		return &Request{Inputs: []models.Tensor{r.Inputs[1], r.Inputs[0]}}
	}
	base := two([]int64{1, 3}, []int64{1, 5})
	cases := []struct {
		name string
		a, b *Request
		want bool
	}{
		{"same", base, two([]int64{4, 3}, []int64{4, 5}), true},
		{"other input order", base, swapped(two([]int64{2, 3}, []int64{2, 5})), true},
		{"tail differs", base, two([]int64{1, 4}, []int64{1, 5}), false},
		{"second input tail differs", base, two([]int64{1, 3}, []int64{1, 6}), false},
		{"rank differs", base, two([]int64{1, 3, 1}, []int64{1, 5}), false},
	}
	for _, c := range cases {
		if got := compatible(c.a, c.b); got != c.want {
			t.Errorf("%s: compatible = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestConcatAndSplit(t *testing.T) {
	sig := batchSig()
	reqs := []*Request{req(1, 0, "z"), req(3, 10, "y", "z"), req(2, 100)}
	rows := []int64{1, 3, 2}
	in := concatInputs(&sig, reqs, 6)
	if len(in) != 1 || !slices.Equal(in[0].Shape, []int64{6, 2}) || len(in[0].Data) != 6*2*4 {
		t.Fatalf("concat: %+v", in)
	}
	names := unionOutputs(&sig, reqs)
	if !slices.Equal(names, []string{"y", "z"}) {
		t.Fatalf("union = %v", names)
	}
	out, err := newFake().Run(t.Context(), in, names)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := splitOutputs(names, out, reqs, rows, 6)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range reqs {
		checkOutputs(t, r, parts[i])
	}

	bad := func(mutate func([]models.Tensor) []models.Tensor) error {
		cp := make([]models.Tensor, len(out))
		for i, o := range out {
			o.Shape = slices.Clone(o.Shape)
			cp[i] = o
		}
		_, err := splitOutputs(names, mutate(cp), reqs, rows, 6)
		return err
	}
	for name, mutate := range map[string]func([]models.Tensor) []models.Tensor{
		"too few outputs": func(ts []models.Tensor) []models.Tensor { return ts[:1] },
		"wrong name":      func(ts []models.Tensor) []models.Tensor { ts[0].Name = "z"; return ts },
		"dim 0 differs":   func(ts []models.Tensor) []models.Tensor { ts[1].Shape[0] = 5; return ts },
		"scalar":          func(ts []models.Tensor) []models.Tensor { ts[1].Shape = []int64{}; return ts },
		"short data":      func(ts []models.Tensor) []models.Tensor { ts[0].Data = ts[0].Data[:8]; return ts },
		"BYTES":           func(ts []models.Tensor) []models.Tensor { ts[0].DataType = models.Bytes; return ts },
	} {
		if err := bad(mutate); !errors.Is(err, ErrOutputMismatch) {
			t.Errorf("%s: err = %v, want ErrOutputMismatch", name, err)
		}
	}
}

func TestCheckRequestRows(t *testing.T) {
	sig := models.Signature{
		Inputs: []models.TensorSpec{
			{Name: "a", DataType: models.FP32, Shape: []int64{-1, 2}},
			{Name: "b", DataType: models.FP32, Shape: []int64{-1}},
		},
		Outputs: []models.TensorSpec{{Name: "y", DataType: models.FP32, Shape: []int64{-1}}},
	}
	mk := func(ra, rb int64) *Request {
		return &Request{Inputs: []models.Tensor{
			{Name: "b", DataType: models.FP32, Shape: []int64{rb}, Data: make([]byte, 4*rb)},
			{Name: "a", DataType: models.FP32, Shape: []int64{ra, 2}, Data: make([]byte, 8*ra)},
		}}
	}
	cases := []struct {
		name     string
		r        *Request
		batching bool
		rows     int64
		solo     bool
	}{
		{"batchable", mk(3, 3), true, 3, false},
		{"batching off", mk(3, 3), false, 3, true},
		{"dim 0 disagrees", mk(3, 2), true, 2, true},
		{"zero rows", mk(0, 0), true, 0, true},
		{"above max", mk(5, 5), true, 5, true},
		{"at max", mk(4, 4), true, 4, false},
	}
	for _, c := range cases {
		rows, solo, err := checkRequest(&sig, c.r, c.batching, 4)
		if err != nil || rows != c.rows || solo != c.solo {
			t.Errorf("%s: rows %d solo %v err %v, want %d %v", c.name, rows, solo, err, c.rows, c.solo)
		}
	}
}
