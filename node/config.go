package node

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"time"

	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is everything a node needs. DefaultConfig documents the defaults;
// Validate says what is wrong with a config before anything starts.
type Config struct {
	// ID names the node in responses (Petrel-Served-By) and logs.
	ID string
	// Listen is the TCP address for HTTP/1.1 and HTTP/2; HTTP/3 listens on
	// the same port over UDP. Port 0 picks a free port (see Node.Addr).
	Listen string
	// TLS: with CertFile and KeyFile the TCP listener speaks TLS (HTTP/1.1
	// and HTTP/2 by ALPN); with neither and DevTLS it uses a generated
	// development certificate; with PlainTCP it speaks cleartext HTTP/1.1
	// and h2c. HTTP/3 always uses TLS (given or generated).
	CertFile, KeyFile string
	PlainTCP          bool
	// DevCertDir, if set, is where a generated development certificate is
	// written (cert.pem, key.pem) so that clients can trust it.
	DevCertDir string
	// HTTP3 serves HTTP/3 over UDP on the TCP port and advertises it with
	// Alt-Svc. Default true.
	HTTP3 bool
	// ModelRepository is a directory laid out as <model>/<version>/model.onnx
	// (optional for a node with a coordinator, which sends the models)
	// with an optional <model>/config.json (see ModelConfig).
	ModelRepository string
	// LoadAll loads every model of the repository at start (default true);
	// otherwise only Preload.
	LoadAll bool
	Preload []string
	// MaxBodyBytes bounds request bodies (413 beyond). Default 64 MiB.
	MaxBodyBytes int64
	// ResponseCacheBytes bounds the response cache; 0 disables it. Models
	// opt in with response_cache in their config. Default 64 MiB.
	ResponseCacheBytes int64
	// Runtime is the default ONNX Runtime session configuration; models may
	// override parts of it in their config. IntraOpThreads 0 means auto:
	// see AutoIntraOpThreads.
	Runtime ort.Options
	// ORTLibrary is the path of libonnxruntime.so ("" = PETREL_ORT_LIB, then
	// the setup cache).
	ORTLibrary string
	// GPUMemoryBytes bounds the GPU memory of the model versions that run
	// on the CUDA provider, together: each counts its arena limit
	// (Runtime.GPUMemLimit or the model's gpu_mem_limit; without one, an
	// estimate, see GPUFootprint). Acquired versions are evicted, least
	// recently used first, to make room; a version that cannot fit is not
	// loaded. 0 means not bounded. See docs/gpu.md.
	GPUMemoryBytes int64
	// Mesh joins the node to a mesh of peers (gossip, forwarding,
	// fallback); the zero value is a standalone node.
	Mesh MeshConfig
	// Control connects the node to the coordinator over NATS (model sync,
	// rollouts, status); the zero value is a node without one.
	Control ControlConfig
	// Feedback configures the feedback log, remembered inputs, drift
	// detection and online learning; the zero value (no Dir) turns them
	// all off.
	Feedback FeedbackConfig
	// TransformCacheDir is where compiled WebAssembly transforms are cached
	// across restarts. Default: <Mesh.BlobDir>/wasm-cache on a mesh node
	// with a blob directory, else <os.TempDir()>/petrel-<ID>-wasm.
	TransformCacheDir string
	// TransformTimeout bounds one call into a transform (a guest that
	// loops is stopped after it). Default 100 ms.
	TransformTimeout time.Duration
	// ShutdownTimeout bounds the drain on shutdown. Default 30 s.
	ShutdownTimeout time.Duration
	// Logger and Registry are passed in; nil means slog.Default() and no
	// metrics registration (a private registry is then used for /metrics).
	Logger   *slog.Logger
	Registry *prometheus.Registry
}

// DefaultConfig returns a config with every default filled in.
func DefaultConfig() Config {
	return Config{
		ID:                 "node-1",
		Listen:             "127.0.0.1:8000",
		HTTP3:              true,
		LoadAll:            true,
		MaxBodyBytes:       64 << 20,
		ResponseCacheBytes: 64 << 20,
		Runtime:            autoRuntime(),
		ShutdownTimeout:    30 * time.Second,
	}
}

