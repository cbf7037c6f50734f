package gossipsim

import (
	"bytes"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/petrel-mesh/petrel/routing"
)

// gossipPort is the port every simulated member listens on, as production
// nodes do (memberlist's default).
const gossipPort = 7946

// packetQueueLen is each member's receive queue (a socket buffer): a
// packet that arrives when it is full is dropped and counted.
const packetQueueLen = 4096

// streamQueueLen is each member's accept backlog.
const streamQueueLen = 128

// Errors of the in-memory network, shaped like the socket errors memberlist
// sees in production.
var (
	errRefused = errors.New("gossipsim: connection refused")
	errNoRoute = errors.New("gossipsim: no route to host")
	errClosed  = errors.New("gossipsim: transport shut down")
)

// timeoutError is returned when a dial to a dead host times out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "gossipsim: i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// Counters are one member's traffic. Packets model UDP datagrams, streams
// TCP connections; bytes are memberlist's payloads (after its compression
// and encryption), without IP/UDP/TCP headers.
type Counters struct {
	PacketsSent, PacketBytesSent uint64 // handed to the network, lost ones included
	PacketsRecv, PacketBytesRecv uint64 // delivered to this member
	PacketsLost                  uint64 // sent by this member and dropped by the loss model
	PacketsDropped               uint64 // sent by this member to a dead, unknown or full receiver
	StreamBytesSent              uint64
	StreamBytesRecv              uint64
	StreamsOpened                uint64 // dialled by this member
}

// BytesSent is the member's total sent bytes, packets and streams.
func (c Counters) BytesSent() uint64 { return c.PacketBytesSent + c.StreamBytesSent }

// BytesRecv is the member's total received bytes, packets and streams.
func (c Counters) BytesRecv() uint64 { return c.PacketBytesRecv + c.StreamBytesRecv }

// sub returns c - o field by field.
func (c Counters) sub(o Counters) Counters {
	return Counters{
		PacketsSent: c.PacketsSent - o.PacketsSent, PacketBytesSent: c.PacketBytesSent - o.PacketBytesSent,
		PacketsRecv: c.PacketsRecv - o.PacketsRecv, PacketBytesRecv: c.PacketBytesRecv - o.PacketBytesRecv,
		PacketsLost: c.PacketsLost - o.PacketsLost, PacketsDropped: c.PacketsDropped - o.PacketsDropped,
		StreamBytesSent: c.StreamBytesSent - o.StreamBytesSent, StreamBytesRecv: c.StreamBytesRecv - o.StreamBytesRecv,
		StreamsOpened: c.StreamsOpened - o.StreamsOpened,
	}
}

// add returns c + o field by field.
func (c Counters) add(o Counters) Counters {
	return Counters{
		PacketsSent: c.PacketsSent + o.PacketsSent, PacketBytesSent: c.PacketBytesSent + o.PacketBytesSent,
		PacketsRecv: c.PacketsRecv + o.PacketsRecv, PacketBytesRecv: c.PacketBytesRecv + o.PacketBytesRecv,
		PacketsLost: c.PacketsLost + o.PacketsLost, PacketsDropped: c.PacketsDropped + o.PacketsDropped,
		StreamBytesSent: c.StreamBytesSent + o.StreamBytesSent, StreamBytesRecv: c.StreamBytesRecv + o.StreamBytesRecv,
		StreamsOpened: c.StreamsOpened + o.StreamsOpened,
	}
}

type counters struct {
	pktSent, pktBytesSent, pktRecv, pktBytesRecv atomic.Uint64
	pktLost, pktDropped                          atomic.Uint64
	strBytesSent, strBytesRecv, strOpened        atomic.Uint64
}

func (c *counters) snapshot() Counters {
	return Counters{
		PacketsSent: c.pktSent.Load(), PacketBytesSent: c.pktBytesSent.Load(),
		PacketsRecv: c.pktRecv.Load(), PacketBytesRecv: c.pktBytesRecv.Load(),
		PacketsLost: c.pktLost.Load(), PacketsDropped: c.pktDropped.Load(),
		StreamBytesSent: c.strBytesSent.Load(), StreamBytesRecv: c.strBytesRecv.Load(),
		StreamsOpened: c.strOpened.Load(),
	}
}

