package federated

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// A round's collection of client updates: which updates count, which are
// rejected and why, and when there are enough. Pure: the coordinator
// feeds it the updates it decodes and asks it when to aggregate.

// Reasons an update is rejected; each is counted, none is aggregated.
const (
	RejectMalformed  = "malformed"    // wrong length, non-finite values, bad sample count
	RejectStale      = "stale"        // another round or another base version
	RejectDuplicate  = "duplicate"    // the client already sent one
	RejectOutOfRange = "out-of-range" // L2 norm or a value beyond the bounds
	RejectNotSampled = "not-sampled"  // the client was not asked
	RejectLate       = "late"         // after the round closed
)

// ErrRejected wraps every rejection.
var ErrRejected = errors.New("update rejected")

// RejectError says why an update was rejected.
type RejectError struct {
	Reason string
	Client string
	Detail string
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("%v: %s from %q: %s", ErrRejected, e.Reason, e.Client, e.Detail)
}

func (e *RejectError) Unwrap() error { return ErrRejected }

// CollectorConfig describes the round the updates are for.
type CollectorConfig struct {
	Round, BaseVersion string
	Clients            []string // sampled
	NumParams          int
	// MaxNorm bounds an update's L2 norm (0: no bound); MaxAbs bounds
	// each value (default 1e4); MaxSamples bounds a client's sample count
	// (default 1e7).
	MaxNorm    float64
	MaxAbs     float64
	MaxSamples int
}

// Collector gathers one round's updates.
type Collector struct {
	cfg      CollectorConfig
	sampled  map[string]bool
	updates  []Update
	seen     map[string]bool
	closed   bool
	rejected map[string]int
}

// NewCollector starts collecting for a round.
func NewCollector(cfg CollectorConfig) (*Collector, error) {
	if cfg.Round == "" || cfg.BaseVersion == "" || len(cfg.Clients) == 0 || cfg.NumParams <= 0 {
		return nil, errors.New("collector: round, base version, clients and parameter count are required")
	}
	if cfg.MaxAbs == 0 {
		cfg.MaxAbs = 1e4
	}
	if cfg.MaxSamples == 0 {
		cfg.MaxSamples = 10_000_000
	}
	c := &Collector{cfg: cfg, sampled: map[string]bool{}, seen: map[string]bool{}, rejected: map[string]int{}}
	for _, id := range cfg.Clients {
		c.sampled[id] = true
	}
	return c, nil
}

// Offer checks one update and keeps it, or rejects it with a reason
// (counted in Rejected). The delta is kept as given: do not reuse it.
func (c *Collector) Offer(round, baseVersion string, u Update) error {
	reject := func(reason, f string, a ...any) error {
		c.rejected[reason]++
		return &RejectError{Reason: reason, Client: u.Client, Detail: fmt.Sprintf(f, a...)}
	}
	switch {
	case round != c.cfg.Round:
		return reject(RejectStale, "for round %q, this is %q", round, c.cfg.Round)
	case baseVersion != c.cfg.BaseVersion:
		return reject(RejectStale, "trained from version %q, the round's base is %q", baseVersion, c.cfg.BaseVersion)
	case c.closed:
		return reject(RejectLate, "the round closed")
	case !c.sampled[u.Client]:
		return reject(RejectNotSampled, "the client was not sampled for this round")
	case c.seen[u.Client]:
		return reject(RejectDuplicate, "the client already sent an update")
	case len(u.Delta) != c.cfg.NumParams:
		return reject(RejectMalformed, "%d parameters, the model has %d", len(u.Delta), c.cfg.NumParams)
	case u.Samples <= 0 || u.Samples > c.cfg.MaxSamples:
		return reject(RejectMalformed, "sample count %d (want 1..%d)", u.Samples, c.cfg.MaxSamples)
	}
	var sq float64
	for i, x := range u.Delta {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return reject(RejectMalformed, "parameter %d is %v", i, x)
		}
		if math.Abs(f) > c.cfg.MaxAbs {
			return reject(RejectOutOfRange, "parameter %d is %v, beyond ±%v", i, x, c.cfg.MaxAbs)
		}
		sq += f * f
	}
	if c.cfg.MaxNorm > 0 && math.Sqrt(sq) > c.cfg.MaxNorm {
		return reject(RejectOutOfRange, "L2 norm %.4g exceeds %.4g", math.Sqrt(sq), c.cfg.MaxNorm)
	}
	c.seen[u.Client] = true
	c.updates = append(c.updates, u)
	return nil
}

// Close stops accepting updates (aggregation starts).
func (c *Collector) Close() { c.closed = true }

// Count is how many updates were accepted.
func (c *Collector) Count() int { return len(c.updates) }

// Updates returns the accepted updates.
func (c *Collector) Updates() []Update { return c.updates }

// Rejected returns the rejection counts by reason.
func (c *Collector) Rejected() map[string]int {
	out := make(map[string]int, len(c.rejected))
	for k, v := range c.rejected {
		out[k] = v
	}
	return out
}

// Stragglers lists the sampled clients that sent nothing accepted.
func (c *Collector) Stragglers() []string {
	var out []string
	for _, id := range c.cfg.Clients {
		if !c.seen[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Samples is the total sample count of the accepted updates.
func (c *Collector) Samples() int {
	n := 0
	for _, u := range c.updates {
		n += u.Samples
	}
	return n
}
