package ort

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unsafe"

	"github.com/petrel-mesh/petrel/models"
	onnx "github.com/yalue/onnxruntime_go"
)

// ErrInvalidInput wraps every error that is the caller's fault: unknown,
// missing or duplicate inputs, a datatype, rank, dimension or data length
// that does not fit the model, unknown output names. A server maps it to
// 400 Bad Request.
var ErrInvalidInput = errors.New("invalid input")

// dummy backs zero-element tensors: ONNX Runtime wants a data pointer even
// when it reads nothing, and onnxruntime_go refuses empty slices.
var dummy = []byte{0}

// newInputValue wraps t (already validated against spec) in an ONNX Runtime
// value. Fixed-size data is passed without copying unless it is not aligned
// to its element size.
func newInputValue(t *models.Tensor, spec *ioSpec) (onnx.Value, error) {
	if t.DataType == models.Bytes {
		return newStringValue(t)
	}
	if len(t.Shape) == 0 {
		return newScalarValue(t.DataType, t.Data)
	}
	data := t.Data
	switch {
	case len(data) == 0:
		data = dummy
	case uintptr(unsafe.Pointer(&data[0]))%uintptr(t.DataType.Size()) != 0:
		data = alignedBytes(len(data))
		copy(data, t.Data)
	}
	v, err := onnx.NewCustomDataTensor(onnx.Shape(t.Shape), data, spec.ortType)
	if err != nil {
		return nil, fmt.Errorf("ort: input %q: %w", t.Name, err)
	}
	return v, nil
}

func newStringValue(t *models.Tensor) (onnx.Value, error) {
	if len(t.Shape) == 0 {
		return nil, fmt.Errorf("%w: input %q: rank-0 BYTES tensors: %w", ErrInvalidInput, t.Name, models.ErrUnsupportedDataType)
	}
	n, _ := models.NumElements(t.Shape) // validated by the caller
	strs := make([]string, 0, n)
	for b := t.Data; len(b) >= 4; {
		l := binary.LittleEndian.Uint32(b)
		var s string
		if l > 0 {
			// Only read while SetContents copies it into C strings.
			s = unsafe.String(&b[4], l)
		}
		if strings.IndexByte(s, 0) >= 0 {
			// FillStringTensor takes C strings, which would cut it short.
			return nil, fmt.Errorf("%w: input %q: BYTES element %d contains a NUL byte, which ONNX Runtime string tensors cannot carry", ErrInvalidInput, t.Name, len(strs))
		}
		strs = append(strs, s)
		b = b[4+l:]
	}
	v, err := onnx.NewStringTensor(onnx.Shape(t.Shape))
	if err != nil {
		return nil, fmt.Errorf("ort: input %q: %w", t.Name, err)
	}
	if err := v.SetContents(strs); err != nil {
		v.Destroy()
		return nil, fmt.Errorf("ort: input %q: %w", t.Name, err)
	}
	return v, nil
}

func newScalarValue(dt models.DataType, b []byte) (onnx.Value, error) {
	var (
		v   onnx.Value
		err error
	)
	switch dt {
	case models.FP32:
		v, err = onnx.NewScalar(scalarOf[float32](b))
	case models.FP64:
		v, err = onnx.NewScalar(scalarOf[float64](b))
	case models.Int8:
		v, err = onnx.NewScalar(scalarOf[int8](b))
	case models.Int16:
		v, err = onnx.NewScalar(scalarOf[int16](b))
	case models.Int32:
		v, err = onnx.NewScalar(scalarOf[int32](b))
	case models.Int64:
		v, err = onnx.NewScalar(scalarOf[int64](b))
	case models.Uint8:
		v, err = onnx.NewScalar(scalarOf[uint8](b))
	case models.Uint16:
		v, err = onnx.NewScalar(scalarOf[uint16](b))
	case models.Uint32:
		v, err = onnx.NewScalar(scalarOf[uint32](b))
	case models.Uint64:
		v, err = onnx.NewScalar(scalarOf[uint64](b))
	case models.Bool:
		v, err = onnx.NewScalar(b[0] != 0)
	default:
		return nil, fmt.Errorf("rank-0 %s tensors: %w", dt, models.ErrUnsupportedDataType)
	}
	if err != nil {
		return nil, fmt.Errorf("ort: scalar %s: %w", dt, err)
	}
	return v, nil
}

