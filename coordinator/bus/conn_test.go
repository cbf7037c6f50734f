package bus

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestConnOptionsValidate(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "x.creds")
	if err := os.WriteFile(creds, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    ConnOptions
		want string
	}{
		{"plain", ConnOptions{URL: "nats://127.0.0.1:4222"}, ""},
		{"list", ConnOptions{URL: "nats://a:4222, tls://b:4222"}, ""},
		{"user", ConnOptions{URL: "nats://a:1", User: "u", Password: "p"}, ""},
		{"token", ConnOptions{URL: "nats://a:1", Token: "t"}, ""},
		{"creds", ConnOptions{URL: "nats://a:1", CredsFile: creds}, ""},
		{"no url", ConnOptions{}, "no server URL"},
		{"http", ConnOptions{URL: "http://a:1"}, "scheme"},
		{"no host", ConnOptions{URL: "nats://:4222"}, "no host"},
		{"bad second", ConnOptions{URL: "nats://a:1,b:2"}, "scheme"},
		{"password only", ConnOptions{URL: "nats://a:1", Password: "p"}, "password without"},
		{"two methods", ConnOptions{URL: "nats://a:1", User: "u", Token: "t"}, "only one"},
		{"missing creds", ConnOptions{URL: "nats://a:1", CredsFile: creds + ".missing"}, "credentials file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestConnectRetryOnFailedConnect: without the option, connecting to a
// server that is down fails; with it, Connect returns and the connection
// comes up once the server does.
func TestConnectRetryOnFailedConnect(t *testing.T) {
	port := freePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	if nc, err := Connect(ConnOptions{URL: url}); err == nil {
		nc.Close()
		t.Fatal("Connect succeeded with no server")
	} else if !strings.Contains(err.Error(), url) {
		t.Errorf("error %q does not name the URL", err)
	}

	var logs logBuffer
	nc, err := Connect(ConnOptions{URL: url, RetryOnFailedConnect: true, Name: "node", Logger: logs.logger()})
	if err != nil {
		t.Fatalf("Connect with retry: %v", err)
	}
	defer nc.Close()
	if nc.IsConnected() {
		t.Fatal("connected with no server")
	}
	// Published before the server exists: buffered, sent on connect.
	sub := make(chan *nats.Msg, 1)
	startServer(t, t.TempDir(), port)
	eventually(t, "connection", nc.IsConnected)
	s, err := nc.ChanSubscribe("x", sub)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	if err := nc.Publish("x", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub:
		if string(m.Data) != "hi" {
			t.Fatalf("got %q", m.Data)
		}
	case <-time.After(testTimeout):
		t.Fatal("no message")
	}
	eventually(t, "connect log", func() bool { return strings.Contains(logs.String(), "nats connected") })
}

// TestConnectReconnects: the connection survives a server restart on the
// same port and logs the disconnect and the reconnect.
func TestConnectReconnects(t *testing.T) {
	dir := t.TempDir()
	e := startServer(t, dir, 0)
	port := e.Server().Addr().(*net.TCPAddr).Port
	var logs logBuffer
	nc, err := Connect(ConnOptions{URL: e.ClientURL(), Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	e.Shutdown()
	eventually(t, "disconnect", func() bool { return !nc.IsConnected() })
	startServer(t, dir, port)
	eventually(t, "reconnect", nc.IsConnected)
	eventually(t, "logs", func() bool {
		s := logs.String()
		return strings.Contains(s, "nats disconnected") && strings.Contains(s, "nats reconnected")
	})
	if nc.Stats().Reconnects != 1 {
		t.Errorf("reconnects = %d, want 1", nc.Stats().Reconnects)
	}
}
