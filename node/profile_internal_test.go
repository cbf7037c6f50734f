package node

import (
	"context"
	"slices"
	"testing"

	"github.com/petrel-mesh/petrel/models"
)

func TestChoosePreferred(t *testing.T) {
	cost := func(pairs ...float64) []BatchCost {
		var cs []BatchCost
		for i := 0; i < len(pairs); i += 2 {
			b := int(pairs[i])
			cs = append(cs, BatchCost{Batch: b, RunMicros: pairs[i+1] * float64(b), RowMicros: pairs[i+1]})
		}
		return cs
	}
	for _, c := range []struct {
		name  string
		costs []BatchCost
		want  []int
	}{
		{"none", nil, nil},
		{"falling", cost(1, 100, 2, 60, 4, 30, 8, 20), []int{8}},
		{"a sweet spot", cost(1, 850, 8, 146, 16, 101, 32, 120, 64, 110), []int{16, 64}},
		{"flat", cost(1, 10, 2, 10.5, 4, 10.9, 8, 10.2), []int{1, 2, 4, 8}},
		{"just over the slack", cost(1, 100, 2, 111), []int{1}},
	} {
		if got := choosePreferred(c.costs); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// stubSession records the inputs it is run with.
type stubSession struct {
	sig  models.Signature
	runs [][]models.Tensor
}

func (s *stubSession) Signature() models.Signature { return s.sig }
func (s *stubSession) Provider() string            { return "cpu" }
func (s *stubSession) Close() error                { return nil }
func (s *stubSession) Run(_ context.Context, in []models.Tensor, _ []string) ([]models.Tensor, error) {
	s.runs = append(s.runs, in)
	return nil, nil
}

func TestProfileBatchesSignatures(t *testing.T) {
	spec := func(dt models.DataType, shape ...int64) models.TensorSpec {
		return models.TensorSpec{Name: "t", DataType: dt, Shape: shape}
	}
	out := []models.TensorSpec{spec(models.FP32, -1, 2)}
	for _, c := range []struct {
		name string
		sig  models.Signature
		ok   bool
	}{
		{"batchable", models.Signature{Inputs: []models.TensorSpec{spec(models.FP32, -1, 3), spec(models.Int64, -1)}, Outputs: out}, true},
		{"static first dimension", models.Signature{Inputs: []models.TensorSpec{spec(models.FP32, 1, 3)}, Outputs: out}, false},
		{"second dynamic dimension", models.Signature{Inputs: []models.TensorSpec{spec(models.FP32, -1, -1)}, Outputs: out}, false},
		{"scalar input", models.Signature{Inputs: []models.TensorSpec{spec(models.FP32)}, Outputs: out}, false},
		{"bytes input", models.Signature{Inputs: []models.TensorSpec{spec(models.Bytes, -1)}, Outputs: out}, false},
		{"static output", models.Signature{Inputs: []models.TensorSpec{spec(models.FP32, -1, 3)}, Outputs: []models.TensorSpec{spec(models.FP32, 1)}}, false},
		{"no inputs", models.Signature{Outputs: out}, false},
	} {
		s := &stubSession{sig: c.sig}
		p, ok, err := profileBatches(context.Background(), s, c.sig, 8, profileBudget)
		if err != nil || ok != c.ok {
			t.Errorf("%s: ok=%v err=%v, want ok=%v", c.name, ok, err, c.ok)
			continue
		}
		if !ok {
			if len(s.runs) != 0 {
				t.Errorf("%s: ran %d times", c.name, len(s.runs))
			}
			continue
		}
		var sizes []int
		for _, k := range p.Costs {
			sizes = append(sizes, k.Batch)
		}
		if !slices.Equal(sizes, []int{1, 2, 4, 8}) || len(s.runs) != 4*(profileRuns+1) {
			t.Errorf("%s: sizes %v after %d runs", c.name, sizes, len(s.runs))
		}
		last := s.runs[len(s.runs)-1]
		if !slices.Equal(last[0].Shape, []int64{8, 3}) || len(last[0].Data) != 8*3*4 || !slices.Equal(last[1].Shape, []int64{8}) || len(last[1].Data) != 8*8 {
			t.Errorf("%s: last inputs %v %d, %v %d", c.name, last[0].Shape, len(last[0].Data), last[1].Shape, len(last[1].Data))
		}
		for _, tn := range last {
			if err := tn.Validate(); err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
		}
	}
}
