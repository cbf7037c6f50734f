package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Reconnect timing of Connect: a client waits ReconnectWait plus a random
// jitter of up to ReconnectJitter between attempts, forever.
const (
	ReconnectWait   = 250 * time.Millisecond
	ReconnectJitter = 750 * time.Millisecond
	// PingInterval and MaxPingsOut bound how long a silently dead server
	// goes unnoticed (about a minute).
	PingInterval = 20 * time.Second
	MaxPingsOut  = 3
)

// ConnOptions configures a client connection. At most one of User and
// Password, Token, and CredsFile may be set.
type ConnOptions struct {
	// URL is one server URL, or several separated by commas
	// ("nats://a:4222,nats://b:4222"). Required.
	URL string
	// User and Password authenticate with a name and password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// CredsFile is a NATS credentials file (JWT and nkey seed).
	CredsFile string
	// Name identifies the connection in the server's monitoring.
	Name string
	// RetryOnFailedConnect makes Connect succeed even when no server is
	// reachable yet: the connection keeps trying in the background, and
	// publishes are buffered until it connects. A node sets it so that it
	// can start while NATS is down.
	RetryOnFailedConnect bool
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
}

// Validate reports the first option that is missing or inconsistent.
func (o *ConnOptions) Validate() error {
	if strings.TrimSpace(o.URL) == "" {
		return errors.New("nats connection: no server URL")
	}
	for _, raw := range strings.Split(o.URL, ",") {
		raw = strings.TrimSpace(raw)
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("nats connection: server URL %q: %w", raw, err)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("nats connection: server URL %q: scheme %q, want nats, tls, ws or wss", raw, u.Scheme)
		}
		if u.Hostname() == "" {
			return fmt.Errorf("nats connection: server URL %q has no host", raw)
		}
	}
	methods := 0
	if o.User != "" || o.Password != "" {
		if o.User == "" {
			return errors.New("nats connection: password without a user name")
		}
		methods++
	}
	if o.Token != "" {
		methods++
	}
	if o.CredsFile != "" {
		if _, err := os.Stat(o.CredsFile); err != nil {
			return fmt.Errorf("nats connection: credentials file: %w", err)
		}
		methods++
	}
	if methods > 1 {
		return errors.New("nats connection: set only one of user and password, token, or credentials file")
	}
	return nil
}

// Connect opens a client connection that reconnects forever (see
// ReconnectWait and ReconnectJitter) and logs disconnects, reconnects,
// asynchronous errors and closing. With RetryOnFailedConnect it returns a
// connection that is still connecting when no server is reachable yet.
// The caller closes the connection.
func Connect(opts ConnOptions) (*nats.Conn, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "nats", "conn", opts.Name)
	nopts := []nats.Option{
		nats.Name(opts.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(ReconnectWait),
		nats.ReconnectJitter(ReconnectJitter, ReconnectJitter),
		nats.RetryOnFailedConnect(opts.RetryOnFailedConnect),
		nats.PingInterval(PingInterval),
		nats.MaxPingsOutstanding(MaxPingsOut),
		// Keep trying through authorization errors too (credentials may
		// be fixed on the server side); each failure is logged.
		nats.IgnoreAuthErrorAbort(),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			} else if !nc.IsClosed() {
				log.Warn("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted(), "reconnects", nc.Stats().Reconnects)
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Debug("nats reconnect attempt failed", "err", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				log.Warn("nats connection closed", "err", err)
				return
			}
			log.Info("nats connection closed")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Error("nats error", "subject", sub.Subject, "err", err)
				return
			}
			log.Error("nats error", "err", err)
		}),
		nats.LameDuckModeHandler(func(nc *nats.Conn) {
			log.Warn("nats server entering lame duck mode; will reconnect elsewhere", "url", nc.ConnectedUrlRedacted())
		}),
	}
	switch {
	case opts.User != "":
		nopts = append(nopts, nats.UserInfo(opts.User, opts.Password))
	case opts.Token != "":
		nopts = append(nopts, nats.Token(opts.Token))
	case opts.CredsFile != "":
		nopts = append(nopts, nats.UserCredentials(opts.CredsFile))
	}
	nc, err := nats.Connect(opts.URL, nopts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", redactURL(opts.URL), err)
	}
	return nc, nil
}

// redactURL hides passwords embedded in server URLs.
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}
