package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Defaults of DefaultEmbeddedOptions.
const (
	DefaultHost      = "127.0.0.1"
	DefaultPort      = 4222
	DefaultMaxMemory = 256 << 20 // JetStream memory storage limit
	DefaultMaxStore  = 10 << 30  // JetStream file storage limit
	// DefaultReadyTimeout is how long StartEmbedded waits for the server
	// to accept connections when EmbeddedOptions.ReadyTimeout is 0.
	DefaultReadyTimeout = 10 * time.Second
)

// User is a name and password a client may connect with.
type User struct {
	Name     string
	Password string
}

// EmbeddedOptions configures an in-process NATS server with JetStream.
// Start from DefaultEmbeddedOptions; every field is explicit.
type EmbeddedOptions struct {
	// Dir is where JetStream keeps its files (under Dir/jetstream).
	// Required. Data survives a restart on the same Dir.
	Dir string
	// Host is the address the client listener binds, e.g. "127.0.0.1" or
	// "0.0.0.0". Required.
	Host string
	// Port is the client port; 0 picks a free one (see ClientURL).
	Port int
	// MaxMemory and MaxStore are the JetStream limits, in bytes, of
	// memory and file storage. Both must be > 0.
	MaxMemory int64
	MaxStore  int64
	// Users, when set, makes authentication required: clients connect
	// with one of these names and passwords.
	Users []User
	// ServerName names the server in logs and monitoring. Optional.
	ServerName string
	// ReadyTimeout bounds the wait for the server to accept connections;
	// 0 means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultEmbeddedOptions returns options for a server that keeps its data
// under dir and listens on 127.0.0.1:4222 with the default limits.
func DefaultEmbeddedOptions(dir string) EmbeddedOptions {
	return EmbeddedOptions{
		Dir:       dir,
		Host:      DefaultHost,
		Port:      DefaultPort,
		MaxMemory: DefaultMaxMemory,
		MaxStore:  DefaultMaxStore,
	}
}

// Validate reports the first option that is missing or out of range.
func (o *EmbeddedOptions) Validate() error {
	switch {
	case o.Dir == "":
		return errors.New("embedded nats: no data dir")
	case o.Host == "":
		return errors.New("embedded nats: no host to listen on")
	case o.Port < 0 || o.Port > 65535:
		return fmt.Errorf("embedded nats: port %d not in [0, 65535] (0 picks a free port)", o.Port)
	case o.MaxMemory <= 0:
		return fmt.Errorf("embedded nats: JetStream memory limit %d, want > 0", o.MaxMemory)
	case o.MaxStore <= 0:
		return fmt.Errorf("embedded nats: JetStream store limit %d, want > 0", o.MaxStore)
	case o.ReadyTimeout < 0:
		return fmt.Errorf("embedded nats: negative ready timeout %v", o.ReadyTimeout)
	}
	seen := make(map[string]bool, len(o.Users))
	for i, u := range o.Users {
		if u.Name == "" {
			return fmt.Errorf("embedded nats: user %d has no name", i)
		}
		if u.Password == "" {
			return fmt.Errorf("embedded nats: user %q has no password", u.Name)
		}
		if seen[u.Name] {
			return fmt.Errorf("embedded nats: user %q appears twice", u.Name)
		}
		seen[u.Name] = true
	}
	return nil
}

// Embedded is a running in-process NATS server with JetStream.
type Embedded struct {
	srv  *server.Server
	url  string
	once sync.Once
}

// StartEmbedded starts a NATS server in this process with JetStream on a
// file store under opts.Dir, and waits until it accepts connections. The
// server installs no signal handlers; stop it with Shutdown.
func StartEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded nats: data dir: %w", err)
	}
	port := opts.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	sopts := &server.Options{
		ServerName:         opts.ServerName,
		Host:               opts.Host,
		Port:               port,
		NoSigs:             true,
		JetStream:          true,
		StoreDir:           opts.Dir,
		JetStreamMaxMemory: opts.MaxMemory,
		JetStreamMaxStore:  opts.MaxStore,
		// Without a system account the server spends no resources on
		// system events nobody here consumes.
		NoSystemAccount: true,
	}
	for _, u := range opts.Users {
		sopts.Users = append(sopts.Users, &server.User{Username: u.Name, Password: u.Password})
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sl := &serverLogger{log: logger.With("component", "nats-server")}
	srv.SetLoggerV2(sl, logger.Enabled(context.Background(), slog.LevelDebug), false, false)

	srv.Start()
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = DefaultReadyTimeout
	}
	if !waitReady(srv, sl, timeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		if f := sl.fatal(); f != "" {
			return nil, fmt.Errorf("embedded nats on %s:%d: %s", opts.Host, opts.Port, f)
		}
		return nil, fmt.Errorf("embedded nats on %s:%d: not accepting connections after %v", opts.Host, opts.Port, timeout)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		reason := sl.fatal()
		if reason == "" {
			reason = "unknown reason; see the server log"
		}
		return nil, fmt.Errorf("embedded nats: JetStream did not start (data dir %s): %s", opts.Dir, reason)
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats: unexpected listener address %v", srv.Addr())
	}
	host := opts.Host
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		// Listening on every interface; clients in this process use loopback.
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return &Embedded{
		srv: srv,
		url: "nats://" + net.JoinHostPort(host, strconv.Itoa(addr.Port)),
	}, nil
}

// waitReady waits until srv accepts connections, giving up early when the
// server reported a fatal error (say, its port is taken).
func waitReady(srv *server.Server, sl *serverLogger, timeout time.Duration) bool {
	const step = 50 * time.Millisecond
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		if srv.ReadyForConnections(min(step, left)) {
			return true
		}
		if sl.fatal() != "" {
			return false
		}
	}
}

// ClientURL is the URL clients connect to, with the port actually bound
// (useful with Port 0). A wildcard listen host is replaced by loopback.
func (e *Embedded) ClientURL() string { return e.url }

// Server is the underlying server, for monitoring and tests.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits until it has stopped. It is safe to
// call more than once and from several goroutines.
func (e *Embedded) Shutdown() {
	e.once.Do(func() {
		e.srv.Shutdown()
	})
	e.srv.WaitForShutdown()
}

// serverLogger routes the server's logs to slog: notices at Info,
// warnings at Warn, errors and fatal errors at Error, debug and trace at
// Debug. A fatal error never exits the process; the last one is kept so
// StartEmbedded can report why the server did not come up.
type serverLogger struct {
	log *slog.Logger

	mu        sync.Mutex
	lastFatal string
}

var _ server.Logger = (*serverLogger)(nil)

func (l *serverLogger) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastFatal
}

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	l.lastFatal = msg
	l.mu.Unlock()
	l.log.Error(msg, "fatal", true)
}
