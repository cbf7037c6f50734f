package routing

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// This file is a seeded simulation in the spirit of serf's
// coordinate/performance_test.go: nodes with a known RTT matrix ("truth")
// each ping a random peer every cycle, and after many cycles the
// coordinates must predict the matrix within fixed error bounds.

// newRTTMatrix returns an n×n zero matrix.
func newRTTMatrix(n int) [][]time.Duration {
	m := make([][]time.Duration, n)
	for i := range m {
		m[i] = make([]time.Duration, n)
	}
	return m
}

// lineTruth places nodes on a line, spacing apart.
func lineTruth(n int, spacing time.Duration) [][]time.Duration {
	m := newRTTMatrix(n)
	for i := range n {
		for j := i + 1; j < n; j++ {
			rtt := time.Duration(j-i) * spacing
			m[i][j], m[j][i] = rtt, rtt
		}
	}
	return m
}

// gridTruth places nodes on a square grid, spacing apart.
func gridTruth(n int, spacing time.Duration) [][]time.Duration {
	m := newRTTMatrix(n)
	side := int(math.Sqrt(float64(n)))
	for i := range n {
		for j := i + 1; j < n; j++ {
			dx := float64(i%side - j%side)
			dy := float64(i/side - j/side)
			rtt := time.Duration(math.Hypot(dx, dy) * float64(spacing))
			m[i][j], m[j][i] = rtt, rtt
		}
	}
	return m
}

// splitTruth puts half the nodes in one place and half in another: lan
// within a side, lan+wan across.
func splitTruth(n int, lan, wan time.Duration) [][]time.Duration {
	m := newRTTMatrix(n)
	split := n / 2
	for i := range n {
		for j := i + 1; j < n; j++ {
			rtt := lan
			if (i <= split) != (j <= split) {
				rtt += wan
			}
			m[i][j], m[j][i] = rtt, rtt
		}
	}
	return m
}

// circleTruth spreads nodes 1..n-1 on a circle of the given radius and puts
// node 0 at twice the radius from all of them: equidistant, so it can only
// be modelled by height.
func circleTruth(n int, radius time.Duration) [][]time.Duration {
	m := newRTTMatrix(n)
	for i := range n {
		for j := i + 1; j < n; j++ {
			var rtt time.Duration
			if i == 0 {
				rtt = 2 * radius
			} else {
				t1 := 2 * math.Pi * float64(i) / float64(n)
				t2 := 2 * math.Pi * float64(j) / float64(n)
				d := math.Hypot(math.Cos(t2)-math.Cos(t1), math.Sin(t2)-math.Sin(t1))
				rtt = time.Duration(d * float64(radius))
			}
			m[i][j], m[j][i] = rtt, rtt
		}
	}
	return m
}

// randomTruth draws every RTT from a normal distribution, seeded.
func randomTruth(n int, mean, dev time.Duration, seed uint64) [][]time.Duration {
	rng := rand.New(rand.NewPCG(seed, 1))
	m := newRTTMatrix(n)
	for i := range n {
		for j := i + 1; j < n; j++ {
			rtt := time.Duration(rng.NormFloat64()*float64(dev) + float64(mean))
			m[i][j], m[j][i] = rtt, rtt
		}
	}
	return m
}

// newSimClients returns n clients with distinct fixed seeds.
func newSimClients(t *testing.T, n int, cfg *CoordinateConfig) []*CoordinateClient {
	t.Helper()
	clients := make([]*CoordinateClient, n)
	for i := range clients {
		c, err := NewCoordinateClientSeeded(cfg, uint64(i)+1)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	return clients
}

// simulate runs cycles rounds in which every node pings one random other
// node and updates its coordinate with the true RTT.
func simulate(t *testing.T, clients []*CoordinateClient, truth [][]time.Duration, cycles int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 2))
	n := len(clients)
	for range cycles {
		for i := range clients {
			j := rng.IntN(n)
			if j == i {
				continue
			}
			if _, err := clients[i].Update(fmt.Sprintf("node_%d", j), clients[j].GetCoordinate(), truth[i][j]); err != nil {
				t.Fatalf("update %d from %d: %v", i, j, err)
			}
		}
	}
}

// simStats summarises the relative error of the estimates.
type simStats struct {
	avg, max float64
}

// evaluate compares every pairwise estimate with the truth.
func evaluate(clients []*CoordinateClient, truth [][]time.Duration) simStats {
	var s simStats
	count := 0
	for i := range clients {
		for j := i + 1; j < len(clients); j++ {
			est := clients[i].DistanceTo(clients[j].GetCoordinate()).Seconds()
			actual := truth[i][j].Seconds()
			e := math.Abs(est-actual) / actual
			s.max = math.Max(s.max, e)
			s.avg += e
			count++
		}
	}
	s.avg /= float64(count)
	return s
}

