// Package des is a deterministic discrete-event simulation engine with a
// virtual clock.
//
// A Sim holds a queue of events, each a function to run at a simulated
// time. Run pops them in order of (time, insertion) and advances the clock
// to each event's time before running it; an event may schedule more
// events. Nothing reads the wall clock, and the only randomness is the
// Sim's own seeded generator, so a simulation started with the same seed
// and the same schedule runs the same way every time.
//
// Usage:
//
//  1. s := des.New(seed)
//  2. schedule the first events with s.At or s.After;
//  3. s.Run(until) runs them (and whatever they schedule) up to until;
//  4. read results; call Run again to continue, or Stop from an event to
//     end a Run early.
//
// A Sim is not safe for concurrent use: events run one at a time on the
// goroutine that calls Run.
package des

import (
	"math"
	"math/rand/v2"
	"time"
)

// Time is simulated time since the start of the simulation.
type Time = time.Duration

// Forever is the largest Time; Run(Forever) runs until no event is left or
// Stop is called.
const Forever Time = math.MaxInt64

// event is one scheduled function.
type event struct {
	t   Time
	seq uint64
	f   func()
}

// before reports whether a runs before b: earlier time, then earlier
// insertion.
func (a *event) before(b *event) bool {
	if a.t != b.t {
		return a.t < b.t
	}
	return a.seq < b.seq
}

// Sim is a discrete-event simulation: a virtual clock, a queue of events
// and a seeded random generator. The zero value is not usable; call New.
type Sim struct {
	now     Time
	seq     uint64
	heap    []event // 4-ary min-heap ordered by (t, seq)
	stopped bool
	running bool
	rng     *rand.Rand
	ran     uint64
}

// New returns a simulation at time zero whose Rand is a PCG generator
// seeded from seed.
func New(seed uint64) *Sim {
	return &Sim{
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		heap: make([]event, 0, 1024),
	}
}

// Now returns the current simulated time.
func (s *Sim) Now() Time { return s.now }

// Rand returns the simulation's seeded random generator. Events that need
// randomness should draw from it (in event order) so that runs repeat.
func (s *Sim) Rand() *rand.Rand { return s.rng }

// Pending returns the number of scheduled events not yet run.
func (s *Sim) Pending() int { return len(s.heap) }

// Executed returns the total number of events run so far over all calls of
// Run.
func (s *Sim) Executed() uint64 { return s.ran }

// At schedules f to run at absolute time t. A t before Now is taken as Now
// (an event cannot run in the past); events at the same time run in the
// order they were scheduled. A nil f is ignored.
func (s *Sim) At(t Time, f func()) {
	if f == nil {
		return
	}
	if t < s.now {
		t = s.now
	}
	s.seq++
	s.heap = append(s.heap, event{t: t, seq: s.seq, f: f})
	s.up(len(s.heap) - 1)
}

// After schedules f to run d after Now. A negative d counts as zero; a d
// that would overflow saturates at Forever.
func (s *Sim) After(d Time, f func()) {
	if d < 0 {
		d = 0
	}
	t := s.now + d
	if t < s.now { // overflow
		t = Forever
	}
	s.At(t, f)
}

// Run runs the scheduled events with a time at or before until, in order
// of (time, insertion), advancing the clock to each event's time before
// running it, and returns the number it ran. It returns early when Stop is
// called from an event. When it returns because no event at or before
// until is left (not stopped, until not Forever), the clock is advanced to
// until, so that a later Run or After continues from there. An until
// before Now runs nothing. Run must not be called from an event; such a
// call returns 0.
func (s *Sim) Run(until Time) int {
	if s.running {
		return 0
	}
	s.running = true
	defer func() { s.running = false }()
	s.stopped = false
	n := 0
	for len(s.heap) > 0 && !s.stopped {
		if s.heap[0].t > until {
			break
		}
		ev := s.pop()
		s.now = ev.t
		n++
		s.ran++
		ev.f()
	}
	if !s.stopped && until != Forever && until > s.now {
		s.now = until
	}
	return n
}

// Stop makes the current Run return after the event that called it. The
// remaining events stay scheduled.
func (s *Sim) Stop() { s.stopped = true }

// up restores the heap property from i towards the root.
func (s *Sim) up(i int) {
	h := s.heap
	ev := h[i]
	for i > 0 {
		p := (i - 1) / 4
		if !ev.before(&h[p]) {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = ev
}

// pop removes and returns the earliest event.
func (s *Sim) pop() event {
	h := s.heap
	top := h[0]
	last := len(h) - 1
	ev := h[last]
	h[last] = event{} // drop the closure reference
	h = h[:last]
	s.heap = h
	if last == 0 {
		return top
	}
	// Sift ev down from the root.
	i := 0
	for {
		c := 4*i + 1
		if c >= last {
			break
		}
		best := c
		end := min(c+4, last)
		for j := c + 1; j < end; j++ {
			if h[j].before(&h[best]) {
				best = j
			}
		}
		if !h[best].before(&ev) {
			break
		}
		h[i] = h[best]
		i = best
	}
	h[i] = ev
	return top
}
