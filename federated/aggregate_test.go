package federated

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// aggMkUpdates builds updates named c0, c1, … with the given deltas and
// sample counts (1 each when samples is nil).
func aggMkUpdates(deltas [][]float32, samples []int) []Update {
	us := make([]Update, len(deltas))
	for i, d := range deltas {
		s := 1
		if samples != nil {
			s = samples[i]
		}
		us[i] = Update{Client: fmt.Sprintf("c%d", i), Delta: d, Samples: s}
	}
	return us
}

func aggRandomUpdates(rng *rand.Rand, n, dim int) []Update {
	deltas := make([][]float32, n)
	samples := make([]int, n)
	for i := range deltas {
		deltas[i] = make([]float32, dim)
		for j := range deltas[i] {
			deltas[i][j] = float32(rng.NormFloat64())
		}
		samples[i] = 1 + rng.IntN(1000)
	}
	return aggMkUpdates(deltas, samples)
}

func aggMust(t *testing.T, name string, opts AggOptions) Aggregator {
	t.Helper()
	a, err := NewAggregator(name, opts)
	if err != nil {
		t.Fatalf("NewAggregator(%q): %v", name, err)
	}
	return a
}

func aggCloseTo(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for j := range got {
		if math.Abs(float64(got[j])-want[j]) > tol*(1+math.Abs(want[j])) {
			t.Fatalf("%s: value %d = %v, want %v", what, j, got[j], want[j])
		}
	}
}

func TestNewAggregator(t *testing.T) {
	names := AggregatorNames()
	if len(names) != 9 {
		t.Fatalf("AggregatorNames = %v", names)
	}
	names[0] = "mutated"
	if AggregatorNames()[0] != AggFedAvg {
		t.Error("AggregatorNames shares its slice with callers")
	}
	for _, name := range AggregatorNames() {
		a := aggMust(t, name, AggOptions{})
		if a.Name() != name {
			t.Errorf("NewAggregator(%q).Name() = %q", name, a.Name())
		}
	}
	if _, err := NewAggregator("fedsgd", AggOptions{}); !errors.Is(err, ErrUnknownAggregator) || !strings.Contains(err.Error(), "fedsgd") {
		t.Errorf("unknown name: err = %v", err)
	}
	bad := []struct {
		field string
		opts  AggOptions
	}{
		{"ServerLR", AggOptions{ServerLR: -1}},
		{"ServerLR", AggOptions{ServerLR: math.NaN()}},
		{"ServerLR", AggOptions{ServerLR: math.Inf(1)}},
		{"Beta1", AggOptions{Beta1: 1}},
		{"Beta1", AggOptions{Beta1: -0.1}},
		{"Beta2", AggOptions{Beta2: 1.5}},
		{"Beta2", AggOptions{Beta2: math.NaN()}},
		{"Tau", AggOptions{Tau: -1e-3}},
		{"TrimFraction", AggOptions{TrimFraction: 0.5}},
		{"TrimFraction", AggOptions{TrimFraction: -0.1}},
		{"Byzantine", AggOptions{Byzantine: -1}},
		{"MultiKrumM", AggOptions{MultiKrumM: -2}},
	}
	for _, tt := range bad {
		for _, name := range []string{AggFedAvg, AggFedAdam, AggKrum} {
			_, err := NewAggregator(name, tt.opts)
			if !errors.Is(err, ErrInvalidAggOptions) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("%s with %+v: err = %v, want ErrInvalidAggOptions naming %s", name, tt.opts, err, tt.field)
			}
		}
	}
}

