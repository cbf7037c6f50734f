package routing

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
)

func TestCandidateLoad(t *testing.T) {
	tests := []struct {
		c    Candidate
		want int
	}{
		{Candidate{}, 0},
		{Candidate{InFlight: 3, QueueDepth: 4}, 7},
		{Candidate{InFlight: -3, QueueDepth: 4}, 4},
		{Candidate{InFlight: math.MaxInt, QueueDepth: 1}, math.MaxInt},
		{Candidate{InFlight: math.MaxInt, QueueDepth: math.MaxInt}, math.MaxInt},
	}
	for _, tc := range tests {
		if got := tc.c.Load(); got != tc.want {
			t.Errorf("%+v.Load() = %d, want %d", tc.c, got, tc.want)
		}
	}
}

func TestScore(t *testing.T) {
	tests := []struct {
		name string
		c    Candidate
		st   time.Duration
		want float64
	}{
		{"idle", Candidate{RTT: 12 * time.Millisecond, RTTSource: RTTFromGeo}, 5 * time.Millisecond, 12},
		{"loaded", Candidate{RTT: 12 * time.Millisecond, RTTSource: RTTFromGeo, InFlight: 2, QueueDepth: 3}, 5 * time.Millisecond, 37},
		{"sub-ms", Candidate{RTT: 1500 * time.Microsecond, RTTSource: RTTFromCoordinates, InFlight: 1}, 250 * time.Microsecond, 1.75},
		{"default service time", Candidate{RTT: time.Millisecond, RTTSource: RTTFromGeo, InFlight: 1}, 0, 11},
		{"negative service time", Candidate{RTT: time.Millisecond, RTTSource: RTTFromGeo, InFlight: 1}, -time.Second, 11},
		{"negative load", Candidate{RTT: time.Millisecond, RTTSource: RTTFromGeo, InFlight: -4}, time.Millisecond, 1},
		{"unmeasured", Candidate{}, time.Millisecond, 250},
		{"unknown source keeps an explicit RTT", Candidate{RTT: 40 * time.Millisecond}, time.Millisecond, 40},
		{"negative RTT from coordinates", Candidate{RTT: -time.Millisecond, RTTSource: RTTFromCoordinates}, time.Millisecond, 0},
	}
	for _, tc := range tests {
		if got := Score(tc.c, tc.st); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: Score = %g, want %g", tc.name, got, tc.want)
		}
	}
}

func TestNewPolicy(t *testing.T) {
	for _, name := range PolicyNames() {
		p, err := NewPolicy(name, PolicyOptions{})
		if err != nil {
			t.Fatalf("NewPolicy(%q): %v", name, err)
		}
		if p.Name() != name {
			t.Fatalf("NewPolicy(%q).Name() = %q", name, p.Name())
		}
	}
	bad := []struct {
		name    string
		opts    PolicyOptions
		wantErr string
	}{
		{"random", PolicyOptions{}, "unknown policy \"random\" (valid: nearest, p2c, rendezvous)"},
		{"", PolicyOptions{}, "unknown policy"},
		{"Nearest", PolicyOptions{}, "unknown policy"},
		{"rendezvous", PolicyOptions{LoadEpsilon: -0.1}, "LoadEpsilon"},
		{"rendezvous", PolicyOptions{LoadEpsilon: math.NaN()}, "LoadEpsilon"},
		{"rendezvous", PolicyOptions{LoadEpsilon: math.Inf(1)}, "LoadEpsilon"},
		{"nearest", PolicyOptions{ServiceTime: -time.Millisecond}, "ServiceTime"},
	}
	for _, tc := range bad {
		p, err := NewPolicy(tc.name, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("NewPolicy(%q, %+v) = %v, %v; want an error containing %q", tc.name, tc.opts, p, err, tc.wantErr)
		}
	}
}

