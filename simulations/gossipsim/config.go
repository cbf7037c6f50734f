package gossipsim

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/petrel-mesh/petrel/node/mesh"
	"github.com/petrel-mesh/petrel/routing"
)

// ErrInvalidConfig wraps every configuration error returned by Run and
// Config.Validate.
var ErrInvalidConfig = errors.New("gossipsim: invalid config")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
}

// Defaults that a Config's zero fields stand for. Durations are in
// deployment time (see Config.TimeScale).
const (
	DefaultMembers         = 1000
	DefaultTimeScale       = 1.0
	DefaultJoinTimeout     = 30 * time.Second
	DefaultFailTimeout     = 180 * time.Second
	DefaultBandwidthWindow = 20 * time.Second
	DefaultSettleTimeout   = 10 * time.Minute
	DefaultJoinParallel    = 8
	// DefaultCatalogPool is the number of distinct models the members'
	// catalogs are drawn from.
	DefaultCatalogPool = 500
)

// Limits on a Config.
const (
	MinMembers   = 3
	MaxMembers   = 20000
	MaxTimeScale = 100.0
	MinTimeScale = 0.01
)

// Config configures one gossip simulation. The zero value (plus a Seed)
// is the default: 1,000 members on the LAN profile over DefaultNetwork.
type Config struct {
	// Members is the size of the steady cluster before the join is
	// measured (the joining member comes on top); DefaultMembers when
	// zero, MinMembers to MaxMembers.
	Members int
	// Seed seeds every random choice of the simulator: placement, last-mile
	// delays, per-packet loss and jitter, the catalogs, the seed member
	// used by the join and the member that is killed. memberlist's own
	// choices (probe order, gossip targets) use its global generator and
	// goroutine scheduling is not deterministic, so two runs with one Seed
	// give close but not identical figures.
	Seed uint64
	// Profile is the node/mesh gossip profile (mesh.ProfileLAN when
	// empty): the memberlist timing that node/mesh itself derives from it
	// is used, scaled by TimeScale.
	Profile mesh.Profile
	// TimeScale stretches time: every memberlist interval and timeout and
	// every network delay is multiplied by it, and every measured duration
	// is divided by it before it is reported (bandwidths are multiplied by
	// it), so figures are always in deployment time. Values above 1 slow
	// the cluster down so that a machine with few cores keeps up with many
	// members; the protocol's behaviour is invariant under the scaling as
	// long as the process keeps up (Result.SchedulerLag says whether it
	// did). DefaultTimeScale (1, real time) when zero.
	TimeScale float64
	// Network is the latency and loss model. A Network without Regions
	// stands for DefaultNetwork().
	Network Network
	// Plaintext disables gossip encryption. By default the members use an
	// AES-256-GCM keyring, as production nodes must (mesh.Config
	// SecretKeys), so byte counts include its overhead.
	Plaintext bool
	// CatalogModels is the number of model versions in each member's
	// advertised catalog (drawn from DefaultCatalogPool models), which
	// node/mesh carries in push/pull state; zero means empty catalogs. At
	// most mesh.MaxCatalogEntries.
	CatalogModels int

	// JoinTimeout bounds the wait for every member to see the join;
	// DefaultJoinTimeout when zero.
	JoinTimeout time.Duration
	// FailTimeout bounds the wait for every member to see the failure;
	// DefaultFailTimeout when zero.
	FailTimeout time.Duration
	// BandwidthWindow is how long steady-state traffic is counted;
	// DefaultBandwidthWindow when zero.
	BandwidthWindow time.Duration
	// SettleTimeout bounds the bootstrap: forming the cluster and waiting
	// until the gossip backlog of the formation has drained (see
	// Result.Settled). DefaultSettleTimeout when zero.
	SettleTimeout time.Duration
	// JoinParallel is how many members join the cluster at once during
	// the bootstrap; DefaultJoinParallel when zero.
	JoinParallel int
	// Logger receives the run's progress (phases at info level, the
	// bootstrap's progress at debug level); nothing is logged when nil.
	// The members' own logs are always discarded.
	Logger *slog.Logger
}