// Validate reports the first thing wrong with c.
func (c *Config) Validate() error {
	if c.ID == "" {
		return errors.New("node id is empty")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen address %q: %v", c.Listen, err)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("tls: give both a certificate file and a key file, or neither")
	}
	if c.PlainTCP && c.CertFile != "" {
		return errors.New("tls: plain TCP and a certificate are mutually exclusive")
	}
	if c.ModelRepository == "" && !c.Control.Enabled() {
		return errors.New("model repository directory is not set")
	}
	if c.MaxBodyBytes <= 0 {
		return fmt.Errorf("max body bytes %d: must be positive", c.MaxBodyBytes)
	}
	if c.ResponseCacheBytes < 0 {
		return fmt.Errorf("response cache bytes %d: must not be negative", c.ResponseCacheBytes)
	}
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("shutdown timeout %v: must not be negative", c.ShutdownTimeout)
	}
	if err := c.Runtime.Validate(); err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	if c.GPUMemoryBytes < 0 {
		return fmt.Errorf("gpu memory bytes %d: must not be negative (0 = not bounded)", c.GPUMemoryBytes)
	}
	if err := c.Control.validate(); err != nil {
		return err
	}
	if c.TransformTimeout < 0 {
		return fmt.Errorf("transform timeout %v is negative", c.TransformTimeout)
	}
	if c.Mesh.Enabled && !c.HTTP3 {
		return errors.New("a mesh node needs HTTP/3: peers forward requests and fetch artifacts over QUIC")
	}
	if err := c.Mesh.Validate(); err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	if err := c.Feedback.validate(); err != nil {
		return fmt.Errorf("feedback: %w", err)
	}
	return nil
}

// FeedbackConfig configures labelled feedback at the node (see
// docs/node.md, "Feedback and online learning"). Zero fields take the
// defaults noted.
type FeedbackConfig struct {
	// Dir is the directory of the durable feedback log. Empty disables
	// feedback: the feedback endpoints answer 404, and no inputs are
	// remembered, no drift measured, nothing learnt online.
	Dir string
	// Fsync is when a feedback request is acknowledged: "always" (default:
	// after fsync; an acknowledged example survives a machine crash) or
	// "interval" (after the write; synced every FsyncInterval, so a
	// machine crash may lose that interval's examples).
	Fsync string
	// FsyncInterval is the group commit period of "interval". Default 50 ms.
	FsyncInterval time.Duration
	// MaxBytes bounds the log's files; the oldest segments go first.
	// Default 1 GiB.
	MaxBytes int64
	// MaxAge drops examples older than this; 0 keeps them until MaxBytes
	// pushes them out.
	MaxAge time.Duration
	// KeepInputs is how many recent inference requests that carried an
	// "id" the node remembers per model (inputs, served version, predicted
	// class), for labels that arrive later. Default 10000.
	KeepInputs int
	// MaxBodyBytes bounds a feedback request body (413 beyond). Default
	// 8 MiB, never more than Config.MaxBodyBytes.
	MaxBodyBytes int64
	// HashKey keys the HMAC-SHA256 that replaces hashed personal
	// features (at least 16 bytes). Empty: a random key generated once
	// and kept in Dir/hash.key. Give every node the same key for features
	// to hash alike across the fleet.
	HashKey []byte
	// Personal holds personal data rules by model name, applied together
	// with the "personal" of the model's config.json (a feature is dropped
	// or hashed when either says so).
	Personal map[string]PersonalRule
	// DriftWindow is how many recent inputs the drift statistics cover.
	// Default 1000.
	DriftWindow int
	// DriftBaseline is how many inputs after a version loads make its
	// drift baseline when its manifest carries none. Default 1000.
	DriftBaseline int
	// Online configures online learning of the local model copies.
	Online OnlineConfig
}

// OnlineConfig configures online learning: SGD steps on a local copy of
// each model whose served version is a Petrel-written ONNX file, one step
// per batch of new feedback, in a background goroutine.
type OnlineConfig struct {
	// Disabled turns online learning off.
	Disabled bool
	// LR is the learning rate. Default 0.01.
	LR float64
	// Momentum of the SGD steps, in [0, 1). Default 0.
	Momentum float64
	// BatchSize is the most new examples one step takes. Default 32.
	BatchSize int
	// MaxPending bounds the examples waiting for a step per model; beyond
	// it the oldest are dropped (and counted). Default 4096.
	MaxPending int
}

