package edgesim

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/simulations/world"
)

// Routing policies the simulator knows. All but PolicyGeo drive
// routing.NewPolicy; PolicyGeo and PolicyCoordinates differ from
// PolicyNearest only in the RTT and load they put in the candidates.
const (
	// PolicyGeo is nearest by geography: routing's "nearest" policy over
	// candidates whose RTT is routing.GeoRTT of the two sites and whose
	// load is not reported, so it always picks the geographically nearest
	// holder. It is the baseline.
	PolicyGeo = "geo"
	// PolicyNearest is routing's "nearest": true RTT plus load (Score).
	PolicyNearest = "nearest"
	// PolicyCoordinates is routing's "nearest" with the RTT estimated by
	// routing.EstimateRTT from Vivaldi coordinates that routing's
	// CoordinateClient learnt from sampled RTTs (network coordinates).
	PolicyCoordinates = "coordinates"
	// PolicyP2C is routing's "p2c", the power of two choices.
	PolicyP2C = "p2c"
	// PolicyRendezvous is routing's "rendezvous" with bounded load.
	PolicyRendezvous = "rendezvous"
)

// DefaultPolicy is the routing policy a Config without one uses, chosen
// by measurement (docs/sim/README.md): p2c. Its p99 is within 1–4% of
// "nearest" in the steady state and with slow nodes, and it is the best
// under a flash crowd, where "nearest" herds every overloaded entry onto
// the same best-looking peer between load reports.
const DefaultPolicy = PolicyP2C

// Policies returns the names Config.Policy accepts.
func Policies() []string {
	return []string{PolicyGeo, PolicyNearest, PolicyCoordinates, PolicyP2C, PolicyRendezvous}
}

// Admission policies of the model cache.
const (
	// AdmitAlways loads every missed model (the node's LazyLoad).
	AdmitAlways = "always"
	// AdmitDoorkeeper loads a missed model after two misses within
	// Config.AdmissionWindow (modelcache.Doorkeeper).
	AdmitDoorkeeper = "doorkeeper"
)

// How clients reach the mesh (Config.Entry).
const (
	// EntryMetro sends every request to an edge site of the client's own
	// metro (the nearest sites when the metro has none), which serves it
	// or forwards it to a peer: the node's request path.
	EntryMetro = "metro"
	// EntryRouted asks the coordinator's route API first (GET /v1/route,
	// coordinator/georoute.Rank over the nodes that have the model ready)
	// and sends the request straight to the best ranked edge node; it
	// falls back to the metro entry when no edge node ranks near enough.
	EntryRouted = "routed"
)

// Entries returns the names Config.Entry accepts.
func Entries() []string { return []string{EntryMetro, EntryRouted} }

// How a routed client pays for a route lookup that its cache misses
// (Config.RouteLookup).
const (
	// LookupRTT: a miss waits one round trip from the client to the
	// nearest central cluster (where the coordinator runs) before the
	// request is sent.
	LookupRTT = "rtt"
	// LookupPrefetched: route answers are fetched ahead of use (at
	// start-up and refreshed in the background), so a lookup costs the
	// request nothing; the answer is still as stale as RouteTTL allows.
	LookupPrefetched = "prefetched"
)

// ErrInvalidConfig is wrapped by every Config validation error.
var ErrInvalidConfig = errors.New("edgesim: invalid config")

