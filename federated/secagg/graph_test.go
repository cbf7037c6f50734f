package secagg

import (
	"slices"
	"testing"
)

func TestSparseGraph(t *testing.T) {
	for _, tc := range []struct{ n, k int }{{5, 2}, {10, 4}, {30, 8}, {101, 10}, {9, 6}} {
		cfg := Config{N: tc.n, Neighbours: tc.k, Threshold: tc.k/2 + 1, VectorLen: 1, Clip: 1, GraphSeed: [32]byte{byte(tc.n)}}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		g, err := newGraph(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for a := uint32(1); int(a) <= tc.n; a++ {
			nb := g.adj[a]
			if len(nb) != tc.k {
				t.Fatalf("n=%d k=%d: client %d has %d neighbours", tc.n, tc.k, a, len(nb))
			}
			if !slices.IsSorted(nb) || len(slices.Compact(slices.Clone(nb))) != tc.k {
				t.Fatalf("client %d neighbours %v not sorted and distinct", a, nb)
			}
			for _, b := range nb {
				if b == a || !g.adjacent(b, a) {
					t.Fatalf("edge %d–%d not symmetric or a self loop", a, b)
				}
			}
		}
		// Deterministic for a seed, different for another seed.
		g2, _ := newGraph(cfg)
		if !slices.EqualFunc(g.adj, g2.adj, slices.Equal) {
			t.Fatal("same seed, different graph")
		}
		if tc.k < tc.n-1 {
			cfg.GraphSeed[31] = 1
			g3, _ := newGraph(cfg)
			if slices.EqualFunc(g.adj, g3.adj, slices.Equal) {
				t.Fatalf("n=%d k=%d: another seed gave the same graph", tc.n, tc.k)
			}
		}
	}
}

func TestCompleteGraph(t *testing.T) {
	for _, cfg := range []Config{{N: 5}, {N: 5, Neighbours: 4}} {
		g, err := newGraph(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !g.complete {
			t.Fatalf("Neighbours %d of 5 is not the complete graph", cfg.Neighbours)
		}
		set := newIDSet(5, []uint32{1, 3, 4})
		if got := g.among(3, set); !slices.Equal(got, []uint32{1, 4}) {
			t.Errorf("among(3) = %v", got)
		}
		if g.adjacent(2, 2) || g.adjacent(0, 1) || g.adjacent(1, 6) || !g.adjacent(1, 5) {
			t.Error("adjacency of the complete graph wrong")
		}
	}
}
