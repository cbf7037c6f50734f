package routing

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a manually advanced clock, safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// withdrawAll withdraws until refused (at most limit times) and returns the
// count.
func withdrawAll(b *RetryBudget, limit int) int {
	n := 0
	for n < limit && b.TryWithdraw() {
		n++
	}
	return n
}

func TestRetryBudgetRatio(t *testing.T) {
	tests := []struct {
		ratio    float64
		deposits int
		want     int
	}{
		{0.2, 10, 2},
		{0.2, 14, 2},
		{0.2, 15, 3},
		{0.5, 7, 3},
		{1, 4, 4},
		{3, 2, 6},
		{0, 100, 0},
		{-1, 100, 0},           // clamped to 0
		{math.NaN(), 100, 0},   // clamped to 0
		{0.001, 1000, 1},       // the finest resolution
		{5000, 1, 1000},        // clamped to 1000
		{math.Inf(1), 1, 1000}, // clamped to 1000
	}
	for _, tc := range tests {
		clock := newFakeClock()
		b := NewRetryBudget(tc.ratio, 0, 10*time.Second, clock.Now)
		for range tc.deposits {
			b.Deposit()
		}
		if got := withdrawAll(b, 10000); got != tc.want {
			t.Errorf("ratio %g, %d deposits: %d retries allowed, want %d", tc.ratio, tc.deposits, got, tc.want)
		}
	}
}

func TestRetryBudgetMinPerSecond(t *testing.T) {
	clock := newFakeClock()
	b := NewRetryBudget(0.2, 10, 10*time.Second, clock.Now)
	// No traffic: the reserve allows 10/s × 10 s.
	if got := withdrawAll(b, 1000); got != 100 {
		t.Fatalf("reserve allowed %d retries, want 100", got)
	}
	// Deposits add on top of the reserve.
	for range 10 {
		b.Deposit()
	}
	if got := withdrawAll(b, 1000); got != 2 {
		t.Fatalf("after 10 deposits %d more retries, want 2", got)
	}
	// Once the withdrawals (and deposits) have expired, the reserve is
	// whole again.
	clock.Advance(10 * time.Second)
	if got := withdrawAll(b, 1000); got != 100 {
		t.Fatalf("after the ttl the reserve allowed %d, want 100", got)
	}
	// Negative minPerSecond is clamped to 0.
	if got := withdrawAll(NewRetryBudget(0.2, -5, 10*time.Second, clock.Now), 10); got != 0 {
		t.Fatalf("negative minPerSecond allowed %d retries", got)
	}
}

func TestRetryBudgetExpiry(t *testing.T) {
	clock := newFakeClock()
	b := NewRetryBudget(0.5, 0, 10*time.Second, clock.Now)
	for range 10 {
		b.Deposit() // 5 retries' worth at t = 0
	}
	clock.Advance(8 * time.Second)
	if got := b.Balance(); got != 5 {
		t.Fatalf("balance at 8s = %g, want 5", got)
	}
	// Deposits expire ttl after they were made (to slice precision).
	clock.Advance(2 * time.Second)
	if got := b.Balance(); got != 0 {
		t.Fatalf("balance at 10s = %g, want 0", got)
	}
	if b.TryWithdraw() {
		t.Fatal("withdrew from expired deposits")
	}

	// Withdrawals expire too: spend everything, then wait.
	for range 4 {
		b.Deposit()
	}
	if got := withdrawAll(b, 10); got != 2 {
		t.Fatalf("withdrew %d, want 2", got)
	}
	clock.Advance(5 * time.Second)
	for range 4 {
		b.Deposit()
	}
	if got := withdrawAll(b, 10); got != 2 {
		t.Fatalf("withdrew %d after 5s, want 2", got)
	}
	// A long pause clears the whole window.
	clock.Advance(time.Hour)
	if got := b.Balance(); got != 0 {
		t.Fatalf("balance after an hour = %g, want 0", got)
	}
}

func TestRetryBudgetTTLClamping(t *testing.T) {
	tests := []struct {
		ttl, wantTTL time.Duration
	}{
		{0, DefaultRetryBudgetTTL},
		{-time.Second, DefaultRetryBudgetTTL},
		{100 * time.Millisecond, time.Second},
		{time.Hour, time.Minute},
		{3 * time.Second, 3 * time.Second},
	}
	for _, tc := range tests {
		clock := newFakeClock()
		b := NewRetryBudget(1, 0, tc.ttl, clock.Now)
		b.Deposit()
		// A deposit at the start of a slice lives exactly the ttl.
		clock.Advance(tc.wantTTL - time.Nanosecond)
		if b.Balance() != 1 {
			t.Errorf("ttl %v: deposit gone before %v", tc.ttl, tc.wantTTL)
		}
		clock.Advance(time.Nanosecond)
		if b.Balance() != 0 {
			t.Errorf("ttl %v: deposit alive after %v", tc.ttl, tc.wantTTL)
		}
	}
}

func TestRetryBudgetClockBackwards(t *testing.T) {
	clock := newFakeClock()
	b := NewRetryBudget(1, 0, 10*time.Second, clock.Now)
	clock.Advance(5 * time.Second)
	b.Deposit()
	clock.Advance(-time.Minute)
	if !b.TryWithdraw() {
		t.Fatal("clock step back lost the deposit")
	}
	if b.TryWithdraw() {
		t.Fatal("clock step back created tokens")
	}
}

func TestRetryBudgetNil(t *testing.T) {
	var b *RetryBudget
	b.Deposit()
	for range 100 {
		if !b.TryWithdraw() {
			t.Fatal("nil budget refused")
		}
	}
	if !math.IsInf(b.Balance(), 1) {
		t.Fatalf("nil budget balance %g", b.Balance())
	}
}

func TestRetryBudgetRealClock(t *testing.T) {
	b := NewRetryBudget(1, 0, time.Second, nil)
	b.Deposit()
	if !b.TryWithdraw() || b.TryWithdraw() {
		t.Fatal("time.Now budget: want exactly one retry for one deposit")
	}
}

func TestRetryBudgetConcurrent(t *testing.T) {
	// Run with -race. With a frozen clock the totals are exact.
	clock := newFakeClock()
	b := NewRetryBudget(0.25, 1, time.Second, clock.Now)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				b.Deposit()
			}
		})
	}
	wg.Wait()
	var granted atomic.Int64
	for range 8 {
		wg.Go(func() {
			for range 500 {
				if b.TryWithdraw() {
					granted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// 4000 deposits × 0.25 + 1 reserve.
	if got := granted.Load(); got != 1001 {
		t.Fatalf("granted %d retries, want 1001", got)
	}
}
