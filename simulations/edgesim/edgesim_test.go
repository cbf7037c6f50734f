package edgesim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// The tests run every scenario on a small seeded world (200 edge sites,
// 20,000 requests) and hold the outcome to numeric bounds, so that a
// regression in the routing policies (routing/), the model cache
// (node/modelcache) or the response cache (node/respcache) shows up.

const (
	testSites    = 200
	testRequests = 20000
	testSeed     = 1
)

// results caches runs shared by several tests.
var (
	resultsMu sync.Mutex
	results   = map[string]*Result{}
)

func run(t *testing.T, scenario, policy string, tweak func(*Config)) *Result {
	t.Helper()
	key := scenario + "/" + policy
	if tweak == nil {
		resultsMu.Lock()
		r, ok := results[key]
		resultsMu.Unlock()
		if ok {
			return r
		}
	}
	sc, err := ScenarioByName(scenario)
	if err != nil {
		t.Fatal(err)
	}
	cfg := sc.Config(testSites, testRequests, testSeed)
	cfg.Policy = policy
	if tweak != nil {
		tweak(&cfg)
	}
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	if r.Requests != testRequests {
		t.Fatalf("%s: %d requests, want %d", key, r.Requests, testRequests)
	}
	if tweak == nil {
		resultsMu.Lock()
		results[key] = r
		resultsMu.Unlock()
	}
	return r
}

// runEntry is run with the client entry set to entry (EntryMetro or
// EntryRouted) instead of the scenario's own.
func runEntry(t *testing.T, scenario, policy, entry string) *Result {
	t.Helper()
	key := scenario + "/" + policy + "/" + entry
	resultsMu.Lock()
	r, ok := results[key]
	resultsMu.Unlock()
	if ok {
		return r
	}
	r = run(t, scenario, policy, func(c *Config) { c.Entry = entry })
	resultsMu.Lock()
	results[key] = r
	resultsMu.Unlock()
	return r
}

func ms64(d time.Duration) float64 { return ms(d) }

func TestSteadyState(t *testing.T) {
	// The node's own request path: clients enter at their metro's sites.
	r := runEntry(t, ScenarioSteady, DefaultPolicy, EntryMetro)
	local, peer, central, failed := r.Share()
	t.Logf("steady %s: p50 %.1f p95 %.1f p99 %.1f ms, oracle p99 %.1f (×%.2f), local %.3f peer %.3f central %.3f",
		r.Policy, ms64(r.P50), ms64(r.P95), ms64(r.P99), ms64(r.OracleP99), r.P99OverOracle, local, peer, central)
	if failed != 0 {
		t.Errorf("failed share %.4f in steady state, want 0", failed)
	}
	if r.EdgeShare() < 0.98 {
		t.Errorf("edge share %.3f, want ≥ 0.98", r.EdgeShare())
	}
	if local < 0.5 || local > 0.7 {
		t.Errorf("local share %.3f, want 0.5–0.7 with 10%% caches", local)
	}
	if p := ms64(r.P50); p < 25 || p > 45 {
		t.Errorf("p50 %.1f ms, want 25–45 (client RTT ~20 ms + service)", p)
	}
	if r.P99OverOracle < 1 || r.P99OverOracle > 1.6 {
		t.Errorf("p99/oracle p99 = %.2f, want 1–1.6", r.P99OverOracle)
	}
	if r.OracleP50 > r.P50 || r.GeoBoundP99 > r.OracleP99 {
		t.Errorf("bounds not below the result: oracle p50 %v vs p50 %v, geo bound p99 %v vs oracle p99 %v", r.OracleP50, r.P50, r.GeoBoundP99, r.OracleP99)
	}
	if h := r.ModelHitRatio(); h < 0.5 || h > 0.75 {
		t.Errorf("model cache hit ratio %.3f, want 0.5–0.75", h)
	}
	if r.ModelLoads == 0 || r.RespLookups != r.Requests {
		t.Errorf("model loads %d, response lookups %d (want > 0 and = requests)", r.ModelLoads, r.RespLookups)
	}
}

