package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"slices"
)

// graph is who masks with and shares secrets to whom. The complete graph
// is the original protocol. The sparse one is the SecAgg+ construction: a
// ring (Harary graph H_{k,N}) over a pseudorandom permutation of the ids,
// each client joined to the k/2 nearest on either side.
type graph struct {
	n        int
	complete bool
	adj      [][]uint32 // adj[id]: sorted neighbours; nil when complete
}

// newGraph builds the graph of a validated Config.
func newGraph(c Config) (*graph, error) {
	g := &graph{n: c.N, complete: c.complete()}
	if g.complete {
		return g, nil
	}
	perm, err := permutation(c)
	if err != nil {
		return nil, err
	}
	half := c.Neighbours / 2
	g.adj = make([][]uint32, c.N+1)
	for pos, id := range perm {
		nb := make([]uint32, 0, c.Neighbours)
		for d := 1; d <= half; d++ {
			nb = append(nb, perm[(pos+d)%c.N], perm[(pos-d+c.N)%c.N])
		}
		slices.Sort(nb)
		g.adj[id] = nb
	}
	return g, nil
}

// permutation returns the ids 1..N in the order derived from GraphSeed.
func permutation(c Config) ([]uint32, error) {
	key, err := deriveKey(c.GraphSeed[:], labelGraph, c.Session, uint32(c.N), uint32(c.Neighbours))
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secagg: graph prg: %w", err)
	}
	var iv [aes.BlockSize]byte
	stream := cipher.NewCTR(block, iv[:])
	var buf [4]byte
	next := func() uint32 {
		clear(buf[:])
		stream.XORKeyStream(buf[:], buf[:])
		return binary.LittleEndian.Uint32(buf[:])
	}
	// uniform returns a uniform value in [0, m) by rejection.
	uniform := func(m uint32) uint32 {
		limit := (1<<32 - 1) - (1<<32)%uint64(m)
		for {
			if r := next(); uint64(r) <= limit {
				return r % m
			}
		}
	}
	perm := make([]uint32, c.N)
	for i := range perm {
		perm[i] = uint32(i + 1)
	}
	for i := len(perm) - 1; i > 0; i-- {
		j := uniform(uint32(i + 1))
		perm[i], perm[j] = perm[j], perm[i]
	}
	return perm, nil
}

// valid reports whether id is a participant id.
func (g *graph) valid(id uint32) bool { return id >= 1 && int(id) <= g.n }

// adjacent reports whether a and b are distinct neighbours.
func (g *graph) adjacent(a, b uint32) bool {
	if a == b || !g.valid(a) || !g.valid(b) {
		return false
	}
	if g.complete {
		return true
	}
	_, ok := slices.BinarySearch(g.adj[a], b)
	return ok
}

// among returns the neighbours of id that are in set, sorted.
func (g *graph) among(id uint32, set *idSet) []uint32 {
	if g.complete {
		out := make([]uint32, 0, len(set.list))
		for _, j := range set.list {
			if j != id {
				out = append(out, j)
			}
		}
		return out
	}
	out := make([]uint32, 0, len(g.adj[id]))
	for _, j := range g.adj[id] {
		if set.has(j) {
			out = append(out, j)
		}
	}
	return out
}

// idSet is a set of participant ids with a sorted list of its members.
type idSet struct {
	in   []bool
	list []uint32
}

// newIDSet returns the set of the given ids, all valid for n participants
// and sorted strictly increasing.
func newIDSet(n int, sorted []uint32) *idSet {
	s := &idSet{in: make([]bool, n+1), list: sorted}
	for _, id := range sorted {
		s.in[id] = true
	}
	return s
}

func (s *idSet) has(id uint32) bool { return int(id) < len(s.in) && s.in[id] }

// withSelf returns the sorted list with id inserted (it must be absent).
func withSelf(list []uint32, id uint32) []uint32 {
	i, _ := slices.BinarySearch(list, id)
	return slices.Insert(slices.Clone(list), i, id)
}
