package netem

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// DefaultFlowIdleTimeout is how long a UDP flow may see no datagram in
	// either direction before the relay closes it and its upstream
	// socket. It matches the order of Linux conntrack's UDP timeouts
	// (30 s unreplied, 120 s for a stream) and QUIC's default idle
	// timeout (30 s), so a live QUIC connection keeps its flow.
	DefaultFlowIdleTimeout = 2 * time.Minute

	// maxUDPFlows bounds the flow table; datagrams from further clients
	// are dropped as overflow.
	maxUDPFlows = 1024

	// udpQueuePackets and udpQueueBytes bound one direction of one flow,
	// like a router's interface queue (netem's default limit is 1000
	// packets; ours is larger because a QUIC sender on loopback can put
	// a whole congestion window in flight within one emulated delay).
	udpQueuePackets = 8192
	udpQueueBytes   = 16 << 20

	// maxDatagram is the largest UDP payload.
	maxDatagram = 64 << 10

	// udpSocketBuffer is the receive and send buffer size the relay asks
	// for on its sockets, so that a burst released by a delay line (or a
	// QUIC sender's burst) is not dropped by the kernel. The kernel caps
	// it at net.core.rmem_max / wmem_max; failure to raise it is ignored.
	udpSocketBuffer = 4 << 20
)

// UDPRelay forwards UDP datagrams between clients and one target through
// an emulated link. Create it with [NewUDPRelay]; it runs until Close.
type UDPRelay struct {
	conn   *net.UDPConn
	target *net.UDPAddr
	shaper *shaper
	idle   time.Duration
	stats  counters

	mu     sync.Mutex
	flows  map[netip.AddrPort]*udpFlow
	closed bool

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// udpFlow is one client's mapping: its upstream socket and a delay line
// per direction.
type udpFlow struct {
	client   netip.AddrPort
	up       *net.UDPConn
	toTarget *delayLine
	toClient *delayLine
	active   atomic.Int64 // UnixNano of the latest datagram either way
	once     sync.Once
}

// NewUDPRelay listens for UDP on listen (for example "127.0.0.1:0") and
// relays datagrams to target ("host:port") and the replies back, each
// direction delayed and thinned as cfg says. It fails when cfg is invalid,
// target does not resolve or listen cannot be bound.
func NewUDPRelay(listen, target string, cfg LinkConfig) (*UDPRelay, error) {
	return newUDPRelay(listen, target, cfg, DefaultFlowIdleTimeout)
}

func newUDPRelay(listen, target string, cfg LinkConfig, idle time.Duration) (*UDPRelay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	taddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, fmt.Errorf("netem: target %q: %w", target, err)
	}
	if taddr.Port == 0 || taddr.IP == nil || taddr.IP.IsUnspecified() {
		return nil, fmt.Errorf("netem: target %q: need a host and a non-zero port", target)
	}
	laddr, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("netem: listen address %q: %w", listen, err)
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("netem: %w", err)
	}
	growBuffers(conn)
	r := &UDPRelay{
		conn:   conn,
		target: taddr,
		shaper: newShaper(cfg),
		idle:   idle,
		flows:  make(map[netip.AddrPort]*udpFlow),
	}
	r.wg.Add(1)
	go r.readClients()
	return r, nil
}

// Addr returns the address clients send to.
func (r *UDPRelay) Addr() net.Addr { return r.conn.LocalAddr() }

// SetConfig changes the link for datagrams arriving from now on; those
// already queued keep their due time (and, to keep order, a smaller delay
// takes effect only behind them). The random source is re-seeded from
// cfg.Seed.
func (r *UDPRelay) SetConfig(cfg LinkConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	r.shaper.set(cfg)
	return nil
}

// Config returns the current link configuration.
func (r *UDPRelay) Config() LinkConfig { return r.shaper.config() }

// Stats returns the relay's counters.
func (r *UDPRelay) Stats() Stats {
	r.mu.Lock()
	n := len(r.flows)
	r.mu.Unlock()
	return r.stats.snapshot(n)
}

