package federated

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestClipUpdate(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	tests := []struct {
		name      string
		delta     []float32
		c         float64
		wantScale float64
		want      []float32 // nil: check norm and direction only
	}{
		{"within bound", []float32{3, 4}, 5, 1, []float32{3, 4}},
		{"below bound", []float32{0.3, -0.4}, 1, 1, []float32{0.3, -0.4}},
		{"clipped", []float32{3, 4}, 1, 0.2, []float32{0.6, 0.8}},
		{"clipped negative", []float32{-6, 8}, 5, 0.5, []float32{-3, 4}},
		{"empty", nil, 1, 1, nil},
		{"zero vector, zero bound", []float32{0, 0}, 0, 1, []float32{0, 0}},
		{"zero bound zeroes", []float32{1, 2}, 0, 0, []float32{0, 0}},
		{"infinite bound", []float32{1e30, -1e30}, math.Inf(1), 1, []float32{1e30, -1e30}},
		{"negative bound fails closed", []float32{1, 2}, -1, 0, []float32{0, 0}},
		{"NaN bound fails closed", []float32{1, 2}, math.NaN(), 0, []float32{0, 0}},
		{"NaN value fails closed", []float32{1, nan}, 10, 0, []float32{0, 0}},
		{"Inf value fails closed", []float32{inf, 1}, 10, 0, []float32{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := slices.Clone(tt.delta)
			scale := ClipUpdate(d, tt.c)
			if math.Abs(scale-tt.wantScale) > 1e-6 {
				t.Errorf("scale = %v, want %v", scale, tt.wantScale)
			}
			for i := range d {
				if math.Abs(float64(d[i]-tt.want[i])) > 1e-6 {
					t.Fatalf("delta = %v, want %v", d, tt.want)
				}
			}
		})
	}
}

// TestClipUpdateBound checks that the clipped norm never exceeds c despite
// float32 rounding, and that the direction is kept.
func TestClipUpdateBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for trial := range 500 {
		n := 1 + rng.IntN(2000)
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(8)-4)))
		}
		orig := slices.Clone(d)
		norm := clipNorm(d)
		c := norm * rng.Float64() * 1.5
		scale := ClipUpdate(d, c)
		if got := clipNorm(d); got > c {
			t.Fatalf("trial %d: norm after clipping %v > c = %v", trial, got, c)
		}
		if norm <= c {
			if scale != 1 || !slices.Equal(d, orig) {
				t.Fatalf("trial %d: norm %v ≤ c %v but delta changed (scale %v)", trial, norm, c, scale)
			}
			continue
		}
		if math.Abs(scale-c/norm) > 1e-5*c/norm {
			t.Fatalf("trial %d: scale %v, want ≈ %v", trial, scale, c/norm)
		}
		for i := range d {
			want := float64(orig[i]) * scale
			if math.Abs(float64(d[i])-want) > 1e-6*math.Abs(want)+1e-30 {
				t.Fatalf("trial %d: value %d = %v, want %v (direction changed)", trial, i, d[i], want)
			}
		}
	}
}

