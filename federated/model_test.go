package federated

import (
	"math"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models/onnx"
)

func TestNewModel(t *testing.T) {
	tests := []struct {
		spec    Spec
		family  onnx.Family
		params  int
		output  onnx.Activation
		widths  []int // layer outputs
		wantErr string
	}{
		{spec: Spec{"softmax", []int{784, 10}}, family: onnx.FamilySoftmax, params: 7850, output: onnx.Softmax, widths: []int{10}},
		{spec: Spec{"logistic", []int{20, 1}}, family: onnx.FamilyLogistic, params: 21, output: onnx.Sigmoid, widths: []int{1}},
		{spec: Spec{"logistic", []int{20}}, family: onnx.FamilyLogistic, params: 21, output: onnx.Sigmoid, widths: []int{1}},
		{spec: Spec{"mlp", []int{784, 128, 10}}, family: onnx.FamilyMLP, params: 784*128 + 128 + 128*10 + 10, output: onnx.Softmax, widths: []int{128, 10}},
		{spec: Spec{"mlp", []int{4, 3}}, family: onnx.FamilyMLP, params: 15, output: onnx.Softmax, widths: []int{3}},
		{spec: Spec{"", []int{4, 3}}, wantErr: "no family"},
		{spec: Spec{"linear", []int{4, 3}}, wantErr: `unknown family "linear"`},
		{spec: Spec{"softmax", []int{4}}, wantErr: "sizes {in, classes}"},
		{spec: Spec{"softmax", []int{4, 1}}, wantErr: "at least 2 classes"},
		{spec: Spec{"logistic", []int{4, 2}}, wantErr: "one output"},
		{spec: Spec{"logistic", nil}, wantErr: "logistic needs sizes"},
		{spec: Spec{"mlp", []int{4}}, wantErr: "mlp needs sizes"},
		{spec: Spec{"mlp", []int{4, 0, 3}}, wantErr: "size 1 is 0"},
		{spec: Spec{"mlp", []int{4, -2, 3}}, wantErr: "size 1 is -2"},
		{spec: Spec{"mlp", []int{4, 5, 1}}, wantErr: "at least 2 classes"},
		{spec: Spec{"mlp", []int{1 << 20, 1 << 10, 2}}, wantErr: "more than"},
		{spec: Spec{"mlp", []int{1 << 26, 1 << 26, 2}}, wantErr: "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.spec.String(), func(t *testing.T) {
			m, err := NewModel(tt.spec, 1)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Family != tt.family || m.Output != tt.output || NumParams(m) != tt.params {
				t.Errorf("family %s output %s params %d; want %s %s %d", m.Family, m.Output, NumParams(m), tt.family, tt.output, tt.params)
			}
			if len(m.Layers) != len(tt.widths) {
				t.Fatalf("%d layers, want %d", len(m.Layers), len(tt.widths))
			}
			for i, w := range tt.widths {
				if m.Layers[i].Out != w {
					t.Errorf("layer %d width %d, want %d", i, m.Layers[i].Out, w)
				}
			}
			if len(m.Layers) > 1 && m.Hidden != onnx.ReLU {
				t.Errorf("hidden activation %s, want relu", m.Hidden)
			}
			if err := m.Validate(); err != nil {
				t.Error(err)
			}
			if _, err := m.MarshalONNX(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNewModelSeeded(t *testing.T) {
	spec := Spec{"mlp", []int{10, 8, 3}}
	a, _ := NewModel(spec, 42)
	b, _ := NewModel(spec, 42)
	c, _ := NewModel(spec, 43)
	pa, pb, pc := Flatten(a), Flatten(b), Flatten(c)
	same, differ := true, false
	for i := range pa {
		same = same && pa[i] == pb[i]
		differ = differ || pa[i] != pc[i]
	}
	if !same {
		t.Error("the same seed gave different weights")
	}
	if !differ {
		t.Error("different seeds gave the same weights")
	}
}

func TestFlattenSetParams(t *testing.T) {
	m, _ := NewModel(Spec{"mlp", []int{3, 2, 2}}, 1)
	p := make([]float32, NumParams(m))
	for i := range p {
		p[i] = float32(i)
	}
	if err := SetParams(m, p); err != nil {
		t.Fatal(err)
	}
	// Layout: layer 0 W (3x2) then B (2), layer 1 W (2x2) then B (2).
	l0, l1 := m.Layers[0], m.Layers[1]
	if l0.W[0] != 0 || l0.W[5] != 5 || l0.B[0] != 6 || l0.B[1] != 7 || l1.W[0] != 8 || l1.W[3] != 11 || l1.B[1] != 13 {
		t.Errorf("layout: W0 %v B0 %v W1 %v B1 %v", l0.W, l0.B, l1.W, l1.B)
	}
	got := Flatten(m)
	for i := range p {
		if got[i] != p[i] {
			t.Fatalf("Flatten after SetParams: %v, want %v", got, p)
		}
	}
	got[0] = 100
	if m.Layers[0].W[0] == 100 {
		t.Error("Flatten shares memory with the model")
	}

	for name, bad := range map[string][]float32{
		"short": p[:len(p)-1],
		"long":  append(append([]float32(nil), p...), 0),
		"NaN":   append(append([]float32(nil), p[:4]...), append([]float32{float32(math.NaN())}, p[5:]...)...),
		"Inf":   append([]float32{float32(math.Inf(-1))}, p[1:]...),
	} {
		before := Flatten(m)
		if err := SetParams(m, bad); err == nil {
			t.Errorf("%s: no error", name)
		}
		after := Flatten(m)
		for i := range before {
			if before[i] != after[i] {
				t.Fatalf("%s: a failed SetParams changed the model", name)
			}
		}
	}
	if err := SetParams(nil, nil); err == nil {
		t.Error("nil model: no error")
	}
	if NumParams(nil) != 0 || len(Flatten(nil)) != 0 {
		t.Error("nil model has parameters")
	}
}
