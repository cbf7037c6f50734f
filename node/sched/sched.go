package sched

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/petrel-mesh/petrel/models"
)

// Errors callers check. The HTTP layer maps ErrQueueFull to 429 with a
// Retry-After from RetryAfter, ErrClosed to 503, ErrInvalidRequest to 400,
// and context.DeadlineExceeded to 504.
var (
	// ErrQueueFull is returned by Submit when MaxQueueSize requests are
	// already waiting.
	ErrQueueFull = errors.New("sched: queue full")
	// ErrClosed is returned by Submit after Close began, and to requests
	// still queued or executing when Close's context ends.
	ErrClosed = errors.New("sched: scheduler closed")
	// ErrInvalidRequest wraps every request that does not fit the model's
	// signature (missing, unknown or repeated inputs, wrong datatype, shape
	// or data length, unknown outputs). Such requests are never queued.
	ErrInvalidRequest = errors.New("sched: invalid request")
	// ErrOutputMismatch wraps the error given to every request of a batch
	// whose outputs cannot be split back by rows (dim 0 differs from the
	// batch's total rows, wrong count, names or data length).
	ErrOutputMismatch = errors.New("sched: batched output does not split along dim 0")
)

// DefaultRetryAfter is RetryAfter's answer before any execution finished.
const DefaultRetryAfter = time.Second

// Executor runs one (possibly batched) inference. models.Session is one;
// tests use an in-memory twin. Run must be safe for concurrent use when
// Config.Concurrency > 1, and should return soon after ctx is done.
type Executor interface {
	Run(ctx context.Context, inputs []models.Tensor, outputs []string) ([]models.Tensor, error)
}

var _ Executor = models.Session(nil)

// Observer receives metrics. Methods are called from the scheduler's
// goroutines, never under its lock, and must be safe for concurrent use.
type Observer interface {
	// QueueTime is how long a request waited before its execution started.
	QueueTime(d time.Duration)
	// ComputeTime is how long one execution took.
	ComputeTime(d time.Duration)
	// BatchSize is the rows (dim 0, summed over the batch) of one execution.
	BatchSize(rows int)
}

type nopObserver struct{}

func (nopObserver) QueueTime(time.Duration)   {}
func (nopObserver) ComputeTime(time.Duration) {}
func (nopObserver) BatchSize(int)             {}

// Request is one inference: Inputs must match the signature's inputs by
// name (all of them, any order); Outputs names the outputs to return, in
// that order (nil means all, in signature order).
//
// The scheduler never modifies a Request, but the request is given away
// to Submit: its execution may still read Inputs after Submit returned
// early (with a context error or ErrClosed), so a caller must not reuse
// the input buffers then.
type Request struct {
	Inputs  []models.Tensor
	Outputs []string
}

// state is where a pending request is; it changes only under Scheduler.mu.
type state uint8

const (
	stQueued    state = iota // in the queue, waiting
	stRunning                // dispatched to a worker
	stCancelled              // left the queue (context done); never executed
	stAbandoned              // its caller gave up while it executed
	stDone                   // its result is (about to be) in done
)

type result struct {
	out []models.Tensor
	err error
}

// pending is one submitted request. Pooled: its caller returns it to the
// pool once it received from done, which is the worker's last touch.
type pending struct {
	ctx   context.Context
	req   *Request
	enq   time.Time
	rows  int64 // dim 0 (1 for a scalar first input)
	solo  bool  // never shares an execution
	state state
	next  *pending  // next member of the same execution
	batch *batchRun // shared by the members of a multi-request execution
	done  chan result
}

// batchRun is the execution context of a batch of more than one request:
// cancelled when every member gave up, or when Close aborts.
type batchRun struct {
	ctx    context.Context
	cancel context.CancelFunc
	live   int // members whose callers still wait
}

