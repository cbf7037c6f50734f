package rolloutsim

import (
	"time"
)

// Oracle is the physical lower bound of a rollout on the same world: what
// a perfect control plane could achieve given only the geography and the
// link classes, with no queueing, no reconcile delay and no contention
// for any uplink.
type Oracle struct {
	// Fetched is when the last site could hold the artifact, loaded (as
	// RolloutResult.AllFetched counts): it hears of the rollout one way
	// from the coordinator, asks the source that can deliver first (any
	// central cluster, or any edge site anywhere once that site's own copy
	// is complete), receives it one round trip plus size / link bandwidth
	// later, and loads it in LoadTime.
	Fetched time.Duration
	// AllOnNew is when every site could serve the new version at 100 %:
	// not before the spec's schedule lets the coordinator ask for 100 %
	// (Interval at each earlier step) plus the one-way delay to the
	// farthest site, and not before Fetched.
	AllOnNew time.Duration
	// Propagate is the one-way delay from the coordinator to the farthest
	// site: the least time between a decision (a rollback) and every site
	// acting on it.
	Propagate time.Duration
}

// oracle computes the rollout's Oracle.
func (rs *rsim) oracle() Oracle {
	var o Oracle
	for _, st := range rs.sites {
		o.Propagate = max(o.Propagate, rs.w.OneWay(rs.coord, st.w))
	}
	for _, t := range rs.fetchBounds() {
		o.Fetched = max(o.Fetched, t)
	}
	schedule := time.Duration(0)
	for _, step := range rs.cfg.Steps {
		if step >= 100 {
			break
		}
		schedule += rs.cfg.Interval
	}
	o.Fetched += rs.cfg.LoadTime
	o.AllOnNew = max(schedule+o.Propagate, o.Fetched)
	return o
}

// fetchBounds returns, per site (in rs.sites order), the earliest its
// copy of the artifact can be complete: a shortest-path problem over every
// site of the world (sources' ready times grow along a path), solved by
// Dijkstra on the dense graph, O(sites²).
func (rs *rsim) fetchBounds() []time.Duration {
	w, size := rs.w, float64(rs.cfg.ArtifactBytes)
	tx := func(src, dst int) time.Duration {
		return time.Duration(size / w.Bandwidth(src, dst) * float64(time.Second))
	}
	n := len(rs.sites)
	notify := make([]time.Duration, n)
	best := make([]time.Duration, n)
	done := make([]bool, n)
	centrals := w.Centrals()
	for k, st := range rs.sites {
		notify[k] = w.OneWay(rs.coord, st.w)
		best[k] = Never
		for _, c := range centrals {
			// A central cluster holds the artifact from the start: the
			// request travels one way, the bytes one way back.
			one := w.OneWay(c, st.w)
			if t := notify[k] + 2*one + tx(c, st.w); best[k] == Never || t < best[k] {
				best[k] = t
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
		// Site k can send from best[k], once j's request (sent when j
		// heard of the rollout) has arrived; the bytes take one way more.
		src := rs.sites[k].w
		for j := range n {
			if done[j] {
				continue
			}
			dst := rs.sites[j].w
			one := w.OneWay(src, dst)
			if t := max(best[k], notify[j]+one) + one + tx(src, dst); t < best[j] {
				best[j] = t
			}
		}
	}
	return best
}