// Config describes one simulation run. Zero fields take the defaults of
// Defaults; fractions of the run (Start, Length, ...) are of the nominal
// simulated duration, which follows from Requests and Utilisation.
type Config struct {
	// Name labels the result (files are named after it); empty means
	// Scenario + "-" + Policy, plus "-routed" with EntryRouted.
	Name string
	// Scenario is the scenario name, for reports.
	Scenario string
	// Seed seeds everything: the world, the catalogue, the traffic, the
	// faults and the policies.
	Seed uint64

	// Sites is the number of edge sites (default 200).
	Sites int
	// CentralRegions are the central clusters (default
	// world.DefaultCentralRegions).
	CentralRegions []string
	// RouteInflation, LastMile and Jitter are passed to world.Config.
	RouteInflation float64
	LastMile       time.Duration
	Jitter         float64

	// Requests is the number of client requests (default 20,000).
	Requests int
	// Policy is one of Policies() (default DefaultPolicy).
	Policy string
	// Entry is EntryMetro (default) or EntryRouted: how clients reach the
	// mesh. The scenarios of Scenarios set it.
	Entry string

	// RouteReportInterval is how stale the coordinator's view of the
	// nodes' loads is for routed entry (default 1 s): each node's load
	// is reported at most this often.
	RouteReportInterval time.Duration
	// RouteTTL is how long a client keeps a route answer, per metro and
	// model (default 5 s).
	RouteTTL time.Duration
	// RouteLimit is the route query's Limit: how many ranked nodes the
	// client may try in turn (default 3).
	RouteLimit int
	// RouteSlack: a routed client takes the ranked answer only when its
	// best node is an edge node scoring at most the estimated RTT
	// (routing.GeoRTT) to its own metro entry site plus RouteSlack
	// (default 100 ms, a holder about 6,000 km away or nearer and busy);
	// otherwise it uses the metro entry, whose admission may then load
	// the model. A smaller slack sends more clients through the metro
	// entry and its forwarding detour (on the 2,000-site world, 20 ms
	// gives a p99 ×1.35 the oracle's, 40 ms and more ×1.02).
	RouteSlack time.Duration
	// RouteLookup is LookupPrefetched (default) or LookupRTT: what a
	// route-cache miss costs the request.
	RouteLookup string

	// Models is the catalogue size (default 300).
	Models int
	// ZipfS is the popularity exponent over models (default 1.0).
	ZipfS float64
	// ModelMedianMB and ModelSigma shape the log-normal model sizes,
	// clamped to [1, 200] MB (defaults 20 MB and 1.0).
	ModelMedianMB float64
	ModelSigma    float64
	// ServiceBase + ServicePerMB × size is a request's service time
	// (defaults 2 ms and 0.2 ms per MB).
	ServiceBase  time.Duration
	ServicePerMB time.Duration

	// CacheFraction is each edge node's model memory as a fraction of
	// the catalogue's bytes (default 0.10).
	CacheFraction float64
	// PreloadPopular is the share of that memory preloaded with the
	// globally most popular models; the rest is preloaded with models
	// placed by routing.Place (rendezvous with bounded load) within each
	// region, so that every model has replicas near every site (default
	// 0.5). A negative value preloads nothing.
	PreloadPopular float64
	// Admission is AdmitDoorkeeper (default) or AdmitAlways.
	Admission string
	// AdmissionWindow is the doorkeeper's window (default 1/5 of the
	// run).
	AdmissionWindow time.Duration
	// RespCacheBytes is each node's response cache (default 256 KiB; a
	// negative value means none); ResponseBytes the size of one answer
	// (default 64: a few scores).
	RespCacheBytes int64
	ResponseBytes  int
	// RepeatFraction is the share of requests whose input repeats (drawn
	// by Zipf over PopularInputs per model); the others are unique
	// (defaults 0.3 and 1000).
	RepeatFraction float64
	PopularInputs  int

	// Slots is the number of requests a node executes at once (default
	// 4).
	Slots int
	// Utilisation is the mean busy share of the edge's slots, which sets
	// the request rate (default 0.25). The run spans one compressed day.
	Utilisation float64
	// OverloadQueue: a node with the model forwards instead of queueing
	// when this many requests already wait (default 2×Slots).
	OverloadQueue int
	// Neighbourhood is how many nearest sites a node considers as peers
	// (default 64); PeerCandidates bounds the ready holders handed to the
	// policy (default 16); MaxTries bounds the peers tried (default 3,
	// as node/forward.go).
	Neighbourhood  int
	PeerCandidates int
	MaxTries       int
	// LoadReportInterval is how stale peers' loads may be (default
	// 20 ms).
	LoadReportInterval time.Duration
	// FailoverTimeout is how long a sender waits for a dead node before
	// trying the next (default 250 ms); DetectDelay is how long a crash
	// takes to be known to everyone (default 1 s).
	FailoverTimeout time.Duration
	DetectDelay     time.Duration

	// Diurnal is the amplitude of the daily cycle: a metro's rate is
	// 1 + Diurnal·cos(2π(h−20)/24) at local hour h (default 0.5; a
	// negative value means none). StartHourUTC is the UTC hour at the
	// start of the run.
	Diurnal      float64
	StartHourUTC float64

	// Faults and load skew; nil means none.
	Flash     *FlashCrowd
	Crashes   *Crashes
	Partition *Partition
	Slow      *SlowNodes

	// Buckets is the number of time buckets of Result.Series (default
	// 40).
	Buckets int
}

