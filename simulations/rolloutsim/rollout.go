package rolloutsim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/routing"
	"github.com/petrel-mesh/petrel/simulations/des"
	"github.com/petrel-mesh/petrel/simulations/world"
)

// Defaults that a RolloutConfig's zero fields stand for.
const (
	DefaultSites           = 1000
	DefaultInterval        = 30 * time.Second
	DefaultMaxErrorRate    = 0.02
	DefaultMaxP99          = 250 * time.Millisecond
	DefaultMinRequests     = 500
	DefaultTick            = time.Second
	DefaultReportInterval  = time.Second
	DefaultRequestRate     = 5               // requests per second per site
	DefaultArtifactBytes   = 200 << 20       // 200 MiB
	DefaultLoadTime        = 2 * time.Second // verify, load and warm up
	DefaultOriginBandwidth = 2.5e9           // bytes/s out of each central cluster (20 Gbit/s)
	DefaultReconcileDelay  = 2 * time.Second
	DefaultBaseErrorRate   = 0.001
	DefaultBadErrorRate    = 0.2
	DefaultServiceLatency  = 8 * time.Millisecond
	DefaultSampleEvery     = time.Second
	DefaultMaxDuration     = 2 * time.Hour
)

// DefaultSteps are the canary steps of a RolloutConfig with none, in
// percent of the model's traffic.
func DefaultSteps() []float64 { return []float64{1, 5, 10, 50, 100} }

// Never is the value of a RolloutResult time that was not reached.
const Never time.Duration = -1

// ErrInvalidConfig wraps every configuration error of RunRollout and
// RunChurn.
var ErrInvalidConfig = errors.New("rolloutsim: invalid config")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
}

// Names used in the simulated rollout.
const (
	modelName  = "resnet50"
	oldVersion = "1"
	newVersion = "2"
)

// epoch is simulated time zero as a wall time, for the rollout state
// machine and the node reports, which take time.Time.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// RolloutConfig configures one rollout simulation (RunRollout). Zero
// fields take the Default* values.
type RolloutConfig struct {
	// Seed seeds the world and every random draw of the simulation.
	Seed uint64
	// Sites is the number of edge sites and Regions names the central
	// regions (nil means world.DefaultCentralRegions) of the world built
	// with Seed. The coordinator runs in the first central region; each
	// site fetches artifacts from its nearest one (the origin).
	Sites   int
	Regions []string
	// World, when set, is used instead of building one (Sites and Regions
	// are then ignored). It is only read.
	World *world.World `json:"-"`

	// Steps, Interval, MaxErrorRate, MaxP99 and MinRequests make the
	// rollout.Spec the coordinator runs (see that type). MaxP99 < 0
	// turns the latency threshold off.
	Steps        []float64
	Interval     time.Duration
	MaxErrorRate float64
	MaxP99       time.Duration
	MinRequests  uint64
	// Tick is how often the coordinator judges the rollout.
	Tick time.Duration

	// ReportInterval is how often each site reports its cumulative
	// figures (bus.NodeStats) to the coordinator.
	ReportInterval time.Duration
	// RequestRate is the mean number of requests per second at each site
	// (Poisson).
	RequestRate float64
	// ServiceLatency is the median time a site takes to serve a request
	// (log-normal, σ = 0.5).
	ServiceLatency time.Duration
	// BaseErrorRate is the share of failed requests of a good version.
	BaseErrorRate float64

	// ArtifactBytes is the size of the new version's artifact.
	ArtifactBytes int64
	// LoadTime is how long a site takes to verify, load and warm up a
	// fetched artifact before serving it.
	LoadTime time.Duration
	// ReconcileDelay bounds each site's delay between receiving a desired
	// state and acting on it (drawn once per site, uniform in [0,
	// ReconcileDelay]).
	ReconcileDelay time.Duration
	// OriginBandwidth is the egress capacity of each central cluster, in
	// bytes per second, shared by the fetches it serves.
	OriginBandwidth float64
	// OriginOnly makes every site fetch from its origin; by default a site
	// fetches from a peer in its metro that has (or is fetching) the
	// artifact when that finishes sooner.
	OriginOnly bool

	// Bad makes the new version bad: it fails BadErrorRate of its
	// requests (instead of BaseErrorRate) and is BadSlowdown times
	// slower (1 when zero).
	Bad          bool
	BadErrorRate float64
	BadSlowdown  float64

	// SampleEvery is the period of the Timeline.
	SampleEvery time.Duration
	// MaxDuration is the simulated time after which the run stops,
	// finished or not.
	MaxDuration time.Duration
}

