package node

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/routing"
)

// TestRaceBudgets: a failed first attempt fails over within the retry
// budget even when the hedge budget is spent, and no hedge starts without
// hedge budget.
func TestRaceBudgets(t *testing.T) {
	ok := &relayed{status: 200}
	boom := errors.New("peer down")
	newF := func(retries, hedges *routing.RetryBudget) *forwarder {
		return &forwarder{budget: retries, hedges: hedges, latency: routing.NewLatencyTracker(8)}
	}
	none := func() *routing.RetryBudget { return routing.NewRetryBudget(0, 0, time.Second, nil) }
	plenty := func() *routing.RetryBudget { return routing.NewRetryBudget(0.5, 100, time.Second, nil) }
	var calls [2]atomic.Int64
	fail := func(ctx context.Context) (*relayed, error) { calls[0].Add(1); return nil, boom }
	slowOK := func(ctx context.Context) (*relayed, error) {
		calls[0].Add(1)
		select {
		case <-time.After(100 * time.Millisecond):
			return ok, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	second := func(ctx context.Context) (*relayed, error) { calls[1].Add(1); return ok, nil }
	reset := func() { calls[0].Store(0); calls[1].Store(0) }

	// Failover with the hedge budget spent.
	reset()
	a, err := newF(plenty(), none()).race(context.Background(), []func(context.Context) (*relayed, error){fail, second})
	if err != nil || a != ok || calls[1].Load() != 1 {
		t.Errorf("failover without hedge budget: %v %v, second called %d times", a, err, calls[1].Load())
	}
	// No hedge without hedge budget: the slow first attempt answers.
	reset()
	a, err = newF(plenty(), none()).race(context.Background(), []func(context.Context) (*relayed, error){slowOK, second})
	if err != nil || a != ok || calls[1].Load() != 0 {
		t.Errorf("no hedge budget: %v %v, second called %d times", a, err, calls[1].Load())
	}
	// With hedge budget the second copy starts (after the default 50 ms
	// delay, no latencies observed yet) and wins.
	reset()
	a, err = newF(plenty(), plenty()).race(context.Background(), []func(context.Context) (*relayed, error){slowOK, second})
	if err != nil || a != ok || calls[1].Load() != 1 {
		t.Errorf("hedge: %v %v, second called %d times", a, err, calls[1].Load())
	}
	// No retry budget: the failure is final.
	reset()
	_, err = newF(none(), none()).race(context.Background(), []func(context.Context) (*relayed, error){fail, second})
	if !errors.Is(err, boom) || calls[1].Load() != 0 {
		t.Errorf("no retry budget: %v, second called %d times", err, calls[1].Load())
	}
}
