package routing

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// CoordinateConfig tunes the Vivaldi algorithm. The defaults are serf's, which
// Consul has run on large fleets for years. References:
//
//   - [1] Dabek et al., "Vivaldi: A decentralized network coordinate
//     system", SIGCOMM 2004.
//   - [2] Ledlie, Gardner, Seltzer, "Network Coordinates in the Wild",
//     NSDI 2007.
//   - [3] Lee et al., "On suitability of Euclidean embedding for host-based
//     network coordinate systems", IEEE/ACM ToN 18(1), 2010.
type CoordinateConfig struct {
	// Dimensionality is the length of Coordinate.Vec, 1..MaxDimensionality.
	// Per [2], accuracy stops improving beyond about 7; the default is 8.
	Dimensionality uint

	// VivaldiErrorMax is the error of a coordinate with no observations and
	// the cap on the error afterwards. Must be positive.
	VivaldiErrorMax float64

	// VivaldiCE bounds how much one observation moves the error estimate
	// (ce in [1]). In (0, 1].
	VivaldiCE float64

	// VivaldiCC bounds how much one observation moves the coordinate (cc in
	// [1]). In (0, 1].
	VivaldiCC float64

	// AdjustmentWindowSize is the number of residuals averaged into
	// Coordinate.Adjustment, per [3]. 0 disables adjustments. At most
	// maxWindowSize.
	AdjustmentWindowSize uint

	// HeightMin is the smallest height, in seconds. Heights must stay
	// positive for the model to work, so a small floor adds a tiny error.
	// Must be finite and not negative.
	HeightMin float64

	// LatencyFilterSize is the number of RTT samples per peer whose moving
	// median feeds the algorithm, to ride out one-off spikes ([2]). At least
	// 1 (1 disables filtering), at most maxWindowSize.
	LatencyFilterSize uint

	// GravityRho sets how strongly coordinates are pulled back towards the
	// origin to stop the whole system drifting ([2]); larger is weaker.
	// Must be positive.
	GravityRho float64
}

// maxWindowSize bounds AdjustmentWindowSize and LatencyFilterSize so that a
// mistyped configuration cannot allocate without limit.
const maxWindowSize = 1 << 16

// MaxObservedRTT is the largest round-trip time CoordinateClient.Update
// accepts. Longer observations are almost certainly a stalled process or a
// clock step rather than the network, and would tear the coordinate apart.
const MaxObservedRTT = 10 * time.Second

// DefaultCoordinateConfig returns serf's defaults: 8 dimensions, error cap
// 1.5, ce = cc = 0.25, an adjustment window of 20, a minimum height of 10 µs,
// a 3-sample latency median and gravity rho 150.
func DefaultCoordinateConfig() *CoordinateConfig {
	return &CoordinateConfig{
		Dimensionality:       8,
		VivaldiErrorMax:      1.5,
		VivaldiCE:            0.25,
		VivaldiCC:            0.25,
		AdjustmentWindowSize: 20,
		HeightMin:            10.0e-6,
		LatencyFilterSize:    3,
		GravityRho:           150.0,
	}
}

// Validate reports the first field of cfg that is out of range.
func (cfg *CoordinateConfig) Validate() error {
	if cfg == nil {
		return fmt.Errorf("routing: coordinate config is nil")
	}
	positive := func(v float64) bool { return finite(v) && v > 0 }
	unit := func(v float64) bool { return finite(v) && v > 0 && v <= 1 }
	switch {
	case cfg.Dimensionality < 1 || cfg.Dimensionality > MaxDimensionality:
		return fmt.Errorf("routing: coordinate config: Dimensionality %d out of range 1..%d", cfg.Dimensionality, MaxDimensionality)
	case !positive(cfg.VivaldiErrorMax):
		return fmt.Errorf("routing: coordinate config: VivaldiErrorMax %g must be positive and finite", cfg.VivaldiErrorMax)
	case !unit(cfg.VivaldiCE):
		return fmt.Errorf("routing: coordinate config: VivaldiCE %g out of range (0, 1]", cfg.VivaldiCE)
	case !unit(cfg.VivaldiCC):
		return fmt.Errorf("routing: coordinate config: VivaldiCC %g out of range (0, 1]", cfg.VivaldiCC)
	case cfg.AdjustmentWindowSize > maxWindowSize:
		return fmt.Errorf("routing: coordinate config: AdjustmentWindowSize %d exceeds %d", cfg.AdjustmentWindowSize, maxWindowSize)
	case !finite(cfg.HeightMin) || cfg.HeightMin < 0 || cfg.HeightMin > MaxCoordinateComponent:
		return fmt.Errorf("routing: coordinate config: HeightMin %g must be finite, not negative and at most %g", cfg.HeightMin, float64(MaxCoordinateComponent))
	case cfg.LatencyFilterSize < 1 || cfg.LatencyFilterSize > maxWindowSize:
		return fmt.Errorf("routing: coordinate config: LatencyFilterSize %d out of range 1..%d", cfg.LatencyFilterSize, maxWindowSize)
	case !positive(cfg.GravityRho):
		return fmt.Errorf("routing: coordinate config: GravityRho %g must be positive and finite", cfg.GravityRho)
	}
	return nil
}

