package federated

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
)

// Server-side aggregation: turn one round's client updates into the next
// global parameters. Pure and deterministic: the result depends only on
// the global vector, the updates (in the order given) and, for the
// adaptive optimisers, the state the Aggregator kept from earlier rounds.
//
// Every aggregator computes
//
//	next = global + ServerLR · D(updates)
//
// where D combines the clients' deltas (local − global):
//
//	fedavg, fedprox   sample-weighted mean (McMahan et al. 2017)
//	fedadam/-yogi/-adagrad
//	                  adaptive step on the weighted mean (Reddi et al. 2021)
//	median            coordinate-wise median
//	trimmed-mean      coordinate-wise mean after dropping the largest and
//	                  smallest TrimFraction of values
//	krum              the single delta closest to its n−f−2 nearest
//	                  neighbours (Blanchard et al. 2017)
//	multi-krum        the mean of the m deltas with the best Krum scores
//
// The robust aggregators (median, trimmed-mean, krum, multi-krum) ignore
// Update.Samples: sample counts are reported by the clients, so a weight
// would hand an attacker the lever the robust rule is meant to take away.

// Aggregator names accepted by NewAggregator.
const (
	AggFedAvg      = "fedavg"
	AggFedProx     = "fedprox"
	AggFedAdam     = "fedadam"
	AggFedYogi     = "fedyogi"
	AggFedAdagrad  = "fedadagrad"
	AggMedian      = "median"
	AggTrimmedMean = "trimmed-mean"
	AggKrum        = "krum"
	AggMultiKrum   = "multi-krum"
)

// aggNames is the order AggregatorNames reports.
var aggNames = []string{
	AggFedAvg, AggFedProx, AggFedAdam, AggFedYogi, AggFedAdagrad,
	AggMedian, AggTrimmedMean, AggKrum, AggMultiKrum,
}

// AggregatorNames returns the names NewAggregator accepts, in a fixed
// order. The caller owns the returned slice.
func AggregatorNames() []string { return slices.Clone(aggNames) }

// Defaults that AggOptions' zero fields stand for.
const (
	// DefaultServerLR is the server learning rate of fedavg, fedprox and
	// the robust aggregators: 1 applies the combined delta as is.
	DefaultServerLR = 1.0
	// DefaultAdaptiveServerLR is the server learning rate η of fedadam,
	// fedyogi and fedadagrad. Their first steps move every coordinate by
	// about η (m/√v starts near ±1), so η is a step size in parameter
	// units; Reddi et al. report best values between 10^-2.5 and 10^-1
	// for FedAdam and FedYogi on their tasks.
	DefaultAdaptiveServerLR = 0.01
	// DefaultBeta1 is the first-moment decay of the adaptive optimisers.
	DefaultBeta1 = 0.9
	// DefaultBeta2 is the second-moment decay of fedadam and fedyogi.
	DefaultBeta2 = 0.99
	// DefaultTau is the adaptivity τ of the adaptive optimisers: the
	// second moment starts at τ² and τ is added to √v.
	DefaultTau = 1e-3
	// DefaultTrimFraction is the fraction trimmed from each side by
	// trimmed-mean.
	DefaultTrimFraction = 0.1
)

// AggOptions tunes an Aggregator. A zero field means its default, so the
// zero AggOptions is a valid configuration for every aggregator; fields an
// aggregator does not use are ignored.
type AggOptions struct {
	// ServerLR scales the combined delta. Default DefaultServerLR, or
	// DefaultAdaptiveServerLR for the adaptive optimisers.
	ServerLR float64
	// Beta1 and Beta2 are the moment decays of fedadam and fedyogi, in
	// [0, 1); fedadagrad uses Beta1 only. Defaults DefaultBeta1,
	// DefaultBeta2.
	Beta1, Beta2 float64
	// Tau is the adaptivity of the adaptive optimisers, > 0. Default
	// DefaultTau.
	Tau float64
	// TrimFraction is the fraction of values trimmed from each side of
	// every coordinate by trimmed-mean, in [0, 0.5): floor(TrimFraction·n)
	// values go from each end. Default DefaultTrimFraction.
	TrimFraction float64
	// Byzantine is f, the number of attackers krum and multi-krum must
	// tolerate; they need n ≥ 2f+3 updates. Default, and when 0: the
	// largest f the round's n allows, floor((n−3)/2).
	Byzantine int
	// MultiKrumM is how many deltas multi-krum averages, 1..n. Default
	// n − f.
	MultiKrumM int
}