// network is the in-memory internet between the simulated members. All
// transports are created before any member starts, so byAddr is read-only
// afterwards.
type network struct {
	scale   float64 // TimeScale, applied to every delay
	model   Network
	members []*transport
	byAddr  map[string]*transport
	region  [][]time.Duration // unscaled one-way propagation between regions
	dl      *delayLine
}

// newNetwork places n members over the regions of cfg.Network (largest
// remainder apportionment by weight, then a seeded shuffle) and draws
// their last-mile delays. Member i has the address 10.x.y.z:7946 derived
// from i.
func newNetwork(cfg Config, n int, rng *rand.Rand) *network {
	m := cfg.Network
	nw := &network{
		scale:  cfg.TimeScale,
		model:  m,
		byAddr: make(map[string]*transport, n),
		dl:     newDelayLine(),
	}
	nw.region = make([][]time.Duration, len(m.Regions))
	for i, a := range m.Regions {
		nw.region[i] = make([]time.Duration, len(m.Regions))
		for j, b := range m.Regions {
			ms := routing.HaversineKm(a.Loc, b.Loc) * m.RouteInflation / m.KmPerMs
			nw.region[i][j] = time.Duration(ms * float64(time.Millisecond))
		}
	}
	regionOf := apportion(m.Regions, n)
	rng.Shuffle(len(regionOf), func(i, j int) { regionOf[i], regionOf[j] = regionOf[j], regionOf[i] })
	for i := range n {
		ip := net.IPv4(10, byte((i+1)>>16), byte((i+1)>>8), byte(i+1)).To4()
		lm := m.LastMileMin
		if d := m.LastMileMax - m.LastMileMin; d > 0 {
			lm += time.Duration(rng.Int64N(int64(d) + 1))
		}
		t := &transport{
			net:      nw,
			idx:      i,
			region:   regionOf[i],
			lastMile: lm,
			addr:     net.JoinHostPort(ip.String(), fmt.Sprint(gossipPort)),
			udpAddr:  &net.UDPAddr{IP: ip, Port: gossipPort},
			tcpAddr:  &net.TCPAddr{IP: ip, Port: gossipPort},
			packetCh: make(chan *memberlist.Packet, packetQueueLen),
			streamCh: make(chan net.Conn, streamQueueLen),
			stopCh:   make(chan struct{}),
			rng:      rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())),
		}
		nw.members = append(nw.members, t)
		nw.byAddr[t.addr] = t
	}
	return nw
}

// apportion returns the region index of each of n members: each region
// gets its weight's share, rounded by largest remainder (ties to the
// earlier region).
func apportion(regions []Region, n int) []int {
	total := 0.0
	for _, r := range regions {
		total += r.Weight
	}
	counts := make([]int, len(regions))
	rem := make([]float64, len(regions))
	given := 0
	for i, r := range regions {
		q := r.Weight / total * float64(n)
		counts[i] = int(q)
		rem[i] = q - float64(counts[i])
		given += counts[i]
	}
	for ; given < n; given++ {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		counts[best]++
		rem[best] = -1
	}
	out := make([]int, 0, n)
	for i, c := range counts {
		for range c {
			out = append(out, i)
		}
	}
	return out
}

// propagation is the unscaled one-way delay from a to b without jitter.
func (nw *network) propagation(a, b *transport) time.Duration {
	return nw.model.Base + nw.region[a.region][b.region] + a.lastMile + b.lastMile
}

// start runs the delay line until stop is called.
func (nw *network) start() { nw.dl.start() }

// stop ends the delay line and drops what is still in flight.
func (nw *network) stop() { nw.dl.stop() }

// kill makes member i vanish as a crashed host does: from now on its
// packets and stream writes go nowhere, packets and writes to it are
// dropped, and dials to it time out.
func (nw *network) kill(i int) { nw.members[i].down.Store(true) }