func TestFedAvg(t *testing.T) {
	global := []float32{1, 2}
	updates := aggMkUpdates([][]float32{{1, 0}, {0, 3}}, []int{1, 3})
	// Weighted mean delta: (1·[1,0] + 3·[0,3]) / 4 = [0.25, 2.25].
	for _, tt := range []struct {
		name string
		lr   float64
		want []float64
	}{
		{AggFedAvg, 0, []float64{1.25, 4.25}},
		{AggFedProx, 0, []float64{1.25, 4.25}},
		{AggFedAvg, 0.5, []float64{1.125, 3.125}},
	} {
		got, err := aggMust(t, tt.name, AggOptions{ServerLR: tt.lr}).Aggregate(global, updates)
		if err != nil {
			t.Fatal(err)
		}
		aggCloseTo(t, tt.name, got, tt.want, 1e-7)
	}
}

// TestFedAvgMatchesNaive covers the blocked, four-at-a-time kernel: sizes
// that are not multiples of the block or of four.
func TestFedAvgMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	for _, n := range []int{1, 2, 3, 4, 5, 8, 9, 11} {
		for _, dim := range []int{1, 3, meanBlock - 1, meanBlock, meanBlock + 5, 3*meanBlock + 17} {
			updates := aggRandomUpdates(rng, n, dim)
			global := aggRandomUpdates(rng, 1, dim)[0].Delta
			total := 0.0
			for _, u := range updates {
				total += float64(u.Samples)
			}
			want := make([]float64, dim)
			for j := range want {
				s := 0.0
				for _, u := range updates {
					s += float64(u.Samples) * float64(u.Delta[j])
				}
				want[j] = float64(global[j]) + 0.7*s/total
			}
			got, err := aggMust(t, AggFedAvg, AggOptions{ServerLR: 0.7}).Aggregate(global, updates)
			if err != nil {
				t.Fatal(err)
			}
			aggCloseTo(t, fmt.Sprintf("n=%d dim=%d", n, dim), got, want, 1e-6)
		}
	}
}

// aggRefAdaptive is a scalar restatement of Reddi et al.'s Algorithm 2 for
// one coordinate.
type aggRefAdaptive struct {
	kind            string
	lr, b1, b2, tau float64
	m, v            float64
	started         bool
}

func (r *aggRefAdaptive) step(x, delta float64) float64 {
	if !r.started {
		r.v, r.started = r.tau*r.tau, true
	}
	r.m = r.b1*r.m + (1-r.b1)*delta
	switch r.kind {
	case AggFedAdagrad:
		r.v += delta * delta
	case AggFedYogi:
		s := 0.0
		if r.v-delta*delta > 0 {
			s = 1
		} else if r.v-delta*delta < 0 {
			s = -1
		}
		r.v -= (1 - r.b2) * delta * delta * s
	case AggFedAdam:
		r.v = r.b2*r.v + (1-r.b2)*delta*delta
	}
	return x + r.lr*r.m/(math.Sqrt(r.v)+r.tau)
}

func TestAdaptive(t *testing.T) {
	rounds := [][][]float32{
		{{0.5, -1, 0}, {1.5, -3, 0}},
		{{0.2, 0.1, 1e-4}, {0.2, 0.3, -1e-4}},
		{{-2, 0, 0.01}, {0, 0, 0.01}},
		{{1e-3, -1e-3, 5}, {1e-3, -1e-3, 5}},
	}
	samples := []int{3, 1}
	for _, kind := range []string{AggFedAdam, AggFedYogi, AggFedAdagrad} {
		for _, opts := range []AggOptions{{}, {ServerLR: 0.1, Beta1: 0.5, Beta2: 0.9, Tau: 0.01}} {
			agg := aggMust(t, kind, opts)
			lr, b1, b2, tau := opts.ServerLR, opts.Beta1, opts.Beta2, opts.Tau
			if lr == 0 {
				lr, b1, b2, tau = DefaultAdaptiveServerLR, DefaultBeta1, DefaultBeta2, DefaultTau
			}
			refs := make([]aggRefAdaptive, 3)
			for j := range refs {
				refs[j] = aggRefAdaptive{kind: kind, lr: lr, b1: b1, b2: b2, tau: tau}
			}
			x := []float32{1, -1, 0.5}
			for r, deltas := range rounds {
				want := make([]float64, len(x))
				for j := range x {
					d := (3*float64(deltas[0][j]) + float64(deltas[1][j])) / 4
					want[j] = refs[j].step(float64(x[j]), d)
				}
				next, err := agg.Aggregate(x, aggMkUpdates(deltas, samples))
				if err != nil {
					t.Fatal(err)
				}
				aggCloseTo(t, fmt.Sprintf("%s %+v round %d", kind, opts, r), next, want, 1e-6)
				x = next
			}
		}
	}
}