// Validate reports the first field that is out of range.
func (o AggOptions) Validate() error {
	finiteNonNeg := func(name string, v float64) error {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("%w: %s is %v, want a finite value ≥ 0", ErrInvalidAggOptions, name, v)
		}
		return nil
	}
	if err := finiteNonNeg("ServerLR", o.ServerLR); err != nil {
		return err
	}
	if err := finiteNonNeg("Tau", o.Tau); err != nil {
		return err
	}
	for _, b := range []struct {
		name string
		v    float64
	}{{"Beta1", o.Beta1}, {"Beta2", o.Beta2}} {
		if !(b.v >= 0 && b.v < 1) {
			return fmt.Errorf("%w: %s is %v, want [0, 1)", ErrInvalidAggOptions, b.name, b.v)
		}
	}
	if !(o.TrimFraction >= 0 && o.TrimFraction < 0.5) {
		return fmt.Errorf("%w: TrimFraction is %v, want [0, 0.5)", ErrInvalidAggOptions, o.TrimFraction)
	}
	if o.Byzantine < 0 {
		return fmt.Errorf("%w: Byzantine is %d, want ≥ 0", ErrInvalidAggOptions, o.Byzantine)
	}
	if o.MultiKrumM < 0 {
		return fmt.Errorf("%w: MultiKrumM is %d, want ≥ 0", ErrInvalidAggOptions, o.MultiKrumM)
	}
	return nil
}

// Errors callers may check with errors.Is. Messages wrap them with the
// client, index or value at fault.
var (
	// ErrUnknownAggregator: NewAggregator got a name not in
	// AggregatorNames.
	ErrUnknownAggregator = errors.New("unknown aggregator")
	// ErrInvalidAggOptions: an AggOptions field is out of range.
	ErrInvalidAggOptions = errors.New("invalid aggregator options")
	// ErrNoUpdates: Aggregate got no updates.
	ErrNoUpdates = errors.New("no updates to aggregate")
	// ErrInvalidUpdate: an update is malformed (empty or duplicate client,
	// wrong length, NaN or infinite value, Samples ≤ 0).
	ErrInvalidUpdate = errors.New("invalid update")
	// ErrInvalidGlobal: the global parameters are empty, non-finite, or
	// not the length an adaptive optimiser's state was built for.
	ErrInvalidGlobal = errors.New("invalid global parameters")
	// ErrTooFewUpdates: a robust aggregator got fewer updates than its
	// options need (krum: n ≥ 2f+3; multi-krum: also m ≤ n).
	ErrTooFewUpdates = errors.New("too few updates")
	// ErrAggregateOverflow: the next parameters would not fit in float32.
	ErrAggregateOverflow = errors.New("aggregate overflows float32")
)

// Update is one client's contribution to a round.
type Update struct {
	Client  string    // unique within the round
	Delta   []float32 // local parameters − global parameters, Flatten order
	Samples int       // training examples behind Delta, > 0
}

// Aggregator combines one round's updates into the next global
// parameters.
//
// Aggregate does not modify global or the updates and returns a new slice
// of len(global). It returns an error, and never a NaN or infinite value,
// when the input is invalid; the error names the offending client. The
// adaptive optimisers keep state across rounds and only change it when
// Aggregate succeeds. Aggregators are safe for concurrent use, but calls
// on a stateful one are serialised and their order matters.
type Aggregator interface {
	Name() string
	Aggregate(global []float32, updates []Update) (next []float32, err error)
}

