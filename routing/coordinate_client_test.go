package routing

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCoordinateConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*CoordinateConfig)
		wantErr string
	}{
		{"default", func(*CoordinateConfig) {}, ""},
		{"1 dim", func(c *CoordinateConfig) { c.Dimensionality = 1 }, ""},
		{"16 dims", func(c *CoordinateConfig) { c.Dimensionality = 16 }, ""},
		{"no adjustment", func(c *CoordinateConfig) { c.AdjustmentWindowSize = 0 }, ""},
		{"zero height", func(c *CoordinateConfig) { c.HeightMin = 0 }, ""},
		{"0 dims", func(c *CoordinateConfig) { c.Dimensionality = 0 }, "Dimensionality 0"},
		{"17 dims", func(c *CoordinateConfig) { c.Dimensionality = 17 }, "Dimensionality 17"},
		{"zero error max", func(c *CoordinateConfig) { c.VivaldiErrorMax = 0 }, "VivaldiErrorMax"},
		{"NaN error max", func(c *CoordinateConfig) { c.VivaldiErrorMax = math.NaN() }, "VivaldiErrorMax"},
		{"zero ce", func(c *CoordinateConfig) { c.VivaldiCE = 0 }, "VivaldiCE"},
		{"ce above 1", func(c *CoordinateConfig) { c.VivaldiCE = 1.5 }, "VivaldiCE"},
		{"negative cc", func(c *CoordinateConfig) { c.VivaldiCC = -0.1 }, "VivaldiCC"},
		{"huge window", func(c *CoordinateConfig) { c.AdjustmentWindowSize = 1 << 20 }, "AdjustmentWindowSize"},
		{"negative height", func(c *CoordinateConfig) { c.HeightMin = -1 }, "HeightMin"},
		{"inf height", func(c *CoordinateConfig) { c.HeightMin = math.Inf(1) }, "HeightMin"},
		{"no filter", func(c *CoordinateConfig) { c.LatencyFilterSize = 0 }, "LatencyFilterSize"},
		{"zero rho", func(c *CoordinateConfig) { c.GravityRho = 0 }, "GravityRho"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultCoordinateConfig()
			tc.mutate(cfg)
			err := cfg.Validate()
			_, cerr := NewCoordinateClient(cfg)
			if tc.wantErr == "" {
				if err != nil || cerr != nil {
					t.Fatalf("Validate = %v, NewCoordinateClient = %v; want no error", err, cerr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error about %s", err, tc.wantErr)
			}
			if cerr == nil {
				t.Fatal("NewCoordinateClient accepted an invalid config")
			}
		})
	}
	var nilCfg *CoordinateConfig
	if nilCfg.Validate() == nil {
		t.Fatal("nil config validated")
	}
	if _, err := NewCoordinateClient(nil); err != nil {
		t.Fatalf("NewCoordinateClient(nil) = %v, want the defaults", err)
	}
}

func TestClientStartsAtOrigin(t *testing.T) {
	cfg := DefaultCoordinateConfig()
	cfg.Dimensionality = 7
	c, err := NewCoordinateClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.GetCoordinate(), NewCoordinate(cfg); !reflect.DeepEqual(got, want) {
		t.Fatalf("fresh client at %+v, want the origin %+v", got, want)
	}
	// The client copied the config.
	cfg.Dimensionality = 3
	if got := len(c.GetCoordinate().Vec); got != 7 {
		t.Fatalf("client changed with the caller's config: %d dims", got)
	}
}

func newTestClient(t *testing.T, dims uint) (*CoordinateClient, *CoordinateConfig) {
	t.Helper()
	cfg := DefaultCoordinateConfig()
	cfg.Dimensionality = dims
	c, err := NewCoordinateClientSeeded(cfg, 42)
	if err != nil {
		t.Fatal(err)
	}
	return c, cfg
}

