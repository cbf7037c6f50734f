package routing

import (
	"math"
	"sync"
	"time"
)

// Defaults and limits of RetryBudget, those of Finagle's RetryBudget.
const (
	// DefaultRetryRatio lets retries and hedges add up to 20 % to the
	// original requests.
	DefaultRetryRatio = 0.2
	// DefaultRetryMinPerSecond is the retry rate always allowed, however few
	// the requests, so that a quiet client can still retry.
	DefaultRetryMinPerSecond = 10
	// DefaultRetryBudgetTTL is how long a deposit counts.
	DefaultRetryBudgetTTL = 10 * time.Second

	// minRetryBudgetTTL and maxRetryBudgetTTL bound the TTL.
	minRetryBudgetTTL = time.Second
	maxRetryBudgetTTL = time.Minute
	// maxRetryRatio bounds the ratio.
	maxRetryRatio = 1000.0

	// budgetSlices is the number of slices of the sliding window; deposits
	// expire between (1 − 1/budgetSlices)·ttl and ttl after they are made.
	budgetSlices = 10
	// tokensPerRetry is the fixed-point scale: a retry costs this many
	// tokens and a deposit earns ratio × this many.
	tokensPerRetry = 1000
)

// RetryBudget limits retries and hedges to a fraction of the original
// requests, as Finagle's and Linkerd's retry budgets do. A fixed "retry on
// failure up to N times" policy multiplies the load on an already failing
// backend by N+1 and turns a brownout into an outage; a budget caps the
// extra load at ratio.
//
// Every original request deposits ratio of a retry; every retry or hedge
// withdraws one, if the balance allows. Deposits and withdrawals expire after
// ttl (a sliding window of budgetSlices slices), and a constant reserve of
// minPerSecond × ttl retries lets a quiet client retry at minPerSecond per
// second regardless of its traffic.
//
// A RetryBudget is safe for concurrent use. The methods of a nil
// *RetryBudget allow everything: Deposit does nothing and TryWithdraw always
// succeeds.
type RetryBudget struct {
	mu      sync.Mutex
	now     func() time.Time
	start   time.Time
	slice   time.Duration
	deposit int64 // tokens earned per Deposit
	reserve int64 // constant tokens from minPerSecond
	buckets [budgetSlices]int64
	current int64 // index of the slice the last operation fell in
}

// NewRetryBudget returns a budget that allows retries of up to ratio of the
// requests deposited in the last ttl, plus minPerSecond retries per second.
// Out-of-range arguments are clamped rather than rejected, so a budget always
// exists: a negative or NaN ratio becomes 0 and one above 1000 becomes 1000
// (the ratio has a resolution of 0.001); a negative minPerSecond becomes 0; a
// ttl of zero or less becomes DefaultRetryBudgetTTL, and others are clamped
// to [1 s, 1 min]. now is the clock (nil means time.Now).
func NewRetryBudget(ratio float64, minPerSecond int, ttl time.Duration, now func() time.Time) *RetryBudget {
	if now == nil {
		now = time.Now
	}
	if !(ratio > 0) { // also NaN
		ratio = 0
	}
	ratio = math.Min(ratio, maxRetryRatio)
	minPerSecond = max(minPerSecond, 0)
	if ttl <= 0 {
		ttl = DefaultRetryBudgetTTL
	}
	ttl = min(max(ttl, minRetryBudgetTTL), maxRetryBudgetTTL)
	// Cap the reserve far below overflow; it is unlimited in practice.
	reserve := math.Min(math.Round(float64(minPerSecond)*ttl.Seconds())*tokensPerRetry, math.MaxInt64/4)
	return &RetryBudget{
		now:     now,
		start:   now(),
		slice:   ttl / budgetSlices,
		deposit: int64(math.Round(ratio * tokensPerRetry)),
		reserve: int64(reserve),
	}
}

// advance moves the window to the slice containing now, clearing the slices
// that expired. A clock that goes backwards leaves the window where it is.
// The caller holds the lock.
func (b *RetryBudget) advance() {
	idx := int64(b.now().Sub(b.start) / b.slice)
	if idx <= b.current {
		return
	}
	for i, n := b.current+1, int64(0); i <= idx && n < budgetSlices; i, n = i+1, n+1 {
		b.buckets[i%budgetSlices] = 0
	}
	b.current = idx
}

// balance returns the tokens available. The caller holds the lock and has
// called advance.
func (b *RetryBudget) balance() int64 {
	sum := b.reserve
	for _, v := range b.buckets {
		sum += v
	}
	return sum
}

// Deposit records one original request. Call it once per request, not per
// attempt.
func (b *RetryBudget) Deposit() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	b.buckets[b.current%budgetSlices] += b.deposit
}

// TryWithdraw reports whether one retry or hedge may be sent now and, if so,
// charges it to the budget.
func (b *RetryBudget) TryWithdraw() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	if b.balance() < tokensPerRetry {
		return false
	}
	b.buckets[b.current%budgetSlices] -= tokensPerRetry
	return true
}

// Balance returns the number of retries the budget would allow now, for
// metrics. It may be fractional, and negative when withdrawals outlive the
// deposits that paid for them.
func (b *RetryBudget) Balance() float64 {
	if b == nil {
		return math.Inf(1)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	return float64(b.balance()) / tokensPerRetry
}
