package federated

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func coreRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 99)) }

// coreLabels returns n labels over classes, class c with weight c+1 so
// the classes are unbalanced.
func coreLabels(n, classes int, seed uint64) []int32 {
	rng := coreRNG(seed)
	total := classes * (classes + 1) / 2
	y := make([]int32, n)
	for i := range y {
		u := rng.IntN(total)
		c := 0
		for u >= c+1 {
			u -= c + 1
			c++
		}
		y[i] = int32(c)
	}
	return y
}

// coreCheckExact fails unless every index in [0, n) is in exactly one
// list and every list is sorted.
func coreCheckExact(t *testing.T, parts [][]int, n int) {
	t.Helper()
	seen := make([]int, n)
	for c, p := range parts {
		if !slices.IsSorted(p) {
			t.Errorf("client %d: list not sorted", c)
		}
		for _, i := range p {
			if i < 0 || i >= n {
				t.Fatalf("client %d: index %d outside [0, %d)", c, i, n)
			}
			seen[i]++
		}
	}
	for i, k := range seen {
		if k != 1 {
			t.Fatalf("index %d assigned %d times", i, k)
		}
	}
}

// coreLabelSkew is the mean over clients (weighted by size) of the total
// variation distance between the client's label distribution and the
// global one: 0 for identical distributions, near 1 for disjoint ones.
func coreLabelSkew(parts [][]int, labels []int32, classes int) float64 {
	global := make([]float64, classes)
	for _, y := range labels {
		global[y] += 1 / float64(len(labels))
	}
	var skew float64
	for _, p := range parts {
		if len(p) == 0 {
			continue
		}
		local := make([]float64, classes)
		for _, i := range p {
			local[labels[i]] += 1 / float64(len(p))
		}
		var tv float64
		for c := range classes {
			tv += math.Abs(local[c]-global[c]) / 2
		}
		skew += tv * float64(len(p)) / float64(len(labels))
	}
	return skew
}

func coreDistinct(p []int, labels []int32) int {
	seen := map[int32]bool{}
	for _, i := range p {
		seen[labels[i]] = true
	}
	return len(seen)
}

func TestPartitionsAssignEveryIndexOnce(t *testing.T) {
	const n, classes = 3000, 10
	labels := coreLabels(n, classes, 1)
	tests := []struct {
		name string
		run  func(rng *rand.Rand) [][]int
	}{
		{"iid", func(rng *rand.Rand) [][]int { return PartitionIID(n, 7, rng) }},
		{"iid-one-client", func(rng *rand.Rand) [][]int { return PartitionIID(n, 1, rng) }},
		{"dirichlet-0.1", func(rng *rand.Rand) [][]int { return PartitionDirichlet(labels, classes, 20, 0.1, rng) }},
		{"dirichlet-0.01", func(rng *rand.Rand) [][]int { return PartitionDirichlet(labels, classes, 50, 0.01, rng) }},
		{"dirichlet-1e-300", func(rng *rand.Rand) [][]int { return PartitionDirichlet(labels, classes, 5, 1e-300, rng) }},
		{"dirichlet-100", func(rng *rand.Rand) [][]int { return PartitionDirichlet(labels, classes, 20, 100, rng) }},
		{"quantity-0.5", func(rng *rand.Rand) [][]int { return PartitionQuantitySkew(n, 30, 0.5, rng) }},
		{"quantity-0.05", func(rng *rand.Rand) [][]int { return PartitionQuantitySkew(n, 30, 0.05, rng) }},
		{"kclasses-2", func(rng *rand.Rand) [][]int { return PartitionKClasses(labels, classes, 20, 2, rng) }},
		{"kclasses-3-uneven", func(rng *rand.Rand) [][]int { return PartitionKClasses(labels, classes, 7, 3, rng) }},
		{"kclasses-k-above-classes", func(rng *rand.Rand) [][]int { return PartitionKClasses(labels, classes, 3, 50, rng) }},
	}
	for ti, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts := tt.run(coreRNG(uint64(ti)))
			if parts == nil {
				t.Fatal("nil partition")
			}
			coreCheckExact(t, parts, n)
			again := tt.run(coreRNG(uint64(ti)))
			for c := range parts {
				if !slices.Equal(parts[c], again[c]) {
					t.Fatalf("client %d differs between two runs with the same seed", c)
				}
			}
		})
	}
}

func TestPartitionIIDSizes(t *testing.T) {
	parts := PartitionIID(103, 10, coreRNG(1))
	for c, p := range parts {
		if len(p) != 10 && len(p) != 11 {
			t.Errorf("client %d has %d samples, want 10 or 11", c, len(p))
		}
	}
	if parts := PartitionIID(3, 5, coreRNG(1)); len(parts) != 5 {
		t.Errorf("3 samples over 5 clients: %d lists", len(parts))
	}
}

func TestPartitionDirichletSkew(t *testing.T) {
	const n, classes, clients = 10000, 10, 20
	labels := coreLabels(n, classes, 2)
	iid := coreLabelSkew(PartitionIID(n, clients, coreRNG(3)), labels, classes)
	skewed := coreLabelSkew(PartitionDirichlet(labels, classes, clients, 0.1, coreRNG(3)), labels, classes)
	mild := coreLabelSkew(PartitionDirichlet(labels, classes, clients, 1000, coreRNG(3)), labels, classes)
	t.Logf("mean total variation from the global label distribution: IID %.3f, Dirichlet(0.1) %.3f, Dirichlet(1000) %.3f", iid, skewed, mild)
	if iid > 0.1 {
		t.Errorf("IID skew %.3f, want < 0.1", iid)
	}
	if skewed < 0.5 {
		t.Errorf("Dirichlet(0.1) skew %.3f, want > 0.5", skewed)
	}
	if mild > 0.1 {
		t.Errorf("Dirichlet(1000) skew %.3f, want < 0.1 (close to IID)", mild)
	}
}

