package oip

import (
	"bytes"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// f32Checker compares appendFloat32 with strconv, reusing its buffers.
type f32Checker struct {
	t        testing.TB
	want     []byte
	got      []byte
	n, fails int
}

func (c *f32Checker) check(u uint32) {
	f := math.Float32frombits(u)
	c.want = strconv.AppendFloat(c.want[:0], float64(f), 'g', -1, 32)
	c.got = appendFloat32(c.got[:0], f)
	c.n++
	if !bytes.Equal(c.got, c.want) {
		c.fails++
		if c.fails <= 20 {
			c.t.Errorf("appendFloat32(%#08x = %v) = %q, strconv says %q", u, f, c.got, c.want)
		}
	}
}

// checkNear checks f and -f and, unless f is ±0 or non-finite, their
// neighbours one ulp either side.
func (c *f32Checker) checkNear(f float32) {
	u := math.Float32bits(f) &^ (1 << 31)
	for _, s := range []uint32{0, 1 << 31} {
		c.check(u | s)
		if u != 0 && u < 0x7f800000 {
			c.check((u - 1) | s)
		}
		if u < 0x7f800000 {
			c.check((u + 1) | s)
		}
	}
}

func newF32Checker(t testing.TB) *f32Checker {
	return &f32Checker{t: t, want: make([]byte, 0, 32), got: make([]byte, 0, 32)}
}

func TestAppendFloat32Special(t *testing.T) {
	c := newF32Checker(t)
	for _, f := range []float32{
		0, 1, 2, 0.5, 0.1, 0.2, 0.3, 1.5, 3.25, 16777216, 16777215, 8388608, 8388607,
		1e-5, 1e-4, 9.9999e-5, 0.0001, 0.00011, 0.000099999995, 1e-45, 1.4e-45,
		1e5, 99999, 999999, 999999.94, 1e6, 1e7, 123456, 1234567, 12345678, 123456789,
		1e21, 1e20, 1e22, 3.4028235e38, math.MaxFloat32, math.SmallestNonzeroFloat32,
		0x1p-126, 0x1p-127, 0x1p-149, 0x1p23, 0x1p24, 0x1p25, 0x1p-77, 0x1p-76, 0x1p-12, 0x1p-35,
		1.7014118e38, 9.999999e-39, 1.1754942e-38, 1.1754944e-38,
		float32(math.Pi), float32(math.E), 2.7182817, 1.0000001, 0.99999994,
	} {
		c.checkNear(f)
	}
	c.check(math.Float32bits(float32(math.Inf(1))))
	c.check(math.Float32bits(float32(math.Inf(-1))))
	c.check(0x7fc00000)
	c.check(0xffc00001)

	for _, tc := range []struct {
		f    float32
		want string
	}{
		{0, "0"},
		{float32(math.Copysign(0, -1)), "-0"},
		{1e6, "1e+06"},
		{1.5e-7, "1.5e-07"},
		{-1e-5, "-1e-05"},
		{1e-4, "0.0001"},
		{999999, "999999"},
		{123456.5, "123456.5"},
		{1e-45, "1e-45"},
		{math.MaxFloat32, "3.4028235e+38"},
		{-0.1, "-0.1"},
	} {
		if got := string(appendFloat32(nil, tc.f)); got != tc.want {
			t.Errorf("appendFloat32(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
	// It appends: what is in dst stays.
	if got := string(appendFloat32([]byte("x="), 2.5)); got != "x=2.5" {
		t.Errorf("appendFloat32 onto %q = %q", "x=", got)
	}
}

// TestAppendFloat32 checks a sample of about 10M float32 against strconv
// (all of them with PETREL_EXHAUSTIVE=1, see TestAppendFloat32Exhaustive).
func TestAppendFloat32(t *testing.T) {
	c := newF32Checker(t)
	// A stride through all bit patterns, NaNs and infinities included.
	for u := uint64(0); u < 1<<32; u += 4099 {
		c.check(uint32(u))
	}
	// Powers of two and their neighbours, normal and subnormal.
	for e := -149; e <= 127; e++ {
		c.checkNear(float32(math.Ldexp(1, e)))
		c.checkNear(float32(math.Ldexp(1.5, e)))
	}
	c.checkNear(math.MaxFloat32)
	// Powers of ten and their neighbours, and integers near them up to
	// 2^24 (the exact-integer range) and a little beyond.
	for e := -45; e <= 38; e++ {
		p := float32(math.Pow(10, float64(e)))
		c.checkNear(p)
		for _, m := range []float32{2, 5, 9.5, 9.9, 9.99, 9.999, 9.9999, 9.99999, 9.999999, 9.9999999} {
			c.checkNear(p * m)
		}
	}
	for p := int64(1); p <= 1<<26; p *= 10 {
		for d := -1000; d <= 1000; d++ {
			if v := p + int64(d); v >= 0 {
				c.checkNear(float32(v))
			}
		}
	}
	for v := int64(1<<24 - 2000); v <= 1<<24+2000; v++ {
		c.checkNear(float32(v))
	}
	// Around the %g switches: exponent -5/-4 and 5/6, and two digits of
	// exponent for the largest and smallest.
	for _, f := range []float32{1e-5, 1e-4, 1e5, 1e6, 999999.94, 99999.99, 0.000099999, 9.9999e-5, 1e21, 1e-10, 1e10} {
		u := math.Float32bits(f)
		for d := uint32(0); d < 2000; d++ {
			c.check(u + d)
			c.check(u - d)
			c.check((u + d) | 1<<31)
			c.check((u - d) | 1<<31)
		}
	}
	// All positive subnormals, every 7th negative one.
	for u := uint32(1); u < 1<<23; u++ {
		c.check(u)
	}
	for u := uint32(1); u < 1<<23; u += 7 {
		c.check(u | 1<<31)
	}
	// Random normally distributed data, as models produce.
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		c.check(math.Float32bits(float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(20)-10)))))
	}
	if c.fails > 0 {
		t.Errorf("%d of %d values differ from strconv", c.fails, c.n)
	}
	t.Logf("%d values checked", c.n)
}

