package rolloutsim

import (
	"time"
)

// Oracle is the physical lower bound of a rollout on the same world: what
// a perfect control plane could achieve given only the geography and the
// link classes, with no queueing, no reconcile delay and no contention
// for any uplink.
type Oracle struct {
	// Fetched is when the last site could hold the artifact: it hears of
	// the rollout one way from the coordinator, asks the source that can
	// deliver first (any central cluster, or any edge site anywhere once
	// that site's own copy is complete), and receives it one round trip
	// plus size / link bandwidth later.
	Fetched time.Duration
	// AllOnNew is when every site could serve the new version at 100 %:
	// not before the spec's schedule lets the coordinator ask for 100 %
	// (Interval at each earlier step) plus the one-way delay to the
	// farthest site, and not before Fetched plus the node's LoadTime.
	AllOnNew time.Duration
	// Propagate is the one-way delay from the coordinator to the farthest
	// site: the least time between a decision (a rollback) and every site
	// acting on it.
	Propagate time.Duration
}

// oracle computes the rollout's Oracle. Fetched is a shortest-path
// problem over every site of the world (sources' ready times grow along
// a path), solved by Dijkstra on the dense graph: O(sites²).
func (rs *rsim) oracle() Oracle {
	w, size := rs.w, float64(rs.cfg.ArtifactBytes)
	xfer := func(src, dst int) time.Duration {
		return 2*w.OneWay(src, dst) + time.Duration(size/w.Bandwidth(src, dst)*float64(time.Second))
	}
	n := len(rs.sites)
	notify := make([]time.Duration, n)
	best := make([]time.Duration, n)
	done := make([]bool, n)
	var o Oracle
	for k, st := range rs.sites {
		notify[k] = w.OneWay(rs.coord, st.w)
		o.Propagate = max(o.Propagate, notify[k])
		best[k] = Never
		for i, s := range w.Sites {
			if s.Central {
				// A central cluster holds the artifact from the start.
				if t := notify[k] + xfer(i, st.w); best[k] == Never || t < best[k] {
					best[k] = t
				}
			}
		}
	}
	for range n {
		k := -1
		for j := range n {
			if !done[j] && (k < 0 || best[j] < best[k]) {
				k = j
			}
		}
		done[k] = true
		o.Fetched = max(o.Fetched, best[k])
		// Site k can serve from best[k]; the request from j left at
		// notify[j] and needs one way to arrive, which xfer's round trip
		// counts, so j's copy completes at max(ready, asked) + transfer.
		src := rs.sites[k].w
		for j := range n {
			if done[j] {
				continue
			}
			dst := rs.sites[j].w
			one := w.OneWay(src, dst)
			start := max(best[k], notify[j]+one) // when k can start sending to j
			if t := start + one + time.Duration(size/w.Bandwidth(src, dst)*float64(time.Second)); t < best[j] {
				best[j] = t
			}
		}
	}
	schedule := time.Duration(0)
	for _, step := range rs.cfg.Steps {
		if step >= 100 {
			break
		}
		schedule += rs.cfg.Interval
	}
	o.AllOnNew = max(schedule+o.Propagate, o.Fetched+rs.cfg.LoadTime)
	return o
}
