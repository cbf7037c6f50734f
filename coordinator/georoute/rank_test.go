package georoute

import (
	"math"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/routing"
)

var (
	berlin    = routing.Location{Lat: 52.52, Lon: 13.405}
	paris     = routing.Location{Lat: 48.8566, Lon: 2.3522}
	london    = routing.Location{Lat: 51.5074, Lon: -0.1278}
	newYork   = routing.Location{Lat: 40.7128, Lon: -74.006}
	frankfurt = routing.Location{Lat: 50.1109, Lon: 8.6821}
)

// edge returns a healthy, ready edge node at loc.
func edge(id, region string, loc routing.Location) Node {
	return Node{ID: id, Region: region, URL: "https://" + id, Loc: loc, HasLoc: loc.Valid(), Ready: true, Healthy: true, Role: routing.RoleEdge}
}

func with(n Node, f func(*Node)) Node { f(&n); return n }

func ids(rs []Ranked) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.ID
	}
	return strings.Join(s, ",")
}

func TestRank(t *testing.T) {
	atBerlin := Query{Loc: berlin, HasLoc: true}
	tests := []struct {
		name  string
		nodes []Node
		q     Query
		want  string
	}{
		{
			name:  "nearest first",
			nodes: []Node{edge("ny", "us-east", newYork), edge("par", "eu-west", paris), edge("fra", "eu-central", frankfurt), edge("lon", "eu-west", london)},
			q:     atBerlin,
			want:  "fra,par,lon,ny",
		},
		{
			name:  "limit",
			nodes: []Node{edge("ny", "us-east", newYork), edge("par", "eu-west", paris), edge("fra", "eu-central", frankfurt)},
			q:     Query{Loc: berlin, HasLoc: true, Limit: 2},
			want:  "fra,par",
		},
		{
			name:  "region fallback without a client location",
			nodes: []Node{edge("ny", "us-east", newYork), edge("par", "eu-west", paris), edge("lon", "eu-west", london)},
			q:     Query{Region: "EU-West"},
			want:  "lon,par,ny",
		},
		{
			name:  "same-region node without a location beats far nodes",
			nodes: []Node{edge("ny", "us-east", newYork), edge("fra-noloc", "eu-central", routing.Location{})},
			q:     Query{Loc: berlin, HasLoc: true, Region: "eu-central"},
			want:  "fra-noloc,ny",
		},
		{
			name:  "nothing known: by load then ID",
			nodes: []Node{with(edge("b", "", routing.Location{}), func(n *Node) { n.Load = 1 }), edge("c", "", routing.Location{}), edge("a", "", routing.Location{})},
			q:     Query{},
			want:  "a,c,b",
		},
		{
			name: "load shifts the choice",
			nodes: []Node{
				with(edge("fra", "eu-central", frankfurt), func(n *Node) { n.Load = 10 }),
				edge("par", "eu-west", paris),
			},
			q:    atBerlin,
			want: "par,fra",
		},
		{
			name: "light load does not send clients across the ocean",
			nodes: []Node{
				with(edge("fra", "eu-central", frankfurt), func(n *Node) { n.Load = 5 }),
				edge("ny", "us-east", newYork),
			},
			q:    atBerlin,
			want: "fra,ny",
		},
		{
			name: "negative load counts as zero",
			nodes: []Node{
				with(edge("par", "eu-west", paris), func(n *Node) { n.Load = -100 }),
				edge("fra", "eu-central", frankfurt),
			},
			q:    atBerlin,
			want: "fra,par",
		},
		{
			name: "unhealthy, not ready, unnamed and URL-less nodes excluded",
			nodes: []Node{
				with(edge("fra", "eu-central", frankfurt), func(n *Node) { n.Healthy = false }),
				with(edge("ber", "eu-central", berlin), func(n *Node) { n.Ready = false }),
				with(edge("x", "eu-central", berlin), func(n *Node) { n.ID = "" }),
				with(edge("y", "eu-central", berlin), func(n *Node) { n.URL = "" }),
				edge("ny", "us-east", newYork),
			},
			q:    atBerlin,
			want: "ny",
		},
		{
			name:  "none eligible",
			nodes: []Node{with(edge("fra", "eu-central", frankfurt), func(n *Node) { n.Ready = false })},
			q:     atBerlin,
			want:  "",
		},
		{
			name: "central as last resort",
			nodes: []Node{
				with(edge("c-ber", "eu-central", berlin), func(n *Node) { n.Role = routing.RoleCentral }),
				edge("par", "eu-west", paris),
				with(edge("fra-down", "eu-central", frankfurt), func(n *Node) { n.Healthy = false }),
			},
			q:    atBerlin,
			want: "par,c-ber",
		},
		{
			name: "central when the edge is an ocean away",
			nodes: []Node{
				with(edge("c-ber", "eu-central", berlin), func(n *Node) { n.Role = routing.RoleCentral }),
				edge("ny", "us-east", newYork),
			},
			q:    atBerlin,
			want: "c-ber,ny",
		},
		{
			name: "only central",
			nodes: []Node{
				with(edge("c2", "", newYork), func(n *Node) { n.Role = routing.RoleCentral }),
				with(edge("c1", "", frankfurt), func(n *Node) { n.Role = routing.RoleCentral }),
			},
			q:    atBerlin,
			want: "c1,c2",
		},
		{
			name:  "duplicate IDs: first wins",
			nodes: []Node{edge("a", "", newYork), edge("a", "", berlin), edge("b", "", paris)},
			q:     atBerlin,
			want:  "b,a",
		},
		{
			name:  "ties by ID",
			nodes: []Node{edge("z", "", berlin), edge("m", "", berlin), edge("a", "", berlin)},
			q:     atBerlin,
			want:  "a,m,z",
		},
		{
			name:  "invalid client location ignored",
			nodes: []Node{edge("ny", "us-east", newYork), edge("fra", "eu-central", frankfurt)},
			q:     Query{Loc: routing.Location{Lat: math.NaN()}, HasLoc: true, Region: "us-east"},
			want:  "ny,fra",
		},
		{
			name: "invalid node location ignored",
			nodes: []Node{
				with(edge("bad", "", routing.Location{Lat: 200, Lon: 0}), func(n *Node) { n.HasLoc = true }),
				edge("ny", "us-east", newYork),
			},
			q:    atBerlin,
			want: "ny,bad",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Rank(tt.nodes, tt.q)
			if ids(got) != tt.want {
				t.Fatalf("Rank = %s, want %s", ids(got), tt.want)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Score < got[i-1].Score {
					t.Fatalf("not sorted by score: %+v", got)
				}
			}
			for _, r := range got {
				if math.IsNaN(r.Score) || r.Why == "" {
					t.Fatalf("bad entry %+v", r)
				}
			}
		})
	}
}