// newEmptyScalar makes a rank-0 output for ONNX Runtime to write into.
func newEmptyScalar(dt models.DataType) (onnx.Value, error) {
	var (
		v   onnx.Value
		err error
	)
	switch dt {
	case models.FP32:
		v, err = onnx.NewEmptyScalar[float32]()
	case models.FP64:
		v, err = onnx.NewEmptyScalar[float64]()
	case models.Int8:
		v, err = onnx.NewEmptyScalar[int8]()
	case models.Int16:
		v, err = onnx.NewEmptyScalar[int16]()
	case models.Int32:
		v, err = onnx.NewEmptyScalar[int32]()
	case models.Int64:
		v, err = onnx.NewEmptyScalar[int64]()
	case models.Uint8:
		v, err = onnx.NewEmptyScalar[uint8]()
	case models.Uint16:
		v, err = onnx.NewEmptyScalar[uint16]()
	case models.Uint32:
		v, err = onnx.NewEmptyScalar[uint32]()
	case models.Uint64:
		v, err = onnx.NewEmptyScalar[uint64]()
	case models.Bool:
		v, err = onnx.NewEmptyScalar[bool]()
	default:
		return nil, fmt.Errorf("rank-0 %s tensors: %w", dt, models.ErrUnsupportedDataType)
	}
	if err != nil {
		return nil, fmt.Errorf("ort: scalar %s: %w", dt, err)
	}
	return v, nil
}

// isHalf reports whether dt is a 16-bit float, which Go has no type for:
// onnxruntime_go cannot make rank-0 tensors of it, nor size its outputs.
func isHalf(dt models.DataType) bool { return dt == models.FP16 || dt == models.BF16 }

func scalarOf[T onnx.TensorData](b []byte) T {
	var v T
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&v)), unsafe.Sizeof(v)), b)
	return v
}

// bytesOf views a slice of numbers as its little-endian bytes, without
// copying. The result is never nil.
func bytesOf[T onnx.TensorData](s []T) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(zero)))
}

func scalarBytes[T onnx.TensorData](v T) []byte {
	p := new(T)
	*p = v
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(v))
}

// alignedBytes returns n zeroed bytes aligned to 8.
func alignedBytes(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n)
}

