package models

import (
	"math"
	"testing"
)

func TestHalfToFloat32(t *testing.T) {
	cases := map[uint16]float32{
		0x0000: 0, 0x3c00: 1, 0xc000: -2, 0x7bff: 65504, 0x0001: 5.960464477539063e-08, 0x3555: 0.33325195,
	}
	for h, want := range cases {
		if got := HalfToFloat32(h); got != want {
			t.Errorf("HalfToFloat32(%#04x) = %v, want %v", h, got, want)
		}
	}
	if !math.IsInf(float64(HalfToFloat32(0x7c00)), 1) || !math.IsNaN(float64(HalfToFloat32(0x7e00))) {
		t.Error("inf/nan not preserved")
	}
}

func TestValidate(t *testing.T) {
	good := Tensor{Name: "x", DataType: FP32, Shape: []int64{2, 2}, Data: make([]byte, 16)}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	scalar := Tensor{Name: "s", DataType: Int64, Shape: []int64{}, Data: make([]byte, 8)}
	if err := scalar.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []Tensor{
		{Name: "short", DataType: FP32, Shape: []int64{2, 2}, Data: make([]byte, 15)},
		{Name: "neg", DataType: FP32, Shape: []int64{-1}, Data: nil},
		{Name: "dtype", DataType: "FP8", Shape: []int64{1}, Data: []byte{0}},
		{Name: "bool", DataType: Bool, Shape: []int64{1}, Data: []byte{2}},
		{Name: "bytes", DataType: Bytes, Shape: []int64{1}, Data: []byte{5, 0, 0, 0, 'a'}},
		{Name: "bytescount", DataType: Bytes, Shape: []int64{2}, Data: []byte{1, 0, 0, 0, 'a'}},
		{Name: "overflow", DataType: FP64, Shape: []int64{math.MaxInt64, 2}, Data: nil},
	}
	for _, b := range bad {
		if err := b.Validate(); err == nil {
			t.Errorf("%s: expected an error", b.Name)
		}
	}
}

func TestFloat64s(t *testing.T) {
	x := Tensor{Name: "x", DataType: Int16, Shape: []int64{2}, Data: []byte{0xff, 0xff, 2, 0}}
	v, err := x.Float64s()
	if err != nil || v[0] != -1 || v[1] != 2 {
		t.Fatalf("got %v %v", v, err)
	}
	f := Tensor{Name: "f", DataType: FP32, Shape: []int64{1}, Data: []byte{0, 0, 0x80, 0x3f}}
	if v, _ := f.Float64s(); v[0] != 1 {
		t.Fatalf("got %v", v)
	}
	if _, err := (&Tensor{DataType: Bytes}).Float64s(); err == nil {
		t.Fatal("BYTES must not convert")
	}
}

func TestManifestValidate(t *testing.T) {
	m := Manifest{Name: "mlp", Version: "1", Format: FormatONNX, Digest: DigestBytes([]byte("x")),
		Signature: Signature{Inputs: []TensorSpec{{Name: "input", DataType: FP32, Shape: []int64{-1, 4}}},
			Outputs: []TensorSpec{{Name: "out", DataType: FP32, Shape: []int64{-1, 2}}}}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Manifest){
		"name":    func(m *Manifest) { m.Name = "../x" },
		"version": func(m *Manifest) { m.Version = "" },
		"digest":  func(m *Manifest) { m.Digest = "md5:abc" },
		"format":  func(m *Manifest) { m.Format = "tflite" },
		"noinput": func(m *Manifest) { m.Signature.Inputs = nil },
		"dim":     func(m *Manifest) { m.Signature.Outputs[0].Shape = []int64{-2} },
		"dup": func(m *Manifest) {
			m.Signature.Inputs = append(m.Signature.Inputs, m.Signature.Inputs[0])
		},
	} {
		c := m
		c.Signature = Signature{Inputs: append([]TensorSpec(nil), m.Signature.Inputs...), Outputs: []TensorSpec{{Name: "out", DataType: FP32, Shape: []int64{-1, 2}}}}
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: expected an error", name)
		}
	}
	spec := m.Signature.Inputs[0]
	if err := spec.Accepts(FP32, []int64{3, 4}); err != nil {
		t.Fatal(err)
	}
	if spec.Accepts(FP32, []int64{3, 5}) == nil || spec.Accepts(FP64, []int64{3, 4}) == nil || spec.Accepts(FP32, []int64{4}) == nil {
		t.Fatal("Accepts let a mismatch through")
	}
}
