package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/node/client"
	"github.com/petrel-mesh/petrel/node/meshtls"
	"github.com/petrel-mesh/petrel/routing"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Forwarding. A node that cannot serve an inference request itself (the
// model is not here or not ready, its queue is full, it is shutting down)
// sends it on to the best peer that has the model ready, over HTTP/3 with
// mutual TLS and binary tensors, and failing that to the central tier.
//
// Mesh headers. A forwarded request carries:
//   - Petrel-Hops: how many hops it took so far (1 on the first forward);
//     a node does not forward a request that took MaxHops hops;
//   - Petrel-Via: the node ids it passed through, never chosen again;
//   - Petrel-Timeout: what is left of the client's deadline, so that no
//     hop outlives it.
//
// Only a mesh peer may send Petrel-Hops or Petrel-Via: the node accepts
// them only from a client that presented a certificate of the mesh CA
// (a forged hop count from anyone else is a 403), and rejects malformed
// values with a 400.
//
// The answer is relayed as the peer sent it (status, body, encoding), with
// Petrel-Served-By naming the node that ran the model and
// Petrel-Forwarded-By this node.
const (
	HeaderHops        = "Petrel-Hops"
	HeaderVia         = "Petrel-Via"
	HeaderForwardedBy = "Petrel-Forwarded-By"
)

// maxViaLen bounds the Petrel-Via header.
const maxViaLen = 1024

// meshHop is what a request says about its path through the mesh.
type meshHop struct {
	hops int
	via  []string
}

// errMeshHeaders are mesh headers from a client that is not a mesh peer.
var errMeshHeaders = errors.New("Petrel-Hops and Petrel-Via are for mesh peers only: the client presented no certificate of the mesh CA")

// parseMeshHop reads and checks the mesh headers of r.
func parseMeshHop(r *http.Request, maxHops int) (meshHop, int, error) {
	var h meshHop
	hops, via := r.Header.Get(HeaderHops), r.Header.Get(HeaderVia)
	if hops == "" && via == "" {
		return h, 0, nil
	}
	if _, ok := meshtls.PeerID(r.TLS); !ok {
		return h, http.StatusForbidden, errMeshHeaders
	}
	if hops != "" {
		n, err := strconv.Atoi(hops)
		if err != nil || n < 1 || n > maxHops {
			return h, http.StatusBadRequest, fmt.Errorf("header %s %q: want an integer in 1..%d", HeaderHops, hops, maxHops)
		}
		h.hops = n
	}
	if via != "" {
		if len(via) > maxViaLen {
			return h, http.StatusBadRequest, fmt.Errorf("header %s: %d bytes, at most %d", HeaderVia, len(via), maxViaLen)
		}
		for id := range strings.SplitSeq(via, ",") {
			id = strings.TrimSpace(id)
			if id == "" {
				return h, http.StatusBadRequest, fmt.Errorf("header %s %q: empty node id", HeaderVia, via)
			}
			h.via = append(h.via, id)
		}
	}
	if len(h.via) > max(h.hops, 1) {
		return h, http.StatusBadRequest, fmt.Errorf("header %s lists %d nodes for %d hops", HeaderVia, len(h.via), h.hops)
	}
	return h, 0, nil
}

// peerTarget is one peer that could take a forwarded request.
type peerTarget struct {
	ID, Role, QUICAddr string
	RTT                time.Duration
	RTTSource          routing.RTTSource
	InFlight, Queue    int
	Ready              bool
}

// peerSource lists the peers that could serve a model.
type peerSource interface {
	targets(model, version string) []peerTarget
}

// fallback is one central-tier URL with its circuit breaker.
type fallback struct {
	base    string
	client  *http.Client
	breaker *routing.CircuitBreaker
}

// forwarder sends requests the node cannot serve to peers or the
// fallback tier.
type forwarder struct {
	n         *Node
	cfg       MeshConfig
	peers     peerSource
	policy    routing.Policy
	outliers  *routing.OutlierDetector
	budget    *routing.RetryBudget // failovers after an attempt failed
	hedges    *routing.RetryBudget // speculative second copies
	latency   *routing.LatencyTracker
	h3        *http3.Transport
	client    *http.Client // blobs, origin, HTTP/3 fallbacks
	pc        *peerConns   // forwarded inference requests
	fallbacks []*fallback
	maxTries  int
}

// fallbackFailures is how many consecutive failures open a fallback
// URL's circuit (for 5 s, then one probe request).
const fallbackFailures = 3

// forwardAttempts is how many peers one request may try (the first, a
// hedge or retry, and one more), within the retry budget.
const forwardAttempts = 3

func newForwarder(n *Node, cfg MeshConfig, peers peerSource, tlsCfg *tls.Config) (*forwarder, error) {
	policy, err := routing.NewPolicy(cfg.Policy, routing.PolicyOptions{ServiceTime: time.Millisecond, Seed: 1})
	if err != nil {
		return nil, err
	}
	h3 := &http3.Transport{
		TLSClientConfig: tlsCfg,
		// A peer that does not complete a handshake in 2 s is down (or
		// too far to be worth it); the next one gets the request.
		QUICConfig: &quic.Config{HandshakeIdleTimeout: 2 * time.Second, MaxIdleTimeout: 2 * time.Minute, KeepAlivePeriod: 15 * time.Second},
	}
	f := &forwarder{
		n: n, cfg: cfg, peers: peers, policy: policy,
		outliers: routing.NewOutlierDetector(routing.OutlierConfig{ConsecutiveFailures: 3, BaseEjection: 5 * time.Second}),
		// Two budgets, so that speculative hedges (which multiply when
		// latencies drift up) can never use up the retries a request needs
		// when a peer really fails.
		budget:   routing.NewRetryBudget(0.2, 10, 10*time.Second, nil),
		hedges:   routing.NewRetryBudget(0.1, 5, 10*time.Second, nil),
		latency:  routing.NewLatencyTracker(512),
		h3:       h3,
		client:   &http.Client{Transport: h3},
		maxTries: forwardAttempts,
	}
	f.pc = newPeerConns(h3, tlsCfg, h3.QUICConfig)
	for _, u := range cfg.Fallback {
		fb := &fallback{base: strings.TrimRight(u, "/"), breaker: routing.NewCircuitBreaker(routing.BreakerConfig{FailureThreshold: fallbackFailures, OpenFor: 5 * time.Second})}
		switch cfg.FallbackProtocol {
		case "h3":
			fb.client = f.client
		default:
			tr := &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 64, IdleConnTimeout: 2 * time.Minute}
			var p http.Protocols
			p.SetHTTP1(cfg.FallbackProtocol == "h1")
			if cfg.FallbackProtocol == "h2" {
				p.SetHTTP2(true)
				p.SetUnencryptedHTTP2(true)
			}
			tr.Protocols = &p
			fb.client = &http.Client{Transport: tr}
		}
		f.fallbacks = append(f.fallbacks, fb)
	}
	return f, nil
}

