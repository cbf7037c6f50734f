package netem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// tcpQueueBytes bounds the bytes one direction of a connection holds
	// in its delay line before the relay stops reading from the sender.
	tcpQueueBytes = 16 << 20

	// maxTCPConns bounds concurrent relayed connections; further ones
	// are accepted and closed at once.
	maxTCPConns = 1024

	// tcpDialTimeout bounds dialing the target for one connection.
	tcpDialTimeout = 10 * time.Second

	// acceptBackoffMax caps the pause after a failed Accept (for example
	// EMFILE), as net/http does.
	acceptBackoffMax = time.Second
)

// TCPRelay forwards TCP connections to one target through an emulated
// link. Create it with [NewTCPRelay]; it runs until Close.
type TCPRelay struct {
	ln     *net.TCPListener
	target *net.TCPAddr
	shaper *shaper
	stats  counters
	ctx    context.Context // cancelled by Close, aborting dials
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[*tcpConn]struct{}
	closed bool

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// tcpConn is one relayed connection: the accepted client side, the dialed
// target side and a delay line per direction.
type tcpConn struct {
	client, server *net.TCPConn
	up, down       *delayLine // client→server, server→client
	open           atomic.Int32
	once           sync.Once
}

// NewTCPRelay listens for TCP on listen (for example "127.0.0.1:0") and
// relays each accepted connection to target ("host:port"), delaying the
// bytes in each direction as cfg says. cfg.Loss must be zero: a byte
// stream cannot lose data (emulate loss with a UDP relay under QUIC).
func NewTCPRelay(listen, target string, cfg LinkConfig) (*TCPRelay, error) {
	if err := validateTCP(cfg); err != nil {
		return nil, err
	}
	taddr, err := net.ResolveTCPAddr("tcp", target)
	if err != nil {
		return nil, fmt.Errorf("netem: target %q: %w", target, err)
	}
	if taddr.Port == 0 || taddr.IP == nil || taddr.IP.IsUnspecified() {
		return nil, fmt.Errorf("netem: target %q: need a host and a non-zero port", target)
	}
	laddr, err := net.ResolveTCPAddr("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("netem: listen address %q: %w", listen, err)
	}
	ln, err := net.ListenTCP("tcp", laddr)
	if err != nil {
		return nil, fmt.Errorf("netem: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &TCPRelay{
		ln:     ln,
		target: taddr,
		shaper: newShaper(cfg),
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[*tcpConn]struct{}),
	}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

func validateTCP(cfg LinkConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Loss != 0 {
		return fmt.Errorf("netem: loss %v: a TCP relay cannot drop stream bytes; use a UDP relay to emulate loss", cfg.Loss)
	}
	return nil
}

// Addr returns the address clients connect to.
func (r *TCPRelay) Addr() net.Addr { return r.ln.Addr() }

// SetConfig changes the link for bytes read from now on; bytes already
// queued keep their due time. cfg.Loss must be zero.
func (r *TCPRelay) SetConfig(cfg LinkConfig) error {
	if err := validateTCP(cfg); err != nil {
		return err
	}
	r.shaper.set(cfg)
	return nil
}

// Config returns the current link configuration.
func (r *TCPRelay) Config() LinkConfig { return r.shaper.config() }

// Stats returns the relay's counters; Flows is the number of open
// connections.
func (r *TCPRelay) Stats() Stats {
	r.mu.Lock()
	n := len(r.conns)
	r.mu.Unlock()
	return r.stats.snapshot(n)
}

// Close stops the relay: it closes the listener and every relayed
// connection (both sides), drops queued bytes and waits for the relay's
// goroutines to return. It is idempotent and returns the error of the
// first call.
func (r *TCPRelay) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		conns := r.conns
		r.conns = nil
		r.mu.Unlock()
		r.cancel()
		r.closeErr = r.ln.Close()
		for c := range conns {
			c.close(true)
		}
		r.wg.Wait()
	})
	return r.closeErr
}

