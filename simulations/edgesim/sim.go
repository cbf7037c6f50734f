package edgesim

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/node/modelcache"
	"github.com/petrel-mesh/petrel/node/respcache"
	"github.com/petrel-mesh/petrel/routing"
	"github.com/petrel-mesh/petrel/simulations/des"
	"github.com/petrel-mesh/petrel/simulations/world"
)

// Where a request was served.
const (
	servedLocal uint8 = iota
	servedPeer
	servedCentral
	servedFailed

	// flashFlag marks, in sim.kind, a request of the flash metro during
	// the flash crowd.
	flashFlag uint8 = 0x80
)

// oracleReach is how many of a metro's nearest edge sites the oracle
// searches for one holding the model; beyond them it takes the nearest
// central cluster (which holds every model).
const oracleReach = 256

// respHitTime is the time a node takes to answer from its response cache.
const respHitTime = 100 * time.Microsecond

// node is one edge site or central cluster.
type node struct {
	id        int
	name      string
	loc       routing.Location
	region    int
	central   bool
	down      bool
	knownDown bool
	downSince des.Time
	epoch     uint32
	slow      float64
	slots     []des.Time // when each execution slot is next free
	load      int        // requests here, executing or waiting
	repLoad   int        // load as last reported to peers
	repAt     des.Time
	cache     *modelcache.Cache
	loaded    []uint64 // bitset of models in cache
	loading   []uint64 // bitset of models being loaded
	resp      *respcache.Cache
	neigh     []int32 // nearest edge sites, nearest first
	centrals  []int32 // central clusters, nearest first
	coord     *routing.Coordinate
}

func (n *node) has(m int) bool       { return n.loaded[m>>6]&(1<<(m&63)) != 0 }
func (n *node) setHas(m int, v bool) { setBit(n.loaded, m, v) }
func (n *node) isLoading(m int) bool { return n.loading[m>>6]&(1<<(m&63)) != 0 }

func setBit(b []uint64, m int, v bool) {
	if v {
		b[m>>6] |= 1 << (m & 63)
	} else {
		b[m>>6] &^= 1 << (m & 63)
	}
}

// waiting returns the requests queued behind the busy slots.
func (n *node) waiting() int { return max(0, n.load-len(n.slots)) }

// request is one client request in flight.
type request struct {
	start    des.Time
	sentAt   des.Time // when the client last sent it
	metro    int32
	model    int32
	entry    int32
	input    uint64
	clientOW time.Duration // one way, client to entry, with jitter
	jf       float64       // the client leg's jitter factor
	oracle   time.Duration
	tried    []int32 // sites that timed out or were tried as peers
	route    []int32 // the route answer's edge nodes (routed entry)
	cell     int32   // the metro site the client is near (routed entry)
	peers    int     // peers tried
	index    int32
}

func (r *request) triedSite(s int32) bool { return slices.Contains(r.tried, s) }

// sim is one run.
type sim struct {
	cfg    Config
	s      *des.Sim
	rng    *rand.Rand
	w      *world.World
	cat    *catalog
	nodes  []*node
	edges  int
	policy routing.Policy
	dur    des.Time

	metroCDF     []float64
	metroEntries [][]int32
	metroNearest [][]int32         // nearest edge sites, up to oracleReach
	metroNearOW  [][]time.Duration // their one-way delays from the metro
	metroCentral []time.Duration   // one way to the nearest central cluster
	geoOW        []time.Duration   // one way to the nearest site of any kind
	inputCDF     []float64
	partitioned  []bool
	regionOf     map[string]int
	flashMetro   int
	flashStart   des.Time
	flashEnd     des.Time

	route     *routeState // routed entry only
	coordErr  float64
	generated int
	uniqueSeq uint64
	ctx       context.Context
	ctxErr    error

	cands    []routing.Candidate
	candSite []int32
	tensor   [1]models.Tensor
	tdata    [8]byte
	respVal  []models.Tensor

	res  *Result
	lat  []float32
	orc  []float32
	geo  []float32
	kind []uint8
	bkt  []uint16
}

// Run simulates cfg and returns its result. It fails on an invalid
// configuration or when ctx ends first.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	x, err := build(ctx, cfg)
	if err != nil {
		return nil, err
	}
	x.run()
	if x.ctxErr != nil {
		return nil, fmt.Errorf("edgesim: %s: %w", cfg.Name, x.ctxErr)
	}
	return x.result(), nil
}