func TestPolicyRanking(t *testing.T) {
	// In the steady state the load-aware nearest and the geographic
	// baseline pick nearly the same peers; rendezvous trades latency for
	// affinity and must be the slowest of the RTT-aware policies.
	// (With the metro entry, where 40% of the requests are forwarded.)
	near := runEntry(t, ScenarioSteady, PolicyNearest, EntryMetro)
	geo := runEntry(t, ScenarioSteady, PolicyGeo, EntryMetro)
	rdv := runEntry(t, ScenarioSteady, PolicyRendezvous, EntryMetro)
	p2c := runEntry(t, ScenarioSteady, PolicyP2C, EntryMetro)
	if d := ms64(near.P99) / ms64(geo.P99); d < 0.9 || d > 1.1 {
		t.Errorf("steady p99 nearest/geo = %.2f, want within 10%%", d)
	}
	if rdv.P95 <= near.P95 || rdv.P95 <= p2c.P95 {
		t.Errorf("steady p95: rendezvous %v not above nearest %v and p2c %v", rdv.P95, near.P95, p2c.P95)
	}
}

func TestFlashCrowd(t *testing.T) {
	geo := run(t, ScenarioFlash, PolicyGeo, nil)
	def := run(t, ScenarioFlash, DefaultPolicy, nil)
	near := run(t, ScenarioFlash, PolicyNearest, nil)
	t.Logf("flash p99 (flash metro): geo %.1f, %s %.1f, nearest %.1f ms; overall p99 geo %.1f, %s %.1f",
		ms64(geo.FlashP99), def.Policy, ms64(def.FlashP99), ms64(near.FlashP99), ms64(geo.P99), def.Policy, ms64(def.P99))
	if def.FlashRequests < 800 || def.FlashRequests > 1500 {
		t.Errorf("flash requests %d, want 800–1500 (London ×20 for 30%% of the run)", def.FlashRequests)
	}
	// Load-blind geography piles the crowd onto the nearest holders.
	if ms64(def.FlashP99) > 0.6*ms64(geo.FlashP99) {
		t.Errorf("flash-metro p99: %s %.1f ms not below 0.6 × geo %.1f ms", def.Policy, ms64(def.FlashP99), ms64(geo.FlashP99))
	}
	if ms64(near.FlashP99) > 0.6*ms64(geo.FlashP99) {
		t.Errorf("flash-metro p99: nearest %.1f ms not below 0.6 × geo %.1f ms", ms64(near.FlashP99), ms64(geo.FlashP99))
	}
	if def.P99 >= geo.P99 {
		t.Errorf("overall p99: %s %v not ahead of geo %v", def.Policy, def.P99, geo.P99)
	}
}

func TestSlowNodes(t *testing.T) {
	geo := run(t, ScenarioSlow, PolicyGeo, nil)
	def := run(t, ScenarioSlow, DefaultPolicy, nil)
	steady := runEntry(t, ScenarioSteady, DefaultPolicy, EntryMetro)
	t.Logf("slow p99: geo %.1f, %s %.1f, steady %.1f ms", ms64(geo.P99), def.Policy, ms64(def.P99), ms64(steady.P99))
	for _, r := range []*Result{def, run(t, ScenarioSlow, PolicyNearest, nil)} {
		if ms64(r.P99) > 0.7*ms64(geo.P99) {
			t.Errorf("slow nodes p99: %s %.1f ms not below 0.7 × geo %.1f ms", r.Policy, ms64(r.P99), ms64(geo.P99))
		}
	}
	if def.P99 <= steady.P99 {
		t.Errorf("slow nodes did not slow the tail: %v vs steady %v", def.P99, steady.P99)
	}
	if def.Failed != 0 {
		t.Errorf("%d failures with slow nodes", def.Failed)
	}
}

func TestCrashes(t *testing.T) {
	r := run(t, ScenarioCrash, DefaultPolicy, nil)
	_, _, _, failed := r.Share()
	t.Logf("crash: %d crashes, p99 %.1f ms, failed %.4f, edge %.3f", r.Crashes, ms64(r.P99), failed, r.EdgeShare())
	if r.Crashes != 10 {
		t.Errorf("%d crashes, want 10 (5%% of 200)", r.Crashes)
	}
	// Requests caught by a crash wait FailoverTimeout and are served
	// elsewhere: the tail shows the timeout, failures stay rare.
	if r.P99 < Defaults().FailoverTimeout || r.P99 > 2*Defaults().FailoverTimeout {
		t.Errorf("p99 %v, want between the failover timeout and twice it", r.P99)
	}
	if failed > 0.005 {
		t.Errorf("failed share %.4f, want ≤ 0.5%%", failed)
	}
	if r.EdgeShare() < 0.97 {
		t.Errorf("edge share %.3f under crashes, want ≥ 0.97", r.EdgeShare())
	}
}

