package coordinator

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
)

// vkey names a model version.
type vkey struct{ model, version string }

// ingest keeps the nodes' latest status and turns their cumulative
// per-version counters into deltas for the rollout controller.
type ingest struct {
	c    *Coordinator
	subs []*nats.Subscription

	mu      sync.Mutex
	nodes   map[string]*nodeEntry
	pending map[vkey]*rollout.Figures // deltas not yet taken by the controller
	tracker *rollout.Tracker          // cumulative reports -> deltas

	statusPrefix, statsPrefix string

	messages, invalid atomic.Uint64
	busyNs            atomic.Int64
}

type nodeEntry struct {
	status   bus.NodeStatus
	seen     time.Time
	stats    map[vkey]bus.VersionStats // last cumulative figures
	statSeen time.Time
}

func newIngest(c *Coordinator) *ingest {
	return &ingest{c: c, nodes: map[string]*nodeEntry{}, pending: map[vkey]*rollout.Figures{}, tracker: rollout.NewTracker()}
}

func (in *ingest) start() error {
	n := in.c.names
	// Node ids may contain dots: ">" matches them whole.
	in.statusPrefix = strings.TrimSuffix(n.StatusSubject(">"), ">")
	in.statsPrefix = strings.TrimSuffix(n.StatsSubject(">"), ">")
	s1, err := in.c.nc.Subscribe(n.StatusSubject(">"), in.onStatus)
	if err != nil {
		return fmt.Errorf("coordinator: subscribe to node status: %w", err)
	}
	s2, err := in.c.nc.Subscribe(n.StatsSubject(">"), in.onStats)
	if err != nil {
		s1.Unsubscribe()
		return fmt.Errorf("coordinator: subscribe to node statistics: %w", err)
	}
	for _, s := range []*nats.Subscription{s1, s2} {
		// 1,000 nodes × 2 messages a second with room for bursts.
		s.SetPendingLimits(1<<16, 256<<20)
	}
	in.subs = []*nats.Subscription{s1, s2}
	return nil
}

func (in *ingest) stop() {
	for _, s := range in.subs {
		s.Unsubscribe()
	}
}

func (in *ingest) onStatus(m *nats.Msg) {
	t0 := time.Now()
	defer func() { in.busyNs.Add(int64(time.Since(t0))) }()
	in.messages.Add(1)
	st, err := bus.DecodeNodeStatus(m.Data)
	if err == nil && in.statusPrefix+st.Node != m.Subject {
		err = fmt.Errorf("node %q published on %s", st.Node, m.Subject)
	}
	if err != nil {
		in.invalid.Add(1)
		in.c.log.Debug("dropped a malformed node status", "subject", m.Subject, "err", err)
		return
	}
	in.mu.Lock()
	e := in.nodes[st.Node]
	if e == nil {
		e = &nodeEntry{}
		in.nodes[st.Node] = e
	}
	e.status = *st
	e.seen = t0
	in.mu.Unlock()
}