// fromValue converts an output that onnxruntime_go allocated into a tensor
// owning its data, and destroys v.
func fromValue(v onnx.Value, spec *ioSpec) (models.Tensor, error) {
	defer v.Destroy()
	t := models.Tensor{Name: spec.Name, DataType: spec.DataType}
	var dt models.DataType
	switch x := v.(type) {
	case *onnx.Tensor[float32]:
		dt, t.Shape, t.Data = models.FP32, x.GetShape(), bytesOf(x.GetData())
	case *onnx.Tensor[float64]:
		dt, t.Shape, t.Data = models.FP64, x.GetShape(), bytesOf(x.GetData())
	case *onnx.Tensor[int8]:
		dt, t.Shape, t.Data = models.Int8, x.GetShape(), bytesOf(x.GetData())
	case *onnx.Tensor[int16]:
		dt, t.Shape, t.Data = models.Int16, x.GetShape(), bytesOf(x.GetData())
	case *onnx.Tensor[int32]:
		dt, t.Shape, t.Data = models.Int32, x.GetShape(), bytesOf(x.GetData())
	case *onnx.Tensor[int64]:
		dt, t.Shape, t.Data = models.Int64, x.GetShape(), bytesOf(x.GetData())
	case *onnx.Tensor[uint8]:
		dt, t.Shape, t.Data = models.Uint8, x.GetShape(), bytesOf(x.GetData())
	case *onnx.Tensor[uint16]:
		dt, t.Shape, t.Data = models.Uint16, x.GetShape(), bytesOf(x.GetData())
	case *onnx.Tensor[uint32]:
		dt, t.Shape, t.Data = models.Uint32, x.GetShape(), bytesOf(x.GetData())
	case *onnx.Tensor[uint64]:
		dt, t.Shape, t.Data = models.Uint64, x.GetShape(), bytesOf(x.GetData())
	case *onnx.Tensor[bool]:
		dt, t.Shape, t.Data = models.Bool, x.GetShape(), bytesOf(x.GetData())
	case *onnx.StringTensor:
		dt, t.Shape = models.Bytes, x.GetShape()
		var strs []string
		var err error
		if len(t.Shape) == 0 {
			// GetContents sizes its buffers by FlattenedSize, which is 0
			// for a rank-0 shape.
			var s string
			s, err = x.GetElement(0)
			strs = []string{s}
		} else {
			strs, err = x.GetContents()
		}
		if err != nil {
			return t, fmt.Errorf("ort: output %q: read strings: %w", spec.Name, err)
		}
		t.Data = encodeStrings(strs)
	case *onnx.CustomDataTensor:
		// Load preallocates FP16/BF16 outputs, as onnxruntime_go sizes
		// these raw copies by element count, not bytes.
		return t, fmt.Errorf("ort: output %q: ONNX type %d returned as raw bytes: %w", spec.Name, x.DataType(), models.ErrUnsupportedDataType)
	default:
		return t, fmt.Errorf("ort: output %q: value of ONNX kind %v: %w", spec.Name, v.GetONNXType(), models.ErrUnsupportedDataType)
	}
	if dt != spec.DataType {
		return t, fmt.Errorf("ort: output %q: runtime returned %s, model declares %s", spec.Name, dt, spec.DataType)
	}
	if t.Shape == nil {
		t.Shape = []int64{}
	}
	return t, nil
}

// fromScalar reads a preallocated rank-0 output and destroys v.
func fromScalar(v onnx.Value) ([]byte, error) {
	defer v.Destroy()
	switch x := v.(type) {
	case *onnx.Scalar[float32]:
		return scalarBytes(x.GetData()), nil
	case *onnx.Scalar[float64]:
		return scalarBytes(x.GetData()), nil
	case *onnx.Scalar[int8]:
		return scalarBytes(x.GetData()), nil
	case *onnx.Scalar[int16]:
		return scalarBytes(x.GetData()), nil
	case *onnx.Scalar[int32]:
		return scalarBytes(x.GetData()), nil
	case *onnx.Scalar[int64]:
		return scalarBytes(x.GetData()), nil
	case *onnx.Scalar[uint8]:
		return scalarBytes(x.GetData()), nil
	case *onnx.Scalar[uint16]:
		return scalarBytes(x.GetData()), nil
	case *onnx.Scalar[uint32]:
		return scalarBytes(x.GetData()), nil
	case *onnx.Scalar[uint64]:
		return scalarBytes(x.GetData()), nil
	case *onnx.Scalar[bool]:
		return scalarBytes(x.GetData()), nil
	}
	return nil, fmt.Errorf("ort: unexpected scalar value %T", v)
}

// encodeStrings lays strings out as OIP BYTES: each a 4-byte little-endian
// length and the bytes.
func encodeStrings(strs []string) []byte {
	n := 0
	for _, s := range strs {
		n += 4 + len(s)
	}
	out := make([]byte, 0, n)
	for _, s := range strs {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(s)))
		out = append(out, s...)
	}
	return out
}

// destroyAll destroys and clears every value. onnxruntime_go can leave
// typed nil pointers behind when it fails to convert an output; those are
// skipped.
func destroyAll(vals []onnx.Value) {
	for i, v := range vals {
		if v != nil && !reflect.ValueOf(v).IsNil() {
			v.Destroy()
		}
		vals[i] = nil
	}
}