func mustPolicy(t *testing.T, name string, opts PolicyOptions) Policy {
	t.Helper()
	p, err := NewPolicy(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fleet is a mix of eligible and ineligible candidates.
func fleet() []Candidate {
	return []Candidate{
		{ID: "a", RTT: 30 * time.Millisecond, RTTSource: RTTFromGeo, Ready: true, Healthy: true},
		{ID: "b", RTT: 5 * time.Millisecond, RTTSource: RTTFromGeo, Ready: false, Healthy: true}, // not ready
		{ID: "c", RTT: 10 * time.Millisecond, RTTSource: RTTFromGeo, InFlight: 3, Ready: true, Healthy: true},
		{ID: "d", RTT: 1 * time.Millisecond, RTTSource: RTTFromGeo, Ready: true, Healthy: false}, // ejected
		{ID: "e", RTT: 15 * time.Millisecond, RTTSource: RTTFromGeo, Ready: true, Healthy: true},
		{ID: "f", RTT: 60 * time.Millisecond, RTTSource: RTTFromCoordinates, Role: RoleCentral, Ready: true, Healthy: true},
	}
}

func TestPoliciesReturnOnlyEligible(t *testing.T) {
	for _, name := range PolicyNames() {
		p := mustPolicy(t, name, PolicyOptions{Seed: 1})
		for trial := range 20 {
			cands := fleet()
			before := slices.Clone(cands)
			got := p.Order(fmt.Sprintf("key-%d", trial), cands)
			if !reflect.DeepEqual(cands, before) {
				t.Fatalf("%s: Order modified its input", name)
			}
			sorted := slices.Sorted(slices.Values(got))
			if want := []int{0, 2, 4, 5}; !reflect.DeepEqual(sorted, want) {
				t.Fatalf("%s: Order = %v, want a permutation of %v", name, got, want)
			}
		}
		if got := p.Order("k", nil); len(got) != 0 {
			t.Fatalf("%s: Order(nil) = %v", name, got)
		}
		none := []Candidate{{ID: "x", Ready: true}, {ID: "y", Healthy: true}}
		if got := p.Order("k", none); len(got) != 0 {
			t.Fatalf("%s: Order(no eligible) = %v", name, got)
		}
		one := []Candidate{{ID: "x"}, {ID: "y", Ready: true, Healthy: true}}
		if got := p.Order("k", one); !reflect.DeepEqual(got, []int{1}) {
			t.Fatalf("%s: Order(one eligible) = %v, want [1]", name, got)
		}
	}
}

func TestNearestOrder(t *testing.T) {
	p := mustPolicy(t, PolicyNearest, PolicyOptions{ServiceTime: 10 * time.Millisecond})
	// Scores: a 30, c 10+30=40, e 15, f 60.
	if got, want := p.Order("k", fleet()), []int{4, 0, 2, 5}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Order = %v, want %v", got, want)
	}
	// With a tiny service time, load matters less than distance: c 10.3.
	p = mustPolicy(t, PolicyNearest, PolicyOptions{ServiceTime: 100 * time.Microsecond})
	if got, want := p.Order("k", fleet()), []int{2, 4, 0, 5}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Order = %v, want %v", got, want)
	}
	// Ties break by ID, then index.
	tied := []Candidate{
		{ID: "z", RTT: time.Millisecond, RTTSource: RTTFromGeo, Ready: true, Healthy: true},
		{ID: "y", RTT: time.Millisecond, RTTSource: RTTFromGeo, Ready: true, Healthy: true},
		{ID: "y", RTT: time.Millisecond, RTTSource: RTTFromGeo, Ready: true, Healthy: true},
	}
	if got, want := p.Order("k", tied), []int{1, 2, 0}; !reflect.DeepEqual(got, want) {
		t.Fatalf("tied Order = %v, want %v", got, want)
	}
}

// rankedCands returns n eligible candidates with scores 1, 2, ..., n ms.
func rankedCands(n int) []Candidate {
	c := make([]Candidate, n)
	for i := range c {
		c[i] = Candidate{ID: fmt.Sprintf("n%02d", i), RTT: time.Duration(i+1) * time.Millisecond, RTTSource: RTTFromGeo, Ready: true, Healthy: true}
	}
	return c
}