// ClientStats counts notable events of a CoordinateClient.
type ClientStats struct {
	// Resets counts the times the client's own coordinate became invalid
	// (NaN or infinite) and was reset to the origin.
	Resets int
}

// CoordinateClient maintains one node's Vivaldi coordinate from RTT
// observations of its peers, as serf's coordinate.Client does. It is safe for
// concurrent use.
type CoordinateClient struct {
	mu sync.RWMutex

	// cfg is a private copy of the validated configuration.
	cfg CoordinateConfig

	// coord is the current estimate; origin is a fixed point at the origin
	// that gravity pulls towards.
	coord, origin *Coordinate

	// adjustmentSamples is a ring of the latest residuals (rtt − raw
	// distance), adjustmentIndex the next slot to write.
	adjustmentSamples []float64
	adjustmentIndex   int

	// latencySamples holds each peer's latest LatencyFilterSize RTTs in
	// seconds, oldest first.
	latencySamples map[string][]float64

	// rng picks the direction to move in when two coordinates coincide.
	rng *rand.Rand

	stats ClientStats
}

// NewCoordinateClient returns a client at the origin of the coordinate space
// described by cfg (nil means DefaultCoordinateConfig()), or an error if cfg
// is out of range. The client copies cfg. Its random source, used only to
// separate coincident coordinates, is seeded randomly; use
// NewCoordinateClientSeeded for reproducible runs.
func NewCoordinateClient(cfg *CoordinateConfig) (*CoordinateClient, error) {
	return NewCoordinateClientSeeded(cfg, rand.Uint64())
}

// NewCoordinateClientSeeded is NewCoordinateClient with a fixed seed for the
// client's random source, so that simulations and tests are deterministic.
// Clients of one system should have different seeds: with equal seeds,
// nodes that start together at the origin would all move off in the same
// direction.
func NewCoordinateClientSeeded(cfg *CoordinateConfig, seed uint64) (*CoordinateClient, error) {
	if cfg == nil {
		cfg = DefaultCoordinateConfig()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &CoordinateClient{
		cfg:               *cfg,
		coord:             NewCoordinate(cfg),
		origin:            NewCoordinate(cfg),
		adjustmentSamples: make([]float64, cfg.AdjustmentWindowSize),
		latencySamples:    make(map[string][]float64),
		rng:               rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	return c, nil
}

// GetCoordinate returns a copy of the client's current coordinate.
func (c *CoordinateClient) GetCoordinate() *Coordinate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.coord.Clone()
}

// SetCoordinate replaces the client's coordinate with a copy of coord, for
// example one persisted across a restart. It returns an error, and changes
// nothing, if coord fails the checks of Update.
func (c *CoordinateClient) SetCoordinate(coord *Coordinate) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkCoordinate(coord); err != nil {
		return err
	}
	c.coord = coord.Clone()
	return nil
}

// ForgetNode drops the latency samples kept for node. Call it when a node
// leaves the cluster: the client keeps a few samples for every node it has
// been updated with, and nothing else ever removes them.
func (c *CoordinateClient) ForgetNode(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.latencySamples, node)
}

// Stats returns a copy of the client's counters.
func (c *CoordinateClient) Stats() ClientStats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.stats
}

// DistanceTo returns the estimated RTT from the client's coordinate to other,
// or UnknownRTT if other is not compatible or not valid.
func (c *CoordinateClient) DistanceTo(other *Coordinate) time.Duration {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.coord.DistanceTo(other)
}

// checkCoordinate rejects coordinates of another dimensionality and those
// failing the wire checks (NaN or infinite components, out of range values,
// negative error or height). The caller holds the lock.
func (c *CoordinateClient) checkCoordinate(coord *Coordinate) error {
	if coord == nil {
		return fmt.Errorf("%w: nil", ErrInvalidCoordinate)
	}
	if !c.coord.IsCompatibleWith(coord) {
		return fmt.Errorf("%w: dimensions aren't compatible: %d, want %d", ErrInvalidCoordinate, len(coord.Vec), len(c.coord.Vec))
	}
	return coord.validate()
}

