package routing

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Roles of a Candidate.
const (
	// RoleEdge is a node at an edge site.
	RoleEdge = "edge"
	// RoleCentral is a node of the central fallback tier.
	RoleCentral = "central"
)

// Candidate is one node that could serve a request, as seen by the node
// making the decision.
type Candidate struct {
	// ID is the node's unique name in the mesh.
	ID string
	// Role is RoleEdge or RoleCentral. Policies do not use it; callers that
	// want the central tier only as a last resort filter on it.
	Role string
	// RTT is the estimated round-trip time to the node, usually from
	// EstimateRTT.
	RTT time.Duration
	// RTTSource says where RTT came from.
	RTTSource RTTSource
	// InFlight is the number of requests the node is executing.
	InFlight int
	// QueueDepth is the number of requests waiting at the node.
	QueueDepth int
	// Ready means the node has the model loaded and ready.
	Ready bool
	// Healthy means the node is neither ejected nor suspect.
	Healthy bool
}

// Eligible reports whether c may be sent a request: Ready and Healthy.
func (c Candidate) Eligible() bool { return c.Ready && c.Healthy }

// Load returns InFlight + QueueDepth, counting negative values as zero and
// saturating instead of overflowing.
func (c Candidate) Load() int {
	a, b := max(c.InFlight, 0), max(c.QueueDepth, 0)
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}

const (
	// DefaultServiceTime is the per-request service time Score assumes when
	// given none: a small model on a CPU.
	DefaultServiceTime = 10 * time.Millisecond

	// DefaultLoadEpsilon is the default slack of bounded-load rendezvous
	// hashing: a node may carry up to 25 % more than the mean load. Smaller
	// values balance better but move more keys on every change (Mirrokni et
	// al. bound the expected moves per update by O(1/ε²)); 0.25 keeps both
	// the imbalance and the churn small.
	DefaultLoadEpsilon = 0.25
)

