package fedsim

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/federated"
)

// blobs returns a synthetic classification set: classes Gaussian blobs
// in dim dimensions around fixed random centres, n samples, features
// shifted into [0, 1]-ish like pixel data.
func blobs(n, dim, classes int, seed uint64) *federated.Dataset {
	centres := rand.New(rand.NewPCG(42, 42)) // the same centres for train and test
	c := make([]float64, classes*dim)
	for i := range c {
		c[i] = centres.Float64()
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	d := &federated.Dataset{X: make([]float32, n*dim), Y: make([]int32, n), N: n, Dim: dim, Classes: classes}
	for i := range n {
		y := rng.IntN(classes)
		d.Y[i] = int32(y)
		for j := range dim {
			d.X[i*dim+j] = float32(c[y*dim+j] + 0.15*rng.NormFloat64())
		}
	}
	return d
}

var (
	testTrain = blobs(2000, 10, 4, 1)
	testTest  = blobs(500, 10, 4, 2)
)

// small is a fast federated setup: 10 clients, all sampled, a tiny MLP.
func small() Config {
	return Config{
		Train: testTrain, Test: testTest,
		Model:   federated.Spec{Family: "mlp", Sizes: []int{10, 8, 4}},
		Clients: 10, Fraction: 1, Rounds: 4,
		SGD:  federated.SGDConfig{LR: 0.1, Momentum: 0.5, BatchSize: 16, Epochs: 2},
		Seed: 7,
	}
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func TestRunDeterministic(t *testing.T) {
	cfg := small()
	cfg.Fraction = 0.3
	cfg.Partition = Partition{Kind: PartitionDirichlet, Alpha: 0.5}
	cfg.Workers = 1
	a := run(t, cfg)
	cfg.Workers = 4
	b := run(t, cfg)
	if !slices.Equal(a.Points, b.Points) {
		t.Fatalf("1 and 4 workers differ:\n%v\n%v", a.Points, b.Points)
	}
	if len(a.Points) != cfg.Rounds {
		t.Fatalf("%d points, want one per round (%d)", len(a.Points), cfg.Rounds)
	}
	if a.Sampled != 3 || a.Updates != 3*cfg.Rounds {
		t.Fatalf("sampled %d, updates %d; want 3 and %d", a.Sampled, a.Updates, 3*cfg.Rounds)
	}
	cfg.Seed++
	c := run(t, cfg)
	if slices.Equal(a.Points, c.Points) {
		t.Fatalf("seeds %d and %d gave the same points %v", cfg.Seed-1, cfg.Seed, a.Points)
	}
}

func TestRunLearns(t *testing.T) {
	cfg := small()
	cfg.EvalEvery = 3 // rounds 3 and 4 (the last is always evaluated)
	res := run(t, cfg)
	if got := []int{res.Points[0].Round, res.Points[1].Round}; len(res.Points) != 2 || got[0] != 3 || got[1] != 4 {
		t.Fatalf("evaluated at %v, want rounds 3 and 4", res.Points)
	}
	t.Logf("accuracy %v", res.Points)
	if res.Final.Accuracy < 0.9 {
		t.Fatalf("FedAvg on separable blobs reached %.3f, want ≥ 0.9", res.Final.Accuracy)
	}
	if res.Final.Epsilon != 0 || res.NoiseMultiplier != 0 {
		t.Fatalf("ε %v, z %v without privacy", res.Final.Epsilon, res.NoiseMultiplier)
	}
	total := 0
	for _, n := range res.ClientSamples {
		total += n
	}
	if total != testTrain.N {
		t.Fatalf("clients hold %d samples, want %d", total, testTrain.N)
	}
}

func TestChurn(t *testing.T) {
	cfg := small()
	cfg.Rounds = 6
	cfg.Churn = Churn{Unavailable: 0.3, Dropout: 0.2}
	cfg.Workers = 1
	a := run(t, cfg)
	cfg.Workers = 3
	if b := run(t, cfg); !slices.Equal(a.Points, b.Points) || a.Offline != b.Offline || a.DroppedOut != b.DroppedOut {
		t.Fatalf("1 and 3 workers differ under churn:\n%+v\n%+v", a, b)
	}
	sampled := cfg.Rounds * a.Sampled
	// 60 draws: offline ~ 18, dropped out ~ 0.7·60·0.2 = 8.4.
	if a.Offline < 8 || a.Offline > 28 || a.DroppedOut < 2 || a.DroppedOut > 16 {
		t.Fatalf("offline %d, dropped out %d of %d sampled; want about 18 and 8", a.Offline, a.DroppedOut, sampled)
	}
	if a.Dropped != a.Offline+a.DroppedOut || a.Updates != sampled-a.Dropped {
		t.Fatalf("dropped %d, updates %d, sampled %d: churn not accounted (%d offline, %d out)", a.Dropped, a.Updates, sampled, a.Offline, a.DroppedOut)
	}
	if a.Final.Accuracy < 0.85 {
		t.Fatalf("FedAvg with 30%%/20%% churn reached %.3f, want ≥ 0.85", a.Final.Accuracy)
	}
	// Everyone offline: every round fails and the model stays at its
	// initial accuracy.
	cfg.Churn = Churn{Unavailable: 1}
	all := run(t, cfg)
	if all.FailedRounds != cfg.Rounds || all.Updates != 0 || all.Offline != sampled {
		t.Fatalf("all offline: %d failed rounds, %d updates, %d offline; want %d, 0, %d", all.FailedRounds, all.Updates, all.Offline, cfg.Rounds, sampled)
	}
	cfg.Churn = Churn{}
	if none := run(t, cfg); none.Dropped != 0 || none.Updates != sampled {
		t.Fatalf("no churn: dropped %d, updates %d; want 0 and %d", none.Dropped, none.Updates, sampled)
	}
}

func TestPartitionsAndAggregators(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
	}{
		{"iid", func(c *Config) {}},
		{"dirichlet", func(c *Config) { c.Partition = Partition{Kind: PartitionDirichlet, Alpha: 0.3} }},
		{"quantity", func(c *Config) { c.Partition = Partition{Kind: PartitionQuantity, Alpha: 1} }},
		{"kclasses", func(c *Config) { c.Partition = Partition{Kind: PartitionKClasses, K: 2} }},
		{"fedprox", func(c *Config) { c.Aggregator = federated.AggFedProx; c.SGD.ProxMu = 0.1 }},
		{"fedadam", func(c *Config) { c.Aggregator = federated.AggFedAdam }},
		{"multi-krum", func(c *Config) { c.Aggregator = federated.AggMultiKrum }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := small()
			cfg.Rounds = 2
			tc.edit(&cfg)
			res := run(t, cfg)
			if res.FailedRounds != 0 || res.Dropped != 0 {
				t.Fatalf("failed rounds %d, dropped %d: %s", res.FailedRounds, res.Dropped, res.LastError)
			}
			if !(res.Final.Accuracy > 0.25) {
				t.Fatalf("accuracy %.3f, not above chance (0.25)", res.Final.Accuracy)
			}
		})
	}
}

