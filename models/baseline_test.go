package models

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func baselineManifest(b *FeatureBaseline) Manifest {
	return Manifest{
		Name: "m", Version: "1", Format: FormatONNX,
		Signature: Signature{
			Inputs:  []TensorSpec{{Name: "input", DataType: FP32, Shape: []int64{-1, 2}}},
			Outputs: []TensorSpec{{Name: "probabilities", DataType: FP32, Shape: []int64{-1, 3}}},
		},
		Baseline: b,
	}
}

func TestBaselineValidate(t *testing.T) {
	bins := func(edges []float64, expected ...float64) FeatureBins {
		return FeatureBins{Edges: edges, Expected: expected}
	}
	good := bins([]float64{0, 1}, 0.25, 0.5, 0.25)
	cases := []struct {
		name string
		b    *FeatureBaseline
		want string // "" for valid
	}{
		{"valid", &FeatureBaseline{Features: []FeatureBins{good, bins([]float64{-1}, 0.5, 0.5)}}, ""},
		{"no baseline", nil, ""},
		{"no features", &FeatureBaseline{}, "0 features"},
		{"wrong feature count", &FeatureBaseline{Features: []FeatureBins{good}}, "1 features, input \"input\" has 2"},
		{"edges not ascending", &FeatureBaseline{Features: []FeatureBins{good, bins([]float64{1, 1}, 0.2, 0.3, 0.5)}}, "strictly ascending"},
		{"edge count", &FeatureBaseline{Features: []FeatureBins{good, bins([]float64{1}, 0.2, 0.3, 0.5)}}, "one edge fewer"},
		{"one bin", &FeatureBaseline{Features: []FeatureBins{good, bins(nil, 1)}}, "2 to 64 bins"},
		{"negative fraction", &FeatureBaseline{Features: []FeatureBins{good, bins([]float64{0}, -0.5, 1.5)}}, "outside [0, 1]"},
		{"fractions do not sum to 1", &FeatureBaseline{Features: []FeatureBins{good, bins([]float64{0}, 0.2, 0.2)}}, "sum to"},
	}
	for _, c := range cases {
		m := baselineManifest(c.b)
		err := m.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (!errors.Is(err, ErrInvalidManifest) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	// A baseline needs a [batch, features] input.
	m := baselineManifest(&FeatureBaseline{Features: []FeatureBins{good}})
	m.Signature.Inputs[0].Shape = []int64{-1}
	if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "single input") {
		t.Errorf("rank-1 input: %v", err)
	}
}

func TestBaselineJSONAndBin(t *testing.T) {
	var m Manifest
	err := json.Unmarshal([]byte(`{"baseline":{"features":[{"edges":[0,1],"expected":[0.2,0.5,0.3]}]}}`), &m)
	if err != nil || m.Baseline == nil || len(m.Baseline.Features) != 1 {
		t.Fatalf("decode: %v %+v", err, m.Baseline)
	}
	f := m.Baseline.Features[0]
	for _, c := range []struct {
		v    float64
		want int
	}{{-5, 0}, {-0.001, 0}, {0, 1}, {0.999, 1}, {1, 2}, {100, 2}} {
		if got := f.Bin(c.v); got != c.want {
			t.Errorf("Bin(%v) = %d, want %d", c.v, got, c.want)
		}
	}
	b, err := json.Marshal(Manifest{})
	if err != nil || strings.Contains(string(b), "baseline") {
		t.Errorf("a manifest without a baseline encodes it: %s", b)
	}
}