func TestAdaptiveDirectionAndState(t *testing.T) {
	for _, kind := range []string{AggFedAdam, AggFedYogi, AggFedAdagrad} {
		global := []float32{0, 0}
		first := aggMkUpdates([][]float32{{1, -1}}, nil)
		second := aggMkUpdates([][]float32{{0.5, 0.25}}, nil)

		agg := aggMust(t, kind, AggOptions{})
		next, err := agg.Aggregate(global, first)
		if err != nil {
			t.Fatal(err)
		}
		// The delta points from the global model to the client's, so the
		// step follows it.
		if !(next[0] > 0 && next[1] < 0) {
			t.Errorf("%s: step %v does not follow delta [1, -1]", kind, next)
		}
		// A rejected round leaves the state alone: afterwards agg agrees
		// with an aggregator that never saw it.
		if _, err := agg.Aggregate(next, aggMkUpdates([][]float32{{1, float32(math.NaN())}}, nil)); !errors.Is(err, ErrInvalidUpdate) {
			t.Fatalf("%s: NaN update: err = %v, want ErrInvalidUpdate", kind, err)
		}
		fresh := aggMust(t, kind, AggOptions{})
		if _, err := fresh.Aggregate(global, first); err != nil {
			t.Fatal(err)
		}
		a, err1 := agg.Aggregate(next, second)
		b, err2 := fresh.Aggregate(next, second)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if !slices.Equal(a, b) {
			t.Errorf("%s: state changed by a rejected round: %v vs %v", kind, a, b)
		}
		// The same holds for a round whose result overflows float32.
		big := aggMust(t, kind, AggOptions{ServerLR: 1e38})
		if _, err := big.Aggregate([]float32{math.MaxFloat32, 0}, first); !errors.Is(err, ErrAggregateOverflow) {
			t.Errorf("%s: overflowing round: err = %v, want ErrAggregateOverflow", kind, err)
		}
		bigFresh := aggMust(t, kind, AggOptions{ServerLR: 1e38})
		a, err1 = big.Aggregate(global, second)
		b, err2 = bigFresh.Aggregate(global, second)
		if err1 != nil || err2 != nil || !slices.Equal(a, b) {
			t.Errorf("%s: state changed by an overflowing round: %v %v vs %v %v", kind, a, err1, b, err2)
		}
		// The length is fixed by the first round.
		if _, err := agg.Aggregate([]float32{0, 0, 0}, aggMkUpdates([][]float32{{1, 1, 1}}, nil)); !errors.Is(err, ErrInvalidGlobal) {
			t.Errorf("%s: dimension change: err = %v, want ErrInvalidGlobal", kind, err)
		}
	}
}

