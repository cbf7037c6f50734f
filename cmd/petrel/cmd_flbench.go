package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/federated"
	"github.com/petrel-mesh/petrel/simulations/fedsim"
)

const usageFLBench = "petrel fl bench [--out DIR] [--experiments all|iid,dirichlet,centralized,attack-fedavg,attack-robust,dp-eps8,dp-eps1,secagg,aggregate] [--rounds N] [--clients N] [--fraction F] [--hidden N] [flags]"

// The experiments of petrel fl bench, in the order they run.
const (
	expCentralized  = "centralized"
	expIID          = "iid"
	expDirichlet    = "dirichlet"
	expAttackFedAvg = "attack-fedavg"
	expAttackRobust = "attack-robust"
	expDPEps8       = "dp-eps8"
	expDPEps1       = "dp-eps1"
	expSecAgg       = "secagg"
	expAggregate    = "aggregate"
)

var flBenchExperiments = []string{expCentralized, expIID, expDirichlet, expAttackFedAvg, expAttackRobust, expDPEps8, expDPEps1, expSecAgg, expAggregate}

// flLearningExperiments need the data set.
var flLearningExperiments = []string{expCentralized, expIID, expDirichlet, expAttackFedAvg, expAttackRobust, expDPEps8, expDPEps1}

// Targets of the headline figures.
const (
	targetGapPoints   = 3.0                    // FedAvg on Dirichlet(0.5) within this many points of centralised
	targetRobustAcc   = 0.80                   // a robust aggregator keeps this accuracy under attack
	targetAggregation = 150 * time.Millisecond // FedAvg of 100 × 1M on one core
)

// flBenchFlags holds everything petrel fl bench takes.
type flBenchFlags struct {
	out           string
	experiments   string
	data          string
	trainLimit    int
	testLimit     int
	rounds        int
	clients       int
	fraction      float64
	hidden        int
	seed          uint64
	lr            float64
	momentum      float64
	weightDecay   float64
	batchSize     int
	localEpochs   int
	proxMu        float64
	alpha         float64
	evalEvery     int
	centralEpochs int
	workers       int
	attack        string
	attackFrac    float64
	attackScale   float64
	robust        string
	trimFraction  float64
	byzantine     int
	dpClip        float64
	delta         float64
	secClients    int
	secParams     int
	secDropout    float64
	aggUpdates    string
	aggParams     int
	aggRepeats    int
	aggProcs      int
}

func (f *flBenchFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.out, "out", "docs/fl", "directory for the CSV files, PNG plots, summary.md and summary.json")
	fs.StringVar(&f.experiments, "experiments", "all", "comma-separated experiments: "+strings.Join(flBenchExperiments, ", ")+", or all")
	fs.StringVar(&f.data, "data", "", "Fashion-MNIST directory (default "+federated.FashionMNISTDir+")")
	fs.IntVar(&f.trainLimit, "train-limit", 0, "use only the first N training samples (0: all)")
	fs.IntVar(&f.testLimit, "test-limit", 0, "use only the first N test samples (0: all)")
	fs.IntVar(&f.rounds, "rounds", fedsim.DefaultRounds, "federated rounds")
	fs.IntVar(&f.clients, "clients", fedsim.DefaultClients, "simulated clients (stores)")
	fs.Float64Var(&f.fraction, "fraction", fedsim.DefaultFraction, "share of the clients sampled each round")
	fs.IntVar(&f.hidden, "hidden", fedsim.DefaultHidden, "hidden units of the MLP in-hidden-classes (0: softmax regression)")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of every random choice")
	fs.Float64Var(&f.lr, "lr", 0.01, "local SGD learning rate (also the centralised baseline's)")
	fs.Float64Var(&f.momentum, "momentum", 0.9, "local SGD momentum")
	fs.Float64Var(&f.weightDecay, "weight-decay", 0, "local SGD weight decay")
	fs.IntVar(&f.batchSize, "batch-size", 32, "local SGD minibatch size")
	fs.IntVar(&f.localEpochs, "local-epochs", 5, "local epochs per round")
	fs.Float64Var(&f.proxMu, "prox-mu", 0, "FedProx proximal coefficient of the clients (0: plain FedAvg)")
	fs.Float64Var(&f.alpha, "alpha", fedsim.DefaultAlpha, "Dirichlet concentration of the dirichlet experiment")
	fs.IntVar(&f.evalEvery, "eval-every", 1, "evaluate the global model every N rounds")
	fs.IntVar(&f.centralEpochs, "central-epochs", 20, "epochs of the centralised baseline")
	fs.IntVar(&f.workers, "workers", 0, "clients trained in parallel (0: GOMAXPROCS)")
	fs.StringVar(&f.attack, "attack", fedsim.AttackSignFlip, "attack of the attack experiments: sign-flip (delta → -k·delta) or scale (delta → k·delta)")
	fs.Float64Var(&f.attackFrac, "attack-fraction", 0.2, "share of the clients that are malicious")
	fs.Float64Var(&f.attackScale, "attack-scale", fedsim.DefaultAttackScale, "k of the attack")
	fs.StringVar(&f.robust, "robust", "median,trimmed-mean,krum", "robust aggregators of the attack-robust experiment")
	fs.Float64Var(&f.trimFraction, "trim-fraction", 0.3, "fraction trimmed from each side by trimmed-mean")
	fs.IntVar(&f.byzantine, "byzantine", 0, "f of krum and multi-krum (0: the most the round allows)")
	fs.Float64Var(&f.dpClip, "dp-clip", 0.05, "differential privacy: L2 clip of every update")
	fs.Float64Var(&f.delta, "delta", fedsim.DefaultDelta, "differential privacy: δ")
	fs.IntVar(&f.secClients, "secagg-clients", 100, "secure aggregation: clients")
	fs.IntVar(&f.secParams, "secagg-params", 100_000, "secure aggregation: parameters per client")
	fs.Float64Var(&f.secDropout, "secagg-dropout", 0.1, "secure aggregation: share of the clients that drop out before their masked input")
	fs.StringVar(&f.aggUpdates, "agg-updates", "10,25,50,100", "aggregation throughput: numbers of updates to time (the largest is the headline)")
	fs.IntVar(&f.aggParams, "agg-params", 1_000_000, "aggregation throughput: parameters per update")
	fs.IntVar(&f.aggRepeats, "agg-repeats", 5, "aggregation throughput: timed calls per size")
	fs.IntVar(&f.aggProcs, "agg-gomaxprocs", 1, "aggregation throughput: GOMAXPROCS while timing (0: leave as is)")
}