func TestAttackDegradesFedAvgNotMedian(t *testing.T) {
	cfg := small()
	cfg.Rounds = 5
	cfg.Attack = Attack{Kind: AttackSignFlip, Fraction: 0.2, Scale: 10}
	fedavg := run(t, cfg)
	cfg.Aggregator = federated.AggMedian
	median := run(t, cfg)
	t.Logf("under attack: fedavg %.3f, median %.3f", fedavg.Final.Accuracy, median.Final.Accuracy)
	if len(fedavg.Malicious) != 2 || fedavg.MaliciousUpdates != 2*cfg.Rounds {
		t.Fatalf("malicious clients %v sent %d updates, want 2 clients and %d updates", fedavg.Malicious, fedavg.MaliciousUpdates, 2*cfg.Rounds)
	}
	if median.Final.Accuracy < 0.9 {
		t.Fatalf("median under attack: accuracy %.3f, want ≥ 0.9", median.Final.Accuracy)
	}
	if fedavg.Final.Accuracy > median.Final.Accuracy-0.3 {
		t.Fatalf("fedavg under attack %.3f is not well below median %.3f", fedavg.Final.Accuracy, median.Final.Accuracy)
	}
	// A scaling attack pushes fedavg around as well.
	cfg.Aggregator = federated.AggFedAvg
	cfg.Attack = Attack{Kind: AttackScale, Fraction: 0.2, Scale: 50}
	scaled := run(t, cfg)
	t.Logf("under a scaling attack: fedavg %.3f (failed rounds %d)", scaled.Final.Accuracy, scaled.FailedRounds)
	if scaled.Final.Accuracy > median.Final.Accuracy-0.1 {
		t.Fatalf("fedavg under a ×50 scaling attack reached %.3f, median %.3f", scaled.Final.Accuracy, median.Final.Accuracy)
	}
}