// transport is one member's memberlist.NodeAwareTransport on the
// in-memory network.
type transport struct {
	net      *network
	idx      int
	region   int
	lastMile time.Duration
	addr     string
	udpAddr  *net.UDPAddr
	tcpAddr  *net.TCPAddr
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	stopCh   chan struct{}
	stopOnce sync.Once
	down     atomic.Bool // killed: a black hole
	closed   atomic.Bool // memberlist shut it down: refuses connections
	stats    counters

	rngMu sync.Mutex
	rng   *rand.Rand
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// delay draws the scaled one-way delay of one packet or write from t to
// dst, and whether it is lost (lossy is false for streams).
func (t *transport) delay(dst *transport, lossy bool) (time.Duration, bool) {
	m := &t.net.model
	d := t.net.propagation(t, dst)
	lost := false
	if m.Jitter > 0 || (lossy && m.Loss > 0) {
		t.rngMu.Lock()
		if lossy && m.Loss > 0 {
			lost = t.rng.Float64() < m.Loss
		}
		if m.Jitter > 0 {
			d += time.Duration(t.rng.Int64N(int64(m.Jitter)))
		}
		t.rngMu.Unlock()
	}
	return time.Duration(float64(d) * t.net.scale), lost
}

// FinalAdvertiseAddr returns the member's own address, whatever was
// configured.
func (t *transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.udpAddr.IP, gossipPort, nil
}

// WriteTo sends a packet to addr.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends a packet, as UDP does: it never blocks, and a
// packet to an unknown or dead host, or one the loss model drops,
// disappears silently.
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	if t.closed.Load() {
		return now, errClosed
	}
	if t.down.Load() {
		return now, nil
	}
	t.stats.pktSent.Add(1)
	t.stats.pktBytesSent.Add(uint64(len(b)))
	dst := t.net.byAddr[a.Addr]
	if dst == nil {
		t.stats.pktDropped.Add(1)
		return now, nil
	}
	d, lost := t.delay(dst, true)
	if lost {
		t.stats.pktLost.Add(1)
		return now, nil
	}
	pkt := &memberlist.Packet{Buf: bytes.Clone(b), From: t.udpAddr}
	t.net.dl.schedule(now.Add(d), func() { t.deliver(dst, pkt) })
	return now, nil
}

// deliver hands pkt to dst's receive queue, dropping it if dst is dead,
// shut down or its queue is full.
func (t *transport) deliver(dst *transport, pkt *memberlist.Packet) {
	if dst.down.Load() || dst.closed.Load() || t.down.Load() {
		t.stats.pktDropped.Add(1)
		return
	}
	pkt.Timestamp = time.Now()
	select {
	case dst.packetCh <- pkt:
		dst.stats.pktRecv.Add(1)
		dst.stats.pktBytesRecv.Add(uint64(len(pkt.Buf)))
	default:
		t.stats.pktDropped.Add(1)
	}
}

// PacketCh returns the member's receive queue.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens a stream to addr.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream, as TCP does: the connection is ready
// after one round trip; a dead host makes the dial time out, a shut-down
// member refuses it.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.closed.Load() {
		return nil, errClosed
	}
	dst := t.net.byAddr[a.Addr]
	if dst == nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: nil, Err: errNoRoute}
	}
	t.stats.strOpened.Add(1)
	out, _ := t.delay(dst, false)
	back, _ := dst.delay(t, false)
	wait := out + back
	dead := t.down.Load() || dst.down.Load()
	if dead || (timeout > 0 && wait > timeout) {
		wait = timeout
		dead = true
	}
	if wait > 0 {
		tm := time.NewTimer(wait)
		select {
		case <-tm.C:
		case <-t.stopCh:
			tm.Stop()
			return nil, errClosed
		}
	}
	if dead || dst.down.Load() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: dst.tcpAddr, Err: timeoutError{}}
	}
	if dst.closed.Load() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: dst.tcpAddr, Err: errRefused}
	}
	client, server := newStreamPair(t, dst)
	select {
	case dst.streamCh <- server:
		return client, nil
	default: // backlog full: the SYN is dropped
		client.Close()
		server.Close()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: dst.tcpAddr, Err: errRefused}
	}
}