// build sets up the world, the catalogue, the nodes and their caches.
func build(ctx context.Context, cfg Config) (*sim, error) {
	w, err := world.Build(world.Config{
		Seed: cfg.Seed, EdgeSites: cfg.Sites, CentralRegions: cfg.CentralRegions,
		RouteInflation: cfg.RouteInflation, LastMile: cfg.LastMile, Jitter: cfg.Jitter,
	})
	if errors.Is(err, world.ErrInvalidConfig) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	} else if err != nil {
		return nil, fmt.Errorf("edgesim: %w", err)
	}
	x := &sim{cfg: cfg, s: des.New(cfg.Seed), w: w, edges: w.EdgeCount(), ctx: ctx, flashMetro: -1}
	x.rng = x.s.Rand()
	x.cat = newCatalog(cfg, rand.New(rand.NewPCG(cfg.Seed, 0xca7a109)))
	x.dur = des.Time(float64(cfg.Requests) * float64(x.cat.meanSvc) / (float64(cfg.Sites*cfg.Slots) * cfg.Utilisation))
	x.dur = max(x.dur, time.Millisecond)
	if cfg.AdmissionWindow == 0 {
		x.cfg.AdmissionWindow = x.dur / 5
	}
	x.inputCDF = zipfCDF(cfg.PopularInputs, 1.0)
	x.regionOf = map[string]int{}
	for i, r := range w.Regions {
		x.regionOf[r] = i
	}
	x.partitioned = make([]bool, len(w.Regions))

	polName := cfg.Policy
	if polName == PolicyGeo || polName == PolicyCoordinates {
		polName = routing.PolicyNearest
	}
	x.policy, err = routing.NewPolicy(polName, routing.PolicyOptions{ServiceTime: x.cat.meanSvc, Seed: cfg.Seed ^ 0x2c})
	if err != nil {
		return nil, fmt.Errorf("edgesim: %w", err)
	}
	if err := x.buildNodes(); err != nil {
		return nil, err
	}
	x.buildTraffic()
	if cfg.Entry == EntryRouted {
		x.buildRoutes()
	}
	if cfg.Policy == PolicyCoordinates {
		x.buildCoordinates()
	}
	x.preload()
	x.scheduleFaults()

	x.tensor[0] = models.Tensor{Name: "x", DataType: models.Int64, Shape: []int64{1}, Data: x.tdata[:]}
	x.respVal = []models.Tensor{{Name: "y", DataType: models.FP32, Shape: []int64{int64(cfg.ResponseBytes / 4)}, Data: make([]byte, cfg.ResponseBytes)}}
	n := cfg.Requests
	x.lat, x.orc, x.geo = make([]float32, 0, n), make([]float32, 0, n), make([]float32, 0, n)
	x.kind, x.bkt = make([]uint8, 0, n), make([]uint16, 0, n)
	x.res = &Result{Name: cfg.Name, Scenario: cfg.Scenario, Policy: cfg.Policy, Entry: cfg.Entry, Sites: cfg.Sites, Models: cfg.Models}
	return x, nil
}

// buildNodes creates the nodes, their neighbourhoods and caches.
func (x *sim) buildNodes() error {
	cfg, w := x.cfg, x.w
	words := (cfg.Models + 63) / 64
	capB := int64(cfg.CacheFraction * float64(x.cat.total))
	x.nodes = make([]*node, len(w.Sites))
	for i, s := range w.Sites {
		n := &node{id: i, loc: routing.Location{Lat: s.Lat, Lon: s.Lon}, central: s.Central, slow: 1, region: x.regionOf[s.Region]}
		if s.Central {
			n.name = "central-" + s.Region
		} else {
			n.name = fmt.Sprintf("edge-%05d", i)
			n.slots = make([]des.Time, cfg.Slots)
			n.loaded, n.loading = make([]uint64, words), make([]uint64, words)
			var adm modelcache.Admission = modelcache.AlwaysAdmit{}
			if cfg.Admission == AdmitDoorkeeper {
				dk, err := modelcache.NewDoorkeeper(modelcache.DoorkeeperConfig{Window: int64(x.cfg.AdmissionWindow), MaxKeys: 4 * cfg.Models})
				if err != nil {
					return fmt.Errorf("edgesim: %w", err)
				}
				adm = dk
			}
			c, err := modelcache.NewCache(max(capB, 1), adm)
			if err != nil {
				return fmt.Errorf("edgesim: %w", err)
			}
			n.cache = c
			if cfg.RespCacheBytes > 0 {
				n.resp = respcache.New(cfg.RespCacheBytes)
			}
		}
		x.nodes[i] = n
	}
	// Central clusters by distance, for every site.
	cs := w.Centrals()
	for _, n := range x.nodes {
		order := make([]int32, len(cs))
		for k, c := range cs {
			order[k] = int32(c)
		}
		slices.SortStableFunc(order, func(a, b int32) int { return cmp.Compare(w.OneWay(n.id, int(a)), w.OneWay(n.id, int(b))) })
		n.centrals = order
	}
	x.buildNeighbourhoods()
	return nil
}

