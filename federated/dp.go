package federated

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Differential privacy for federated rounds (DP-FedAvg, McMahan et al.
// 2018): every client clips its delta to L2 norm C with ClipUpdate, the
// server adds Gaussian noise of standard deviation z·C to the sum of the
// clipped deltas with AddNoise, and an Accountant tracks the privacy spent
// by the rounds, each of which samples every client independently with
// probability q (Poisson sampling). z is the noise multiplier;
// NoiseForEpsilon finds the smallest z that keeps a planned number of
// rounds within an (ε, δ) budget.
//
// The guarantee is per client (user-level DP) under add/remove-one-client
// adjacency, and holds only if the noise is added to the sum before it is
// divided by anything that depends on the data (divide by the expected
// number of clients, not the number that arrived), and if the noise
// source is unpredictable to an adversary: pass AddNoise a generator
// seeded from crypto/rand (rand.New(rand.NewChaCha8(seed))), not a fixed
// seed, outside tests and simulations.
//
// Everything here fails closed: invalid clip bounds, noise scales or
// generators remove the data instead of releasing it, and invalid
// accounting parameters report an infinite ε.

// ClipUpdate scales delta in place so that its L2 norm is at most c and
// returns the factor applied: 1 when the norm was already at most c.
// c = +Inf leaves a finite delta as it is.
//
// It fails closed: if c is negative or NaN, or delta holds a NaN or
// infinite value, it zeroes delta and returns 0. The result's norm,
// computed in float64, is at most c even after float32 rounding.
func ClipUpdate(delta []float32, c float64) (scale float64) {
	norm := clipNorm(delta)
	if math.IsNaN(c) || c < 0 || math.IsNaN(norm) || math.IsInf(norm, 0) {
		clear(delta)
		return 0
	}
	if norm <= c {
		return 1
	}
	scale = c / norm
	clipScale(delta, scale)
	// float32 rounding can leave the norm a hair above c; shrink again.
	for range 8 {
		n := clipNorm(delta)
		if n <= c {
			return scale
		}
		f := c / n * (1 - 1e-6)
		clipScale(delta, f)
		scale *= f
	}
	clear(delta)
	return 0
}

// clipNorm returns ‖p‖₂, accumulated in float64.
func clipNorm(p []float32) float64 {
	s := 0.0
	for _, x := range p {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func clipScale(p []float32, f float64) {
	for i, x := range p {
		p[i] = float32(float64(x) * f)
	}
}

// AddNoise adds independent Gaussian noise of standard deviation std to
// every value of sum, drawing from rng. A result beyond the float32 range
// is clamped to ±math.MaxFloat32. A negative std acts like |std| (the
// distribution is symmetric); std = 0 adds nothing.
//
// It fails closed: if std is NaN or infinite, or rng is nil, it zeroes
// sum, so a misconfigured round releases nothing about the clients.
func AddNoise(sum []float32, std float64, rng *rand.Rand) {
	if rng == nil || math.IsNaN(std) || math.IsInf(std, 0) {
		clear(sum)
		return
	}
	std = math.Abs(std)
	if std == 0 {
		return
	}
	for i, x := range sum {
		v := float64(x) + std*rng.NormFloat64()
		v = max(-math.MaxFloat32, min(math.MaxFloat32, v))
		sum[i] = float32(v)
	}
}

// ErrInvalidPrivacy: an Accountant was built with a sampling rate outside
// [0, 1] or a noise multiplier that is negative or not finite.
var ErrInvalidPrivacy = errors.New("invalid privacy parameters")

// Accountant tracks the privacy spent by repeated runs of the sampled
// Gaussian mechanism with Rényi differential privacy (Mironov 2017;
// Mironov, Talwar and Zhang 2019, "Rényi Differential Privacy of the
// Sampled Gaussian Mechanism"): each step samples records (clients) with
// probability q and adds Gaussian noise of noise multiplier σ (std / L2
// sensitivity). RDP is computed at integer orders 2..256 (exactly, by the
// binomial expansion of A_α in log space) and at the fractional orders
// 1.1..10.9 (by the erfc series), composes additively over steps, and is
// converted to (ε, δ)-DP by
//
//	ε = min over α of  steps·RDP(α) + log(1/δ)/(α − 1).
//
// An Accountant is not safe for concurrent use.
type Accountant struct {
	q, sigma float64
	steps    int
	orders   []float64
	rdp      []float64 // RDP of one step at each order
	err      error
}

// NewAccountant returns an accountant for steps that sample with rate q
// (0 ≤ q ≤ 1) and add noise with multiplier noiseMultiplier (≥ 0; 0
// means no noise and an infinite ε). Invalid parameters do not panic: the
// accountant reports them through Err and an infinite ε.
func NewAccountant(q, noiseMultiplier float64) *Accountant {
	a := &Accountant{q: q, sigma: noiseMultiplier, orders: rdpOrders()}
	switch {
	case !(q >= 0 && q <= 1):
		a.err = fmt.Errorf("%w: sampling rate q is %v, want [0, 1]", ErrInvalidPrivacy, q)
	case !(noiseMultiplier >= 0) || math.IsInf(noiseMultiplier, 1):
		a.err = fmt.Errorf("%w: noise multiplier is %v, want a finite value ≥ 0", ErrInvalidPrivacy, noiseMultiplier)
	default:
		a.rdp = rdpVector(q, noiseMultiplier, a.orders)
	}
	return a
}

// Err reports why the accountant's parameters are invalid, or nil.
func (a *Accountant) Err() error { return a.err }

// Step records n more steps (rounds); n ≤ 0 records nothing. The count
// saturates at math.MaxInt.
func (a *Accountant) Step(n int) {
	if n <= 0 {
		return
	}
	if a.steps > math.MaxInt-n {
		a.steps = math.MaxInt
		return
	}
	a.steps += n
}

// Steps returns the number of steps recorded.
func (a *Accountant) Steps() int { return a.steps }

// Epsilon returns the smallest ε such that the steps so far are
// (ε, delta)-DP, and the Rényi order that gives it. With no steps, or
// q = 0, it returns (0, 0): nothing about the records was released. It
// returns (+Inf, 0) when the accountant is invalid, delta is not in
// (0, 1), or no order gives a finite bound (noise multiplier 0).
func (a *Accountant) Epsilon(delta float64) (eps float64, order float64) {
	if a.err != nil || !(delta > 0 && delta < 1) {
		return math.Inf(1), 0
	}
	if a.steps == 0 || a.q == 0 {
		return 0, 0
	}
	total := make([]float64, len(a.rdp))
	for k, r := range a.rdp {
		total[k] = float64(a.steps) * r
	}
	return epsilonFromRDP(a.orders, total, delta)
}

// NoiseForEpsilon returns the smallest noise multiplier (to a relative
// 1e-6, rounded up) for which steps steps with sampling rate q are
// (eps, delta)-DP by the Accountant's analysis. It returns 0 when no
// noise is needed (q = 0, steps = 0, or eps = +Inf) and +Inf when the
// parameters are invalid (q outside [0, 1], steps < 0, eps ≤ 0 or NaN,
// delta outside (0, 1)) or the budget needs a multiplier above 1e6.
func NoiseForEpsilon(q float64, steps int, eps, delta float64) (noiseMultiplier float64) {
	if !(q >= 0 && q <= 1) || steps < 0 || !(eps > 0) || !(delta > 0 && delta < 1) {
		return math.Inf(1)
	}
	if q == 0 || steps == 0 || math.IsInf(eps, 1) {
		return 0
	}
	orders := rdpOrders()
	total := make([]float64, len(orders))
	epsAt := func(sigma float64) float64 {
		for k, r := range rdpVector(q, sigma, orders) {
			total[k] = float64(steps) * r
		}
		e, _ := epsilonFromRDP(orders, total, delta)
		return e
	}
	const minNoise, maxNoise = 1e-6, 1e6
	hi := 1.0
	for epsAt(hi) > eps {
		hi *= 2
		if hi > maxNoise {
			return math.Inf(1)
		}
	}
	lo := hi / 2
	for epsAt(lo) <= eps {
		hi = lo
		lo /= 2
		if lo < minNoise {
			return hi
		}
	}
	// epsAt(lo) > eps ≥ epsAt(hi).
	for hi-lo > 1e-6*hi {
		mid := lo + (hi-lo)/2
		if epsAt(mid) <= eps {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// rdpOrders returns the Rényi orders the accountant evaluates: 1.1, 1.2,
// …, 10.9 (without the integers) and every integer from 2 to 256.
func rdpOrders() []float64 {
	orders := make([]float64, 0, 90+255)
	for x := 11; x < 110; x++ {
		if x%10 != 0 {
			orders = append(orders, float64(x)/10)
		}
	}
	for a := 2; a <= 256; a++ {
		orders = append(orders, float64(a))
	}
	return orders
}

// epsilonFromRDP converts total RDP values at the given orders to the
// smallest ε for delta, and the order that gives it; (+Inf, 0) when none
// is finite.
func epsilonFromRDP(orders, rdp []float64, delta float64) (eps, order float64) {
	eps = math.Inf(1)
	logInvDelta := -math.Log(delta)
	for k, a := range orders {
		e := rdp[k] + logInvDelta/(a-1)
		if e < eps { // NaN never wins
			eps, order = e, a
		}
	}
	return eps, order
}

// rdpVector returns the RDP of one step of the sampled Gaussian mechanism
// at each order.
func rdpVector(q, sigma float64, orders []float64) []float64 {
	out := make([]float64, len(orders))
	for k, a := range orders {
		out[k] = rdpSampledGaussian(q, sigma, a)
	}
	return out
}

// rdpSampledGaussian returns the RDP at order alpha > 1 of one step with
// sampling rate q and noise multiplier sigma: log(A_α)/(α − 1). It
// returns +Inf where the computation does not give a trustworthy finite
// value, so that order is never used.
func rdpSampledGaussian(q, sigma, alpha float64) float64 {
	switch {
	case q == 0:
		return 0
	case sigma == 0:
		return math.Inf(1)
	case q == 1:
		return alpha / (2 * sigma * sigma)
	}
	var logA float64
	if alpha == math.Trunc(alpha) && alpha <= 1<<20 {
		logA = logAInt(q, sigma, int(alpha))
	} else {
		logA = logAFrac(q, sigma, alpha)
	}
	if math.IsNaN(logA) {
		return math.Inf(1)
	}
	// A_α ≥ 1 (Jensen), so a negative log is rounding error.
	return max(0, logA) / (alpha - 1)
}

// logAInt returns log A_α for an integer α ≥ 2 and 0 < q < 1:
//
//	A_α = Σ_{k=0}^{α} C(α,k) (1−q)^{α−k} q^k exp((k² − k) / (2σ²)).
func logAInt(q, sigma float64, alpha int) float64 {
	logQ, log1mQ := math.Log(q), math.Log1p(-q)
	twoSigma2 := 2 * sigma * sigma
	lgA := rdpLogFactorial(alpha)
	logA := math.Inf(-1)
	for k := 0; k <= alpha; k++ {
		fk := float64(k)
		logCoef := lgA - rdpLogFactorial(k) - rdpLogFactorial(alpha-k) +
			fk*logQ + float64(alpha-k)*log1mQ
		logA = rdpLogAdd(logA, logCoef+(fk*fk-fk)/twoSigma2)
	}
	return logA
}

// rdpLogFactorial returns log(n!) for n ≥ 0.
func rdpLogFactorial(n int) float64 {
	v, _ := math.Lgamma(float64(n) + 1)
	return v
}

// logAFracMaxTerms bounds the series in logAFrac; a series that has not
// converged by then yields NaN (and an unused order), never a too-small
// value.
const logAFracMaxTerms = 100000

// logAFrac returns log A_α for a fractional α > 1 and 0 < q < 1, splitting
// the integral at z0 where the two mixture components' densities cross
// and summing the binomial series of each part until its terms fall below
// e^-30 (Mironov, Talwar and Zhang 2019, Section 3.3).
func logAFrac(q, sigma, alpha float64) float64 {
	logQ, log1mQ := math.Log(q), math.Log1p(-q)
	s2 := sigma * sigma
	z0 := s2*math.Log(1/q-1) + 0.5
	sqrt2Sigma := math.Sqrt2 * sigma
	lgA, _ := math.Lgamma(alpha + 1)
	logA0, logA1 := math.Inf(-1), math.Inf(-1)
	for i := 0; i < logAFracMaxTerms; i++ {
		fi := float64(i)
		j := alpha - fi
		lgI, _ := math.Lgamma(fi + 1)
		lgJ, signJ := math.Lgamma(j + 1)
		logCoef := lgA - lgI - lgJ // log|C(α, i)|; its sign is signJ

		logT0 := logCoef + fi*logQ + j*log1mQ
		logT1 := logCoef + j*logQ + fi*log1mQ
		logE0 := math.Log(0.5) + rdpLogErfc((fi-z0)/sqrt2Sigma)
		logE1 := math.Log(0.5) + rdpLogErfc((z0-j)/sqrt2Sigma)
		logS0 := logT0 + (fi*fi-fi)/(2*s2) + logE0
		logS1 := logT1 + (j*j-j)/(2*s2) + logE1

		if signJ > 0 {
			logA0 = rdpLogAdd(logA0, logS0)
			logA1 = rdpLogAdd(logA1, logS1)
		} else {
			logA0 = rdpLogSub(logA0, logS0)
			logA1 = rdpLogSub(logA1, logS1)
		}
		if math.IsNaN(logA0) || math.IsNaN(logA1) {
			return math.NaN()
		}
		if max(logS0, logS1) < -30 {
			return rdpLogAdd(logA0, logA1)
		}
	}
	return math.NaN()
}

// rdpLogAdd returns log(e^x + e^y).
func rdpLogAdd(x, y float64) float64 {
	a, b := min(x, y), max(x, y)
	if math.IsInf(a, -1) {
		return b
	}
	return b + math.Log1p(math.Exp(a-b))
}

// rdpLogSub returns log(e^x − e^y) for x ≥ y, and NaN when x < y (the
// series has lost the precision to go on).
func rdpLogSub(x, y float64) float64 {
	switch {
	case math.IsInf(y, -1):
		return x
	case x < y:
		return math.NaN()
	case x == y:
		return math.Inf(-1)
	}
	return x + math.Log1p(-math.Exp(y-x))
}

// rdpLogErfc returns log(erfc(x)) without underflow for large x.
func rdpLogErfc(x float64) float64 {
	if x < 20 {
		return math.Log(math.Erfc(x))
	}
	// Asymptotic series: erfc(x) = e^{-x²}/(x√π)·(1 − 1/(2x²) + 3/(4x⁴) −
	// 15/(8x⁶) + 105/(16x⁸) − …); at x ≥ 20 the omitted terms are below
	// 1e-12 relative.
	r := 1 / (x * x)
	series := -0.5*r + 0.75*r*r - 1.875*r*r*r + 6.5625*r*r*r*r
	return -x*x - math.Log(x) - 0.5*math.Log(math.Pi) + math.Log1p(series)
}