// NewAggregator returns the aggregator called name (see AggregatorNames)
// configured by opts.
//
// "fedprox" is fedavg on the server: FedProx's proximal term
// mu/2·‖w − w_global‖² is added by the clients' local training
// (SGDConfig.ProxMu); the server rule is the weighted mean.
func NewAggregator(name string, opts AggOptions) (Aggregator, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	lr := opts.ServerLR
	if lr == 0 {
		lr = DefaultServerLR
	}
	switch name {
	case AggFedAvg, AggFedProx:
		return &fedAvg{name: name, lr: lr}, nil
	case AggFedAdam, AggFedYogi, AggFedAdagrad:
		return newAdaptive(name, opts), nil
	case AggMedian:
		return &coordMedian{lr: lr}, nil
	case AggTrimmedMean:
		beta := opts.TrimFraction
		if beta == 0 {
			beta = DefaultTrimFraction
		}
		return &trimmedMean{lr: lr, beta: beta}, nil
	case AggKrum:
		return &krum{name: name, lr: lr, f: opts.Byzantine, m: 1}, nil
	case AggMultiKrum:
		return &krum{name: name, lr: lr, f: opts.Byzantine, m: opts.MultiKrumM, multi: true}, nil
	}
	return nil, fmt.Errorf("%w %q (known: %v)", ErrUnknownAggregator, name, aggNames)
}

// Compile-time guards.
var (
	_ Aggregator = (*fedAvg)(nil)
	_ Aggregator = (*adaptive)(nil)
	_ Aggregator = (*coordMedian)(nil)
	_ Aggregator = (*trimmedMean)(nil)
	_ Aggregator = (*krum)(nil)
)

// ---- validation ----------------------------------------------------------

// checkRound validates what is cheap to check: the global vector (length
// and finiteness) and each update's client, length and sample count. The
// updates' values are checked by checkUpdateValues or, for the mean-based
// aggregators, detected while summing (see weightedMean).
func checkRound(global []float32, updates []Update) error {
	if len(global) == 0 {
		return fmt.Errorf("%w: empty", ErrInvalidGlobal)
	}
	if i := aggFirstNonFinite(global); i >= 0 {
		return fmt.Errorf("%w: value %d is %v", ErrInvalidGlobal, i, global[i])
	}
	if len(updates) == 0 {
		return ErrNoUpdates
	}
	seen := make(map[string]struct{}, len(updates))
	for i, u := range updates {
		if u.Client == "" {
			return fmt.Errorf("%w: update %d has an empty client name", ErrInvalidUpdate, i)
		}
		if _, dup := seen[u.Client]; dup {
			return fmt.Errorf("%w: client %q sent more than one update", ErrInvalidUpdate, u.Client)
		}
		seen[u.Client] = struct{}{}
		if len(u.Delta) != len(global) {
			return fmt.Errorf("%w: client %q: delta has %d values, want %d", ErrInvalidUpdate, u.Client, len(u.Delta), len(global))
		}
		if u.Samples <= 0 {
			return fmt.Errorf("%w: client %q: samples is %d, want > 0", ErrInvalidUpdate, u.Client, u.Samples)
		}
	}
	return nil
}

// checkUpdateValues returns an error naming the first client whose delta
// holds a NaN or infinite value.
func checkUpdateValues(updates []Update) error {
	for _, u := range updates {
		if j := aggFirstNonFinite(u.Delta); j >= 0 {
			return fmt.Errorf("%w: client %q: delta value %d is %v", ErrInvalidUpdate, u.Client, j, u.Delta[j])
		}
	}
	return nil
}

// aggFirstNonFinite returns the index of the first NaN or ±Inf in p, or -1.
func aggFirstNonFinite(p []float32) int {
	for i, v := range p {
		if v-v != 0 { // NaN − NaN and Inf − Inf are NaN; finite − itself is 0
			return i
		}
	}
	return -1
}

// fitsFloat32 reports whether v is finite and representable as a finite
// float32.
func fitsFloat32(v float64) bool { return math.Abs(v) <= math.MaxFloat32 }

// ---- weighted mean ---------------------------------------------------------

