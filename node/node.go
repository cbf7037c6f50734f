// Package node is the Petrel edge (and central) node: it serves models from
// a local repository over the Open Inference Protocol on HTTP/1.1, HTTP/2
// and HTTP/3, with a scheduler and dynamic batcher per model version, a
// response cache, Prometheus metrics and a graceful shutdown.
//
// Lifecycle: New validates the config; Start binds the listeners and loads
// the models; Shutdown stops accepting, drains in-flight work and releases
// the sessions, and is safe to call more than once. Run does all three
// around a context.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/models/wasm"
	"github.com/petrel-mesh/petrel/node/blobstore"
	"github.com/petrel-mesh/petrel/node/mesh"
	"github.com/petrel-mesh/petrel/node/respcache"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Version is the node software version reported by GET /v2.
var Version = "0.1.0-dev"

// Node is one Petrel node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics
	loader  SessionLoader
	models  *manager
	cache   *respcache.Cache

	tcpLn   net.Listener
	udpConn net.PacketConn
	httpSrv *http.Server
	h3Srv   *http3.Server
	// tls is the TLS material in use, swapped by ReloadTLS; tlsHost is
	// the host a generated or development certificate is issued for.
	tls     atomic.Pointer[tlsState]
	tlsHost string
	altSvc  string
	handler http.Handler
	// Shared header values (see hdrJSON).
	servedByHdr, altSvcHdr []string

	// Mesh (nil for a standalone node): gossip, forwarding.
	mesh     *mesh.Mesh
	fwd      *forwarder
	blobs    *blobstore.Store
	acq      *acquirer
	peerIdx  *peerIndex // model -> peers that hold it (mesh nodes)
	meshStop chan struct{}
	meshOnce sync.Once
	meshWG   sync.WaitGroup
	// ctl syncs models from the coordinator (nil without one).
	ctl *control
	// fb is feedback and online learning (nil without a feedback
	// directory).
	fb       *feedbackState
	shadowWG sync.WaitGroup
	// wasmRT runs the models' WebAssembly transforms; created on first
	// use (transformRuntime), closed at shutdown.
	wasmMu     sync.Mutex
	wasmRT     *wasm.Runtime
	wasmClosed bool
	// inflight counts inference requests being handled (the gossip load).
	inflight atomic.Int64

	draining     atomic.Bool
	started      atomic.Bool
	shutdownOnce sync.Once
	shutdownErr  error
	serveWG      sync.WaitGroup
	serveErr     chan error
}

// Option adjusts a Node at construction.
type Option func(*Node)

// WithSessionLoader replaces ONNX Runtime as the session loader (tests).
func WithSessionLoader(l SessionLoader) Option { return func(n *Node) { n.loader = l } }

// New checks the config and prepares a node; nothing is bound or loaded
// until Start.
func New(cfg Config, opts ...Option) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, reg: cfg.Registry, serveErr: make(chan error, 2)}
	if n.log == nil {
		n.log = slog.Default()
	}
	n.log = n.log.With("node", cfg.ID)
	if n.reg == nil {
		n.reg = prometheus.NewRegistry()
	}
	n.metrics = newMetrics(n.reg)
	if cfg.ResponseCacheBytes > 0 {
		n.cache = respcache.New(cfg.ResponseCacheBytes)
	}
	for _, o := range opts {
		o(n)
	}
	if n.loader == nil {
		if _, err := ort.Init(cfg.ORTLibrary); err != nil {
			return nil, err
		}
		base := cfg.Runtime
		n.loader = func(b []byte, mc *ModelConfig) (models.Session, error) {
			return ort.Load(b, mc.runtimeOptions(base))
		}
	}
	n.models = newManager(n)
	n.servedByHdr = []string{cfg.ID}
	n.handler = n.routes()
	return n, nil
}

// Handler is the node's HTTP handler (the same on every protocol).
func (n *Node) Handler() http.Handler { return n.handler }

// Addr is the bound TCP (and UDP) address, valid after Start.
func (n *Node) Addr() string {
	if n.tcpLn == nil {
		return ""
	}
	return n.tcpLn.Addr().String()
}

// TLS reports whether the TCP listener speaks TLS.
func (n *Node) TLS() bool { return !n.cfg.PlainTCP }

// Start binds the listeners, loads the models and starts serving.
func (n *Node) Start(ctx context.Context) error {
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("node already started")
	}
	if err := n.listen(); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(n.Addr())
	st, err := n.loadTLS(host)
	if err != nil {
		n.closeListeners()
		return err
	}
	n.tlsHost = host
	n.tls.Store(st)
	tcpTLS, h3TLSConf := n.serverTLSConfigs()
	if n.cfg.Mesh.Enabled {
		if err := n.openBlobs(); err != nil {
			n.closeListeners()
			return err
		}
	}
	if err := n.openFeedback(); err != nil { // nothing without a feedback directory
		n.closeListeners()
		return err
	}
	if err := n.loadInitial(ctx); err != nil {
		n.closeListeners()
		n.closeFeedback()
		n.models.closeAll(ctx)
		n.closeTransformRuntime(ctx)
		return err
	}

	n.httpSrv = &http.Server{
		Handler:           n.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	if n.cfg.PlainTCP {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP2(true)
		n.httpSrv.TLSConfig = tcpTLS
	}
	n.httpSrv.Protocols = &protos

	if n.udpConn != nil {
		_, port, _ := net.SplitHostPort(n.Addr())
		n.altSvc = `h3=":` + port + `"; ma=86400`
		n.altSvcHdr = []string{n.altSvc}
		n.h3Srv = &http3.Server{
			Handler:        n.handler,
			TLSConfig:      http3.ConfigureTLSConfig(h3TLSConf),
			QUICConfig:     &quic.Config{Allow0RTT: true, MaxIdleTimeout: 2 * time.Minute},
			MaxHeaderBytes: 64 << 10,
			IdleTimeout:    2 * time.Minute,
			Logger:         n.log,
		}
		n.serveWG.Go(func() {
			if err := n.h3Srv.Serve(n.udpConn); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) {
				n.serveErr <- fmt.Errorf("http3: %w", err)
			}
		})
	}
	n.serveWG.Go(func() {
		var err error
		if n.cfg.PlainTCP {
			err = n.httpSrv.Serve(n.tcpLn)
		} else {
			err = n.httpSrv.ServeTLS(n.tcpLn, "", "")
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.serveErr <- fmt.Errorf("http: %w", err)
		}
	})
	scheme := "https"
	if n.cfg.PlainTCP {
		scheme = "http"
	}
	n.log.Info("node serving", "addr", n.Addr(), "scheme", scheme, "http3", n.udpConn != nil)
	if n.cfg.Mesh.Enabled {
		if err := n.startMesh(n.meshClientTLS()); err != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return errors.Join(err, n.Shutdown(sctx))
		}
	}
	if n.cfg.Control.Enabled() {
		if err := n.startControl(); err != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return errors.Join(err, n.Shutdown(sctx))
		}
	}
	return nil
}

