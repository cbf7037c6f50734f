// Package world is the geography of the simulations: real metropolitan
// areas, edge sites placed in them by population, central clusters in a
// few cloud regions, and a latency and bandwidth model between them.
//
// Latency is physical: the great-circle distance over fibre at about
// 200 km per millisecond one way, times a route-inflation factor (paths
// are not great circles), plus a last-mile term at every edge end, plus
// (in Sample) a random jitter. Everything is deterministic given
// Config.Seed.
package world

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"
)

// Defaults of Config.
const (
	// DefaultRouteInflation is how much longer real routes are than great
	// circles.
	DefaultRouteInflation = 1.5
	// DefaultLastMile is the one-way access delay at an edge end.
	DefaultLastMile = 5 * time.Millisecond
	// DefaultJitter is the mean jitter of Sample as a fraction of OneWay.
	DefaultJitter = 0.1
	// MaxEdgeSites bounds Config.EdgeSites.
	MaxEdgeSites = 1_000_000
)

// FibreKmPerMs is how far light travels in fibre in one millisecond.
const FibreKmPerMs = 200.0

// EarthRadiusKm is the mean radius of the Earth.
const EarthRadiusKm = 6371.0

// Bandwidths of the link classes, in bytes per second.
const (
	// BandwidthMetro is between two edge sites of the same metro (10 Gb/s).
	BandwidthMetro = 1.25e9
	// BandwidthWAN is between edge sites of different metros (1 Gb/s).
	BandwidthWAN = 1.25e8
	// BandwidthEdgeCentral is between an edge site and a central cluster
	// (2 Gb/s).
	BandwidthEdgeCentral = 2.5e8
	// BandwidthBackbone is between central clusters (10 Gb/s).
	BandwidthBackbone = 1.25e9
)

// DefaultCentralRegions are the central regions used when
// Config.CentralRegions is empty.
var DefaultCentralRegions = []string{"us-east", "eu-west", "ap-southeast"}

// ErrInvalidConfig is wrapped by every Config validation error.
var ErrInvalidConfig = errors.New("world: invalid config")

// Config describes a world to Build. Zero fields take the defaults.
type Config struct {
	// Seed seeds the placement of sites.
	Seed uint64
	// EdgeSites is the number of edge sites, 1..MaxEdgeSites.
	EdgeSites int
	// CentralRegions names the cloud regions that hold a central cluster
	// (see CloudRegions); empty means DefaultCentralRegions.
	CentralRegions []string
	// RouteInflation multiplies great-circle distances; zero means
	// DefaultRouteInflation. At least 1.
	RouteInflation float64
	// LastMile is the one-way delay added at each edge end; zero means
	// DefaultLastMile. Use NoLastMile for none.
	LastMile time.Duration
	// Jitter is the mean extra delay of Sample as a fraction of OneWay;
	// zero means DefaultJitter. Use NoJitter for none.
	Jitter float64
}

// NoLastMile and NoJitter turn the last-mile term and the jitter off
// (zero would mean the default).
const (
	NoLastMile time.Duration = -1
	NoJitter   float64       = -1
)

// withDefaults returns cfg with zero fields replaced by defaults, checked.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.EdgeSites < 1 || cfg.EdgeSites > MaxEdgeSites {
		return cfg, fmt.Errorf("%w: EdgeSites %d not in 1..%d", ErrInvalidConfig, cfg.EdgeSites, MaxEdgeSites)
	}
	if len(cfg.CentralRegions) == 0 {
		cfg.CentralRegions = slices.Clone(DefaultCentralRegions)
	}
	seen := map[string]bool{}
	for _, r := range cfg.CentralRegions {
		if _, ok := cloudRegions[r]; !ok {
			return cfg, fmt.Errorf("%w: unknown central region %q (known: %v)", ErrInvalidConfig, r, CloudRegions())
		}
		if seen[r] {
			return cfg, fmt.Errorf("%w: central region %q listed twice", ErrInvalidConfig, r)
		}
		seen[r] = true
	}
	switch {
	case cfg.RouteInflation == 0:
		cfg.RouteInflation = DefaultRouteInflation
	case math.IsNaN(cfg.RouteInflation) || math.IsInf(cfg.RouteInflation, 0) || cfg.RouteInflation < 1 || cfg.RouteInflation > 10:
		return cfg, fmt.Errorf("%w: RouteInflation %g not in [1, 10]", ErrInvalidConfig, cfg.RouteInflation)
	}
	switch {
	case cfg.LastMile == 0:
		cfg.LastMile = DefaultLastMile
	case cfg.LastMile == NoLastMile:
		cfg.LastMile = 0
	case cfg.LastMile < 0 || cfg.LastMile > time.Second:
		return cfg, fmt.Errorf("%w: LastMile %v not in [0, 1s]", ErrInvalidConfig, cfg.LastMile)
	}
	switch {
	case cfg.Jitter == 0:
		cfg.Jitter = DefaultJitter
	case cfg.Jitter == NoJitter:
		cfg.Jitter = 0
	case math.IsNaN(cfg.Jitter) || cfg.Jitter < 0 || cfg.Jitter > 10:
		return cfg, fmt.Errorf("%w: Jitter %g not in [0, 10]", ErrInvalidConfig, cfg.Jitter)
	}
	return cfg, nil
}

