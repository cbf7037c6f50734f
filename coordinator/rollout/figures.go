package rollout

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/petrel-mesh/petrel/coordinator/bus"
)

// Figures are request counts of one version over some period: requests,
// failed requests, and a latency histogram.
type Figures struct {
	// Requests is the number of requests served.
	Requests uint64 `json:"requests"`
	// Errors is how many of them failed.
	Errors uint64 `json:"errors"`
	// Latency holds request counts per latency bucket: Latency[i] counts
	// requests that took at most bus.LatencyBounds[i] seconds (and more
	// than the bound before), and the last element, at index
	// len(bus.LatencyBounds), those above the last bound. It is normally
	// len(bus.LatencyBounds)+1 long; shorter means the missing buckets are
	// empty, and elements past the last bound count as above it.
	Latency []uint64 `json:"latency,omitempty"`
}

// addSat returns a+b, saturating at math.MaxUint64.
func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// Add adds g to f, bucket by bucket, saturating rather than wrapping on
// overflow.
func (f *Figures) Add(g Figures) {
	f.Requests = addSat(f.Requests, g.Requests)
	f.Errors = addSat(f.Errors, g.Errors)
	if len(g.Latency) > len(f.Latency) {
		f.Latency = append(f.Latency, make([]uint64, len(g.Latency)-len(f.Latency))...)
	}
	for i, c := range g.Latency {
		f.Latency[i] = addSat(f.Latency[i], c)
	}
}

// ErrorRate returns Errors/Requests, or 0 when there were no requests.
func (f Figures) ErrorRate() float64 {
	if f.Requests == 0 {
		return 0
	}
	return float64(f.Errors) / float64(f.Requests)
}

// OverflowLatency is what Quantile returns when the quantile falls in the
// bucket above the last of bus.LatencyBounds: twice the last bound (10 s
// with the default bounds). It stands for "more than the last bound" and
// exceeds any threshold up to twice that bound.
func OverflowLatency() time.Duration {
	if len(bus.LatencyBounds) == 0 {
		return 0
	}
	return seconds(2 * bus.LatencyBounds[len(bus.LatencyBounds)-1])
}

// seconds converts floating-point seconds to a Duration, rounding to the
// nanosecond.
func seconds(s float64) time.Duration {
	return time.Duration(math.Round(s * float64(time.Second)))
}

// Quantile returns the upper bound of the latency bucket that holds the
// request of rank ⌈q·n⌉ (n the requests in the histogram, ranks from 1 in
// order of latency): the smallest bucket bound b such that at least a share
// q of the requests took at most b. For the bucket above the last bound it
// returns OverflowLatency(). q is clamped to [0, 1] (q ≤ 0 gives the
// fastest request's bucket); an empty histogram or a NaN q gives 0.
func (f Figures) Quantile(q float64) time.Duration {
	var total uint64
	for _, c := range f.Latency {
		total = addSat(total, c)
	}
	if total == 0 || math.IsNaN(q) {
		return 0
	}
	q = min(max(q, 0), 1)
	// The factor keeps a product such as 0.99 × 100 = 99.00000000000001
	// from rounding up to the next rank.
	rank := uint64(math.Ceil(q * float64(total) * (1 - 1e-12)))
	rank = min(max(rank, 1), total)
	var cum uint64
	for i, c := range f.Latency {
		cum = addSat(cum, c)
		if cum >= rank {
			if i < len(bus.LatencyBounds) {
				return seconds(bus.LatencyBounds[i])
			}
			break
		}
	}
	return OverflowLatency()
}

// Diff returns the figures a node served between two of its cumulative
// reports of one version, prev and cur. Counters only grow while a node
// runs, so if any of cur's counters (requests, errors, a latency bucket) is
// below prev's, the node restarted in between: then restarted is true and
// the figures are cur itself, everything since the restart. Diff does not
// check that prev and cur are of the same model and version.
func Diff(prev, cur bus.VersionStats) (f Figures, restarted bool) {
	restarted = cur.Requests < prev.Requests || cur.Errors < prev.Errors
	for i, p := range prev.Latency {
		var c uint64
		if i < len(cur.Latency) {
			c = cur.Latency[i]
		}
		if c < p {
			restarted = true
		}
	}
	f = Figures{Requests: cur.Requests, Errors: cur.Errors, Latency: append([]uint64(nil), cur.Latency...)}
	if restarted {
		return f, true
	}
	f.Requests -= prev.Requests
	f.Errors -= prev.Errors
	for i := range min(len(prev.Latency), len(f.Latency)) {
		f.Latency[i] -= prev.Latency[i]
	}
	return f, false
}

// Delta is what one version served on one node between two reports.
type Delta struct {
	Node    string
	Model   string
	Version string
	Figures Figures
	// Restarted says the node restarted since the previous report, so
	// Figures are everything since the restart.
	Restarted bool
}

// Tracker turns the cumulative NodeStats that nodes publish into Deltas.
// It keeps the last report of each node. It is not safe for concurrent use.
//
// The first report seen from a node is only a baseline and yields no
// deltas: the coordinator cannot tell how much of the node's cumulative
// figures it has already counted (for example before it restarted itself),
// and counting nothing is the safe side for a rollout, which then waits for
// fresh traffic. A later report with a different Started time is a node
// restart: every version's figures count in full.
type Tracker struct {
	nodes map[string]*trackedNode
}

type trackedNode struct {
	started  time.Time
	versions map[modelVersion]bus.VersionStats
}

type modelVersion struct{ model, version string }

// NewTracker returns an empty Tracker.
func NewTracker() *Tracker {
	return &Tracker{nodes: make(map[string]*trackedNode)}
}

// ErrBadStats is wrapped by the errors of Tracker.Update.
var ErrBadStats = errors.New("rollout: bad node stats")

// Update records s and returns what each version served on s.Node since the
// node's previous report, in the order of s.Versions, leaving out versions
// whose figures did not change. A report without a node name, or with a
// version listed twice, is an error and changes nothing.
func (t *Tracker) Update(s bus.NodeStats) ([]Delta, error) {
	if s.Node == "" {
		return nil, fmt.Errorf("%w: no node name", ErrBadStats)
	}
	cur := make(map[modelVersion]bus.VersionStats, len(s.Versions))
	for _, v := range s.Versions {
		k := modelVersion{v.Model, v.Version}
		if _, dup := cur[k]; dup {
			return nil, fmt.Errorf("%w: node %q reports %s version %q twice", ErrBadStats, s.Node, v.Model, v.Version)
		}
		cur[k] = v
	}
	prev, seen := t.nodes[s.Node]
	t.nodes[s.Node] = &trackedNode{started: s.Started, versions: cur}
	if !seen {
		return nil, nil
	}
	nodeRestarted := !prev.started.Equal(s.Started)
	var out []Delta
	for _, v := range s.Versions {
		var f Figures
		restarted := nodeRestarted
		if restarted {
			f, _ = Diff(bus.VersionStats{}, v)
		} else {
			f, restarted = Diff(prev.versions[modelVersion{v.Model, v.Version}], v)
		}
		if f.Requests == 0 && f.Errors == 0 && isZero(f.Latency) {
			continue
		}
		out = append(out, Delta{Node: s.Node, Model: v.Model, Version: v.Version, Figures: f, Restarted: restarted})
	}
	return out, nil
}

// Forget drops what the Tracker knows of node, for a node that left.
func (t *Tracker) Forget(node string) { delete(t.nodes, node) }

func isZero(c []uint64) bool {
	for _, x := range c {
		if x != 0 {
			return false
		}
	}
	return true
}