// encodeHop re-encodes a request for the next hop (binary tensors) with
// its mesh headers: the hop count, and Via with this node appended.
func (f *forwarder) encodeHop(req *oip.Request, hop meshHop) ([]byte, http.Header, []string, error) {
	fwd := *req
	fwd.Timeout = 0 // the deadline travels in Petrel-Timeout
	body, jsonLen, err := oip.AppendRequest(nil, &fwd, true)
	if err != nil {
		return nil, nil, nil, err
	}
	via := append(slices.Clip(hop.via), f.n.cfg.ID)
	hdr := http.Header{
		HeaderHops: {strconv.Itoa(hop.hops + 1)},
		HeaderVia:  {strings.Join(via, ",")},
	}
	if jsonLen < len(body) {
		hdr.Set("Content-Type", "application/octet-stream")
		hdr.Set("Inference-Header-Content-Length", strconv.Itoa(jsonLen))
	} else {
		hdr.Set("Content-Type", "application/json")
	}
	return body, hdr, via, nil
}

// originClient is the client for the origin URL: HTTP/3 with the mesh
// certificate for https, plain HTTP otherwise.
func (f *forwarder) originClient() *http.Client {
	if strings.HasPrefix(f.cfg.Origin, "https://") {
		return f.client
	}
	return http.DefaultClient
}

func (f *forwarder) close() {
	f.pc.close()
	f.h3.Close()
	for _, fb := range f.fallbacks {
		fb.client.CloseIdleConnections()
	}
}

// relayed is a peer's whole answer.
type relayed struct {
	status int
	header http.Header
	body   []byte
	node   string // the peer id or fallback URL that answered
}

// final reports whether an answer ends the request: success, or a client
// error that another node would give too. 429, 5xx and transport errors
// let the next peer try.
func (a *relayed) final() bool {
	return a.status < 500 && a.status != http.StatusTooManyRequests && a.status != http.StatusNotFound
}

// errNoPeer means no peer or fallback could take the request.
var errNoPeer = errors.New("no peer and no fallback could serve it")

// forward sends req (already decoded and checked for syntax) on, and
// writes the answer. It returns false, writing nothing, when there is
// nowhere to send it; the caller then answers with its own error.
func (f *forwarder) forward(w http.ResponseWriter, r *http.Request, name, ver string, req *oip.Request, hop meshHop) (bool, error) {
	if hop.hops >= f.cfg.MaxHops {
		return false, nil
	}
	timeout, err := requestTimeout(r, req.Timeout)
	if err != nil {
		return false, err
	}
	body, hdr, via, err := f.encodeHop(req, hop)
	if err != nil {
		return false, fmt.Errorf("re-encode for forwarding: %w", err)
	}
	return f.relay(w, r, name, ver, client.InferPath(name, ver), body, hdr, via, timeout)
}

