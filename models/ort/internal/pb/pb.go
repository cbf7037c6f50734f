// Package pb is the smallest protocol-buffer wire codec the ONNX runtime
// wrapper needs: walking the fields of a message and appending fields to a
// buffer. It knows nothing of ONNX; callers interpret field numbers.
//
// It exists so that reading a model's graph inputs and outputs, and building
// test models, need no generated code and no extra module.
package pb

import (
	"errors"
	"fmt"
	"math"
)

// WireType is the low three bits of a field key.
type WireType uint8

// The wire types. Groups (3 and 4) are deprecated and rejected.
const (
	Varint  WireType = 0
	Fixed64 WireType = 1
	Bytes   WireType = 2
	Fixed32 WireType = 5
)

// ErrMalformed wraps every decoding failure.
var ErrMalformed = errors.New("malformed protobuf")

// Field is one decoded field. Num and Type are always set; of the value
// fields only the one matching Type is.
type Field struct {
	Num  int32
	Type WireType
	// U holds a Varint, Fixed32 or Fixed64 value.
	U uint64
	// B holds a length-delimited value; it aliases the input.
	B []byte
}

// ConsumeVarint decodes one varint from the front of b and returns it and
// the number of bytes read, or n <= 0 if b is truncated or the varint is
// longer than ten bytes.
func ConsumeVarint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if i == 9 && c > 1 {
			return 0, -1
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1
}

// Walk calls fn for each field of the message in b, in wire order, and
// stops at the first error fn returns.
func Walk(b []byte, fn func(Field) error) error {
	for len(b) > 0 {
		key, n := ConsumeVarint(b)
		if n <= 0 {
			return fmt.Errorf("%w: bad field key", ErrMalformed)
		}
		b = b[n:]
		num := key >> 3
		if num == 0 || num > math.MaxInt32 {
			return fmt.Errorf("%w: field number %d", ErrMalformed, num)
		}
		f := Field{Num: int32(num), Type: WireType(key & 7)}
		switch f.Type {
		case Varint:
			f.U, n = ConsumeVarint(b)
			if n <= 0 {
				return fmt.Errorf("%w: field %d: bad varint", ErrMalformed, num)
			}
			b = b[n:]
		case Fixed64:
			if len(b) < 8 {
				return fmt.Errorf("%w: field %d: truncated fixed64", ErrMalformed, num)
			}
			f.U = le64(b)
			b = b[8:]
		case Fixed32:
			if len(b) < 4 {
				return fmt.Errorf("%w: field %d: truncated fixed32", ErrMalformed, num)
			}
			f.U = uint64(le32(b))
			b = b[4:]
		case Bytes:
			l, n := ConsumeVarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return fmt.Errorf("%w: field %d: bad length", ErrMalformed, num)
			}
			f.B = b[n : n+int(l)]
			b = b[n+int(l):]
		default:
			return fmt.Errorf("%w: field %d: unsupported wire type %d", ErrMalformed, num, f.Type)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// Varints returns the values of a repeated integer field occurrence, which
// may be a single Varint or a packed Bytes run of them.
func (f Field) Varints() ([]uint64, error) {
	switch f.Type {
	case Varint:
		return []uint64{f.U}, nil
	case Bytes:
		var out []uint64
		b := f.B
		for len(b) > 0 {
			v, n := ConsumeVarint(b)
			if n <= 0 {
				return nil, fmt.Errorf("%w: field %d: bad packed varint", ErrMalformed, f.Num)
			}
			out = append(out, v)
			b = b[n:]
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: field %d: wire type %d is not a varint", ErrMalformed, f.Num, f.Type)
}

// Fixed returns the values of a repeated fixed-width field occurrence
// (size 4 or 8 bytes), single or packed.
func (f Field) Fixed(size int) ([]uint64, error) {
	switch {
	case size == 4 && f.Type == Fixed32, size == 8 && f.Type == Fixed64:
		return []uint64{f.U}, nil
	case f.Type == Bytes:
		if len(f.B)%size != 0 {
			return nil, fmt.Errorf("%w: field %d: packed length %d is not a multiple of %d", ErrMalformed, f.Num, len(f.B), size)
		}
		out := make([]uint64, 0, len(f.B)/size)
		for b := f.B; len(b) > 0; b = b[size:] {
			if size == 4 {
				out = append(out, uint64(le32(b)))
			} else {
				out = append(out, le64(b))
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: field %d: wire type %d is not fixed%d", ErrMalformed, f.Num, f.Type, size*8)
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }

// Buffer accumulates an encoded message.
type Buffer []byte

func (b *Buffer) key(num int32, t WireType) { b.rawVarint(uint64(num)<<3 | uint64(t)) }

func (b *Buffer) rawVarint(v uint64) {
	for v >= 0x80 {
		*b = append(*b, byte(v)|0x80)
		v >>= 7
	}
	*b = append(*b, byte(v))
}

// Varint appends a varint field; negative int64 values are encoded in ten
// bytes, as protobuf int64 fields are.
func (b *Buffer) Varint(num int32, v uint64) {
	b.key(num, Varint)
	b.rawVarint(v)
}

// Int appends an int64 (or int32, or enum) field.
func (b *Buffer) Int(num int32, v int64) { b.Varint(num, uint64(v)) }

// Bytes appends a length-delimited field.
func (b *Buffer) Bytes(num int32, v []byte) {
	b.key(num, Bytes)
	b.rawVarint(uint64(len(v)))
	*b = append(*b, v...)
}

// String appends a string field.
func (b *Buffer) String(num int32, v string) {
	b.key(num, Bytes)
	b.rawVarint(uint64(len(v)))
	*b = append(*b, v...)
}

// Float appends a float (fixed32) field.
func (b *Buffer) Float(num int32, v float32) {
	b.key(num, Fixed32)
	u := math.Float32bits(v)
	*b = append(*b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
}

// Message appends a nested message field built by fn.
func (b *Buffer) Message(num int32, fn func(*Buffer)) {
	var m Buffer
	fn(&m)
	b.Bytes(num, m)
}
