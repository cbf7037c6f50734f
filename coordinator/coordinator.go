package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/georoute"
	"github.com/petrel-mesh/petrel/coordinator/validate"
	"github.com/petrel-mesh/petrel/models"
)

// Config configures a coordinator.
type Config struct {
	// DataDir holds the embedded NATS server's JetStream store and the
	// signing key (unless SigningKeyFile says otherwise).
	DataDir string
	// Listen is the management API's address (HTTP). Port 0 picks one.
	Listen string
	// NATSURL, when set, is an existing NATS server or cluster to use
	// instead of the embedded one; NATS holds the credentials for it.
	NATSURL string
	NATS    bus.ConnOptions
	// Embedded configures the embedded NATS server (when NATSURL is empty).
	// Its Dir defaults to DataDir/nats.
	Embedded bus.EmbeddedOptions
	// Prefix names the buckets, streams and subjects (default "petrel").
	Prefix string
	// Replicas of the buckets and stream (a NATS cluster wants 3).
	Replicas int
	// SigningKeyFile is the ed25519 key that signs manifests (created when
	// missing). Default DataDir/signing.key.
	SigningKeyFile string
	// Tokens are the management API's bearer tokens. Required.
	Tokens *Tokens
	// KeepVersions is how many versions of each model the registry keeps
	// (older ones are garbage-collected, unless serving). Default 5.
	KeepVersions int
	// MaxModelBytes bounds a pushed model. Default 256 MiB.
	MaxModelBytes int64
	// Validate configures the validation gate.
	Validate validate.Options
	// FL configures federated rounds (held-out data, automatic rounds).
	FL FLConfig
	// CIDRs maps client addresses to regions for /v1/route.
	CIDRs *georoute.CIDRTable
	// NodeTTL: a node whose status is older than this is not routed to.
	// Default 5 s.
	NodeTTL time.Duration
	// Tick is how often rollouts are evaluated. Default 1 s.
	Tick time.Duration
	// EnrolConfigFile, when set, is the YAML file of what enrolled edge
	// nodes receive (docs/enrol.md); New loads and checks it. Without it
	// POST /v1/enrol answers that enrolment is not configured.
	EnrolConfigFile string
	Logger          *slog.Logger
}