func TestClientUpdateMovesAway(t *testing.T) {
	c, cfg := newTestClient(t, 3)
	// A node right above us, observed further away than the model says:
	// we must move down, away from it.
	other := NewCoordinate(cfg)
	other.Vec[2] = 0.001
	got, err := c.Update("node", other, 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !(got.Vec[2] < 0) {
		t.Fatalf("z = %g after a too-long RTT, want < 0", got.Vec[2])
	}
	if !reflect.DeepEqual(got, c.GetCoordinate()) {
		t.Fatal("Update returned something other than the new coordinate")
	}
	// The returned coordinate is a copy.
	got.Vec[2] = 99
	if c.GetCoordinate().Vec[2] == 99 {
		t.Fatal("Update returned the client's internal coordinate")
	}

	// And closer when the RTT is shorter than the model says.
	c2, _ := newTestClient(t, 3)
	far := NewCoordinate(cfg)
	far.Vec[2] = 0.1
	got, err = c2.Update("far", far, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !(got.Vec[2] > 0) {
		t.Fatalf("z = %g after a too-short RTT, want > 0", got.Vec[2])
	}
}

func TestClientSetCoordinate(t *testing.T) {
	c, cfg := newTestClient(t, 3)
	want := NewCoordinate(cfg)
	want.Vec[2] = 99
	want.Error = 0.25
	if err := c.SetCoordinate(want); err != nil {
		t.Fatal(err)
	}
	if got := c.GetCoordinate(); !reflect.DeepEqual(got, want) {
		t.Fatalf("coordinate %+v, want %+v", got, want)
	}
	want.Vec[2] = 1 // SetCoordinate copied
	if c.GetCoordinate().Vec[2] != 99 {
		t.Fatal("SetCoordinate kept a reference to the caller's coordinate")
	}
}

func TestClientDistanceTo(t *testing.T) {
	cfg := DefaultCoordinateConfig()
	cfg.Dimensionality = 3
	cfg.HeightMin = 0
	c, err := NewCoordinateClientSeeded(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	other := NewCoordinate(cfg)
	other.Vec[2] = 12.345
	if got, want := c.DistanceTo(other), time.Duration(12.345*secondsToNanoseconds); got != want {
		t.Fatalf("distance %v, want %v", got, want)
	}
}

func TestClientRejectsBadInput(t *testing.T) {
	_, cfg := newTestClient(t, 3)
	good := NewCoordinate(cfg)
	good.Vec[2] = 0.001
	nanCoord := good.Clone()
	nanCoord.Vec[0] = math.NaN()
	negErr := good.Clone()
	negErr.Error = -1
	huge := good.Clone()
	huge.Vec[1] = 1e9
	tests := []struct {
		name    string
		other   *Coordinate
		rtt     time.Duration
		wantErr string
	}{
		{"nil", nil, time.Millisecond, "nil"},
		{"incompatible", &Coordinate{Vec: make([]float64, 6)}, time.Millisecond, "dimensions aren't compatible"},
		{"NaN", nanCoord, time.Millisecond, "NaN"},
		{"negative error", negErr, time.Millisecond, "negative error"},
		{"huge", huge, time.Millisecond, "exceeds"},
		{"zero rtt", good, 0, "round trip time"},
		{"negative rtt", good, -35 * time.Second, "round trip time"},
		{"rtt above max", good, MaxObservedRTT + time.Nanosecond, "round trip time"},
		{"huge rtt", good, time.Duration(math.MaxInt64), "round trip time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newTestClient(t, 3)
			// Put a sample in the filter so we can see it is untouched.
			if _, err := c.Update("node", good, 5*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			before := c.GetCoordinate()
			dist := c.DistanceTo(good)
			got, err := c.Update("node", tc.other, tc.rtt)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Update = %v, want an error about %q", err, tc.wantErr)
			}
			if got != nil {
				t.Fatalf("Update returned %+v with an error", got)
			}
			if after := c.GetCoordinate(); !reflect.DeepEqual(after, before) {
				t.Fatalf("rejected update moved the coordinate from %+v to %+v", before, after)
			}
			if c.DistanceTo(good) != dist {
				t.Fatal("rejected update changed the distance estimate")
			}
			if got := c.latencySamples["node"]; len(got) != 1 {
				t.Fatalf("rejected update touched the latency filter: %v", got)
			}
			if tc.other != nil && tc.rtt > 0 && tc.rtt <= MaxObservedRTT {
				if err := c.SetCoordinate(tc.other); err == nil || !errors.Is(err, ErrInvalidCoordinate) {
					t.Fatalf("SetCoordinate(%s) = %v, want ErrInvalidCoordinate", tc.name, err)
				}
				if after := c.GetCoordinate(); !reflect.DeepEqual(after, before) {
					t.Fatal("rejected SetCoordinate changed the coordinate")
				}
			}
		})
	}
	// The boundary itself is accepted.
	c, _ := newTestClient(t, 3)
	if _, err := c.Update("node", good, MaxObservedRTT); err != nil {
		t.Fatalf("Update with rtt = MaxObservedRTT: %v", err)
	}
}

func TestClientLatencyFilter(t *testing.T) {
	c, _ := newTestClient(t, 3)
	steps := []struct {
		node        string
		rtt, median float64
	}{
		{"alice", 0.201, 0.201},
		{"alice", 0.200, 0.201},
		{"alice", 0.207, 0.201},
		// This glitch is filtered out by the median and never seen.
		{"alice", 1.9, 0.207},
		{"alice", 0.203, 0.207},
		{"alice", 0.199, 0.203},
		{"alice", 0.211, 0.203},
		// Peers do not share samples.
		{"bob", 0.310, 0.310},
	}
	for i, s := range steps {
		approx(t, fmt.Sprintf("step %d median", i), c.latencyFilter(s.node, s.rtt), s.median)
	}
	if got := len(c.latencySamples["alice"]); got != 3 {
		t.Fatalf("alice keeps %d samples, want 3", got)
	}
	c.ForgetNode("alice")
	if _, ok := c.latencySamples["alice"]; ok {
		t.Fatal("ForgetNode kept the samples")
	}
	approx(t, "median after ForgetNode", c.latencyFilter("alice", 0.888), 0.888)
}

func TestClientResetsOnPoisonedState(t *testing.T) {
	c, cfg := newTestClient(t, 3)
	c.coord.Vec[0] = math.NaN() // simulate a floating point accident
	got, err := c.Update("node", NewCoordinate(cfg), 250*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !got.IsValid() || !reflect.DeepEqual(got, NewCoordinate(cfg)) {
		t.Fatalf("coordinate after reset = %+v, want the origin", got)
	}
	if got := c.Stats().Resets; got != 1 {
		t.Fatalf("Resets = %d, want 1", got)
	}
}

func TestClientErrorConverges(t *testing.T) {
	// Two nodes that observe a consistent RTT gain confidence: the error
	// falls from VivaldiErrorMax to well below ConvergedCoordinateError.
	cfg := DefaultCoordinateConfig()
	a, _ := NewCoordinateClientSeeded(cfg, 1)
	b, _ := NewCoordinateClientSeeded(cfg, 2)
	for range 50 {
		if _, err := a.Update("b", b.GetCoordinate(), 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Update("a", a.GetCoordinate(), 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	ca, cb := a.GetCoordinate(), b.GetCoordinate()
	if ca.Error >= ConvergedCoordinateError/2 || cb.Error >= ConvergedCoordinateError/2 {
		t.Fatalf("errors %g and %g after 50 consistent rounds, want < %g", ca.Error, cb.Error, ConvergedCoordinateError/2)
	}
	if d := ca.DistanceTo(cb); d < 19*time.Millisecond || d > 21*time.Millisecond {
		t.Fatalf("estimated %v, want about 20ms", d)
	}
}

func TestClientSeededIsDeterministic(t *testing.T) {
	run := func(seed uint64) *Coordinate {
		a, _ := NewCoordinateClientSeeded(nil, seed)
		for i := range 5 {
			// The peer sits on top of us, so the direction is random.
			if _, err := a.Update("b", NewCoordinate(nil), time.Duration(i+1)*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
		return a.GetCoordinate()
	}
	if x, y := run(3), run(3); !reflect.DeepEqual(x, y) {
		t.Fatalf("same seed, different coordinates: %+v vs %+v", x, y)
	}
	if x, y := run(3), run(4); reflect.DeepEqual(x.Vec, y.Vec) {
		t.Fatal("different seeds moved in the same direction")
	}
}

func TestClientConcurrentUse(t *testing.T) {
	// Run with -race: updates, reads and forgets from many goroutines.
	cfg := DefaultCoordinateConfig()
	c, _ := NewCoordinateClientSeeded(cfg, 1)
	peer := NewCoordinate(cfg)
	peer.Vec[0] = 0.01
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			node := fmt.Sprintf("n%d", g%3)
			for i := range 200 {
				if _, err := c.Update(node, peer, time.Duration(10+i%5)*time.Millisecond); err != nil {
					t.Error(err)
					return
				}
				_ = c.GetCoordinate()
				_ = c.DistanceTo(peer)
				_ = c.Stats()
				if i%50 == 0 {
					c.ForgetNode(node)
				}
			}
		})
	}
	wg.Wait()
	if !c.GetCoordinate().IsValid() {
		t.Fatal("coordinate invalid after concurrent updates")
	}
}