// Defaults of FeedbackConfig.
const (
	DefaultFeedbackMaxBytes     = 1 << 30
	DefaultFeedbackKeepInputs   = 10000
	DefaultFeedbackMaxBodyBytes = 8 << 20
	DefaultDriftWindow          = 1000
	DefaultDriftBaseline        = 1000
	DefaultOnlineLR             = 0.01
	DefaultOnlineBatchSize      = 32
	DefaultOnlineMaxPending     = 4096
)

// withDefaults returns c with zero fields set to their defaults.
func (c FeedbackConfig) withDefaults(maxBody int64) FeedbackConfig {
	if c.Fsync == "" {
		c.Fsync = "always"
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultFeedbackMaxBytes
	}
	if c.KeepInputs == 0 {
		c.KeepInputs = DefaultFeedbackKeepInputs
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultFeedbackMaxBodyBytes
	}
	if maxBody > 0 && c.MaxBodyBytes > maxBody {
		c.MaxBodyBytes = maxBody
	}
	if c.DriftWindow == 0 {
		c.DriftWindow = DefaultDriftWindow
	}
	if c.DriftBaseline == 0 {
		c.DriftBaseline = DefaultDriftBaseline
	}
	if c.Online.LR == 0 {
		c.Online.LR = DefaultOnlineLR
	}
	if c.Online.BatchSize == 0 {
		c.Online.BatchSize = DefaultOnlineBatchSize
	}
	if c.Online.MaxPending == 0 {
		c.Online.MaxPending = DefaultOnlineMaxPending
	}
	return c
}

func (c *FeedbackConfig) validate() error {
	if c.Dir == "" {
		return nil
	}
	switch c.Fsync {
	case "", "always", "interval":
	default:
		return fmt.Errorf("fsync %q: want \"always\" or \"interval\"", c.Fsync)
	}
	if c.FsyncInterval < 0 || c.MaxAge < 0 {
		return errors.New("fsync interval and max age must not be negative")
	}
	if c.MaxBytes < 0 || (c.MaxBytes > 0 && c.MaxBytes < 1<<20) {
		return fmt.Errorf("max bytes %d: want at least 1 MiB", c.MaxBytes)
	}
	if c.KeepInputs < 0 || c.KeepInputs > 1<<20 {
		return fmt.Errorf("keep inputs %d: want 0 (default) to %d", c.KeepInputs, 1<<20)
	}
	if c.MaxBodyBytes < 0 {
		return fmt.Errorf("max body bytes %d: must not be negative", c.MaxBodyBytes)
	}
	if len(c.HashKey) > 0 && len(c.HashKey) < 16 {
		return fmt.Errorf("hash key of %d bytes: want at least 16", len(c.HashKey))
	}
	if c.DriftWindow < 0 || c.DriftWindow > 1<<16 || c.DriftBaseline < 0 || c.DriftBaseline > 1<<16 {
		return fmt.Errorf("drift window %d and baseline %d: want 0 (default) to %d", c.DriftWindow, c.DriftBaseline, 1<<16)
	}
	for name, r := range c.Personal {
		if err := r.validate(); err != nil {
			return fmt.Errorf("personal data rule of model %q: %w", name, err)
		}
	}
	o := c.Online
	if math.IsNaN(o.LR) || math.IsInf(o.LR, 0) || o.LR < 0 || o.LR > 10 {
		return fmt.Errorf("online learning rate %v: want (0, 10]", o.LR)
	}
	if math.IsNaN(o.Momentum) || o.Momentum < 0 || o.Momentum >= 1 {
		return fmt.Errorf("online momentum %v: want [0, 1)", o.Momentum)
	}
	if o.BatchSize < 0 || o.BatchSize > 4096 || o.MaxPending < 0 || o.MaxPending > 1<<20 {
		return fmt.Errorf("online batch size %d and max pending %d: want 0 (default) to 4096 and 1048576", o.BatchSize, o.MaxPending)
	}
	return nil
}

func autoRuntime() ort.Options {
	o := ort.DefaultOptions()
	o.IntraOpThreads = 0 // auto, per model size
	return o
}