func TestPartition(t *testing.T) {
	r := run(t, ScenarioPartition, DefaultPolicy, nil)
	steady := runEntry(t, ScenarioSteady, DefaultPolicy, EntryMetro)
	t.Logf("partition: failed %d, central %d (steady central %d)", r.Failed, r.Central, steady.Central)
	// The partitioned region's requests that needed the centre fail; the
	// edge keeps serving the rest.
	if r.Failed == 0 || r.Failed > r.Requests/200 {
		t.Errorf("%d failures, want some and at most 0.5%%", r.Failed)
	}
	if r.Central >= steady.Central {
		t.Errorf("central share did not drop: %d vs steady %d", r.Central, steady.Central)
	}
	if r.EdgeShare() < 0.98 {
		t.Errorf("edge share %.3f, want ≥ 0.98", r.EdgeShare())
	}
}

func TestCacheScenario(t *testing.T) {
	r := run(t, ScenarioCache, DefaultPolicy, nil)
	local, peer, _, _ := r.Share()
	t.Logf("cache: edge %.3f (local %.3f, peer %.3f), model hits %.3f, loads %d, egress %d MB",
		r.EdgeShare(), local, peer, r.ModelHitRatio(), r.ModelLoads, r.OriginEgressBytes>>20)
	if r.Models != 500 {
		t.Fatalf("models %d, want 500", r.Models)
	}
	if r.EdgeShare() < 0.9 {
		t.Errorf("edge share %.3f, want ≥ 0.90 (target)", r.EdgeShare())
	}
	// The placement and admission checks use the metro entry, where every
	// miss reaches the entry's cache (routed clients rarely miss).
	m := runEntry(t, ScenarioCache, DefaultPolicy, EntryMetro)
	if m.EdgeShare() < 0.9 || r.EdgeShare() < m.EdgeShare() {
		t.Errorf("metro entry: edge share %.3f, want ≥ 0.90 and ≤ routed %.3f", m.EdgeShare(), r.EdgeShare())
	}
	// Without the rendezvous placement of the preload, peers hold the same
	// popular models and the centre takes much more.
	noPlace := run(t, ScenarioCache, DefaultPolicy, func(c *Config) { c.Entry = EntryMetro; c.PreloadPopular = 1 })
	if noPlace.Central <= 3*max(m.Central, 1) {
		t.Errorf("popular-only preload: central %d, want well above placed %d", noPlace.Central, m.Central)
	}
	// The doorkeeper admits fewer loads than admitting every miss.
	always := run(t, ScenarioCache, DefaultPolicy, func(c *Config) { c.Entry = EntryMetro; c.Admission = AdmitAlways })
	if m.ModelLoads < 100 || always.ModelLoads <= m.ModelLoads*3/2 {
		t.Errorf("loads: always %d, doorkeeper %d; want always > 1.5× doorkeeper ≥ 100", always.ModelLoads, m.ModelLoads)
	}
}

func TestResponseCache(t *testing.T) {
	// Every input repeats, from a small set: the response cache answers a
	// large share at the entry, without any model work.
	r := run(t, ScenarioSteady, DefaultPolicy, func(c *Config) { c.RepeatFraction = 1; c.PopularInputs = 5 })
	if h := r.RespHitRatio(); h < 0.2 {
		t.Errorf("response cache hit ratio %.3f with 5 inputs per model, want ≥ 0.2", h)
	}
	off := run(t, ScenarioSteady, DefaultPolicy, func(c *Config) { c.RepeatFraction = 1; c.PopularInputs = 5; c.RespCacheBytes = -1 })
	if off.RespHits != 0 || off.P50 <= r.P50 {
		t.Errorf("without a response cache: %d hits, p50 %v (with %v)", off.RespHits, off.P50, r.P50)
	}
}

