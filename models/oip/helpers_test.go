package oip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/petrel-mesh/petrel/models"
)

// mk builds a tensor from Go values: []bool, []uint8 ... []int64,
// []float32, []float64, []uint16 (raw FP16/BF16 bits) or []string (BYTES).
func mk(name string, dt models.DataType, shape []int64, vals any) models.Tensor {
	var b []byte
	le := binary.LittleEndian
	switch v := vals.(type) {
	case []bool:
		for _, x := range v {
			if x {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	case []uint8:
		b = append(b, v...)
	case []int8:
		for _, x := range v {
			b = append(b, byte(x))
		}
	case []uint16:
		for _, x := range v {
			b = le.AppendUint16(b, x)
		}
	case []int16:
		for _, x := range v {
			b = le.AppendUint16(b, uint16(x))
		}
	case []uint32:
		for _, x := range v {
			b = le.AppendUint32(b, x)
		}
	case []int32:
		for _, x := range v {
			b = le.AppendUint32(b, uint32(x))
		}
	case []uint64:
		for _, x := range v {
			b = le.AppendUint64(b, x)
		}
	case []int64:
		for _, x := range v {
			b = le.AppendUint64(b, uint64(x))
		}
	case []float32:
		for _, x := range v {
			b = le.AppendUint32(b, math.Float32bits(x))
		}
	case []float64:
		for _, x := range v {
			b = le.AppendUint64(b, math.Float64bits(x))
		}
	case []string:
		for _, x := range v {
			b = le.AppendUint32(b, uint32(len(x)))
			b = append(b, x...)
		}
	default:
		panic(fmt.Sprintf("mk: %T", vals))
	}
	if b == nil {
		b = []byte{}
	}
	if shape == nil {
		shape = []int64{}
	}
	return models.Tensor{Name: name, DataType: dt, Shape: shape, Data: b}
}

func seqF32(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i)*0.37 - 11.5
	}
	return v
}

// sameTensors reports how a and b differ, or "" when they are the same.
// Floats compare by value with every NaN equal to every NaN (JSON keeps no
// NaN payloads); everything else compares by bytes.
func sameTensors(a, b []models.Tensor) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d tensors, want %d", len(a), len(b))
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.Name != y.Name || x.DataType != y.DataType || !slices.Equal(x.Shape, y.Shape) {
			return fmt.Sprintf("tensor %d: %q %s %v, want %q %s %v", i, x.Name, x.DataType, x.Shape, y.Name, y.DataType, y.Shape)
		}
		if (x.Shape == nil) != (y.Shape == nil) {
			return fmt.Sprintf("tensor %q: shape nil %v, want nil %v", x.Name, x.Shape == nil, y.Shape == nil)
		}
		if bytes.Equal(x.Data, y.Data) {
			continue
		}
		k := kindOf(x.DataType)
		size := int(kindSize[k])
		if len(x.Data) != len(y.Data) || size < 2 || (k != kF32 && k != kF64 && k != kF16 && k != kBF16) {
			return fmt.Sprintf("tensor %q: data %x, want %x", x.Name, x.Data, y.Data)
		}
		for j := 0; j < len(x.Data); j += size {
			p, q := floatAt(k, x.Data[j:]), floatAt(k, y.Data[j:])
			if p == q && math.Signbit(p) == math.Signbit(q) || math.IsNaN(p) && math.IsNaN(q) {
				continue
			}
			return fmt.Sprintf("tensor %q element %d: %v, want %v", x.Name, j/size, p, q)
		}
	}
	return ""
}

func floatAt(k kind, b []byte) float64 {
	le := binary.LittleEndian
	switch k {
	case kF32:
		return float64(math.Float32frombits(le.Uint32(b)))
	case kF64:
		return math.Float64frombits(le.Uint64(b))
	case kF16:
		return fp16ToF64(le.Uint16(b))
	default:
		return bf16ToF64(le.Uint16(b))
	}
}

func mustDecodeRequest(t testing.TB, body []byte, hl int) *Request {
	t.Helper()
	r, err := DecodeRequest(body, hl, Limits{})
	if err != nil {
		t.Fatalf("DecodeRequest(%.300q, %d): %v", body, hl, err)
	}
	return r
}

func errorsIs(err, target error) bool     { return errors.Is(err, target) }
func errorsAs(err error, target any) bool { return errors.As(err, target) }

func parseFloatBytes(b []byte) (float64, error) { return strconv.ParseFloat(string(b), 64) }

func mathNaN() float64 { return math.NaN() }