func TestAddNoise(t *testing.T) {
	t.Run("statistics", func(t *testing.T) {
		const n, std = 200000, 2.5
		sum := make([]float32, n)
		for i := range sum {
			sum[i] = 10
		}
		AddNoise(sum, std, rand.New(rand.NewPCG(7, 7)))
		mean, sq := 0.0, 0.0
		for _, v := range sum {
			mean += float64(v) - 10
		}
		mean /= n
		for _, v := range sum {
			e := float64(v) - 10 - mean
			sq += e * e
		}
		sd := math.Sqrt(sq / (n - 1))
		// Standard errors: mean 2.5/√n ≈ 0.0056, sd ≈ 0.004.
		if math.Abs(mean) > 0.03 || math.Abs(sd-std) > 0.03 {
			t.Errorf("noise mean %v sd %v, want 0 and %v", mean, sd, std)
		}
	})
	t.Run("deterministic and sign-symmetric", func(t *testing.T) {
		a, b := make([]float32, 100), make([]float32, 100)
		AddNoise(a, 1.5, rand.New(rand.NewPCG(3, 4)))
		AddNoise(b, -1.5, rand.New(rand.NewPCG(3, 4)))
		if !slices.Equal(a, b) {
			t.Error("same seed, std ±1.5: different noise")
		}
		if slices.Equal(a, make([]float32, 100)) {
			t.Error("no noise added")
		}
	})
	t.Run("zero std", func(t *testing.T) {
		s := []float32{1, 2, 3}
		AddNoise(s, 0, rand.New(rand.NewPCG(1, 2)))
		if !slices.Equal(s, []float32{1, 2, 3}) {
			t.Errorf("std 0 changed sum: %v", s)
		}
	})
	t.Run("clamped", func(t *testing.T) {
		s := []float32{math.MaxFloat32, -math.MaxFloat32}
		AddNoise(s, 1e38, rand.New(rand.NewPCG(1, 2)))
		for _, v := range s {
			if math.IsInf(float64(v), 0) || math.IsNaN(float64(v)) {
				t.Errorf("non-finite result %v", s)
			}
		}
	})
	for _, tt := range []struct {
		name string
		std  float64
		rng  *rand.Rand
	}{
		{"NaN std", math.NaN(), rand.New(rand.NewPCG(1, 2))},
		{"Inf std", math.Inf(1), rand.New(rand.NewPCG(1, 2))},
		{"nil rng", 1, nil},
	} {
		t.Run(tt.name+" fails closed", func(t *testing.T) {
			s := []float32{1, 2, 3}
			AddNoise(s, tt.std, tt.rng)
			if !slices.Equal(s, []float32{0, 0, 0}) {
				t.Errorf("sum = %v, want zeroed", s)
			}
		})
	}
}

// TestRDPPublished checks values asserted by TensorFlow Privacy's
// rdp_accountant_test.py (which uses the same RDP→(ε,δ) conversion).
func TestRDPPublished(t *testing.T) {
	total := func(q, sigma float64, steps int, orders []float64) []float64 {
		r := rdpVector(q, sigma, orders)
		for k := range r {
			r[k] *= float64(steps)
		}
		return r
	}
	if got := total(0.1, 2, 10, []float64{5})[0]; math.Abs(got-0.07737) > 5e-6 {
		t.Errorf("compute_rdp(0.1, 2, 10, 5) = %v, want 0.07737", got)
	}
	orders := []float64{1.5, 2.5, 5, 50, 100}
	want := []float64{0.00065, 0.001085, 0.00218075, 0.023846, 167.416307}
	for k, got := range total(0.01, 2.5, 50, orders) {
		if math.Abs(got-want[k]) > 1e-5 {
			t.Errorf("compute_rdp(0.01, 2.5, 50, %v) = %v, want %v", orders[k], got, want[k])
		}
	}

	var ints []float64
	for a := 2; a <= 32; a++ {
		ints = append(ints, float64(a))
	}
	eps, order := epsilonFromRDP(ints, total(0.01, 4, 10000, ints), 1e-5)
	if math.Abs(eps-1.258575) > 1e-5 || order != 20 {
		t.Errorf("q=0.01 σ=4 10000 steps δ=1e-5: ε = %v at order %v, want 1.258575 at 20", eps, order)
	}

	orders = []float64{1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 64, 256}
	r1, r2 := total(1e-4, 0.4, 40000, orders), total(0.1, 2, 100, orders)
	for k := range r1 {
		r1[k] += r2[k]
	}
	eps, order = epsilonFromRDP(orders, r1, 1e-5)
	if math.Abs(eps-8.509656) > 1e-5 || order != 2.5 {
		t.Errorf("composition: ε = %v at order %v, want 8.509656 at 2.5", eps, order)
	}
}