// withDefaults returns c with its zero fields set. It does not validate.
func (c RolloutConfig) withDefaults() RolloutConfig {
	def := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	if c.Sites == 0 {
		c.Sites = DefaultSites
	}
	if len(c.Steps) == 0 {
		c.Steps = DefaultSteps()
	}
	def(&c.Interval, DefaultInterval)
	if c.MaxErrorRate == 0 {
		c.MaxErrorRate = DefaultMaxErrorRate
	}
	def(&c.MaxP99, DefaultMaxP99)
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	def(&c.Tick, DefaultTick)
	def(&c.ReportInterval, DefaultReportInterval)
	if c.RequestRate == 0 {
		c.RequestRate = DefaultRequestRate
	}
	def(&c.ServiceLatency, DefaultServiceLatency)
	if c.BaseErrorRate == 0 {
		c.BaseErrorRate = DefaultBaseErrorRate
	}
	if c.ArtifactBytes == 0 {
		c.ArtifactBytes = DefaultArtifactBytes
	}
	def(&c.LoadTime, DefaultLoadTime)
	if c.OriginBandwidth == 0 {
		c.OriginBandwidth = DefaultOriginBandwidth
	}
	def(&c.ReconcileDelay, DefaultReconcileDelay)
	if c.BadErrorRate == 0 {
		c.BadErrorRate = DefaultBadErrorRate
	}
	if c.BadSlowdown == 0 {
		c.BadSlowdown = 1
	}
	def(&c.SampleEvery, DefaultSampleEvery)
	def(&c.MaxDuration, DefaultMaxDuration)
	return c
}

// spec is the rollout.Spec c asks the coordinator to run.
func (c RolloutConfig) spec() rollout.Spec {
	return rollout.Spec{
		Model: modelName, From: oldVersion, To: newVersion,
		Steps: c.Steps, Interval: c.Interval,
		MaxErrorRate: c.MaxErrorRate, MaxP99: max(c.MaxP99, 0),
		MinRequests: c.MinRequests, Actor: "rolloutsim",
	}
}

// Validate checks c after its defaults are applied; every error wraps
// ErrInvalidConfig.
func (c RolloutConfig) Validate() error {
	c = c.withDefaults()
	rate := func(name string, v float64) error {
		if !(v >= 0 && v <= 1) {
			return invalid("%s is %v, want [0, 1]", name, v)
		}
		return nil
	}
	switch {
	case c.World == nil && (c.Sites < 1 || c.Sites > world.MaxEdgeSites):
		return invalid("Sites is %d, want 1..%d", c.Sites, world.MaxEdgeSites)
	case c.Tick < 0 || c.ReportInterval < 0 || c.ServiceLatency < 0 || c.LoadTime < 0 ||
		c.ReconcileDelay < 0 || c.SampleEvery < 0 || c.MaxDuration < 0:
		return invalid("durations must not be negative")
	case c.Tick < time.Millisecond || c.ReportInterval < time.Millisecond || c.SampleEvery < time.Millisecond:
		return invalid("Tick %v, ReportInterval %v and SampleEvery %v must be at least 1ms", c.Tick, c.ReportInterval, c.SampleEvery)
	case c.MaxDuration/c.SampleEvery > 1_000_000:
		return invalid("MaxDuration %v over SampleEvery %v is more than a million samples", c.MaxDuration, c.SampleEvery)
	case !(c.RequestRate > 0) || math.IsInf(c.RequestRate, 0) || c.RequestRate > 1e5:
		return invalid("RequestRate is %v, want (0, 100000] requests per second", c.RequestRate)
	case c.ArtifactBytes < 0:
		return invalid("ArtifactBytes is %d, want ≥ 0", c.ArtifactBytes)
	case !(c.OriginBandwidth >= 1e3) || math.IsInf(c.OriginBandwidth, 0):
		return invalid("OriginBandwidth is %v, want at least 1000 bytes/s", c.OriginBandwidth)
	case !(c.BadSlowdown >= 1) || math.IsInf(c.BadSlowdown, 0):
		return invalid("BadSlowdown is %v, want a finite factor ≥ 1", c.BadSlowdown)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"BaseErrorRate", c.BaseErrorRate}, {"BadErrorRate", c.BadErrorRate}} {
		if err := rate(r.name, r.v); err != nil {
			return err
		}
	}
	if err := c.spec().Validate(); err != nil {
		return invalid("%v", err)
	}
	return nil
}

