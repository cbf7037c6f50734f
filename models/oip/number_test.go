package oip

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// floatSpellings yields decimal spellings that stress float parsing:
// shortest and 17-digit forms of random floats, random digit strings, and
// values on, just above and just below the points halfway between two
// float32 (and, below, FP16) values.
func floatSpellings(r *rand.Rand, n int) []string {
	var out []string
	for range n {
		switch r.IntN(6) {
		case 0: // random float32, several spellings
			f := math.Float32frombits(r.Uint32())
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				continue
			}
			out = append(out,
				strconv.FormatFloat(float64(f), 'g', -1, 32),
				strconv.FormatFloat(float64(f), 'g', -1, 64), // Python's repr of a float32
				strconv.FormatFloat(float64(f), 'e', r.IntN(25), 64),
				strconv.FormatFloat(float64(f), 'f', r.IntN(12), 64))
		case 1: // typical model data
			f := float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(12)-6)))
			out = append(out, strconv.FormatFloat(float64(f), 'g', -1, 64), strconv.FormatFloat(float64(f), 'g', -1, 32))
		case 2: // random digits and exponents
			var sb strings.Builder
			if r.IntN(2) == 0 {
				sb.WriteByte('-')
			}
			sb.WriteByte(byte('1' + r.IntN(9)))
			if k := r.IntN(26); k > 0 {
				sb.WriteByte('.')
				for range k {
					sb.WriteByte(byte('0' + r.IntN(10)))
				}
			}
			sb.WriteString("e" + strconv.Itoa(r.IntN(100)-55))
			out = append(out, sb.String())
		default: // around a float32 halfway point
			a := math.Float32frombits(r.Uint32() & 0x7f7fffff)
			b := math.Nextafter32(a, float32(math.Inf(1)))
			if math.IsInf(float64(b), 0) {
				continue
			}
			mid := (float64(a) + float64(b)) / 2 // exact
			exact := new(big.Float).SetPrec(200).SetFloat64(mid)
			eps := new(big.Float).SetPrec(200).SetMantExp(big.NewFloat(1), exact.MantExp(nil)-120)
			above := new(big.Float).SetPrec(200).Add(exact, eps)
			below := new(big.Float).SetPrec(200).Sub(exact, eps)
			out = append(out,
				exact.Text('e', -1),
				above.Text('e', 50),
				below.Text('e', 50),
				strconv.FormatFloat(mid, 'e', -1, 64),
				strconv.FormatFloat(math.Nextafter(mid, 0), 'e', -1, 64),
				strconv.FormatFloat(math.Nextafter(mid, 1e300), 'e', -1, 64))
		}
	}
	return out
}

func TestFloat32MatchesStrconv(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 200000
	if testing.Short() {
		n = 20000
	}
	fast, total := 0, 0
	for _, s := range append(floatSpellings(r, n),
		"0", "-0", "0.0", "1", "1e38", "3.4028234663852886e38", "3.4028235677973366e38", "1.1754943508222875e-38",
		"1.1754942e-38", "1e-45", "7e-46", "123456789012345678901234567890", "0.000000000000000000000000000001",
		"16777217", "33554435", "1.00000005960464477539062500000000000000000001") {
		sc := scanner{b: []byte(s)}
		tok, dn, err := sc.decimal()
		if err != nil || sc.i != len(s) || string(tok) != s {
			t.Fatalf("decimal(%q): %v at %d", s, err, sc.i)
		}
		want, werr := strconv.ParseFloat(s, 32)
		total++
		f, ok := dn.float32()
		if !ok {
			continue
		}
		fast++
		if werr != nil {
			t.Fatalf("%q: fast path gave %v, strconv: %v", s, f, werr)
		}
		if math.Float32bits(f) != math.Float32bits(float32(want)) {
			t.Fatalf("%q: fast path %v (%#08x), strconv %v (%#08x)", s, f, math.Float32bits(f), float32(want), math.Float32bits(float32(want)))
		}
	}
	t.Logf("fast path took %d of %d adversarial spellings", fast, total)

	// Realistic data, as Python and Go clients spell it, nearly always
	// takes the fast path.
	fast, total = 0, 0
	for _, f := range randF32(100000, 11) {
		for _, s := range []string{strconv.FormatFloat(float64(f), 'g', -1, 64), strconv.FormatFloat(float64(f), 'g', -1, 32)} {
			sc := scanner{b: []byte(s)}
			_, dn, _ := sc.decimal()
			got, ok := dn.float32()
			total++
			if ok {
				fast++
				if got != f {
					t.Fatalf("%q: %v, want %v", s, got, f)
				}
			}
		}
	}
	t.Logf("fast path took %d of %d realistic spellings", fast, total)
	if fast < total*99/100 {
		t.Errorf("fast path took only %d of %d realistic spellings", fast, total)
	}
}

