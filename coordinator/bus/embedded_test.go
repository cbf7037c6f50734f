package bus

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestEmbeddedOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*EmbeddedOptions)
		want string
	}{
		{"defaults", func(*EmbeddedOptions) {}, ""},
		{"random port", func(o *EmbeddedOptions) { o.Port = 0 }, ""},
		{"users", func(o *EmbeddedOptions) { o.Users = []User{{"a", "p"}, {"b", "q"}} }, ""},
		{"no dir", func(o *EmbeddedOptions) { o.Dir = "" }, "data dir"},
		{"no host", func(o *EmbeddedOptions) { o.Host = "" }, "host"},
		{"port -1", func(o *EmbeddedOptions) { o.Port = -1 }, "port -1"},
		{"port 65536", func(o *EmbeddedOptions) { o.Port = 65536 }, "port"},
		{"no memory", func(o *EmbeddedOptions) { o.MaxMemory = 0 }, "memory"},
		{"no store", func(o *EmbeddedOptions) { o.MaxStore = -5 }, "store"},
		{"negative timeout", func(o *EmbeddedOptions) { o.ReadyTimeout = -time.Second }, "timeout"},
		{"user without name", func(o *EmbeddedOptions) { o.Users = []User{{"", "p"}} }, "no name"},
		{"user without password", func(o *EmbeddedOptions) { o.Users = []User{{"a", ""}} }, "no password"},
		{"duplicate user", func(o *EmbeddedOptions) { o.Users = []User{{"a", "p"}, {"a", "q"}} }, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultEmbeddedOptions("/tmp/x")
			tt.mod(&o)
			err := o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
			if _, err := StartEmbedded(o); err == nil {
				t.Fatal("StartEmbedded accepted invalid options")
			}
		})
	}
}

func TestEmbeddedShutdownIdempotent(t *testing.T) {
	e := startServer(t, t.TempDir(), 0)
	if !strings.HasPrefix(e.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("ClientURL() = %q", e.ClientURL())
	}
	nc := connect(t, e.ClientURL())
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	e.Shutdown()
	e.Shutdown()
	done := make(chan struct{})
	go func() { e.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("third Shutdown did not return")
	}
	if e.Server().Running() {
		t.Fatal("server still running after Shutdown")
	}
}

func TestEmbeddedWildcardHostClientURL(t *testing.T) {
	e := startServer(t, t.TempDir(), 0, func(o *EmbeddedOptions) { o.Host = "0.0.0.0" })
	if !strings.HasPrefix(e.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("ClientURL() = %q, want loopback", e.ClientURL())
	}
	nc := connect(t, e.ClientURL())
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestEmbeddedPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	opts := DefaultEmbeddedOptions(t.TempDir())
	opts.Port = port
	opts.ReadyTimeout = 2 * time.Second
	e, err := StartEmbedded(opts)
	if err == nil {
		e.Shutdown()
		t.Fatal("StartEmbedded succeeded on a port in use")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("error %q does not name the port", err)
	}
}

// TestEmbeddedRestartPersistence: data written before a shutdown is there
// after a start on the same dir.
func TestEmbeddedRestartPersistence(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	e := startServer(t, dir, 0)
	nc := connect(t, e.ClientURL())
	b, err := Provision(ctx, nc, Names{}, ProvisionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := validDesired()
	rev, err := PutJSON(ctx, b.Desired, d.Model, &d)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("persisted artifact")
	digest := sha(data)
	if _, err := b.PutArtifact(ctx, digest, strings.NewReader(string(data))); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	e.Shutdown()

	e2 := startServer(t, dir, 0)
	nc2 := connect(t, e2.ClientURL())
	b2, err := Open(ctx, nc2, Names{})
	if err != nil {
		t.Fatalf("Open after restart: %v", err)
	}
	var got Desired
	rev2, err := GetJSON(ctx, b2.Desired, d.Model, &got)
	if err != nil {
		t.Fatalf("GetJSON after restart: %v", err)
	}
	if rev2 != rev || got.Model != d.Model || len(got.Versions) != len(d.Versions) {
		t.Fatalf("after restart: rev %d %+v, want rev %d %+v", rev2, got, rev, d)
	}
	art, err := b2.GetArtifact(ctx, digest, 0)
	if err != nil || string(art) != string(data) {
		t.Fatalf("artifact after restart: %q, %v", art, err)
	}
}

func TestEmbeddedUsers(t *testing.T) {
	e := startServer(t, t.TempDir(), 0, func(o *EmbeddedOptions) {
		o.Users = []User{{Name: "coord", Password: "s3cret"}, {Name: "node", Password: "n0de"}}
	})
	tests := []struct {
		name       string
		user, pass string
		ok         bool
	}{
		{"no credentials", "", "", false},
		{"wrong password", "coord", "nope", false},
		{"unknown user", "mallory", "s3cret", false},
		{"coordinator", "coord", "s3cret", true},
		{"node", "node", "n0de", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := Connect(ConnOptions{URL: e.ClientURL(), User: tt.user, Password: tt.pass})
			if !tt.ok {
				if err == nil {
					nc.Close()
					t.Fatal("connected without valid credentials")
				}
				return
			}
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			defer nc.Close()
			// JetStream works for authenticated users.
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if _, err := Provision(ctx, nc, Names{}, ProvisionOptions{}); err != nil {
				t.Fatalf("Provision as %s: %v", tt.user, err)
			}
		})
	}
}

func TestEmbeddedJetStreamLimits(t *testing.T) {
	e := startServer(t, t.TempDir(), 0, func(o *EmbeddedOptions) { o.MaxStore = 1 << 20 })
	nc := connect(t, e.ClientURL())
	ctx := testCtx(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Limits.MaxStore != 1<<20 && info.Tier.Limits.MaxStore != 1<<20 {
		// The account may report -1 (unlimited within the server); then
		// check the server's own configuration.
		if got := e.Server().JetStreamConfig().MaxStore; got != 1<<20 {
			t.Fatalf("JetStream max store = %d, want %d", got, 1<<20)
		}
	}
	// A bucket bigger than the store limit cannot be created.
	_, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "big", MaxBytes: 2 << 20})
	if err == nil {
		t.Fatal("created a 2 MiB bucket on a 1 MiB store")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("create bucket: %v", err)
	}
}