func TestRankScoreAndWhy(t *testing.T) {
	n := with(edge("c", "eu-central", frankfurt), func(n *Node) { n.Load = 2; n.Role = routing.RoleCentral })
	got := Rank([]Node{n}, Query{Loc: berlin, HasLoc: true})
	if len(got) != 1 {
		t.Fatal(got)
	}
	r := got[0]
	km := routing.HaversineKm(berlin, frankfurt)
	rtt := float64(routing.GeoRTT(berlin, frankfurt)) / 1e6
	if math.Abs(r.DistanceKm-km) > 1e-9 {
		t.Fatalf("DistanceKm = %g, want %g", r.DistanceKm, km)
	}
	if want := rtt + 2*10 + 50; math.Abs(r.Score-want) > 1e-9 {
		t.Fatalf("Score = %g, want %g", r.Score, want)
	}
	if want := "424 km away, est. RTT 8.4 ms + load 2 × 10.0 ms + central tier 50.0 ms"; r.Why != want {
		t.Fatalf("Why = %q, want %q", r.Why, want)
	}

	got = Rank([]Node{edge("a", "eu-central", routing.Location{}), edge("b", "us-east", routing.Location{})}, Query{Region: "eu-central"})
	if got[0].DistanceKm != -1 || got[0].Score != 10 || got[0].Why != "same region eu-central, est. RTT 10.0 ms" {
		t.Fatalf("same region: %+v", got[0])
	}
	if got[1].Score != 250 || got[1].Why != "distance unknown, est. RTT 250.0 ms" {
		t.Fatalf("unknown: %+v", got[1])
	}
}

func TestRankDoesNotModifyInput(t *testing.T) {
	nodes := []Node{edge("b", "", paris), edge("a", "", frankfurt)}
	before := ids([]Ranked{{Node: nodes[0]}, {Node: nodes[1]}})
	Rank(nodes, Query{Loc: berlin, HasLoc: true, Limit: 1})
	if after := ids([]Ranked{{Node: nodes[0]}, {Node: nodes[1]}}); after != before {
		t.Fatalf("input reordered: %s", after)
	}
}