func TestFloat64MatchesStrconv(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	n := 50000
	if testing.Short() {
		n = 5000
	}
	for _, s := range floatSpellings(r, n) {
		sc := scanner{b: []byte(s)}
		tok, dn, err := sc.decimal()
		if err != nil {
			t.Fatal(err)
		}
		want, werr := strconv.ParseFloat(s, 64)
		got, err := parseFloat(tok, &dn, 64)
		if (err == nil) != (werr == nil) || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("%q: %v %v, strconv %v %v", s, got, err, want, werr)
		}
	}
}

// TestSmallFloatRounding checks float64 to FP16 and BF16 rounding
// against exact rational arithmetic, on and next to halfway points.
func TestSmallFloatRounding(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, f := range []struct {
		name string
		to   func(float64) (uint16, bool)
		from func(uint16) float64
		maxF uint16
	}{{"FP16", f64ToFP16, fp16ToF64, 0x7bff}, {"BF16", f64ToBF16, bf16ToF64, 0x7f7f}} {
		for range 50000 {
			lo := uint16(r.IntN(int(f.maxF)))
			a, b := f.from(lo), f.from(lo+1)
			mid := (a + b) / 2 // exact in float64
			for _, x := range []float64{mid, math.Nextafter(mid, 0), math.Nextafter(mid, math.Inf(1)), a, b} {
				got, ok := f.to(x)
				if !ok {
					t.Fatalf("%s %v: overflow", f.name, x)
				}
				want := lo
				switch new(big.Rat).SetFloat64(x).Cmp(new(big.Rat).SetFloat64(mid)) {
				case 1:
					want = lo + 1
				case 0:
					if lo&1 == 1 {
						want = lo + 1
					}
				}
				if got != want {
					t.Fatalf("%s %v: got %#04x, want %#04x (between %v and %v)", f.name, x, got, want, a, b)
				}
				// Negative values mirror positive ones.
				if neg, _ := f.to(-x); neg != want|0x8000 {
					t.Fatalf("%s %v: got %#04x, want %#04x", f.name, -x, neg, want|0x8000)
				}
			}
		}
	}
	// Through the decoder: JSON values are read as float64 first.
	for _, c := range []struct {
		data string
		want uint16
	}{
		{"1.00048828125", 0x3c00},                   // tie: even
		{"1.0004882812500002", 0x3c01},              // float64 above the tie: up
		{"1.00048828125000000000000000001", 0x3c00}, // reads as the tie itself
		{"1.00146484375", 0x3c02},                   // tie: even (up)
		{"-65504", 0xfbff},
	} {
		req := mustDecodeRequest(t, []byte(in(`"name":"h","datatype":"FP16","shape":[1],"data":[`+c.data+`]`)), -1)
		if got := uint16(req.Inputs[0].Data[0]) | uint16(req.Inputs[0].Data[1])<<8; got != c.want {
			t.Errorf("%s: %#04x, want %#04x", c.data, got, c.want)
		}
	}
}
