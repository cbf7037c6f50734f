package edgesim

import (
	"slices"
	"time"

	"github.com/petrel-mesh/petrel/coordinator/georoute"
	"github.com/petrel-mesh/petrel/routing"
	"github.com/petrel-mesh/petrel/simulations/des"
)

// routeAnswer is a client's cached route answer for one model.
type routeAnswer struct {
	// expires is when the client asks again.
	expires des.Time
	// sites are the ranked edge nodes the client will try in turn; empty
	// means use the metro entry.
	sites []int32
}

// routeState is the routed entry's state in a run.
type routeState struct {
	// answers are the clients' cached answers by cell and model
	// (cell × Models + model); looked up by key, never iterated.
	answers map[int64]routeAnswer
	nodes   []georoute.Node
	best    []float64        // the Limit lowest score bounds seen, ascending
	siteOf  map[string]int32 // node ID → site
	urls    []string         // node URLs, by site
	// centreRTT is routing.GeoRTT from each metro's centre to its
	// metroNearest sites.
	centreRTT [][]time.Duration
	// load and loadAt are the loads the coordinator last heard of.
	load   []int
	loadAt []des.Time
}

// buildRoutes prepares the routed entry.
func (x *sim) buildRoutes() {
	rs := &routeState{
		answers: make(map[int64]routeAnswer),
		siteOf:  make(map[string]int32, len(x.nodes)),
		urls:    make([]string, len(x.nodes)),
		load:    make([]int, len(x.nodes)),
		loadAt:  make([]des.Time, len(x.nodes)),
	}
	for _, n := range x.nodes {
		rs.siteOf[n.name] = int32(n.id)
		rs.urls[n.id] = "https://" + n.name + ".petrel.example"
	}
	rs.centreRTT = make([][]time.Duration, len(x.w.Metros))
	for m, mt := range x.w.Metros {
		centre := routing.Location{Lat: mt.Lat, Lon: mt.Lon}
		rs.centreRTT[m] = make([]time.Duration, len(x.metroNearest[m]))
		for i, s := range x.metroNearest[m] {
			rs.centreRTT[m][i] = routing.GeoRTT(centre, x.nodes[s].loc)
		}
	}
	for i := range rs.loadAt {
		rs.loadAt[i] = -1 << 62
	}
	x.route = rs
}

// coordinatorLoad is node n's load as the coordinator knows it: in
// flight plus queued, reported at most every RouteReportInterval.
func (x *sim) coordinatorLoad(n *node) int {
	rs, now := x.route, x.s.Now()
	if now-rs.loadAt[n.id] >= x.cfg.RouteReportInterval || now < rs.loadAt[n.id] {
		rs.load[n.id], rs.loadAt[n.id] = n.load, now
	}
	return rs.load[n.id]
}

