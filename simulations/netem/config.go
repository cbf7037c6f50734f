package netem

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// MaxDelay is the largest Delay and Jitter a LinkConfig may hold. Longer
// delays are almost certainly a unit mistake (seconds given as minutes)
// and would hold queued data for too long.
const MaxDelay = time.Minute

// LinkConfig describes the emulated link. The zero value is a perfect link
// (no delay, no loss).
type LinkConfig struct {
	// Delay is the one-way delay added in each direction, so a round
	// trip through the relay takes about 2×Delay.
	Delay time.Duration
	// Jitter varies each packet's delay uniformly within
	// [Delay-Jitter, Delay+Jitter] (never below zero), as netem does.
	// Packets of a flow are never reordered by it.
	Jitter time.Duration
	// Loss is the probability in [0, 1] that a datagram is dropped, drawn
	// independently per datagram and direction. UDP only: a TCPRelay
	// rejects a non-zero Loss.
	Loss float64
	// Seed seeds the random source of jitter and loss, so runs with the
	// same seed and traffic see the same drops.
	Seed uint64
}

// Validate reports whether c is usable: Delay and Jitter within
// [0, MaxDelay] and Loss a number within [0, 1].
func (c LinkConfig) Validate() error {
	if c.Delay < 0 || c.Delay > MaxDelay {
		return fmt.Errorf("netem: delay %v out of range [0, %v]", c.Delay, MaxDelay)
	}
	if c.Jitter < 0 || c.Jitter > MaxDelay {
		return fmt.Errorf("netem: jitter %v out of range [0, %v]", c.Jitter, MaxDelay)
	}
	if math.IsNaN(c.Loss) || c.Loss < 0 || c.Loss > 1 {
		return fmt.Errorf("netem: loss %v out of range [0, 1]", c.Loss)
	}
	return nil
}

// shaper draws per-packet delay and loss decisions from a LinkConfig.
type shaper struct {
	mu  sync.Mutex
	cfg LinkConfig
	rng *rand.Rand
}

// newShaper returns a shaper for a validated config.
func newShaper(cfg LinkConfig) *shaper {
	s := &shaper{}
	s.set(cfg)
	return s
}

// set replaces the config and re-seeds the random source from cfg.Seed.
func (s *shaper) set(cfg LinkConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
	// The second PCG word is a fixed odd constant (the golden ratio) so
	// that small seeds such as 1, 2, 3 give unrelated streams.
	s.rng = rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
}

// config returns the current config.
func (s *shaper) config() LinkConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// next returns the delay for one packet and whether the loss model drops
// it.
func (s *shaper) next() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Loss > 0 && s.rng.Float64() < s.cfg.Loss {
		return 0, true
	}
	d := s.cfg.Delay
	if j := s.cfg.Jitter; j > 0 {
		d += time.Duration(s.rng.Int64N(2*int64(j)+1)) - j
		if d < 0 {
			d = 0
		}
	}
	return d, false
}

// Stats counts what a relay did since it was created.
type Stats struct {
	// Forwarded is the number of datagrams (UDP) or chunks (TCP)
	// delivered in either direction.
	Forwarded uint64
	// Lost is the number of datagrams dropped by the loss model.
	Lost uint64
	// Overflow is the number of datagrams dropped because a delay line
	// was full or the flow table was.
	Overflow uint64
	// SendErrors is the number of datagrams or chunks whose delivery
	// failed (for example, a target port that is not listening).
	SendErrors uint64
	// Flows is the number of UDP flows or TCP connections open now.
	Flows int
}

// counters holds the atomic counters behind Stats.
type counters struct {
	forwarded, lost, overflow, sendErrors atomic.Uint64
}

func (c *counters) snapshot(flows int) Stats {
	return Stats{
		Forwarded:  c.forwarded.Load(),
		Lost:       c.lost.Load(),
		Overflow:   c.overflow.Load(),
		SendErrors: c.sendErrors.Load(),
		Flows:      flows,
	}
}
