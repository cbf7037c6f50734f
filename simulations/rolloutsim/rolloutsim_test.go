package rolloutsim

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/federated"
	"github.com/petrel-mesh/petrel/simulations/fedsim"
	"github.com/petrel-mesh/petrel/simulations/world"
)

// smallRollout is a seeded world of 400 sites with short canary steps.
func smallRollout() RolloutConfig {
	return RolloutConfig{Seed: 11, Sites: 400, RequestRate: 10, Interval: 10 * time.Second}
}

func runRollout(t *testing.T, cfg RolloutConfig) *RolloutResult {
	t.Helper()
	res, err := RunRollout(context.Background(), cfg)
	if err != nil {
		t.Fatalf("RunRollout: %v", err)
	}
	return res
}

func actions(res *RolloutResult) string {
	var a []string
	for _, d := range res.Decisions {
		a = append(a, d.Action)
	}
	return strings.Join(a, ",")
}

func TestRolloutReachesAllSites(t *testing.T) {
	cfg := smallRollout()
	res := runRollout(t, cfg)
	t.Logf("all fetched %v, all on new %v, promoted %v; origin %d fetches (%.1f GB), peers %d, %d metros",
		res.AllFetched, res.AllOnNew, res.Promoted, res.FromOrigin, float64(res.OriginEgress)/1e9, res.FromPeer, res.Metros)
	if res.Final != rollout.StatePromoted || !res.Completed {
		t.Fatalf("final %s, completed %v; decisions %+v", res.Final, res.Completed, res.Decisions)
	}
	if got := actions(res); got != "start,advance,advance,advance,advance,promote" {
		t.Fatalf("decisions %s, want start, four advances, promote", got)
	}
	// The 100 % step starts after four intervals, and after the first
	// step gathered MinRequests: at 1 % of 4000 requests/s that takes
	// ~13 s once the sites have the artifact (~7 s). Every site must then
	// be at 100 % within fan-out (≤ 0.5 s) plus reconcile delay (≤ 2 s).
	step100 := res.Decisions[4].At
	if step100 < 4*cfg.Interval || step100 > 4*cfg.Interval+12*time.Second {
		t.Fatalf("100%% step decided at %v, want within 12s after %v", step100, 4*cfg.Interval)
	}
	if lag := res.AllOnNew - step100; res.AllOnNew == Never || lag < 0 || lag > 3*time.Second {
		t.Fatalf("all sites on the new version at %v, %v after the 100%% step; want within 3s", res.AllOnNew, lag)
	}
	if res.AllFetched == Never || res.AllFetched > 20*time.Second {
		t.Fatalf("all sites fetched the artifact at %v, want within 20s", res.AllFetched)
	}
	last := res.Timeline[len(res.Timeline)-1]
	if last.Full != res.Sites || last.Fetched != res.Sites || res.MaxWeight != 100 {
		t.Fatalf("last sample %+v, max weight %v; want all %d sites at 100%%", last, res.MaxWeight, res.Sites)
	}
	for i := 1; i < len(res.Timeline); i++ {
		if a, b := res.Timeline[i-1], res.Timeline[i]; b.At <= a.At || b.Fetched < a.Fetched || b.Full < a.Full {
			t.Fatalf("timeline goes backwards at %d: %+v then %+v", i, a, b)
		}
	}
	// Peers in a metro share the artifact: the origin serves about one
	// fetch per metro, not one per site.
	if res.FromOrigin+res.FromPeer != res.Sites || res.FromOrigin > 2*res.Metros {
		t.Fatalf("%d fetches from the origin and %d from peers for %d sites in %d metros", res.FromOrigin, res.FromPeer, res.Sites, res.Metros)
	}
	cfg.OriginOnly = true
	only := runRollout(t, cfg)
	if only.FromOrigin != only.Sites || only.OriginEgress != int64(only.Sites)*DefaultArtifactBytes {
		t.Fatalf("origin only: %d fetches from the origin (%d bytes) for %d sites", only.FromOrigin, only.OriginEgress, only.Sites)
	}
	if only.AllFetched <= res.AllFetched {
		t.Fatalf("origin only fetched everything in %v, with peers %v: peers should be faster", only.AllFetched, res.AllFetched)
	}
	// Errors on the new version are at the base rate.
	if rate := float64(res.NewErrors) / float64(res.NewRequests); res.NewRequests < 10000 || rate > 3*DefaultBaseErrorRate {
		t.Fatalf("new version: %d errors in %d requests", res.NewErrors, res.NewRequests)
	}
}

