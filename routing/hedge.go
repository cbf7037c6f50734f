package routing

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNoAttempts is returned by Hedge when it is given no attempts.
var ErrNoAttempts = errors.New("routing: hedge: no attempts")

// ErrBudgetExhausted is joined into Hedge's error when an attempt that could
// have run next was refused by the retry budget.
var ErrBudgetExhausted = errors.New("routing: retry budget exhausted")

// hedgeResult is what one attempt goroutine reports.
type hedgeResult[T any] struct {
	idx int
	val T
	err error
}

// Hedge runs attempts as hedged requests ("The Tail at Scale", Dean and
// Barroso). It starts attempts[0]; whenever the latest attempt has neither
// succeeded nor failed after delay, or as soon as any attempt fails, it
// starts the next one, each after the first only if budget.TryWithdraw
// allows (a nil budget allows all); once the budget refuses, no further
// attempt starts. Attempts run concurrently. A delay of zero or less starts
// them all at once, budget permitting.
//
// Hedge returns the value of the first attempt to succeed and its index in
// attempts. It then cancels the contexts of the attempts still running and
// waits for them to return, so no goroutine outlives the call; attempts must
// therefore honour their context. If every started attempt fails and no
// more may start, Hedge returns index -1 and the attempts' errors joined
// (each prefixed by its index, with ErrBudgetExhausted when the budget
// refused one). If ctx ends first, Hedge cancels and waits for the attempts
// and returns index -1 and ctx.Err() (joined with any attempt errors),
// unless an attempt succeeded in the meantime. A nil attempt fails with an
// error instead of panicking.
//
// Hedge does not Deposit into budget: the caller deposits once per original
// request, however many times it hedges or retries it.
func Hedge[T any](ctx context.Context, delay time.Duration, budget *RetryBudget, attempts ...func(context.Context) (T, error)) (T, int, error) {
	var zero T
	if len(attempts) == 0 {
		return zero, -1, ErrNoAttempts
	}
	if err := ctx.Err(); err != nil {
		return zero, -1, err
	}

	results := make(chan hedgeResult[T], len(attempts))
	cancels := make([]context.CancelFunc, 0, len(attempts))
	running, next := 0, 0
	launch := func() {
		i := next
		next++
		running++
		actx, cancel := context.WithCancel(ctx)
		cancels = append(cancels, cancel)
		go func() {
			r := hedgeResult[T]{idx: i}
			if attempts[i] == nil {
				r.err = errors.New("nil attempt")
			} else {
				r.val, r.err = attempts[i](actx)
			}
			results <- r
		}()
	}
	// stop cancels every attempt and waits for the running ones, returning
	// the first success among them, if any.
	stop := func() (hedgeResult[T], bool) {
		for _, cancel := range cancels {
			cancel()
		}
		var won hedgeResult[T]
		found := false
		for ; running > 0; running-- {
			if r := <-results; r.err == nil && !found {
				won, found = r, true
			}
		}
		return won, found
	}

	var errs []error
	budgetRefused := false
	// tryLaunch starts the next attempt if there is one and the budget
	// allows it.
	tryLaunch := func() bool {
		if next >= len(attempts) || budgetRefused {
			return false
		}
		if !budget.TryWithdraw() {
			budgetRefused = true
			errs = append(errs, fmt.Errorf("attempt %d not started: %w", next, ErrBudgetExhausted))
			return false
		}
		launch()
		return true
	}

	launch()
	timer := time.NewTimer(delay)
	defer timer.Stop()
	timerC := timer.C
	rearm := func() {
		if next >= len(attempts) || budgetRefused {
			timerC = nil
			return
		}
		timer.Reset(delay)
		timerC = timer.C
	}

	for {
		select {
		case r := <-results:
			running--
			if r.err == nil {
				stop()
				return r.val, r.idx, nil
			}
			errs = append(errs, fmt.Errorf("attempt %d: %w", r.idx, r.err))
			if tryLaunch() {
				rearm()
			} else if running == 0 {
				return zero, -1, errors.Join(errs...)
			}
		case <-timerC:
			timerC = nil
			if tryLaunch() {
				rearm()
			}
		case <-ctx.Done():
			if r, ok := stop(); ok {
				return r.val, r.idx, nil
			}
			if len(errs) == 0 {
				return zero, -1, ctx.Err()
			}
			return zero, -1, errors.Join(append([]error{ctx.Err()}, errs...)...)
		}
	}
}
