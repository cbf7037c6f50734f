package routing

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestLatencyTrackerWarmUp(t *testing.T) {
	tr := NewLatencyTracker(100)
	for i := range MinLatencySamples - 1 {
		tr.Observe(time.Duration(i+1) * time.Millisecond)
		if _, ok := tr.Quantile(0.5); ok {
			t.Fatalf("answered with %d samples, want at least %d", i+1, MinLatencySamples)
		}
	}
	tr.Observe(time.Second)
	if _, ok := tr.Quantile(0.5); !ok {
		t.Fatalf("no answer with %d samples", MinLatencySamples)
	}
	// A window smaller than MinLatencySamples warms up when full.
	small := NewLatencyTracker(5)
	for i := range 5 {
		if _, ok := small.Quantile(0.5); ok {
			t.Fatalf("size-5 tracker answered with %d samples", i)
		}
		small.Observe(time.Millisecond)
	}
	if _, ok := small.Quantile(0.5); !ok {
		t.Fatal("full size-5 tracker did not answer")
	}
}

func TestLatencyTrackerQuantile(t *testing.T) {
	tr := NewLatencyTracker(100)
	// 1..100 ms, in a scrambled order.
	for i := range 100 {
		tr.Observe(time.Duration((i*37)%100+1) * time.Millisecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 1 * time.Millisecond},
		{0.01, 1 * time.Millisecond},
		{0.011, 2 * time.Millisecond},
		{0.5, 50 * time.Millisecond},
		{0.95, 95 * time.Millisecond},
		{0.999, 100 * time.Millisecond},
		{1, 100 * time.Millisecond},
	}
	for _, tc := range tests {
		got, ok := tr.Quantile(tc.q)
		if !ok || got != tc.want {
			t.Errorf("Quantile(%g) = %v, %v; want %v", tc.q, got, ok, tc.want)
		}
	}
	for _, q := range []float64{-0.1, 1.01, math.NaN(), math.Inf(1)} {
		if got, ok := tr.Quantile(q); ok {
			t.Errorf("Quantile(%g) = %v, true; want false", q, got)
		}
	}
}

func TestLatencyTrackerWindow(t *testing.T) {
	tr := NewLatencyTracker(50)
	for range 50 {
		tr.Observe(time.Second) // old, slow regime
	}
	for range 50 {
		tr.Observe(10 * time.Millisecond) // new, fast regime
	}
	if got, _ := tr.Quantile(1); got != 10*time.Millisecond {
		t.Fatalf("max after the window turned over = %v, want 10ms", got)
	}
	if tr.Len() != 50 {
		t.Fatalf("Len = %d, want 50", tr.Len())
	}
	tr.Observe(-time.Second)
	if got, _ := tr.Quantile(0); got != 10*time.Millisecond || tr.Len() != 50 {
		t.Fatalf("negative observation was recorded: min %v", got)
	}
	if got := cap(NewLatencyTracker(0).samples); got != DefaultLatencyWindow {
		t.Fatalf("default window %d, want %d", got, DefaultLatencyWindow)
	}
}

func TestHedgeDelay(t *testing.T) {
	warm := NewLatencyTracker(100)
	for i := range 100 {
		warm.Observe(time.Duration(i+1) * time.Millisecond)
	}
	cold := NewLatencyTracker(100)
	tests := []struct {
		name     string
		tr       *LatencyTracker
		q        float64
		min, max time.Duration
		want     time.Duration
		wantOK   bool
	}{
		{"p95", warm, 0.95, time.Millisecond, time.Second, 95 * time.Millisecond, true},
		{"clamped up", warm, 0.5, 80 * time.Millisecond, time.Second, 80 * time.Millisecond, true},
		{"clamped down", warm, 0.95, 0, 20 * time.Millisecond, 20 * time.Millisecond, true},
		{"cold", cold, 0.95, time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond, false},
		{"nil", nil, 0.95, time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond, false},
		{"bad q", warm, 2, time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond, false},
		{"max below min", warm, 0.95, 200 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, true},
		{"negative min", warm, 0, -time.Second, time.Second, time.Millisecond, true},
	}
	for _, tc := range tests {
		got, ok := HedgeDelay(tc.tr, tc.q, tc.min, tc.max)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: HedgeDelay = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestLatencyTrackerConcurrent(t *testing.T) {
	// Run with -race.
	tr := NewLatencyTracker(64)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				tr.Observe(time.Duration(g*1000+i) * time.Microsecond)
				_, _ = tr.Quantile(0.9)
			}
		})
	}
	wg.Wait()
	if tr.Len() != 64 {
		t.Fatalf("Len = %d, want 64", tr.Len())
	}
}