func TestP2COrder(t *testing.T) {
	const n, trials = 5, 20000
	cands := rankedCands(n)
	p := mustPolicy(t, PolicyP2C, PolicyOptions{Seed: 7})
	picks := make([]int, n)
	for range trials {
		got := p.Order("k", cands)
		if len(got) != n {
			t.Fatalf("Order = %v", got)
		}
		picks[got[0]]++
		// After the pick, the rest are in score order (= index order).
		if !slices.IsSorted(got[1:]) {
			t.Fatalf("rest not by score: %v", got)
		}
	}
	// The worst candidate can never win a pair.
	if picks[n-1] != 0 {
		t.Fatalf("worst candidate picked %d times", picks[n-1])
	}
	// The k-th best wins when it is drawn with a worse one: probability
	// 2(n-1-k)/(n(n-1)), i.e. 40%, 30%, 20%, 10%, 0% for n = 5.
	for k, got := range picks {
		want := 2 * float64(n-1-k) / float64(n*(n-1)) * trials
		if math.Abs(float64(got)-want) > 0.05*trials {
			t.Errorf("candidate %d picked %d times, want about %.0f", k, got, want)
		}
	}
}

func TestP2CDeterminism(t *testing.T) {
	cands := rankedCands(8)
	run := func(opts PolicyOptions) [][]int {
		p := mustPolicy(t, PolicyP2C, opts)
		var out [][]int
		for range 50 {
			out = append(out, p.Order("k", cands))
		}
		return out
	}
	a, b := run(PolicyOptions{Seed: 11}), run(PolicyOptions{Seed: 11})
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different orders")
	}
	if c := run(PolicyOptions{Seed: 12}); reflect.DeepEqual(a, c) {
		t.Fatal("different seeds, same 50 orders")
	}
	// An explicit Rand is used instead of Seed.
	r1 := run(PolicyOptions{Seed: 11, Rand: rand.New(rand.NewPCG(1, 2))})
	r2 := run(PolicyOptions{Seed: 99, Rand: rand.New(rand.NewPCG(1, 2))})
	if !reflect.DeepEqual(r1, r2) {
		t.Fatal("Rand did not override Seed")
	}
}

func TestRendezvousWeight(t *testing.T) {
	if RendezvousWeight("ab", "c") == RendezvousWeight("a", "bc") {
		t.Fatal("separator missing: (ab, c) and (a, bc) collide")
	}
	// Pinned so that placements stay stable across releases: changing the
	// hash moves every model.
	if got, want := RendezvousWeight("model", "node-1"), uint64(0xd0df225a602b35cd); got != want {
		t.Fatalf("RendezvousWeight(model, node-1) = %#x, want %#x", got, want)
	}
	if got, want := RendezvousWeight("model", "node-1"), xxhash.Sum64String("model\x00node-1"); got != want {
		t.Fatalf("RendezvousWeight is not xxhash64(key NUL id): %#x vs %#x", got, want)
	}
}