// meanBlock is the number of coordinates weightedMean sums at a time: the
// float64 accumulator (32 KiB) stays in L1/L2 while the deltas stream
// through once.
const meanBlock = 4096

// sampleWeights returns Samples/ΣSamples for each update.
func sampleWeights(updates []Update) []float64 {
	total := 0.0
	for _, u := range updates {
		total += float64(u.Samples)
	}
	w := make([]float64, len(updates))
	for i, u := range updates {
		w[i] = float64(u.Samples) / total
	}
	return w
}

// weightedMean computes Σ w_i·Delta_i block by block in float64 and calls
// emit(lo, mean[lo:lo+len(acc)]) for each block in order. It reads every
// delta exactly once, four updates per pass over the accumulator.
//
// The deltas' values are not checked beforehand: a NaN or ±Inf in any
// delta makes the affected mean coordinates NaN or ±Inf (weights are
// positive and finite, and a float64 sum of at most a few million finite
// float32 values cannot overflow), so emit sees every bad value and the
// caller diagnoses with checkUpdateValues. This saves a full pass over
// the deltas.
func weightedMean(updates []Update, w []float64, emit func(lo int, mean []float64)) {
	dim := len(updates[0].Delta)
	acc := make([]float64, min(meanBlock, dim))
	for lo := 0; lo < dim; lo += meanBlock {
		hi := min(lo+meanBlock, dim)
		a := acc[:hi-lo]
		clear(a)
		i := 0
		for ; i+4 <= len(updates); i += 4 {
			w0, w1, w2, w3 := w[i], w[i+1], w[i+2], w[i+3]
			d0 := updates[i].Delta[lo:hi][:len(a)]
			d1 := updates[i+1].Delta[lo:hi][:len(a)]
			d2 := updates[i+2].Delta[lo:hi][:len(a)]
			d3 := updates[i+3].Delta[lo:hi][:len(a)]
			for j := range a {
				a[j] += w0*float64(d0[j]) + w1*float64(d1[j]) + w2*float64(d2[j]) + w3*float64(d3[j])
			}
		}
		for ; i < len(updates); i++ {
			wi := w[i]
			d := updates[i].Delta[lo:hi][:len(a)]
			for j := range a {
				a[j] += wi * float64(d[j])
			}
		}
		emit(lo, a)
	}
}

// ---- fedavg / fedprox -------------------------------------------------------

// fedAvg is FedAvg's server rule: next = global + lr·Σ(n_i/N)·Delta_i.
type fedAvg struct {
	name string
	lr   float64
}

func (a *fedAvg) Name() string { return a.name }

func (a *fedAvg) Aggregate(global []float32, updates []Update) ([]float32, error) {
	if err := checkRound(global, updates); err != nil {
		return nil, err
	}
	next := make([]float32, len(global))
	bad := false
	weightedMean(updates, sampleWeights(updates), func(lo int, mean []float64) {
		g := global[lo:][:len(mean)]
		out := next[lo:][:len(mean)]
		for j, m := range mean {
			v := float64(g[j]) + a.lr*m
			if !fitsFloat32(v) {
				bad = true
			}
			out[j] = float32(v)
		}
	})
	if bad {
		return nil, diagnoseNonFinite(updates)
	}
	return next, nil
}

// diagnoseNonFinite explains why a mean-based aggregate was not finite:
// a client's non-finite value if there is one, otherwise float32
// overflow.
func diagnoseNonFinite(updates []Update) error {
	if err := checkUpdateValues(updates); err != nil {
		return err
	}
	return ErrAggregateOverflow
}

// ---- adaptive server optimisers ---------------------------------------------