func (in *ingest) onStats(m *nats.Msg) {
	t0 := time.Now()
	defer func() { in.busyNs.Add(int64(time.Since(t0))) }()
	in.messages.Add(1)
	st, err := bus.DecodeNodeStats(m.Data)
	if err == nil && in.statsPrefix+st.Node != m.Subject {
		err = fmt.Errorf("node %q published on %s", st.Node, m.Subject)
	}
	if err != nil {
		in.invalid.Add(1)
		in.c.log.Debug("dropped malformed node statistics", "subject", m.Subject, "err", err)
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	deltas, err := in.tracker.Update(*st)
	if err != nil {
		in.invalid.Add(1)
		in.c.log.Debug("dropped malformed node statistics", "subject", m.Subject, "err", err)
		return
	}
	e := in.nodes[st.Node]
	if e == nil {
		e = &nodeEntry{}
		in.nodes[st.Node] = e
	}
	e.stats = make(map[vkey]bus.VersionStats, len(st.Versions))
	for _, vs := range st.Versions {
		e.stats[vkey{vs.Model, vs.Version}] = vs
	}
	e.statSeen = t0
	for _, d := range deltas {
		k := vkey{d.Model, d.Version}
		p := in.pending[k]
		if p == nil {
			p = &rollout.Figures{Latency: make([]uint64, len(bus.LatencyBounds)+1)}
			in.pending[k] = p
		}
		p.Add(d.Figures)
	}
}

// take returns and clears the deltas of one version since the last take.
func (in *ingest) take(model, version string) rollout.Figures {
	in.mu.Lock()
	defer in.mu.Unlock()
	k := vkey{model, version}
	p := in.pending[k]
	delete(in.pending, k)
	if p == nil {
		return rollout.Figures{Latency: make([]uint64, len(bus.LatencyBounds)+1)}
	}
	return *p
}

// drop forgets pending deltas of versions not in keep (no rollout wants
// them).
func (in *ingest) drop(keep map[vkey]bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for k := range in.pending {
		if !keep[k] {
			delete(in.pending, k)
		}
	}
}

// NodeView is a node as the coordinator last heard of it.
type NodeView struct {
	bus.NodeStatus
	LastSeen time.Time `json:"last_seen"`
	Healthy  bool      `json:"healthy"`
}

// Nodes lists the nodes heard of, freshest first within ID order.
func (c *Coordinator) Nodes() []NodeView {
	in := c.ingest
	now := time.Now()
	in.mu.Lock()
	out := make([]NodeView, 0, len(in.nodes))
	for _, e := range in.nodes {
		if e.seen.IsZero() {
			continue
		}
		out = append(out, NodeView{NodeStatus: e.status, LastSeen: e.seen, Healthy: now.Sub(e.seen) <= c.cfg.NodeTTL && !e.status.Draining})
	}
	in.mu.Unlock()
	slices.SortFunc(out, func(a, b NodeView) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// VersionTotals are a version's figures summed over the nodes' latest
// cumulative reports.
type VersionTotals struct {
	Version  string           `json:"version"`
	Requests uint64           `json:"requests"`
	Errors   uint64           `json:"errors"`
	P50Ms    float64          `json:"p50_ms"`
	P99Ms    float64          `json:"p99_ms"`
	Shadow   *bus.ShadowStats `json:"shadow,omitempty"`
	// MeanAbsDiff is the shadow's mean absolute output difference.
	MeanAbsDiff float64 `json:"mean_abs_diff,omitempty"`
	Nodes       int     `json:"nodes"`
}

// Totals sums a model's per-version figures over the nodes.
func (c *Coordinator) Totals(model string) []VersionTotals {
	in := c.ingest
	in.mu.Lock()
	acc := map[string]*VersionTotals{}
	figs := map[string]*rollout.Figures{}
	for _, e := range in.nodes {
		for k, vs := range e.stats {
			if k.model != model {
				continue
			}
			t := acc[k.version]
			if t == nil {
				t = &VersionTotals{Version: k.version}
				acc[k.version] = t
				figs[k.version] = &rollout.Figures{Latency: make([]uint64, len(bus.LatencyBounds)+1)}
			}
			t.Nodes++
			d, _ := rollout.Diff(bus.VersionStats{}, vs)
			figs[k.version].Add(d)
			if s := vs.Shadow; s != nil {
				if t.Shadow == nil {
					t.Shadow = &bus.ShadowStats{Against: s.Against}
				}
				t.Shadow.Mirrored += s.Mirrored
				t.Shadow.Failed += s.Failed
				t.Shadow.Compared += s.Compared
				t.Shadow.SumAbsDiff += s.SumAbsDiff
				t.Shadow.SumSquaredD += s.SumSquaredD
				t.Shadow.Mismatched += s.Mismatched
				t.Shadow.MaxAbsDiff = max(t.Shadow.MaxAbsDiff, s.MaxAbsDiff)
			}
		}
	}
	in.mu.Unlock()
	out := make([]VersionTotals, 0, len(acc))
	for v, t := range acc {
		f := figs[v]
		t.Requests, t.Errors = f.Requests, f.Errors
		if f.Requests > 0 {
			t.P50Ms = float64(f.Quantile(0.5)) / 1e6
			t.P99Ms = float64(f.Quantile(0.99)) / 1e6
		}
		if t.Shadow != nil && t.Shadow.Compared > 0 {
			t.MeanAbsDiff = t.Shadow.SumAbsDiff / float64(t.Shadow.Compared)
		}
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b VersionTotals) int { return strings.Compare(a.Version, b.Version) })
	return out
}

// IngestStats says how the ingest keeps up.
type IngestStats struct {
	Messages uint64        `json:"messages"`
	Invalid  uint64        `json:"invalid"`
	Pending  int           `json:"pending"` // messages queued, not yet processed
	Busy     time.Duration `json:"busy"`    // time spent processing
	Nodes    int           `json:"nodes"`
}

// IngestStats reports the ingest's counters.
func (c *Coordinator) IngestStats() IngestStats {
	in := c.ingest
	s := IngestStats{Messages: in.messages.Load(), Invalid: in.invalid.Load(), Busy: time.Duration(in.busyNs.Load())}
	for _, sub := range in.subs {
		if n, _, err := sub.Pending(); err == nil {
			s.Pending += n
		}
	}
	in.mu.Lock()
	s.Nodes = len(in.nodes)
	in.mu.Unlock()
	return s
}