// TestLogAMultiPrecision compares log A_α with values computed by
// numerical integration in 50-digit arithmetic (mpmath.quad of
// N(0,σ²)(z)·((1−q) + q·exp((2z−1)/(2σ²)))^α), mostly the extreme cases
// of TensorFlow Privacy's test_compute_log_a_equals_mp.
func TestLogAMultiPrecision(t *testing.T) {
	tests := []struct{ q, sigma, alpha, want float64 }{
		{1e-7, 0.1, 1.01, 4.0034123278425315e-8},
		{1e-6, 0.1, 256, 3260463.2292971602},
		{1e-5, 0.1, 256.1, 3263607.0397884208},
		{1e-6, 1, 27, 8.769503540806863e-10},
		{1e-4, 1, 1.5, 6.4426869703639565e-9},
		{1e-3, 1, 2, 1.7182803522127806e-6},
		{0.01, 10, 20, 0.00019129699912825616},
		{0.1, 100, 20.5, 0.00019991818458125194},
		{0.99, 0.1, 256, 3263997.4271140206},
		{0.999, 100, 256.1, 3.2601080379731127},
		{0.05, 0.8, 3.3, 0.058330809506609939},
		{0.3, 2, 7.5, 0.93257135559950268},
		{0.02, 1.1, 1.1, 2.7442140959423593e-5},
		{0.5, 0.5, 10.9, 208.26469573189661},
	}
	for _, tt := range tests {
		var got float64
		if tt.alpha == math.Trunc(tt.alpha) {
			got = logAInt(tt.q, tt.sigma, int(tt.alpha))
		} else {
			got = logAFrac(tt.q, tt.sigma, tt.alpha)
		}
		if math.Abs(got-tt.want) > 1e-4*math.Abs(tt.want) {
			t.Errorf("log A(q=%v, σ=%v, α=%v) = %v, want %v", tt.q, tt.sigma, tt.alpha, got, tt.want)
		}
	}
}

// TestLogAQuadrature checks both series against a direct Simpson
// integration of A_α = E_{z~N(0,σ²)}[((1−q) + q·μ1(z)/μ0(z))^α].
func TestLogAQuadrature(t *testing.T) {
	quad := func(q, sigma, alpha float64) float64 {
		lo, hi := -14*sigma, alpha+14*sigma
		const n = 20000
		h := (hi - lo) / n
		f := func(z float64) float64 {
			phi := math.Exp(-z*z/(2*sigma*sigma)) / (sigma * math.Sqrt(2*math.Pi))
			return phi * math.Pow((1-q)+q*math.Exp((2*z-1)/(2*sigma*sigma)), alpha)
		}
		s := f(lo) + f(hi)
		for i := 1; i < n; i++ {
			w := 2.0
			if i%2 == 1 {
				w = 4
			}
			s += w * f(lo+float64(i)*h)
		}
		return math.Log(s * h / 3)
	}
	for _, q := range []float64{0.001, 0.01, 0.1, 0.5, 0.9} {
		for _, sigma := range []float64{0.7, 1, 2, 5} {
			for _, alpha := range []float64{1.3, 2, 2.5, 3, 4.7, 8, 10.9, 16} {
				got := rdpSampledGaussian(q, sigma, alpha) * (alpha - 1)
				want := quad(q, sigma, alpha)
				if math.Abs(got-want) > 1e-6*math.Abs(want)+1e-12 {
					t.Errorf("log A(q=%v, σ=%v, α=%v) = %v, quadrature %v", q, sigma, alpha, got, want)
				}
			}
		}
	}
}

