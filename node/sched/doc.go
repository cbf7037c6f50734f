// Package sched is the per-model-version scheduler of a Petrel node: a
// bounded FIFO queue and a dynamic batcher in front of an Executor (a
// models.Session, or an in-memory twin in tests).
//
// # Use
//
//  1. New(cfg, session, manifest.Signature, observer) starts one dispatcher
//     goroutine and cfg.Concurrency worker goroutines.
//  2. Each inference calls Submit(ctx, &Request{...}) and blocks until its
//     outputs, an error, or ctx is done.
//  3. Close(ctx) stops admission and drains; it is idempotent.
//
// # Contract
//
// Admission. Submit validates the request against the signature (every
// input exactly once, accepted datatype and shape, data length matching
// the shape, known and distinct outputs) and fails with ErrInvalidRequest
// otherwise. It fails with ErrClosed once Close began, and with
// ErrQueueFull when Config.MaxQueueSize requests are already waiting
// (executing requests do not count). A context without a deadline gets
// Config.DefaultTimeout, if set.
//
// Order. Requests are dispatched oldest first. A batch is always formed
// around the oldest waiting request (the head); later requests never go
// ahead of a head that is waiting for its batching delay, so no request
// starves.
//
// Batching. A model is batchable only when MaxBatchSize > 1 and every
// input and output of its signature has rank >= 1, a dynamic dim 0 (-1)
// and a fixed-size datatype (no BYTES). Two requests are compatible when
// their inputs agree on shape apart from dim 0 (names and datatypes are
// fixed by the signature). A request whose inputs disagree on dim 0, whose
// dim 0 is 0, or whose dim 0 exceeds MaxBatchSize is not rejected: it runs
// alone, unbatched, exactly as submitted. The head's batch takes
// compatible requests in arrival order while the rows (dim 0) sum stays
// within MaxBatchSize, stopping at the first that would not fit.
// Incompatible requests stay queued in their order and form their own
// batches when they reach the head.
//
// Idle and busy. With Config.InlineWhenIdle, a request that finds nothing
// queued and a slot free runs on its caller's goroutine (no hand-off);
// the executor must then honour ctx for deadlines to be prompt. With
// Config.LoadDelay, a scheduler whose last execution batched (or left
// requests waiting) is busy, and its batches wait for company up to
// LoadDelay or the recent average execution time, whichever is longer
// (at most MaxLoadDelay): under load a slot frees about once per
// execution, so waiting that long costs a request at most one more
// execution, while a batch that reaches a preferred size goes at once.
// One lone execution with nothing waiting makes it idle again. So a lone
// client never waits, and a loaded model batches.
//
// When a batch goes. A batch is dispatched when an execution slot is free
// and one of: it holds MaxBatchSize rows or cannot grow (the next
// compatible request would not fit); MaxQueueDelay is 0 (batching only
// what queued up while the slots were busy); a prefix of it adds up to one
// of PreferredBatchSizes (the longest such prefix goes); the head has
// waited MaxQueueDelay; or Close began.
//
// Execution. A batch of one request runs with the caller's context and
// the request's own inputs and outputs, without copying. A batch of
// several concatenates each input's Data along dim 0 (a byte
// concatenation, row-major), requests the union of the members' outputs
// in signature order, and runs under a context that ends at the latest
// member deadline (when all have one), when every member gave up, or when
// Close aborts. Each output must have dim 0 equal to the batch's rows and
// a matching data length; it is then cut by the members' row counts and
// each member gets the outputs it asked for, in its order (all, in
// signature order, for nil). The pieces share the executor's buffers,
// with capacity capped so appending to one cannot overwrite another;
// holding one keeps the whole batch's output alive, so copy what is kept
// long (respcache.Put copies). A
// mismatch fails every member with ErrOutputMismatch; an executor error
// (or panic, as an error) goes to every member unchanged.
//
// Cancellation. A request whose context ends while queued leaves the
// queue at once with ctx.Err() (joined with context.Cause when that
// differs) and is never executed. A request whose context ends while
// executing gets that error at once too; the execution continues for the
// rest of its batch (a batch of one sees its context end).
//
// Shutdown. Close rejects new requests, dispatches what is queued without
// waiting for MaxQueueDelay, waits for the queue and executions to drain
// and for every goroutine it started to exit, and returns nil. If its
// context ends first, queued requests fail with ErrClosed unexecuted,
// waiting callers of running executions get ErrClosed, batch contexts are
// cancelled, and Close returns the context's error; workers exit when
// their executor returns.
//
// Goroutines and locking. All queue state is under one mutex. Dispatch
// decisions are made inline by whoever changes that state (Submit, a
// finishing worker, a caller leaving the queue); the dispatcher goroutine
// only owns the MaxQueueDelay timer. So an idle scheduler with
// MaxQueueDelay 0 hands a request to a worker within Submit, with no timer,
// and a pooled per-request record keeps the path free of allocations.
//
// Metrics. The Observer, if any, gets QueueTime per request, and
// ComputeTime and BatchSize (rows) per execution. RetryAfter estimates the
// wait from the recent execution times, for the Retry-After of a 429.
package sched
