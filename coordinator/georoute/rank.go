// Package georoute is the pure decision code behind the coordinator's
// GET /v1/route: which nodes a client should call for a model, best first,
// given where the client is (a location, or a region looked up from its IP
// address in a CIDRTable) and what the nodes report about themselves. It
// opens no sockets and reads no files; the coordinator passes in the nodes
// and the query and serves the result.
package georoute

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/routing"
)

// Node is what Rank knows of one node for the model asked about.
type Node struct {
	// ID is the node's unique name in the mesh.
	ID string `json:"id"`
	// Region is the node's region, such as "eu-west".
	Region string `json:"region,omitempty"`
	// URL is the base URL clients call.
	URL string `json:"url"`
	// Loc is where the node stands; used when HasLoc and Loc.Valid().
	Loc    routing.Location `json:"loc"`
	HasLoc bool             `json:"has_loc"`
	// Load is the node's requests in flight plus queued.
	Load int `json:"load"`
	// Ready means the model asked about is loaded and ready on the node.
	Ready bool `json:"ready"`
	// Healthy means the node reports in and is not draining.
	Healthy bool `json:"healthy"`
	// Role is routing.RoleEdge or routing.RoleCentral; anything else counts
	// as edge.
	Role string `json:"role,omitempty"`
}

// Query is where the client is and how many nodes it wants.
type Query struct {
	// Loc is the client's location; used when HasLoc and Loc.Valid().
	Loc    routing.Location
	HasLoc bool
	// Region is the client's region, if known ("" if not).
	Region string
	// Limit is the most nodes to return; 0 or less means all.
	Limit int
}

// Ranked is one node in Rank's answer.
type Ranked struct {
	Node
	// DistanceKm is the great-circle distance from the client, or -1 when
	// either location is unknown.
	DistanceKm float64 `json:"distance_km"`
	// Score is the node's cost in milliseconds; lower is better.
	Score float64 `json:"score"`
	// Why explains the score.
	Why string `json:"why"`
}

// Terms of the score.
const (
	// SameRegionRTT is the round trip assumed to a node in the client's
	// region when the distance is unknown (either side lacks a location):
	// a metro or national network, better than a node known to be 1000 km
	// away (about 17 ms by routing.GeoRTT) and worse than one nearby.
	SameRegionRTT = 10 * time.Millisecond

	// LoadCost is what each request in flight or queued at a node adds to
	// its score: routing.DefaultServiceTime, the wait behind it.
	LoadCost = routing.DefaultServiceTime

	// CentralPenalty is added to the score of central-tier nodes, so that
	// clients go to the edge unless the edge is far (an edge node more than
	// about 3300 km further than a central one, by routing.GeoRTT) or
	// busy (five more requests than the central node). The central tier is
	// the fallback; its capacity is for what the edge cannot serve.
	CentralPenalty = 50 * time.Millisecond
)

// Rank returns the nodes that can serve the request, best first, at most
// q.Limit of them. Only healthy nodes with the model ready, a non-empty ID
// and a URL qualify; when IDs repeat, the first node with the ID counts.
//
// Each node's score, in milliseconds, is
//
//	RTT + Load × LoadCost + (CentralPenalty if central)
//
// computed by routing.Score, with the RTT estimated as:
//
//   - routing.GeoRTT (great-circle distance through fibre, with path
//     inflation and a floor) when both the client and the node have a
//     valid location;
//   - otherwise SameRegionRTT when the node is in the client's region
//     (regions compare case-insensitively);
//   - otherwise routing.UnknownRTT (250 ms).
//
// So with a client location, nodes rank nearest first; without one, nodes
// in the client's region come first; load shifts requests from a busy near
// node to an idle one a bit further away (each queued request weighs as
// much as 10 ms, or about 670 km); and central nodes serve when no edge
// node is reasonably near or idle. Equal scores are ordered by ID.
func Rank(nodes []Node, q Query) []Ranked {
	qLoc := q.HasLoc && q.Loc.Valid()
	seen := make(map[string]bool, len(nodes))
	out := make([]Ranked, 0, len(nodes))
	for _, n := range nodes {
		if !n.Healthy || !n.Ready || n.ID == "" || n.URL == "" || seen[n.ID] {
			continue
		}
		seen[n.ID] = true
		out = append(out, rank(n, q, qLoc))
	}
	slices.SortFunc(out, func(a, b Ranked) int {
		return cmp.Or(cmp.Compare(a.Score, b.Score), strings.Compare(a.ID, b.ID))
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit:q.Limit]
	}
	return out
}

// rank scores one eligible node.
func rank(n Node, q Query, qLoc bool) Ranked {
	r := Ranked{Node: n, DistanceKm: -1}
	c := routing.Candidate{ID: n.ID, Role: n.Role, InFlight: n.Load, Ready: true, Healthy: true}
	var why strings.Builder
	switch {
	case qLoc && n.HasLoc && n.Loc.Valid():
		r.DistanceKm = routing.HaversineKm(q.Loc, n.Loc)
		c.RTT, c.RTTSource = routing.GeoRTT(q.Loc, n.Loc), routing.RTTFromGeo
		fmt.Fprintf(&why, "%.0f km away, est. RTT %s", r.DistanceKm, ms(c.RTT))
	case q.Region != "" && strings.EqualFold(q.Region, n.Region):
		c.RTT, c.RTTSource = SameRegionRTT, routing.RTTFromGeo
		fmt.Fprintf(&why, "same region %s, est. RTT %s", n.Region, ms(c.RTT))
	default:
		c.RTT, c.RTTSource = routing.UnknownRTT, routing.RTTUnknown
		fmt.Fprintf(&why, "distance unknown, est. RTT %s", ms(c.RTT))
	}
	r.Score = routing.Score(c, LoadCost)
	if load := c.Load(); load > 0 {
		fmt.Fprintf(&why, " + load %d × %s", load, ms(LoadCost))
	}
	if n.Role == routing.RoleCentral {
		r.Score += float64(CentralPenalty) / float64(time.Millisecond)
		fmt.Fprintf(&why, " + central tier %s", ms(CentralPenalty))
	}
	r.Why = why.String()
	return r
}

// ms formats d in milliseconds with one decimal: "12.5 ms".
func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