// Scheduler queues requests for one model version, forms batches, and runs
// them on Config.Concurrency worker goroutines. See the package doc for the
// contract.
type Scheduler struct {
	cfg      Config
	exec     Executor
	sig      models.Signature
	obs      Observer
	batching bool
	pref     []bool // pref[rows]: a preferred batch size; nil if none

	pool sync.Pool

	mu        sync.Mutex
	q         []*pending // FIFO; entries not stQueued are dropped by compaction
	queued    int        // entries of q that are stQueued
	dead      int        // entries of q that are not
	inFlight  int        // executions dispatched and not finished
	closed    bool       // Close began: Submit fails, delays no longer apply
	shut      bool       // quit and work are closed
	drainDone bool       // drained is closed
	armedAt   time.Time  // when the dispatcher's timer fires; zero if unarmed
	scratch   []int      // batch member indices, reused under mu
	busy      bool       // last launch batched or left requests waiting (LoadDelay applies)
	avgRun    float64    // EWMA of execution time, ns
	avgReqs   float64    // EWMA of requests per execution

	work      chan *pending // head of each execution's member list
	wake      chan struct{} // nudges the dispatcher to re-arm its timer
	quit      chan struct{} // stops the dispatcher
	drained   chan struct{} // closed when closed and nothing queued or in flight
	aborted   chan struct{} // closed when a Close context ended before drain
	runCtx    context.Context
	runCancel context.CancelFunc
	dispDone  chan struct{}
	workers   sync.WaitGroup
}

// New validates cfg and sig and starts the dispatcher and
// cfg.Concurrency workers. obs may be nil. Call Close to stop them.
func New(cfg Config, exec Executor, sig models.Signature, obs Observer) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if exec == nil {
		return nil, errors.New("sched: nil executor")
	}
	if err := sig.Validate(); err != nil {
		return nil, fmt.Errorf("sched: %w", err)
	}
	if obs == nil {
		obs = nopObserver{}
	}
	cfg = cfg.withDefaults()
	s := &Scheduler{
		cfg:      cfg,
		exec:     exec,
		sig:      sig,
		obs:      obs,
		batching: cfg.MaxBatchSize > 1 && canBatch(&sig),
		work:     make(chan *pending, cfg.Concurrency),
		wake:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		drained:  make(chan struct{}),
		aborted:  make(chan struct{}),
		dispDone: make(chan struct{}),
	}
	s.pool.New = func() any { return &pending{done: make(chan result, 1)} }
	if s.batching && len(cfg.PreferredBatchSizes) > 0 {
		s.pref = make([]bool, cfg.MaxBatchSize+1)
		for _, n := range cfg.PreferredBatchSizes {
			s.pref[n] = true
		}
	}
	s.runCtx, s.runCancel = context.WithCancel(context.Background())
	go s.dispatcher()
	s.workers.Add(cfg.Concurrency)
	for range cfg.Concurrency {
		go s.worker()
	}
	return s, nil
}

// Batching reports whether this scheduler forms batches: MaxBatchSize > 1
// and every input and output of the signature has a dynamic, fixed-size
// dim 0.
func (s *Scheduler) Batching() bool { return s.batching }