func TestBadVersionRollsBack(t *testing.T) {
	cfg := smallRollout()
	cfg.Bad = true
	res := runRollout(t, cfg)
	t.Logf("rolled back at %v, all on old at %v; max serving %d of %d; %s", res.RolledBack, res.AllOnOld, res.MaxServing, res.Sites, res.Decisions[len(res.Decisions)-1].Reason)
	if res.Final != rollout.StateRolledBack || !res.Completed || actions(res) != "start,rollback" {
		t.Fatalf("final %s, completed %v, decisions %s", res.Final, res.Completed, actions(res))
	}
	if !strings.Contains(res.Decisions[1].Reason, "error rate") {
		t.Fatalf("rollback reason %q, want the error rate", res.Decisions[1].Reason)
	}
	// At 1 % of 4000 requests/s the canary needs ~13 s for MinRequests.
	if res.RolledBack == Never || res.RolledBack > 25*time.Second {
		t.Fatalf("rolled back at %v, want within 25s", res.RolledBack)
	}
	if d := res.AllOnOld - res.RolledBack; res.AllOnOld == Never || d < 0 || d > 5*time.Second {
		t.Fatalf("all back on the old version at %v, %v after the rollback; want within 5s", res.AllOnOld, d)
	}
	if res.MaxWeight >= 100 || res.MaxWeight != cfg.withDefaults().Steps[0] {
		t.Fatalf("the bad version reached %v%% of traffic, want only the first step", res.MaxWeight)
	}
	for _, s := range res.Timeline {
		if s.Full > 0 {
			t.Fatalf("%d sites served the bad version at 100%% at %v", s.Full, s.At)
		}
	}
	if last := res.Timeline[len(res.Timeline)-1]; last.Serving != 0 {
		t.Fatalf("%d sites still serve the bad version at the end", last.Serving)
	}
	if rate := float64(res.NewErrors) / float64(res.NewRequests); math.Abs(rate-DefaultBadErrorRate) > 0.06 {
		t.Fatalf("bad version error rate %.3f over %d requests, want about %v", rate, res.NewRequests, DefaultBadErrorRate)
	}
}

func TestSlowVersionRollsBack(t *testing.T) {
	cfg := smallRollout()
	cfg.Bad, cfg.BadErrorRate, cfg.BadSlowdown = true, DefaultBaseErrorRate, 30 // median 240ms
	res := runRollout(t, cfg)
	if res.Final != rollout.StateRolledBack || !strings.Contains(res.Decisions[len(res.Decisions)-1].Reason, "p99 latency") {
		t.Fatalf("final %s, decisions %+v; want a rollback on p99 latency", res.Final, res.Decisions)
	}
	cfg.MaxP99 = -1 // threshold off: the slow version goes through
	if res := runRollout(t, cfg); res.Final != rollout.StatePromoted {
		t.Fatalf("without a p99 threshold: final %s, want promoted", res.Final)
	}
}

func TestRolloutDeterministic(t *testing.T) {
	cfg := smallRollout()
	cfg.Sites, cfg.Bad = 150, true
	a, b := runRollout(t, cfg), runRollout(t, cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two runs of one config differ")
	}
	cfg.Seed++
	if c := runRollout(t, cfg); reflect.DeepEqual(a.Timeline, c.Timeline) {
		t.Fatalf("seeds %d and %d gave the same timeline", cfg.Seed-1, cfg.Seed)
	}
}