func (c *Config) defaults() error {
	if c.DataDir == "" {
		return errors.New("coordinator: data directory is not set")
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7070"
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("coordinator: listen address %q: %v", c.Listen, err)
	}
	if c.Tokens == nil || len(c.Tokens.list) == 0 {
		return errors.New("coordinator: no API tokens configured")
	}
	if c.KeepVersions == 0 {
		c.KeepVersions = 5
	}
	if c.KeepVersions < 1 {
		return fmt.Errorf("coordinator: keep versions %d: must be at least 1", c.KeepVersions)
	}
	if c.MaxModelBytes == 0 {
		c.MaxModelBytes = 256 << 20
	}
	if c.NodeTTL == 0 {
		c.NodeTTL = 5 * time.Second
	}
	if c.Tick == 0 {
		c.Tick = time.Second
	}
	if c.SigningKeyFile == "" {
		c.SigningKeyFile = filepath.Join(c.DataDir, "signing.key")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Coordinator is a running control plane.
type Coordinator struct {
	cfg    Config
	log    *slog.Logger
	signer *models.Signer
	names  bus.Names

	embedded *bus.Embedded
	selfUser bus.User
	nc       *nats.Conn
	b        *bus.Buckets

	ln  net.Listener
	srv *http.Server

	ingest *ingest
	ro     *rolloutController
	fl     *flState
	enrol  *enrolment // nil: enrolment is not configured

	// pushMu serialises registry writes of one coordinator (pushes, removals
	// and garbage collection); KV revisions guard against other ones.
	pushMu sync.Mutex

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New checks the configuration and loads (or creates) the signing key.
func New(cfg Config) (*Coordinator, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("coordinator: data directory: %w", err)
	}
	signer, err := models.LoadOrCreateSigner(cfg.SigningKeyFile)
	if err != nil {
		return nil, fmt.Errorf("coordinator: signing key: %w", err)
	}
	c := &Coordinator{cfg: cfg, log: cfg.Logger, signer: signer, names: bus.Names{Prefix: cfg.Prefix}}
	if cfg.EnrolConfigFile != "" {
		if c.enrol, err = loadEnrolment(cfg.EnrolConfigFile, c.names); err != nil {
			return nil, fmt.Errorf("coordinator: %w", err)
		}
	}
	return c, nil
}

// PublicKey is the key nodes verify manifests with.
func (c *Coordinator) PublicKey() ed25519.PublicKey { return c.signer.PublicKey() }

// Start starts (or connects to) NATS, provisions the buckets, and starts
// the ingest, the rollout controller and the management API.
func (c *Coordinator) Start(ctx context.Context) error {
	c.ctx, c.cancel = context.WithCancel(context.Background())
	url := c.cfg.NATSURL
	if url == "" {
		opts := c.cfg.Embedded
		if opts.Dir == "" {
			opts.Dir = filepath.Join(c.cfg.DataDir, "nats")
		}
		if opts.Host == "" {
			opts.Host = bus.DefaultHost
		}
		if opts.MaxMemory == 0 {
			opts.MaxMemory = bus.DefaultMaxMemory
		}
		if opts.MaxStore == 0 {
			opts.MaxStore = bus.DefaultMaxStore
		}
		if len(opts.Users) > 0 {
			// Authentication is on: the coordinator gets a user of its own.
			pw := make([]byte, 24)
			rand.Read(pw)
			c.selfUser = bus.User{Name: "petrel-coordinator", Password: hex.EncodeToString(pw)}
			opts.Users = append(slices.Clone(opts.Users), c.selfUser)
		}
		if opts.Logger == nil {
			opts.Logger = c.log.With("component", "nats")
		}
		e, err := bus.StartEmbedded(opts)
		if err != nil {
			return fmt.Errorf("coordinator: embedded NATS: %w", err)
		}
		c.embedded = e
		url = e.ClientURL()
	}
	co := c.cfg.NATS
	co.URL = url
	if c.selfUser.Name != "" {
		co.User, co.Password = c.selfUser.Name, c.selfUser.Password
	}
	if co.Name == "" {
		co.Name = "petrel-coordinator"
	}
	if co.Logger == nil {
		co.Logger = c.log
	}
	nc, err := bus.Connect(co)
	if err != nil {
		c.Close()
		return fmt.Errorf("coordinator: connect to NATS at %s: %w", url, err)
	}
	c.nc = nc
	b, err := bus.Provision(ctx, nc, c.names, bus.ProvisionOptions{Replicas: c.cfg.Replicas})
	if err != nil {
		c.Close()
		return fmt.Errorf("coordinator: provision NATS buckets: %w", err)
	}
	c.b = b
	c.ingest = newIngest(c)
	if err := c.ingest.start(); err != nil {
		c.Close()
		return err
	}
	c.ro = newRolloutController(c)
	if err := c.ro.load(ctx); err != nil {
		c.Close()
		return err
	}
	if err := c.startFL(ctx); err != nil {
		c.Close()
		return err
	}
	c.ln, err = net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		c.Close()
		return fmt.Errorf("coordinator: listen %s: %w", c.cfg.Listen, err)
	}
	c.srv = &http.Server{
		Handler:           c.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
	}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		if err := c.srv.Serve(c.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("management API stopped", "err", err)
		}
	}()
	go func() {
		defer c.wg.Done()
		c.ro.run(c.ctx)
	}()
	c.log.Info("coordinator started", "api", c.URL(), "nats", url, "key_id", c.signer.KeyID())
	return nil
}

// URL is the management API's base URL.
func (c *Coordinator) URL() string {
	if c.ln == nil {
		return ""
	}
	return "http://" + c.ln.Addr().String()
}

// NATSURL is the URL nodes connect to.
func (c *Coordinator) NATSURL() string {
	if c.embedded != nil {
		return c.embedded.ClientURL()
	}
	return c.cfg.NATSURL
}

// Buckets exposes the NATS buckets (tests, benchmarks).
func (c *Coordinator) Buckets() *bus.Buckets { return c.b }

// Close stops the API, the controller and NATS. Idempotent.
func (c *Coordinator) Close() {
	c.once.Do(func() {
		if c.cancel != nil {
			c.cancel()
		}
		if c.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c.srv.Shutdown(ctx)
			cancel()
		}
		c.wg.Wait()
		if c.fl != nil {
			c.fl.wg.Wait()
		}
		if c.ingest != nil {
			c.ingest.stop()
		}
		if c.nc != nil {
			c.nc.Drain()
			c.nc.Close()
		}
		if c.embedded != nil {
			c.embedded.Shutdown()
		}
	})
}

// audit records an event; a failure to record is logged, and returned so
// that callers that must not proceed without it can stop.
func (c *Coordinator) audit(ctx context.Context, ev bus.AuditEvent) error {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if err := bus.PublishAudit(ctx, c.b.JS, c.names, ev); err != nil {
		c.log.Error("audit event not recorded", "kind", ev.Kind, "model", ev.Model, "err", err)
		return err
	}
	return nil
}