// Submit queues r, waits for its turn and returns its outputs. It returns
// ErrInvalidRequest (wrapped) for a request that does not fit the
// signature, ErrQueueFull or ErrClosed without queueing, ctx's error
// (with its cause, if different) as soon as ctx is done, whether r is
// queued (then it is never executed) or executing (the execution goes on
// for the rest of its batch), and otherwise the executor's outputs or
// error.
func (s *Scheduler) Submit(ctx context.Context, r *Request) ([]models.Tensor, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil request", ErrInvalidRequest)
	}
	rows, solo, err := checkRequest(&s.sig, r, s.batching, s.cfg.MaxBatchSize)
	if err != nil {
		return nil, err
	}
	if s.cfg.DefaultTimeout > 0 {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.cfg.DefaultTimeout)
			defer cancel()
		}
	}
	if ctx.Err() != nil {
		return nil, ctxErr(ctx)
	}
	enter := time.Now()
	s.mu.Lock()
	if s.cfg.InlineWhenIdle && !s.closed && s.queued == 0 && s.inFlight < s.cfg.Concurrency &&
		(!s.batching || solo || (s.cfg.MaxQueueDelay == 0 && !s.busy)) {
		// Idle fast path: nothing to batch with and a slot is free, so the
		// caller's goroutine runs the request itself. A hand-off to a
		// worker goroutine costs two cross-thread wake-ups, which on a
		// small VM are tens of microseconds each.
		s.inFlight++
		s.mu.Unlock()
		return s.runInline(ctx, r, rows, enter)
	}
	s.mu.Unlock()

	p := s.pool.Get().(*pending)
	p.ctx, p.req, p.rows, p.solo = ctx, r, rows, solo
	p.enq = enter

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.release(p)
		return nil, ErrClosed
	}
	if s.queued >= s.cfg.MaxQueueSize {
		s.mu.Unlock()
		s.release(p)
		return nil, ErrQueueFull
	}
	s.q = append(s.q, p)
	s.queued++
	s.pumpLocked(p.enq)
	s.mu.Unlock()

	select {
	case res := <-p.done:
		s.release(p)
		return res.out, res.err
	case <-ctx.Done():
		return s.abandon(p, ctxErr(ctx))
	case <-s.aborted:
		return s.abandon(p, ErrClosed)
	}
}

// runInline executes r on the caller's goroutine; the caller holds one of
// the Concurrency slots (inFlight was incremented under mu). While it runs,
// later requests queue and are batched as usual; when it ends, the queue
// is dispatched to the workers.
func (s *Scheduler) runInline(ctx context.Context, r *Request, rows int64, enter time.Time) ([]models.Tensor, error) {
	start := time.Now()
	s.obs.QueueTime(start.Sub(enter))
	out, err := s.run(ctx, r.Inputs, r.Outputs)
	end := time.Now()
	s.obs.ComputeTime(end.Sub(start))
	s.obs.BatchSize(int(rows))

	s.mu.Lock()
	s.inFlight--
	s.recordLocked(end.Sub(start), 1)
	s.pumpLocked(end)
	s.checkDrainedLocked()
	s.mu.Unlock()
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w: %w", ctxErr(ctx), err)
	}
	return out, err
}

// abandon is called when p's caller stops waiting, with the error to give.
func (s *Scheduler) abandon(p *pending, err error) ([]models.Tensor, error) {
	s.mu.Lock()
	switch p.state {
	case stQueued:
		p.state = stCancelled
		s.queued--
		s.dead++
		if s.dead > 64 && s.dead > len(s.q)/2 {
			s.compactLocked()
		}
		s.pumpLocked(time.Now()) // the head may have changed
		s.checkDrainedLocked()
	case stRunning:
		p.state = stAbandoned
		if b := p.batch; b != nil {
			if b.live--; b.live == 0 {
				b.cancel()
			}
		}
	case stDone:
		// The result is in, or about to be: prefer it.
		s.mu.Unlock()
		res := <-p.done
		s.release(p)
		return res.out, res.err
	}
	// stCancelled: the dispatcher saw ctx done first and dropped p.
	s.mu.Unlock()
	return nil, err
}

func (s *Scheduler) release(p *pending) {
	*p = pending{done: p.done}
	s.pool.Put(p)
}