// Decision is one change the coordinator's rollout made.
type Decision struct {
	// At is the simulated time of the decision.
	At time.Duration
	// Action is what the state machine did (start, advance, promote,
	// rollback).
	Action string
	// Weight is the new version's share of traffic after the decision,
	// in percent.
	Weight float64
	// Reason is the state machine's explanation.
	Reason string
}

// Sample is the state of the world at one time.
type Sample struct {
	At time.Duration
	// Weight is the new version's traffic share the coordinator asks
	// for, in percent.
	Weight float64
	// Fetched counts sites holding the new artifact; Serving those
	// serving the new version at any weight; Full those serving it at
	// 100 %.
	Fetched, Serving, Full int
}

// RolloutResult is what RunRollout reports. Times are simulated, from the
// start of the rollout; a time that was not reached is Never.
type RolloutResult struct {
	// Config is the configuration run, defaults filled in.
	Config RolloutConfig
	// Sites is the number of edge sites, Metros the metros they are in.
	Sites, Metros int
	// Final is the rollout's final state (running if MaxDuration came
	// first); Completed says every site applied the final desired state.
	Final     rollout.State
	Completed bool
	// Decisions lists the coordinator's decisions, in order.
	Decisions []Decision
	// Timeline samples the world every Config.SampleEvery.
	Timeline []Sample

	// AllFetched is when the last site finished fetching the artifact.
	AllFetched time.Duration
	// Promoted is when the coordinator promoted the new version;
	// AllOnNew when every site first served it at 100 %.
	Promoted, AllOnNew time.Duration
	// RolledBack is when the coordinator rolled back; AllOnOld when every
	// site had applied the rollback and none served the new version.
	RolledBack, AllOnOld time.Duration
	// MaxWeight is the highest traffic share the new version reached, in
	// percent; MaxServing the most sites that served it at once.
	MaxWeight  float64
	MaxServing int

	// OriginEgress is the bytes sent from origins, PeerBytes those sent
	// between sites; FromOrigin and FromPeer count the fetches.
	OriginEgress, PeerBytes int64
	FromOrigin, FromPeer    int
	// NewRequests and NewErrors are what the new version served (all
	// sites, whole run); Requests all requests.
	NewRequests, NewErrors, Requests uint64
	// Reports counts the node reports the coordinator read; Events the
	// simulation events run.
	Reports int
	Events  uint64

	// Oracle is the physical lower bound of the same rollout on the same
	// world, to compare AllFetched, AllOnNew and AllOnOld − RolledBack with.
	Oracle Oracle
}

// desiredState is one desired state the coordinator published, shared by
// every site that receives it.
type desiredState struct {
	seq     int
	desired bus.Desired
	split   *routing.Split
	toW     float64 // the new version's weight
}

// site is one edge site, as its node's control loop sees it.
type site struct {
	w       int // index into the world's sites
	id      string
	metro   int
	origin  int // index into the world's sites
	delay   time.Duration
	latest  *desiredState
	applied *desiredState
	busy    bool
	has     bool // the artifact is fetched and loaded
	// doneAt is when the site's copy of the artifact is (or will be)
	// complete; Never before it starts fetching.
	doneAt time.Duration
	// Cumulative figures per version, as bus.VersionStats reports them.
	old, new bus.VersionStats
}

