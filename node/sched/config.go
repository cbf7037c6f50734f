package sched

import (
	"errors"
	"fmt"
	"time"
)

// Defaults applied by New to zero-valued Config fields.
const (
	// DefaultConcurrency is the number of executions in flight at once
	// when Config.Concurrency is 0.
	DefaultConcurrency = 1
	// DefaultMaxQueueSize bounds the waiting requests when
	// Config.MaxQueueSize is 0.
	DefaultMaxQueueSize = 1024
)

// Config tunes one Scheduler. The zero value is valid: no batching, one
// execution at a time, DefaultMaxQueueSize waiting requests, no default
// timeout.
type Config struct {
	// MaxBatchSize is the most rows (dim 0) one batched execution carries.
	// 0 or 1 disables batching. A single request with more rows than
	// MaxBatchSize is not rejected: it runs alone, unbatched.
	MaxBatchSize int
	// MaxQueueDelay is how long the oldest queued request may wait for
	// others to batch with. 0 means never wait: dispatch as soon as an
	// execution slot is free, batching only what queued up meanwhile.
	// Ignored when batching is disabled.
	MaxQueueDelay time.Duration
	// PreferredBatchSizes, in rows, dispatch a batch as soon as the queued
	// compatible requests (taken oldest first) add up to one of them,
	// without waiting for MaxQueueDelay. Each must be in [1, MaxBatchSize].
	PreferredBatchSizes []int
	// MaxQueueSize is how many requests may wait (not executing); beyond it
	// Submit fails with ErrQueueFull. 0 means DefaultMaxQueueSize.
	MaxQueueSize int
	// LoadDelay is MaxQueueDelay for a busy scheduler only: when the last
	// execution carried more than one request, or requests were left
	// waiting when it started, a batch may wait up to LoadDelay, or the
	// recent average execution time if that is longer (capped at
	// MaxLoadDelay), after its oldest request for others to join. An idle scheduler (single
	// requests, nothing waiting) never waits, so a lone client pays no
	// delay while a loaded model gets larger batches. It applies when
	// MaxQueueDelay is 0; 0 disables it.
	LoadDelay time.Duration
	// InlineWhenIdle lets Submit run a request on the caller's goroutine
	// when nothing is queued and a slot is free (and there is no delay to
	// batch under), saving the hand-off to a worker goroutine. The price:
	// such a caller returns when the executor returns, so the executor
	// must honour ctx promptly (models/ort does, by terminating the run);
	// with an executor that ignores ctx, a deadline or Close no longer
	// releases that caller early.
	InlineWhenIdle bool
	// Concurrency is how many executions may be in flight at once.
	// 0 means DefaultConcurrency.
	Concurrency int
	// DefaultTimeout bounds a request whose context has no deadline.
	// 0 means none.
	DefaultTimeout time.Duration
}

// Validate reports every field that is out of range, joined in one error.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBatchSize < 0 {
		errs = append(errs, fmt.Errorf("max batch size %d: must be >= 0", c.MaxBatchSize))
	}
	if c.MaxQueueDelay < 0 {
		errs = append(errs, fmt.Errorf("max queue delay %v: must be >= 0", c.MaxQueueDelay))
	}
	for _, n := range c.PreferredBatchSizes {
		if c.MaxBatchSize <= 1 {
			errs = append(errs, fmt.Errorf("preferred batch sizes %v: batching is disabled (max batch size %d)", c.PreferredBatchSizes, c.MaxBatchSize))
			break
		}
		if n < 1 || n > c.MaxBatchSize {
			errs = append(errs, fmt.Errorf("preferred batch size %d is outside [1, max batch size %d]", n, c.MaxBatchSize))
		}
	}
	if c.MaxQueueSize < 0 {
		errs = append(errs, fmt.Errorf("max queue size %d: must be >= 0", c.MaxQueueSize))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency %d: must be >= 0", c.Concurrency))
	}
	if c.LoadDelay < 0 {
		errs = append(errs, fmt.Errorf("load delay %v: must be >= 0", c.LoadDelay))
	}
	if c.DefaultTimeout < 0 {
		errs = append(errs, fmt.Errorf("default timeout %v: must be >= 0", c.DefaultTimeout))
	}
	if len(errs) > 0 {
		return fmt.Errorf("sched config: %w", errors.Join(errs...))
	}
	return nil
}

// withDefaults returns c with zero fields replaced by the defaults above.
func (c Config) withDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxQueueSize == 0 {
		c.MaxQueueSize = DefaultMaxQueueSize
	}
	return c
}