// forwardPredict forwards a /predict request for a model this node does
// not serve: the body goes as it came (it is the pre transform's input,
// which only the serving node interprets), with its Content-Type and
// Accept and the mesh headers. Results as for forward.
func (f *forwarder) forwardPredict(w http.ResponseWriter, r *http.Request, name, ver string, body []byte, hop meshHop) (bool, error) {
	if hop.hops >= f.cfg.MaxHops {
		return false, nil
	}
	timeout, err := requestTimeout(r, 0)
	if err != nil {
		return false, err
	}
	via := append(slices.Clip(hop.via), f.n.cfg.ID)
	hdr := http.Header{
		HeaderHops: {strconv.Itoa(hop.hops + 1)},
		HeaderVia:  {strings.Join(via, ",")},
	}
	for _, k := range []string{"Content-Type", "Accept"} {
		if v := r.Header.Get(k); v != "" {
			hdr.Set(k, v)
		}
	}
	return f.relay(w, r, name, ver, predictPath(name, ver), body, hdr, via, timeout)
}

// predictPath is the /predict path of a model (and version).
func predictPath(model, version string) string {
	return strings.TrimSuffix(client.InferPath(model, version), "/infer") + "/predict"
}

// relay sends an encoded request to the best peer with the model, else
// to the fallback tier, and writes the answer to w. It returns false,
// having written nothing, when nobody was there to ask.
func (f *forwarder) relay(w http.ResponseWriter, r *http.Request, name, ver, path string, body []byte, hdr http.Header, via []string, timeout time.Duration) (bool, error) {
	if timeout == 0 {
		timeout = f.cfg.ForwardTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	ans, err := f.toPeers(ctx, name, ver, path, body, hdr, via)
	if ans == nil {
		var ferr error
		ans, ferr = f.toFallback(ctx, path, body, hdr)
		err = errors.Join(err, ferr) // nil only when nobody was there to ask
	}
	if ans == nil {
		if err == nil {
			return false, nil
		}
		if ctx.Err() != nil {
			return true, f.writeErr(w, http.StatusGatewayTimeout, fmt.Errorf("request deadline exceeded while forwarding: %w", err))
		}
		return true, f.writeErr(w, http.StatusServiceUnavailable, fmt.Errorf("model %q is not served here and %w: %v", name, errNoPeer, err))
	}
	h := w.Header()
	for _, k := range []string{"Content-Type", "Inference-Header-Content-Length", HeaderServedBy, "Retry-After", HeaderCache} {
		if v := ans.header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	h.Set(HeaderForwardedBy, f.n.cfg.ID)
	h.Set("Content-Length", strconv.Itoa(len(ans.body)))
	w.WriteHeader(ans.status)
	w.Write(ans.body)
	f.n.metrics.forwards.WithLabelValues(forwardResult(ans)).Inc()
	return true, nil
}

func forwardResult(a *relayed) string {
	if a.status == http.StatusOK {
		return "ok"
	}
	return "error"
}

func (f *forwarder) writeErr(w http.ResponseWriter, status int, err error) error {
	f.n.metrics.forwards.WithLabelValues("failed").Inc()
	writeError(w, status, err.Error())
	return nil
}

// toPeers tries the best peers in order, hedging the first with the
// second after the recent p95 forward latency. It returns nil, nil when
// no peer has the model ready.
func (f *forwarder) toPeers(ctx context.Context, name, ver, path string, body []byte, hdr http.Header, via []string) (*relayed, error) {
	all := f.peers.targets(name, ver)
	cands := make([]routing.Candidate, 0, len(all))
	targets := make([]peerTarget, 0, len(all))
	for _, t := range all {
		if t.ID == f.n.cfg.ID || slices.Contains(via, t.ID) || t.QUICAddr == "" {
			continue
		}
		cands = append(cands, routing.Candidate{
			ID: t.ID, Role: t.Role, RTT: t.RTT, RTTSource: t.RTTSource,
			InFlight: t.InFlight, QueueDepth: t.Queue, Ready: t.Ready,
			Healthy: !f.outliers.Ejected(t.ID),
		})
		targets = append(targets, t)
	}
	order := f.policy.Order(name, cands)
	// Edge peers first, central ones after: the central tier is the
	// fallback, not the first choice.
	slices.SortStableFunc(order, func(a, b int) int {
		ca, cb := cands[a].Role == "central", cands[b].Role == "central"
		switch {
		case ca == cb:
			return 0
		case cb:
			return -1
		}
		return 1
	})
	if len(order) == 0 {
		return nil, nil
	}
	order = order[:min(len(order), f.maxTries)]
	f.budget.Deposit()
	f.hedges.Deposit()
	attempts := make([]func(context.Context) (*relayed, error), len(order))
	for i, idx := range order {
		t := targets[idx]
		attempts[i] = func(ctx context.Context) (*relayed, error) {
			start := time.Now()
			a, err := f.sendPeer(ctx, t, path, body, hdr)
			if err != nil || !a.final() {
				if ctx.Err() == nil { // a cancelled loser is not the peer's fault
					f.outliers.ReportFailure(t.ID)
				}
				if err == nil {
					err = fmt.Errorf("peer %s answered %d: %s", t.ID, a.status, bytes.TrimSpace(a.body))
				}
				return nil, err
			}
			f.outliers.ReportSuccess(t.ID)
			f.latency.Observe(time.Since(start))
			return a, nil
		}
	}
	return f.race(ctx, attempts)
}

// errHedgeSkipped: the hedge budget refused the hedge.
var errHedgeSkipped = errors.New("hedge skipped: retry budget exhausted")

// race runs attempts[0] on the calling goroutine; if it has not answered
// after the recent p95 forward latency, attempts[1] starts beside it (a
// hedge, within the retry budget) and the first success wins, cancelling
// the other. Failures fall through to the remaining attempts in order.
// The common case, one attempt that answers in time, costs no goroutine
// hand-off (which costs ~50 µs on a busy two-core machine).
func (f *forwarder) race(ctx context.Context, attempts []func(context.Context) (*relayed, error)) (*relayed, error) {
	first, rest := attempts[0], attempts[1:]
	if len(rest) == 0 {
		return first(ctx)
	}
	delay, ok := routing.HedgeDelay(f.latency, 0.95, time.Millisecond, time.Second)
	if !ok {
		delay = 50 * time.Millisecond
	}
	ctx0, cancel0 := context.WithCancel(ctx)
	defer cancel0()
	hctx, cancelH := context.WithCancel(ctx)
	defer cancelH()
	type result struct {
		a   *relayed
		err error
	}
	hedge := make(chan result, 1)
	timer := time.AfterFunc(delay, func() {
		if !f.hedges.TryWithdraw() {
			hedge <- result{nil, errHedgeSkipped}
			return
		}
		a, err := rest[0](hctx)
		if err == nil {
			cancel0() // the hedge won
		}
		hedge <- result{a, err}
	})
	a, err := first(ctx0)
	errs := []error{err}
	next := rest
	if !timer.Stop() { // the hedge started: settle the race
		if err == nil {
			cancelH()
			<-hedge
			return a, nil
		}
		h := <-hedge
		if h.err == nil {
			return h.a, nil
		}
		if h.err != errHedgeSkipped {
			errs = append(errs, h.err)
			next = rest[1:]
		}
	} else if err == nil {
		return a, nil
	}
	for _, attempt := range next {
		if ctx.Err() != nil || !f.budget.TryWithdraw() {
			break
		}
		a, err := attempt(ctx)
		if err == nil {
			return a, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// toFallback tries the central-tier URLs in order, each behind its
// circuit breaker.
func (f *forwarder) toFallback(ctx context.Context, path string, body []byte, hdr http.Header) (*relayed, error) {
	var errs []error
	for _, fb := range f.fallbacks {
		done, ok := fb.breaker.Allow()
		if !ok {
			errs = append(errs, fmt.Errorf("fallback %s: circuit open", fb.base))
			continue
		}
		a, err := f.send(ctx, fb.client, fb.base+path, body, hdr, fb.base)
		if err == nil && a.final() {
			done(true)
			return a, nil
		}
		done(false)
		if err == nil {
			err = fmt.Errorf("fallback %s answered %d: %s", fb.base, a.status, bytes.TrimSpace(a.body))
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// maxRelayBytes bounds a relayed answer.
const maxRelayBytes = 256 << 20

func (f *forwarder) send(ctx context.Context, c *http.Client, target string, body []byte, hdr http.Header, node string) (*relayed, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		return nil, errors.New("forward without a deadline")
	}
	left := time.Until(dl)
	if left <= 0 {
		return nil, context.DeadlineExceeded
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = hdr.Clone()
	req.Header.Set(HeaderTimeout, strconv.FormatInt(max(left.Milliseconds(), 1), 10))
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", node, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRelayBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read answer: %w", node, err)
	}
	if len(b) > maxRelayBytes {
		return nil, fmt.Errorf("%s: answer larger than %d bytes", node, maxRelayBytes)
	}
	return &relayed{status: resp.StatusCode, header: resp.Header, body: b, node: node}, nil
}