// StreamCh returns the member's accept queue.
func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes the member's listeners: later packets to it are dropped
// and dials refused.
func (t *transport) Shutdown() error {
	t.closed.Store(true)
	t.stopOnce.Do(func() { close(t.stopCh) })
	return nil
}

// delayLine delivers scheduled functions at their due times from one
// goroutine, in due-time order (ties in scheduling order).
type delayLine struct {
	mu      sync.Mutex
	h       dueHeap
	seq     uint64
	wake    chan struct{}
	stopped bool
	done    chan struct{}
	quit    chan struct{}
}

type dueItem struct {
	at  time.Time
	seq uint64
	fn  func()
}

type dueHeap []dueItem

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if c := h[i].at.Compare(h[j].at); c != 0 {
		return c < 0
	}
	return h[i].seq < h[j].seq
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = dueItem{}
	*h = old[:len(old)-1]
	return it
}

func newDelayLine() *delayLine {
	return &delayLine{wake: make(chan struct{}, 1), done: make(chan struct{}), quit: make(chan struct{})}
}

func (d *delayLine) start() { go d.run() }

// stop ends the goroutine and waits for it; pending items are dropped.
func (d *delayLine) stop() {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.stopped = true
	d.h = nil
	d.mu.Unlock()
	close(d.quit)
	<-d.done
}