// pumpLocked dispatches what is ready and makes sure the dispatcher's timer
// fires by the time the oldest waiting request's delay is up.
func (s *Scheduler) pumpLocked(now time.Time) {
	at := s.dispatchLocked(now)
	if !at.IsZero() && (s.armedAt.IsZero() || at.Before(s.armedAt)) {
		s.armedAt = at
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// dispatchLocked hands batches to workers while a slot is free and the
// oldest queued request is ready to go. It returns when the oldest must
// wait for MaxQueueDelay, or zero.
func (s *Scheduler) dispatchLocked(now time.Time) (wakeAt time.Time) {
	i := 0 // every q[:i] is not queued
	for s.inFlight < s.cfg.Concurrency && s.queued > 0 {
		for s.q[i].state != stQueued {
			i++
		}
		head := s.q[i]
		if head.ctx.Err() != nil {
			s.dropLocked(head)
			continue
		}
		members := append(s.scratch[:0], i)
		if s.batching && !head.solo {
			members, wakeAt = s.formLocked(members, now)
		}
		s.scratch = members[:0]
		if !wakeAt.IsZero() {
			break
		}
		s.launchLocked(members)
	}
	if s.dead > 0 {
		s.compactLocked()
	}
	return wakeAt
}

// formLocked grows a batch from the head (members[0]) with compatible
// queued requests, oldest first, and decides whether it goes now: it is
// full or cannot grow, a prefix of it adds up to a preferred size (the
// longest such prefix goes), there is no delay, the scheduler is closing,
// or the head waited MaxQueueDelay. Otherwise it returns when to look
// again.
func (s *Scheduler) formLocked(members []int, now time.Time) ([]int, time.Time) {
	head := s.q[members[0]]
	limit := int64(s.cfg.MaxBatchSize)
	rows, prefN := head.rows, 0
	if s.pref != nil && s.pref[rows] {
		prefN = 1
	}
	full := rows >= limit
	for j := members[0] + 1; j < len(s.q) && !full; j++ {
		p := s.q[j]
		if p.state != stQueued || p.solo || !compatible(head.req, p.req) {
			continue
		}
		if p.ctx.Err() != nil {
			s.dropLocked(p)
			continue
		}
		if rows+p.rows > limit {
			full = true // FIFO among compatible requests: don't skip ahead
			break
		}
		rows += p.rows
		members = append(members, j)
		if rows == limit {
			full = true
		} else if s.pref != nil && s.pref[rows] {
			prefN = len(members)
		}
	}
	delay := s.cfg.MaxQueueDelay
	if delay == 0 && s.busy {
		delay = s.loadDelayLocked()
	}
	switch {
	case full, s.closed, delay == 0:
	case prefN > 0:
		members = members[:prefN]
	case now.Sub(head.enq) >= delay:
	default:
		return members, head.enq.Add(delay)
	}
	return members, time.Time{}
}

// MaxLoadDelay caps the busy delay that follows the average execution
// time (see Config.LoadDelay), so that a slow model does not hold its
// batches for longer than this.
const MaxLoadDelay = 20 * time.Millisecond

// loadDelayLocked is how long a busy scheduler's batch may wait after its
// oldest request: LoadDelay, or the recent average execution time when
// that is longer (up to MaxLoadDelay). LoadDelay 0 disables it.
func (s *Scheduler) loadDelayLocked() time.Duration {
	d := s.cfg.LoadDelay
	if d == 0 {
		return 0
	}
	return max(d, min(time.Duration(s.avgRun), MaxLoadDelay))
}

// dropLocked removes a queued request whose context is done; its caller
// returns the context's error.
func (s *Scheduler) dropLocked(p *pending) {
	p.state = stCancelled
	s.queued--
	s.dead++
}

// launchLocked links the members into one execution and hands it to a
// worker. The send never blocks: work has room for Concurrency executions
// and inFlight < Concurrency.
func (s *Scheduler) launchLocked(members []int) {
	head := s.q[members[0]]
	var b *batchRun
	if len(members) > 1 {
		b = s.newBatchRunLocked(members)
	}
	var prev *pending
	for _, idx := range members {
		p := s.q[idx]
		p.state = stRunning
		p.batch = b
		if prev != nil {
			prev.next = p
		}
		prev = p
	}
	s.queued -= len(members)
	s.dead += len(members)
	s.inFlight++
	s.busy = len(members) > 1 || s.queued > 0
	s.work <- head
}

// newBatchRunLocked makes the context a shared execution runs under: it
// ends at the latest member deadline (if every member has one), when all
// members gave up, or when Close aborts.
func (s *Scheduler) newBatchRunLocked(members []int) *batchRun {
	var latest time.Time
	all := true
	for _, idx := range members {
		d, ok := s.q[idx].ctx.Deadline()
		if !ok {
			all = false
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	b := &batchRun{live: len(members)}
	if all {
		b.ctx, b.cancel = context.WithDeadline(s.runCtx, latest)
	} else {
		b.ctx, b.cancel = context.WithCancel(s.runCtx)
	}
	return b
}

func (s *Scheduler) compactLocked() {
	n := 0
	for _, p := range s.q {
		if p.state == stQueued {
			s.q[n] = p
			n++
		}
	}
	clear(s.q[n:])
	s.q = s.q[:n]
	s.dead = 0
}

// checkDrainedLocked stops the dispatcher and workers once Close began and
// nothing is queued or in flight. Workers finish delivering first.
func (s *Scheduler) checkDrainedLocked() {
	if s.closed && s.queued == 0 && s.inFlight == 0 && !s.drainDone {
		s.drainDone = true
		close(s.drained)
		s.shutLocked()
	}
}

func (s *Scheduler) shutLocked() {
	if !s.shut {
		s.shut = true
		close(s.quit)
		close(s.work) // nothing can be sent: closed and nothing queued
	}
}

// dispatcher owns the MaxQueueDelay timer: when it fires, it dispatches
// the batches whose delay is up. Everything else is dispatched inline by
// Submit and by finishing workers.
func (s *Scheduler) dispatcher() {
	defer close(s.dispDone)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-s.quit:
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		s.mu.Lock()
		now := time.Now()
		at := s.dispatchLocked(now)
		s.armedAt = at
		s.mu.Unlock()
		if at.IsZero() {
			t.Stop()
		} else {
			t.Reset(at.Sub(now))
		}
	}
}

func (s *Scheduler) worker() {
	defer s.workers.Done()
	for head := range s.work {
		s.execute(head)
	}
}

// execute runs one execution, then delivers each member's result.
func (s *Scheduler) execute(head *pending) {
	start := time.Now()
	n, rows := 0, int64(0)
	for p := head; p != nil; p = p.next {
		n++
		rows += p.rows
		s.obs.QueueTime(start.Sub(p.enq))
	}
	var one result     // when n == 1
	var parts []result // when n > 1, in member order
	if n == 1 {
		one.out, one.err = s.run(head.ctx, head.req.Inputs, head.req.Outputs)
	} else {
		parts = s.runBatch(head, n, rows)
	}
	end := time.Now()
	s.obs.ComputeTime(end.Sub(start))
	s.obs.BatchSize(int(rows))

	s.mu.Lock()
	s.inFlight--
	s.recordLocked(end.Sub(start), n)
	for p := head; p != nil; p = p.next {
		if p.state == stRunning {
			p.state = stDone
		}
	}
	s.pumpLocked(end)
	s.checkDrainedLocked()
	s.mu.Unlock()

	// Members marked stDone stay untouched by others until their result is
	// sent; the send is the last touch (the caller may recycle p).
	k := 0
	for p := head; p != nil; k++ {
		next := p.next
		if p.state == stDone {
			if n == 1 {
				p.done <- one
			} else {
				p.done <- parts[k]
			}
		}
		p = next
	}
}

// runBatch concatenates the members' inputs, runs once, and splits the
// outputs back; on error every member gets it.
func (s *Scheduler) runBatch(head *pending, n int, total int64) []result {
	reqs := make([]*Request, 0, n)
	rows := make([]int64, 0, n)
	for p := head; p != nil; p = p.next {
		reqs = append(reqs, p.req)
		rows = append(rows, p.rows)
	}
	b := head.batch
	names := unionOutputs(&s.sig, reqs)
	out, err := s.run(b.ctx, concatInputs(&s.sig, reqs, total), names)
	b.cancel()
	var split [][]models.Tensor
	if err == nil {
		split, err = splitOutputs(names, out, reqs, rows, total)
	}
	res := make([]result, n)
	for i := range res {
		if err != nil {
			res[i].err = err
		} else {
			res[i].out = split[i]
		}
	}
	return res
}

// run calls the executor, turning a panic into an error.
func (s *Scheduler) run(ctx context.Context, in []models.Tensor, out []string) (ts []models.Tensor, err error) {
	defer func() {
		if v := recover(); v != nil {
			ts, err = nil, fmt.Errorf("sched: executor panicked: %v", v)
		}
	}()
	return s.exec.Run(ctx, in, out)
}

// recordLocked folds one execution into the averages behind RetryAfter.
func (s *Scheduler) recordLocked(d time.Duration, reqs int) {
	const alpha = 0.2
	if s.avgRun == 0 {
		s.avgRun, s.avgReqs = float64(d), float64(reqs)
		return
	}
	s.avgRun += alpha * (float64(d) - s.avgRun)
	s.avgReqs += alpha * (float64(reqs) - s.avgReqs)
}

// RetryAfter estimates how long until a request submitted now would start
// executing: the executions needed to clear the queue (at the recent
// average requests per execution) times the recent average execution
// time, spread over Concurrency slots, plus MaxQueueDelay. Before any
// execution finished it returns DefaultRetryAfter. HTTP callers round it
// up to whole seconds.
func (s *Scheduler) RetryAfter() time.Duration {
	s.mu.Lock()
	avgRun, avgReqs, queued := s.avgRun, s.avgReqs, s.queued
	s.mu.Unlock()
	if avgRun == 0 {
		return DefaultRetryAfter
	}
	runs := math.Ceil(float64(queued+1) / math.Max(avgReqs, 1))
	d := time.Duration(runs*avgRun/float64(s.cfg.Concurrency)) + s.cfg.MaxQueueDelay
	return max(d, time.Millisecond)
}

// QueueLen is the number of requests waiting (not executing).
func (s *Scheduler) QueueLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queued
}

// InFlight is the number of executions running (each may carry a batch).
func (s *Scheduler) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// Close stops accepting requests (Submit returns ErrClosed), dispatches
// what is queued without waiting for MaxQueueDelay, and waits until every
// execution finished and the scheduler's goroutines exited; then it
// returns nil. If ctx ends first, requests still queued fail with
// ErrClosed and are never executed, callers of running executions get
// ErrClosed at once, batched executions' contexts are cancelled, and Close
// returns ctx's error; the workers then exit as soon as the executor
// returns. Close is idempotent and safe to call concurrently.
func (s *Scheduler) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.pumpLocked(time.Now())
		s.checkDrainedLocked()
	}
	s.mu.Unlock()
	select {
	case <-s.drained:
	case <-ctx.Done():
		if s.abort() {
			<-s.dispDone
			return fmt.Errorf("sched: close before drained: %w", ctxErr(ctx))
		}
		<-s.drained
	}
	<-s.dispDone
	s.workers.Wait()
	return nil
}

// abort fails what is queued and releases the callers of running
// executions. It reports false if the scheduler had drained already.
func (s *Scheduler) abort() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drainDone {
		return false
	}
	if !s.shut {
		var failed []*pending
		for _, p := range s.q {
			if p.state == stQueued {
				p.state = stDone
				failed = append(failed, p)
			}
		}
		s.queued = 0
		s.compactLocked()
		s.runCancel()
		close(s.aborted)
		s.shutLocked()
		// Out of q now; the send is the last touch (the caller recycles p).
		for _, p := range failed {
			p.done <- result{err: ErrClosed}
		}
	}
	return true
}

// ctxErr is ctx.Err(), joined with context.Cause when that says more.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}