// CloudRegions returns the names Config.CentralRegions accepts, sorted.
func CloudRegions() []string {
	out := make([]string, 0, len(cloudRegions))
	for r := range cloudRegions {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Site is an edge site or a central cluster.
type Site struct {
	// ID is the site's index in World.Sites.
	ID int
	// Metro is the index in World.Metros of the metro the site is in.
	Metro int
	// Lat and Lon are the site's position in degrees.
	Lat, Lon float64
	// Central marks a central cluster.
	Central bool
	// Region is the central region the site belongs to: for a central
	// cluster its own region, for an edge site the nearest one.
	Region string
}

// World is a built world. Edge sites come first in Sites (IDs
// 0..EdgeCount()-1, grouped by metro), then one central cluster per
// central region in Config order.
type World struct {
	// Sites are the edge sites then the central clusters.
	Sites []Site
	// Metros is the metro table the sites refer to.
	Metros []Metro
	// Regions are the central regions in Config order.
	Regions []string

	cfg      Config
	edges    int
	centrals []int
	xyz      [][3]float64 // unit vectors of the sites
	nsPerRad float64      // one-way delay in ns per radian of great circle
}

// Build places the sites of a world. Edge sites are apportioned to metros
// by population (largest remainder, so big metros get several and the
// smallest may get none when sites are few), each at a small random offset
// from the metro centre that grows with the metro's size; central clusters
// stand at their cloud region's metro.
func Build(cfg Config) (*World, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &World{
		Metros:  Metros(),
		Regions: slices.Clone(cfg.CentralRegions),
		cfg:     cfg,
		edges:   cfg.EdgeSites,
	}
	// ns of one-way delay per radian of great circle.
	w.nsPerRad = EarthRadiusKm / FibreKmPerMs * cfg.RouteInflation * float64(time.Millisecond)

	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed0f3071d))
	counts := apportion(w.Metros, cfg.EdgeSites)
	w.Sites = make([]Site, 0, cfg.EdgeSites+len(cfg.CentralRegions))
	for mi, n := range counts {
		m := w.Metros[mi]
		radiusKm := 8 + 4*math.Sqrt(m.Population)
		for range n {
			// Uniform in a disc of radiusKm.
			r := radiusKm * math.Sqrt(rng.Float64())
			th := 2 * math.Pi * rng.Float64()
			dLat := r * math.Cos(th) / 111.2
			dLon := r * math.Sin(th) / (111.2 * math.Max(0.1, math.Cos(m.Lat*math.Pi/180)))
			w.Sites = append(w.Sites, Site{
				ID: len(w.Sites), Metro: mi,
				Lat: clampLat(m.Lat + dLat), Lon: wrapLon(m.Lon + dLon),
			})
		}
	}
	for _, region := range cfg.CentralRegions {
		mi := w.metroIndex(cloudRegions[region])
		m := w.Metros[mi]
		w.centrals = append(w.centrals, len(w.Sites))
		w.Sites = append(w.Sites, Site{ID: len(w.Sites), Metro: mi, Lat: m.Lat, Lon: m.Lon, Central: true, Region: region})
	}
	w.xyz = make([][3]float64, len(w.Sites))
	for i, s := range w.Sites {
		w.xyz[i] = unit(s.Lat, s.Lon)
	}
	for i := range w.edges {
		best, bestAng := 0, math.Inf(1)
		for _, c := range w.centrals {
			if a := angle(w.xyz[i], w.xyz[c]); a < bestAng {
				best, bestAng = c, a
			}
		}
		w.Sites[i].Region = w.Sites[best].Region
	}
	return w, nil
}

// apportion splits n sites over the metros in proportion to population by
// the largest-remainder method (ties to the earlier metro).
func apportion(ms []Metro, n int) []int {
	total := 0.0
	for _, m := range ms {
		total += m.Population
	}
	counts := make([]int, len(ms))
	type rem struct {
		i int
		r float64
	}
	rems := make([]rem, len(ms))
	given := 0
	for i, m := range ms {
		q := float64(n) * m.Population / total
		counts[i] = int(q)
		given += counts[i]
		rems[i] = rem{i, q - float64(counts[i])}
	}
	sort.SliceStable(rems, func(a, b int) bool { return rems[a].r > rems[b].r })
	for k := 0; given < n; k = (k + 1) % len(rems) {
		counts[rems[k].i]++
		given++
	}
	return counts
}