func TestPrivacy(t *testing.T) {
	cfg := small()
	cfg.Fraction = 0.5
	cfg.Rounds = 5
	cfg.Privacy = Privacy{Clip: 1, TargetEpsilon: 8}
	res := run(t, cfg)
	if !(res.NoiseMultiplier > 0) || res.Delta != DefaultDelta {
		t.Fatalf("z %v, δ %v", res.NoiseMultiplier, res.Delta)
	}
	prev := 0.0
	for _, p := range res.Points {
		if !(p.Epsilon > prev) {
			t.Fatalf("ε does not grow: %v", res.Points)
		}
		prev = p.Epsilon
	}
	if res.Final.Epsilon > 8*1.001 {
		t.Fatalf("ε after the planned rounds is %v, above the target 8", res.Final.Epsilon)
	}
	// A fixed noise multiplier instead of a target.
	cfg.Privacy = Privacy{Clip: 1, NoiseMultiplier: 2}
	res2 := run(t, cfg)
	if res2.NoiseMultiplier != 2 || !(res2.Final.Epsilon > 0) || math.IsInf(res2.Final.Epsilon, 0) {
		t.Fatalf("z %v, ε %v", res2.NoiseMultiplier, res2.Final.Epsilon)
	}
	// Clipping without noise gives no guarantee.
	cfg.Privacy = Privacy{Clip: 1}
	if res3 := run(t, cfg); !math.IsInf(res3.Final.Epsilon, 1) {
		t.Fatalf("clipping without noise: ε %v, want +Inf", res3.Final.Epsilon)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
	}{
		{"no data", func(c *Config) { c.Train = nil }},
		{"dim mismatch", func(c *Config) { c.Test = blobs(10, 3, 4, 1) }},
		{"model input", func(c *Config) { c.Model = federated.Spec{Family: "mlp", Sizes: []int{9, 4}} }},
		{"too many clients", func(c *Config) { c.Clients = testTrain.N + 1 }},
		{"negative clients", func(c *Config) { c.Clients = -1 }},
		{"fraction", func(c *Config) { c.Fraction = 1.5 }},
		{"fraction NaN", func(c *Config) { c.Fraction = math.NaN() }},
		{"rounds", func(c *Config) { c.Rounds = -2 }},
		{"eval every", func(c *Config) { c.EvalEvery = -1 }},
		{"partition", func(c *Config) { c.Partition.Kind = "zipf" }},
		{"alpha", func(c *Config) { c.Partition = Partition{Kind: PartitionDirichlet, Alpha: -1} }},
		{"sgd", func(c *Config) { c.SGD.Momentum = 1 }},
		{"aggregator", func(c *Config) { c.Aggregator = "mean" }},
		{"agg options", func(c *Config) { c.AggOptions.TrimFraction = 0.7 }},
		{"attack kind", func(c *Config) { c.Attack = Attack{Kind: "noise", Fraction: 0.1} }},
		{"attack fraction", func(c *Config) { c.Attack = Attack{Kind: AttackScale, Fraction: 1} }},
		{"attack scale", func(c *Config) { c.Attack = Attack{Kind: AttackScale, Fraction: 0.1, Scale: math.Inf(1)} }},
		{"privacy clip", func(c *Config) { c.Privacy = Privacy{TargetEpsilon: 1} }},
		{"privacy both", func(c *Config) { c.Privacy = Privacy{Clip: 1, TargetEpsilon: 1, NoiseMultiplier: 1} }},
		{"privacy delta", func(c *Config) { c.Privacy = Privacy{Clip: 1, TargetEpsilon: 1, Delta: 1} }},
		{"privacy aggregator", func(c *Config) { c.Privacy = Privacy{Clip: 1, TargetEpsilon: 1}; c.Aggregator = "median" }},
		{"churn unavailable", func(c *Config) { c.Churn.Unavailable = 1.5 }},
		{"churn dropout NaN", func(c *Config) { c.Churn.Dropout = math.NaN() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := small()
			tc.edit(&cfg)
			if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate: %v, want ErrInvalidConfig", err)
			}
			if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Run: %v, want ErrInvalidConfig", err)
			}
		})
	}
	if err := (Config{Train: testTrain, Test: testTest}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, small()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if _, err := Centralized(ctx, CentralConfig{Train: testTrain, Test: testTest}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Centralized: %v, want context.Canceled", err)
	}
}

func TestCentralized(t *testing.T) {
	cfg := CentralConfig{Train: testTrain, Test: testTest, Model: small().Model, SGD: small().SGD, Epochs: 3, Seed: 7}
	var seen []int
	cfg.Progress = func(p Point) { seen = append(seen, p.Round) }
	res, err := Centralized(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []int{1, 2, 3}) || len(res.Points) != 3 {
		t.Fatalf("progress %v, points %v", seen, res.Points)
	}
	if res.Best.Accuracy < 0.9 || res.Best.Accuracy < res.Final.Accuracy {
		t.Fatalf("best %v, final %v", res.Best, res.Final)
	}
	again, err := Centralized(context.Background(), cfg)
	if err != nil || !slices.Equal(res.Points, again.Points) {
		t.Fatalf("not deterministic: %v vs %v (%v)", res.Points, again.Points, err)
	}
	cfg.Epochs = -1
	if _, err := Centralized(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Epochs -1: %v", err)
	}
}