// TestAdaptiveConcurrent runs rounds on one stateful aggregator from
// several goroutines (meaningful under -race).
func TestAdaptiveConcurrent(t *testing.T) {
	agg := aggMust(t, AggFedYogi, AggOptions{})
	rng := rand.New(rand.NewPCG(5, 5))
	ups := aggRandomUpdates(rng, 4, 100)
	global := make([]float32, 100)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				if _, err := agg.Aggregate(global, ups); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestMedianAndTrimmedMean(t *testing.T) {
	global := []float32{10, 20}
	tests := []struct {
		name   string
		opts   AggOptions
		deltas [][]float32
		want   []float64
	}{
		{AggMedian, AggOptions{}, [][]float32{{1, 5}, {3, -1}, {2, 100}}, []float64{12, 25}},
		{AggMedian, AggOptions{}, [][]float32{{1, 5}, {3, -1}, {2, 100}, {-50, 6}}, []float64{11.5, 25.5}},
		{AggMedian, AggOptions{ServerLR: 2}, [][]float32{{1, 0}}, []float64{12, 20}},
		{AggMedian, AggOptions{}, [][]float32{{4, 4}, {4, 4}, {4, 4}, {1, 9}}, []float64{14, 24}},
		// n = 10, β = 0.1: one value trimmed from each end.
		{AggTrimmedMean, AggOptions{}, [][]float32{
			{-100, 0}, {1, 0}, {2, 0}, {3, 0}, {4, 0}, {5, 0}, {6, 0}, {7, 0}, {8, 0}, {1000, 8},
		}, []float64{10 + 4.5, 20 + 0}},
		// n = 5, β = 0.1 trims nothing: the plain mean.
		{AggTrimmedMean, AggOptions{}, [][]float32{{1, 1}, {2, 1}, {3, 1}, {4, 1}, {100, 1}}, []float64{32, 21}},
		// n = 5, β = 0.4: two from each end leaves the median.
		{AggTrimmedMean, AggOptions{TrimFraction: 0.4}, [][]float32{{1, 1}, {2, 1}, {3, 1}, {4, 1}, {100, 1}}, []float64{13, 21}},
	}
	for _, tt := range tests {
		got, err := aggMust(t, tt.name, tt.opts).Aggregate(global, aggMkUpdates(tt.deltas, nil))
		if err != nil {
			t.Fatal(err)
		}
		aggCloseTo(t, fmt.Sprintf("%s %v", tt.name, tt.deltas), got, tt.want, 1e-7)
	}
}

// TestCoordinateWiseMatchesSort compares median and trimmed mean with a
// sort per coordinate, over sizes that are not multiples of the column
// block and values with many ties.
func TestCoordinateWiseMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	for _, n := range []int{1, 2, 3, 4, 7, 10, 17, 33, 100} {
		for _, dim := range []int{1, columnBlock - 1, 2*columnBlock + 3} {
			updates := aggRandomUpdates(rng, n, dim)
			for _, u := range updates[:n/2] { // ties
				for j := range u.Delta {
					u.Delta[j] = float32(math.Round(float64(u.Delta[j])))
				}
			}
			global := make([]float32, dim)
			const beta = 0.2
			k := int(beta * float64(n))
			wantMed, wantTrim := make([]float64, dim), make([]float64, dim)
			col := make([]float64, n)
			for j := range dim {
				for i, u := range updates {
					col[i] = float64(u.Delta[j])
				}
				slices.Sort(col)
				wantMed[j] = (col[(n-1)/2] + col[n/2]) / 2
				s := 0.0
				for _, x := range col[k : n-k] {
					s += x
				}
				wantTrim[j] = s / float64(n-2*k)
			}
			med, err := aggMust(t, AggMedian, AggOptions{}).Aggregate(global, updates)
			if err != nil {
				t.Fatal(err)
			}
			aggCloseTo(t, fmt.Sprintf("median n=%d dim=%d", n, dim), med, wantMed, 1e-6)
			trim, err := aggMust(t, AggTrimmedMean, AggOptions{TrimFraction: beta}).Aggregate(global, updates)
			if err != nil {
				t.Fatal(err)
			}
			aggCloseTo(t, fmt.Sprintf("trimmed n=%d dim=%d", n, dim), trim, wantTrim, 1e-6)
		}
	}
}