func TestRDPSpecialCases(t *testing.T) {
	for _, alpha := range []float64{1.5, 2, 7.3, 32, 256} {
		for _, sigma := range []float64{0.5, 1, 10} {
			if got, want := rdpSampledGaussian(1, sigma, alpha), alpha/(2*sigma*sigma); got != want {
				t.Errorf("q=1 σ=%v α=%v: RDP %v, want α/(2σ²) = %v", sigma, alpha, got, want)
			}
			if got := rdpSampledGaussian(0, sigma, alpha); got != 0 {
				t.Errorf("q=0: RDP %v, want 0", got)
			}
		}
		if got := rdpSampledGaussian(0.1, 0, alpha); !math.IsInf(got, 1) {
			t.Errorf("σ=0: RDP %v, want +Inf", got)
		}
	}
	// The Accountant with q = 1 is the Gaussian mechanism composed T times:
	// ε = min_α T·α/(2σ²) + log(1/δ)/(α−1) over its orders.
	a := NewAccountant(1, 5)
	a.Step(3)
	a.Step(7)
	eps, order := a.Epsilon(1e-5)
	want := math.Inf(1)
	for _, al := range rdpOrders() {
		want = min(want, 10*al/50+math.Log(1e5)/(al-1))
	}
	if math.Abs(eps-want) > 1e-12 || order < 1 {
		t.Errorf("q=1 σ=5 10 steps: ε = %v at %v, want %v", eps, order, want)
	}
}

func TestAccountantMonotonic(t *testing.T) {
	epsOf := func(q, sigma float64, steps int, delta float64) float64 {
		a := NewAccountant(q, sigma)
		a.Step(steps)
		e, _ := a.Epsilon(delta)
		return e
	}
	prev := 0.0
	for _, steps := range []int{1, 10, 100, 1000, 10000} {
		e := epsOf(0.01, 1.1, steps, 1e-5)
		if !(e > prev) {
			t.Errorf("ε(%d steps) = %v, not above %v", steps, e, prev)
		}
		prev = e
	}
	prev = math.Inf(1)
	for _, sigma := range []float64{0.5, 0.8, 1, 1.5, 3, 10} {
		e := epsOf(0.01, sigma, 1000, 1e-5)
		if !(e < prev) {
			t.Errorf("ε(σ=%v) = %v, not below %v", sigma, e, prev)
		}
		prev = e
	}
	prev = 0
	for _, q := range []float64{0.001, 0.01, 0.1, 0.5, 1} {
		e := epsOf(q, 1.1, 100, 1e-5)
		if !(e > prev) {
			t.Errorf("ε(q=%v) = %v, not above %v", q, e, prev)
		}
		prev = e
	}
	prev = math.Inf(1)
	for _, delta := range []float64{1e-9, 1e-7, 1e-5, 1e-3} {
		e := epsOf(0.01, 1.1, 1000, delta)
		if !(e < prev) {
			t.Errorf("ε(δ=%v) = %v, not below %v", delta, e, prev)
		}
		prev = e
	}
}

func TestAccountantEdges(t *testing.T) {
	a := NewAccountant(0.01, 1)
	if a.Err() != nil {
		t.Fatalf("Err = %v", a.Err())
	}
	if e, o := a.Epsilon(1e-5); e != 0 || o != 0 {
		t.Errorf("no steps: ε %v at %v, want 0", e, o)
	}
	a.Step(0)
	a.Step(-5)
	if a.Steps() != 0 {
		t.Errorf("Steps = %d after Step(0), Step(-5)", a.Steps())
	}
	a.Step(10)
	for _, d := range []float64{0, 1, -1, math.NaN(), 2} {
		if e, _ := a.Epsilon(d); !math.IsInf(e, 1) {
			t.Errorf("δ = %v: ε = %v, want +Inf", d, e)
		}
	}
	a.Step(math.MaxInt)
	if a.Steps() != math.MaxInt {
		t.Errorf("Steps = %d, want saturated at MaxInt", a.Steps())
	}

	z := NewAccountant(0, 1)
	z.Step(100)
	if e, _ := z.Epsilon(1e-5); e != 0 {
		t.Errorf("q = 0: ε = %v, want 0", e)
	}
	noNoise := NewAccountant(0.1, 0)
	noNoise.Step(1)
	if e, _ := noNoise.Epsilon(1e-5); !math.IsInf(e, 1) {
		t.Errorf("σ = 0: ε = %v, want +Inf", e)
	}

	for _, p := range []struct{ q, sigma float64 }{
		{-0.1, 1}, {1.1, 1}, {math.NaN(), 1}, {0.1, -1}, {0.1, math.NaN()}, {0.1, math.Inf(1)},
	} {
		b := NewAccountant(p.q, p.sigma)
		if !errors.Is(b.Err(), ErrInvalidPrivacy) {
			t.Errorf("NewAccountant(%v, %v).Err() = %v, want ErrInvalidPrivacy", p.q, p.sigma, b.Err())
		}
		b.Step(1)
		if e, _ := b.Epsilon(1e-5); !math.IsInf(e, 1) {
			t.Errorf("invalid accountant (%v, %v): ε = %v, want +Inf", p.q, p.sigma, e)
		}
	}
}

