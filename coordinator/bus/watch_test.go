package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// recorder collects WatchKV callbacks as strings.
type recorder struct {
	events []string
}

func (r *recorder) config() WatchConfig[Desired] {
	return WatchConfig[Desired]{
		OnUpdate: func(key string, v *Desired, rev uint64) {
			r.events = append(r.events, fmt.Sprintf("update %s %d %s", key, rev, v.Model))
		},
		OnDelete: func(key string) { r.events = append(r.events, "delete "+key) },
		OnSynced: func() { r.events = append(r.events, "synced") },
		OnInvalid: func(key string, rev uint64, _ error) {
			r.events = append(r.events, fmt.Sprintf("invalid %s %d", key, rev))
		},
	}
}

func desiredJSON(t *testing.T, model string) []byte {
	t.Helper()
	d := validDesired()
	d.Model = model
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWatchState drives the state WatchKV keeps across rounds with
// scripted entries.
func TestWatchState(t *testing.T) {
	type step struct {
		op  string // round, put, del, synced
		key string
		rev uint64
		val string // "good" (valid desired named after the key), or raw JSON
	}
	tests := []struct {
		name  string
		steps []step
		want  []string
	}{
		{
			name:  "initial values then live changes",
			steps: []step{{op: "round"}, {"put", "a", 1, "good"}, {"put", "b", 2, "{"}, {op: "synced"}, {"put", "c", 3, "good"}, {"del", "a", 4, ""}},
			want:  []string{"update a 1 a", "invalid b 2", "synced", "update c 3 c", "delete a"},
		},
		{
			name:  "delete of a key never delivered is not reported",
			steps: []step{{op: "round"}, {"put", "b", 1, "{"}, {op: "synced"}, {"del", "b", 2, ""}, {"del", "zzz", 3, ""}},
			want:  []string{"invalid b 1", "synced"},
		},
		{
			name: "resync reports keys that vanished",
			steps: []step{
				{op: "round"}, {"put", "a", 1, "good"}, {"put", "b", 2, "good"}, {op: "synced"},
				{op: "round"}, {"put", "a", 5, "good"}, {op: "synced"},
			},
			want: []string{"update a 1 a", "update b 2 b", "synced", "update a 5 a", "delete b", "synced"},
		},
		{
			name: "resync sees a delete marker",
			steps: []step{
				{op: "round"}, {"put", "a", 1, "good"}, {op: "synced"},
				{op: "round"}, {"del", "a", 2, ""}, {op: "synced"},
			},
			want: []string{"update a 1 a", "synced", "delete a", "synced"},
		},
		{
			name: "invalid value keeps the previous one, across resyncs",
			steps: []step{
				{op: "round"}, {"put", "a", 1, "good"}, {op: "synced"}, {"put", "a", 2, `{"model":"a","versions":[{"version":"1"}]}`},
				{op: "round"}, {"put", "a", 2, `{"model":"a","versions":[{"version":"1"}]}`}, {op: "synced"},
				{"del", "a", 3, ""},
			},
			want: []string{"update a 1 a", "synced", "invalid a 2", "invalid a 2", "synced", "delete a"},
		},
		{
			name: "round cut short before sync",
			steps: []step{
				{op: "round"}, {"put", "a", 1, "good"}, {"put", "b", 2, "good"}, {op: "synced"},
				{op: "round"}, {"put", "a", 1, "good"},
				{op: "round"}, {"put", "b", 2, "good"}, {op: "synced"},
			},
			want: []string{"update a 1 a", "update b 2 b", "synced", "update a 1 a", "update b 2 b", "delete a", "synced"},
		},
		{
			name:  "purge counts as delete",
			steps: []step{{op: "round"}, {"put", "a", 1, "good"}, {op: "synced"}, {"purge", "a", 2, ""}},
			want:  []string{"update a 1 a", "synced", "delete a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r recorder
			cfg := r.config()
			st := &watchState[Desired]{
				known:     map[string]struct{}{},
				validate:  func(d *Desired) error { return d.Validate() },
				onUpdate:  cfg.OnUpdate,
				onDelete:  cfg.OnDelete,
				onSynced:  cfg.OnSynced,
				onInvalid: cfg.OnInvalid,
				log:       discardLogger(),
			}
			for _, s := range tt.steps {
				switch s.op {
				case "round":
					st.beginRound()
				case "synced":
					st.synced()
				case "put":
					val := []byte(s.val)
					if s.val == "good" {
						val = desiredJSON(t, s.key)
					}
					st.entry(s.key, s.rev, jetstream.KeyValuePut, val)
				case "del":
					st.entry(s.key, s.rev, jetstream.KeyValueDelete, nil)
				case "purge":
					st.entry(s.key, s.rev, jetstream.KeyValuePurge, nil)
				}
			}
			if !slices.Equal(r.events, tt.want) {
				t.Fatalf("events\n got %q\nwant %q", r.events, tt.want)
			}
		})
	}
}

func TestWatchKVConfigErrors(t *testing.T) {
	_, nc, b := provisioned(t)
	ctx := testCtx(t)
	noop := func(string, *Desired, uint64) {}
	for name, cfg := range map[string]WatchConfig[Desired]{
		"no conn":     {KV: b.Desired, OnUpdate: noop},
		"no kv":       {Conn: nc, OnUpdate: noop},
		"no OnUpdate": {Conn: nc, KV: b.Desired},
		"empty key":   {Conn: nc, KV: b.Desired, OnUpdate: noop, Keys: []string{""}},
	} {
		if err := WatchKV(ctx, cfg); err == nil {
			t.Errorf("%s: WatchKV returned nil", name)
		}
	}
}

// liveRecorder forwards WatchKV callbacks to a channel.
type liveRecorder struct{ ch chan string }

func newLiveRecorder() *liveRecorder { return &liveRecorder{ch: make(chan string, 1000)} }

func (r *liveRecorder) config() WatchConfig[Desired] {
	return WatchConfig[Desired]{
		OnUpdate: func(key string, v *Desired, _ uint64) {
			r.ch <- fmt.Sprintf("update %s %s", key, v.Versions[0].Version)
		},
		OnDelete:  func(key string) { r.ch <- "delete " + key },
		OnSynced:  func() { r.ch <- "synced" },
		OnInvalid: func(key string, _ uint64, _ error) { r.ch <- "invalid " + key },
	}
}

// until collects events up to and including want, failing on timeout.
func (r *liveRecorder) until(t *testing.T, want string) []string {
	t.Helper()
	var got []string
	timeout := time.After(testTimeout)
	for {
		select {
		case e := <-r.ch:
			got = append(got, e)
			if e == want {
				return got
			}
		case <-timeout:
			t.Fatalf("no %q; got %q", want, got)
		}
	}
}

func desiredV(model, version string) *Desired {
	d := validDesired()
	d.Model = model
	d.Versions = []DesiredVersion{{Version: version, Digest: digestA, Weight: 100}}
	return &d
}

// TestWatchKV: initial values, updates, deletes, a malformed value; then
// the server restarts on the same dir and port, the client reconnects,
// and changes made after the restart (through bucket handles bound before
// it) still arrive.
func TestWatchKV(t *testing.T) {
	dir := t.TempDir()
	e := startServer(t, dir, 0)
	port := e.Server().Addr().(*net.TCPAddr).Port
	nc := connect(t, e.ClientURL())
	ctx := testCtx(t)
	b, err := Provision(ctx, nc, Names{}, ProvisionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PutJSON(ctx, b.Desired, "a", desiredV("a", "1")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Desired.Put(ctx, "bad", []byte(`{"model":`)); err != nil {
		t.Fatal(err)
	}
	subsBefore := nc.NumSubscriptions()

	rec := newLiveRecorder()
	cfg := rec.config()
	cfg.Conn, cfg.KV = nc, b.Desired
	var logs logBuffer
	cfg.Logger = logs.logger()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- WatchKV(wctx, cfg) }()

	if got := rec.until(t, "synced"); !slices.Equal(got, []string{"update a 1", "invalid bad", "synced"}) {
		t.Fatalf("initial delivery %q", got)
	}
	if _, err := PutJSON(ctx, b.Desired, "b", desiredV("b", "1")); err != nil {
		t.Fatal(err)
	}
	if got := rec.until(t, "update b 1"); len(got) != 1 {
		t.Fatalf("before update b: %q", got)
	}
	if err := b.Desired.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got := rec.until(t, "delete a"); len(got) != 1 {
		t.Fatalf("before delete a: %q", got)
	}
	if _, err := b.Desired.Put(ctx, "b", []byte(`{"model":"b","versions":[{"version":"2","weight":100}]}`)); err != nil {
		t.Fatal(err)
	}
	if got := rec.until(t, "invalid b"); len(got) != 1 {
		t.Fatalf("before invalid b: %q", got)
	}
	if !strings.Contains(logs.String(), "dropping invalid KV value") {
		t.Errorf("invalid value not logged:\n%s", logs.String())
	}

	// Restart the server on the same dir and port.
	e.Shutdown()
	eventually(t, "disconnect", func() bool { return !nc.IsConnected() })
	startServer(t, dir, port)
	eventually(t, "reconnect", nc.IsConnected)

	// The watcher is re-created and re-delivers the current state: a is
	// gone, bad and b are still invalid (b keeps its last valid value).
	got := rec.until(t, "synced")
	slices.Sort(got)
	if !slices.Equal(got, []string{"invalid b", "invalid bad", "synced"}) {
		t.Fatalf("resync after restart %q", got)
	}
	if !strings.Contains(logs.String(), "re-creating KV watcher") {
		t.Errorf("re-creation not logged:\n%s", logs.String())
	}
	// Changes after the restart, through handles bound before it.
	if _, err := PutJSON(ctx, b.Desired, "c", desiredV("c", "1")); err != nil {
		t.Fatalf("put after restart: %v", err)
	}
	if got := rec.until(t, "update c 1"); len(got) != 1 {
		t.Fatalf("before update c: %q", got)
	}
	if _, err := PutJSON(ctx, b.Desired, "b", desiredV("b", "3")); err != nil {
		t.Fatal(err)
	}
	if got := rec.until(t, "update b 3"); len(got) != 1 {
		t.Fatalf("before update b 3: %q", got)
	}
	if err := b.Desired.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	rec.until(t, "delete c")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WatchKV returned %v after cancel", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("WatchKV did not return after cancel")
	}
	// Nothing left subscribed.
	eventually(t, "watcher unsubscribed", func() bool { return nc.NumSubscriptions() <= subsBefore })
	select {
	case e := <-rec.ch:
		t.Fatalf("event %q after WatchKV returned", e)
	default:
	}
}

// TestWatchKVFilter: only matching keys are delivered.
func TestWatchKVFilter(t *testing.T) {
	_, nc, b := provisioned(t)
	ctx := testCtx(t)
	for _, k := range []string{"x.1", "y.1", "x.2"} {
		if _, err := PutJSON(ctx, b.Desired, k, desiredV("m", k)); err != nil {
			t.Fatal(err)
		}
	}
	goroutines := runtime.NumGoroutine()
	rec := newLiveRecorder()
	cfg := rec.config()
	cfg.Conn, cfg.KV, cfg.Keys = nc, b.Desired, []string{"x.*"}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- WatchKV(wctx, cfg) }()
	if got := rec.until(t, "synced"); !slices.Equal(got, []string{"update x.1 x.1", "update x.2 x.2", "synced"}) {
		t.Fatalf("filtered initial delivery %q", got)
	}
	if _, err := PutJSON(ctx, b.Desired, "y.2", desiredV("m", "y.2")); err != nil {
		t.Fatal(err)
	}
	if _, err := PutJSON(ctx, b.Desired, "x.3", desiredV("m", "x.3")); err != nil {
		t.Fatal(err)
	}
	if got := rec.until(t, "update x.3 x.3"); len(got) != 1 {
		t.Fatalf("got %q, want only x.3", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Everything WatchKV started has stopped.
	eventually(t, "goroutines to stop", func() bool { return runtime.NumGoroutine() <= goroutines })
}

// TestWatchKVRetries: a watcher that cannot be created (its bucket is
// missing) is retried until it can.
func TestWatchKVRetries(t *testing.T) {
	_, nc, b := provisioned(t)
	ctx := testCtx(t)
	if err := b.JS.DeleteKeyValue(ctx, b.Names.Rollouts()); err != nil {
		t.Fatal(err)
	}
	rec := newLiveRecorder()
	cfg := rec.config()
	cfg.Conn, cfg.KV = nc, b.Rollouts
	var logs logBuffer
	cfg.Logger = logs.logger()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- WatchKV(wctx, cfg) }()
	eventually(t, "a failed attempt", func() bool { return strings.Contains(logs.String(), "cannot start KV watcher") })
	if _, err := Provision(ctx, nc, Names{}, ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := PutJSON(ctx, b.Rollouts, "m", desiredV("m", "9")); err != nil {
		t.Fatal(err)
	}
	rec.until(t, "update m 9")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWatchKVConnClosed: WatchKV returns an error when the connection is
// closed for good.
func TestWatchKVConnClosed(t *testing.T) {
	_, nc, b := provisioned(t)
	rec := newLiveRecorder()
	cfg := rec.config()
	cfg.Conn, cfg.KV = nc, b.Desired
	done := make(chan error, 1)
	go func() { done <- WatchKV(testCtx(t), cfg) }()
	rec.until(t, "synced")
	nc.Close()
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, nats.ErrConnectionClosed) {
			t.Fatalf("WatchKV returned %v, want connection closed", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("WatchKV did not return after the connection closed")
	}
}
