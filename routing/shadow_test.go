package routing

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestCompareOutputs(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	tests := []struct {
		name           string
		served, shadow []float32
		sumAbs, maxAbs float64
		sumSq          float64
		n              int
		argmaxDiffers  bool
	}{
		{"empty", nil, nil, 0, 0, 0, 0, false},
		{"identical", []float32{1, 2, 3}, []float32{1, 2, 3}, 0, 0, 0, 3, false},
		{"small diffs", []float32{0.1, 0.7, 0.2}, []float32{0.2, 0.5, 0.3}, 0.4, 0.2, 0.06, 3, false},
		{"argmax moves", []float32{0.1, 0.6, 0.3}, []float32{0.1, 0.3, 0.6}, 0.6, 0.3, 0.18, 3, true},
		{"tie goes to lowest index", []float32{0.5, 0.5}, []float32{0.5, 0.5}, 0, 0, 0, 2, false},
		{"both NaN equal", []float32{nan, 1}, []float32{nan, 1}, 0, 0, 0, 2, false},
		{"one NaN", []float32{1, 2, nan}, []float32{1, 3, 0.5}, 1, math.Inf(1), 1, 3, false},
		{"NaN ignored in argmax", []float32{nan, 1, 2}, []float32{5, 1, 2}, 0, math.Inf(1), 0, 3, true},
		{"all NaN vs all NaN", []float32{nan, nan}, []float32{nan, nan}, 0, 0, 0, 2, false},
		{"equal infinities", []float32{inf, 1}, []float32{inf, 1}, 0, 0, 0, 2, false},
		{"inf vs finite", []float32{inf, 1}, []float32{3, 1}, 0, math.Inf(1), 0, 2, false},
		{"opposite infinities", []float32{inf, -inf}, []float32{-inf, inf}, 0, math.Inf(1), 0, 2, true},
		{"float32 extremes do not overflow", []float32{math.MaxFloat32}, []float32{-math.MaxFloat32}, 2 * math.MaxFloat32, 2 * math.MaxFloat32, 4 * math.MaxFloat32 * math.MaxFloat32, 1, false},
	}
	near := func(a, b float64) bool {
		if math.IsInf(a, 1) || math.IsInf(b, 1) {
			return a == b
		}
		return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sumAbs, maxAbs, sumSq, n, differs, err := CompareOutputs(tt.served, tt.shadow)
			if err != nil {
				t.Fatal(err)
			}
			if !near(sumAbs, tt.sumAbs) || !near(maxAbs, tt.maxAbs) || !near(sumSq, tt.sumSq) || n != tt.n || differs != tt.argmaxDiffers {
				t.Fatalf("CompareOutputs = (%g, %g, %g, %d, %v), want (%g, %g, %g, %d, %v)",
					sumAbs, maxAbs, sumSq, n, differs, tt.sumAbs, tt.maxAbs, tt.sumSq, tt.n, tt.argmaxDiffers)
			}
			if math.IsNaN(sumAbs) || math.IsNaN(maxAbs) || math.IsNaN(sumSq) {
				t.Fatal("a result is NaN")
			}
		})
	}
}

func TestCompareOutputsLengthMismatch(t *testing.T) {
	sumAbs, maxAbs, sumSq, n, differs, err := CompareOutputs([]float32{1, 2}, []float32{1})
	if err == nil || !strings.Contains(err.Error(), "served has 2 elements, shadow 1") {
		t.Fatalf("err = %v, want a length mismatch", err)
	}
	if sumAbs != 0 || maxAbs != 0 || sumSq != 0 || n != 0 || differs {
		t.Fatal("results not zero on error")
	}
}

func TestShouldMirrorBounds(t *testing.T) {
	tests := []struct {
		share float64
		want  bool
	}{
		{math.NaN(), false}, {-1, false}, {0, false}, {100, true}, {250, true}, {math.Inf(1), true},
	}
	for _, tt := range tests {
		for _, key := range []string{"", "k"} {
			for _, r := range []uint64{0, math.MaxUint64} {
				if got := ShouldMirror(key, tt.share, r); got != tt.want {
					t.Errorf("ShouldMirror(%q, %g, %d) = %v, want %v", key, tt.share, r, got, tt.want)
				}
			}
		}
	}
}

func TestShouldMirrorShareAndStickiness(t *testing.T) {
	const n = 100000
	rng := rand.New(rand.NewPCG(3, 4))
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k" + strconv.FormatUint(rng.Uint64(), 36)
	}
	was := make([]bool, n)
	for _, share := range []float64{1, 5, 20, 60} {
		byKey, byRand := 0, 0
		for i, k := range keys {
			m := ShouldMirror(k, share, 0)
			if m != ShouldMirror(k, share, math.MaxUint64) {
				t.Fatalf("key %q: decision depends on r", k)
			}
			if was[i] && !m {
				t.Fatalf("key %q mirrored at a smaller share but not at %g%%", k, share)
			}
			was[i] = m
			if m {
				byKey++
			}
			if ShouldMirror("", share, rng.Uint64()) {
				byRand++
			}
		}
		for name, c := range map[string]int{"by key": byKey, "by r": byRand} {
			if got := 100 * float64(c) / n; math.Abs(got-share) > 0.5 {
				t.Errorf("%s at %g%%: mirrored %.2f%%", name, share, got)
			}
		}
	}
}

// TestShouldMirrorIndependentOfSplit checks that the mirrored keys are
// spread over the versions of a split in proportion to their weights,
// rather than all taken from one end of the split line.
func TestShouldMirrorIndependentOfSplit(t *testing.T) {
	s, err := NewSplit([]string{"old", "new"}, []float64{90, 10})
	if err != nil {
		t.Fatal(err)
	}
	mirrored, onNew := 0, 0
	for i := range 200000 {
		k := "u" + strconv.Itoa(i)
		if ShouldMirror(k, 10, 0) {
			mirrored++
			if s.Pick(k) == "new" {
				onNew++
			}
		}
	}
	if got := 100 * float64(onNew) / float64(mirrored); math.Abs(got-10) > 1.5 {
		t.Fatalf("%.2f%% of the mirrored keys are on new, want about 10%%", got)
	}
}