func TestSelectKth(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	for trial := range 2000 {
		n := 1 + rng.IntN(150)
		a := make([]float32, n)
		levels := 1 + rng.IntN(2*n) // few levels: many ties
		for i := range a {
			a[i] = float32(rng.IntN(levels))
		}
		sorted := slices.Clone(a)
		slices.Sort(sorted)
		k := rng.IntN(n)
		got := selectKth(a, k)
		if got != sorted[k] || a[k] != got {
			t.Fatalf("trial %d: selectKth(k=%d) = %v (a[k] = %v), want %v", trial, k, got, a[k], sorted[k])
		}
		for i := range a {
			if (i < k && a[i] > got) || (i > k && a[i] < got) {
				t.Fatalf("trial %d: not partitioned around %d: %v", trial, k, a)
			}
		}
		slices.Sort(a)
		if !slices.Equal(a, sorted) {
			t.Fatalf("trial %d: values changed", trial)
		}
	}
}

// naiveKrumChoice scores in float64 straight from the definition.
func naiveKrumChoice(updates []Update, f, m int) []int {
	n := len(updates)
	scores := make([]float64, n)
	for i := range n {
		var ds []float64
		for j := range n {
			if j == i {
				continue
			}
			s := 0.0
			for c := range updates[i].Delta {
				d := float64(updates[i].Delta[c]) - float64(updates[j].Delta[c])
				s += d * d
			}
			ds = append(ds, s)
		}
		slices.Sort(ds)
		for _, d := range ds[:n-f-2] {
			scores[i] += d
		}
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case scores[a] < scores[b]:
			return -1
		case scores[a] > scores[b]:
			return 1
		}
		return 0
	})
	return idx[:m]
}

func TestKrum(t *testing.T) {
	// 1-D: four honest points near 0 and one far away. n = 5, f = 1:
	// each score sums the 2 nearest squared distances.
	ups := aggMkUpdates([][]float32{{0}, {0.1}, {0.3}, {-0.1}, {10}}, []int{1, 1, 1, 1, 1000})
	// Scores: 0 → 0.01+0.01 = 0.02; 0.1 → 0.01+0.04 = 0.05;
	// 0.3 → 0.04+0.09 = 0.13; -0.1 → 0.01+0.04 = 0.05; 10 → big.
	got, err := aggMust(t, AggKrum, AggOptions{Byzantine: 1}).Aggregate([]float32{1}, ups)
	if err != nil {
		t.Fatal(err)
	}
	aggCloseTo(t, "krum", got, []float64{1}, 1e-7)
	// Multi-Krum, default m = n − f = 4: the four honest points.
	got, err = aggMust(t, AggMultiKrum, AggOptions{Byzantine: 1}).Aggregate([]float32{1}, ups)
	if err != nil {
		t.Fatal(err)
	}
	aggCloseTo(t, "multi-krum", got, []float64{1 + 0.3/4}, 1e-6)
	got, err = aggMust(t, AggMultiKrum, AggOptions{Byzantine: 1, MultiKrumM: 2}).Aggregate([]float32{1}, ups)
	if err != nil {
		t.Fatal(err)
	}
	// Best two: 0 (0.02), then 0.1 and -0.1 tie at 0.05: the earlier, 0.1.
	aggCloseTo(t, "multi-krum m=2", got, []float64{1 + 0.05}, 1e-6)

	rng := rand.New(rand.NewPCG(12, 13))
	for _, tt := range []struct{ n, dim, f, m int }{
		{3, 10, 0, 0}, {7, 1500, 2, 3}, {12, 2049, 0, 5}, {20, 100, 8, 0}, {20, 100, 3, 20},
	} {
		updates := aggRandomUpdates(rng, tt.n, tt.dim)
		f := tt.f
		if f == 0 {
			f = (tt.n - 3) / 2
		}
		m := tt.m
		if m == 0 {
			m = tt.n - f
		}
		chosen := naiveKrumChoice(updates, f, m)
		want := make([]float64, tt.dim)
		for _, i := range chosen {
			for j, x := range updates[i].Delta {
				want[j] += float64(x) / float64(m)
			}
		}
		got, err := aggMust(t, AggMultiKrum, AggOptions{Byzantine: tt.f, MultiKrumM: tt.m}).Aggregate(make([]float32, tt.dim), updates)
		if err != nil {
			t.Fatal(err)
		}
		aggCloseTo(t, fmt.Sprintf("multi-krum %+v", tt), got, want, 1e-5)
		got, err = aggMust(t, AggKrum, AggOptions{Byzantine: tt.f}).Aggregate(make([]float32, tt.dim), updates)
		if err != nil {
			t.Fatal(err)
		}
		want1 := make([]float64, tt.dim)
		for j, x := range updates[chosen[0]].Delta {
			want1[j] = float64(x)
		}
		aggCloseTo(t, fmt.Sprintf("krum %+v", tt), got, want1, 1e-7)
	}
}

