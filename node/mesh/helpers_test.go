package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/petrel-mesh/petrel/routing"
)

// memberlistConfig shortens test signatures.
type memberlistConfig = memberlist.Config

// testKey returns a deterministic 32-byte gossip key.
func testKey(b byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// fastTune shortens memberlist's local profile so that the tests run in
// seconds. The probe timeout stays generous because the tests share two
// busy cores (and run under -race).
func fastTune(c *memberlist.Config) {
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 150 * time.Millisecond
	c.GossipInterval = 30 * time.Millisecond
	c.PushPullInterval = 400 * time.Millisecond
	c.TCPTimeout = 2 * time.Second
	c.GossipToTheDeadTime = 5 * time.Second
	c.SuspicionMult = 3
}

// logSink is a slog.Handler that records messages at or above a level.
type logSink struct {
	min slog.Level
	mu  sync.Mutex
	rec []string
}

func (s *logSink) Enabled(_ context.Context, l slog.Level) bool { return l >= s.min }
func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	s.mu.Lock()
	s.rec = append(s.rec, b.String())
	s.mu.Unlock()
	return nil
}
func (s *logSink) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *logSink) WithGroup(string) slog.Handler      { return s }

// count returns how many records contain every one of subs.
func (s *logSink) count(subs ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
outer:
	for _, r := range s.rec {
		for _, sub := range subs {
			if !strings.Contains(r, sub) {
				continue outer
			}
		}
		n++
	}
	return n
}

// newTestCoordinate returns a valid coordinate with non-trivial values.
func newTestCoordinate() *routing.Coordinate {
	c := routing.NewCoordinate(routing.DefaultCoordinateConfig())
	c.Vec[0], c.Vec[3], c.Error, c.Adjustment, c.Height = 0.001, -0.0005, 0.4, -0.00001, 0.0002
	return c
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testSource is a mutable StateSource.
type testSource struct {
	mu      sync.Mutex
	catalog Catalog
	load    Load
	reads   int
}

func (s *testSource) Catalog() Catalog {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return s.catalog.Clone()
}

func (s *testSource) Load() Load {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load
}

func (s *testSource) set(c Catalog, l Load) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.catalog, s.load = c.Clone(), l
}

func (s *testSource) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// sha returns a valid entry digest derived from i.
func sha(i int) string {
	return fmt.Sprintf("sha256:%064x", i+1)
}

// smallCatalog returns a catalog of n short entries.
func smallCatalog(gen uint64, n int) Catalog {
	c := Catalog{Generation: gen}
	for i := range n {
		c.Models = append(c.Models, CatalogEntry{
			Name: fmt.Sprintf("model-%d", i), Version: fmt.Sprintf("v%d", gen),
			Digest: sha(i + int(gen)*1000), Ready: i%2 == 0, Bytes: int64(1000 * (i + 1)),
		})
	}
	return c
}

// node is a Mesh under test with its source and log.
type node struct {
	*Mesh
	src  *testSource
	logs *logSink
}

type nodeOpt func(*Config)

func withKeys(keys ...[]byte) nodeOpt { return func(c *Config) { c.SecretKeys = keys } }

func withBuffer(n int) nodeOpt { return func(c *Config) { c.EventBuffer = n } }

// testConfig returns a valid loopback config with fast timings.
func testConfig(id string) Config {
	return Config{
		NodeID:         id,
		Role:           RoleEdge,
		Region:         "test-1",
		Location:       routing.Location{Lat: 52.52, Lon: 13.405},
		HTTPAddr:       "127.0.0.1:8080",
		QUICAddr:       "127.0.0.1:8443",
		BindAddr:       "127.0.0.1",
		Profile:        ProfileLocal,
		SecretKeys:     [][]byte{testKey(1)},
		UpdateInterval: 50 * time.Millisecond,
		Tune:           fastTune,
	}
}

// newNode starts a mesh node; it is shut down when the test ends.
func newNode(t testing.TB, id string, opts ...nodeOpt) *node {
	t.Helper()
	cfg := testConfig(id)
	for _, o := range opts {
		o(&cfg)
	}
	sink := &logSink{min: slog.LevelInfo}
	cfg.Logger = slog.New(sink)
	src := &testSource{catalog: smallCatalog(1, 2)}
	m, err := New(cfg, src)
	if err != nil {
		t.Fatalf("New(%s): %v", id, err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return &node{Mesh: m, src: src, logs: sink}
}

// cluster starts n nodes named prefix-0..n-1 that join through node 0.
func cluster(t testing.TB, prefix string, n int, opts ...nodeOpt) []*node {
	t.Helper()
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = newNode(t, fmt.Sprintf("%s-%d", prefix, i), opts...)
		if i > 0 {
			if _, err := nodes[i].Join([]string{nodes[0].Addr()}); err != nil {
				t.Fatalf("join %s: %v", nodes[i].cfg.NodeID, err)
			}
		}
	}
	waitFor(t, 10*time.Second, "full membership", func() string { return checkAllAlive(nodes) })
	return nodes
}

// checkAllAlive returns "" if every node sees every other as alive.
func checkAllAlive(nodes []*node) string { return checkMembers(nodes, false) }

// checkAllMembers returns "" if every node sees every other as a member:
// alive or, transiently on a busy machine, suspect.
func checkAllMembers(nodes []*node) string { return checkMembers(nodes, true) }

func checkMembers(nodes []*node, suspectOK bool) string {
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			p, ok := a.Peer(b.cfg.NodeID)
			if !ok {
				return fmt.Sprintf("%s does not know %s", a.cfg.NodeID, b.cfg.NodeID)
			}
			if p.State != StateAlive && !(suspectOK && p.State == StateSuspect) {
				return fmt.Sprintf("%s sees %s as %v", a.cfg.NodeID, b.cfg.NodeID, p.State)
			}
		}
	}
	return ""
}

// waitFor polls cond until it returns "" or timeout passes. The timeout is
// a generous upper bound on a protocol's convergence, not a performance
// target.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
