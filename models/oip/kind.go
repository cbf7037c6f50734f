package oip

import (
	"math"

	"github.com/petrel-mesh/petrel/models"
)

// kind is a datatype as a small integer, for switches in hot loops.
type kind uint8

const (
	kInvalid kind = iota
	kBool
	kU8
	kU16
	kU32
	kU64
	kI8
	kI16
	kI32
	kI64
	kF16
	kBF16
	kF32
	kF64
	kBytes
)

var kindType = [...]models.DataType{
	kBool: models.Bool, kU8: models.Uint8, kU16: models.Uint16, kU32: models.Uint32,
	kU64: models.Uint64, kI8: models.Int8, kI16: models.Int16, kI32: models.Int32,
	kI64: models.Int64, kF16: models.FP16, kBF16: models.BF16, kF32: models.FP32,
	kF64: models.FP64, kBytes: models.Bytes,
}

// kindSize is the element size in bytes; 0 for BYTES.
var kindSize = [...]int64{
	kBool: 1, kU8: 1, kU16: 2, kU32: 4, kU64: 8, kI8: 1, kI16: 2, kI32: 4,
	kI64: 8, kF16: 2, kBF16: 2, kF32: 4, kF64: 8, kBytes: 0,
}

// Integer ranges.
var (
	kindMin = [...]int64{kI8: math.MinInt8, kI16: math.MinInt16, kI32: math.MinInt32, kI64: math.MinInt64}
	kindMax = [...]uint64{
		kU8: math.MaxUint8, kU16: math.MaxUint16, kU32: math.MaxUint32, kU64: math.MaxUint64,
		kI8: math.MaxInt8, kI16: math.MaxInt16, kI32: math.MaxInt32, kI64: math.MaxInt64,
	}
)

func (k kind) signed() bool   { return k >= kI8 && k <= kI64 }
func (k kind) unsigned() bool { return k >= kU8 && k <= kU64 }
func (k kind) String() string { return string(kindType[k]) }

// kindOf maps a datatype to its kind, kInvalid when unknown.
func kindOf(dt models.DataType) kind { return parseKind(dt) }

// parseKind maps the OIP spelling of a datatype to its kind without
// allocating.
func parseKind[S ~string | ~[]byte](b S) kind {
	switch string(b) {
	case "BOOL":
		return kBool
	case "UINT8":
		return kU8
	case "UINT16":
		return kU16
	case "UINT32":
		return kU32
	case "UINT64":
		return kU64
	case "INT8":
		return kI8
	case "INT16":
		return kI16
	case "INT32":
		return kI32
	case "INT64":
		return kI64
	case "FP16":
		return kF16
	case "BF16":
		return kBF16
	case "FP32":
		return kF32
	case "FP64":
		return kF64
	case "BYTES":
		return kBytes
	}
	return kInvalid
}