// h3TLS is the listener TLS config for HTTP/3: TLS 1.3 only.
func h3TLS(c *tls.Config) *tls.Config {
	tc := c.Clone()
	tc.MinVersion = tls.VersionTLS13
	return tc
}

// listen binds TCP, then UDP on the same port. With port 0 the UDP port may
// be taken by someone else; then it retries with another port.
func (n *Node) listen() error {
	host, port, _ := net.SplitHostPort(n.cfg.Listen)
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", n.cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen tcp %s: %w", n.cfg.Listen, err)
		}
		if !n.cfg.HTTP3 {
			n.tcpLn = ln
			return nil
		}
		_, bound, _ := net.SplitHostPort(ln.Addr().String())
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, bound))
		if err == nil {
			n.tcpLn, n.udpConn = ln, pc
			return nil
		}
		ln.Close()
		if port != "0" || attempt >= 10 {
			return fmt.Errorf("listen udp %s for HTTP/3: %w", net.JoinHostPort(host, bound), err)
		}
	}
}

func (n *Node) closeListeners() {
	if n.tcpLn != nil {
		n.tcpLn.Close()
	}
	if n.udpConn != nil {
		n.udpConn.Close()
	}
}

func (n *Node) loadInitial(ctx context.Context) error {
	names := n.cfg.Preload
	if n.cfg.LoadAll {
		repo, bad, err := scanRepository(n.cfg.ModelRepository)
		if err != nil {
			return err
		}
		for name, err := range bad {
			n.models.setFailed(name, err)
		}
		names = names[:0:0]
		for name := range repo {
			names = append(names, name)
		}
		// In name order: what loads first must not depend on map order
		// when models compete for memory (GPUMemoryBytes).
		slices.Sort(names)
	}
	for _, name := range names {
		// A model that fails to load is reported by the index and the
		// model endpoints; the node still starts.
		_ = n.models.load(ctx, name)
	}
	return nil
}

// Err returns a channel that receives a fatal serving error.
func (n *Node) Err() <-chan error { return n.serveErr }

// Shutdown stops accepting new connections, lets in-flight requests finish
// (bounded by ctx), drains the schedulers and closes the sessions. Safe to
// call more than once; later calls return the first call's result.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutdownOnce.Do(func() {
		// Announce the departure first, so that peers stop sending
		// requests here, then drain.
		n.leaveMesh(min(n.cfg.ShutdownTimeout, 5*time.Second))
		n.draining.Store(true)
		// Both transports stop accepting at once and drain side by side:
		// HTTP/3 must not take new connections while TCP drains.
		var httpErr, h3Err error
		var wg sync.WaitGroup
		if n.httpSrv != nil {
			wg.Go(func() {
				if err := n.httpSrv.Shutdown(ctx); err != nil {
					httpErr = fmt.Errorf("http shutdown: %w", err)
				}
			})
		}
		if n.h3Srv != nil {
			wg.Go(func() {
				if err := n.h3Srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
					h3Err = fmt.Errorf("http3 shutdown: %w", err)
				}
				n.h3Srv.Close()
			})
		}
		wg.Wait()
		errs := []error{httpErr, h3Err}
		n.closeListeners()
		n.serveWG.Wait()
		if n.ctl != nil {
			n.ctl.publishStatus() // draining: routes stop pointing here
			n.ctl.stop()
		}
		n.shadowWG.Wait()
		errs = append(errs, n.closeFeedback())
		n.models.closeAll(ctx)
		n.closeTransformRuntime(ctx)
		n.stopMesh()
		n.shutdownErr = errors.Join(errs...)
		n.log.Info("node stopped")
	})
	return n.shutdownErr
}

// Run starts the node and serves until ctx is cancelled, then shuts down
// gracefully within the configured timeout.
func (n *Node) Run(ctx context.Context) error {
	if err := n.Start(ctx); err != nil {
		return err
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-n.serveErr:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.ShutdownTimeout)
	defer cancel()
	return errors.Join(serveErr, n.Shutdown(sctx))
}

// LoadModel (re)loads a model from the repository.
func (n *Node) LoadModel(ctx context.Context, name string) error { return n.models.load(ctx, name) }

// UnloadModel drains and unloads a model.
func (n *Node) UnloadModel(ctx context.Context, name string) error {
	return n.models.unload(ctx, name)
}