// buildNeighbourhoods gives every edge node its Neighbourhood nearest edge
// sites: candidates from the nearest metros (by centre), sorted by the
// true one-way delay.
func (x *sim) buildNeighbourhoods() {
	w, k := x.w, x.cfg.Neighbourhood
	byMetro := make([][]int32, len(w.Metros))
	for i := range x.edges {
		m := w.Sites[i].Metro
		byMetro[m] = append(byMetro[m], int32(i))
	}
	metroOrder := make([][]int, len(w.Metros))
	for m := range w.Metros {
		ord := make([]int, len(w.Metros))
		for j := range ord {
			ord[j] = j
		}
		d := func(j int) float64 { return km(w.Metros[m], w.Metros[j]) }
		slices.SortStableFunc(ord, func(a, b int) int { return cmp.Compare(d(a), d(b)) })
		metroOrder[m] = ord
	}
	var pool []int32
	for i := range x.edges {
		m := w.Sites[i].Metro
		pool = pool[:0]
		// Gather from the nearest metros until 2k candidates (or all),
		// then sort by true delay.
		for _, j := range metroOrder[m] {
			pool = append(pool, byMetro[j]...)
			if len(pool) > 2*k+1 {
				break
			}
		}
		pool = slices.DeleteFunc(pool, func(s int32) bool { return int(s) == i })
		slices.SortStableFunc(pool, func(a, b int32) int {
			return cmp2(w.OneWay(i, int(a)), w.OneWay(i, int(b)), a, b)
		})
		x.nodes[i].neigh = slices.Clone(pool[:min(k, len(pool))])
	}
}

func cmp2(a, b time.Duration, ia, ib int32) int {
	if c := cmp.Compare(a, b); c != 0 {
		return c
	}
	return int(ia - ib)
}

func km(a, b world.Metro) float64 {
	return routing.HaversineKm(routing.Location{Lat: a.Lat, Lon: a.Lon}, routing.Location{Lat: b.Lat, Lon: b.Lon})
}

// buildTraffic prepares client placement: which sites serve each metro
// and the oracle's nearest distance.
func (x *sim) buildTraffic() {
	w := x.w
	x.metroCDF = make([]float64, len(w.Metros))
	acc := 0.0
	for i, m := range w.Metros {
		acc += m.Population
		x.metroCDF[i] = acc
	}
	for i := range x.metroCDF {
		x.metroCDF[i] /= acc
	}
	x.metroEntries = make([][]int32, len(w.Metros))
	for i := range x.edges {
		m := w.Sites[i].Metro
		x.metroEntries[m] = append(x.metroEntries[m], int32(i))
	}
	x.metroNearest = make([][]int32, len(w.Metros))
	x.metroNearOW = make([][]time.Duration, len(w.Metros))
	x.metroCentral = make([]time.Duration, len(w.Metros))
	x.geoOW = make([]time.Duration, len(w.Metros))
	type cand struct {
		s int32
		d time.Duration
	}
	for mi, m := range w.Metros {
		var cs []cand
		best, central := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
		for s := range w.Sites {
			d := w.FromPoint(m.Lat, m.Lon, s)
			best = min(best, d)
			if s < x.edges {
				cs = append(cs, cand{int32(s), d})
			} else {
				central = min(central, d)
			}
		}
		x.geoOW[mi], x.metroCentral[mi] = best, central
		slices.SortStableFunc(cs, func(a, b cand) int { return cmp2(a.d, b.d, a.s, b.s) })
		cs = cs[:min(oracleReach, len(cs))]
		near := make([]int32, len(cs))
		nearOW := make([]time.Duration, len(cs))
		for k, c := range cs {
			near[k], nearOW[k] = c.s, c.d
		}
		x.metroNearest[mi], x.metroNearOW[mi] = near, nearOW
		if len(x.metroEntries[mi]) == 0 {
			x.metroEntries[mi] = near[:min(2, len(near))]
		}
	}
	if f := x.cfg.Flash; f != nil {
		x.flashMetro = metroByName(f.Metro)
		x.flashStart = des.Time(f.Start * float64(x.dur))
		x.flashEnd = des.Time((f.Start + f.Length) * float64(x.dur))
	}
}