// TestAppendFloat32Exhaustive checks every float32 bit pattern against
// strconv when PETREL_EXHAUSTIVE=1 (minutes of CPU).
// TestAppendFloat32Exhaustive checks every 2^32 bit pattern with
// PETREL_EXHAUSTIVE=1 (about 3 minutes on 2 cores); otherwise it checks
// one contiguous block of 2^20 patterns that moves with the day of the
// year, so successive CI runs cover different ground.
func TestAppendFloat32Exhaustive(t *testing.T) {
	if os.Getenv("PETREL_EXHAUSTIVE") != "1" {
		c := newF32Checker(t)
		start := uint64(time.Now().YearDay()%4096) << 20
		for u := start; u < start+1<<20; u++ {
			c.check(uint32(u))
		}
		if c.fails > 0 {
			t.Errorf("%d mismatches in [%#x, %#x)", c.fails, start, start+1<<20)
		}
		return
	}
	const parts = 2
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fails, n uint64
	for p := range uint64(parts) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newF32Checker(t)
			lo, hi := p<<32/parts, (p+1)<<32/parts
			for u := lo; u < hi; u++ {
				c.check(uint32(u))
			}
			mu.Lock()
			fails += uint64(c.fails)
			n += uint64(c.n)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if n != 1<<32 {
		t.Errorf("checked %d values, want %d", n, uint64(1)<<32)
	}
	t.Logf("%d values checked, %d mismatches", n, fails)
	if fails > 0 {
		t.Errorf("%d mismatches", fails)
	}
}

// TestF32Pow10Table checks f32Pow10 with exact arithmetic.
func TestF32Pow10Table(t *testing.T) {
	for i, g := range f32Pow10 {
		k := i + f32Pow10Min
		// With 10^k = a/b: g-1 < 10^k / 2^r <= g and g in [2^63, 2^64).
		a, b := big.NewInt(1), big.NewInt(1)
		p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(max(k, -k))), nil)
		if k >= 0 {
			a = p
		} else {
			b = p
		}
		if g < 1<<63 {
			t.Errorf("f32Pow10[%d] = %#x is below 2^63", i, g)
			continue
		}
		// r = floor(log2(10^k)) - 63, from the same estimate the code uses.
		r := k*1741647>>19 - 63
		lhs := new(big.Int).SetUint64(g) // compare g·2^r·b with a
		lhsm1 := new(big.Int).SetUint64(g - 1)
		if r >= 0 {
			lhs.Lsh(lhs, uint(r))
			lhsm1.Lsh(lhsm1, uint(r))
		} else {
			a = new(big.Int).Lsh(a, uint(-r))
		}
		lhs.Mul(lhs, b)
		lhsm1.Mul(lhsm1, b)
		if lhs.Cmp(a) < 0 || lhsm1.Cmp(a) >= 0 {
			t.Errorf("f32Pow10[%d] = %#x is not ceil(10^%d / 2^%d)", i, g, k, r)
		}
	}
}

// TestAppendFloatFP32Paths checks that the encoder's float paths that go
// through appendFloat32 (FP32, FP16, BF16 and float32 parameters) write
// what strconv writes.
func TestAppendFloatFP32Paths(t *testing.T) {
	for u := range uint32(1 << 16) {
		for _, f := range []float64{fp16ToF64(uint16(u)), bf16ToF64(uint16(u))} {
			got := appendFloat(nil, f, 32)
			var want []byte
			switch {
			case math.IsNaN(f):
				want = []byte("NaN")
			case math.IsInf(f, 1):
				want = []byte("Infinity")
			case math.IsInf(f, -1):
				want = []byte("-Infinity")
			default:
				want = strconv.AppendFloat(nil, f, 'g', -1, 32)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("appendFloat(%v, 32) = %q, want %q", f, got, want)
			}
		}
	}
	for _, f := range []float32{1, -2, 0.1, 1e6, 1e-7, 123.5} {
		got, err := appendParamFloat(nil, float64(f), 32)
		want := strconv.AppendFloat(nil, float64(f), 'g', -1, 32)
		if !bytes.ContainsAny(want, ".e") {
			want = append(want, ".0"...)
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("appendParamFloat(%v, 32) = %q, %v; want %q", f, got, err, want)
		}
	}
}

func FuzzAppendFloat32(f *testing.F) {
	for _, u := range []uint32{0, 1, 0x80000000, 0x3f800000, 0x7f7fffff, 0x00800000, 0x49742400} {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, u uint32) {
		c := newF32Checker(t)
		c.check(u)
	})
}

func normF32(n int) []float32 {
	r := rand.New(rand.NewPCG(3, 4))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func BenchmarkAppendFloat32(b *testing.B) {
	v := normF32(1024)
	buf := make([]byte, 0, 32<<10)
	for b.Loop() {
		buf = buf[:0]
		for _, f := range v {
			buf = appendFloat32(buf, f)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(v)), "ns/value")
}

func BenchmarkStrconvFloat32(b *testing.B) {
	v := normF32(1024)
	buf := make([]byte, 0, 32<<10)
	for b.Loop() {
		buf = buf[:0]
		for _, f := range v {
			buf = strconv.AppendFloat(buf, float64(f), 'g', -1, 32)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(v)), "ns/value")
}
