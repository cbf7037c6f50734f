package onnxtest

import (
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort/internal/pb"
)

func TestDecodeTensorLayouts(t *testing.T) {
	tests := []struct {
		name  string
		build func(b *pb.Buffer)
		want  models.Tensor
	}{
		{"raw FP32", func(b *pb.Buffer) {
			EncodeTensor(b, Tensor("x", models.FP32, []int64{2}, float32(1.5), -2))
		}, Tensor("x", models.FP32, []int64{2}, float32(1.5), -2)},
		{"float_data, unpacked", func(b *pb.Buffer) {
			b.Int(1, 2)
			b.Int(2, 1)
			b.Float(4, 1.5)
			b.Float(4, -2)
		}, Tensor("", models.FP32, []int64{2}, float32(1.5), -2)},
		{"int32_data holding FP16 bits, packed", func(b *pb.Buffer) {
			b.Int(1, 3)
			b.Int(2, 10)
			var packed pb.Buffer
			for _, v := range []uint64{0x3c00, 0xc000, 0x7c00} {
				for v >= 0x80 {
					packed = append(packed, byte(v)|0x80)
					v >>= 7
				}
				packed = append(packed, byte(v))
			}
			b.Bytes(5, packed)
		}, Tensor("", models.FP16, []int64{3}, uint16(0x3c00), 0xc000, 0x7c00)},
		{"int32_data holding INT8", func(b *pb.Buffer) {
			b.Int(1, 2)
			b.Int(2, 3)
			b.Int(5, -128)
			b.Int(5, 127)
		}, Tensor("", models.Int8, []int64{2}, int8(-128), 127)},
		{"int64_data scalar", func(b *pb.Buffer) {
			b.Int(2, 7)
			b.Int(7, -5)
		}, Tensor("", models.Int64, []int64{}, int64(-5))},
		{"uint64_data", func(b *pb.Buffer) {
			b.Int(1, 1)
			b.Int(2, 13)
			b.Varint(11, math.MaxUint64)
		}, Tensor("", models.Uint64, []int64{1}, uint64(math.MaxUint64))},
		{"string_data", func(b *pb.Buffer) {
			b.Int(1, 2)
			b.Int(2, 8)
			b.String(6, "a")
			b.String(6, "")
			b.String(8, "s")
		}, Strings("s", []int64{2}, "a", "")},
		{"zero elements", func(b *pb.Buffer) {
			b.Int(1, 0)
			b.Int(1, 3)
			b.Int(2, 11)
		}, Tensor[float64]("", models.FP64, []int64{0, 3})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b pb.Buffer
			tc.build(&b)
			got, err := DecodeTensor(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tc.want.Name {
				t.Errorf("name %q, want %q", got.Name, tc.want.Name)
			}
			if err := Compare(got, tc.want, 0); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		for name, b := range map[string][]byte{
			"count mismatch": func() []byte { var b pb.Buffer; b.Int(1, 3); b.Int(2, 1); b.Float(4, 1); return b }(),
			"unknown type":   func() []byte { var b pb.Buffer; b.Int(2, 14); return b }(),
			"garbage":        {0xff},
		} {
			if _, err := DecodeTensor(b); err == nil {
				t.Errorf("%s: want an error", name)
			}
		}
		var ext pb.Buffer
		ext.Int(2, 1)
		ext.Int(14, 1)
		if _, err := DecodeTensor(ext); !errors.Is(err, ErrExternalData) {
			t.Errorf("external data: err = %v", err)
		}
	})
}

func TestCompare(t *testing.T) {
	a := Tensor("y", models.FP32, []int64{3}, float32(1), float32(math.NaN()), float32(math.Inf(1)))
	b := Tensor("y", models.FP32, []int64{3}, float32(1.0005), float32(math.NaN()), float32(math.Inf(1)))
	if err := Compare(a, b, 1e-3); err != nil {
		t.Errorf("within tolerance: %v", err)
	}
	if err := Compare(a, b, 1e-4); err == nil {
		t.Error("outside tolerance: want an error")
	}
	if err := Compare(a, Tensor("y", models.FP32, []int64{1, 3}, float32(1), 0, 0), 1); err == nil {
		t.Error("shape mismatch: want an error")
	}
	if err := Compare(Tensor("y", models.Int8, []int64{1}, int8(1)), Tensor("y", models.Int8, []int64{1}, int8(2)), 10); err == nil {
		t.Error("integers compare exactly: want an error")
	}
	for bits, want := range map[uint16]float64{0x3c00: 1, 0xc000: -2, 0x7bff: 65504, 0x0001: math.Pow(2, -24), 0x3555: 0.333251953125} {
		if got := HalfToFloat(bits); got != want {
			t.Errorf("HalfToFloat(%#x) = %v, want %v", bits, got, want)
		}
	}
}

func TestMissingTestdataSaysHowToInstall(t *testing.T) {
	_, err := LoadNodeTestFrom(filepath.Join(t.TempDir(), "absent"), "test_where_example")
	if !errors.Is(err, ErrNoTestdata) {
		t.Fatalf("err = %v, want ErrNoTestdata", err)
	}
	if !strings.Contains(err.Error(), "install Debian package libonnx-testdata (make setup)") {
		t.Errorf("error %q does not say how to install the test data", err)
	}
}
