package oip

import (
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
	"strconv"
)

// appendFloat32 appends f exactly as strconv.AppendFloat(dst, float64(f),
// 'g', -1, 32) does, only faster: the float32 path of the JSON encoder
// spends most of its time here.
//
// The shortest decimal that reads back as f comes from the Schubfach
// algorithm (Raffaello Giulietti, "The Schubfach way to render doubles",
// 2020) specialised for float32: a table of 77 64-bit powers of ten and
// three 64×32-bit products, no big decimal. Among the shortest decimals
// in f's rounding interval it picks the one closest to f, ties to even
// (but see f32ShortTieUp), as strconv does. The digits come out eight at
// a time from SWAR arithmetic on a uint64, laid out as strconv's %g does
// for precision -1: exponent form when the decimal exponent is below -4
// or at least 6, with a sign and at least two exponent digits.
//
// TestAppendFloat32 compares it with strconv on about 11M values, and on
// all 2^32 with PETREL_EXHAUSTIVE=1.
//
// NaN and ±Inf are left to strconv; appendFloat spells them for JSON
// before they get here.
func appendFloat32(dst []byte, f float32) []byte {
	u := math.Float32bits(f)
	e := u >> 23 & 0xff
	m := u & (1<<23 - 1)
	switch {
	case e == 0xff:
		return strconv.AppendFloat(dst, float64(f), 'g', -1, 32)
	case e == 0 && m == 0:
		if u>>31 != 0 {
			return append(dst, '-', '0')
		}
		return append(dst, '0')
	}
	d, x := f32Shortest(m, e)
	return appendDecimal9(dst, u>>31 != 0, d, x)
}

// f32Shortest returns d and x such that d×10^x is the decimal that
// strconv picks for the finite nonzero float32 with biased exponent e and
// stored significand m: the shortest in its rounding interval (ends
// included when the significand is even), and of those the closest, ties
// to even but for f32ShortTieUp. d has at most 9 digits and may have
// trailing zeros.
func f32Shortest(m, e uint32) (d uint32, x int) {
	var c uint32 // the value is c×2^q
	var q int32
	if e != 0 {
		c = 1<<23 | m
		q = int32(e) - 150
		// An integer below 2^24 is its own shortest decimal: its
		// rounding interval is at most 1 wide.
		if -23 <= q && q <= 0 && c&(1<<uint(-q)-1) == 0 {
			return c >> uint(-q), 0
		}
	} else {
		c = m
		q = -149
	}
	// The rounding interval, in units of 2^(q-2): [cbl, cbr] around cb.
	// Below a power of two the lower neighbour is half as far.
	cb := c << 2
	cbl, cbr := cb-2, cb+2
	var k int32 // floor(log10 of the interval's width)
	closer := m == 0 && e > 1
	if closer {
		cbl++
		k = (q*1262611 - 524031) >> 22 // floor(log10(3/4·2^q))
	} else {
		k = q * 1262611 >> 22 // floor(log10(2^q))
	}
	// h = q + floor(log2(10^-k)) + 1 is in [1, 4], so cb<<h < 2^31.
	h := uint32(q + (-k)*1741647>>19 + 1)
	g := f32Pow10[-k-f32Pow10Min]
	vbl := roundToOdd(g, cbl<<h)
	vb := roundToOdd(g, cb<<h)
	vbr := roundToOdd(g, cbr<<h)
	// vb approximates c×2^q / 10^k in units of 1/4, rounded to odd, and
	// likewise vbl and vbr for the interval's ends.
	lower, upper := vbl, vbr
	if c&1 != 0 {
		lower++
		upper--
	}
	s := vb >> 2
	if s >= 10 {
		// One digit fewer: at most one multiple of 10^(k+1) is in range.
		sp := s / 10
		in0 := lower <= 40*sp
		in1 := 40*sp+40 <= upper
		if in0 != in1 {
			if in1 {
				sp++
			}
			return sp, int(k) + 1
		}
	}
	in0 := lower <= 4*s
	in1 := 4*s+4 <= upper
	if in0 != in1 {
		if in1 {
			s++
		}
		return s, int(k)
	}
	// Both are in range: the closer one; vb, rounded to odd, is even
	// only when exact, so vb == mid is a true tie.
	mid := 4*s + 2
	if vb > mid || vb == mid && (s&1 != 0 || closer && f32ShortTieUp) {
		s++
	}
	return s, int(k)
}

