package mesh

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// convergence is one measurement: for each observer, how long after the
// newcomer's Join it saw the newcomer, and how long after the newcomer's
// hard Shutdown it marked it dead.
type convergence struct {
	join, dead []time.Duration
}

// measureConvergence joins newcomer to the cluster through nodes[0], waits
// until every node in nodes has seen it join, shuts it down hard and waits
// until every node has marked it dead. Observation times come from the
// events' timestamps, taken when each node's event delegate ran.
func measureConvergence(tb testing.TB, nodes []*node, newcomer *node, timeout time.Duration) convergence {
	tb.Helper()
	id := newcomer.cfg.NodeID
	subs := make([]<-chan Event, len(nodes))
	for i, n := range nodes {
		ch, cancel := n.Subscribe()
		defer cancel()
		subs[i] = ch
	}
	// await returns, per observer, when it first reported the newcomer in
	// an event matching ok.
	await := func(what string, since time.Time, ok func(Event) bool) []time.Duration {
		out := make([]time.Duration, len(nodes))
		deadline := time.After(timeout)
		for i, ch := range subs {
			for out[i] == 0 {
				select {
				case ev, open := <-ch:
					if !open {
						tb.Fatalf("%s: subscription of %s closed", what, nodes[i].cfg.NodeID)
					}
					if ev.Peer.ID == id && ok(ev) {
						out[i] = max(ev.Time.Sub(since), time.Nanosecond)
					}
				case <-deadline:
					tb.Fatalf("%s: %s did not observe %s within %v", what, nodes[i].cfg.NodeID, id, timeout)
				}
			}
		}
		return out
	}

	start := time.Now()
	if _, err := newcomer.Join([]string{nodes[0].Addr()}); err != nil {
		tb.Fatalf("join: %v", err)
	}
	join := await("join", start, func(ev Event) bool { return ev.Type == EventJoin })

	start = time.Now()
	if err := newcomer.Shutdown(); err != nil {
		tb.Fatalf("shutdown: %v", err)
	}
	dead := await("failure", start, func(ev Event) bool { return ev.Type == EventLeave && ev.Peer.State == StateDead })
	return convergence{join: join, dead: dead}
}

// quantile returns the nearest-rank q-quantile of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func TestMeasureConvergence(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "conv", 4)
	c := measureConvergence(t, nodes, newNode(t, "conv-new"), 20*time.Second)
	for i := range nodes {
		if c.join[i] <= 0 || c.dead[i] <= 0 {
			t.Fatalf("observer %d: join %v, dead %v", i, c.join[i], c.dead[i])
		}
	}
	ds := []time.Duration{5, 1, 4, 2, 3}
	if quantile(ds, 0.5) != 3 || quantile(ds, 0.99) != 5 || quantile(ds, 0) != 1 {
		t.Errorf("quantiles of %v: %v %v %v", ds, quantile(ds, 0.5), quantile(ds, 0.99), quantile(ds, 0))
	}
}

// BenchmarkConvergence measures, on loopback with memberlist's LAN
// defaults, how long a join and a failure take to reach every node of a
// 50-node mesh. See the package documentation for the command line.
func BenchmarkConvergence(b *testing.B) {
	const size = 50
	lan := func(c *Config) {
		c.Profile = ProfileLAN
		c.Tune = nil
		c.UpdateInterval = 0
		c.EventBuffer = 1024
	}
	nodes := make([]*node, size)
	for i := range nodes {
		nodes[i] = newNode(b, fmt.Sprintf("bench-%02d", i), lan)
		if i > 0 {
			if _, err := nodes[i].Join([]string{nodes[0].Addr()}); err != nil {
				b.Fatal(err)
			}
		}
	}
	waitFor(b, 2*time.Minute, "a converged 50-node mesh", func() string { return checkAllAlive(nodes) })

	var join, dead []time.Duration
	for i := 0; b.Loop(); i++ {
		newcomer := newNode(b, fmt.Sprintf("bench-new-%d", i), lan)
		c := measureConvergence(b, nodes, newcomer, 2*time.Minute)
		join = append(join, c.join...)
		dead = append(dead, c.dead...)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(quantile(join, 0.5)), "join-p50-ms")
	b.ReportMetric(ms(quantile(join, 0.99)), "join-p99-ms")
	b.ReportMetric(ms(quantile(join, 1)), "join-all-ms")
	b.ReportMetric(ms(quantile(dead, 0.5)), "dead-p50-ms")
	b.ReportMetric(ms(quantile(dead, 0.99)), "dead-p99-ms")
	b.ReportMetric(ms(quantile(dead, 1)), "dead-all-ms")
}