// Validate reports every problem with c, or nil. Zero fields are valid
// (they stand for defaults).
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, invalid(format, a...)) }
	if c.Members != 0 && (c.Members < MinMembers || c.Members > MaxMembers) {
		add("Members %d is out of range %d-%d", c.Members, MinMembers, MaxMembers)
	}
	switch c.Profile {
	case "", mesh.ProfileLAN, mesh.ProfileWAN, mesh.ProfileLocal:
	default:
		add("Profile %q is not %q, %q or %q", c.Profile, mesh.ProfileLAN, mesh.ProfileWAN, mesh.ProfileLocal)
	}
	if c.TimeScale != 0 && !(c.TimeScale >= MinTimeScale && c.TimeScale <= MaxTimeScale) {
		add("TimeScale %g is out of range %g-%g", c.TimeScale, MinTimeScale, MaxTimeScale)
	}
	if len(c.Network.Regions) > 0 {
		if err := c.Network.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.CatalogModels < 0 || c.CatalogModels > min(mesh.MaxCatalogEntries, DefaultCatalogPool) {
		add("CatalogModels %d is out of range 0-%d", c.CatalogModels, min(mesh.MaxCatalogEntries, DefaultCatalogPool))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"JoinTimeout", c.JoinTimeout}, {"FailTimeout", c.FailTimeout},
		{"BandwidthWindow", c.BandwidthWindow}, {"SettleTimeout", c.SettleTimeout},
	} {
		if d.v < 0 {
			add("%s %v is negative", d.name, d.v)
		}
	}
	if c.JoinParallel < 0 {
		add("JoinParallel %d is negative", c.JoinParallel)
	}
	return errors.Join(errs...)
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Members == 0 {
		c.Members = DefaultMembers
	}
	if c.Profile == "" {
		c.Profile = mesh.ProfileLAN
	}
	if c.TimeScale == 0 {
		c.TimeScale = DefaultTimeScale
	}
	if len(c.Network.Regions) == 0 {
		c.Network = DefaultNetwork()
	} else {
		c.Network.Regions = append([]Region(nil), c.Network.Regions...)
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = DefaultJoinTimeout
	}
	if c.FailTimeout == 0 {
		c.FailTimeout = DefaultFailTimeout
	}
	if c.BandwidthWindow == 0 {
		c.BandwidthWindow = DefaultBandwidthWindow
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = DefaultSettleTimeout
	}
	if c.JoinParallel == 0 {
		c.JoinParallel = DefaultJoinParallel
	}
	return c
}

// Region is a place where members run: a metro or cloud region. Members
// are spread over the regions in proportion to Weight.
type Region struct {
	// Name labels the region (mesh.Config.Region of its members): 1 to
	// mesh.MaxRegionLen bytes without spaces.
	Name string
	// Loc is the region's position; its members advertise it as their
	// mesh.Config.Location.
	Loc routing.Location
	// Weight is the region's share of the members (any positive scale,
	// such as the metro population in millions).
	Weight float64
}

// Network is the latency and loss model of the in-memory network. The
// one-way delay of a packet from member a to member b is
//
//	Base + GreatCircleKm(a, b)·RouteInflation/KmPerMs
//	+ lastMile(a) + lastMile(b) + U[0, Jitter)
//
// where lastMile is drawn once per member, uniformly in [LastMileMin,
// LastMileMax]. A packet is lost with probability Loss. Stream (TCP)
// writes see the same delay but are never lost, stay in order, and a
// connection takes one round trip to open.
type Network struct {
	// Regions is where members are placed; at least one.
	Regions []Region
	// Base is a fixed one-way delay of every packet (switching,
	// serialisation); zero or more.
	Base time.Duration
	// KmPerMs is the signal speed over fibre (about 200 km per ms).
	KmPerMs float64
	// RouteInflation is the ratio of fibre route length to great-circle
	// distance, at least 1.
	RouteInflation float64
	// LastMileMin and LastMileMax bound each member's access delay.
	LastMileMin, LastMileMax time.Duration
	// Jitter is the upper bound of the uniform extra delay of each packet
	// and stream write; zero for none.
	Jitter time.Duration
	// Loss is the probability that a packet is dropped, in [0, 0.5].
	Loss float64
}

// Network defaults, used by DefaultNetwork and WorldNetwork.
const (
	DefaultKmPerMs        = 200.0
	DefaultRouteInflation = 1.5
	DefaultBase           = 200 * time.Microsecond
	DefaultLastMileMin    = 500 * time.Microsecond
	DefaultLastMileMax    = 5 * time.Millisecond
	DefaultJitter         = 2 * time.Millisecond
	DefaultLoss           = 0.005
)

