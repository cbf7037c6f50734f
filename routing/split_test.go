package routing

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestNewSplitErrors(t *testing.T) {
	tests := []struct {
		name     string
		versions []string
		weights  []float64
		want     string
	}{
		{"mismatched lengths", []string{"a", "b"}, []float64{100}, "2 versions but 1 weights"},
		{"no versions", nil, nil, "no versions"},
		{"empty version", []string{"a", ""}, []float64{50, 50}, "version 1 is empty"},
		{"duplicate", []string{"a", "a"}, []float64{50, 50}, `"a" appears twice`},
		{"negative", []string{"a", "b"}, []float64{110, -10}, "negative"},
		{"NaN", []string{"a", "b"}, []float64{math.NaN(), 100}, "not a finite number"},
		{"Inf", []string{"a", "b"}, []float64{math.Inf(1), 0}, "not a finite number"},
		{"sum too small", []string{"a", "b"}, []float64{50, 49}, "add up to 99"},
		{"sum too large", []string{"a", "b"}, []float64{50, 50.02}, "add up to 100.02"},
		{"all zero", []string{"a"}, []float64{0}, "add up to 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSplit(tt.versions, tt.weights)
			if err == nil {
				t.Fatalf("NewSplit = %v, want error containing %q", s, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestNewSplitAccepts(t *testing.T) {
	tests := []struct {
		name     string
		versions []string
		weights  []float64
	}{
		{"single", []string{"a"}, []float64{100}},
		{"within tolerance low", []string{"a", "b"}, []float64{90, 9.995}},
		{"within tolerance high", []string{"a", "b"}, []float64{90, 10.005}},
		{"zero weight", []string{"a", "b", "c"}, []float64{0, 100, 0}},
		{"three", []string{"a", "b", "c"}, []float64{33.33, 33.33, 33.34}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSplit(tt.versions, tt.weights)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Versions(); strings.Join(got, ",") != strings.Join(tt.versions, ",") {
				t.Fatalf("Versions() = %v, want %v", got, tt.versions)
			}
			for i, v := range tt.versions {
				if w, ok := s.Weight(v); !ok || w != tt.weights[i] {
					t.Fatalf("Weight(%q) = %v, %v; want %v, true", v, w, ok, tt.weights[i])
				}
			}
			if _, ok := s.Weight("nope"); ok {
				t.Fatal("Weight of an unknown version reported ok")
			}
		})
	}
}

func TestSplitDoesNotAliasInput(t *testing.T) {
	versions := []string{"a", "b"}
	weights := []float64{0, 100}
	s, err := NewSplit(versions, weights)
	if err != nil {
		t.Fatal(err)
	}
	versions[1] = "x"
	weights[1] = 7
	if got := s.Pick("k"); got != "b" {
		t.Fatalf("Pick = %q after the caller changed its slices, want b", got)
	}
	if w, _ := s.Weight("b"); w != 100 {
		t.Fatalf("Weight(b) = %v, want 100", w)
	}
	if got, want := s.String(), "a=0,b=100"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestSplitZeroWeightGetsNothing(t *testing.T) {
	s, err := NewSplit([]string{"z1", "a", "z2", "b", "z3"}, []float64{0, 30, 0, 70, 0})
	if err != nil {
		t.Fatal(err)
	}
	// Ends of the line too, where rounding would show.
	for _, r := range []uint64{0, 1, math.MaxUint64, math.MaxUint64 - 1<<11} {
		if v := s.PickRandom(r); v != "a" && v != "b" {
			t.Fatalf("PickRandom(%d) = %q, a zero-weight version", r, v)
		}
	}
	if v := s.PickRandom(0); v != "a" {
		t.Fatalf("PickRandom(0) = %q, want the first weighted version a", v)
	}
	if v := s.PickRandom(math.MaxUint64); v != "b" {
		t.Fatalf("PickRandom(max) = %q, want the last weighted version b", v)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		if v := s.Pick(strconv.FormatUint(rng.Uint64(), 36)); v != "a" && v != "b" {
			t.Fatalf("Pick gave zero-weight version %q", v)
		}
	}
}

func TestSplitDeterministic(t *testing.T) {
	s1, _ := NewSplit([]string{"old", "new"}, []float64{90, 10})
	s2, _ := NewSplit([]string{"old", "new"}, []float64{90, 10})
	for i := range 1000 {
		k := "user-" + strconv.Itoa(i)
		if a, b := s1.Pick(k), s2.Pick(k); a != b || a != s1.Pick(k) {
			t.Fatalf("Pick(%q) not deterministic: %q, %q", k, a, b)
		}
	}
}

// TestSplitDistribution checks that Pick and PickRandom send each version
// its share of 100k keys.
func TestSplitDistribution(t *testing.T) {
	tests := []struct {
		versions []string
		weights  []float64
	}{
		{[]string{"old", "new"}, []float64{95, 5}},
		{[]string{"old", "new"}, []float64{50, 50}},
		{[]string{"a", "b", "c"}, []float64{20, 30, 50}},
		{[]string{"a", "b"}, []float64{99, 1}},
	}
	const n = 100000
	for _, tt := range tests {
		s, err := NewSplit(tt.versions, tt.weights)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(s.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(42, 7))
			byKey := map[string]int{}
			byRand := map[string]int{}
			for range n {
				byKey[s.Pick("key-"+strconv.FormatUint(rng.Uint64(), 16))]++
				byRand[s.PickRandom(rng.Uint64())]++
			}
			for i, v := range tt.versions {
				for name, counts := range map[string]map[string]int{"Pick": byKey, "PickRandom": byRand} {
					got := 100 * float64(counts[v]) / n
					if math.Abs(got-tt.weights[i]) > 0.5 {
						t.Errorf("%s: version %s got %.2f%%, want %.2f%% ± 0.5", name, v, got, tt.weights[i])
					}
				}
			}
		})
	}
}

// TestSplitCanaryStickiness checks the property rollouts depend on: as the
// candidate (last version) grows, keys only move to it, never away.
func TestSplitCanaryStickiness(t *testing.T) {
	steps := []float64{0, 1, 5, 10, 50, 100}
	const n = 100000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "session-" + strconv.Itoa(i)
	}
	onNew := make([]bool, n)
	for _, w := range steps {
		s, err := NewSplit([]string{"v1", "v2"}, []float64{100 - w, w})
		if err != nil {
			t.Fatal(err)
		}
		count := 0
		for i, k := range keys {
			now := s.Pick(k) == "v2"
			if onNew[i] && !now {
				t.Fatalf("key %q was on v2 before and left it at %g%%", k, w)
			}
			onNew[i] = now
			if now {
				count++
			}
		}
		if got := 100 * float64(count) / n; math.Abs(got-w) > 0.5 {
			t.Errorf("at %g%%, %.2f%% of keys on v2", w, got)
		}
	}
}

// TestSplitLastVersionStickyWithThree checks that the last version stays
// sticky even with a third version in front.
func TestSplitLastVersionStickyWithThree(t *testing.T) {
	prev := map[string]bool{}
	for _, w := range []float64{2, 10, 40, 80} {
		rest := (100 - w) / 2
		s, err := NewSplit([]string{"a", "b", "c"}, []float64{rest, rest, w})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20000 {
			k := strconv.Itoa(i)
			now := s.Pick(k) == "c"
			if prev[k] && !now {
				t.Fatalf("key %q left c at %g%%", k, w)
			}
			prev[k] = now
		}
	}
}