// Score is the cost, in milliseconds, of sending a request to c; lower is
// better:
//
//	Score = RTT + (InFlight + QueueDepth) × serviceTime
//
// That is the expected time to the first byte of the answer if the node
// works through its queue one request at a time: the network round trip plus
// the wait behind the requests already there (the caller's own service time
// is the same everywhere and left out). It is a deliberately simple model
// (a node with several execution slots drains faster), but it is monotone in
// both distance and load, which is what ranking needs.
//
// A serviceTime of zero or less means DefaultServiceTime. A negative RTT
// counts as zero; an RTT of zero or less whose source is RTTUnknown counts as
// UnknownRTT, so that an unmeasured node does not look like it is next door.
// Score ignores Ready and Healthy.
func Score(c Candidate, serviceTime time.Duration) float64 {
	if serviceTime <= 0 {
		serviceTime = DefaultServiceTime
	}
	rtt := c.RTT
	if rtt <= 0 {
		rtt = 0
		if c.RTTSource == RTTUnknown {
			rtt = UnknownRTT
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return ms(rtt) + float64(c.Load())*ms(serviceTime)
}

// Policy orders the candidates for one request.
type Policy interface {
	// Name returns the name NewPolicy knows the policy by.
	Name() string

	// Order returns the indices into cands of the eligible candidates
	// (Ready and Healthy) in order of preference: the first is the pick,
	// the rest the failover and hedging order. Ineligible candidates are
	// left out, so the result is empty when none is eligible. key
	// identifies what is requested (for example a model and version) and
	// matters to policies with affinity. The result is deterministic for a
	// given input, seed and sequence of calls. Order is safe for concurrent
	// use and does not modify cands.
	Order(key string, cands []Candidate) []int
}

// PolicyOptions configures NewPolicy.
type PolicyOptions struct {
	// ServiceTime is the per-request service time used by Score; zero means
	// DefaultServiceTime.
	ServiceTime time.Duration

	// LoadEpsilon is the slack of bounded-load rendezvous hashing (see
	// "rendezvous" in NewPolicy); zero means DefaultLoadEpsilon.
	LoadEpsilon float64

	// Seed seeds the random source of "p2c" when Rand is nil.
	Seed uint64

	// Rand, if not nil, is the random source of "p2c" instead of one seeded
	// from Seed. The policy serialises its own use of it, but it must not be
	// used elsewhere concurrently.
	Rand *rand.Rand
}

// Names of the policies NewPolicy knows.
const (
	PolicyNearest    = "nearest"
	PolicyP2C        = "p2c"
	PolicyRendezvous = "rendezvous"
)

// PolicyNames returns the names NewPolicy accepts.
func PolicyNames() []string {
	return []string{PolicyNearest, PolicyP2C, PolicyRendezvous}
}

// NewPolicy returns the policy called name:
//
//   - "nearest" orders eligible candidates by Score (ties by ID, then
//     index). It always picks the best-looking node, so under bursty load
//     every decider may pile on the same one; use it when few nodes decide.
//   - "p2c", the power of two choices, samples two distinct eligible
//     candidates uniformly and picks the one with the lower Score; the rest
//     follow by Score. Sampling spreads load from many independent deciders
//     (Mitzenmacher), while choosing the better of two keeps most of the
//     benefit of "nearest".
//   - "rendezvous" orders eligible candidates by highest random weight,
//     xxhash(key + "\x00" + ID), so a key keeps going to the same node
//     (warm caches, batching) and only 1/n of keys move when a node joins
//     or leaves. With bounded load (Mirrokni, Thorup, Zadimoghaddam,
//     "Consistent Hashing with Bounded Loads", 2017), a node whose load is
//     at or above the capacity ⌈(1+ε)(L+1)/n⌉ (L the total load of the n
//     eligible candidates, counting the request being placed) is moved to
//     the back, in hash order, so keys spill to their next node rather than
//     overload it.
//
// An unknown name, a negative or non-finite LoadEpsilon or a negative
// ServiceTime is an error.
func NewPolicy(name string, opts PolicyOptions) (Policy, error) {
	if opts.ServiceTime < 0 {
		return nil, fmt.Errorf("routing: policy %q: negative ServiceTime %v", name, opts.ServiceTime)
	}
	if opts.ServiceTime == 0 {
		opts.ServiceTime = DefaultServiceTime
	}
	eps, err := normaliseEpsilon(opts.LoadEpsilon)
	if err != nil {
		return nil, fmt.Errorf("routing: policy %q: %w", name, err)
	}
	switch name {
	case PolicyNearest:
		return &nearestPolicy{serviceTime: opts.ServiceTime}, nil
	case PolicyP2C:
		rng := opts.Rand
		if rng == nil {
			rng = rand.New(rand.NewPCG(opts.Seed, opts.Seed^0xda942042e4dd58b5))
		}
		return &p2cPolicy{serviceTime: opts.ServiceTime, rng: rng}, nil
	case PolicyRendezvous:
		return &rendezvousPolicy{epsilon: eps}, nil
	default:
		return nil, fmt.Errorf("routing: unknown policy %q (valid: %s)", name, strings.Join(PolicyNames(), ", "))
	}
}

// normaliseEpsilon maps 0 to DefaultLoadEpsilon and rejects negative or
// non-finite values.
func normaliseEpsilon(eps float64) (float64, error) {
	switch {
	case !finite(eps) || eps < 0:
		return 0, fmt.Errorf("LoadEpsilon %g must be finite and not negative", eps)
	case eps == 0:
		return DefaultLoadEpsilon, nil
	}
	return eps, nil
}

// eligibleIndices returns the indices of the eligible candidates.
func eligibleIndices(cands []Candidate) []int {
	idx := make([]int, 0, len(cands))
	for i, c := range cands {
		if c.Eligible() {
			idx = append(idx, i)
		}
	}
	return idx
}

// sortByScore sorts idx by Score, then ID, then index, so the order is total
// and deterministic.
func sortByScore(idx []int, cands []Candidate, serviceTime time.Duration) {
	type scored struct {
		i     int
		score float64
	}
	s := make([]scored, len(idx))
	for k, i := range idx {
		s[k] = scored{i, Score(cands[i], serviceTime)}
	}
	slices.SortFunc(s, func(a, b scored) int {
		return cmp.Or(
			cmp.Compare(a.score, b.score),
			strings.Compare(cands[a.i].ID, cands[b.i].ID),
			cmp.Compare(a.i, b.i),
		)
	})
	for k := range s {
		idx[k] = s[k].i
	}
}

// nearestPolicy orders by Score.
type nearestPolicy struct {
	serviceTime time.Duration
}

// Name implements Policy.
func (p *nearestPolicy) Name() string { return PolicyNearest }

// Order implements Policy.
func (p *nearestPolicy) Order(_ string, cands []Candidate) []int {
	idx := eligibleIndices(cands)
	sortByScore(idx, cands, p.serviceTime)
	return idx
}

// p2cPolicy is the power of two choices.
type p2cPolicy struct {
	serviceTime time.Duration
	mu          sync.Mutex // guards rng
	rng         *rand.Rand
}

// Name implements Policy.
func (p *p2cPolicy) Name() string { return PolicyP2C }

// Order implements Policy.
func (p *p2cPolicy) Order(_ string, cands []Candidate) []int {
	idx := eligibleIndices(cands)
	if len(idx) < 2 {
		return idx
	}
	p.mu.Lock()
	a := p.rng.IntN(len(idx))
	b := p.rng.IntN(len(idx) - 1)
	p.mu.Unlock()
	if b >= a {
		b++ // distinct from a, still uniform
	}
	pair := []int{idx[a], idx[b]}
	sortByScore(pair, cands, p.serviceTime)
	pick := pair[0]
	rest := slices.DeleteFunc(idx, func(i int) bool { return i == pick })
	sortByScore(rest, cands, p.serviceTime)
	return append([]int{pick}, rest...)
}

// rendezvousPolicy is highest-random-weight hashing with bounded load.
type rendezvousPolicy struct {
	epsilon float64
}

// Name implements Policy.
func (p *rendezvousPolicy) Name() string { return PolicyRendezvous }

// Order implements Policy.
func (p *rendezvousPolicy) Order(key string, cands []Candidate) []int {
	idx := eligibleIndices(cands)
	if len(idx) == 0 {
		return idx
	}
	hrwSort(key, idx, cands)
	total := 0.0
	for _, i := range idx {
		total += float64(cands[i].Load())
	}
	capacity := boundedCapacity(total+1, len(idx), p.epsilon)
	return partitionByCapacity(idx, cands, capacity)
}

// RendezvousWeight returns the highest-random-weight hash of id for key,
// xxhash64(key + "\x00" + id). The NUL separator keeps ("ab", "c") and
// ("a", "bc") apart.
func RendezvousWeight(key, id string) uint64 {
	d := xxhash.New()
	_, _ = d.WriteString(key)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(id)
	return d.Sum64()
}

// hrwSort sorts idx by descending RendezvousWeight, ties (equal IDs or a
// hash collision) by ID then index.
func hrwSort(key string, idx []int, cands []Candidate) {
	type weighted struct {
		i int
		w uint64
	}
	s := make([]weighted, len(idx))
	for k, i := range idx {
		s[k] = weighted{i, RendezvousWeight(key, cands[i].ID)}
	}
	slices.SortFunc(s, func(a, b weighted) int {
		return cmp.Or(
			cmp.Compare(b.w, a.w),
			strings.Compare(cands[a.i].ID, cands[b.i].ID),
			cmp.Compare(a.i, b.i),
		)
	})
	for k := range s {
		idx[k] = s[k].i
	}
}

// boundedCapacity is ⌈(1+ε)·total/n⌉, the most load a node may carry after
// taking one more unit under bounded-load hashing. total includes the units
// being placed. Because capacity·n ≥ total, some node always has room.
func boundedCapacity(total float64, n int, eps float64) float64 {
	return math.Ceil((1 + eps) * total / float64(n))
}

// partitionByCapacity keeps the order of idx but moves the candidates that
// have no room for one more unit (load+1 > capacity) to the back.
func partitionByCapacity(idx []int, cands []Candidate, capacity float64) []int {
	out := make([]int, 0, len(idx))
	var full []int
	for _, i := range idx {
		if float64(cands[i].Load())+1 <= capacity {
			out = append(out, i)
		} else {
			full = append(full, i)
		}
	}
	return append(out, full...)
}

// Place chooses the nodes that should hold replicas of the model identified
// by key, by rendezvous hashing with bounded load, and returns their IDs,
// primary first. Only Healthy nodes with a non-empty ID are considered (they
// need not be Ready: placement decides where a model should be loaded);
// duplicate IDs count once, the first occurrence winning. Each node's load is
// its Load(); callers placing models typically pass the number of replicas a
// node already holds as QueueDepth.
//
// Walking the nodes in descending RendezvousWeight(key, ID) order, Place
// takes those with room under the capacity ⌈(1+ε)(L+r)/n⌉, L the nodes'
// total load, r the replicas placed and n the number of nodes; if fewer than
// r have room, it fills up with the others in hash order. An epsilon of zero
// or less (or non-finite) means DefaultLoadEpsilon. It returns nil when
// replicas < 1 or no node qualifies, and every qualifying node when replicas
// is at least their number.
func Place(key string, nodes []Candidate, replicas int, epsilon float64) []string {
	if replicas < 1 {
		return nil
	}
	if !finite(epsilon) || epsilon <= 0 {
		epsilon = DefaultLoadEpsilon
	}
	seen := make(map[string]bool, len(nodes))
	idx := make([]int, 0, len(nodes))
	total := 0.0
	for i, n := range nodes {
		if !n.Healthy || n.ID == "" || seen[n.ID] {
			continue
		}
		seen[n.ID] = true
		idx = append(idx, i)
		total += float64(n.Load())
	}
	if len(idx) == 0 {
		return nil
	}
	hrwSort(key, idx, nodes)
	if replicas < len(idx) {
		capacity := boundedCapacity(total+float64(replicas), len(idx), epsilon)
		idx = partitionByCapacity(idx, nodes, capacity)[:replicas]
	}
	ids := make([]string, len(idx))
	for k, i := range idx {
		ids[k] = nodes[i].ID
	}
	return ids
}
