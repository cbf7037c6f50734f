package netem

import (
	"errors"
	"sync"
	"time"
)

// packet is one unit held by a delay line: a datagram, a chunk of a byte
// stream, or (eof) the end of a stream.
type packet struct {
	due  time.Time
	data []byte
	buf  *[]byte // pooled buffer behind data, returned after delivery; nil if not pooled
	eof  bool
}

// errLineDone, returned by a deliver function, stops the line's run loop
// without it being an error (the stream ended).
var errLineDone = errors.New("netem: delay line finished")

// delayLine is a FIFO of packets, each held until its due time and then
// handed to a deliver function by the single goroutine running run. Due
// times are made non-decreasing on push, so packets leave in the order
// they entered and only the head needs a timer.
type delayLine struct {
	maxPackets int
	maxBytes   int

	mu     sync.Mutex
	space  *sync.Cond // broadcast when bytes shrink or the line closes
	q      []packet   // pending packets are q[head:]
	head   int
	bytes  int
	last   time.Time // due time of the newest queued packet
	closed bool

	wake chan struct{} // buffered; poked when the queue turns non-empty
	done chan struct{} // closed by close
}

func newDelayLine(maxPackets, maxBytes int) *delayLine {
	l := &delayLine{
		maxPackets: maxPackets,
		maxBytes:   maxBytes,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	l.space = sync.NewCond(&l.mu)
	return l
}

// push queues p to leave at p.due, or when the packet ahead of it leaves
// if that is later. With block set it waits while the line holds
// maxBytes or more (a lone packet larger than maxBytes is still
// accepted); without it a full line drops p. It reports whether p was
// queued; false also means the line is closed. A packet that is not
// queued still belongs to the caller.
func (l *delayLine) push(p packet, block bool) bool {
	l.mu.Lock()
	if block {
		for !l.closed && l.bytes > 0 && l.bytes+len(p.data) > l.maxBytes {
			l.space.Wait()
		}
	} else if len(l.q)-l.head >= l.maxPackets || l.bytes+len(p.data) > l.maxBytes {
		l.mu.Unlock()
		return false
	}
	if l.closed {
		l.mu.Unlock()
		return false
	}
	if p.due.Before(l.last) {
		p.due = l.last
	}
	l.last = p.due
	wasEmpty := l.head == len(l.q)
	l.q = append(l.q, p)
	l.bytes += len(p.data)
	l.mu.Unlock()
	if wasEmpty {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// run delivers packets as they fall due until the line is closed or
// deliver returns an error, which run returns (nil when closed or for
// errLineDone). Packets still queued when it returns are released
// unsent. run must be called by exactly one goroutine.
func (l *delayLine) run(deliver func(packet) error) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var batch []packet
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil
		}
		if l.head == len(l.q) {
			l.mu.Unlock()
			select {
			case <-l.wake:
			case <-l.done:
			}
			continue
		}
		now := time.Now()
		if wait := l.q[l.head].due.Sub(now); wait > 0 {
			l.mu.Unlock()
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-l.done:
			}
			continue
		}
		batch = batch[:0]
		for l.head < len(l.q) && !l.q[l.head].due.After(now) {
			p := l.q[l.head]
			l.q[l.head] = packet{}
			l.head++
			l.bytes -= len(p.data)
			batch = append(batch, p)
		}
		l.compact()
		l.space.Broadcast()
		l.mu.Unlock()

		for i, p := range batch {
			if err := deliver(p); err != nil {
				for _, rest := range batch[i+1:] {
					release(rest)
				}
				l.close()
				if errors.Is(err, errLineDone) {
					return nil
				}
				return err
			}
		}
		clear(batch)
	}
}

// compact reclaims the consumed front of the queue. l.mu must be held.
func (l *delayLine) compact() {
	switch {
	case l.head == len(l.q):
		l.q = l.q[:0]
		l.head = 0
	case l.head >= 1024 && l.head*2 >= len(l.q):
		n := copy(l.q, l.q[l.head:])
		clear(l.q[n:])
		l.q = l.q[:n]
		l.head = 0
	}
}

// close drops the queued packets and makes push fail and run return. It
// is idempotent.
func (l *delayLine) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	for _, p := range l.q[l.head:] {
		release(p)
	}
	l.q, l.head, l.bytes = nil, 0, 0
	l.space.Broadcast()
	l.mu.Unlock()
	close(l.done)
}

// chunkSize is the read size of the TCP relay and the size of its pooled
// buffers.
const chunkSize = 64 << 10

// chunkPool recycles TCP chunk buffers.
var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, chunkSize)
	return &b
}}

// release returns p's pooled buffer, if any.
func release(p packet) {
	if p.buf != nil {
		chunkPool.Put(p.buf)
	}
}