// adaptive implements FedAdagrad, FedYogi and FedAdam (Reddi et al. 2021,
// Algorithm 2). With Δ the sample-weighted mean delta — the negative of
// the pseudo-gradient, since deltas point from the global model towards
// the clients' models —
//
//	m ← β1·m + (1−β1)·Δ
//	v ← v + Δ²                            (adagrad)
//	v ← v − (1−β2)·Δ²·sign(v − Δ²)        (yogi)
//	v ← β2·v + (1−β2)·Δ²                  (adam)
//	x ← x + η·m / (√v + τ)
//
// with m₀ = 0 and v₀ = τ², and no bias correction, as in the paper. The
// state (m, v) is float64, is allocated on the first round and must keep
// its length; it changes only when a round succeeds.
type adaptive struct {
	name                  string
	lr, beta1, beta2, tau float64
	mu                    sync.Mutex
	m, v, mNext, vNext    []float64
}

func newAdaptive(name string, o AggOptions) *adaptive {
	a := &adaptive{name: name, lr: o.ServerLR, beta1: o.Beta1, beta2: o.Beta2, tau: o.Tau}
	if a.lr == 0 {
		a.lr = DefaultAdaptiveServerLR
	}
	if a.beta1 == 0 {
		a.beta1 = DefaultBeta1
	}
	if a.beta2 == 0 {
		a.beta2 = DefaultBeta2
	}
	if a.tau == 0 {
		a.tau = DefaultTau
	}
	return a
}

func (a *adaptive) Name() string { return a.name }

func (a *adaptive) Aggregate(global []float32, updates []Update) ([]float32, error) {
	if err := checkRound(global, updates); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	dim := len(global)
	if a.m == nil {
		a.m = make([]float64, dim)
		a.v = make([]float64, dim)
		a.mNext = make([]float64, dim)
		a.vNext = make([]float64, dim)
		tau2 := a.tau * a.tau
		for j := range a.v {
			a.v[j] = tau2
		}
	} else if len(a.m) != dim {
		return nil, fmt.Errorf("%w: %d values, but %s's state is for %d (parameters must keep their length across rounds)",
			ErrInvalidGlobal, dim, a.name, len(a.m))
	}
	next := make([]float32, dim)
	bad := false
	b1, b2, lr, tau := a.beta1, a.beta2, a.lr, a.tau
	weightedMean(updates, sampleWeights(updates), func(lo int, delta []float64) {
		g := global[lo:][:len(delta)]
		out := next[lo:][:len(delta)]
		m, v := a.m[lo:][:len(delta)], a.v[lo:][:len(delta)]
		mn, vn := a.mNext[lo:][:len(delta)], a.vNext[lo:][:len(delta)]
		for j, d := range delta {
			mj := b1*m[j] + (1-b1)*d
			d2 := d * d
			var vj float64
			switch a.name {
			case AggFedAdagrad:
				vj = v[j] + d2
			case AggFedYogi:
				vj = v[j] - (1-b2)*d2*yogiSign(v[j]-d2)
			default: // fedadam
				vj = b2*v[j] + (1-b2)*d2
			}
			x := float64(g[j]) + lr*mj/(math.Sqrt(vj)+tau)
			if !fitsFloat32(x) || math.IsInf(vj, 0) {
				bad = true // NaN in d propagates to x
			}
			mn[j], vn[j], out[j] = mj, vj, float32(x)
		}
	})
	if bad {
		return nil, diagnoseNonFinite(updates)
	}
	a.m, a.mNext = a.mNext, a.m
	a.v, a.vNext = a.vNext, a.v
	return next, nil
}