func TestCoordinates(t *testing.T) {
	r := runEntry(t, ScenarioSteady, PolicyCoordinates, EntryMetro)
	if r.CoordinateError <= 0 || r.CoordinateError > 0.2 {
		t.Errorf("Vivaldi median relative error %.3f, want in (0, 0.2]", r.CoordinateError)
	}
	near := runEntry(t, ScenarioSteady, PolicyNearest, EntryMetro)
	if ms64(r.P99) > 1.3*ms64(near.P99) {
		t.Errorf("coordinates p99 %v more than 30%% above true-RTT nearest %v", r.P99, near.P99)
	}
}

func TestRoutedEntry(t *testing.T) {
	// Clients that ask the coordinator's route API (georoute.Rank) go
	// straight to a node holding the model, so the forwarded share and
	// its detour vanish and the p99 comes near the oracle's, which is the
	// same for both (it does not depend on the entry).
	metro := runEntry(t, ScenarioSteady, DefaultPolicy, EntryMetro)
	routed := runEntry(t, ScenarioSteady, DefaultPolicy, EntryRouted)
	ml, mp, _, _ := metro.Share()
	rl, rp, _, rf := routed.Share()
	t.Logf("steady %s: metro p99 %.1f (×%.2f, local %.3f, peer %.3f); routed p99 %.1f (×%.2f, local %.3f, peer %.3f), %d lookups, %d routed",
		metro.Policy, ms64(metro.P99), metro.P99OverOracle, ml, mp, ms64(routed.P99), routed.P99OverOracle, rl, rp, routed.RouteLookups, routed.Routed)
	if routed.Entry != EntryRouted || metro.Entry != EntryMetro || metro.RouteLookups != 0 || metro.Routed != 0 {
		t.Fatalf("entries %q/%q, metro lookups %d, routed %d", metro.Entry, routed.Entry, metro.RouteLookups, metro.Routed)
	}
	if metro.P99OverOracle < 1.4 || routed.P99OverOracle > 1.35 || routed.P99OverOracle > metro.P99OverOracle-0.1 {
		t.Errorf("p99/oracle: metro ×%.2f (want ≥ 1.4), routed ×%.2f (want ≤ 1.35 and 0.1 below metro)", metro.P99OverOracle, routed.P99OverOracle)
	}
	if d := ms64(routed.OracleP99) / ms64(metro.OracleP99); d < 0.95 || d > 1.05 {
		t.Errorf("oracle p99 routed/metro = %.2f, want about 1", d)
	}
	if rl < 0.95 || rp > 0.05 || rf != 0 || routed.ModelHitRatio() < 0.95 {
		t.Errorf("routed: local %.3f (want ≥ 0.95), peer %.3f (≤ 0.05), failed %.4f, model hits %.3f (≥ 0.95)", rl, rp, rf, routed.ModelHitRatio())
	}
	// Every (cell, model) pair asks once (the answers outlive the
	// compressed run); nearly every request takes the answer.
	if routed.RouteLookups < routed.Requests/4 || routed.RouteLookups > routed.Requests || routed.Routed < routed.Requests*9/10 {
		t.Errorf("routed: %d lookups, %d routed of %d requests", routed.RouteLookups, routed.Routed, routed.Requests)
	}
	// With no slack the client takes the answer only when its own cell's
	// site is idle and has the model: fewer routed, more forwarded.
	tight := run(t, ScenarioSteady, DefaultPolicy, func(c *Config) { c.RouteSlack = time.Nanosecond })
	if _, tp, _, _ := tight.Share(); tight.Routed > routed.Routed*3/4 || tp < 2*rp {
		t.Errorf("no slack: %d routed (default slack %d), peer %.3f (%.3f)", tight.Routed, routed.Routed, tp, rp)
	}
	// A lookup that costs a round trip to the coordinator shows in the
	// latencies.
	rtt := run(t, ScenarioSteady, DefaultPolicy, func(c *Config) { c.RouteLookup = LookupRTT })
	if d := float64(rtt.RouteLookups) / float64(routed.RouteLookups); d < 0.95 || d > 1.05 || rtt.P50 <= routed.P50+10*time.Millisecond {
		t.Errorf("lookup rtt: %d lookups (prefetched %d), p50 %v (prefetched %v)", rtt.RouteLookups, routed.RouteLookups, rtt.P50, routed.P50)
	}
	again := run(t, ScenarioSteady, DefaultPolicy, func(*Config) {})
	if !slices.Equal(again.SummaryRow(), routed.SummaryRow()) {
		t.Errorf("routed entry not deterministic:\n%v\n%v", again.SummaryRow(), routed.SummaryRow())
	}
}

