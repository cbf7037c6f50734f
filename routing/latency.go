package routing

import (
	"math"
	"slices"
	"sync"
	"time"
)

const (
	// DefaultLatencyWindow is the window size NewLatencyTracker uses when
	// given none.
	DefaultLatencyWindow = 1024

	// MinLatencySamples is how many observations a LatencyTracker needs
	// before Quantile answers (or its whole window, if smaller). With fewer,
	// a tail quantile is one or two outliers, and hedging on it would fire
	// either on every request or never.
	MinLatencySamples = 20
)

// LatencyTracker keeps the latest latencies of some operation in a bounded
// window and answers quantiles over them, to derive hedging delays. It is
// safe for concurrent use.
type LatencyTracker struct {
	mu      sync.Mutex
	samples []time.Duration // ring of up to cap(samples) entries
	next    int             // where the next sample goes once full
}

// NewLatencyTracker returns a tracker keeping the latest size observations
// (DefaultLatencyWindow when size < 1).
func NewLatencyTracker(size int) *LatencyTracker {
	if size < 1 {
		size = DefaultLatencyWindow
	}
	return &LatencyTracker{samples: make([]time.Duration, 0, size)}
}

// Observe records one latency. Negative durations (a clock step) are
// ignored.
func (t *LatencyTracker) Observe(d time.Duration) {
	if d < 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.samples) < cap(t.samples) {
		t.samples = append(t.samples, d)
		return
	}
	t.samples[t.next] = d
	t.next = (t.next + 1) % len(t.samples)
}

// Len returns the number of observations in the window.
func (t *LatencyTracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.samples)
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of the observations in the
// window by the nearest-rank method: the smallest observation such that at
// least a fraction q of the observations are not larger (the minimum for
// q = 0). It reports false, with zero, while the window holds fewer than
// min(MinLatencySamples, size) observations or if q is outside [0, 1].
func (t *LatencyTracker) Quantile(q float64) (time.Duration, bool) {
	if !(q >= 0 && q <= 1) { // also NaN
		return 0, false
	}
	t.mu.Lock()
	if len(t.samples) < min(MinLatencySamples, cap(t.samples)) {
		t.mu.Unlock()
		return 0, false
	}
	sorted := slices.Clone(t.samples)
	t.mu.Unlock()
	slices.Sort(sorted)
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank-1, 0)], true
}

// HedgeDelay returns how long to wait before hedging a request: the
// q-quantile of t (q = 0.95 hedges the slowest 5 %, adding about 5 % load),
// clamped to [min, max]. A negative min counts as zero and a max below min
// as min. While t cannot answer (nil, not enough samples, q outside
// [0, 1]), it returns max and false: the caller may hedge conservatively at
// max or not at all.
func HedgeDelay(t *LatencyTracker, q float64, min, max time.Duration) (time.Duration, bool) {
	if min < 0 {
		min = 0
	}
	if max < min {
		max = min
	}
	if t == nil {
		return max, false
	}
	d, ok := t.Quantile(q)
	if !ok {
		return max, false
	}
	return clampDuration(d, min, max), true
}

// clampDuration returns d limited to [lo, hi].
func clampDuration(d, lo, hi time.Duration) time.Duration {
	if d < lo {
		return lo
	}
	if d > hi {
		return hi
	}
	return d
}