func TestNoiseForEpsilon(t *testing.T) {
	// TF Privacy's point (see TestRDPPublished): σ = 4 gives ε = 1.258575
	// at order 20; our orders include 20 and none does better, so the
	// smallest multiplier for that budget is 4.
	if z := NoiseForEpsilon(0.01, 10000, 1.258575, 1e-5); math.Abs(z-4) > 1e-4 {
		t.Errorf("NoiseForEpsilon(0.01, 10000, 1.258575, 1e-5) = %v, want ≈ 4", z)
	}
	for _, tt := range []struct {
		q          float64
		steps      int
		eps, delta float64
	}{
		{0.01, 1000, 1, 1e-5},
		{0.001, 100000, 2, 1e-6},
		{0.1, 50, 8, 1e-5},
		{1, 10, 3, 1e-5},
		{0.05, 1, 0.5, 1e-3},
		{0.5, 200, 50, 1e-5},
	} {
		z := NoiseForEpsilon(tt.q, tt.steps, tt.eps, tt.delta)
		if math.IsInf(z, 0) || !(z > 0) {
			t.Errorf("%+v: multiplier %v", tt, z)
			continue
		}
		a := NewAccountant(tt.q, z)
		a.Step(tt.steps)
		if e, _ := a.Epsilon(tt.delta); e > tt.eps {
			t.Errorf("%+v: multiplier %v gives ε = %v > target", tt, z, e)
		}
		b := NewAccountant(tt.q, z*(1-1e-4))
		b.Step(tt.steps)
		if e, _ := b.Epsilon(tt.delta); e <= tt.eps {
			t.Errorf("%+v: multiplier %v is not minimal: %v already gives ε = %v", tt, z, z*(1-1e-4), e)
		}
	}
	for _, tt := range []struct {
		name       string
		q          float64
		steps      int
		eps, delta float64
		want       float64
	}{
		{"q zero", 0, 100, 1, 1e-5, 0},
		{"no steps", 0.1, 0, 1, 1e-5, 0},
		{"infinite budget", 0.1, 10, math.Inf(1), 1e-5, 0},
		{"eps zero", 0.1, 10, 0, 1e-5, math.Inf(1)},
		{"eps NaN", 0.1, 10, math.NaN(), 1e-5, math.Inf(1)},
		{"delta zero", 0.1, 10, 1, 0, math.Inf(1)},
		{"delta one", 0.1, 10, 1, 1, math.Inf(1)},
		{"q above one", 1.5, 10, 1, 1e-5, math.Inf(1)},
		{"q NaN", math.NaN(), 10, 1, 1e-5, math.Inf(1)},
		{"negative steps", 0.1, -1, 1, 1e-5, math.Inf(1)},
		{"unreachable", 1, 1000000, 1e-9, 1e-5, math.Inf(1)},
	} {
		if got := NoiseForEpsilon(tt.q, tt.steps, tt.eps, tt.delta); got != tt.want {
			t.Errorf("%s: NoiseForEpsilon = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func BenchmarkNoiseForEpsilon(b *testing.B) {
	for b.Loop() {
		NoiseForEpsilon(0.01, 10000, 2, 1e-5)
	}
}
