package oip

import (
	"encoding/binary"
	"math"
	"strconv"
)

// Fast, correctly rounded reading of JSON numbers into floats.
//
// decimal scans a number once, checking the JSON grammar and keeping its
// first 19 significant digits as an integer mantissa and a power of ten.
// For FP32, the value is then computed in float64 with at most four
// roundings (an error of a few float64 ulps), and rounded to float32,
// which is only wrong when the float64 lands within those few ulps of a
// point halfway between two float32 values; then, and for everything
// outside the float32 normal range, strconv decides. FP64 uses the exact
// fast path (Clinger's) and strconv otherwise. FP16 and BF16 values are
// read as float64 and then rounded to nearest even, as numpy and servers
// that parse JSON into doubles do.

// decNum is a scanned decimal number: ±mant × 10^exp, where trunc says
// that non-zero digits beyond the 19th were dropped.
type decNum struct {
	mant  uint64
	exp   int
	neg   bool
	trunc bool
	isInt bool
}

var pow10f64 = [...]float64{
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
}

// decimal scans a JSON number at the current position (which must not
// be whitespace) and returns its text and value.
func (s *scanner) decimal() (tok []byte, d decNum, err error) {
	b := s.b
	start := s.i
	j := start
	if j < len(b) && b[j] == '-' {
		d.neg = true
		j++
	}
	nd := 0 // significant digits kept
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
			if nd < 19 {
				d.mant = d.mant*10 + uint64(b[j]-'0')
				nd++
			} else {
				d.exp++
				d.trunc = d.trunc || b[j] != '0'
			}
		}
	default:
		return nil, d, s.syntax("expected a number, found %s", s.describe())
	}
	d.isInt = true
	if j < len(b) && b[j] == '.' {
		j++
		if j >= len(b) || b[j] < '0' || b[j] > '9' {
			s.i = j
			return nil, d, s.syntax("expected a digit after the decimal point")
		}
		if nd == 0 { // leading zeros are not significant
			for j < len(b) && b[j] == '0' {
				d.exp--
				j++
			}
		}
		// Eight digits at a time while they fit in the mantissa.
		for nd <= 19-8 && j+8 <= len(b) {
			v := binary.LittleEndian.Uint64(b[j:])
			if !eightDigits(v) {
				break
			}
			d.mant = d.mant*1e8 + parseEightDigits(v)
			if nd == 0 {
				nd = digitCount(d.mant)
			} else {
				nd += 8
			}
			d.exp -= 8
			j += 8
		}
		for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
			c := b[j] - '0'
			switch {
			case nd == 0 && c == 0:
				d.exp--
			case nd < 19:
				d.mant = d.mant*10 + uint64(c)
				nd++
				d.exp--
			default:
				d.trunc = d.trunc || c != 0
			}
		}
		d.isInt = false
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		eneg := false
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			eneg = b[j] == '-'
			j++
		}
		if j >= len(b) || b[j] < '0' || b[j] > '9' {
			s.i = j
			return nil, d, s.syntax("expected a digit in the exponent")
		}
		e := 0
		for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
			if e < 100000 {
				e = e*10 + int(b[j]-'0')
			}
		}
		if eneg {
			e = -e
		}
		d.exp += e
		d.isInt = false
	}
	s.i = j
	return b[start:j], d, nil
}

// approx returns mant × 10^exp computed in float64 with at most four
// roundings (a relative error below 3 × 2^-53), or false when exp is too
// far from zero for float32 data.
func (d *decNum) approx() (float64, bool) {
	e := d.exp
	if e < -66 || e > 44 {
		return 0, false
	}
	x := float64(d.mant)
	for e < -22 {
		x /= 1e22
		e += 22
	}
	switch {
	case e < 0:
		x /= pow10f64[-e]
	case e <= 22:
		x *= pow10f64[e]
	default:
		x = x * 1e22 * pow10f64[e-22]
	}
	return x, true
}

// float32 returns the number rounded to float32, or false when strconv
// must decide.
func (d *decNum) float32() (float32, bool) {
	if d.mant == 0 {
		if d.neg {
			return float32(math.Copysign(0, -1)), true
		}
		return 0, true
	}
	x, ok := d.approx()
	if !ok || x < 0x1p-126 || x >= math.MaxFloat32 {
		return 0, false
	}
	// float32 values are the float64 values whose low 29 mantissa bits
	// are zero; halfway points have exactly bit 28 set. Stay clear of them
	// by more than the error of x.
	if low := math.Float64bits(x) & (1<<29 - 1); low > 1<<28-16 && low < 1<<28+16 {
		return 0, false
	}
	f := float32(x)
	if d.neg {
		f = -f
	}
	return f, true
}

// float64 returns the number as float64 when that is exact without
// strconv (Clinger's fast path).
func (d *decNum) float64() (float64, bool) {
	if d.trunc || d.mant > 1<<53 || d.exp < -22 || d.exp > 22 {
		return 0, false
	}
	x := float64(d.mant)
	if d.exp < 0 {
		x /= pow10f64[-d.exp]
	} else {
		x *= pow10f64[d.exp]
	}
	if d.neg {
		x = -x
	}
	return x, true
}

// parseFloat reads tok as a float of the given size (32 or 64).
func parseFloat(tok []byte, d *decNum, bits int) (float64, error) {
	if bits == 32 {
		if f, ok := d.float32(); ok {
			return float64(f), nil
		}
	} else if f, ok := d.float64(); ok {
		return f, nil
	}
	return strconv.ParseFloat(string(tok), bits)
}

// eightDigits reports whether the 8 bytes in v (little-endian) are all
// ASCII digits.
func eightDigits(v uint64) bool {
	return (v&0xf0f0f0f0f0f0f0f0)|((v+0x0606060606060606)&0xf0f0f0f0f0f0f0f0)>>4 == 0x3333333333333333
}

// parseEightDigits returns the value of 8 ASCII digits read little-endian
// into v (the first digit in the low byte).
func parseEightDigits(v uint64) uint64 {
	v -= 0x3030303030303030
	v = v*10 + v>>8
	return (v&0x000000ff000000ff*(100+1000000<<32) + (v>>16)&0x000000ff000000ff*(1+10000<<32)) >> 32
}

// digitCount returns the number of decimal digits of m (0 for 0).
func digitCount(m uint64) int {
	n := 0
	for ; m != 0; m /= 10 {
		n++
	}
	return n
}