// buildCoordinates runs routing's Vivaldi CoordinateClient on every site
// over sampled RTTs (half to neighbours, half to random sites) until the
// coordinates settle, and keeps each site's coordinate.
func (x *sim) buildCoordinates() {
	w := x.w
	rng := rand.New(rand.NewPCG(x.cfg.Seed, 0xc00d))
	clients := make([]*routing.CoordinateClient, len(x.nodes))
	for i := range clients {
		c, err := routing.NewCoordinateClientSeeded(nil, x.cfg.Seed+uint64(i))
		if err != nil {
			return // unreachable with the default config; geo fallback applies
		}
		clients[i] = c
	}
	const rounds = 100
	for range rounds {
		for i := range x.nodes {
			var j int
			if nb := x.neighOf(i); len(nb) > 0 && rng.IntN(2) == 0 {
				j = int(nb[rng.IntN(len(nb))])
			} else {
				j = rng.IntN(len(x.nodes))
			}
			if j == i {
				continue
			}
			rtt := w.Sample(rng, i, j) + w.Sample(rng, j, i)
			_, _ = clients[i].Update(x.nodes[j].name, clients[j].GetCoordinate(), rtt)
		}
	}
	for i, c := range clients {
		x.nodes[i].coord = c.GetCoordinate()
	}
	// Median relative error over random pairs, for the report.
	errs := make([]float64, 0, 2000)
	for range 2000 {
		a, b := rng.IntN(len(x.nodes)), rng.IntN(len(x.nodes))
		if a == b {
			continue
		}
		truth := 2 * w.OneWay(a, b)
		est := x.nodes[a].coord.DistanceTo(x.nodes[b].coord)
		errs = append(errs, math.Abs(float64(est-truth))/float64(truth))
	}
	slices.Sort(errs)
	if len(errs) > 0 {
		x.coordErr = errs[len(errs)/2]
	}
}

func (x *sim) neighOf(i int) []int32 {
	if i < x.edges {
		return x.nodes[i].neigh
	}
	return nil
}

// preload fills the edge caches before the run: first the globally most
// popular models up to PreloadPopular of the memory, then models placed
// by routing.Place within each region into the rest.
func (x *sim) preload() {
	cfg, cat := x.cfg, x.cat
	if cfg.PreloadPopular < 0 || x.edges == 0 {
		return
	}
	capB := x.nodes[0].cache.Limit()
	popBudget := int64(cfg.PreloadPopular * float64(capB))
	var popular, tail []int
	var popBytes, tailBytes int64
	for m := range cfg.Models {
		if popBytes+cat.bytes[m] <= popBudget {
			popular = append(popular, m)
			popBytes += cat.bytes[m]
		} else {
			tail = append(tail, m)
			tailBytes += cat.bytes[m]
		}
	}
	for i := range x.edges {
		for _, m := range popular {
			x.addModel(x.nodes[i], m, 0)
		}
	}
	if len(tail) == 0 || popBytes >= capB {
		return
	}
	groups := make([][]int, len(x.w.Regions))
	for i := range x.edges {
		groups[x.nodes[i].region] = append(groups[x.nodes[i].region], i)
	}
	for _, g := range groups {
		if len(g) == 0 {
			continue
		}
		rem := capB - popBytes
		r := int(math.Round(float64(len(g)) * float64(rem) / float64(tailBytes)))
		r = max(1, min(r, len(g)))
		held := make([]int, len(g))
		idx := make(map[string]int, len(g))
		cands := make([]routing.Candidate, len(g))
		for k, i := range g {
			idx[x.nodes[i].name] = k
		}
		for _, m := range tail {
			for k, i := range g {
				cands[k] = routing.Candidate{ID: x.nodes[i].name, Healthy: true, QueueDepth: held[k]}
			}
			for _, id := range routing.Place(cat.keys[m], cands, r, 0) {
				k := idx[id]
				n := x.nodes[g[k]]
				if n.cache.Bytes()+cat.bytes[m] <= capB {
					x.addModel(n, m, 0)
					held[k] += int(cat.bytes[m] / 1e6)
				}
			}
		}
	}
}