func TestRoutedCrashes(t *testing.T) {
	// Cached answers name crashed nodes: the client times out on one and
	// tries the next ranked node (or its metro).
	r := runEntry(t, ScenarioCrash, DefaultPolicy, EntryRouted)
	_, _, _, failed := r.Share()
	t.Logf("routed crash: p99 %.1f ms, failed %.4f", ms64(r.P99), failed)
	if r.Crashes != 10 || failed > 0.005 || r.P99 < Defaults().FailoverTimeout || r.P99 > 2*Defaults().FailoverTimeout {
		t.Errorf("routed crash: %d crashes, failed %.4f (≤ 0.5%%), p99 %v (between the failover timeout and twice it)", r.Crashes, failed, r.P99)
	}
}

func TestDeterministic(t *testing.T) {
	a := run(t, ScenarioCrash, PolicyP2C, func(*Config) {})
	b := run(t, ScenarioCrash, PolicyP2C, func(*Config) {})
	if !slices.Equal(a.SummaryRow(), b.SummaryRow()) {
		t.Fatalf("same seed, different results:\n%v\n%v", a.SummaryRow(), b.SummaryRow())
	}
	c := run(t, ScenarioCrash, PolicyP2C, func(c *Config) { c.Seed = 2 })
	if slices.Equal(a.SummaryRow(), c.SummaryRow()) {
		t.Fatal("different seeds, same results")
	}
}

func TestConfigErrors(t *testing.T) {
	bad := []func(*Config){
		func(c *Config) { c.Sites = -1 },
		func(c *Config) { c.Policy = "random" },
		func(c *Config) { c.Admission = "lfu" },
		func(c *Config) { c.CacheFraction = 2 },
		func(c *Config) { c.Utilisation = -1 },
		func(c *Config) { c.ZipfS = -1 },
		func(c *Config) { c.RepeatFraction = 1.5 },
		func(c *Config) { c.Flash = &FlashCrowd{Metro: "Atlantis", Factor: 2} },
		func(c *Config) { c.Flash = &FlashCrowd{Metro: "London", Factor: 0.5} },
		func(c *Config) { c.Partition = &Partition{Region: "ap-east"} },
		func(c *Config) { c.Crashes = &Crashes{Fraction: 2} },
		func(c *Config) { c.Slow = &SlowNodes{Fraction: 0.1, Factor: 0.5} },
		func(c *Config) { c.CentralRegions = []string{"nowhere"} },
		func(c *Config) { c.FailoverTimeout = -time.Second },
		func(c *Config) { c.Entry = "dns" },
		func(c *Config) { c.Entry = EntryRouted; c.RouteLimit = -1 },
		func(c *Config) { c.Entry = EntryRouted; c.RouteTTL = -time.Second },
		func(c *Config) { c.Entry = EntryRouted; c.RouteLookup = "psychic" },
	}
	for i, f := range bad {
		cfg := Config{Requests: 10, Sites: 10}
		f(&cfg)
		if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("case %d: err %v, want ErrInvalidConfig", i, err)
		}
	}
	if _, err := ScenarioByName("nope"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unknown scenario: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Config{Sites: 20, Requests: 5000}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
}