// routeFor returns the route answer for a client in cell (an edge site of
// its metro: clients are spread over a metro as its sites are, and the
// coordinator places a client at its cell) asking for model k, and
// whether the client had to ask the coordinator (its cache had no answer
// or an expired one).
//
// Asking runs georoute.Rank over the nodes as the coordinator sees them:
// Ready when the model is loaded, Healthy unless known to be down, Load
// as last reported. Like a coordinator's spatial index, it hands Rank
// the central clusters and the edge holders among the metro's 256 nearest
// sites in order of distance, stopping once a bound below a holder's
// routing.GeoRTT from the cell (so below its score) exceeds the
// RouteLimit-th lowest score so far: no holder further away could enter
// the answer.
func (x *sim) routeFor(metro int, cell int32, k int) (sites []int32, asked bool) {
	rs, now := x.route, x.s.Now()
	key := int64(cell)*int64(x.cfg.Models) + int64(k)
	if a, ok := rs.answers[key]; ok && now < a.expires {
		return a.sites, false
	}
	x.res.RouteLookups++
	c := x.nodes[cell]
	rs.nodes, rs.best = rs.nodes[:0], rs.best[:0]
	limit := x.cfg.RouteLimit
	// The metro's nearest edge sites are in order of distance from its
	// centre; GeoRTT is affine in distance, so by the triangle inequality
	// GeoRTT(cell, n) ≥ GeoRTT(centre, n) − GeoRTT(centre, cell) +
	// GeoRTTFloor.
	mt := x.w.Metros[metro]
	centre := routing.Location{Lat: mt.Lat, Lon: mt.Lon}
	slackToCell := routing.GeoRTT(centre, c.loc) - routing.GeoRTTFloor
	for i, s := range x.metroNearest[metro] {
		n := x.nodes[s]
		if n.knownDown || !n.has(k) {
			continue // Rank would drop it: not ready or not healthy
		}
		if len(rs.best) >= limit && ms(rs.centreRTT[metro][i]-slackToCell) > rs.best[limit-1] {
			break
		}
		load := x.coordinatorLoad(n)
		rtt := routing.GeoRTT(c.loc, n.loc)
		bound := routing.Score(routing.Candidate{RTT: rtt, RTTSource: routing.RTTFromGeo, InFlight: load}, georoute.LoadCost)
		j, _ := slices.BinarySearch(rs.best, bound)
		rs.best = slices.Insert(rs.best, j, bound)
		rs.best = rs.best[:min(len(rs.best), limit)]
		rs.nodes = append(rs.nodes, x.georouteNode(n, load))
	}
	for i := x.edges; i < len(x.nodes); i++ {
		if n := x.nodes[i]; !n.knownDown {
			rs.nodes = append(rs.nodes, x.georouteNode(n, 0))
		}
	}
	ranked := georoute.Rank(rs.nodes, georoute.Query{Loc: c.loc, HasLoc: true, Limit: limit})
	// The client takes the answer when its best node is at the edge and
	// within RouteSlack of its own cell's site; otherwise the metro entry
	// (which may then admit the model) serves it.
	var out []int32
	bound := ms(routing.GeoRTT(c.loc, c.loc) + x.cfg.RouteSlack)
	if len(ranked) > 0 && ranked[0].Role != routing.RoleCentral && ranked[0].Score <= bound {
		for _, r := range ranked {
			if r.Role != routing.RoleCentral {
				out = append(out, rs.siteOf[r.ID])
			}
		}
	}
	rs.answers[key] = routeAnswer{expires: now + x.cfg.RouteTTL, sites: out}
	return out, true
}

// georouteNode is n as the coordinator reports it to georoute.Rank (the
// caller has checked that n has the model and is not known down).
func (x *sim) georouteNode(n *node, load int) georoute.Node {
	role := routing.RoleEdge
	if n.central {
		role = routing.RoleCentral
	}
	return georoute.Node{
		ID: n.name, Region: x.w.Regions[n.region], URL: x.route.urls[n.id],
		Loc: n.loc, HasLoc: true, Load: load, Ready: true, Healthy: true, Role: role,
	}
}

// sendRouted starts a routed request: it looks up the route (paying for
// a miss as RouteLookup says) and sends r to the first ranked node, or
// through the metro entry when the answer says so.
func (x *sim) sendRouted(r *request) {
	list := x.metroEntries[r.metro]
	r.cell = list[x.rng.IntN(len(list))]
	sites, asked := x.routeFor(int(r.metro), r.cell, int(r.model))
	r.route = sites
	var wait time.Duration
	if asked && x.cfg.RouteLookup == LookupRTT {
		wait = time.Duration(2 * float64(x.metroCentral[r.metro]) * r.jf)
	}
	if len(sites) > 0 {
		x.res.Routed++
	}
	if wait > 0 {
		x.s.After(wait, func() { x.sendToEntry(r) })
		return
	}
	x.sendToEntry(r)
}

// nextRouted returns the next ranked node of r's route answer that the
// client has not tried and does not know to be down, or -1.
func (x *sim) nextRouted(r *request) int32 {
	for _, s := range r.route {
		if !x.nodes[s].knownDown && !r.triedSite(s) {
			return s
		}
	}
	return -1
}
