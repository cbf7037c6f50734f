// Package models holds what describes and carries a model: the artifact
// manifest, the tensor type shared by codecs, runtimes and the node, and
// the datatype table of the Open Inference Protocol.
package models

import (
	"errors"
	"fmt"
	"math"
)

// DataType is a tensor element type, spelled as the Open Inference Protocol
// (KServe v2) spells it: "FP32", "INT64", "BOOL", "BYTES", ...
type DataType string

// The datatypes Petrel knows. Which of them a runtime can execute is the
// runtime's business; the codecs handle all of them.
const (
	Bool   DataType = "BOOL"
	Uint8  DataType = "UINT8"
	Uint16 DataType = "UINT16"
	Uint32 DataType = "UINT32"
	Uint64 DataType = "UINT64"
	Int8   DataType = "INT8"
	Int16  DataType = "INT16"
	Int32  DataType = "INT32"
	Int64  DataType = "INT64"
	FP16   DataType = "FP16"
	BF16   DataType = "BF16"
	FP32   DataType = "FP32"
	FP64   DataType = "FP64"
	Bytes  DataType = "BYTES"
)

// ErrUnsupportedDataType is returned for a datatype that is not in the
// table above, or that a runtime cannot execute.
var ErrUnsupportedDataType = errors.New("unsupported datatype")

var elemSize = map[DataType]int{
	Bool: 1, Uint8: 1, Int8: 1,
	Uint16: 2, Int16: 2, FP16: 2, BF16: 2,
	Uint32: 4, Int32: 4, FP32: 4,
	Uint64: 8, Int64: 8, FP64: 8,
	Bytes: 0,
}

// Size is the size in bytes of one element, or 0 for BYTES (variable
// length) and for unknown datatypes. Use Valid to tell those apart.
func (d DataType) Size() int { return elemSize[d] }

// Valid reports whether d is a datatype Petrel knows.
func (d DataType) Valid() bool { _, ok := elemSize[d]; return ok }

// ParseDataType accepts the OIP spelling of a datatype.
func ParseDataType(s string) (DataType, error) {
	d := DataType(s)
	if !d.Valid() {
		return "", fmt.Errorf("%w %q", ErrUnsupportedDataType, s)
	}
	return d, nil
}

// Tensor is a named, typed, shaped block of data.
//
// Data holds the elements in row-major order, little-endian, exactly as the
// OIP binary tensor extension lays them out: one byte per BOOL (0 or 1), and
// for BYTES each element as a 4-byte little-endian length followed by that
// many bytes. A rank-0 (scalar) tensor has an empty, non-nil Shape and one
// element.
type Tensor struct {
	Name     string
	DataType DataType
	Shape    []int64
	Data     []byte
}

// NumElements returns the product of the shape, or an error if a dimension
// is negative or the product overflows.
func NumElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in shape %v", d, shape)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("shape %v is too large", shape)
		}
		n *= d
	}
	return n, nil
}

// ByteSize is the number of bytes a tensor of this shape and fixed-size
// datatype occupies. It fails for BYTES, unknown datatypes and bad shapes.
func ByteSize(dt DataType, shape []int64) (int64, error) {
	n, err := NumElements(shape)
	if err != nil {
		return 0, err
	}
	sz := int64(dt.Size())
	if sz == 0 {
		return 0, fmt.Errorf("%w %q has no fixed element size", ErrUnsupportedDataType, dt)
	}
	if n > math.MaxInt64/sz {
		return 0, fmt.Errorf("shape %v is too large", shape)
	}
	return n * sz, nil
}

// Validate checks that the data length agrees with datatype and shape, and
// that every BOOL byte is 0 or 1 and every BYTES element is well framed.
func (t *Tensor) Validate() error {
	if !t.DataType.Valid() {
		return fmt.Errorf("tensor %q: %w %q", t.Name, ErrUnsupportedDataType, t.DataType)
	}
	n, err := NumElements(t.Shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if t.DataType == Bytes {
		count, err := CountBytesElements(t.Data)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if count != n {
			return fmt.Errorf("tensor %q: shape %v needs %d BYTES elements, got %d", t.Name, t.Shape, n, count)
		}
		return nil
	}
	want, err := ByteSize(t.DataType, t.Shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if int64(len(t.Data)) != want {
		return fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, got %d", t.Name, t.Shape, t.DataType, want, len(t.Data))
	}
	if t.DataType == Bool {
		for i, b := range t.Data {
			if b > 1 {
				return fmt.Errorf("tensor %q: BOOL element %d is %d, not 0 or 1", t.Name, i, b)
			}
		}
	}
	return nil
}

// CountBytesElements walks length-prefixed BYTES data and returns how many
// elements it holds, or an error if the framing is truncated.
func CountBytesElements(b []byte) (int64, error) {
	var n int64
	for len(b) > 0 {
		if len(b) < 4 {
			return 0, fmt.Errorf("BYTES element %d: truncated length prefix", n)
		}
		l := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24
		b = b[4:]
		if l > uint64(len(b)) {
			return 0, fmt.Errorf("BYTES element %d: length %d exceeds remaining %d bytes", n, l, len(b))
		}
		b = b[l:]
		n++
	}
	return n, nil
}

// Float64s converts a numeric (or BOOL) tensor's elements to float64, for
// comparisons such as golden checks. FP16 and BF16 are widened exactly.
func (t *Tensor) Float64s() ([]float64, error) {
	sz := t.DataType.Size()
	if sz == 0 {
		return nil, fmt.Errorf("tensor %q: %w %s for numeric conversion", t.Name, ErrUnsupportedDataType, t.DataType)
	}
	if len(t.Data)%sz != 0 {
		return nil, fmt.Errorf("tensor %q: %d bytes is not a whole number of %s elements", t.Name, len(t.Data), t.DataType)
	}
	n := len(t.Data) / sz
	out := make([]float64, n)
	d := t.Data
	for i := range n {
		b := d[i*sz : (i+1)*sz]
		switch t.DataType {
		case Bool, Uint8:
			out[i] = float64(b[0])
		case Int8:
			out[i] = float64(int8(b[0]))
		case Uint16:
			out[i] = float64(le16(b))
		case Int16:
			out[i] = float64(int16(le16(b)))
		case FP16:
			out[i] = float64(HalfToFloat32(le16(b)))
		case BF16:
			out[i] = float64(math.Float32frombits(uint32(le16(b)) << 16))
		case Uint32:
			out[i] = float64(le32(b))
		case Int32:
			out[i] = float64(int32(le32(b)))
		case FP32:
			out[i] = float64(math.Float32frombits(le32(b)))
		case Uint64:
			out[i] = float64(le64(b))
		case Int64:
			out[i] = float64(int64(le64(b)))
		case FP64:
			out[i] = math.Float64frombits(le64(b))
		}
	}
	return out, nil
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }

// HalfToFloat32 converts IEEE 754 binary16 bits to a float32.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		for mant&0x400 == 0 {
			mant <<= 1
			exp--
		}
		exp++
		mant &= 0x3ff
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}