// DefaultNetwork is one gossip region as docs/ARCHITECTURE.md's scale path
// has it (a LAN gossip pool per region): edge sites in eight European
// metros weighted by population (metro population in millions), 0.5 %
// packet loss, up to 2 ms of jitter. One-way delays range from about 1 ms
// within a metro to about 25 ms between Madrid and Stockholm.
func DefaultNetwork() Network {
	return Network{
		Regions: []Region{
			{"london", routing.Location{Lat: 51.507, Lon: -0.128}, 9.6},
			{"paris", routing.Location{Lat: 48.857, Lon: 2.352}, 11.1},
			{"frankfurt", routing.Location{Lat: 50.110, Lon: 8.682}, 2.3},
			{"amsterdam", routing.Location{Lat: 52.370, Lon: 4.895}, 2.4},
			{"madrid", routing.Location{Lat: 40.417, Lon: -3.704}, 6.7},
			{"milan", routing.Location{Lat: 45.464, Lon: 9.190}, 4.3},
			{"stockholm", routing.Location{Lat: 59.329, Lon: 18.069}, 1.6},
			{"warsaw", routing.Location{Lat: 52.230, Lon: 21.012}, 3.1},
		},
		Base:           DefaultBase,
		KmPerMs:        DefaultKmPerMs,
		RouteInflation: DefaultRouteInflation,
		LastMileMin:    DefaultLastMileMin,
		LastMileMax:    DefaultLastMileMax,
		Jitter:         DefaultJitter,
		Loss:           DefaultLoss,
	}
}

// WorldNetwork spreads the members over ten cloud regions on every
// continent with equal weight; one-way delays reach about 110 ms (Sydney
// to São Paulo). It is the worst case for one flat gossip pool, which
// docs/ARCHITECTURE.md avoids with a WAN pool between regions.
func WorldNetwork() Network {
	n := DefaultNetwork()
	n.Regions = []Region{
		{"us-east", routing.Location{Lat: 39.04, Lon: -77.49}, 1},
		{"us-west", routing.Location{Lat: 37.34, Lon: -121.89}, 1},
		{"sa-east", routing.Location{Lat: -23.55, Lon: -46.63}, 1},
		{"eu-west", routing.Location{Lat: 53.35, Lon: -6.26}, 1},
		{"eu-central", routing.Location{Lat: 50.11, Lon: 8.68}, 1},
		{"af-south", routing.Location{Lat: -26.20, Lon: 28.05}, 1},
		{"ap-south", routing.Location{Lat: 19.08, Lon: 72.88}, 1},
		{"ap-southeast", routing.Location{Lat: 1.35, Lon: 103.82}, 1},
		{"ap-northeast", routing.Location{Lat: 35.68, Lon: 139.69}, 1},
		{"au-east", routing.Location{Lat: -33.87, Lon: 151.21}, 1},
	}
	return n
}

// Validate reports every problem with n, or nil.
func (n *Network) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, invalid("Network: "+format, a...)) }
	if len(n.Regions) == 0 {
		add("no Regions")
	}
	seen := make(map[string]bool, len(n.Regions))
	for i, r := range n.Regions {
		switch {
		case r.Name == "" || len(r.Name) > mesh.MaxRegionLen:
			add("Regions[%d]: name %q must be 1-%d bytes", i, r.Name, mesh.MaxRegionLen)
		case seen[r.Name]:
			add("Regions[%d]: duplicate name %q", i, r.Name)
		}
		seen[r.Name] = true
		if !r.Loc.Valid() {
			add("Regions[%d] %q: location %v is not a valid latitude/longitude", i, r.Name, r.Loc)
		}
		if !(r.Weight > 0) || math.IsInf(r.Weight, 0) {
			add("Regions[%d] %q: weight %g must be positive and finite", i, r.Name, r.Weight)
		}
	}
	if n.Base < 0 {
		add("Base %v is negative", n.Base)
	}
	if !(n.KmPerMs > 0) || math.IsInf(n.KmPerMs, 0) {
		add("KmPerMs %g must be positive and finite", n.KmPerMs)
	}
	if !(n.RouteInflation >= 1) || math.IsInf(n.RouteInflation, 0) {
		add("RouteInflation %g must be at least 1 and finite", n.RouteInflation)
	}
	if n.LastMileMin < 0 || n.LastMileMax < n.LastMileMin {
		add("LastMileMin %v and LastMileMax %v must satisfy 0 <= min <= max", n.LastMileMin, n.LastMileMax)
	}
	if n.Jitter < 0 {
		add("Jitter %v is negative", n.Jitter)
	}
	if !(n.Loss >= 0 && n.Loss <= 0.5) {
		add("Loss %g is out of range 0-0.5", n.Loss)
	}
	return errors.Join(errs...)
}
