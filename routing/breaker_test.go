package routing

import (
	"sync"
	"testing"
	"time"
)

func newTestBreaker(clock *fakeClock, probes int) *CircuitBreaker {
	return NewCircuitBreaker(BreakerConfig{
		FailureThreshold: 3,
		OpenFor:          5 * time.Second,
		HalfOpenProbes:   probes,
		Now:              clock.Now,
	})
}

// call runs one request through b with the given outcome and reports
// whether it was admitted.
func call(b *CircuitBreaker, success bool) bool {
	done, ok := b.Allow()
	done(success)
	return ok
}

func wantState(t *testing.T, b *CircuitBreaker, want BreakerState) {
	t.Helper()
	if got := b.State(); got != want {
		t.Fatalf("state %v, want %v", got, want)
	}
}

func TestBreakerOpensOnConsecutiveFailures(t *testing.T) {
	clock := newFakeClock()
	b := newTestBreaker(clock, 1)
	wantState(t, b, BreakerClosed)
	call(b, false)
	call(b, false)
	call(b, true) // resets the run
	call(b, false)
	call(b, false)
	wantState(t, b, BreakerClosed)
	if !call(b, false) {
		t.Fatal("closed breaker refused")
	}
	wantState(t, b, BreakerOpen)
	done, ok := b.Allow()
	if ok {
		t.Fatal("open breaker admitted a request")
	}
	done(true) // a no-op, not a panic
	wantState(t, b, BreakerOpen)
}

func TestBreakerHalfOpenRecovers(t *testing.T) {
	clock := newFakeClock()
	b := newTestBreaker(clock, 1)
	for range 3 {
		call(b, false)
	}
	clock.Advance(5*time.Second - time.Nanosecond)
	wantState(t, b, BreakerOpen)
	clock.Advance(time.Nanosecond)
	wantState(t, b, BreakerHalfOpen)

	probe, ok := b.Allow()
	if !ok {
		t.Fatal("half-open breaker refused the probe")
	}
	if _, ok := b.Allow(); ok {
		t.Fatal("half-open breaker admitted a second concurrent probe")
	}
	probe(true)
	wantState(t, b, BreakerClosed)
	// Closed again with a fresh failure count.
	call(b, false)
	call(b, false)
	wantState(t, b, BreakerClosed)
}

func TestBreakerHalfOpenFailureReopens(t *testing.T) {
	clock := newFakeClock()
	b := newTestBreaker(clock, 1)
	for range 3 {
		call(b, false)
	}
	clock.Advance(5 * time.Second)
	if !call(b, false) {
		t.Fatal("probe refused")
	}
	wantState(t, b, BreakerOpen)
	// The new open period starts at the failed probe.
	clock.Advance(5*time.Second - time.Nanosecond)
	wantState(t, b, BreakerOpen)
	clock.Advance(time.Nanosecond)
	wantState(t, b, BreakerHalfOpen)
}

func TestBreakerSeveralProbes(t *testing.T) {
	clock := newFakeClock()
	b := newTestBreaker(clock, 3)
	for range 3 {
		call(b, false)
	}
	clock.Advance(5 * time.Second)
	var probes []func(bool)
	for range 3 {
		done, ok := b.Allow()
		if !ok {
			t.Fatal("probe refused")
		}
		probes = append(probes, done)
	}
	if _, ok := b.Allow(); ok {
		t.Fatal("fourth probe admitted")
	}
	probes[0](true)
	probes[1](true)
	wantState(t, b, BreakerHalfOpen)
	probes[2](true)
	wantState(t, b, BreakerClosed)
}

func TestBreakerIgnoresStaleAndRepeatedReports(t *testing.T) {
	clock := newFakeClock()
	b := newTestBreaker(clock, 1)
	slow, ok := b.Allow() // admitted while closed
	if !ok {
		t.Fatal("refused")
	}
	for range 3 {
		call(b, false)
	}
	wantState(t, b, BreakerOpen)
	clock.Advance(5 * time.Second)
	probe, _ := b.Allow()
	// The slow request from the closed era reports success: it must not
	// close the breaker on the probe's behalf.
	slow(true)
	wantState(t, b, BreakerHalfOpen)
	probe(true)
	wantState(t, b, BreakerClosed)

	// A done called twice counts once.
	done, _ := b.Allow()
	done(false)
	done(false)
	done(false)
	call(b, false)
	wantState(t, b, BreakerClosed) // 2 failures, threshold 3
	call(b, false)
	wantState(t, b, BreakerOpen)
}

func TestBreakerLostProbeDoesNotWedge(t *testing.T) {
	clock := newFakeClock()
	b := newTestBreaker(clock, 1)
	for range 3 {
		call(b, false)
	}
	clock.Advance(5 * time.Second)
	lost, ok := b.Allow() // never reports in time
	if !ok {
		t.Fatal("probe refused")
	}
	if _, ok := b.Allow(); ok {
		t.Fatal("second probe admitted")
	}
	clock.Advance(5 * time.Second)
	probe, ok := b.Allow()
	if !ok {
		t.Fatal("half-open round not restarted after a lost probe")
	}
	lost(false) // late, from the previous round: ignored
	wantState(t, b, BreakerHalfOpen)
	probe(true)
	wantState(t, b, BreakerClosed)
}

func TestBreakerDefaultsAndStrings(t *testing.T) {
	b := NewCircuitBreaker(BreakerConfig{FailureThreshold: -1})
	if b.cfg.FailureThreshold != DefaultFailureThreshold || b.cfg.OpenFor != DefaultOpenFor ||
		b.cfg.HalfOpenProbes != DefaultHalfOpenProbes || b.cfg.Now == nil {
		t.Fatalf("defaults not applied: %+v", b.cfg)
	}
	for range DefaultFailureThreshold - 1 {
		call(b, false)
	}
	wantState(t, b, BreakerClosed)
	call(b, false)
	wantState(t, b, BreakerOpen)

	for s, want := range map[BreakerState]string{
		BreakerClosed: "closed", BreakerOpen: "open", BreakerHalfOpen: "half-open", BreakerState(7): "BreakerState(7)",
	} {
		if got := s.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}

func TestBreakerConcurrent(t *testing.T) {
	// Run with -race.
	clock := newFakeClock()
	b := newTestBreaker(clock, 2)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				if done, ok := b.Allow(); ok {
					done((i+g)%4 != 0)
				}
				_ = b.State()
				if i%50 == 0 {
					clock.Advance(time.Second)
				}
			}
		})
	}
	wg.Wait()
	// Whatever state the storm left behind is consistent: after OpenFor,
	// successes close it.
	clock.Advance(5 * time.Second)
	for range 2 {
		if !call(b, true) {
			t.Fatalf("refused in state %v after OpenFor", b.State())
		}
	}
	wantState(t, b, BreakerClosed)
}