func (w *World) metroIndex(name string) int {
	for i, m := range w.Metros {
		if m.Name == name {
			return i
		}
	}
	return -1 // unreachable: the table test checks every cloud region
}

// Config returns the configuration the world was built with, defaults
// applied (NoLastMile and NoJitter read as zero).
func (w *World) Config() Config { return w.cfg }

// EdgeCount returns the number of edge sites; their IDs are
// 0..EdgeCount()-1.
func (w *World) EdgeCount() int { return w.edges }

// Centrals returns the IDs of the central clusters, in region order.
func (w *World) Centrals() []int { return slices.Clone(w.centrals) }

// KmBetween returns the great-circle distance between sites a and b.
func (w *World) KmBetween(a, b int) float64 {
	return angle(w.xyz[a], w.xyz[b]) * EarthRadiusKm
}

// OneWay returns the one-way delay from site a to site b without jitter:
// great-circle distance / 200 km per ms × RouteInflation, plus LastMile for
// each end that is an edge site. A site to itself is zero.
func (w *World) OneWay(a, b int) time.Duration {
	if a == b {
		return 0
	}
	d := time.Duration(angle(w.xyz[a], w.xyz[b]) * w.nsPerRad)
	if !w.Sites[a].Central {
		d += w.cfg.LastMile
	}
	if !w.Sites[b].Central {
		d += w.cfg.LastMile
	}
	return d
}

// FromPoint returns the one-way delay without jitter from a client at
// lat, lon to site b: distance as in OneWay, plus LastMile at the client's
// end and at b's end when b is an edge site.
func (w *World) FromPoint(lat, lon float64, b int) time.Duration {
	d := time.Duration(angle(unit(lat, lon), w.xyz[b])*w.nsPerRad) + w.cfg.LastMile
	if !w.Sites[b].Central {
		d += w.cfg.LastMile
	}
	return d
}

// Sample returns OneWay(a, b) with jitter: OneWay × (1 + Jitter·X), X
// exponential with mean 1, drawn from r.
func (w *World) Sample(r *rand.Rand, a, b int) time.Duration {
	return w.Jitter(r, w.OneWay(a, b))
}

// Jitter returns d × (1 + Jitter·X), X exponential with mean 1, drawn
// from r. It draws nothing when the world has no jitter.
func (w *World) Jitter(r *rand.Rand, d time.Duration) time.Duration {
	if w.cfg.Jitter == 0 || d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + w.cfg.Jitter*r.ExpFloat64()))
}

// Bandwidth returns the bandwidth in bytes per second of the link class
// between sites a and b: BandwidthMetro for two edge sites of one metro
// (or a site to itself), BandwidthWAN for two edge sites of different
// metros, BandwidthEdgeCentral between an edge site and a central cluster,
// BandwidthBackbone between central clusters.
func (w *World) Bandwidth(a, b int) float64 {
	ca, cb := w.Sites[a].Central, w.Sites[b].Central
	switch {
	case ca && cb:
		return BandwidthBackbone
	case ca || cb:
		return BandwidthEdgeCentral
	case a == b || w.Sites[a].Metro == w.Sites[b].Metro:
		return BandwidthMetro
	default:
		return BandwidthWAN
	}
}

// Nearest returns the ID of the site closest to lat, lon by great-circle
// distance among those filter accepts (all when filter is nil), ties to
// the lower ID, or -1 when none is accepted.
func (w *World) Nearest(lat, lon float64, filter func(Site) bool) int {
	p := unit(lat, lon)
	best, bestAng := -1, math.Inf(1)
	for i, s := range w.Sites {
		if filter != nil && !filter(s) {
			continue
		}
		if a := angle(p, w.xyz[i]); a < bestAng {
			best, bestAng = i, a
		}
	}
	return best
}

// unit returns the unit vector of a point on the sphere.
func unit(lat, lon float64) [3]float64 {
	const rad = math.Pi / 180
	la, lo := lat*rad, lon*rad
	return [3]float64{math.Cos(la) * math.Cos(lo), math.Cos(la) * math.Sin(lo), math.Sin(la)}
}

// angle returns the central angle between two unit vectors in radians,
// from the chord length (accurate for small and large angles alike).
func angle(a, b [3]float64) float64 {
	dx, dy, dz := a[0]-b[0], a[1]-b[1], a[2]-b[2]
	c := math.Sqrt(dx*dx+dy*dy+dz*dz) / 2
	if c > 1 {
		c = 1
	}
	return 2 * math.Asin(c)
}

func clampLat(l float64) float64 { return math.Max(-89.9, math.Min(89.9, l)) }

func wrapLon(l float64) float64 {
	for l > 180 {
		l -= 360
	}
	for l < -180 {
		l += 360
	}
	return l
}