// schedule runs fn at about at.
func (d *delayLine) schedule(at time.Time, fn func()) {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.seq++
	first := len(d.h) == 0 || at.Before(d.h[0].at)
	heap.Push(&d.h, dueItem{at: at, seq: d.seq, fn: fn})
	d.mu.Unlock()
	if first {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

func (d *delayLine) run() {
	defer close(d.done)
	tm := time.NewTimer(time.Hour)
	defer tm.Stop()
	var due []func()
	for {
		d.mu.Lock()
		now := time.Now()
		due = due[:0]
		for len(d.h) > 0 && !d.h[0].at.After(now) {
			due = append(due, heap.Pop(&d.h).(dueItem).fn)
		}
		wait := time.Hour
		if len(d.h) > 0 {
			wait = d.h[0].at.Sub(now)
		}
		d.mu.Unlock()
		for _, fn := range due {
			fn()
		}
		if len(due) > 0 {
			continue
		}
		tm.Reset(wait)
		select {
		case <-d.quit:
			return
		case <-d.wake:
			tm.Stop() // Go 1.23+ timers: no stale tick after Stop
		case <-tm.C:
		}
	}
}

// pipe is one direction of a stream: chunks written with the time they
// become readable.
type pipe struct {
	mu       sync.Mutex
	chunks   []chunk
	lastAt   time.Time
	eof      bool // the writer closed; readable after eofAt
	eofAt    time.Time
	rclosed  bool          // the reader closed
	notify   chan struct{} // closed and replaced on every change
	deadline time.Time     // the reader's deadline
}

type chunk struct {
	b  []byte
	at time.Time
}

func newPipe() *pipe { return &pipe{notify: make(chan struct{})} }

// signalLocked wakes every waiter. The caller holds mu.
func (p *pipe) signalLocked() {
	close(p.notify)
	p.notify = make(chan struct{})
}

// streamConn is one end of an in-memory TCP connection with latency.
type streamConn struct {
	local, remote *transport
	rx, tx        *pipe
	closed        atomic.Bool
	wdeadline     atomic.Pointer[time.Time]
}

var _ net.Conn = (*streamConn)(nil)

// newStreamPair returns connected ends at a and b.
func newStreamPair(a, b *transport) (*streamConn, *streamConn) {
	ab, ba := newPipe(), newPipe()
	return &streamConn{local: a, remote: b, rx: ba, tx: ab}, &streamConn{local: b, remote: a, rx: ab, tx: ba}
}

// Read reads what has arrived, waiting for the next chunk, the writer's
// close (io.EOF) or the read deadline (os.ErrDeadlineExceeded).
func (c *streamConn) Read(b []byte) (int, error) {
	p := c.rx
	for {
		p.mu.Lock()
		if p.rclosed {
			p.mu.Unlock()
			return 0, net.ErrClosed
		}
		now := time.Now()
		var wait time.Duration = -1
		switch {
		case len(p.chunks) > 0:
			ch := &p.chunks[0]
			if !now.Before(ch.at) {
				n := copy(b, ch.b)
				ch.b = ch.b[n:]
				if len(ch.b) == 0 {
					p.chunks[0] = chunk{}
					p.chunks = p.chunks[1:]
				}
				p.mu.Unlock()
				c.local.stats.strBytesRecv.Add(uint64(n))
				return n, nil
			}
			wait = ch.at.Sub(now)
		case p.eof:
			if !now.Before(p.eofAt) {
				p.mu.Unlock()
				return 0, io.EOF
			}
			wait = p.eofAt.Sub(now)
		}
		if !p.deadline.IsZero() {
			dl := p.deadline.Sub(now)
			if dl <= 0 {
				p.mu.Unlock()
				return 0, os.ErrDeadlineExceeded
			}
			if wait < 0 || dl < wait {
				wait = dl
			}
		}
		notify := p.notify
		p.mu.Unlock()
		if wait < 0 {
			<-notify
			continue
		}
		tm := time.NewTimer(wait)
		select {
		case <-notify:
			tm.Stop()
		case <-tm.C:
		}
	}
}

// Write queues b for the peer after one one-way delay. It never blocks.
// Writes between live hosts are never lost; when either host is dead the
// bytes vanish.
func (c *streamConn) Write(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if dl := c.wdeadline.Load(); dl != nil && !dl.IsZero() && !time.Now().Before(*dl) {
		return 0, os.ErrDeadlineExceeded
	}
	if c.local.down.Load() || c.remote.down.Load() {
		return len(b), nil
	}
	d, _ := c.local.delay(c.remote, false)
	p := c.tx
	p.mu.Lock()
	if p.rclosed {
		p.mu.Unlock()
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: errors.New("gossipsim: connection reset by peer")}
	}
	at := time.Now().Add(d)
	if at.Before(p.lastAt) {
		at = p.lastAt
	}
	p.lastAt = at
	p.chunks = append(p.chunks, chunk{b: bytes.Clone(b), at: at})
	p.signalLocked()
	p.mu.Unlock()
	c.local.stats.strBytesSent.Add(uint64(len(b)))
	return len(b), nil
}

// Close closes this end: its reads fail, and the peer reads io.EOF after
// what was already written arrives.
func (c *streamConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.rx.mu.Lock()
	c.rx.rclosed = true
	c.rx.chunks = nil
	c.rx.signalLocked()
	c.rx.mu.Unlock()
	d, _ := c.local.delay(c.remote, false)
	p := c.tx
	p.mu.Lock()
	if !p.eof {
		p.eof = true
		p.eofAt = time.Now().Add(d)
		if p.eofAt.Before(p.lastAt) {
			p.eofAt = p.lastAt
		}
		p.signalLocked()
	}
	p.mu.Unlock()
	return nil
}

// LocalAddr returns this member's gossip address.
func (c *streamConn) LocalAddr() net.Addr { return c.local.tcpAddr }

// RemoteAddr returns the peer's gossip address.
func (c *streamConn) RemoteAddr() net.Addr { return c.remote.tcpAddr }

// SetDeadline sets the read and write deadlines.
func (c *streamConn) SetDeadline(t time.Time) error {
	_ = c.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}

// SetReadDeadline sets the read deadline and wakes a blocked Read so that
// it observes it.
func (c *streamConn) SetReadDeadline(t time.Time) error {
	c.rx.mu.Lock()
	c.rx.deadline = t
	c.rx.signalLocked()
	c.rx.mu.Unlock()
	return nil
}

// SetWriteDeadline sets the write deadline. Writes never block, so it
// only fails writes made after it.
func (c *streamConn) SetWriteDeadline(t time.Time) error {
	c.wdeadline.Store(&t)
	return nil
}