func TestRendezvousOrder(t *testing.T) {
	p := mustPolicy(t, PolicyRendezvous, PolicyOptions{})
	cands := rankedCands(10)
	// Sticky: the same key always gets the same order, regardless of the
	// input order.
	first := p.Order("model-a", cands)
	shuffled := slices.Clone(cands)
	rand.New(rand.NewPCG(3, 3)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	got := p.Order("model-a", shuffled)
	for i := range got {
		if shuffled[got[i]].ID != cands[first[i]].ID {
			t.Fatalf("order depends on input order: %v vs %v", got, first)
		}
	}
	// The order is by descending weight.
	for i := 1; i < len(first); i++ {
		if RendezvousWeight("model-a", cands[first[i-1]].ID) < RendezvousWeight("model-a", cands[first[i]].ID) {
			t.Fatalf("not in descending weight order: %v", first)
		}
	}
	// Keys spread: 10 nodes, 5000 keys, each node near 500.
	counts := map[int]int{}
	for k := range 5000 {
		counts[p.Order(fmt.Sprintf("key-%d", k), cands)[0]]++
	}
	for i := range cands {
		if counts[i] < 400 || counts[i] > 600 {
			t.Errorf("node %d is first for %d keys, want about 500", i, counts[i])
		}
	}
}

func TestRendezvousRemovalMovesOnlyItsKeys(t *testing.T) {
	p := mustPolicy(t, PolicyRendezvous, PolicyOptions{})
	cands := rankedCands(8)
	less := slices.Delete(slices.Clone(cands), 3, 4) // remove n03
	for k := range 2000 {
		key := fmt.Sprintf("key-%d", k)
		before := cands[p.Order(key, cands)[0]].ID
		after := less[p.Order(key, less)[0]].ID
		if before != "n03" && before != after {
			t.Fatalf("%s moved from %s to %s though %s stayed", key, before, after, before)
		}
		if before == "n03" {
			// It moves to its second choice.
			if want := cands[p.Order(key, cands)[1]].ID; after != want {
				t.Fatalf("%s moved to %s, want its second choice %s", key, after, want)
			}
		}
	}
}

func TestRendezvousBoundedLoad(t *testing.T) {
	p := mustPolicy(t, PolicyRendezvous, PolicyOptions{LoadEpsilon: 0.25})
	cands := rankedCands(4)
	key := "hot-model"
	order := p.Order(key, cands)
	top := order[0]
	// Total load 8 over 4 nodes: capacity ⌈1.25 × 9 / 4⌉ = 3, so a node
	// with 3 in flight has no room and goes to the back.
	cands[top].InFlight = 3
	cands[order[1]].InFlight = 2
	cands[order[2]].InFlight = 2
	cands[order[3]].InFlight = 1
	got := p.Order(key, cands)
	if want := []int{order[1], order[2], order[3], top}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Order = %v, want %v (overloaded first choice last)", got, want)
	}
	// At 2 it fits and keeps its place.
	cands[top].InFlight = 2
	if got := p.Order(key, cands); got[0] != top {
		t.Fatalf("Order = %v, want %d first", got, top)
	}
	// Ineligible candidates' load does not count.
	cands = append(cands, Candidate{ID: "busy-but-ejected", InFlight: 1000, Ready: true})
	if got := p.Order(key, cands); got[0] != top || len(got) != 4 {
		t.Fatalf("Order = %v, want %d first and 4 entries", got, top)
	}
}

func TestRendezvousSequentialNeverExceedsBound(t *testing.T) {
	// Route 5000 requests that never finish, each to the first choice,
	// and check the capacity bound after every one.
	const eps = 0.25
	p := mustPolicy(t, PolicyRendezvous, PolicyOptions{LoadEpsilon: eps})
	cands := rankedCands(7)
	// Hot keys: few distinct keys, so hashing alone would overload.
	for r := range 5000 {
		key := fmt.Sprintf("model-%d", r%3)
		pick := p.Order(key, cands)[0]
		cands[pick].InFlight++
		total := r + 1
		bound := int(math.Ceil((1 + eps) * float64(total) / float64(len(cands))))
		for _, c := range cands {
			if c.InFlight > bound {
				t.Fatalf("after %d requests %s holds %d, bound %d", total, c.ID, c.InFlight, bound)
			}
		}
	}
}

func TestPoliciesConcurrentUse(t *testing.T) {
	// Run with -race.
	for _, name := range PolicyNames() {
		p := mustPolicy(t, name, PolicyOptions{Seed: 1})
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				cands := fleet()
				for i := range 200 {
					if got := p.Order(fmt.Sprintf("k%d-%d", g, i), cands); len(got) != 4 {
						t.Errorf("%s: Order = %v", name, got)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}