func TestRolloutHorizonAndCancel(t *testing.T) {
	cfg := smallRollout()
	cfg.Sites, cfg.MaxDuration = 100, 15*time.Second
	res := runRollout(t, cfg)
	if res.Completed || res.Final != rollout.StateRunning || res.AllOnNew != Never {
		t.Fatalf("stopped at 15s: completed %v, final %s, all on new %v", res.Completed, res.Final, res.AllOnNew)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RunRollout(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestRolloutConfigValidate(t *testing.T) {
	cases := map[string]func(*RolloutConfig){
		"sites":          func(c *RolloutConfig) { c.Sites = -1 },
		"region":         func(c *RolloutConfig) { c.Regions = []string{"mars-1"} },
		"steps":          func(c *RolloutConfig) { c.Steps = []float64{10, 5, 100} },
		"last step":      func(c *RolloutConfig) { c.Steps = []float64{1, 50} },
		"interval":       func(c *RolloutConfig) { c.Interval = time.Millisecond },
		"error rate":     func(c *RolloutConfig) { c.MaxErrorRate = 1.5 },
		"tick":           func(c *RolloutConfig) { c.Tick = -time.Second },
		"rate":           func(c *RolloutConfig) { c.RequestRate = math.NaN() },
		"artifact":       func(c *RolloutConfig) { c.ArtifactBytes = -1 },
		"origin":         func(c *RolloutConfig) { c.OriginBandwidth = -5 },
		"bad error rate": func(c *RolloutConfig) { c.BadErrorRate = 2 },
		"slowdown":       func(c *RolloutConfig) { c.BadSlowdown = 0.5 },
		"samples":        func(c *RolloutConfig) { c.SampleEvery, c.MaxDuration = time.Millisecond, 1000*time.Hour },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := smallRollout()
			edit(&cfg)
			if _, err := RunRollout(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("RunRollout: %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// fashion is a small seeded slice of Fashion-MNIST: 20 clients with a
// label skew, half sampled per round, 8 rounds of a small MLP.
func fashion() ChurnConfig {
	return ChurnConfig{
		Base: fedsim.Config{
			Model:   federated.Spec{Family: "mlp", Sizes: []int{784, 32, 10}},
			Clients: 20, Fraction: 0.5, Rounds: 8, Seed: 3,
			SGD: federated.SGDConfig{LR: 0.05, Momentum: 0.9, BatchSize: 32, Epochs: 2},
		},
		TrainSamples: 4000, TestSamples: 1000, CentralEpochs: 3,
	}
}

func TestChurn(t *testing.T) {
	res, err := RunChurn(context.Background(), fashion())
	if err != nil {
		t.Fatalf("RunChurn: %v", err)
	}
	if len(res.Levels) != 3 || res.Train != 4000 || res.Test != 1000 {
		t.Fatalf("%d levels on %d/%d samples, want 3 on 4000/1000", len(res.Levels), res.Train, res.Test)
	}
	for i, l := range res.Levels {
		r := l.Result
		t.Logf("churn %.0f%%: final accuracy %.3f (best %.3f), %d updates, %d offline, %d dropped out", 100*l.Level, r.Final.Accuracy, r.Best.Accuracy, r.Updates, r.Offline, r.DroppedOut)
		if len(r.Points) != 8 {
			t.Fatalf("churn %v: %d points, want 8", l.Level, len(r.Points))
		}
		if lost := l.lostShare(); math.Abs(lost-l.Level) > 0.15 {
			t.Fatalf("churn %v lost %.3f of the sampled clients", l.Level, lost)
		}
		if l.Level > 0 && (r.Offline == 0 || r.DroppedOut == 0) {
			t.Fatalf("churn %v: %d offline, %d dropped out; want both", l.Level, r.Offline, r.DroppedOut)
		}
		// Chance is 0.1; the full-data MLP reaches ~0.75 here.
		want := []float64{0.65, 0.6, 0.55}[i]
		if r.Final.Accuracy < want || r.Final.Accuracy > 0.9 {
			t.Fatalf("churn %v: final accuracy %.3f, want [%v, 0.9]", l.Level, r.Final.Accuracy, want)
		}
	}
	if a, b := res.Levels[0].Result, res.Levels[2].Result; b.Updates >= a.Updates*3/4 {
		t.Fatalf("50%% churn aggregated %d updates, no churn %d", b.Updates, a.Updates)
	}
	// The oracle: the same model trained on all 4000 samples in one
	// place beats every federated run on label-skewed clients.
	central, ok := res.CentralAccuracy()
	if !ok || len(res.Central.Points) != 3 {
		t.Fatalf("no centralised oracle (%v)", res.Central)
	}
	t.Logf("centralised oracle: best accuracy %.3f", central)
	for _, l := range res.Levels {
		if l.Result.Best.Accuracy > central {
			t.Errorf("churn %v: best accuracy %.3f above the centralised oracle's %.3f", l.Level, l.Result.Best.Accuracy, central)
		}
	}
}

func TestChurnConfigValidate(t *testing.T) {
	cases := map[string]func(*ChurnConfig){
		"level":    func(c *ChurnConfig) { c.Levels = []float64{0, 1.2} },
		"midround": func(c *ChurnConfig) { c.MidRound = 3 },
		"samples":  func(c *ChurnConfig) { c.TrainSamples = -1 },
		"base":     func(c *ChurnConfig) { c.Base.Churn.Dropout = 0.1 },
		"clients":  func(c *ChurnConfig) { c.Base.Clients = 5000 },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := fashion()
			edit(&cfg)
			if _, err := RunChurn(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("RunChurn: %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := RunChurn(context.Background(), ChurnConfig{DataDir: t.TempDir()}); err == nil || errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("missing data: %v, want a load error", err)
	}
}

func TestChurnFor(t *testing.T) {
	for _, p := range []float64{0, 0.2, 0.5, 1} {
		for _, mid := range []float64{0, 0.25, 1} {
			c := churnFor(p, mid)
			if lost := c.Unavailable + (1-c.Unavailable)*c.Dropout; math.Abs(lost-p) > 1e-12 || c.Unavailable > 1 || c.Dropout > 1 {
				t.Fatalf("churnFor(%v, %v) = %+v loses %v", p, mid, c, lost)
			}
		}
	}
}

func TestReport(t *testing.T) {
	good := smallRollout()
	good.Sites = 100
	bad := good
	bad.Bad = true
	rep := Report{Rollouts: []*RolloutResult{runRollout(t, good)}, Rollbacks: []*RolloutResult{runRollout(t, bad)}}
	churn := fashion()
	churn.Base.Rounds, churn.Levels = 2, []float64{0, 0.5}
	var err error
	if rep.Churn, err = RunChurn(context.Background(), churn); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteCSV(dir, rep); err != nil {
		t.Fatalf("WriteCSV: %v", err)
	}
	if err := WritePlots(dir, rep); err != nil {
		t.Fatalf("WritePlots: %v", err)
	}
	lines := map[string]int{
		FileTimeline: 1 + len(rep.Rollouts[0].Timeline) + len(rep.Rollbacks[0].Timeline),
		FileSummary:  3,
		FileChurn:    1 + 2*2 + 3, // two levels of two rounds, three oracle epochs
	}
	for name, want := range lines {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Count(b, []byte("\n")); got != want {
			t.Fatalf("%s: %d lines, want %d", name, got, want)
		}
	}
	for _, name := range []string{FileRolloutPlot, FileRollbackPlot, FileChurnPlot} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) || len(b) < 10000 {
			t.Fatalf("%s: %d bytes, %v", name, len(b), err)
		}
	}
	if err := WriteCSV(filepath.Join(dir, "missing"), rep); err == nil {
		t.Fatal("WriteCSV into a missing directory succeeded")
	}
}

func BenchmarkRollout10k(b *testing.B) {
	for b.Loop() {
		if _, err := RunRollout(context.Background(), RolloutConfig{Seed: 1, Sites: 10000}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRolloutOracle checks the oracle against a Bellman-Ford fixpoint of
// the same lower bound on a small world, and that every simulated run
// (peers, origin only, bad version) stays above it.
func TestRolloutOracle(t *testing.T) {
	cfg := smallRollout()
	cfg.Sites = 60
	cfg = cfg.withDefaults()
	w, err := world.Build(world.Config{Seed: cfg.Seed, EdgeSites: cfg.Sites})
	if err != nil {
		t.Fatal(err)
	}
	cfg.World = w
	rs, err := newRolloutSim(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	got := rs.oracle()

	// Bellman-Ford: relax every (source, site) pair until nothing moves.
	size := float64(cfg.ArtifactBytes)
	tx := func(a, b int) time.Duration { return time.Duration(size / w.Bandwidth(a, b) * float64(time.Second)) }
	ready := map[int]time.Duration{}
	for _, c := range w.Centrals() {
		ready[c] = 0
	}
	for changed := true; changed; {
		changed = false
		for _, st := range rs.sites {
			ask := w.OneWay(rs.coord, st.w)
			for src, r := range ready {
				if src == st.w {
					continue
				}
				one := w.OneWay(src, st.w)
				tt := max(r, ask+one) + one + tx(src, st.w)
				if old, ok := ready[st.w]; !ok || tt < old {
					ready[st.w] = tt
					changed = true
				}
			}
		}
	}
	var fetched, prop time.Duration
	for _, st := range rs.sites {
		fetched = max(fetched, ready[st.w])
		prop = max(prop, w.OneWay(rs.coord, st.w))
	}
	fetched += cfg.LoadTime
	if got.Fetched != fetched || got.Propagate != prop {
		t.Fatalf("oracle fetched %v propagate %v, Bellman-Ford %v and %v", got.Fetched, got.Propagate, fetched, prop)
	}
	if want := max(4*cfg.Interval+prop, fetched); got.AllOnNew != want {
		t.Fatalf("oracle all on new %v, want %v", got.AllOnNew, want)
	}

	bounds := rs.fetchBounds()
	for _, mode := range []struct {
		name            string
		originOnly, bad bool
	}{{"peers", false, false}, {"origin only", true, false}, {"bad", false, true}} {
		c := cfg
		c.OriginOnly, c.Bad = mode.originOnly, mode.bad
		run, err := newRolloutSim(c, w)
		if err != nil {
			t.Fatal(err)
		}
		res, err := run.run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if res.Oracle != got {
			t.Errorf("%s: oracle %+v, want %+v", mode.name, res.Oracle, got)
		}
		// Both count the load: a run below the oracle would mean the
		// simulator moves bytes faster than the links allow.
		if res.AllFetched < got.Fetched {
			t.Errorf("%s: all fetched at %v, before the oracle's %v", mode.name, res.AllFetched, got.Fetched)
		}
		// Per site too: no site's bytes arrive before its bound.
		fetched := 0
		for k, st := range run.sites {
			if st.doneAt == Never {
				continue
			}
			fetched++
			if st.doneAt < bounds[k] {
				t.Errorf("%s: %s has its bytes at %v, its bound is %v", mode.name, st.id, st.doneAt, bounds[k])
				break
			}
		}
		if fetched == 0 {
			t.Errorf("%s: no site fetched", mode.name)
		}
		if mode.bad {
			if d := res.AllOnOld - res.RolledBack; res.AllOnOld == Never || d < got.Propagate {
				t.Errorf("%s: rollback propagated in %v, oracle %v", mode.name, d, got.Propagate)
			}
		} else if res.AllOnNew == Never || res.AllOnNew < got.AllOnNew {
			t.Errorf("%s: all on new at %v, oracle %v", mode.name, res.AllOnNew, got.AllOnNew)
		}
	}
}
