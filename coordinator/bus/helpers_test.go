package bus

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/petrel-mesh/petrel/models"
)

// testTimeout bounds every wait in these tests; none should come close.
const testTimeout = 20 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// startServer starts an embedded server on dir and port (0: any) and
// shuts it down at the end of the test.
func startServer(t *testing.T, dir string, port int, mod ...func(*EmbeddedOptions)) *Embedded {
	t.Helper()
	opts := DefaultEmbeddedOptions(dir)
	opts.Port = port
	opts.MaxMemory = 64 << 20
	opts.MaxStore = 256 << 20
	for _, m := range mod {
		m(&opts)
	}
	e, err := StartEmbedded(opts)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// connect opens a reconnecting client closed at the end of the test.
func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := Connect(ConnOptions{URL: url, Name: t.Name()})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// provisioned starts a server, connects and provisions the buckets.
func provisioned(t *testing.T) (*Embedded, *nats.Conn, *Buckets) {
	t.Helper()
	e := startServer(t, t.TempDir(), 0)
	nc := connect(t, e.ClientURL())
	b, err := Provision(testCtx(t), nc, Names{}, ProvisionOptions{})
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return e, nc, b
}

// logBuffer is a concurrency-safe log sink for tests that look at logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// eventually polls cond until it holds or the test times out.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sha is the digest of b.
func sha(b []byte) string { return models.DigestBytes(b) }

func itoa(i int) string { return strconv.Itoa(i) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