// rsim is the state of one RunRollout.
type rsim struct {
	cfg     RolloutConfig
	s       *des.Sim
	rng     *rand.Rand
	w       *world.World
	coord   int
	sites   []*site
	metros  [][]int // site indices per metro
	r       *rollout.Rollout
	tracker *rollout.Tracker
	pending map[string]*rollout.Figures
	pub     *desiredState
	freeAt  []time.Duration // per world site: when its uplink is next free
	digest  map[string]string
	res     *RolloutResult

	fetched, serving, full, current int
	done                            bool
}

// RunRollout simulates a canary rollout of a new model version to every
// edge site of a generated world, driving the coordinator's own state
// machine (coordinator/rollout: Rollout, Tracker) and the node's own
// traffic split (routing.Split). See the package documentation for the
// model. It returns when every site applied the rollout's final desired
// state, or at MaxDuration (Completed false), or with ctx's error.
func RunRollout(ctx context.Context, cfg RolloutConfig) (*RolloutResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	w := cfg.World
	if w == nil {
		var err error
		if w, err = world.Build(world.Config{Seed: cfg.Seed, EdgeSites: cfg.Sites, CentralRegions: cfg.Regions}); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	rs, err := newRolloutSim(cfg, w)
	if err != nil {
		return nil, err
	}
	return rs.run(ctx)
}

func newRolloutSim(cfg RolloutConfig, w *world.World) (*rsim, error) {
	rs := &rsim{
		cfg: cfg, w: w, s: des.New(cfg.Seed), tracker: rollout.NewTracker(),
		pending: map[string]*rollout.Figures{},
		digest:  map[string]string{oldVersion: fakeDigest(1), newVersion: fakeDigest(2)},
		res: &RolloutResult{Config: cfg, AllFetched: Never, Promoted: Never, AllOnNew: Never,
			RolledBack: Never, AllOnOld: Never, Final: rollout.StateRunning},
	}
	rs.rng = rs.s.Rand()
	rs.freeAt = make([]time.Duration, len(w.Sites))
	var central []int
	for i, st := range w.Sites {
		if st.Central {
			central = append(central, i)
		}
	}
	if len(central) == 0 {
		return nil, errors.New("rolloutsim: the world has no central region")
	}
	rs.coord = central[0]
	metroIdx := map[int]int{} // world metro → index into rs.metros
	for i, st := range w.Sites {
		if st.Central {
			continue
		}
		m, ok := metroIdx[st.Metro]
		if !ok {
			m = len(rs.metros)
			metroIdx[st.Metro] = m
			rs.metros = append(rs.metros, nil)
		}
		origin := central[0]
		for _, c := range central[1:] {
			if w.OneWay(c, i) < w.OneWay(origin, i) {
				origin = c
			}
		}
		n := len(rs.sites)
		rs.metros[m] = append(rs.metros[m], n)
		rs.sites = append(rs.sites, &site{
			w: i, id: fmt.Sprintf("edge-%05d", n), metro: m, origin: origin,
			delay:  time.Duration(rs.rng.Float64() * float64(cfg.ReconcileDelay)),
			doneAt: Never,
			old:    bus.VersionStats{Model: modelName, Version: oldVersion, Latency: make([]uint64, len(bus.LatencyBounds)+1)},
			new:    bus.VersionStats{Model: modelName, Version: newVersion, Latency: make([]uint64, len(bus.LatencyBounds)+1)},
		})
	}
	if len(rs.sites) == 0 {
		return nil, errors.New("rolloutsim: the world has no edge site")
	}
	rs.res.Sites, rs.res.Metros = len(rs.sites), len(rs.metros)
	// Every site serves the old version before the rollout.
	initial, err := rs.desired(0, 100, 0)
	if err != nil {
		return nil, err
	}
	for _, st := range rs.sites {
		st.latest, st.applied = initial, initial
	}
	rs.pub = initial
	rs.current = len(rs.sites)
	rs.res.Oracle = rs.oracle()
	return rs, nil
}

// fakeDigest is a well-formed sha256 digest standing for artifact n.
func fakeDigest(n int) string {
	return "sha256:" + strings.Repeat(fmt.Sprintf("%x", n%16), 64)
}

// desired builds the desired state the coordinator writes for a split
// (mirroring coordinator.applyDesired: the old version first, the new one
// last so that routing.Split keeps canary keys sticky; a version with no
// weight is left out) and the split a node makes of it.
func (rs *rsim) desired(seq int, fromW, toW float64) (*desiredState, error) {
	d := bus.Desired{Model: modelName, Rollout: "rollout-" + newVersion, UpdatedAt: epoch.Add(rs.s.Now())}
	var vers []string
	var ws []float64
	for _, v := range []struct {
		version string
		weight  float64
	}{{oldVersion, fromW}, {newVersion, toW}} {
		if v.weight > 0 {
			d.Versions = append(d.Versions, bus.DesiredVersion{Version: v.version, Digest: rs.digest[v.version], Weight: v.weight})
			vers, ws = append(vers, v.version), append(ws, v.weight)
		}
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("rolloutsim: desired state: %w", err)
	}
	split, err := routing.NewSplit(vers, ws)
	if err != nil {
		return nil, fmt.Errorf("rolloutsim: %w", err)
	}
	return &desiredState{seq: seq, desired: d, split: split, toW: toW}, nil
}

func (rs *rsim) run(ctx context.Context) (*RolloutResult, error) {
	cfg := rs.cfg
	r, err := rollout.New("rollout-"+newVersion, cfg.spec(), epoch)
	if err != nil {
		return nil, invalid("%v", err)
	}
	rs.r = r
	rs.decide(r.History[len(r.History)-1].What, r.History[len(r.History)-1].Reason)
	for _, st := range rs.sites {
		phase := time.Duration(rs.rng.Float64() * float64(cfg.ReportInterval))
		rs.s.At(phase, func() { rs.report(st) })
	}
	rs.s.At(cfg.Tick, rs.tick)
	rs.s.At(0, rs.sample)
	// Run in slices of simulated time so that ctx is honoured.
	const slice = time.Minute
	for t := time.Duration(0); t < cfg.MaxDuration && !rs.done; t += slice {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rs.s.Run(min(t+slice, cfg.MaxDuration))
	}
	rs.sample()
	rs.res.Final = rs.r.State
	rs.res.Completed = rs.done
	rs.res.Events = rs.s.Executed()
	return rs.res, nil
}

// decide publishes the rollout's current weights to every site and records
// the decision.
func (rs *rsim) decide(action, reason string) {
	fromW, toW := rs.r.Weights()
	now := rs.s.Now()
	rs.res.Decisions = append(rs.res.Decisions, Decision{At: now, Action: action, Weight: toW, Reason: reason})
	rs.res.MaxWeight = max(rs.res.MaxWeight, toW)
	switch rs.r.State {
	case rollout.StatePromoted:
		rs.res.Promoted = now
	case rollout.StateRolledBack:
		rs.res.RolledBack = now
	}
	ds, err := rs.desired(rs.pub.seq+1, fromW, toW)
	if err != nil {
		// The weights come from a validated spec, so this cannot happen;
		// keep the previous state rather than stop the world.
		rs.res.Decisions[len(rs.res.Decisions)-1].Reason += " (not published: " + err.Error() + ")"
		return
	}
	rs.pub = ds
	rs.current = 0
	for _, st := range rs.sites {
		rs.s.After(rs.w.Sample(rs.rng, rs.coord, st.w), func() { rs.deliver(st, ds) })
	}
}

// deliver is a site's watch of the desired state firing: the node's
// control loop reconciles after the site's delay unless it is busy, in
// which case it picks the latest state up when it finishes.
func (rs *rsim) deliver(st *site, ds *desiredState) {
	if st.latest != nil && ds.seq <= st.latest.seq {
		return // an older state overtaken in flight
	}
	st.latest = ds
	if !st.busy {
		st.busy = true
		rs.s.After(st.delay, func() { rs.reconcile(st) })
	}
}

// reconcile brings a site in line with its latest desired state, like the
// node's control.reconcile: fetch and load what is wanted, then apply the
// split.
func (rs *rsim) reconcile(st *site) {
	snap := st.latest
	if snap.toW > 0 && !st.has {
		done := rs.fetch(st)
		rs.s.At(done+rs.cfg.LoadTime, func() {
			st.has = true
			rs.fetched++
			if rs.fetched == len(rs.sites) {
				rs.res.AllFetched = rs.s.Now()
			}
			rs.apply(st, snap)
		})
		return
	}
	rs.apply(st, snap)
}

// fetch starts fetching the artifact to st from its origin or, unless
// OriginOnly, from the peer in its metro that can deliver it first, and
// returns when the bytes will have arrived.
//
// Every source's uplink is a queue: a fetch occupies it for size/capacity
// (OriginBandwidth for an origin, the metro link for a peer) after those
// already queued. Sending starts once the request has reached the source
// (one way), the source's copy is complete (a peer serves only then) and
// its uplink is free; the last byte arrives one way after it left, and
// no sooner than size/bandwidth of the link between the two sites after
// sending began.
func (rs *rsim) fetch(st *site) time.Duration {
	now, size := rs.s.Now(), float64(rs.cfg.ArtifactBytes)
	dur := func(bps float64) time.Duration { return time.Duration(size / bps * float64(time.Second)) }
	// finish returns when a fetch from src, whose copy is complete at
	// ready, ends, and until when it occupies src's uplink.
	finish := func(src int, ready time.Duration, capacity float64) (done, busy time.Duration) {
		one := rs.w.OneWay(src, st.w)
		start := max(now+one, ready, rs.freeAt[src])
		busy = start + dur(capacity)
		return max(busy, start+dur(rs.w.Bandwidth(src, st.w))) + one, busy
	}
	best, busy := finish(st.origin, now, rs.cfg.OriginBandwidth)
	src, peer := st.origin, false
	if !rs.cfg.OriginOnly {
		for _, j := range rs.metros[st.metro] {
			p := rs.sites[j]
			if p == st || p.doneAt == Never {
				continue
			}
			if t, b := finish(p.w, p.doneAt, rs.w.Bandwidth(p.w, st.w)); t < best {
				best, busy, src, peer = t, b, p.w, true
			}
		}
	}
	rs.freeAt[src] = busy
	if peer {
		rs.res.PeerBytes += rs.cfg.ArtifactBytes
		rs.res.FromPeer++
	} else {
		rs.res.OriginEgress += rs.cfg.ArtifactBytes
		rs.res.FromOrigin++
	}
	st.doneAt = best
	return best
}

// apply makes a site serve snap's split, and reconciles again if a newer
// state arrived meanwhile.
func (rs *rsim) apply(st *site, snap *desiredState) {
	prev := st.applied
	st.applied = snap
	if prev.toW > 0 {
		rs.serving--
	}
	if prev.toW == 100 {
		rs.full--
	}
	if prev.seq == rs.pub.seq {
		rs.current--
	}
	if snap.toW > 0 {
		rs.serving++
	}
	if snap.toW == 100 {
		rs.full++
	}
	if snap.seq == rs.pub.seq {
		rs.current++
	}
	n := len(rs.sites)
	rs.res.MaxServing = max(rs.res.MaxServing, rs.serving)
	if rs.full == n && rs.res.AllOnNew == Never {
		rs.res.AllOnNew = rs.s.Now()
	}
	if rs.r.Terminal() && rs.current == n {
		if rs.r.State == rollout.StateRolledBack && rs.serving == 0 && rs.res.AllOnOld == Never {
			rs.res.AllOnOld = rs.s.Now()
		}
		rs.done = true
		rs.s.Stop()
	}
	if st.latest != snap {
		rs.s.After(0, func() { rs.reconcile(st) })
		return
	}
	st.busy = false
}

// report serves a site's requests since its last report through its
// current split and publishes its cumulative figures to the coordinator.
func (rs *rsim) report(st *site) {
	cfg := rs.cfg
	secs := cfg.ReportInterval.Seconds()
	n := poisson(rs.rng, cfg.RequestRate*secs)
	split := st.applied.split
	for range n {
		v := &st.old
		errRate, slow := cfg.BaseErrorRate, 1.0
		if split.PickRandom(rs.rng.Uint64()) == newVersion {
			v = &st.new
			if cfg.Bad {
				errRate, slow = cfg.BadErrorRate, cfg.BadSlowdown
			}
		}
		v.Requests++
		if rs.rng.Float64() < errRate {
			v.Errors++
		}
		lat := cfg.ServiceLatency.Seconds() * slow * math.Exp(0.5*rs.rng.NormFloat64())
		v.Latency[sort.SearchFloat64s(bus.LatencyBounds, lat)]++
	}
	rs.res.Requests += uint64(n)
	stats := bus.NodeStats{Node: st.id, Started: epoch, Sent: epoch.Add(rs.s.Now())}
	for _, v := range []*bus.VersionStats{&st.old, &st.new} {
		if v.Requests > 0 {
			c := *v
			c.Latency = slices.Clone(v.Latency) // the Tracker keeps the report
			stats.Versions = append(stats.Versions, c)
		}
	}
	rs.s.After(rs.w.Sample(rs.rng, st.w, rs.coord), func() { rs.receive(stats) })
	rs.s.After(cfg.ReportInterval, func() { rs.report(st) })
}

// receive is the coordinator's ingest of a node report: the Tracker turns
// it into deltas, which wait for the next tick.
func (rs *rsim) receive(stats bus.NodeStats) {
	rs.res.Reports++
	deltas, err := rs.tracker.Update(stats)
	if err != nil {
		return // a malformed report is dropped, as the coordinator does
	}
	for _, d := range deltas {
		p := rs.pending[d.Version]
		if p == nil {
			p = &rollout.Figures{Latency: make([]uint64, len(bus.LatencyBounds)+1)}
			rs.pending[d.Version] = p
		}
		p.Add(d.Figures)
		if d.Version == newVersion {
			rs.res.NewRequests += d.Figures.Requests
			rs.res.NewErrors += d.Figures.Errors
		}
	}
}

// take returns and clears the figures pending for a version.
func (rs *rsim) take(version string) rollout.Figures {
	p := rs.pending[version]
	if p == nil {
		return rollout.Figures{}
	}
	delete(rs.pending, version)
	return *p
}

// tick is the coordinator's rollout controller: observe, tick, publish.
func (rs *rsim) tick() {
	if rs.r.Terminal() {
		return
	}
	rs.r.Observe(rs.take(newVersion), rs.take(oldVersion))
	d := rs.r.Tick(epoch.Add(rs.s.Now()))
	if d.Action != rollout.ActionNone {
		rs.decide(string(d.Action), d.Reason)
	}
	if !rs.r.Terminal() {
		rs.s.After(rs.cfg.Tick, rs.tick)
	}
}

// sample appends the current state to the timeline and schedules the next
// sample.
func (rs *rsim) sample() {
	now := rs.s.Now()
	tl := rs.res.Timeline
	_, toW := rs.r.Weights()
	smp := Sample{At: now, Weight: toW, Fetched: rs.fetched, Serving: rs.serving, Full: rs.full}
	if len(tl) > 0 && tl[len(tl)-1].At == now {
		tl[len(tl)-1] = smp
	} else {
		rs.res.Timeline = append(tl, smp)
	}
	if !rs.done {
		rs.s.After(rs.cfg.SampleEvery, rs.sample)
	}
}

// poisson draws from a Poisson distribution of the given mean (a normal
// approximation above 30).
func poisson(r *rand.Rand, mean float64) int {
	if !(mean > 0) {
		return 0
	}
	if mean > 30 {
		return max(0, int(math.Round(mean+math.Sqrt(mean)*r.NormFloat64())))
	}
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
