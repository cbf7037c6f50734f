package routing

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of BreakerConfig.
const (
	// DefaultFailureThreshold is the default BreakerConfig.FailureThreshold.
	DefaultFailureThreshold = 5
	// DefaultOpenFor is the default BreakerConfig.OpenFor.
	DefaultOpenFor = 5 * time.Second
	// DefaultHalfOpenProbes is the default BreakerConfig.HalfOpenProbes.
	DefaultHalfOpenProbes = 1
)

// BreakerConfig configures a CircuitBreaker. Zero (or negative) fields take
// their defaults.
type BreakerConfig struct {
	// FailureThreshold is the number of consecutive failures that opens the
	// breaker. Default DefaultFailureThreshold.
	FailureThreshold int
	// OpenFor is how long the breaker stays open before letting probes
	// through. Default DefaultOpenFor.
	OpenFor time.Duration
	// HalfOpenProbes is the number of probe requests let through when half
	// open; that many successes close the breaker. Default
	// DefaultHalfOpenProbes.
	HalfOpenProbes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// BreakerState is the state of a CircuitBreaker.
type BreakerState int

const (
	// BreakerClosed lets every request through and counts failures.
	BreakerClosed BreakerState = iota
	// BreakerOpen refuses every request until OpenFor has passed.
	BreakerOpen
	// BreakerHalfOpen lets up to HalfOpenProbes requests through to test the
	// dependency.
	BreakerHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	default:
		return "BreakerState(" + strconv.Itoa(int(s)) + ")"
	}
}

// CircuitBreaker stops calls to a dependency that keeps failing, so that the
// caller fails fast instead of queueing behind timeouts, and the dependency
// gets room to recover.
//
// Closed, it lets everything through; FailureThreshold failures in a row open
// it. Open, it refuses everything for OpenFor, then turns half-open. Half
// open, it lets HalfOpenProbes requests through: as many successes close it,
// any failure opens it again for another OpenFor. If the probes never report
// (a caller lost its done func), the half-open round is restarted after
// OpenFor, so the breaker cannot wedge.
//
// Each admitted request must report its outcome by calling the done func
// returned by Allow exactly once; extra calls are ignored, and so are
// outcomes of requests admitted before the last state change (a slow
// request admitted while closed does not decide a half-open round). A
// CircuitBreaker is safe for concurrent use.
type CircuitBreaker struct {
	mu             sync.Mutex
	cfg            BreakerConfig
	state          BreakerState
	generation     uint64    // bumped on every state change
	since          time.Time // when the current state (or half-open round) began
	failures       int       // consecutive failures while closed
	probes         int       // probes admitted in this half-open round
	probeSuccesses int       // probe successes in this half-open round
}

// NewCircuitBreaker returns a closed breaker with cfg, defaults filled in.
func NewCircuitBreaker(cfg BreakerConfig) *CircuitBreaker {
	if cfg.FailureThreshold <= 0 {
		cfg.FailureThreshold = DefaultFailureThreshold
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = DefaultOpenFor
	}
	if cfg.HalfOpenProbes <= 0 {
		cfg.HalfOpenProbes = DefaultHalfOpenProbes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &CircuitBreaker{cfg: cfg, state: BreakerClosed, since: cfg.Now()}
}

// setState moves to s, invalidating outstanding done funcs. The caller holds
// the lock.
func (b *CircuitBreaker) setState(s BreakerState, now time.Time) {
	b.state = s
	b.generation++
	b.since = now
	b.failures, b.probes, b.probeSuccesses = 0, 0, 0
}

// refresh applies the transitions that happen with time: open to half-open
// after OpenFor, and a restart of a half-open round whose probes have not
// all reported within OpenFor. The caller holds the lock.
func (b *CircuitBreaker) refresh(now time.Time) {
	if (b.state == BreakerOpen || b.state == BreakerHalfOpen) && now.Sub(b.since) >= b.cfg.OpenFor {
		b.setState(BreakerHalfOpen, now)
	}
}

// State returns the current state.
func (b *CircuitBreaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refresh(b.cfg.Now())
	return b.state
}

// Allow reports whether a request may be sent now. If ok, the caller must
// call done once with the request's outcome. If not, done is a no-op, so
// calling it is harmless.
func (b *CircuitBreaker) Allow() (done func(success bool), ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refresh(b.cfg.Now())
	switch b.state {
	case BreakerClosed:
	case BreakerHalfOpen:
		if b.probes >= b.cfg.HalfOpenProbes {
			return func(bool) {}, false
		}
		b.probes++
	default:
		return func(bool) {}, false
	}
	gen := b.generation
	var once atomic.Bool
	return func(success bool) {
		if once.Swap(true) {
			return
		}
		b.report(gen, success)
	}, true
}

// report records the outcome of a request admitted in generation gen.
func (b *CircuitBreaker) report(gen uint64, success bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	b.refresh(now)
	if gen != b.generation {
		return
	}
	switch b.state {
	case BreakerClosed:
		if success {
			b.failures = 0
			return
		}
		b.failures++
		if b.failures >= b.cfg.FailureThreshold {
			b.setState(BreakerOpen, now)
		}
	case BreakerHalfOpen:
		if !success {
			b.setState(BreakerOpen, now)
			return
		}
		b.probeSuccesses++
		if b.probeSuccesses >= b.cfg.HalfOpenProbes {
			b.setState(BreakerClosed, now)
		}
	}
}
