package oip

import (
	"encoding/binary"
	"math"
)

// noFlatF32 turns flatF32 off, for tests that compare it with the
// general loop.
var noFlatF32 bool

// flatF32 is the fast path of flat for FP32 data: it reads plain numbers
// that the fast conversion of decNum.float32 can round, and stops, with
// the position just after the last value it stored, at anything else
// (a syntax error, an unusual number, the end of the array, more values
// than the shape holds), for the general loop to take over from there
// with the same results and errors as if it had read everything. It
// returns the number of values stored.
func (d *decoder) flatF32(ts *tensorState, buf []byte) int64 {
	first := true
	b := d.s.b
	i := d.s.i
	n := ts.n
	if int64(len(buf)) < 4*n {
		return 0
	}
	var count int64
	for count < n {
		j := i
		// The separator, as scanner.next reads it.
		for j < len(b) && (b[j] == ' ' || b[j] == '\n' || b[j] == '\t' || b[j] == '\r') {
			j++
		}
		if !first {
			if j >= len(b) || b[j] != ',' {
				break
			}
			j++
			for j < len(b) && (b[j] == ' ' || b[j] == '\n' || b[j] == '\t' || b[j] == '\r') {
				j++
			}
		}
		// The number, as scanner.decimal reads it, when it has at most
		// 19 digits and an exponent of at most 3 digits.
		neg := false
		if j < len(b) && b[j] == '-' {
			neg = true
			j++
		}
		if j >= len(b) {
			break
		}
		var mant uint64
		exp := 0
		nd := 0 // digits read into mant, leading zeros included
		if c := b[j]; c == '0' {
			j++
		} else if c >= '1' && c <= '9' {
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				mant = mant*10 + uint64(b[j]-'0')
				nd++
				j++
			}
		} else {
			break
		}
		if j < len(b) && b[j] == '.' {
			j++
			f := j
			if j+8 <= len(b) {
				if v := binary.LittleEndian.Uint64(b[j:]); eightDigits(v) {
					mant = mant*1e8 + parseEightDigits(v)
					j += 8
				}
			}
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				mant = mant*10 + uint64(b[j]-'0')
				j++
			}
			if j == f {
				break
			}
			exp = f - j
			nd += j - f
		}
		if nd > 19 {
			break
		}
		if j < len(b) && b[j]|0x20 == 'e' {
			j++
			eneg := false
			if j < len(b) && (b[j] == '+' || b[j] == '-') {
				eneg = b[j] == '-'
				j++
			}
			e, ed := 0, 0
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				e = e*10 + int(b[j]-'0')
				ed++
				j++
			}
			if ed == 0 || ed > 3 {
				break
			}
			if eneg {
				e = -e
			}
			exp += e
		}
		// The conversion decNum.float32 does; false leaves the number to
		// the general path.
		f, ok := (&decNum{neg: neg, mant: mant, exp: exp}).float32()
		if !ok {
			break
		}
		binary.LittleEndian.PutUint32(buf[4*count:], math.Float32bits(f))
		count++
		i = j
		first = false
	}
	d.s.i = i
	return count
}