// accept runs the accept loop.
func (r *TCPRelay) accept() {
	defer r.wg.Done()
	var backoff time.Duration
	for {
		c, err := r.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or a similar condition: wait and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), acceptBackoffMax)
			select {
			case <-time.After(backoff):
			case <-r.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		r.wg.Add(1)
		go r.serve(c)
	}
}

// serve dials the target for client and starts the pipes.
func (r *TCPRelay) serve(client *net.TCPConn) {
	defer r.wg.Done()
	d := net.Dialer{Timeout: tcpDialTimeout}
	sc, err := d.DialContext(r.ctx, "tcp", r.target.String())
	if err != nil {
		r.stats.sendErrors.Add(1)
		_ = client.SetLinger(0) // reset, as a refused connection would
		_ = client.Close()
		return
	}
	c := &tcpConn{
		client: client,
		server: sc.(*net.TCPConn),
		up:     newDelayLine(int(^uint(0)>>1), tcpQueueBytes),
		down:   newDelayLine(int(^uint(0)>>1), tcpQueueBytes),
	}
	c.open.Store(2)
	r.mu.Lock()
	if r.closed || len(r.conns) >= maxTCPConns {
		r.mu.Unlock()
		if !r.closed {
			r.stats.overflow.Add(1)
		}
		c.close(true)
		return
	}
	r.conns[c] = struct{}{}
	r.wg.Add(4)
	r.mu.Unlock()

	go r.pipe(c, c.client, c.up)
	go r.pipe(c, c.server, c.down)
	go r.drain(c, c.up, c.server)
	go r.drain(c, c.down, c.client)
}

// pipe reads src in chunks and queues them on line, then queues an EOF
// marker when src ends. A read error other than EOF aborts c.
func (r *TCPRelay) pipe(c *tcpConn, src *net.TCPConn, line *delayLine) {
	defer r.wg.Done()
	for {
		buf := chunkPool.Get().(*[]byte)
		n, err := src.Read(*buf)
		if n > 0 {
			delay, _ := r.shaper.next()
			if !line.push(packet{due: time.Now().Add(delay), data: (*buf)[:n], buf: buf}, true) {
				chunkPool.Put(buf)
				return // the connection is closing
			}
		} else {
			chunkPool.Put(buf)
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			delay, _ := r.shaper.next()
			line.push(packet{due: time.Now().Add(delay), eof: true}, true)
			return
		}
		r.abort(c)
		return
	}
}

// drain delivers line's chunks to dst as they fall due. When it delivers
// the EOF marker it half-closes dst; when both directions have done so,
// the connection is closed. A write error aborts c.
func (r *TCPRelay) drain(c *tcpConn, line *delayLine, dst *net.TCPConn) {
	defer r.wg.Done()
	err := line.run(func(p packet) error {
		if p.eof {
			if err := dst.CloseWrite(); err != nil {
				return err
			}
			if c.open.Add(-1) == 0 {
				r.finish(c)
			}
			return errLineDone
		}
		_, err := dst.Write(p.data)
		release(p)
		if err != nil {
			r.stats.sendErrors.Add(1)
			return err
		}
		r.stats.forwarded.Add(1)
		return nil
	})
	if err != nil {
		r.abort(c)
	}
}

// finish closes c after both directions ended cleanly.
func (r *TCPRelay) finish(c *tcpConn) { r.remove(c, false) }

// abort closes both sides of c with a reset after a failure, so that
// each peer sees the connection break rather than end.
func (r *TCPRelay) abort(c *tcpConn) { r.remove(c, true) }

// remove takes c out of the table and closes it.
func (r *TCPRelay) remove(c *tcpConn, reset bool) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.close(reset)
}

// close closes both sockets (with a reset when asked) and both delay
// lines; every goroutine of c then returns. It is idempotent.
func (c *tcpConn) close(reset bool) {
	c.once.Do(func() {
		if reset {
			_ = c.client.SetLinger(0)
			_ = c.server.SetLinger(0)
		}
		_ = c.client.Close()
		_ = c.server.Close()
		c.up.close()
		c.down.close()
	})
}