// addModel puts model m into n's cache and mirrors the evictions.
func (x *sim) addModel(n *node, m int, now des.Time) {
	evicted, ok := n.cache.Add(x.cat.keys[m], x.cat.bytes[m], int64(now), false)
	for _, k := range evicted {
		n.setHas(x.cat.index[k], false)
		x.res.Evictions++
	}
	if ok {
		n.setHas(m, true)
	}
}

// scheduleFaults schedules crashes, recoveries, partitions and picks the
// slow nodes.
func (x *sim) scheduleFaults() {
	cfg := x.cfg
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xfa017))
	frac := func(f float64) des.Time { return des.Time(f * float64(x.dur)) }
	pick := func(f float64) []int {
		k := int(math.Round(f * float64(x.edges)))
		if f > 0 {
			k = max(k, 1)
		}
		return rng.Perm(x.edges)[:min(k, x.edges)]
	}
	if s := cfg.Slow; s != nil {
		factor := s.Factor
		if factor == 0 {
			factor = 10
		}
		for _, i := range pick(s.Fraction) {
			x.nodes[i].slow = factor
		}
	}
	if k := cfg.Crashes; k != nil {
		for _, i := range pick(k.Fraction) {
			n := x.nodes[i]
			at := frac(k.Start + k.Spread*rng.Float64())
			x.s.At(at, func() { x.crash(n) })
			x.s.At(at+frac(k.Downtime), func() { x.recover(n) })
		}
	}
	if p := cfg.Partition; p != nil {
		r := x.regionOf[p.Region]
		x.s.At(frac(p.Start), func() { x.partitioned[r] = true })
		x.s.At(frac(p.Start+p.Length), func() { x.partitioned[r] = false })
	}
}

func (x *sim) crash(n *node) {
	if n.down {
		return
	}
	n.down, n.downSince = true, x.s.Now()
	n.epoch++
	n.load, n.repLoad = 0, 0
	clear(n.loading)
	x.res.Crashes++
	ep := n.epoch
	x.s.After(x.cfg.DetectDelay, func() {
		if n.down && n.epoch == ep {
			n.knownDown = true
		}
	})
}

func (x *sim) recover(n *node) {
	if !n.down {
		return
	}
	n.down, n.knownDown = false, false
	n.epoch++
	for k := range n.slots {
		n.slots[k] = x.s.Now()
	}
}

// run generates the traffic and runs the simulation to the end.
func (x *sim) run() {
	x.scheduleArrivals()
	x.s.Run(des.Forever)
	x.res.Events = x.s.Executed()
	x.res.Simulated = x.s.Now()
}

// diurnal returns metro m's rate factor at time t.
func (x *sim) diurnal(m int, t des.Time) float64 {
	a := x.cfg.Diurnal
	if a == 0 {
		return 1
	}
	h := x.cfg.StartHourUTC + 24*float64(t)/float64(x.dur) + x.w.Metros[m].UTCOffset
	return 1 + a*math.Cos(2*math.Pi*(h-20)/24)
}

// scheduleArrivals starts the base Poisson process (metros by population,
// thinned by the diurnal factor) and, with a flash crowd, the extra
// process of the flash metro.
func (x *sim) scheduleArrivals() {
	fmax := 1 + x.cfg.Diurnal
	rate := float64(x.cfg.Requests) / float64(x.dur) * fmax // candidates per ns
	var base func()
	base = func() {
		if x.generated >= x.cfg.Requests {
			return
		}
		m := sampleCDF(x.metroCDF, x.rng.Float64())
		if x.rng.Float64()*fmax < x.diurnal(m, x.s.Now()) {
			x.arrive(m)
		}
		x.s.After(des.Time(x.rng.ExpFloat64()/rate), base)
	}
	x.s.After(des.Time(x.rng.ExpFloat64()/rate), base)
	if f := x.cfg.Flash; f != nil && f.Factor > 1 && f.Length > 0 {
		m := x.flashMetro
		share := x.w.Metros[m].Population / totalPop(x.w.Metros)
		frate := rate * share * (f.Factor - 1)
		start, end := x.flashStart, x.flashEnd
		var flash func()
		flash = func() {
			if x.generated >= x.cfg.Requests || x.s.Now() > end {
				return
			}
			if x.rng.Float64()*fmax < x.diurnal(m, x.s.Now()) {
				x.arrive(m)
			}
			x.s.After(des.Time(x.rng.ExpFloat64()/frate), flash)
		}
		x.s.At(start, flash)
	}
}