// f32ShortTieUp says whether strconv breaks a tie upward rather than to
// even for a power of two, whose rounding interval is lopsided. Among
// float32 such a tie happens only for ±2^-12 (0.000244140625, q = -35):
// Go 1.26's Dragonbox for float32 (dboxFtoa32 in internal/strconv) looks
// for it at the float64 exponent, -77, and so writes 0.00024414063 where
// ties-to-even gives 0.00024414062. Asking strconv keeps the two in step
// should a later Go release change this.
var f32ShortTieUp = string(strconv.AppendFloat(nil, 0x1p-12, 'g', -1, 32)) == "0.00024414063"

// roundToOdd returns g×cp / 2^64, rounded to odd (any nonzero remainder
// sets the low bit), g being an overestimate of a power of ten.
func roundToOdd(g uint64, cp uint32) uint32 {
	hi, lo := bits.Mul64(g, uint64(cp))
	// g×cp < 2^96, so hi fits in 32 bits.
	y := uint32(hi)
	if uint32(lo>>32) > 1 {
		y |= 1
	}
	return y
}

const f32Pow10Min = -31

// f32Pow10[i] is ceil(10^j / 2^r) for j = i + f32Pow10Min, with r chosen
// so that it lies in [2^63, 2^64): r = floor(log2(10^j)) - 63. The
// float32 range needs j = -k from -31 to 45. TestF32Pow10Table checks the
// table against math/big.
var f32Pow10 = [...]uint64{
	0x81ceb32c4b43fcf5, // -31
	0xa2425ff75e14fc32, // -30
	0xcad2f7f5359a3b3f, // -29
	0xfd87b5f28300ca0e, // -28
	0x9e74d1b791e07e49, // -27
	0xc612062576589ddb, // -26
	0xf79687aed3eec552, // -25
	0x9abe14cd44753b53, // -24
	0xc16d9a0095928a28, // -23
	0xf1c90080baf72cb2, // -22
	0x971da05074da7bef, // -21
	0xbce5086492111aeb, // -20
	0xec1e4a7db69561a6, // -19
	0x9392ee8e921d5d08, // -18
	0xb877aa3236a4b44a, // -17
	0xe69594bec44de15c, // -16
	0x901d7cf73ab0acda, // -15
	0xb424dc35095cd810, // -14
	0xe12e13424bb40e14, // -13
	0x8cbccc096f5088cc, // -12
	0xafebff0bcb24aaff, // -11
	0xdbe6fecebdedd5bf, // -10
	0x89705f4136b4a598, // -9
	0xabcc77118461cefd, // -8
	0xd6bf94d5e57a42bd, // -7
	0x8637bd05af6c69b6, // -6
	0xa7c5ac471b478424, // -5
	0xd1b71758e219652c, // -4
	0x83126e978d4fdf3c, // -3
	0xa3d70a3d70a3d70b, // -2
	0xcccccccccccccccd, // -1
	0x8000000000000000, // 0
	0xa000000000000000, // 1
	0xc800000000000000, // 2
	0xfa00000000000000, // 3
	0x9c40000000000000, // 4
	0xc350000000000000, // 5
	0xf424000000000000, // 6
	0x9896800000000000, // 7
	0xbebc200000000000, // 8
	0xee6b280000000000, // 9
	0x9502f90000000000, // 10
	0xba43b74000000000, // 11
	0xe8d4a51000000000, // 12
	0x9184e72a00000000, // 13
	0xb5e620f480000000, // 14
	0xe35fa931a0000000, // 15
	0x8e1bc9bf04000000, // 16
	0xb1a2bc2ec5000000, // 17
	0xde0b6b3a76400000, // 18
	0x8ac7230489e80000, // 19
	0xad78ebc5ac620000, // 20
	0xd8d726b7177a8000, // 21
	0x878678326eac9000, // 22
	0xa968163f0a57b400, // 23
	0xd3c21bcecceda100, // 24
	0x84595161401484a0, // 25
	0xa56fa5b99019a5c8, // 26
	0xcecb8f27f4200f3a, // 27
	0x813f3978f8940985, // 28
	0xa18f07d736b90be6, // 29
	0xc9f2c9cd04674edf, // 30
	0xfc6f7c4045812297, // 31
	0x9dc5ada82b70b59e, // 32
	0xc5371912364ce306, // 33
	0xf684df56c3e01bc7, // 34
	0x9a130b963a6c115d, // 35
	0xc097ce7bc90715b4, // 36
	0xf0bdc21abb48db21, // 37
	0x96769950b50d88f5, // 38
	0xbc143fa4e250eb32, // 39
	0xeb194f8e1ae525fe, // 40
	0x92efd1b8d0cf37bf, // 41
	0xb7abc627050305ae, // 42
	0xe596b7b0c643c71a, // 43
	0x8f7e32ce7bea5c70, // 44
	0xb35dbf821ae4f38c, // 45
}