func TestKrumTooFew(t *testing.T) {
	two := aggMkUpdates([][]float32{{1}, {2}}, nil)
	six := aggMkUpdates([][]float32{{1}, {2}, {3}, {4}, {5}, {6}}, nil)
	for _, tt := range []struct {
		name    string
		opts    AggOptions
		updates []Update
	}{
		{AggKrum, AggOptions{}, two},
		{AggMultiKrum, AggOptions{}, two[:1]},
		{AggKrum, AggOptions{Byzantine: 2}, six},       // needs 7
		{AggMultiKrum, AggOptions{Byzantine: 3}, six},  // needs 9
		{AggMultiKrum, AggOptions{MultiKrumM: 7}, six}, // m > n
	} {
		_, err := aggMust(t, tt.name, tt.opts).Aggregate([]float32{0}, tt.updates)
		if !errors.Is(err, ErrTooFewUpdates) {
			t.Errorf("%s %+v with %d updates: err = %v, want ErrTooFewUpdates", tt.name, tt.opts, len(tt.updates), err)
		}
	}
	if _, err := aggMust(t, AggKrum, AggOptions{Byzantine: 1}).Aggregate([]float32{0}, six[:5]); err != nil {
		t.Errorf("krum f=1 n=5: %v", err)
	}
}

// TestValidation runs every aggregator through the same malformed rounds.
func TestValidation(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	const dim = 2*meanBlock + 9
	good := func(n int) []Update {
		return aggRandomUpdates(rand.New(rand.NewPCG(uint64(n), 1)), n, dim)
	}
	with := func(n int, edit func([]Update)) []Update {
		us := good(n)
		edit(us)
		return us
	}
	global := make([]float32, dim)
	tests := []struct {
		name    string
		global  []float32
		updates []Update
		want    error
		client  string // the error must name it
	}{
		{"no updates", global, nil, ErrNoUpdates, ""},
		{"empty global", []float32{}, good(5), ErrInvalidGlobal, ""},
		{"NaN global", append(slices.Clone(global[:dim-1]), nan), good(5), ErrInvalidGlobal, ""},
		{"wrong length", global, with(5, func(us []Update) { us[3].Delta = us[3].Delta[:dim-1] }), ErrInvalidUpdate, "c3"},
		{"zero samples", global, with(5, func(us []Update) { us[2].Samples = 0 }), ErrInvalidUpdate, "c2"},
		{"negative samples", global, with(5, func(us []Update) { us[0].Samples = -4 }), ErrInvalidUpdate, "c0"},
		{"duplicate client", global, with(5, func(us []Update) { us[4].Client = "c1" }), ErrInvalidUpdate, "c1"},
		{"empty client", global, with(5, func(us []Update) { us[1].Client = "" }), ErrInvalidUpdate, "update 1"},
		{"NaN in a 4-group", global, with(9, func(us []Update) { us[2].Delta[meanBlock+3] = nan }), ErrInvalidUpdate, "c2"},
		{"NaN in the tail group", global, with(9, func(us []Update) { us[8].Delta[dim-1] = nan }), ErrInvalidUpdate, "c8"},
		{"+Inf", global, with(5, func(us []Update) { us[1].Delta[0] = inf }), ErrInvalidUpdate, "c1"},
		{"+Inf and -Inf cancel to NaN", global, with(5, func(us []Update) {
			us[1].Delta[7] = inf
			us[3].Delta[7] = -inf
		}), ErrInvalidUpdate, "c1"},
	}
	for _, name := range AggregatorNames() {
		for _, tt := range tests {
			agg := aggMust(t, name, AggOptions{})
			next, err := agg.Aggregate(tt.global, tt.updates)
			if !errors.Is(err, tt.want) || next != nil {
				t.Errorf("%s, %s: err = %v (next nil: %v), want %v", name, tt.name, err, next == nil, tt.want)
				continue
			}
			if tt.client != "" && !strings.Contains(err.Error(), tt.client) {
				t.Errorf("%s, %s: error %q does not name %s", name, tt.name, err, tt.client)
			}
		}
	}
}