func totalPop(ms []world.Metro) float64 {
	t := 0.0
	for _, m := range ms {
		t += m.Population
	}
	return t
}

// arrive creates a request from a client of metro m.
func (x *sim) arrive(m int) {
	x.generated++
	if x.generated&1023 == 0 {
		if err := x.ctx.Err(); err != nil {
			x.ctxErr = err
			x.s.Stop()
			return
		}
	}
	now := x.s.Now()
	r := &request{start: now, metro: int32(m), model: int32(x.cat.sample(x.rng)), entry: -1, index: int32(len(x.lat))}
	if x.rng.Float64() < x.cfg.RepeatFraction {
		r.input = uint64(sampleCDF(x.inputCDF, x.rng.Float64()))
	} else {
		x.uniqueSeq++
		r.input = 1<<63 | x.uniqueSeq
	}
	r.jf = 1
	if j := x.w.Config().Jitter; j > 0 {
		r.jf = 1 + j*x.rng.ExpFloat64()
	}
	svc := x.cat.service[r.model]
	r.oracle = time.Duration(2*float64(x.oracleOneWay(m, int(r.model)))*r.jf) + svc
	x.lat = append(x.lat, 0)
	x.orc = append(x.orc, float32(ms(r.oracle)))
	x.geo = append(x.geo, float32(ms(time.Duration(2*float64(x.geoOW[m])*r.jf)+svc)))
	kind := servedFailed
	if f := x.cfg.Flash; f != nil && m == x.flashMetro && now >= x.flashStart && now <= x.flashEnd {
		kind |= flashFlag
	}
	x.kind = append(x.kind, kind)
	b := int(float64(now) * float64(x.cfg.Buckets) / float64(x.dur))
	x.bkt = append(x.bkt, uint16(min(max(b, 0), x.cfg.Buckets-1)))
	if x.route != nil {
		x.sendRouted(r)
		return
	}
	x.sendToEntry(r)
}

// oracleOneWay is the one-way delay from metro m to the nearest site that
// holds model k loaded and is up: an edge site among the metro's
// oracleReach nearest, or the nearest central cluster.
func (x *sim) oracleOneWay(m, k int) time.Duration {
	best := x.metroCentral[m]
	for i, s := range x.metroNearest[m] {
		d := x.metroNearOW[m][i]
		if d >= best {
			break
		}
		if n := x.nodes[s]; n.has(k) && !n.down {
			return d
		}
	}
	return best
}

// sendToEntry sends r from its client to the next node of its route
// answer (routed entry), else to an edge site of its metro (one not
// known to be down and not yet tried), else a nearby one.
func (x *sim) sendToEntry(r *request) {
	e := int32(-1)
	if x.route != nil {
		if e = x.nextRouted(r); e < 0 && !x.nodes[r.cell].knownDown && !r.triedSite(r.cell) {
			e = r.cell
		}
	}
	list := x.metroEntries[r.metro]
	if e < 0 {
		off := x.rng.IntN(len(list))
		for k := range list {
			s := list[(off+k)%len(list)]
			if !x.nodes[s].knownDown && !r.triedSite(s) {
				e = s
				break
			}
		}
	}
	if e < 0 {
		for _, s := range x.metroNearest[r.metro][:min(8, len(x.metroNearest[r.metro]))] {
			if !x.nodes[s].knownDown && !r.triedSite(s) {
				e = s
				break
			}
		}
	}
	if e < 0 {
		x.finish(r, servedFailed, x.s.Now())
		return
	}
	m := x.w.Metros[r.metro]
	r.entry = e
	r.sentAt = x.s.Now()
	r.clientOW = time.Duration(float64(x.w.FromPoint(m.Lat, m.Lon, int(e))) * r.jf)
	x.s.After(r.clientOW, func() { x.atEntry(r) })
}

