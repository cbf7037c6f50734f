package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// MethodForward is the HTTP method of a request forwarded between mesh
// peers. It is the inference API's POST, sent the way a relay can send it
// cheaply: headers and body in one write on one QUIC stream, without a
// Content-Length (the stream's end ends the body). quic-go's RoundTrip
// sends a POST body from a goroutine of its own, so headers, body and FIN
// tend to leave in separate packets, each waking the peer; writing them
// together takes ~40-50 µs off a hop here (docs/PERFORMANCE.md). Nodes
// accept the method only from a client with a mesh certificate.
const MethodForward = "PETREL-FORWARD"

// errForwardMethod is MethodForward from a client that is not a mesh peer.
var errForwardMethod = errors.New(MethodForward + " is for mesh peers only: the client presented no certificate of the mesh CA")

// peerConns keeps one QUIC connection per peer address for forwarding.
type peerConns struct {
	tr   *http3.Transport
	tls  *tls.Config
	qcfg *quic.Config

	mu    sync.Mutex
	conns map[string]*peerConn
	old   map[string]time.Time // peers that refused MethodForward, until
}

// peerConn is one peer's connection, dialled once (single flight).
type peerConn struct {
	ready chan struct{}
	cc    *http3.ClientConn
	qc    *quic.Conn
	err   error
}

func newPeerConns(tr *http3.Transport, tlsCfg *tls.Config, qcfg *quic.Config) *peerConns {
	tc := http3.ConfigureTLSConfig(tlsCfg.Clone())
	return &peerConns{tr: tr, tls: tc, qcfg: qcfg, conns: map[string]*peerConn{}, old: map[string]time.Time{}}
}

// get returns a live connection to addr, dialling when there is none.
func (p *peerConns) get(ctx context.Context, addr string) (*http3.ClientConn, error) {
	p.mu.Lock()
	pc := p.conns[addr]
	if pc != nil {
		select {
		case <-pc.ready:
			if pc.err != nil || pc.qc.Context().Err() != nil {
				pc = nil // failed or closed: dial again
			}
		default: // being dialled
		}
	}
	if pc == nil {
		pc = &peerConn{ready: make(chan struct{})}
		p.conns[addr] = pc
		go p.dial(addr, pc)
	}
	p.mu.Unlock()
	select {
	case <-pc.ready:
		return pc.cc, pc.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *peerConns) dial(addr string, pc *peerConn) {
	defer close(pc.ready)
	ctx, cancel := context.WithTimeout(context.Background(), p.qcfg.HandshakeIdleTimeout+time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, addr, p.tls, p.qcfg)
	if err != nil {
		pc.err = err
		return
	}
	pc.qc, pc.cc = qc, p.tr.NewClientConn(qc)
}

func (p *peerConns) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, pc := range p.conns {
		select {
		case <-pc.ready:
			if pc.qc != nil {
				pc.qc.CloseWithError(0, "node shutting down")
			}
		default:
		}
		delete(p.conns, addr)
	}
}

// send forwards one request to a peer: headers and body in one write, then
// the answer. Cancelling ctx cancels the stream (a hedge's loser).
func (p *peerConns) send(ctx context.Context, addr, path string, body []byte, hdr http.Header, node string) (*relayed, error) {
	cc, err := p.get(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("%s: connect: %w", node, err)
	}
	str, err := cc.OpenRequestStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: open stream: %w", node, err)
	}
	stop := context.AfterFunc(ctx, func() {
		str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
		str.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
	})
	defer stop()
	req := &http.Request{Method: MethodForward, URL: forwardURL(addr, path), Header: hdr, Host: addr, Proto: "HTTP/3.0", ProtoMajor: 3}
	req = req.WithContext(ctx)
	if err := str.SendRequestHeader(req); err != nil {
		return nil, fmt.Errorf("%s: %w", node, ctxErr(ctx, err))
	}
	if _, err := str.Write(body); err != nil {
		return nil, fmt.Errorf("%s: %w", node, ctxErr(ctx, err))
	}
	if err := str.Close(); err != nil {
		return nil, fmt.Errorf("%s: %w", node, ctxErr(ctx, err))
	}
	resp, err := str.ReadResponse()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", node, ctxErr(ctx, err))
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if resp.ContentLength > 0 && resp.ContentLength <= maxRelayBytes {
		buf.Grow(int(resp.ContentLength))
	}
	if _, err := io.Copy(&buf, io.LimitReader(resp.Body, maxRelayBytes+1)); err != nil {
		return nil, fmt.Errorf("%s: read answer: %w", node, ctxErr(ctx, err))
	}
	if buf.Len() > maxRelayBytes {
		return nil, fmt.Errorf("%s: answer larger than %d bytes", node, maxRelayBytes)
	}
	return &relayed{status: resp.StatusCode, header: resp.Header, body: buf.Bytes(), node: node}, nil
}

// ctxErr prefers the context's error to the stream error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func forwardURL(addr, path string) *url.URL {
	return &url.URL{Scheme: "https", Host: addr, Path: path}
}

// sendPeer forwards to a mesh peer with what is left of the deadline.
func (f *forwarder) sendPeer(ctx context.Context, t peerTarget, path string, body []byte, hdr http.Header) (*relayed, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		return nil, errors.New("forward without a deadline")
	}
	left := time.Until(dl)
	if left <= 0 {
		return nil, context.DeadlineExceeded
	}
	if f.cfg.ForwardMethod == "post" || f.pc.legacy(t.QUICAddr) {
		return f.send(ctx, f.client, "https://"+t.QUICAddr+path, body, hdr, t.ID)
	}
	h := hdr.Clone()
	h.Set(HeaderTimeout, strconv.FormatInt(max(left.Milliseconds(), 1), 10))
	a, err := f.pc.send(ctx, t.QUICAddr, path, body, h, t.ID)
	if err == nil && a.status == http.StatusMethodNotAllowed {
		// A node from before PETREL-FORWARD: POST from now on.
		f.pc.markLegacy(t.QUICAddr)
		f.n.log.Info("peer does not know "+MethodForward+"; forwarding to it with POST", "peer", t.ID)
		return f.send(ctx, f.client, "https://"+t.QUICAddr+path, body, hdr, t.ID)
	}
	return a, err
}

// legacyFor is how long a peer that refused MethodForward gets POSTs
// before it is tried again (it may have been upgraded).
const legacyFor = 10 * time.Minute

func (p *peerConns) legacy(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	until, ok := p.old[addr]
	return ok && time.Now().Before(until)
}

func (p *peerConns) markLegacy(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.old[addr] = time.Now().Add(legacyFor)
}