// FlashCrowd multiplies one metro's request rate for a window.
type FlashCrowd struct {
	// Metro is the metro's name in world.Metros().
	Metro string
	// Factor multiplies its rate (> 1).
	Factor float64
	// Start and Length are fractions of the run.
	Start, Length float64
}

// Crashes crash a share of the edge nodes, each at a uniformly random time
// in [Start, Start+Spread] of the run, for Downtime of the run. A crashed
// node loses the requests it holds; the others learn of the crash after
// Config.DetectDelay and until then time out on it.
type Crashes struct {
	Fraction      float64
	Start, Spread float64
	Downtime      float64
}

// Partition cuts one region's edge sites off every central cluster for a
// window: they can neither fall back to the centre nor load from the
// origin.
type Partition struct {
	// Region is a central region name; its sites are those whose nearest
	// central cluster it is.
	Region        string
	Start, Length float64
}

// SlowNodes makes a share of the edge nodes slow for the whole run: their
// service time is multiplied by Factor (default 10).
type SlowNodes struct {
	Fraction float64
	Factor   float64
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{
		Sites: 200, Requests: 20000, Policy: DefaultPolicy,
		Models: 300, ZipfS: 1.0, ModelMedianMB: 20, ModelSigma: 1.0,
		ServiceBase: 2 * time.Millisecond, ServicePerMB: 200 * time.Microsecond,
		CacheFraction: 0.10, PreloadPopular: 0.5, Admission: AdmitDoorkeeper,
		RespCacheBytes: 256 << 10, ResponseBytes: 64, RepeatFraction: 0.3, PopularInputs: 1000,
		Entry: EntryMetro, RouteReportInterval: time.Second, RouteTTL: 5 * time.Second, RouteLimit: 3,
		RouteSlack: 100 * time.Millisecond, RouteLookup: LookupPrefetched,
		Slots: 4, Utilisation: 0.25, Neighbourhood: 64, PeerCandidates: 16, MaxTries: 3,
		LoadReportInterval: 20 * time.Millisecond,
		FailoverTimeout:    250 * time.Millisecond, DetectDelay: time.Second,
		Diurnal: 0.5, Buckets: 40,
	}
}