// yogiSign returns -1, 0 or 1.
func yogiSign(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// ---- coordinate-wise median and trimmed mean --------------------------------

// columnBlock is how many coordinates the coordinate-wise aggregators
// transpose at a time: n×columnBlock float32 values, 25 KiB for n = 100.
const columnBlock = 64

// forEachColumn gathers, block by block, every coordinate's n values into
// a contiguous column and calls reduce(column) for it; reduce may reorder
// the column. It returns reduce's results in coordinate order.
func forEachColumn(updates []Update, reduce func(col []float32) float64) []float64 {
	n, dim := len(updates), len(updates[0].Delta)
	buf := make([]float32, n*columnBlock)
	res := make([]float64, dim)
	for lo := 0; lo < dim; lo += columnBlock {
		hi := min(lo+columnBlock, dim)
		for i, u := range updates {
			for j, x := range u.Delta[lo:hi] {
				buf[j*n+i] = x
			}
		}
		for j := range hi - lo {
			res[lo+j] = reduce(buf[j*n : (j+1)*n])
		}
	}
	return res
}

// applyRobustDelta returns global + lr·delta, or ErrAggregateOverflow.
func applyRobustDelta(global []float32, lr float64, delta []float64) ([]float32, error) {
	next := make([]float32, len(global))
	for j, d := range delta {
		v := float64(global[j]) + lr*d
		if !fitsFloat32(v) {
			return nil, fmt.Errorf("%w at value %d", ErrAggregateOverflow, j)
		}
		next[j] = float32(v)
	}
	return next, nil
}

// coordMedian is the coordinate-wise median (Yin et al. 2018); for an
// even n, the mean of the two middle values.
type coordMedian struct{ lr float64 }

func (a *coordMedian) Name() string { return AggMedian }

func (a *coordMedian) Aggregate(global []float32, updates []Update) ([]float32, error) {
	if err := checkRound(global, updates); err != nil {
		return nil, err
	}
	if err := checkUpdateValues(updates); err != nil {
		return nil, err
	}
	n := len(updates)
	med := forEachColumn(updates, func(col []float32) float64 {
		k := n / 2
		hiMid := float64(selectKth(col, k))
		if n%2 == 1 {
			return hiMid
		}
		// col[:k] now holds the k smallest values; the lower middle is
		// their maximum.
		loMid := col[0]
		for _, x := range col[1:k] {
			loMid = max(loMid, x)
		}
		return (float64(loMid) + hiMid) / 2
	})
	return applyRobustDelta(global, a.lr, med)
}

// trimmedMean drops floor(beta·n) values from each end of every
// coordinate and averages the rest (Yin et al. 2018).
type trimmedMean struct{ lr, beta float64 }

func (a *trimmedMean) Name() string { return AggTrimmedMean }

func (a *trimmedMean) Aggregate(global []float32, updates []Update) ([]float32, error) {
	if err := checkRound(global, updates); err != nil {
		return nil, err
	}
	if err := checkUpdateValues(updates); err != nil {
		return nil, err
	}
	n := len(updates)
	k := int(a.beta * float64(n)) // beta < 0.5, so n−2k ≥ 1
	keep := n - 2*k
	mean := forEachColumn(updates, func(col []float32) float64 {
		if k > 0 {
			selectKth(col, k)          // col[k:] ≥ col[k]; col[:k] are the k smallest
			selectKth(col[k:], keep-1) // col[k+keep:] are the k largest
		}
		s := 0.0
		for _, x := range col[k : k+keep] {
			s += float64(x)
		}
		return s / float64(keep)
	})
	return applyRobustDelta(global, a.lr, mean)
}

// selectKth reorders a so that a[k] is the value it would hold if a were
// sorted, a[:k] ≤ a[k] and a[k+1:] ≥ a[k], and returns a[k]. a must hold
// no NaN and 0 ≤ k < len(a). Quickselect with a median-of-three pivot and
// an insertion sort for short ranges; deterministic.
func selectKth(a []float32, k int) float32 {
	lo, hi := 0, len(a)-1
	for hi-lo > 16 {
		mid := lo + (hi-lo)/2
		// Median of three into a[mid], then use it as the pivot.
		if a[mid] < a[lo] {
			a[mid], a[lo] = a[lo], a[mid]
		}
		if a[hi] < a[lo] {
			a[hi], a[lo] = a[lo], a[hi]
		}
		if a[hi] < a[mid] {
			a[hi], a[mid] = a[mid], a[hi]
		}
		p := a[mid]
		i, j := lo, hi
		for i <= j { // Hoare partition
			for a[i] < p {
				i++
			}
			for a[j] > p {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		// Now a[lo..j] ≤ p, a[i..hi] ≥ p, and a[j+1..i-1] == p.
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return a[k]
		}
	}
	for i := lo + 1; i <= hi; i++ {
		for j := i; j > lo && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
	return a[k]
}

// ---- krum and multi-krum ------------------------------------------------------

// krumBlock is how many coordinates pairwiseSqDist handles at a time: the
// block of every update (100 × 4 KiB) stays in L2 for all pairs.
const krumBlock = 1024

// krum is Krum (m = 1) and Multi-Krum (Blanchard et al. 2017). Each
// delta's score is the sum of its squared distances to its n−f−2 nearest
// other deltas; Krum applies the best-scoring delta, Multi-Krum the
// unweighted mean of the m best. Ties go to the earlier update.
type krum struct {
	name  string
	lr    float64
	f, m  int // 0 = default
	multi bool
}

func (a *krum) Name() string { return a.name }

func (a *krum) Aggregate(global []float32, updates []Update) ([]float32, error) {
	if err := checkRound(global, updates); err != nil {
		return nil, err
	}
	n := len(updates)
	f := a.f
	if f == 0 {
		f = (n - 3) / 2
		if n < 3 {
			return nil, fmt.Errorf("%w: %s needs at least 3 updates, got %d", ErrTooFewUpdates, a.name, n)
		}
	}
	if n < 2*f+3 {
		return nil, fmt.Errorf("%w: %s with f = %d byzantine clients needs n ≥ 2f+3 = %d updates, got %d",
			ErrTooFewUpdates, a.name, f, 2*f+3, n)
	}
	m := a.m
	if m == 0 {
		m = n - f
	}
	if m > n {
		return nil, fmt.Errorf("%w: %s averages m = %d updates, got %d", ErrTooFewUpdates, a.name, m, n)
	}
	if err := checkUpdateValues(updates); err != nil {
		return nil, err
	}
	scores := krumScores(pairwiseSqDist(updates), n, n-f-2)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(scores[x], scores[y]) })
	chosen := order[:m]
	mean := make([]float64, len(global))
	for _, i := range chosen {
		for j, x := range updates[i].Delta {
			mean[j] += float64(x)
		}
	}
	inv := 1 / float64(m)
	for j := range mean {
		mean[j] *= inv
	}
	return applyRobustDelta(global, a.lr, mean)
}

// pairwiseSqDist returns the n×n matrix of squared L2 distances between
// the deltas (row-major, symmetric, zero diagonal). Blocks of krumBlock
// coordinates are summed in float32 and the block sums in float64.
func pairwiseSqDist(updates []Update) []float64 {
	n, dim := len(updates), len(updates[0].Delta)
	d := make([]float64, n*n)
	for lo := 0; lo < dim; lo += krumBlock {
		hi := min(lo+krumBlock, dim)
		for i := range n {
			x := updates[i].Delta[lo:hi]
			for j := i + 1; j < n; j++ {
				d[i*n+j] += sqDist32(x, updates[j].Delta[lo:hi])
			}
		}
	}
	for i := range n {
		for j := i + 1; j < n; j++ {
			d[j*n+i] = d[i*n+j]
		}
	}
	return d
}

// sqDist32 returns ‖x − y‖² for len(x) == len(y), with four float32
// accumulators.
func sqDist32(x, y []float32) float64 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		xx := x[i : i+4 : i+4]
		yy := y[i : i+4 : i+4]
		d0, d1, d2, d3 := xx[0]-yy[0], xx[1]-yy[1], xx[2]-yy[2], xx[3]-yy[3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(x); i++ {
		d := x[i] - y[i]
		s0 += d * d
	}
	return float64(s0) + float64(s1) + float64(s2) + float64(s3)
}

// krumScores returns, for each i, the sum of the nb smallest distances
// from i to the others (nb ≤ n−1).
func krumScores(dist []float64, n, nb int) []float64 {
	scores := make([]float64, n)
	row := make([]float64, 0, n-1)
	for i := range n {
		row = row[:0]
		for j := range n {
			if j != i {
				row = append(row, dist[i*n+j])
			}
		}
		slices.Sort(row)
		s := 0.0
		for _, x := range row[:nb] {
			s += x
		}
		scores[i] = s
	}
	return scores
}
