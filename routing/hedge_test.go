package routing

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// These tests run inside synctest bubbles: time is virtual (so delays are
// exact and the tests take no wall time), and synctest fails the test if a
// goroutine started in the bubble is still blocked when it ends, which is
// what a leaked attempt would be.

// probe records what happened to one attempt.
type probe struct {
	started  atomic.Bool
	returned atomic.Bool
	canceled atomic.Bool
	startAt  atomic.Int64 // virtual nanoseconds since the test began
}

// attempt returns an attempt that takes d to produce v (or err), unless its
// context is cancelled first.
func (p *probe) attempt(t0 time.Time, d time.Duration, v string, err error) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		p.started.Store(true)
		p.startAt.Store(int64(time.Since(t0)))
		defer p.returned.Store(true)
		select {
		case <-time.After(d):
			return v, err
		case <-ctx.Done():
			p.canceled.Store(true)
			return "", ctx.Err()
		}
	}
}

func TestHedgeFirstWinsNoHedge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var p0, p1 probe
		b := NewRetryBudget(0, 1, time.Second, nil) // one retry available
		v, idx, err := Hedge(context.Background(), 50*time.Millisecond, b,
			p0.attempt(t0, 10*time.Millisecond, "first", nil),
			p1.attempt(t0, 0, "second", nil))
		if err != nil || v != "first" || idx != 0 {
			t.Fatalf("Hedge = %q, %d, %v; want first, 0, nil", v, idx, err)
		}
		if p1.started.Load() {
			t.Fatal("hedge started although the first attempt answered in time")
		}
		if got := time.Since(t0); got != 10*time.Millisecond {
			t.Fatalf("took %v, want 10ms", got)
		}
		if !b.TryWithdraw() {
			t.Fatal("an unused hedge was charged to the budget")
		}
	})
}

func TestHedgeSlowFirstLoserCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var p0, p1 probe
		v, idx, err := Hedge(context.Background(), 50*time.Millisecond, nil,
			p0.attempt(t0, time.Hour, "slow", nil),
			p1.attempt(t0, 10*time.Millisecond, "fast", nil))
		if err != nil || v != "fast" || idx != 1 {
			t.Fatalf("Hedge = %q, %d, %v; want fast, 1, nil", v, idx, err)
		}
		if got := time.Duration(p1.startAt.Load()); got != 50*time.Millisecond {
			t.Fatalf("hedge started at %v, want after the 50ms delay", got)
		}
		if got := time.Since(t0); got != 60*time.Millisecond {
			t.Fatalf("took %v, want 60ms", got)
		}
		// The loser was cancelled and Hedge waited for it to return.
		if !p0.canceled.Load() || !p0.returned.Load() {
			t.Fatalf("loser cancelled=%v returned=%v, want both", p0.canceled.Load(), p0.returned.Load())
		}
	})
}

func TestHedgeFailureStartsNextAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var p0, p1, p2 probe
		boom := errors.New("boom")
		v, idx, err := Hedge(context.Background(), time.Second, nil,
			p0.attempt(t0, 5*time.Millisecond, "", boom),
			p1.attempt(t0, 5*time.Millisecond, "", boom),
			p2.attempt(t0, 5*time.Millisecond, "third", nil))
		if err != nil || v != "third" || idx != 2 {
			t.Fatalf("Hedge = %q, %d, %v; want third, 2, nil", v, idx, err)
		}
		if a, b := time.Duration(p1.startAt.Load()), time.Duration(p2.startAt.Load()); a != 5*time.Millisecond || b != 10*time.Millisecond {
			t.Fatalf("retries started at %v and %v, want 5ms and 10ms (not after the delay)", a, b)
		}
	})
}

func TestHedgeAllFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var p0, p1 probe
		e0, e1 := errors.New("first failed"), errors.New("second failed")
		v, idx, err := Hedge(context.Background(), 10*time.Millisecond, nil,
			p0.attempt(t0, 30*time.Millisecond, "", e0),
			p1.attempt(t0, 30*time.Millisecond, "", e1))
		if v != "" || idx != -1 || err == nil {
			t.Fatalf("Hedge = %q, %d, %v; want an error", v, idx, err)
		}
		if !errors.Is(err, e0) || !errors.Is(err, e1) {
			t.Fatalf("error %q does not wrap both attempt errors", err)
		}
		if !strings.Contains(err.Error(), "attempt 0: first failed") || !strings.Contains(err.Error(), "attempt 1: second failed") {
			t.Fatalf("error %q does not name the attempts", err)
		}
		// It waited for the last one rather than returning at the first
		// failure.
		if got := time.Since(t0); got != 40*time.Millisecond {
			t.Fatalf("took %v, want 40ms", got)
		}
	})
}

func TestHedgeBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		// An empty budget: no hedge, no retry.
		var p0, p1 probe
		empty := NewRetryBudget(0, 0, time.Second, nil)
		_, idx, err := Hedge(context.Background(), 10*time.Millisecond, empty,
			p0.attempt(t0, 50*time.Millisecond, "", errors.New("down")),
			p1.attempt(t0, 0, "never", nil))
		if idx != -1 || !errors.Is(err, ErrBudgetExhausted) {
			t.Fatalf("Hedge = %d, %v; want -1 and ErrBudgetExhausted", idx, err)
		}
		if p1.started.Load() {
			t.Fatal("attempt started without budget")
		}

		// A budget of exactly one extra attempt: of four slow attempts,
		// two run.
		var q [4]probe
		one := NewRetryBudget(0, 1, time.Second, nil)
		attempts := make([]func(context.Context) (string, error), len(q))
		for i := range q {
			attempts[i] = q[i].attempt(t0, time.Hour, "x", nil)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, idx, err = Hedge(ctx, 10*time.Millisecond, one, attempts...)
		if idx != -1 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Hedge = %d, %v; want the deadline", idx, err)
		}
		started := 0
		for i := range q {
			if q[i].started.Load() {
				started++
			}
		}
		if started != 2 {
			t.Fatalf("%d attempts started, want 2 (1 + the budget's 1)", started)
		}
		if one.TryWithdraw() {
			t.Fatal("budget not charged")
		}
	})
}

func TestHedgeContextCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var p0, p1 probe
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(70*time.Millisecond, cancel)
		_, idx, err := Hedge(ctx, 50*time.Millisecond, nil,
			p0.attempt(t0, time.Hour, "", nil),
			p1.attempt(t0, time.Hour, "", nil))
		if idx != -1 || !errors.Is(err, context.Canceled) {
			t.Fatalf("Hedge = %d, %v; want -1, context.Canceled", idx, err)
		}
		if got := time.Since(t0); got != 70*time.Millisecond {
			t.Fatalf("returned after %v, want 70ms", got)
		}
		for i, p := range []*probe{&p0, &p1} {
			if !p.returned.Load() {
				t.Fatalf("attempt %d still running after Hedge returned", i)
			}
		}

		// Already cancelled: nothing starts.
		var p2 probe
		_, idx, err = Hedge(ctx, 0, nil, p2.attempt(t0, 0, "x", nil))
		if idx != -1 || !errors.Is(err, context.Canceled) || p2.started.Load() {
			t.Fatalf("Hedge on a done context = %d, %v, started=%v", idx, err, p2.started.Load())
		}
	})
}

func TestHedgeZeroDelayStartsAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var p [3]probe
		v, idx, err := Hedge(context.Background(), 0, nil,
			p[0].attempt(t0, 30*time.Millisecond, "a", nil),
			p[1].attempt(t0, 20*time.Millisecond, "b", nil),
			p[2].attempt(t0, 10*time.Millisecond, "c", nil))
		if err != nil || v != "c" || idx != 2 {
			t.Fatalf("Hedge = %q, %d, %v; want c, 2", v, idx, err)
		}
		for i := range p {
			if got := p[i].startAt.Load(); got != 0 {
				t.Fatalf("attempt %d started at %v, want 0", i, time.Duration(got))
			}
		}
		if !p[0].canceled.Load() || !p[1].canceled.Load() {
			t.Fatal("losers not cancelled")
		}
	})
}

func TestHedgeBadArguments(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		if _, idx, err := Hedge[int](context.Background(), time.Millisecond, nil); idx != -1 || !errors.Is(err, ErrNoAttempts) {
			t.Fatalf("no attempts: %d, %v", idx, err)
		}
		v, idx, err := Hedge(context.Background(), time.Second, nil,
			nil,
			func(context.Context) (int, error) { return 7, nil })
		if err != nil || v != 7 || idx != 1 {
			t.Fatalf("nil attempt: %d, %d, %v; want 7, 1, nil", v, idx, err)
		}
	})
}

func TestHedgeRealTimeNoLeak(t *testing.T) {
	// The same check with real goroutines and timers, outside a bubble.
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, _, err := Hedge(context.Background(), time.Millisecond, nil,
				func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() },
				func(ctx context.Context) (int, error) { return 1, nil })
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// Goroutines that have returned may take a moment to be reaped.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines before, %d after", before, after)
	}
}