func TestOutputs(t *testing.T) {
	rs := []*Result{runEntry(t, ScenarioSteady, PolicyNearest, EntryMetro), runEntry(t, ScenarioSteady, PolicyGeo, EntryMetro),
		run(t, ScenarioSteady, PolicyP2C, nil)}
	dir := t.TempDir()
	for _, r := range rs {
		if err := r.WriteCSV(dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := WritePlots(dir, rs); err != nil {
		t.Fatal(err)
	}
	if err := WriteSummaryCSV(filepath.Join(dir, "summary.csv"), rs); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"steady-nearest.csv", "steady-nearest-series.csv", "steady-geo.csv", "steady-p2c-routed.csv", "summary.csv",
		"steady-latency.png", "steady-served.png", "steady-p99.png"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Size() < 100 {
			t.Errorf("%s: %v (size %d)", f, err, sizeOf(st))
		}
	}
	if err := WritePlots(dir, nil); err == nil {
		t.Error("WritePlots with no results did not fail")
	}
	if len(Scenarios()) != 6 {
		t.Errorf("%d scenarios, want 6", len(Scenarios()))
	}
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}

// BenchmarkScale is the scale target: 10,000 edge sites and 1,000,000
// requests of the steady state with the default policy (one iteration
// takes about half a minute on two cores):
//
//	go test ./simulations/edgesim -run '^$' -bench Scale -benchtime 1x
func BenchmarkScale(b *testing.B) {
	sc, _ := ScenarioByName(ScenarioSteady)
	for range b.N {
		r, err := Run(context.Background(), sc.Config(10000, 1000000, 1))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(r.Events), "events")
		b.ReportMetric(ms64(r.P99), "p99-ms")
	}
}

func TestEvictionFromColdCaches(t *testing.T) {
	// Empty caches of 3% of the catalogue, every miss admitted, a long
	// (lightly loaded) run: the caches churn, and the hit ratio is the
	// eviction policy's (LRU by bytes gives about 0.28 here; evicting the
	// most recently used gives about 0.19).
	r := run(t, ScenarioCache, DefaultPolicy, func(c *Config) {
		c.Entry = EntryMetro // every request reaches its metro's caches
		c.PreloadPopular = -1
		c.Admission = AdmitAlways
		c.Utilisation = 0.05
		c.CacheFraction = 0.03
	})
	t.Logf("cold: model hits %.3f, loads %d, evictions %d", r.ModelHitRatio(), r.ModelLoads, r.Evictions)
	if h := r.ModelHitRatio(); h < 0.25 || h > 0.35 {
		t.Errorf("model cache hit ratio %.3f, want 0.25–0.35", h)
	}
	if r.Evictions < r.ModelLoads/2 {
		t.Errorf("%d evictions for %d loads: the caches did not churn", r.Evictions, r.ModelLoads)
	}
}

func TestExtremeConfigs(t *testing.T) {
	cases := map[string]Config{
		"one site":     {Sites: 1, Requests: 500, Models: 1},
		"all crash":    {Sites: 30, Requests: 3000, DetectDelay: 10 * time.Millisecond, Crashes: &Crashes{Fraction: 1, Start: 0.1, Downtime: 5}},
		"no preload":   {Sites: 50, Requests: 3000, PreloadPopular: -1},
		"all regions":  {Sites: 50, Requests: 3000, CentralRegions: []string{"us-east", "us-west", "eu-west", "ap-south", "sa-east", "af-south", "au-southeast"}},
		"one slot":     {Sites: 20, Requests: 3000, Slots: 1, Utilisation: 1.5, Diurnal: -1, Jitter: -1, LastMile: -1},
		"all slow":     {Sites: 20, Requests: 3000, Slow: &SlowNodes{Fraction: 1}},
		"no resp":      {Sites: 20, Requests: 3000, RespCacheBytes: -1},
		"flash end":    {Sites: 20, Requests: 3000, Flash: &FlashCrowd{Metro: "Lagos", Factor: 100, Start: 0.9, Length: 5}},
		"cut off":      {Sites: 20, Requests: 3000, CentralRegions: []string{"eu-west"}, Partition: &Partition{Region: "eu-west", Length: 10}},
		"coordinates1": {Sites: 2, Requests: 300, Policy: PolicyCoordinates},
	}
	for name, cfg := range cases {
		cfg.Seed = 3
		r, err := Run(context.Background(), cfg)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := r.Local + r.Peer + r.Central + r.Failed; got != r.Requests || r.Requests != cfg.Requests {
			t.Errorf("%s: outcomes %d of %d requests (want %d)", name, got, r.Requests, cfg.Requests)
		}
		switch name {
		case "all crash":
			if r.Crashes != 30 || r.Failed == 0 {
				t.Errorf("all crash: %d crashes, %d failed", r.Crashes, r.Failed)
			}
		case "cut off":
			if r.Central != 0 {
				t.Errorf("cut off: %d served by an unreachable centre", r.Central)
			}
		}
	}
}