// experimentList parses --experiments.
func (f *flBenchFlags) experimentList() ([]string, error) {
	if strings.TrimSpace(f.experiments) == "all" {
		return slices.Clone(flBenchExperiments), nil
	}
	want := map[string]bool{}
	for _, name := range strings.Split(f.experiments, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(flBenchExperiments, name) {
			return nil, usageErrorf("--experiments: unknown experiment %q (known: %s, all)", name, strings.Join(flBenchExperiments, ", "))
		}
		want[name] = true
	}
	if len(want) == 0 {
		return nil, usageErrorf("--experiments: no experiment named")
	}
	var out []string
	for _, name := range flBenchExperiments {
		if want[name] {
			out = append(out, name)
		}
	}
	return out, nil
}

// check validates the flags that the libraries do not check themselves.
func (f *flBenchFlags) check() error {
	switch {
	case f.out == "":
		return usageErrorf("--out is empty")
	case f.trainLimit < 0 || f.testLimit < 0:
		return usageErrorf("--train-limit and --test-limit must be ≥ 0")
	case f.hidden < 0:
		return usageErrorf("--hidden %d, want ≥ 0", f.hidden)
	case f.centralEpochs < 1:
		return usageErrorf("--central-epochs %d, want ≥ 1", f.centralEpochs)
	case f.aggProcs < 0:
		return usageErrorf("--agg-gomaxprocs %d, want ≥ 0", f.aggProcs)
	}
	// The libraries read zero as "default"; on the command line a zero is
	// a mistake.
	for _, c := range []struct {
		name string
		v    int
	}{{"rounds", f.rounds}, {"clients", f.clients}, {"batch-size", f.batchSize}, {"local-epochs", f.localEpochs},
		{"eval-every", f.evalEvery}, {"secagg-clients", f.secClients}, {"secagg-params", f.secParams},
		{"agg-params", f.aggParams}, {"agg-repeats", f.aggRepeats}} {
		if c.v < 1 {
			return usageErrorf("--%s %d, want ≥ 1", c.name, c.v)
		}
	}
	for _, c := range []struct {
		name string
		v    float64
	}{{"fraction", f.fraction}, {"lr", f.lr}, {"alpha", f.alpha}, {"attack-fraction", f.attackFrac},
		{"attack-scale", f.attackScale}, {"dp-clip", f.dpClip}, {"delta", f.delta}} {
		if !(c.v > 0) || math.IsInf(c.v, 0) {
			return usageErrorf("--%s %v, want a positive number", c.name, c.v)
		}
	}
	if !(f.secDropout >= 0 && f.secDropout < 1) {
		return usageErrorf("--secagg-dropout %v, want [0, 1)", f.secDropout)
	}
	if _, err := f.aggCounts(); err != nil {
		return err
	}
	for _, a := range f.robustList() {
		if !slices.Contains(federated.AggregatorNames(), a) {
			return usageErrorf("--robust: unknown aggregator %q (known: %s)", a, strings.Join(federated.AggregatorNames(), ", "))
		}
	}
	return nil
}