func TestOverflow(t *testing.T) {
	global := []float32{math.MaxFloat32, 0}
	ups := aggMkUpdates([][]float32{{math.MaxFloat32, 1}, {math.MaxFloat32, 1}, {math.MaxFloat32, 1}}, nil)
	for _, name := range []string{AggFedAvg, AggMedian, AggTrimmedMean, AggKrum, AggMultiKrum} {
		next, err := aggMust(t, name, AggOptions{}).Aggregate(global, ups)
		if !errors.Is(err, ErrAggregateOverflow) || next != nil {
			t.Errorf("%s: err = %v, want ErrAggregateOverflow", name, err)
		}
	}
	// Extreme but finite deltas far apart: Krum's distances overflow
	// float32 and must still pick a finite, honest update.
	ups = aggMkUpdates([][]float32{{1}, {1.1}, {0.9}, {3e38}, {-3e38}}, nil)
	got, err := aggMust(t, AggKrum, AggOptions{Byzantine: 1}).Aggregate([]float32{0}, ups)
	if err != nil || math.Abs(float64(got[0])-1) > 0.11 {
		t.Errorf("krum with huge outliers: %v, %v", got, err)
	}
}

// TestInputsUnchanged checks that no aggregator writes to its inputs and
// that results are deterministic.
func TestInputsUnchanged(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 15))
	ups := aggRandomUpdates(rng, 9, 300)
	global := aggRandomUpdates(rng, 1, 300)[0].Delta
	snapshot := make([][]float32, len(ups))
	for i, u := range ups {
		snapshot[i] = slices.Clone(u.Delta)
	}
	g0 := slices.Clone(global)
	for _, name := range AggregatorNames() {
		a, err := aggMust(t, name, AggOptions{}).Aggregate(global, ups)
		if err != nil {
			t.Fatal(err)
		}
		b, err := aggMust(t, name, AggOptions{}).Aggregate(global, ups)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) {
			t.Errorf("%s: two runs differ", name)
		}
		if !slices.Equal(global, g0) {
			t.Fatalf("%s modified global", name)
		}
		for i, u := range ups {
			if !slices.Equal(u.Delta, snapshot[i]) {
				t.Fatalf("%s modified the delta of %s", name, u.Client)
			}
		}
	}
}