func TestPartitionNoEmptyClients(t *testing.T) {
	labels := coreLabels(200, 10, 4)
	for seed := range uint64(20) {
		for name, parts := range map[string][][]int{
			"dirichlet": PartitionDirichlet(labels, 10, 100, 0.05, coreRNG(seed)),
			"quantity":  PartitionQuantitySkew(200, 100, 0.05, coreRNG(seed)),
		} {
			coreCheckExact(t, parts, 200)
			for c, p := range parts {
				if len(p) == 0 {
					t.Fatalf("%s seed %d: client %d is empty", name, seed, c)
				}
			}
		}
	}
	// Fewer samples than clients: some must be empty, all still assigned.
	parts := PartitionDirichlet(labels[:5], 10, 8, 0.1, coreRNG(1))
	coreCheckExact(t, parts, 5)
}

func TestPartitionQuantitySkewSizesVary(t *testing.T) {
	const n, clients = 10000, 20
	sizes := func(alpha float64) (lo, hi int) {
		parts := PartitionQuantitySkew(n, clients, alpha, coreRNG(5))
		lo, hi = n, 0
		for _, p := range parts {
			lo, hi = min(lo, len(p)), max(hi, len(p))
		}
		return lo, hi
	}
	lo, hi := sizes(0.3)
	if hi < 5*lo || hi < 2*n/clients {
		t.Errorf("alpha 0.3: sizes %d..%d, want the largest at least 5x the smallest and 2x the mean", lo, hi)
	}
	lo, hi = sizes(1e4)
	if float64(hi) > 1.2*float64(n/clients) || float64(lo) < 0.8*float64(n/clients) {
		t.Errorf("alpha 1e4: sizes %d..%d, want all within 20%% of %d", lo, hi, n/clients)
	}
}

func TestPartitionKClasses(t *testing.T) {
	const n, classes = 5000, 10
	labels := coreLabels(n, classes, 6)
	for _, tc := range []struct{ clients, k int }{{20, 1}, {20, 2}, {10, 3}, {3, 4}, {50, 2}} {
		parts := PartitionKClasses(labels, classes, tc.clients, tc.k, coreRNG(7))
		coreCheckExact(t, parts, n)
		for c, p := range parts {
			if d := coreDistinct(p, labels); d > tc.k || len(p) == 0 {
				t.Errorf("%d clients, k=%d: client %d has %d samples of %d labels", tc.clients, tc.k, c, len(p), d)
			}
		}
	}
	// Fewer slots than classes: 2 clients with 2 classes each hold 4
	// classes; the other classes' samples are left out.
	parts := PartitionKClasses(labels, classes, 2, 2, coreRNG(8))
	held := map[int32]bool{}
	total := 0
	for _, p := range parts {
		total += len(p)
		for _, i := range p {
			held[labels[i]] = true
		}
	}
	if len(held) != 4 {
		t.Errorf("2 clients with k=2 hold %d classes, want 4", len(held))
	}
	want := 0
	for _, y := range labels {
		if held[y] {
			want++
		}
	}
	if total != want {
		t.Errorf("assigned %d samples, the held classes have %d", total, want)
	}
	// Classes absent from the labels are not dealt out.
	few := []int32{3, 3, 7, 7, 7, 3}
	parts = PartitionKClasses(few, 10, 2, 1, coreRNG(1))
	coreCheckExact(t, parts, len(few))
	for c, p := range parts {
		if len(p) == 0 || coreDistinct(p, few) != 1 {
			t.Errorf("client %d: %v", c, p)
		}
	}
}

func TestPartitionInvalidArguments(t *testing.T) {
	rng := coreRNG(1)
	labels := []int32{0, 1, 2}
	tests := map[string][][]int{
		"iid no clients":           PartitionIID(10, 0, rng),
		"iid negative n":           PartitionIID(-1, 2, rng),
		"iid nil rng":              PartitionIID(10, 2, nil),
		"dirichlet zero alpha":     PartitionDirichlet(labels, 3, 2, 0, rng),
		"dirichlet NaN alpha":      PartitionDirichlet(labels, 3, 2, math.NaN(), rng),
		"dirichlet Inf alpha":      PartitionDirichlet(labels, 3, 2, math.Inf(1), rng),
		"dirichlet label range":    PartitionDirichlet(labels, 2, 2, 1, rng),
		"dirichlet negative label": PartitionDirichlet([]int32{-1}, 2, 2, 1, rng),
		"dirichlet no classes":     PartitionDirichlet(labels, 0, 2, 1, rng),
		"dirichlet no clients":     PartitionDirichlet(labels, 3, 0, 1, rng),
		"quantity negative alpha":  PartitionQuantitySkew(10, 2, -1, rng),
		"quantity nil rng":         PartitionQuantitySkew(10, 2, 1, nil),
		"kclasses zero k":          PartitionKClasses(labels, 3, 2, 0, rng),
		"kclasses label range":     PartitionKClasses(labels, 2, 2, 1, rng),
		"kclasses nil rng":         PartitionKClasses(labels, 3, 2, 1, nil),
	}
	for name, parts := range tests {
		if parts != nil {
			t.Errorf("%s: %v, want nil", name, parts)
		}
	}
}