// respKey is the response-cache key of r, as the node computes it.
func (x *sim) respKey(r *request) respcache.Key {
	binary.LittleEndian.PutUint64(x.tdata[:], r.input)
	return respcache.KeyFor(x.cat.digests[r.model], x.tensor[:], nil)
}

// atEntry runs the node's request path at the entry site: response cache,
// local model, else a peer chosen by the policy, else the centre.
func (x *sim) atEntry(r *request) {
	n := x.nodes[r.entry]
	now := x.s.Now()
	if n.down {
		// The client times out and tries another site.
		r.tried = append(r.tried, r.entry)
		x.s.At(r.sentAt+x.cfg.FailoverTimeout, func() { x.sendToEntry(r) })
		return
	}
	if n.resp != nil {
		x.res.RespLookups++
		if _, ok := n.resp.Get(x.respKey(r)); ok {
			x.res.RespHits++
			x.finish(r, servedLocal, now+respHitTime+r.clientOW)
			return
		}
	}
	m := int(r.model)
	x.res.ModelLookups++
	has := n.cache.Get(x.cat.keys[m], int64(now))
	if has {
		x.res.ModelHits++
		if n.waiting() < x.cfg.OverloadQueue {
			x.execute(r, n)
			return
		}
	} else {
		x.maybeLoad(n, m)
	}
	x.forward(r)
}

// forward sends r from its entry to the best peer by the policy, or to
// the centre when no peer is left; an overloaded entry that has the model
// keeps it when no peer does.
func (x *sim) forward(r *request) {
	n := x.nodes[r.entry]
	if n.down {
		// The entry crashed while r waited on a peer: the client notices
		// after FailoverTimeout and tries another site.
		r.tried = append(r.tried, r.entry)
		x.s.At(max(x.s.Now(), n.downSince+x.cfg.FailoverTimeout), func() { x.sendToEntry(r) })
		return
	}
	if r.peers < x.cfg.MaxTries {
		x.candidates(n, r)
		if order := x.policy.Order(x.cat.names[r.model], x.cands); len(order) > 0 {
			p := x.candSite[order[0]]
			r.peers++
			r.tried = append(r.tried, p)
			dispatch := x.s.Now()
			x.s.After(x.w.Sample(x.rng, int(r.entry), int(p)), func() { x.atPeer(r, x.nodes[p], dispatch) })
			return
		}
	}
	if n.has(int(r.model)) {
		x.execute(r, n)
		return
	}
	x.toCentral(r)
}

// candidates fills x.cands with the ready, healthy holders of r's model
// among the entry's neighbourhood, as the policy sees them.
func (x *sim) candidates(n *node, r *request) {
	x.cands, x.candSite = x.cands[:0], x.candSite[:0]
	m := int(r.model)
	for _, p := range n.neigh {
		if len(x.cands) >= x.cfg.PeerCandidates {
			break
		}
		pn := x.nodes[p]
		if pn.knownDown || !pn.has(m) || r.triedSite(p) {
			continue
		}
		c := routing.Candidate{ID: pn.name, Role: routing.RoleEdge, Ready: true, Healthy: true}
		switch x.cfg.Policy {
		case PolicyGeo:
			c.RTT, c.RTTSource = routing.GeoRTT(n.loc, pn.loc), routing.RTTFromGeo
		case PolicyCoordinates:
			c.RTT, c.RTTSource = routing.EstimateRTT(n.coord, pn.coord, n.loc, pn.loc)
		default:
			c.RTT, c.RTTSource = 2*x.w.OneWay(n.id, pn.id), routing.RTTFromCoordinates
		}
		if x.cfg.Policy != PolicyGeo {
			l := x.reported(pn)
			c.InFlight = min(l, len(pn.slots))
			c.QueueDepth = l - c.InFlight
		}
		x.cands = append(x.cands, c)
		x.candSite = append(x.candSite, p)
	}
}

// reported returns p's load as its peers know it: refreshed at most every
// LoadReportInterval.
func (x *sim) reported(p *node) int {
	now := x.s.Now()
	if now-p.repAt >= x.cfg.LoadReportInterval || now < p.repAt {
		p.repLoad, p.repAt = p.load, now
	}
	return p.repLoad
}

