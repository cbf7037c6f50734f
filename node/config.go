package node

import (
	"errors"
	"fmt"
	"log/slog"
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
	// Mesh joins the node to a mesh of peers (gossip, forwarding,
	// fallback); the zero value is a standalone node.
	Mesh MeshConfig
	// Control connects the node to the coordinator over NATS (model sync,
	// rollouts, status); the zero value is a node without one.
	Control ControlConfig
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
	if err := c.Control.validate(); err != nil {
		return err
	}
	if c.Mesh.Enabled && !c.HTTP3 {
		return errors.New("a mesh node needs HTTP/3: peers forward requests and fetch artifacts over QUIC")
	}
	if err := c.Mesh.Validate(); err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	return nil
}

func autoRuntime() ort.Options {
	o := ort.DefaultOptions()
	o.IntraOpThreads = 0 // auto, per model size
	return o
}