func TestSecAggCost(t *testing.T) {
	res, err := SecAggCost(context.Background(), SecAggConfig{Clients: 10, Params: 500, DropFraction: 0.2, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Dropped != 2 || len(res.PerClient) != 10 || res.Threshold != 7 {
		t.Fatalf("dropped %d of %d, t %d", res.Dropped, len(res.PerClient), res.Threshold)
	}
	for _, c := range res.PerClient {
		if c.BytesUp == 0 || c.BytesDown == 0 || c.Time <= 0 {
			t.Fatalf("client %+v has no cost", c)
		}
		if !c.Dropped && c.BytesUp < 4*500 {
			t.Fatalf("client %d sent %d bytes, less than its vector", c.ID, c.BytesUp)
		}
	}
	if res.ServerTime <= 0 || res.ServerBytesIn == 0 || res.MeanBytesUp == 0 || res.MaxError > 1e-5 {
		t.Fatalf("server %v, in %d, mean up %d, error %g", res.ServerTime, res.ServerBytesIn, res.MeanBytesUp, res.MaxError)
	}
	if _, err := SecAggCost(context.Background(), SecAggConfig{Clients: 1}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("one client: %v", err)
	}
	for _, bad := range []SecAggConfig{{Clients: 10, DropFraction: 0.5}, {Clients: 10, DropFraction: 1}, {Clients: 10, Threshold: 3}, {Params: -5}} {
		if _, err := SecAggCost(context.Background(), bad); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("%+v: %v, want ErrInvalidConfig", bad, err)
		}
	}
}

func TestAggregateThroughput(t *testing.T) {
	res, err := AggregateThroughput(context.Background(), AggBenchConfig{Counts: []int{2, 5}, Params: 100, Repeats: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Timings) != 2 || res.Timings[1].Updates != 5 || len(res.Timings[1].Times) != 3 || res.Aggregator != "fedavg" {
		t.Fatalf("%+v", res)
	}
	for _, tm := range res.Timings {
		if tm.Min > tm.Median || tm.Min <= 0 {
			t.Fatalf("min %v, median %v", tm.Min, tm.Median)
		}
	}
	for _, bad := range []AggBenchConfig{{Counts: []int{0}}, {Params: -1}, {Aggregator: "mean"}, {Counts: []int{1 << 20}, Params: 1 << 20}} {
		if _, err := AggregateThroughput(context.Background(), bad); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("%+v: %v, want ErrInvalidConfig", bad, err)
		}
	}
}

func TestReport(t *testing.T) {
	pts := []Point{{Round: 1, Accuracy: 0.5, Loss: 1.25}, {Round: 2, Accuracy: 0.75, Loss: 0.5, Epsilon: math.Inf(1)}}
	var csv bytes.Buffer
	if err := WriteCSV(&csv, "round", pts); err != nil {
		t.Fatal(err)
	}
	want := "round,accuracy,loss,epsilon\n1,0.5,1.25,0\n2,0.75,0.5,inf\n"
	if csv.String() != want {
		t.Fatalf("CSV\n%s\nwant\n%s", csv.String(), want)
	}
	var png bytes.Buffer
	if err := PlotAccuracy(&png, "test", []Series{{Name: "a", Points: pts}, {Name: "empty"}}, []Level{{Name: "base", Value: 0.8}}); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png.Bytes(), []byte("\x89PNG")) {
		t.Fatalf("PlotAccuracy wrote %d bytes that are not a PNG", png.Len())
	}
	png.Reset()
	agg := &AggBenchResult{Aggregator: "fedavg", Params: 1000, GOMAXPROCS: 1, Timings: []AggTiming{{Updates: 10, Min: time.Millisecond, Median: 2 * time.Millisecond}}}
	if err := PlotAggregate(&png, agg, 150*time.Millisecond); err != nil || !bytes.HasPrefix(png.Bytes(), []byte("\x89PNG")) {
		t.Fatalf("PlotAggregate: %v", err)
	}
	if s := (Partition{Kind: PartitionDirichlet, Alpha: 0.5}).String(); !strings.Contains(s, "0.5") {
		t.Fatalf("partition string %q", s)
	}
}