// atPeer is r arriving at peer p, sent at dispatch.
func (x *sim) atPeer(r *request, p *node, dispatch des.Time) {
	if p.down {
		x.s.At(dispatch+x.cfg.FailoverTimeout, func() { x.forward(r) })
		return
	}
	x.execute(r, p)
}

// execute queues r at node n (FIFO over its slots) and schedules the
// answer.
func (x *sim) execute(r *request, n *node) {
	now := x.s.Now()
	svc := x.cat.service[r.model]
	if n.slow != 1 {
		svc = time.Duration(float64(svc) * n.slow)
	}
	k := 0
	for i, t := range n.slots {
		if t < n.slots[k] {
			k = i
		}
	}
	done := max(now, n.slots[k]) + svc
	n.slots[k] = done
	n.load++
	if n.cache != nil {
		n.cache.Touch(x.cat.keys[r.model], int64(now)) // like the node's lastInference
	}
	ep := n.epoch
	x.s.At(done, func() { x.complete(r, n, ep) })
}

// complete is r finishing at n: the answer travels back to the entry
// (which caches it) and the client. A node that crashed meanwhile lost r:
// the sender notices after FailoverTimeout.
func (x *sim) complete(r *request, n *node, ep uint32) {
	now := x.s.Now()
	if n.epoch != ep {
		retry := max(now, n.downSince+x.cfg.FailoverTimeout)
		if int32(n.id) == r.entry {
			r.tried = append(r.tried, r.entry)
			x.s.At(retry, func() { x.sendToEntry(r) })
		} else {
			x.s.At(retry, func() { x.forward(r) })
		}
		return
	}
	n.load--
	entry := x.nodes[r.entry]
	if int32(n.id) == r.entry {
		x.putResp(entry, r)
		x.finish(r, servedLocal, now+r.clientOW)
		return
	}
	back := x.w.Sample(x.rng, n.id, int(r.entry))
	x.s.After(back, func() { x.putResp(entry, r) })
	x.finish(r, servedPeer, now+back+r.clientOW)
}

func (x *sim) putResp(n *node, r *request) {
	if n.resp != nil && !n.down {
		n.resp.Put(x.respKey(r), x.respVal)
	}
}

// toCentral sends r from its entry to the nearest central cluster, which
// has every model and no queue; a partitioned region's requests fail.
func (x *sim) toCentral(r *request) {
	n := x.nodes[r.entry]
	if x.partitioned[n.region] || len(n.centrals) == 0 {
		x.finish(r, servedFailed, x.s.Now())
		return
	}
	c := int(n.centrals[0])
	there := x.w.Sample(x.rng, n.id, c)
	back := x.w.Sample(x.rng, c, n.id)
	arrive := there + x.cat.service[r.model] + back
	x.s.After(arrive, func() { x.putResp(n, r) })
	x.finish(r, servedCentral, x.s.Now()+arrive+r.clientOW)
}

// maybeLoad asks n's admission policy whether to load the missed model m
// and, if so, fetches it from the nearest holder among its neighbours, or
// from the origin (the nearest central cluster), counting the bytes.
func (x *sim) maybeLoad(n *node, m int) {
	if n.has(m) || n.isLoading(m) || !n.cache.Admit(x.cat.keys[m], int64(x.s.Now())) {
		return
	}
	src := -1
	for _, p := range n.neigh {
		if pn := x.nodes[p]; pn.has(m) && !pn.down {
			src = int(p)
			break
		}
	}
	size := x.cat.bytes[m]
	if src >= 0 {
		x.res.PeerTransferBytes += size
	} else {
		if x.partitioned[n.region] || len(n.centrals) == 0 {
			return
		}
		src = int(n.centrals[0])
		x.res.OriginEgressBytes += size
	}
	x.res.ModelLoads++
	t := 2*x.w.OneWay(src, n.id) + time.Duration(float64(size)/x.w.Bandwidth(src, n.id)*float64(time.Second))
	setBit(n.loading, m, true)
	ep := n.epoch
	x.s.After(t, func() {
		if n.epoch != ep {
			return
		}
		setBit(n.loading, m, false)
		x.addModel(n, m, x.s.Now())
	})
}

// finish records r's outcome; end is when the client has the answer.
func (x *sim) finish(r *request, kind uint8, end des.Time) {
	i := r.index
	x.kind[i] = kind | x.kind[i]&flashFlag
	if kind != servedFailed {
		x.lat[i] = float32(ms(end - r.start))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