// Close stops the relay: it closes the listening socket and every flow,
// drops queued datagrams and waits for the relay's goroutines to return.
// It is idempotent and returns the error of the first call.
func (r *UDPRelay) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		flows := r.flows
		r.flows = nil
		r.mu.Unlock()
		r.closeErr = r.conn.Close()
		for _, f := range flows {
			f.close()
		}
		r.wg.Wait()
	})
	return r.closeErr
}

// readClients reads datagrams from clients and queues them toward the
// target on their flow.
func (r *UDPRelay) readClients() {
	defer r.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // transient (for example ENOBUFS); the socket is still usable
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		f := r.flow(from)
		if f == nil {
			continue
		}
		r.enqueue(f, f.toTarget, buf[:n])
	}
}

// enqueue applies the link model to one datagram and queues a copy.
func (r *UDPRelay) enqueue(f *udpFlow, line *delayLine, data []byte) {
	f.active.Store(time.Now().UnixNano())
	delay, drop := r.shaper.next()
	if drop {
		r.stats.lost.Add(1)
		return
	}
	p := packet{due: time.Now().Add(delay), data: append([]byte(nil), data...)}
	if !line.push(p, false) {
		r.stats.overflow.Add(1)
	}
}

// flow returns the flow of client, opening it when new. It returns nil
// (and counts the datagram as overflow) when the table is full or the
// upstream socket cannot be opened, and nil when the relay is closed.
func (r *UDPRelay) flow(client netip.AddrPort) *udpFlow {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if f := r.flows[client]; f != nil {
		return f
	}
	if len(r.flows) >= maxUDPFlows {
		r.stats.overflow.Add(1)
		return nil
	}
	up, err := net.DialUDP("udp", nil, r.target)
	if err != nil {
		r.stats.sendErrors.Add(1)
		return nil
	}
	growBuffers(up)
	f := &udpFlow{
		client:   client,
		up:       up,
		toTarget: newDelayLine(udpQueuePackets, udpQueueBytes),
		toClient: newDelayLine(udpQueuePackets, udpQueueBytes),
	}
	f.active.Store(time.Now().UnixNano())
	r.flows[client] = f
	r.wg.Add(3)
	go func() {
		defer r.wg.Done()
		_ = f.toTarget.run(func(p packet) error {
			r.count(f.up.Write(p.data))
			return nil
		})
	}()
	go func() {
		defer r.wg.Done()
		_ = f.toClient.run(func(p packet) error {
			r.count(r.conn.WriteToUDPAddrPort(p.data, f.client))
			return nil
		})
	}()
	go r.readTarget(f)
	return f
}

// growBuffers raises c's socket buffers to udpSocketBuffer, best effort.
func growBuffers(c *net.UDPConn) {
	_ = c.SetReadBuffer(udpSocketBuffer)
	_ = c.SetWriteBuffer(udpSocketBuffer)
}

// count records the outcome of one send.
func (r *UDPRelay) count(_ int, err error) {
	if err != nil {
		r.stats.sendErrors.Add(1)
		return
	}
	r.stats.forwarded.Add(1)
}

// readTarget reads the target's replies on f's upstream socket and queues
// them toward the client, and closes f once it has been idle for r.idle.
func (r *UDPRelay) readTarget(f *udpFlow) {
	defer r.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		last := time.Unix(0, f.active.Load())
		if idleFor := time.Since(last); idleFor >= r.idle {
			r.removeFlow(f)
			return
		}
		_ = f.up.SetReadDeadline(last.Add(r.idle))
		n, err := f.up.Read(buf)
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				continue // re-check idleness against the latest activity
			case errors.Is(err, syscall.ECONNREFUSED):
				// An ICMP port unreachable for an earlier datagram:
				// the target is not listening (yet). Keep the flow.
				continue
			default:
				r.removeFlow(f)
				return
			}
		}
		r.enqueue(f, f.toClient, buf[:n])
	}
}

// removeFlow takes f out of the table and closes it.
func (r *UDPRelay) removeFlow(f *udpFlow) {
	r.mu.Lock()
	if r.flows[f.client] == f {
		delete(r.flows, f.client)
	}
	r.mu.Unlock()
	f.close()
}

// close releases f's socket and delay lines; its goroutines then return.
func (f *udpFlow) close() {
	f.once.Do(func() {
		_ = f.up.Close()
		f.toTarget.close()
		f.toClient.close()
	})
}