// Update records that a ping to node, whose coordinate is other, took rtt,
// moves the client's coordinate accordingly and returns a copy of the new
// coordinate. It returns an error, and changes nothing (not even the latency
// filter), if other is nil, of another dimensionality or invalid (see
// UnmarshalBinary for the checks), or if rtt is not in (0, MaxObservedRTT].
//
// One update applies, in order: the per-node moving median of the last
// LatencyFilterSize RTTs; the Vivaldi spring step of [1] with the adaptive
// timestep weighted by both nodes' errors; the adjustment window of [3]; and
// gravity towards the origin of [2]. If floating point trouble ever leaves
// the coordinate invalid, it is reset to the origin and Stats().Resets
// counts it.
func (c *CoordinateClient) Update(node string, other *Coordinate, rtt time.Duration) (*Coordinate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if err := c.checkCoordinate(other); err != nil {
		return nil, err
	}
	if rtt <= 0 || rtt > MaxObservedRTT {
		return nil, fmt.Errorf("routing: round trip time %v out of range (0, %v]", rtt, MaxObservedRTT)
	}

	rttSeconds := c.latencyFilter(node, rtt.Seconds())
	c.updateVivaldi(other, rttSeconds)
	c.updateAdjustment(other, rttSeconds)
	c.updateGravity()
	if !c.coord.IsValid() {
		c.stats.Resets++
		c.coord = NewCoordinate(&c.cfg)
	}
	return c.coord.Clone(), nil
}

// latencyFilter appends a sample for node and returns the median of its
// latest LatencyFilterSize samples. The caller holds the lock.
func (c *CoordinateClient) latencyFilter(node string, rttSeconds float64) float64 {
	samples := append(c.latencySamples[node], rttSeconds)
	if len(samples) > int(c.cfg.LatencyFilterSize) {
		// Copy rather than reslice so the backing array does not creep.
		samples = append(make([]float64, 0, c.cfg.LatencyFilterSize), samples[len(samples)-int(c.cfg.LatencyFilterSize):]...)
	}
	c.latencySamples[node] = samples
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}

// updateVivaldi is one step of the Vivaldi spring relaxation. The caller
// holds the lock and has validated other.
func (c *CoordinateClient) updateVivaldi(other *Coordinate, rttSeconds float64) {
	dist := c.coord.DistanceTo(other).Seconds()
	if rttSeconds < zeroThreshold {
		rttSeconds = zeroThreshold
	}
	wrongness := math.Abs(dist-rttSeconds) / rttSeconds

	totalError := c.coord.Error + other.Error
	if totalError < zeroThreshold {
		totalError = zeroThreshold
	}
	weight := c.coord.Error / totalError

	c.coord.Error = c.cfg.VivaldiCE*weight*wrongness + c.coord.Error*(1.0-c.cfg.VivaldiCE*weight)
	if c.coord.Error > c.cfg.VivaldiErrorMax {
		c.coord.Error = c.cfg.VivaldiErrorMax
	}

	force := c.cfg.VivaldiCC * weight * (rttSeconds - dist)
	c.coord = c.coord.applyForce(&c.cfg, force, other, c.rng)
}

// updateAdjustment records the residual of this observation against the raw
// (unadjusted) distance and sets Adjustment to half the window's mean, so
// that the two ends' adjustments together correct the full residual. The
// caller holds the lock.
func (c *CoordinateClient) updateAdjustment(other *Coordinate, rttSeconds float64) {
	if len(c.adjustmentSamples) == 0 {
		return
	}
	c.adjustmentSamples[c.adjustmentIndex] = rttSeconds - c.coord.rawDistanceTo(other)
	c.adjustmentIndex = (c.adjustmentIndex + 1) % len(c.adjustmentSamples)
	sum := 0.0
	for _, s := range c.adjustmentSamples {
		sum += s
	}
	c.coord.Adjustment = sum / (2.0 * float64(len(c.adjustmentSamples)))
}

// updateGravity pulls the coordinate towards the origin with a force that
// grows with the square of its distance, so that the system as a whole does
// not drift. The caller holds the lock.
func (c *CoordinateClient) updateGravity() {
	dist := c.origin.DistanceTo(c.coord).Seconds()
	force := -1.0 * math.Pow(dist/c.cfg.GravityRho, 2.0)
	c.coord = c.coord.applyForce(&c.cfg, force, c.origin, c.rng)
}
