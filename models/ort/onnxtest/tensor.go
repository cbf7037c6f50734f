package onnxtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort/internal/pb"
)

// Number is the element types Tensor accepts.
type Number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64 | ~bool
}

// Tensor builds a tensor from Go values (little-endian host assumed). Use
// an empty shape for a scalar.
func Tensor[T Number](name string, dt models.DataType, shape []int64, data ...T) models.Tensor {
	var zero T
	b := make([]byte, len(data)*int(unsafe.Sizeof(zero)))
	if len(data) > 0 {
		copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), len(b)))
	}
	if shape == nil {
		shape = []int64{}
	}
	return models.Tensor{Name: name, DataType: dt, Shape: shape, Data: b}
}

// Strings builds a BYTES tensor.
func Strings(name string, shape []int64, s ...string) models.Tensor {
	var b []byte
	for _, v := range s {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	if b == nil {
		b = []byte{}
	}
	return models.Tensor{Name: name, DataType: models.Bytes, Shape: shape, Data: b}
}

// Values decodes the tensor's data as Go values.
func Values[T Number](t models.Tensor) []T {
	var zero T
	n := len(t.Data) / int(unsafe.Sizeof(zero))
	out := make([]T, n)
	if n > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), len(t.Data)), t.Data)
	}
	return out
}

// ErrExternalData is returned for tensors whose data lives in another file.
var ErrExternalData = errors.New("onnxtest: external tensor data is not supported")

// DecodeTensor parses a serialized ONNX TensorProto (as in the node tests'
// input_N.pb and output_N.pb) into a tensor with OIP data layout.
func DecodeTensor(b []byte) (models.Tensor, error) {
	var (
		t        models.Tensor
		elem     int32
		raw      []byte
		hasRaw   bool
		ints     []uint64 // int32_data, int64_data, uint64_data (as varints)
		fixed    []uint64 // float_data, double_data
		strs     [][]byte
		external bool
	)
	t.Shape = []int64{}
	err := pb.Walk(b, func(f pb.Field) error {
		var err error
		var vs []uint64
		switch f.Num {
		case 1: // dims
			vs, err = f.Varints()
			for _, v := range vs {
				t.Shape = append(t.Shape, int64(v))
			}
		case 2:
			elem = int32(f.U)
		case 4: // float_data
			vs, err = f.Fixed(4)
			fixed = append(fixed, vs...)
		case 5, 7, 11: // int32_data, int64_data, uint64_data
			vs, err = f.Varints()
			ints = append(ints, vs...)
		case 6:
			strs = append(strs, f.B)
		case 8:
			t.Name = string(f.B)
		case 9:
			raw, hasRaw = f.B, true
		case 10: // double_data
			vs, err = f.Fixed(8)
			fixed = append(fixed, vs...)
		case 14:
			external = f.U == 1
		}
		return err
	})
	if err != nil {
		return t, fmt.Errorf("onnxtest: tensor: %w", err)
	}
	if external {
		return t, ErrExternalData
	}
	dt, ok := elemTypes[elem]
	if !ok {
		return t, fmt.Errorf("onnxtest: tensor %q: ONNX element type %d: %w", t.Name, elem, models.ErrUnsupportedDataType)
	}
	t.DataType = dt
	n, err := models.NumElements(t.Shape)
	if err != nil {
		return t, fmt.Errorf("onnxtest: tensor %q: %w", t.Name, err)
	}
	size := dt.Size()
	switch {
	case dt == models.Bytes:
		s := make([]string, len(strs))
		for i, v := range strs {
			s[i] = string(v)
		}
		t.Data = Strings("", nil, s...).Data
	case hasRaw:
		t.Data = append([]byte{}, raw...)
	case len(fixed) > 0:
		t.Data = make([]byte, 0, len(fixed)*size)
		for _, v := range fixed {
			if size == 4 {
				t.Data = binary.LittleEndian.AppendUint32(t.Data, uint32(v))
			} else {
				t.Data = binary.LittleEndian.AppendUint64(t.Data, v)
			}
		}
	default:
		t.Data = make([]byte, 0, len(ints)*size)
		for _, v := range ints {
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], v)
			t.Data = append(t.Data, w[:size]...)
		}
	}
	if err := t.Validate(); err != nil {
		return t, fmt.Errorf("onnxtest: tensor %q (%d elements): %w", t.Name, n, err)
	}
	return t, nil
}

// Compare reports how got differs from want: name, datatype, shape, and
// each element within tol (absolute) for floating types, exactly for the
// others. NaN equals NaN.
func Compare(got, want models.Tensor, tol float64) error {
	if got.DataType != want.DataType {
		return fmt.Errorf("%s: datatype %s, want %s", want.Name, got.DataType, want.DataType)
	}
	if fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) {
		return fmt.Errorf("%s: shape %v, want %v", want.Name, got.Shape, want.Shape)
	}
	if len(got.Data) != len(want.Data) {
		return fmt.Errorf("%s: %d bytes, want %d", want.Name, len(got.Data), len(want.Data))
	}
	var toF func([]byte) float64
	switch got.DataType {
	case models.FP32:
		toF = func(b []byte) float64 { return float64(math.Float32frombits(binary.LittleEndian.Uint32(b))) }
	case models.FP64:
		toF = func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) }
	case models.FP16:
		toF = func(b []byte) float64 { return HalfToFloat(binary.LittleEndian.Uint16(b)) }
	case models.BF16:
		toF = func(b []byte) float64 {
			return float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b)) << 16))
		}
	default:
		for i := range got.Data {
			if got.Data[i] != want.Data[i] {
				return fmt.Errorf("%s: byte %d is %d, want %d", want.Name, i, got.Data[i], want.Data[i])
			}
		}
		return nil
	}
	size := got.DataType.Size()
	for i := 0; i < len(got.Data); i += size {
		g, w := toF(got.Data[i:]), toF(want.Data[i:])
		if math.IsNaN(g) && math.IsNaN(w) {
			continue
		}
		if g == w { // also equal infinities
			continue
		}
		if math.Abs(g-w) > tol || math.IsNaN(g) || math.IsNaN(w) {
			return fmt.Errorf("%s: element %d is %v, want %v (tolerance %v)", want.Name, i/size, g, w, tol)
		}
	}
	return nil
}

// HalfToFloat converts IEEE 754 binary16 bits to a float64.
func HalfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * frac * math.Pow(2, -24)
	case 0x1f:
		if frac != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	}
	return sign * (1 + frac/1024) * math.Pow(2, float64(exp-15))
}
