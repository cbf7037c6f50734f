package oip

import "math"

// Conversions between float64 and the 16-bit float formats, rounding to
// nearest, ties to even.

const (
	fp16Exp, fp16Mant = 5, 10 // IEEE 754 binary16
	bf16Exp, bf16Mant = 8, 7  // bfloat16
)

// toSmallFloat rounds f to a float format with ebits exponent and mbits
// mantissa bits. ok is false when a finite f rounds to infinity.
func toSmallFloat(f float64, ebits, mbits uint) (h uint16, ok bool) {
	b := math.Float64bits(f)
	sign := uint16(b>>63) << (ebits + mbits)
	expMax := uint64(1)<<ebits - 1
	fexp := int((b >> 52) & 0x7ff)
	mant := b & (1<<52 - 1)
	if fexp == 0x7ff { // Inf or NaN
		if mant != 0 {
			return sign | uint16(expMax<<mbits) | uint16(1)<<(mbits-1), true
		}
		return sign | uint16(expMax<<mbits), true
	}
	if fexp == 0 { // zero or float64 subnormal: far below these formats
		return sign, true
	}
	bias := 1<<(ebits-1) - 1
	exp := fexp - 1023 // unbiased
	sig := 1<<52 | mant
	e := exp + bias
	var shift uint
	if e >= 1 {
		shift = 52 - mbits
	} else {
		s := 53 - bias - int(mbits) - exp
		if s >= 64 {
			return sign, true
		}
		shift = uint(s)
	}
	m := sig >> shift
	rem := sig & (1<<shift - 1)
	half := uint64(1) << (shift - 1)
	if rem > half || (rem == half && m&1 == 1) {
		m++
	}
	if e < 1 {
		// Subnormal; a carry into bit mbits makes the smallest normal,
		// which the bit layout already encodes.
		return sign | uint16(m), true
	}
	if m == 1<<(mbits+1) {
		m >>= 1
		e++
	}
	if uint64(e) >= expMax {
		return 0, false
	}
	return sign | uint16(uint64(e)<<mbits) | uint16(m&(1<<mbits-1)), true
}

// fromSmallFloat widens a 16-bit float to float64 (exactly).
func fromSmallFloat(h uint16, ebits, mbits uint) float64 {
	neg := h>>(ebits+mbits) != 0
	expMax := uint16(1)<<ebits - 1
	e := (h >> mbits) & expMax
	m := h & (1<<mbits - 1)
	bias := 1<<(ebits-1) - 1
	var f float64
	switch {
	case e == expMax && m != 0:
		return math.NaN()
	case e == expMax:
		f = math.Inf(1)
	case e == 0:
		f = math.Ldexp(float64(m), 1-bias-int(mbits))
	default:
		f = math.Ldexp(float64(1<<mbits|m), int(e)-bias-int(mbits))
	}
	if neg {
		f = -f
	}
	return f
}

// The named conversions the codecs use.

func f64ToFP16(f float64) (uint16, bool) { return toSmallFloat(f, fp16Exp, fp16Mant) }
func f64ToBF16(f float64) (uint16, bool) { return toSmallFloat(f, bf16Exp, bf16Mant) }
func fp16ToF64(h uint16) float64         { return fromSmallFloat(h, fp16Exp, fp16Mant) }
func bf16ToF64(h uint16) float64         { return fromSmallFloat(h, bf16Exp, bf16Mant) }