func (f *flBenchFlags) robustList() []string {
	var out []string
	for _, a := range strings.Split(f.robust, ",") {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func (f *flBenchFlags) aggCounts() ([]int, error) {
	var out []int
	for _, s := range strings.Split(f.aggUpdates, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, usageErrorf("--agg-updates: %q is not a positive count", s)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, usageErrorf("--agg-updates is empty")
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// spec is the model the flags describe for data of dim features.
func (f *flBenchFlags) spec(d *federated.Dataset) federated.Spec {
	if f.hidden == 0 {
		return federated.Spec{Family: "softmax", Sizes: []int{d.Dim, d.Classes}}
	}
	return federated.Spec{Family: "mlp", Sizes: []int{d.Dim, f.hidden, d.Classes}}
}

func (f *flBenchFlags) sgd() federated.SGDConfig {
	return federated.SGDConfig{LR: f.lr, Momentum: f.momentum, WeightDecay: f.weightDecay, BatchSize: f.batchSize, Epochs: f.localEpochs, ProxMu: f.proxMu}
}

// base is the federated configuration every learning experiment starts
// from.
func (f *flBenchFlags) base(train, test *federated.Dataset) fedsim.Config {
	return fedsim.Config{Train: train, Test: test, Model: f.spec(train), Clients: f.clients, Fraction: f.fraction,
		Rounds: f.rounds, SGD: f.sgd(), EvalEvery: f.evalEvery, Workers: f.workers, Seed: f.seed}
}

// flRun is one finished learning run.
type flRun struct {
	Name       string         `json:"name"`
	Label      string         `json:"label"`
	Partition  string         `json:"partition,omitempty"`
	Aggregator string         `json:"aggregator,omitempty"`
	Attack     string         `json:"attack,omitempty"`
	Privacy    string         `json:"privacy,omitempty"`
	Final      fedsim.Point   `json:"final"`
	Best       fedsim.Point   `json:"best"`
	Noise      float64        `json:"noise_multiplier,omitempty"`
	Updates    int            `json:"updates"`
	Malicious  int            `json:"malicious_updates,omitempty"`
	Dropped    int            `json:"dropped_clients,omitempty"`
	Failed     int            `json:"failed_rounds,omitempty"`
	LastError  string         `json:"last_error,omitempty"`
	Seconds    float64        `json:"seconds"`
	CSV        string         `json:"csv"`
	points     []fedsim.Point // for the plots
	res        *fedsim.Result // nil for the centralised run
}

// flTarget is one headline figure against its target.
type flTarget struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      *bool  `json:"met"` // nil: reported, no pass/fail
}

// flBench is one invocation of petrel fl bench.
type flBench struct {
	f       flBenchFlags
	fs      *flag.FlagSet
	e       *env
	exps    []string
	start   time.Time
	runs    map[string]*flRun
	order   []string
	secagg  *fedsim.SecAggResult
	agg     *fedsim.AggBenchResult
	files   []string
	dataset string // the data set, in words
	model   string // the model, in words
}

func runFLBench(ctx context.Context, e *env, args []string) int {
	c := &cmdCtx{e: e, name: "petrel fl bench", use: usageFLBench}
	fs := c.newFlagSet()
	b := &flBench{e: e, fs: fs, runs: map[string]*flRun{}}
	b.f.register(fs)
	if _, code, ok := c.parse(fs, args, 0, 0); !ok {
		return code
	}
	exps, err := b.f.experimentList()
	if err != nil {
		return c.fail(err)
	}
	if err := b.f.check(); err != nil {
		return c.fail(err)
	}
	b.exps = exps
	if err := b.run(ctx); err != nil {
		return c.fail(err)
	}
	return 0
}

func (b *flBench) logf(format string, a ...any) {
	fmt.Fprintf(b.e.stdout, "fl bench: "+format+"\n", a...)
}

// run runs the selected experiments and writes every output.
func (b *flBench) run(ctx context.Context) error {
	b.start = time.Now()
	if err := os.MkdirAll(b.f.out, 0o755); err != nil {
		return fmt.Errorf("create --out directory: %w", err)
	}
	var train, test *federated.Dataset
	if slices.ContainsFunc(b.exps, func(x string) bool { return slices.Contains(flLearningExperiments, x) }) {
		var err error
		if train, test, err = b.load(); err != nil {
			return err
		}
	}
	if err := b.validate(train, test); err != nil {
		return err
	}
	for _, exp := range b.exps {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		switch exp {
		case expCentralized:
			err = b.centralized(ctx, train, test)
		case expSecAgg:
			err = b.secAgg(ctx)
		case expAggregate:
			err = b.aggregate(ctx)
		default:
			for _, r := range b.fedRuns(exp, train, test) {
				if err = b.federated(ctx, r.name, r.label, r.cfg); err != nil {
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", exp, err)
		}
	}
	if err := b.plots(); err != nil {
		return err
	}
	if err := b.summary(); err != nil {
		return err
	}
	b.logf("done in %s; wrote %s", time.Since(b.start).Round(time.Second), strings.Join(b.files, ", "))
	return nil
}

// flModel describes spec, e.g. "MLP 784-64-10 (ReLU, softmax; 50890
// parameters)".
func flModel(spec federated.Spec) string {
	sizes := make([]string, len(spec.Sizes))
	params := 0
	for i, n := range spec.Sizes {
		sizes[i] = strconv.Itoa(n)
		if i > 0 {
			params += spec.Sizes[i-1]*n + n
		}
	}
	if spec.Family != "mlp" {
		return fmt.Sprintf("%s regression %s (%d parameters)", spec.Family, strings.Join(sizes, "-"), params)
	}
	return fmt.Sprintf("MLP %s (ReLU, softmax; %d parameters)", strings.Join(sizes, "-"), params)
}

// fedRun is one planned federated run.
type fedRun struct {
	name, label string
	cfg         fedsim.Config
}

// fedRuns returns the federated runs of a learning experiment (none for
// the others).
func (b *flBench) fedRuns(exp string, train, test *federated.Dataset) []fedRun {
	switch exp {
	case expIID:
		return []fedRun{{expIID, "FedAvg, IID", b.f.base(train, test)}}
	case expDirichlet:
		cfg := b.f.base(train, test)
		cfg.Partition = fedsim.Partition{Kind: fedsim.PartitionDirichlet, Alpha: b.f.alpha}
		return []fedRun{{expDirichlet, fmt.Sprintf("FedAvg, Dirichlet(%g)", b.f.alpha), cfg}}
	case expAttackFedAvg:
		return []fedRun{{expAttackFedAvg, "FedAvg under attack", b.attackConfig(train, test, federated.AggFedAvg)}}
	case expAttackRobust:
		var out []fedRun
		for _, a := range b.f.robustList() {
			out = append(out, fedRun{"attack-" + a, a + " under attack", b.attackConfig(train, test, a)})
		}
		return out
	case expDPEps8, expDPEps1:
		eps := 8.0
		if exp == expDPEps1 {
			eps = 1
		}
		cfg := b.f.base(train, test)
		cfg.Privacy = fedsim.Privacy{Clip: b.f.dpClip, TargetEpsilon: eps, Delta: b.f.delta}
		return []fedRun{{exp, fmt.Sprintf("DP-FedAvg, ε = %g", eps), cfg}}
	}
	return nil
}

// validate checks every planned configuration, so that a bad flag fails
// before minutes of work rather than after.
func (b *flBench) validate(train, test *federated.Dataset) error {
	for _, exp := range b.exps {
		for _, r := range b.fedRuns(exp, train, test) {
			if err := r.cfg.Validate(); err != nil {
				return usageErrorf("%s: %v", r.name, err)
			}
		}
		var err error
		switch exp {
		case expSecAgg:
			err = b.secaggConfig().Validate()
		case expAggregate:
			err = b.aggConfig().Validate()
		}
		if err != nil {
			return usageErrorf("%s: %v", exp, err)
		}
	}
	return nil
}

func (b *flBench) secaggConfig() fedsim.SecAggConfig {
	drop := b.f.secDropout
	if drop == 0 {
		drop = -1 // SecAggConfig reads 0 as its default
	}
	return fedsim.SecAggConfig{Clients: b.f.secClients, Params: b.f.secParams, DropFraction: drop, Seed: b.f.seed}
}

func (b *flBench) aggConfig() fedsim.AggBenchConfig {
	counts, _ := b.f.aggCounts() // checked by flBenchFlags.check
	return fedsim.AggBenchConfig{Aggregator: federated.AggFedAvg, Counts: counts, Params: b.f.aggParams, Repeats: b.f.aggRepeats, Seed: b.f.seed}
}

// load reads Fashion-MNIST and applies the limits.
func (b *flBench) load() (train, test *federated.Dataset, err error) {
	t0 := time.Now()
	train, test, err = federated.LoadFashionMNIST(b.f.data)
	if err != nil {
		return nil, nil, err
	}
	limit := func(d *federated.Dataset, n int) *federated.Dataset {
		if n == 0 || n >= d.N {
			return d
		}
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return d.Subset(idx)
	}
	train, test = limit(train, b.f.trainLimit), limit(test, b.f.testLimit)
	dir := b.f.data
	if dir == "" {
		dir = federated.FashionMNISTDir
	}
	b.model = flModel(b.f.spec(train))
	b.dataset = fmt.Sprintf("Fashion-MNIST (%s): %d training and %d test samples of %d features, %d classes", dir, train.N, test.N, train.Dim, train.Classes)
	b.logf("loaded %s in %s", b.dataset, time.Since(t0).Round(time.Millisecond))
	return train, test, nil
}

func (b *flBench) attackConfig(train, test *federated.Dataset, aggregator string) fedsim.Config {
	cfg := b.f.base(train, test)
	cfg.Aggregator = aggregator
	cfg.AggOptions = federated.AggOptions{TrimFraction: b.f.trimFraction, Byzantine: b.f.byzantine}
	cfg.Attack = fedsim.Attack{Kind: b.f.attack, Fraction: b.f.attackFrac, Scale: b.f.attackScale}
	return cfg
}

// progress returns a callback that prints about ten lines per run.
func (b *flBench) progress(name, unit string, total int, t0 time.Time) func(fedsim.Point) {
	step := max(1, total/10)
	return func(p fedsim.Point) {
		if p.Round%step != 0 && p.Round != total {
			return
		}
		eps := ""
		if p.Epsilon != 0 {
			eps = fmt.Sprintf(", ε %.2f", p.Epsilon)
		}
		b.logf("%s: %s %d/%d: accuracy %.2f%%, loss %.4f%s (%s)", name, unit, p.Round, total, 100*p.Accuracy, p.Loss, eps, time.Since(t0).Round(100*time.Millisecond))
	}
}

func (b *flBench) centralized(ctx context.Context, train, test *federated.Dataset) error {
	t0 := time.Now()
	b.logf("%s: %d epochs on all %d training samples", expCentralized, b.f.centralEpochs, train.N)
	res, err := fedsim.Centralized(ctx, fedsim.CentralConfig{Train: train, Test: test, Model: b.f.spec(train), SGD: b.f.sgd(),
		Epochs: b.f.centralEpochs, Workers: b.f.workers, Seed: b.f.seed, Progress: b.progress(expCentralized, "epoch", b.f.centralEpochs, t0)})
	if err != nil {
		return err
	}
	run := &flRun{Name: expCentralized, Label: fmt.Sprintf("centralised, best of %d epochs", b.f.centralEpochs),
		Final: res.Final, Best: res.Best, Seconds: time.Since(t0).Seconds(), points: res.Points}
	return b.finish(run, "epoch")
}

func (b *flBench) federated(ctx context.Context, name, label string, cfg fedsim.Config) error {
	t0 := time.Now()
	run := &flRun{Name: name, Label: label, Partition: flPartition(cfg.Partition), Aggregator: flOrDefault(cfg.Aggregator, fedsim.DefaultAggregator)}
	if cfg.Attack.Kind != fedsim.AttackNone {
		run.Attack = fmt.Sprintf("%s ×%g, %g%% of the clients", cfg.Attack.Kind, cfg.Attack.Scale, 100*cfg.Attack.Fraction)
	}
	b.logf("%s: %s, %d rounds", name, label, cfg.Rounds)
	cfg.Progress = b.progress(name, "round", cfg.Rounds, t0)
	res, err := fedsim.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.Privacy.Enabled() {
		run.Privacy = fmt.Sprintf("clip %g, z %.3f, target ε %g, δ %g", cfg.Privacy.Clip, res.NoiseMultiplier, cfg.Privacy.TargetEpsilon, res.Delta)
		run.Noise = res.NoiseMultiplier
	}
	run.Final, run.Best, run.points, run.res = res.Final, res.Best, res.Points, res
	run.Updates, run.Malicious, run.Dropped, run.Failed, run.LastError = res.Updates, res.MaliciousUpdates, res.Dropped, res.FailedRounds, res.LastError
	run.Seconds = time.Since(t0).Seconds()
	return b.finish(run, "round")
}

func flPartition(p fedsim.Partition) string {
	if p.Kind == "" {
		return fedsim.PartitionIID
	}
	return p.String()
}

func flOrDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// finish writes a run's CSV and records it.
func (b *flBench) finish(run *flRun, xname string) error {
	run.CSV = run.Name + ".csv"
	if err := b.writeFile(run.CSV, func(w io.Writer) error { return fedsim.WriteCSV(w, xname, run.points) }); err != nil {
		return err
	}
	b.runs[run.Name] = run
	b.order = append(b.order, run.Name)
	b.logf("%s: final accuracy %.2f%% (%s %d), best %.2f%% (%s %d), in %.1fs",
		run.Name, 100*run.Final.Accuracy, xname, run.Final.Round, 100*run.Best.Accuracy, xname, run.Best.Round, run.Seconds)
	return nil
}

// writeFile writes name under --out through a buffer and records it.
func (b *flBench) writeFile(name string, write func(io.Writer) error) error {
	path := filepath.Join(b.f.out, name)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	err = write(w)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	b.files = append(b.files, name)
	return nil
}

func (b *flBench) secAgg(ctx context.Context) error {
	t0 := time.Now()
	b.logf("%s: %d clients × %d parameters, %g%% drop out", expSecAgg, b.f.secClients, b.f.secParams, 100*b.f.secDropout)
	res, err := fedsim.SecAggCost(ctx, b.secaggConfig())
	if err != nil {
		return err
	}
	b.secagg = res
	b.logf("%s: per client %s mean (%s max), %s up, %s down; server %s (%s in, %s out); in %.1fs", expSecAgg,
		flMs(res.MeanClientTime), flMs(res.MaxClientTime), flBytes(int64(res.MeanBytesUp)),
		flBytes(int64(res.MeanBytesDown)), flMs(res.ServerTime), flBytes(res.ServerBytesIn),
		flBytes(res.ServerBytesOut), time.Since(t0).Seconds())
	return b.writeFile("secagg.csv", func(w io.Writer) error {
		fmt.Fprintln(w, "party,dropped,time_ms,bytes_sent,bytes_received")
		for _, c := range res.PerClient {
			fmt.Fprintf(w, "client-%d,%t,%.3f,%d,%d\n", c.ID, c.Dropped, flMsf(c.Time), c.BytesUp, c.BytesDown)
		}
		for r, d := range res.ServerRounds {
			fmt.Fprintf(w, "server-round-%d,false,%.3f,,\n", r, flMsf(d))
		}
		_, err := fmt.Fprintf(w, "server,false,%.3f,%d,%d\n", flMsf(res.ServerTime), res.ServerBytesOut, res.ServerBytesIn)
		return err
	})
}

func (b *flBench) aggregate(ctx context.Context) error {
	cfg := b.aggConfig()
	b.logf("%s: fedavg of %v updates × %d parameters, GOMAXPROCS %d", expAggregate, cfg.Counts, cfg.Params, b.f.aggProcs)
	if b.f.aggProcs > 0 {
		prev := runtime.GOMAXPROCS(b.f.aggProcs)
		defer runtime.GOMAXPROCS(prev)
	}
	res, err := fedsim.AggregateThroughput(ctx, cfg)
	if err != nil {
		return err
	}
	b.agg = res
	for _, t := range res.Timings {
		b.logf("%s: %d updates: median %s, fastest %s", expAggregate, t.Updates, flMs(t.Median), flMs(t.Min))
	}
	if err := b.writeFile("aggregate.csv", func(w io.Writer) error {
		fmt.Fprintln(w, "updates,params,gomaxprocs,repeat,ms")
		for _, t := range res.Timings {
			for i, d := range t.Times {
				fmt.Fprintf(w, "%d,%d,%d,%d,%.3f\n", t.Updates, res.Params, res.GOMAXPROCS, i+1, flMsf(d))
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return b.writeFile("aggregate.png", func(w io.Writer) error { return fedsim.PlotAggregate(w, res, targetAggregation) })
}

func flMsf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// flMs formats d in milliseconds with one decimal ("71.2 ms").
func flMs(d time.Duration) string { return fmt.Sprintf("%.1f ms", flMsf(d)) }

// flBytes formats a byte count with a binary-free SI unit (kB, MB).
func flBytes(n int64) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// series returns the named runs that exist as plot series.
func (b *flBench) series(names ...string) []fedsim.Series {
	var out []fedsim.Series
	for _, n := range names {
		if r := b.runs[n]; r != nil {
			out = append(out, fedsim.Series{Name: fmt.Sprintf("%s (round %d: %.1f%%)", r.Label, r.Final.Round, 100*r.Final.Accuracy), Points: r.points})
		}
	}
	return out
}

// plots draws the accuracy plots whose runs exist.
func (b *flBench) plots() error {
	setup := fmt.Sprintf("%d clients, %g%% sampled per round", b.f.clients, 100*b.f.fraction)
	var levels []fedsim.Level
	if c := b.runs[expCentralized]; c != nil {
		levels = append(levels, fedsim.Level{Name: fmt.Sprintf("%s: %.1f%%", c.Label, 100*c.Best.Accuracy), Value: c.Best.Accuracy})
	}
	if s := b.series(expIID, expDirichlet); len(s) > 0 || len(levels) > 0 {
		if err := b.writeFile("accuracy-partition.png", func(w io.Writer) error {
			return fedsim.PlotAccuracy(w, "FedAvg, IID vs non-IID, against the centralised baseline ("+setup+")", s, levels)
		}); err != nil {
			return err
		}
	}
	attack := []string{expIID, expAttackFedAvg}
	for _, a := range b.f.robustList() {
		attack = append(attack, "attack-"+a)
	}
	if s := b.series(attack[1:]...); len(s) > 0 {
		s = append(b.series(expIID), s...)
		if len(s) > 0 && b.runs[expIID] != nil {
			s[0].Name = "FedAvg, no attack" + strings.TrimPrefix(s[0].Name, b.runs[expIID].Label)
		}
		title := fmt.Sprintf("Attack: %g%% of the clients send %s×%g updates (IID, %s)", 100*b.f.attackFrac, b.f.attack, b.f.attackScale, setup)
		if err := b.writeFile("accuracy-attack.png", func(w io.Writer) error {
			return fedsim.PlotAccuracy(w, title, s, []fedsim.Level{{Name: "80% target", Value: targetRobustAcc}})
		}); err != nil {
			return err
		}
	}
	if s := b.series(expDPEps8, expDPEps1); len(s) > 0 {
		s = append(b.series(expIID), s...)
		if len(s) > 0 && b.runs[expIID] != nil {
			s[0].Name = "FedAvg, no DP" + strings.TrimPrefix(s[0].Name, b.runs[expIID].Label)
		}
		title := fmt.Sprintf("Differential privacy: DP-FedAvg, clip %g, δ = %g (IID, %s)", b.f.dpClip, b.f.delta, setup)
		if err := b.writeFile("accuracy-dp.png", func(w io.Writer) error { return fedsim.PlotAccuracy(w, title, s, nil) }); err != nil {
			return err
		}
	}
	return nil
}

func flBool(v bool) *bool { return &v }

func flPct(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }

// targets evaluates the headline figures that the runs allow.
func (b *flBench) targets() []flTarget {
	var out []flTarget
	c, d := b.runs[expCentralized], b.runs[expDirichlet]
	if c != nil && d != nil {
		gap := 100 * (c.Best.Accuracy - d.Final.Accuracy)
		out = append(out, flTarget{
			Name:   "FedAvg vs centralised on Dirichlet(" + strconv.FormatFloat(b.f.alpha, 'g', -1, 64) + ")",
			Target: fmt.Sprintf("FedAvg at round %d within %g accuracy points of centralised", d.Final.Round, targetGapPoints),
			Measured: fmt.Sprintf("FedAvg %s at round %d vs centralised %s (best of %d epochs; final %s): gap %.2f points",
				flPct(d.Final.Accuracy), d.Final.Round, flPct(c.Best.Accuracy), b.f.centralEpochs, flPct(c.Final.Accuracy), gap),
			Met: flBool(gap <= targetGapPoints),
		})
	}
	if fa := b.runs[expAttackFedAvg]; fa != nil {
		var parts, keep []string
		for _, a := range b.f.robustList() {
			if r := b.runs["attack-"+a]; r != nil {
				parts = append(parts, fmt.Sprintf("%s %s", a, flPct(r.Final.Accuracy)))
				if r.Final.Accuracy >= targetRobustAcc {
					keep = append(keep, a)
				}
			}
		}
		measured := fmt.Sprintf("FedAvg %s under attack", flPct(fa.Final.Accuracy))
		if iid := b.runs[expIID]; iid != nil {
			measured += fmt.Sprintf(" (%s without)", flPct(iid.Final.Accuracy))
		}
		if len(parts) > 0 {
			measured += "; " + strings.Join(parts, ", ")
			if len(keep) > 0 {
				measured += "; ≥ 80%: " + strings.Join(keep, ", ")
			} else {
				measured += "; none keeps 80%"
			}
		}
		t := flTarget{Name: "robust aggregation under attack", Measured: measured,
			Target: fmt.Sprintf("a robust aggregator keeps ≥ %.0f%% where FedAvg degrades (%g%% %s×%g attackers)", 100*targetRobustAcc, 100*b.f.attackFrac, b.f.attack, b.f.attackScale)}
		if len(parts) > 0 {
			t.Met = flBool(len(keep) > 0 && fa.Final.Accuracy < targetRobustAcc)
		}
		out = append(out, t)
	}
	var dp []string
	for _, n := range []string{expDPEps8, expDPEps1} {
		if r := b.runs[n]; r != nil {
			dp = append(dp, fmt.Sprintf("ε = %.2f: %s (z = %.3f)", r.Final.Epsilon, flPct(r.Final.Accuracy), r.Noise))
		}
	}
	if len(dp) > 0 {
		m := strings.Join(dp, "; ")
		if iid := b.runs[expIID]; iid != nil {
			m += fmt.Sprintf("; no DP: %s", flPct(iid.Final.Accuracy))
		}
		out = append(out, flTarget{Name: "differential privacy", Target: fmt.Sprintf("accuracy at ε ≈ 8 and ε ≈ 1 (δ = %g), reported", b.f.delta), Measured: m})
	}
	if s := b.secagg; s != nil {
		out = append(out, flTarget{Name: "secure aggregation cost",
			Target: fmt.Sprintf("cost per client and at the coordinator, %d clients × %d parameters, %d dropouts, reported", s.Clients, s.Params, s.Dropped),
			Measured: fmt.Sprintf("client %s mean (%s max), %s up and %s down (plain update %s); coordinator %s, %s in",
				flMs(s.MeanClientTime), flMs(s.MaxClientTime), flBytes(int64(s.MeanBytesUp)),
				flBytes(int64(s.MeanBytesDown)), flBytes(int64(s.PlainBytes)), flMs(s.ServerTime), flBytes(s.ServerBytesIn))})
	}
	if a := b.agg; a != nil && len(a.Timings) > 0 {
		t := a.Timings[len(a.Timings)-1]
		for _, x := range a.Timings {
			if x.Updates > t.Updates {
				t = x
			}
		}
		out = append(out, flTarget{Name: "aggregation throughput",
			Target:   fmt.Sprintf("FedAvg of %d updates × %d parameters ≤ %v on one core", t.Updates, a.Params, targetAggregation),
			Measured: fmt.Sprintf("median %s, fastest %s (GOMAXPROCS %d, %d repeats)", flMs(t.Median), flMs(t.Min), a.GOMAXPROCS, len(t.Times)),
			Met:      flBool(t.Median <= targetAggregation && a.GOMAXPROCS == 1)})
	}
	return out
}

// summary writes summary.md and summary.json.
func (b *flBench) summary() error {
	targets := b.targets()
	elapsed := time.Since(b.start)
	var runs []*flRun
	for _, n := range b.order {
		runs = append(runs, b.runs[n])
	}
	doc := struct {
		Generated   string                 `json:"generated"`
		Machine     string                 `json:"machine"`
		Dataset     string                 `json:"dataset,omitempty"`
		Settings    map[string]any         `json:"settings"`
		Seconds     float64                `json:"seconds"`
		Targets     []flTarget             `json:"targets"`
		Runs        []*flRun               `json:"runs,omitempty"`
		SecAgg      *fedsim.SecAggResult   `json:"secagg,omitempty"`
		Aggregation *fedsim.AggBenchResult `json:"aggregation,omitempty"`
	}{
		Generated: time.Now().UTC().Format(time.RFC3339), Machine: flMachine(), Dataset: b.dataset,
		Settings: b.settings(), Seconds: math.Round(elapsed.Seconds()*10) / 10, Targets: targets, Runs: runs,
		SecAgg: b.secagg, Aggregation: b.agg,
	}
	var md bytes.Buffer
	b.markdown(&md, targets, runs, elapsed)
	for _, r := range runs {
		r.Final, r.Best = flSanitize(r.Final), flSanitize(r.Best)
	}
	js, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("summary.json: %w", err)
	}
	b.files = append(b.files, "summary.md", "summary.json")
	if err := os.WriteFile(filepath.Join(b.f.out, "summary.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.f.out, "summary.md"), md.Bytes(), 0o644)
}

// flSanitize replaces the values encoding/json cannot write (an
// infinite ε of clipping without noise, a NaN or infinite loss) by -1.
func flSanitize(p fedsim.Point) fedsim.Point {
	for _, v := range []*float64{&p.Accuracy, &p.Loss, &p.Epsilon} {
		if math.IsNaN(*v) || math.IsInf(*v, 0) {
			*v = -1
		}
	}
	return p
}

func (b *flBench) settings() map[string]any {
	f := b.f
	return map[string]any{
		"experiments": b.exps, "rounds": f.rounds, "clients": f.clients, "fraction": f.fraction, "hidden": f.hidden,
		"seed": f.seed, "lr": f.lr, "momentum": f.momentum, "weight_decay": f.weightDecay, "batch_size": f.batchSize,
		"local_epochs": f.localEpochs, "prox_mu": f.proxMu, "alpha": f.alpha, "eval_every": f.evalEvery,
		"central_epochs": f.centralEpochs, "attack": f.attack, "attack_fraction": f.attackFrac, "attack_scale": f.attackScale,
		"robust": b.f.robustList(), "trim_fraction": f.trimFraction, "byzantine": f.byzantine, "dp_clip": f.dpClip, "delta": f.delta,
		"secagg_clients": f.secClients, "secagg_params": f.secParams, "secagg_dropout": f.secDropout,
		"agg_updates": f.aggUpdates, "agg_params": f.aggParams, "agg_repeats": f.aggRepeats, "agg_gomaxprocs": f.aggProcs,
		"train_limit": f.trainLimit, "test_limit": f.testLimit,
	}
}

func flMachine() string {
	return fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
}

// markdown renders summary.md.
func (b *flBench) markdown(w io.Writer, targets []flTarget, runs []*flRun, elapsed time.Duration) {
	f := b.f
	fmt.Fprintf(w, "# Federated learning benchmarks\n\n")
	fmt.Fprintf(w, "Written by `petrel fl bench` (simulations/fedsim driving the real `federated` and `federated/secagg` code, no sockets) on %s, %s; the run took %s. ",
		time.Now().UTC().Format("2006-01-02"), flMachine(), elapsed.Round(time.Second))
	cmdline := fmt.Sprintf("petrel fl bench --out %s --experiments %s", f.out, strings.Join(b.exps, ","))
	if nd := b.nonDefaultFlags(); nd != "" {
		cmdline += " " + nd
	}
	fmt.Fprintf(w, "Regenerate with `%s`.\n\n", cmdline)

	fmt.Fprintf(w, "## Headline figures\n\n| figure | target | measured | met |\n|---|---|---|---|\n")
	for _, t := range targets {
		met := "reported"
		if t.Met != nil {
			met = map[bool]string{true: "**yes**", false: "**no**"}[*t.Met]
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Name, t.Target, t.Measured, met)
	}
	fmt.Fprintln(w)

	if len(runs) > 0 {
		fmt.Fprintf(w, "## Setup\n\n")
		if b.dataset != "" {
			fmt.Fprintf(w, "- Data: %s.\n", b.dataset)
		}
		fmt.Fprintf(w, "- Model: %s, initialised from seed %d; the same initial weights for every run.\n", b.model, f.seed)
		fmt.Fprintf(w, "- Federation: %d clients (stores), %g%% of them sampled per round without replacement, %d rounds; test accuracy on the whole test set every %d round(s).\n",
			f.clients, 100*f.fraction, f.rounds, f.evalEvery)
		fmt.Fprintf(w, "- Local training: SGD, learning rate %g, momentum %g (reset every round), batch %d, %d local epochs, weight decay %g, FedProx µ %g. Updates are aggregated in client-id order, so runs are deterministic per seed.\n",
			f.lr, f.momentum, f.batchSize, f.localEpochs, f.weightDecay, f.proxMu)
		fmt.Fprintf(w, "- Centralised baseline: the same model and SGD settings on all the training data for %d epochs, evaluated after every epoch; the comparison uses its best epoch.\n", f.centralEpochs)
		fmt.Fprintf(w, "- Attack: %g%% of the clients (fixed per seed) are malicious and, whenever sampled, send %s×%g of their honest update (IID partition). Trimmed mean trims %g from each side; Krum tolerates f = %s.\n",
			100*f.attackFrac, f.attack, f.attackScale, f.trimFraction, flByz(f.byzantine))
		fmt.Fprintf(w, "- Differential privacy (DP-FedAvg, IID partition): the server clips every update to L2 norm %g, adds Gaussian noise of std z·C to the sum and divides by the number sampled; z is the smallest that keeps %d rounds at q = %g within the target ε at δ = %g (RDP accountant of the sampled Gaussian mechanism, which assumes Poisson sampling; the simulation samples a fixed-size cohort). The noise comes from a seeded generator for reproducibility.\n\n",
			f.dpClip, f.rounds, f.fraction, f.delta)

		fmt.Fprintf(w, "## Runs\n\n| run | partition | aggregator | attack / privacy | final accuracy | best accuracy | final loss | ε | updates (malicious) | dropped / failed rounds | time | data |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range runs {
			unit := "round"
			if r.Name == expCentralized {
				unit = "epoch"
			}
			eps := "–"
			if r.Privacy != "" {
				eps = fmt.Sprintf("%.2f", r.Final.Epsilon)
			}
			ap := strings.Join(flNonEmpty(r.Attack, r.Privacy), "; ")
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s (%s %d) | %s (%s %d) | %.4f | %s | %s | %s | %.0f s | [%s](%s) |\n",
				r.Name, flDash(r.Partition), flDash(r.Aggregator), flDash(ap), flPct(r.Final.Accuracy), unit, r.Final.Round,
				flPct(r.Best.Accuracy), unit, r.Best.Round, r.Final.Loss, eps, flUpdates(r), flFailed(r), r.Seconds, r.CSV, r.CSV)
		}
		fmt.Fprintln(w)
		for _, r := range runs {
			if r.LastError != "" {
				fmt.Fprintf(w, "- %s, last client or round failure: %s\n", r.Name, r.LastError)
			}
		}
	}

	if s := b.secagg; s != nil {
		fmt.Fprintf(w, "## Secure aggregation\n\n")
		fmt.Fprintf(w, "One aggregation with `federated/secagg` (Bonawitz et al. with dropout recovery, complete graph, threshold t = %d): %d clients, %d parameters each (%s as float32), %d clients drop after sharing their keys and before sending their masked input, so the coordinator must rebuild their mask keys and strip their pairwise masks. Every message goes through its binary encoding; times are compute only (one core, sequential), no network.\n\n",
			s.Threshold, s.Clients, s.Params, flBytes(int64(s.PlainBytes)), s.Dropped)
		fmt.Fprintf(w, "| party | compute | sent | received |\n|---|---|---|---|\n")
		fmt.Fprintf(w, "| client (mean of the %d that finished) | %s (max %s) | %s | %s |\n", s.Clients-s.Dropped,
			flMs(s.MeanClientTime), flMs(s.MaxClientTime), flBytes(int64(s.MeanBytesUp)), flBytes(int64(s.MeanBytesDown)))
		fmt.Fprintf(w, "| coordinator | %s | %s | %s |\n\n", flMs(s.ServerTime), flBytes(s.ServerBytesOut), flBytes(s.ServerBytesIn))
		fmt.Fprintf(w, "Coordinator time by round: advertise keys %s, share keys %s, masked input collection %s, unmasking and reconstruction %s. Largest error of the decoded sum: %.3g. Per-client figures: [secagg.csv](secagg.csv).\n\n",
			flMs(s.ServerRounds[0]), flMs(s.ServerRounds[1]), flMs(s.ServerRounds[2]), flMs(s.ServerRounds[3]), s.MaxError)
	}
	if a := b.agg; a != nil {
		fmt.Fprintf(w, "## Aggregation throughput\n\n%s of updates of %d parameters with GOMAXPROCS=%d, %d timed calls per size after a GC, on random data:\n\n| updates | median | fastest |\n|---|---|---|\n",
			a.Aggregator, a.Params, a.GOMAXPROCS, len(a.Timings[0].Times))
		for _, t := range a.Timings {
			fmt.Fprintf(w, "| %d | %s | %s |\n", t.Updates, flMs(t.Median), flMs(t.Min))
		}
		fmt.Fprintf(w, "\n![aggregation time](aggregate.png)\n\nEvery timing: [aggregate.csv](aggregate.csv).\n\n")
	}
	var plots []string
	for _, p := range []struct{ file, alt string }{
		{"accuracy-partition.png", "IID vs Dirichlet vs centralised"},
		{"accuracy-attack.png", "attack: FedAvg vs robust aggregators"},
		{"accuracy-dp.png", "differential privacy"},
	} {
		if slices.Contains(b.files, p.file) {
			plots = append(plots, fmt.Sprintf("![%s](%s)", p.alt, p.file))
		}
	}
	if len(plots) > 0 {
		fmt.Fprintf(w, "## Plots\n\n%s\n", strings.Join(plots, "\n\n"))
	}
}

// nonDefaultFlags lists the flags given on the command line (but --out
// and --experiments), for the command line in summary.md.
func (b *flBench) nonDefaultFlags() string {
	var out []string
	if b.fs != nil {
		b.fs.Visit(func(fl *flag.Flag) {
			if fl.Name != "out" && fl.Name != "experiments" {
				out = append(out, fmt.Sprintf("--%s %s", fl.Name, fl.Value.String()))
			}
		})
	}
	return strings.Join(out, " ")
}

func flByz(f int) string {
	if f == 0 {
		return "the most the round allows, ⌊(n−3)/2⌋"
	}
	return strconv.Itoa(f)
}

func flNonEmpty(s ...string) []string {
	var out []string
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func flDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func flUpdates(r *flRun) string {
	if r.res == nil {
		return "–"
	}
	if r.Attack != "" {
		return fmt.Sprintf("%d (%d)", r.Updates, r.Malicious)
	}
	return strconv.Itoa(r.Updates)
}

func flFailed(r *flRun) string {
	if r.res == nil {
		return "–"
	}
	return fmt.Sprintf("%d / %d", r.Dropped, r.Failed)
}