func TestSimulation(t *testing.T) {
	// Serf's bounds are its measurements for one seed of its global RNG
	// plus a little slack, so they do not transfer to other seeds. These
	// bounds were set just above the worst of 40 seeds of this
	// implementation (the mean over seeds matches serf's figures: for the
	// line, average 0.0020 against serf's 0.0018 bound), so they are robust
	// to the seed while any real fault, which shows as errors of tens of
	// percent, fails them.
	tests := []struct {
		name           string
		nodes          int
		dims           uint
		truth          func(n int) [][]time.Duration
		maxAvg, maxMax float64
	}{
		{"line", 10, 8, func(n int) [][]time.Duration { return lineTruth(n, 10*time.Millisecond) }, 0.005, 0.035},
		{"grid", 25, 8, func(n int) [][]time.Duration { return gridTruth(n, 10*time.Millisecond) }, 0.0025, 0.045},
		{"split", 25, 8, func(n int) [][]time.Duration { return splitTruth(n, time.Millisecond, 10*time.Millisecond) }, 0.004, 0.04},
		{"height", 25, 2, func(n int) [][]time.Duration { return circleTruth(n, 100*time.Millisecond) }, 0.005, 0.13},
		{"random", 25, 8, func(n int) [][]time.Duration { return randomTruth(n, 100*time.Millisecond, 10*time.Millisecond, 1) }, 0.075, 0.45},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultCoordinateConfig()
			cfg.Dimensionality = tc.dims
			clients := newSimClients(t, tc.nodes, cfg)
			truth := tc.truth(tc.nodes)
			simulate(t, clients, truth, 1000, 1)
			s := evaluate(clients, truth)
			t.Logf("relative error avg=%.6f max=%.6f", s.avg, s.max)
			if s.avg > tc.maxAvg || s.max > tc.maxMax {
				t.Errorf("relative error avg=%.6f max=%.6f, want avg <= %.6f and max <= %.6f", s.avg, s.max, tc.maxAvg, tc.maxMax)
			}
			for i, c := range clients {
				if got := c.Stats().Resets; got != 0 {
					t.Errorf("client %d reset %d times", i, got)
				}
			}
		})
	}
}

// TestSimulationHeight checks that the node equidistant from all others (the
// centre of circleTruth) is modelled by height: it sits high above a flat
// ring of nodes.
func TestSimulationHeight(t *testing.T) {
	const radius = 100 * time.Millisecond
	cfg := DefaultCoordinateConfig()
	cfg.Dimensionality = 2 // the ring is exactly representable in the plane
	clients := newSimClients(t, 25, cfg)
	simulate(t, clients, circleTruth(25, radius), 1000, 1)
	for i, c := range clients {
		h := c.GetCoordinate().Height
		if i == 0 && h < 0.97*radius.Seconds() {
			t.Errorf("centre height %.6f s, want >= %.6f", h, 0.97*radius.Seconds())
		}
		if i > 0 && h > 0.06*radius.Seconds() {
			t.Errorf("ring node %d height %.6f s, want <= %.6f", i, h, 0.06*radius.Seconds())
		}
	}
}

// TestSimulationGravity checks that gravity pulls a system that starts off
// centre back towards the origin, as serf's drift test does.
func TestSimulationGravity(t *testing.T) {
	const dist = 500 * time.Millisecond
	cfg := DefaultCoordinateConfig()
	cfg.Dimensionality = 2
	clients := newSimClients(t, 4, cfg)
	// A square in the first quadrant; nodes 2 and 3 start on top of each
	// other.
	starts := [][]float64{{0, 0}, {0, dist.Seconds()}, {dist.Seconds(), dist.Seconds()}, {dist.Seconds(), dist.Seconds()}}
	for i, c := range clients {
		coord := c.GetCoordinate()
		coord.Vec = starts[i]
		if err := c.SetCoordinate(coord); err != nil {
			t.Fatal(err)
		}
	}
	truth := newRTTMatrix(4)
	for i := range 4 {
		for j := i + 1; j < 4; j++ {
			rtt := dist
			if i%2 == 0 && j%2 == 0 {
				rtt = time.Duration(math.Sqrt2 * float64(rtt))
			}
			truth[i][j], truth[j][i] = rtt, rtt
		}
	}
	centreError := func() float64 {
		lo, hi := clients[0].GetCoordinate().Vec, clients[0].GetCoordinate().Vec
		for _, c := range clients[1:] {
			for k, v := range c.GetCoordinate().Vec {
				lo[k], hi[k] = math.Min(lo[k], v), math.Max(hi[k], v)
			}
		}
		mid := make([]float64, len(lo))
		for k := range mid {
			mid[k] = lo[k] + (hi[k]-lo[k])/2
		}
		return magnitude(mid)
	}
	simulate(t, clients, truth, 1000, 1)
	baseline := centreError()
	simulate(t, clients, truth, 10000, 2)
	if got := centreError(); got > 0.8*baseline {
		t.Errorf("centre drifted from %.6f to %.6f, want at most 80%% of the baseline", baseline, got)
	}
}