// TestRobustness: 80 honest clients send deltas ~ N(mu, 0.05²) and 20
// attackers send either an honest-looking delta flipped and scaled by 10
// or one scaled by 100. The robust aggregators land near mu; FedAvg does
// not.
func TestRobustness(t *testing.T) {
	const honest, attackers, dim, noise = 80, 20, 500, 0.05
	rng := rand.New(rand.NewPCG(16, 17))
	mu := make([]float64, dim)
	for j := range mu {
		mu[j] = (0.5 + rng.Float64()) * float64(1-2*rng.IntN(2)) // |mu_j| in [0.5, 1.5)
	}
	rmsErr := func(got []float32) float64 {
		s := 0.0
		for j, x := range got {
			d := float64(x) - mu[j]
			s += d * d
		}
		return math.Sqrt(s / dim)
	}
	for _, attack := range []struct {
		name  string
		scale float64
	}{{"sign-flip x10", -10}, {"scale x100", 100}} {
		ups := make([]Update, 0, honest+attackers)
		for i := range honest + attackers {
			d := make([]float32, dim)
			for j := range d {
				v := mu[j] + noise*rng.NormFloat64()
				if i >= honest {
					v *= attack.scale
				}
				d[j] = float32(v)
			}
			ups = append(ups, Update{Client: fmt.Sprintf("c%d", i), Delta: d, Samples: 100})
		}
		global := make([]float32, dim)
		for _, tt := range []struct {
			name string
			opts AggOptions
		}{
			{AggMedian, AggOptions{}},
			// The trimmed fraction must exceed the attackers' (20%).
			{AggTrimmedMean, AggOptions{TrimFraction: 0.25}},
			{AggKrum, AggOptions{}},
			{AggKrum, AggOptions{Byzantine: attackers}},
			{AggMultiKrum, AggOptions{}},
			{AggMultiKrum, AggOptions{Byzantine: attackers}},
		} {
			got, err := aggMust(t, tt.name, tt.opts).Aggregate(global, ups)
			if err != nil {
				t.Fatal(err)
			}
			// Krum returns one honest delta (error ≈ noise); the others
			// average honest values with at most a small median shift.
			if e := rmsErr(got); e > 0.08 {
				t.Errorf("%s: %s %+v: RMS error %.4f from mu, want ≤ 0.08", attack.name, tt.name, tt.opts, e)
			}
		}
		got, err := aggMust(t, AggFedAvg, AggOptions{}).Aggregate(global, ups)
		if err != nil {
			t.Fatal(err)
		}
		// FedAvg lands at 0.8·mu + 0.2·scale·mu: 1.8·|mu| (flip) or
		// 19.8·|mu| (scale) away.
		if e := rmsErr(got); e < 1 {
			t.Errorf("%s: fedavg RMS error %.4f from mu, expected it to be pulled away (≥ 1)", attack.name, e)
		}
	}
}

var aggBenchSink []float32

func aggBenchRound(b *testing.B, n, dim int) ([]float32, []Update) {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	ups := make([]Update, n)
	for i := range ups {
		d := make([]float32, dim)
		for j := range d {
			d[j] = rng.Float32() - 0.5
		}
		ups[i] = Update{Client: fmt.Sprintf("c%d", i), Delta: d, Samples: 1 + rng.IntN(100)}
	}
	return make([]float32, dim), ups
}

func aggBench(b *testing.B, name string, n, dim int) {
	global, ups := aggBenchRound(b, n, dim)
	agg, err := NewAggregator(name, AggOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(n) * int64(dim) * 4)
	for b.Loop() {
		aggBenchSink, err = agg.Aggregate(global, ups)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFedAvg100x1M: the budget is 150 ms per op on one core
// (GOMAXPROCS=1).
func BenchmarkFedAvg100x1M(b *testing.B)        { aggBench(b, AggFedAvg, 100, 1<<20) }
func BenchmarkFedAdam100x1M(b *testing.B)       { aggBench(b, AggFedAdam, 100, 1<<20) }
func BenchmarkMedian100x100k(b *testing.B)      { aggBench(b, AggMedian, 100, 100_000) }
func BenchmarkTrimmedMean100x100k(b *testing.B) { aggBench(b, AggTrimmedMean, 100, 100_000) }
func BenchmarkKrum100x100k(b *testing.B)        { aggBench(b, AggKrum, 100, 100_000) }
func BenchmarkMultiKrum100x100k(b *testing.B)   { aggBench(b, AggMultiKrum, 100, 100_000) }