// withDefaults fills zero fields from Defaults and validates.
func (c Config) withDefaults() (Config, error) {
	d := Defaults()
	fillI := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	fillF := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	fillD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	fillI(&c.Sites, d.Sites)
	fillI(&c.Requests, d.Requests)
	if c.Policy == "" {
		c.Policy = d.Policy
	}
	if c.Entry == "" {
		c.Entry = d.Entry
	}
	fillD(&c.RouteReportInterval, d.RouteReportInterval)
	fillD(&c.RouteTTL, d.RouteTTL)
	fillI(&c.RouteLimit, d.RouteLimit)
	fillD(&c.RouteSlack, d.RouteSlack)
	if c.RouteLookup == "" {
		c.RouteLookup = d.RouteLookup
	}
	fillI(&c.Models, d.Models)
	fillF(&c.ZipfS, d.ZipfS)
	fillF(&c.ModelMedianMB, d.ModelMedianMB)
	fillF(&c.ModelSigma, d.ModelSigma)
	fillD(&c.ServiceBase, d.ServiceBase)
	fillD(&c.ServicePerMB, d.ServicePerMB)
	fillF(&c.CacheFraction, d.CacheFraction)
	fillF(&c.PreloadPopular, d.PreloadPopular)
	if c.PreloadPopular < 0 {
		c.PreloadPopular = -1 // no preload
	}
	if c.Admission == "" {
		c.Admission = d.Admission
	}
	if c.RespCacheBytes == 0 {
		c.RespCacheBytes = d.RespCacheBytes
	}
	fillI(&c.ResponseBytes, d.ResponseBytes)
	fillF(&c.RepeatFraction, d.RepeatFraction)
	fillI(&c.PopularInputs, d.PopularInputs)
	fillI(&c.Slots, d.Slots)
	fillF(&c.Utilisation, d.Utilisation)
	fillI(&c.OverloadQueue, 2*c.Slots)
	fillI(&c.Neighbourhood, d.Neighbourhood)
	fillI(&c.PeerCandidates, d.PeerCandidates)
	fillI(&c.MaxTries, d.MaxTries)
	fillD(&c.LoadReportInterval, d.LoadReportInterval)
	fillD(&c.FailoverTimeout, d.FailoverTimeout)
	fillD(&c.DetectDelay, d.DetectDelay)
	fillF(&c.Diurnal, d.Diurnal)
	if c.Diurnal < 0 {
		c.Diurnal = 0
	}
	fillI(&c.Buckets, d.Buckets)
	if c.Scenario == "" {
		c.Scenario = "custom"
	}
	if c.Name == "" {
		c.Name = c.Scenario + "-" + c.Policy
		if c.Entry != EntryMetro {
			c.Name += "-" + c.Entry
		}
	}
	return c, c.validate()
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func fraction(name string, f float64) error {
	if !finite(f) || f < 0 || f > 1 {
		return bad("%s %g not in [0, 1]", name, f)
	}
	return nil
}

// validate checks a Config whose defaults are filled.
func (c Config) validate() error {
	switch {
	case c.Sites < 1 || c.Sites > world.MaxEdgeSites:
		return bad("Sites %d not in 1..%d", c.Sites, world.MaxEdgeSites)
	case c.Requests < 1 || c.Requests > 100_000_000:
		return bad("Requests %d not in 1..100,000,000", c.Requests)
	case !slices.Contains(Policies(), c.Policy):
		return bad("unknown policy %q (valid: %s)", c.Policy, strings.Join(Policies(), ", "))
	case !slices.Contains(Entries(), c.Entry):
		return bad("unknown entry %q (valid: %s)", c.Entry, strings.Join(Entries(), ", "))
	case c.RouteReportInterval < 0 || c.RouteTTL < 0 || c.RouteSlack < 0:
		return bad("RouteReportInterval %v, RouteTTL %v, RouteSlack %v must not be negative", c.RouteReportInterval, c.RouteTTL, c.RouteSlack)
	case c.RouteLimit < 1 || c.RouteLimit > 1000:
		return bad("RouteLimit %d not in 1..1000", c.RouteLimit)
	case c.RouteLookup != LookupRTT && c.RouteLookup != LookupPrefetched:
		return bad("unknown route lookup %q (valid: %s, %s)", c.RouteLookup, LookupRTT, LookupPrefetched)
	case c.Models < 1 || c.Models > 100_000:
		return bad("Models %d not in 1..100,000", c.Models)
	case !finite(c.ZipfS) || c.ZipfS < 0 || c.ZipfS > 5:
		return bad("ZipfS %g not in [0, 5]", c.ZipfS)
	case !finite(c.ModelMedianMB) || c.ModelMedianMB < minModelMB || c.ModelMedianMB > maxModelMB:
		return bad("ModelMedianMB %g not in [%g, %g]", c.ModelMedianMB, minModelMB, maxModelMB)
	case !finite(c.ModelSigma) || c.ModelSigma < 0 || c.ModelSigma > 5:
		return bad("ModelSigma %g not in [0, 5]", c.ModelSigma)
	case c.ServiceBase < 0 || c.ServicePerMB < 0 || c.ServiceBase+c.ServicePerMB <= 0 || c.ServiceBase > time.Minute || c.ServicePerMB > time.Second:
		return bad("service time %v + %v/MB out of range", c.ServiceBase, c.ServicePerMB)
	case !finite(c.CacheFraction) || c.CacheFraction <= 0 || c.CacheFraction > 1:
		return bad("CacheFraction %g not in (0, 1]", c.CacheFraction)
	case c.PreloadPopular != -1 && (!finite(c.PreloadPopular) || c.PreloadPopular > 1):
		return bad("PreloadPopular %g not in [0, 1]", c.PreloadPopular)
	case c.Admission != AdmitAlways && c.Admission != AdmitDoorkeeper:
		return bad("unknown admission %q (valid: %s, %s)", c.Admission, AdmitAlways, AdmitDoorkeeper)
	case c.AdmissionWindow < 0:
		return bad("negative AdmissionWindow %v", c.AdmissionWindow)
	case c.ResponseBytes < 1 || c.ResponseBytes > 1<<24:
		return bad("ResponseBytes %d not in 1..16 MiB", c.ResponseBytes)
	case c.PopularInputs < 1 || c.PopularInputs > 1<<24:
		return bad("PopularInputs %d out of range", c.PopularInputs)
	case c.Slots < 1 || c.Slots > 1024:
		return bad("Slots %d not in 1..1024", c.Slots)
	case !finite(c.Utilisation) || c.Utilisation <= 0 || c.Utilisation > 2:
		return bad("Utilisation %g not in (0, 2]", c.Utilisation)
	case c.OverloadQueue < 1:
		return bad("OverloadQueue %d < 1", c.OverloadQueue)
	case c.Neighbourhood < 1 || c.PeerCandidates < 1 || c.MaxTries < 1:
		return bad("Neighbourhood %d, PeerCandidates %d, MaxTries %d must be positive", c.Neighbourhood, c.PeerCandidates, c.MaxTries)
	case c.LoadReportInterval < 0 || c.FailoverTimeout <= 0 || c.DetectDelay < 0:
		return bad("LoadReportInterval %v, FailoverTimeout %v, DetectDelay %v out of range", c.LoadReportInterval, c.FailoverTimeout, c.DetectDelay)
	case !finite(c.Diurnal) || c.Diurnal > 1:
		return bad("Diurnal %g not in [0, 1]", c.Diurnal)
	case !finite(c.StartHourUTC):
		return bad("StartHourUTC %g not finite", c.StartHourUTC)
	case c.Buckets < 1 || c.Buckets > 10000:
		return bad("Buckets %d not in 1..10000", c.Buckets)
	}
	for _, f := range []struct {
		n string
		v float64
	}{{"RepeatFraction", c.RepeatFraction}} {
		if err := fraction(f.n, f.v); err != nil {
			return err
		}
	}
	if f := c.Flash; f != nil {
		if !finite(f.Factor) || f.Factor < 1 || f.Factor > 1000 {
			return bad("flash Factor %g not in [1, 1000]", f.Factor)
		}
		if metroByName(f.Metro) < 0 {
			return bad("flash metro %q unknown", f.Metro)
		}
		if err := window("flash", f.Start, f.Length); err != nil {
			return err
		}
	}
	if k := c.Crashes; k != nil {
		if err := fraction("crash Fraction", k.Fraction); err != nil {
			return err
		}
		if err := window("crash", k.Start, k.Spread); err != nil {
			return err
		}
		if !finite(k.Downtime) || k.Downtime < 0 || k.Downtime > 10 {
			return bad("crash Downtime %g not in [0, 10]", k.Downtime)
		}
	}
	if p := c.Partition; p != nil {
		if err := window("partition", p.Start, p.Length); err != nil {
			return err
		}
		regions := c.CentralRegions
		if len(regions) == 0 {
			regions = world.DefaultCentralRegions
		}
		if !slices.Contains(regions, p.Region) {
			return bad("partition region %q is not one of the central regions %v", p.Region, regions)
		}
	}
	if s := c.Slow; s != nil {
		if err := fraction("slow Fraction", s.Fraction); err != nil {
			return err
		}
		if s.Factor != 0 && (!finite(s.Factor) || s.Factor < 1 || s.Factor > 1000) {
			return bad("slow Factor %g not in [1, 1000]", s.Factor)
		}
	}
	return nil
}

func window(name string, start, length float64) error {
	if !finite(start) || !finite(length) || start < 0 || length < 0 || start > 10 || length > 10 {
		return bad("%s window start %g, length %g out of range", name, start, length)
	}
	return nil
}

// Model sizes are clamped to this range.
const (
	minModelMB = 1.0
	maxModelMB = 200.0
)

func metroByName(name string) int {
	for i, m := range world.Metros() {
		if m.Name == name {
			return i
		}
	}
	return -1
}