var pow10u32 = [...]uint32{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

// appendDecimal9 appends d×10^x (d in [1, 10^9)), negated when neg, in
// the layout of strconv's %g with shortest precision.
func appendDecimal9(dst []byte, neg bool, d uint32, x int) []byte {
	for d%10 == 0 {
		d /= 10
		x++
	}
	t := uint32(bits.Len32(d)) * 1233 >> 12 // floor(log10 d) or one more
	nd := int(t) + 1                        // digits in d
	if d < pow10u32[t] {
		nd--
	}
	dp := nd + x // where the decimal point goes, counting from the first digit

	// d as nine digits, one per byte: d0, then the eight of r8 from its
	// low byte up. Dropping the 9-nd leading zeros leaves the first digit
	// in first and the others in rest, padded with '0' at the top.
	q4 := d / 1e4
	d0 := d / 1e8
	r8 := digits8(q4-d0*1e4, d-q4*1e4)
	sh := uint(9-nd) * 8
	first := '0' + byte(d0) + byte(r8>>(sh-8)) // sh-8 wraps when nd is 9: 0
	rest := r8>>sh | 0x3030303030303030

	n := len(dst)
	dst = slices.Grow(dst, 16) // 15 at most: "-1.2345678e-38", "-0.00012345678"
	b := dst[n : n+16]
	i := 0
	if neg {
		b[0] = '-'
		i = 1
	}
	le := binary.LittleEndian
	switch {
	case dp < -3 || dp > 6: // exponent dp-1 below -4 or at least 6
		b[i] = first
		b[i+1] = '.'
		le.PutUint64(b[i+2:], rest)
		i += nd
		if nd > 1 {
			i++
		}
		ex := dp - 1
		b[i] = 'e'
		b[i+1] = '+'
		if ex < 0 {
			b[i+1] = '-'
			ex = -ex
		}
		// float32 decimal exponents are within [-45, 38].
		b[i+2] = byte('0' + ex/10)
		b[i+3] = byte('0' + ex%10)
		i += 4
	case dp <= 0: // 0.000ddd
		le.PutUint32(b[i:], '0'|'.'<<8|'0'<<16|'0'<<24)
		b[i+4] = '0'
		i += 2 - dp
		b[i] = first
		le.PutUint64(b[i+1:], rest)
		i += nd
	case dp >= nd: // an integer below 10^6: rest has the zeros it needs
		b[i] = first
		le.PutUint64(b[i+1:], rest)
		i += dp
	default: // ddd.ddd: '.' goes in after dp-1 bytes of rest
		b[i] = first
		sd := uint(dp-1) * 8
		m := uint64(1)<<sd - 1
		le.PutUint64(b[i+1:], rest&m|'.'<<sd|(rest&^m)<<8)
		b[i+9] = byte(rest >> 56)
		i += nd + 1
	}
	return dst[:n+i]
}

// digits8 returns the four decimal digits of hi < 10^4 and then the four
// of lo < 10^4 as values 0 to 9 in the bytes of a uint64, the first in the
// low byte, working on two, four and then eight lanes at a time.
func digits8(hi, lo uint32) uint64 {
	x := uint64(hi) | uint64(lo)<<32
	q := x * 10486 >> 20 & 0x0000007f0000007f // lane/100
	x = q | (x-q*100)<<16
	q = x * 103 >> 10 & 0x000f000f000f000f // lane/10
	return q | (x-q*10)<<8
}
