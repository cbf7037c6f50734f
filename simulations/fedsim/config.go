package fedsim

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"

	"github.com/petrel-mesh/petrel/federated"
)

// Defaults that a Config's zero fields stand for.
const (
	DefaultClients       = 100  // simulated stores
	DefaultFraction      = 0.1  // share of the clients sampled each round
	DefaultRounds        = 100  // federated rounds
	DefaultHidden        = 64   // hidden width of the default MLP
	DefaultAlpha         = 0.5  // Dirichlet concentration of the non-IID partitions
	DefaultKClasses      = 2    // classes per client of the "kclasses" partition
	DefaultAttackScale   = 10   // k of the attacks' delta → ∓k·delta
	DefaultDelta         = 1e-5 // δ of the (ε, δ) privacy guarantee
	DefaultEvalEvery     = 1    // evaluate after every round
	DefaultCentralEpochs = 10   // epochs of the centralised baseline
	DefaultAggregator    = "fedavg"
)

// Partition kinds: how the training set is split among the clients (see
// the federated.Partition* functions).
const (
	PartitionIID       = "iid"       // equal IID shares
	PartitionDirichlet = "dirichlet" // label skew, Dirichlet(Alpha) per class
	PartitionQuantity  = "quantity"  // size skew, shares ~ Dirichlet(Alpha)
	PartitionKClasses  = "kclasses"  // at most K classes per client
)

// PartitionKinds returns the partition kinds Config accepts.
func PartitionKinds() []string {
	return []string{PartitionIID, PartitionDirichlet, PartitionQuantity, PartitionKClasses}
}

// Attack kinds: what a malicious client sends instead of its honest delta.
const (
	AttackNone     = ""          // no attack
	AttackSignFlip = "sign-flip" // delta → −k·delta (gradient ascent, amplified)
	AttackScale    = "scale"     // delta → k·delta (model replacement)
)

// AttackKinds returns the attack kinds Config accepts (AttackNone aside).
func AttackKinds() []string { return []string{AttackSignFlip, AttackScale} }

// ErrInvalidConfig wraps every configuration error of Run, Centralized,
// SecAggCost and AggregateThroughput.
var ErrInvalidConfig = errors.New("fedsim: invalid config")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
}

// Partition chooses how the training set is dealt to the clients.
type Partition struct {
	// Kind is one of PartitionKinds; empty means PartitionIID.
	Kind string
	// Alpha is the Dirichlet concentration of "dirichlet" and "quantity";
	// zero means DefaultAlpha.
	Alpha float64
	// K is the number of classes per client of "kclasses"; zero means
	// DefaultKClasses.
	K int
}

// String formats the partition as "iid", "dirichlet(0.5)" or
// "kclasses(2)".
func (p Partition) String() string {
	switch p.Kind {
	case PartitionDirichlet, PartitionQuantity:
		return fmt.Sprintf("%s(%g)", p.Kind, p.Alpha)
	case PartitionKClasses:
		return fmt.Sprintf("%s(%d)", p.Kind, p.K)
	}
	return p.Kind
}

// Attack makes a fixed share of the clients malicious: whenever one is
// sampled it trains honestly and then sends −k·delta (AttackSignFlip) or
// k·delta (AttackScale) instead of its delta, with its true sample count.
type Attack struct {
	// Kind is AttackNone (no attack) or one of AttackKinds.
	Kind string
	// Fraction of the clients that are malicious, in (0, 1); they are
	// drawn once per run from the seed. Rounded to the nearest client.
	Fraction float64
	// Scale is k > 0; zero means DefaultAttackScale.
	Scale float64
}

// Churn makes sampled clients miss their round, as edge clients come and
// go. The server samples its cohort without knowing who is online (step 1
// of a round, see the package documentation); then each sampled client,
// independently and in every round, is offline with probability
// Unavailable (it trains nothing and sends nothing) and, if online, drops
// out before its update arrives with probability Dropout (its update is
// lost; the simulation does not train it, which changes nothing but the
// time spent). The zero value is no churn.
type Churn struct {
	// Unavailable is the probability, in [0, 1], that a sampled client is
	// offline for the round.
	Unavailable float64
	// Dropout is the probability, in [0, 1], that an online sampled
	// client drops out mid-round.
	Dropout float64
}

// Enabled reports whether the configuration has any churn.
func (c Churn) Enabled() bool { return c.Unavailable > 0 || c.Dropout > 0 }

func (c Churn) validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"Unavailable", c.Unavailable}, {"Dropout", c.Dropout}} {
		if !(f.v >= 0 && f.v <= 1) {
			return invalid("churn %s is %v, want [0, 1]", f.name, f.v)
		}
	}
	return nil
}

// Privacy turns on user-level differential privacy (DP-FedAvg, McMahan et
// al. 2018) when Clip > 0: the server clips every update to L2 norm Clip,
// adds Gaussian noise of standard deviation z·Clip to their sum, divides
// by the number of clients sampled (not the number that answered) and
// adds the result to the global model (times AggOptions.ServerLR when
// set). The aggregator must then be fedavg. An Accountant with q = the
// share of the clients sampled per round tracks ε at Delta; the sampling
// here is without replacement of a fixed-size cohort, which the
// accountant's Poisson analysis approximates.
//
// The simulation draws the noise from a seeded generator so that runs are
// reproducible; a deployment must not (see federated.AddNoise).
type Privacy struct {
	// Clip is C, the L2 bound of every update; 0 turns privacy off.
	Clip float64
	// NoiseMultiplier is z. When zero and TargetEpsilon is set, z is
	// the smallest that keeps the planned rounds within TargetEpsilon
	// (federated.NoiseForEpsilon). Zero with no target clips without
	// noise (ε = +Inf).
	NoiseMultiplier float64
	// TargetEpsilon is the ε budget for all the planned rounds.
	TargetEpsilon float64
	// Delta is δ; zero means DefaultDelta.
	Delta float64
}

// Enabled reports whether the configuration turns privacy on.
func (p Privacy) Enabled() bool { return p.Clip > 0 }

// Config configures one federated simulation (Run). Zero fields take the
// Default* values; Train and Test are required.
type Config struct {
	// Train is split among the clients; Test evaluates the global model.
	Train, Test *federated.Dataset
	// Model is the trained model; a zero Spec means an MLP with one
	// hidden layer of DefaultHidden ReLU units: {Dim, 64, Classes}.
	Model federated.Spec
	// Clients is the number of simulated clients (stores).
	Clients int
	// Fraction of the clients sampled each round, in (0, 1]; a round
	// trains max(1, round(Fraction·Clients)) clients.
	Fraction float64
	// Rounds is the number of federated rounds.
	Rounds int
	// Partition splits Train among the clients.
	Partition Partition
	// SGD is the clients' local training. Zero LR, BatchSize or Epochs
	// take federated.DefaultSGDConfig's values; Momentum, WeightDecay and
	// ProxMu are used as given. Seed is ignored: each client's training
	// in each round gets its own seed derived from Config.Seed. ProxMu >
	// 0 makes the clients train FedProx-style, anchored at the global
	// model of the round.
	SGD federated.SGDConfig
	// Aggregator names the server rule (federated.AggregatorNames); empty
	// means DefaultAggregator.
	Aggregator string
	// AggOptions tunes the aggregator.
	AggOptions federated.AggOptions
	// Attack makes some clients malicious.
	Attack Attack
	// Privacy turns on differential privacy.
	Privacy Privacy
	// Churn makes sampled clients offline or drop out mid-round.
	Churn Churn
	// EvalEvery evaluates the global model on Test every so many rounds;
	// the last round is always evaluated.
	EvalEvery int
	// Workers is the number of clients trained at the same time; zero
	// means GOMAXPROCS. Results do not depend on it.
	Workers int
	// Seed seeds everything: the initial model, the partition, the
	// malicious clients, the sampling, the local shuffles and the noise.
	Seed uint64
	// Progress, when set, is called after every evaluation, from the
	// goroutine that called Run.
	Progress func(Point) `json:"-"`
}

// defaultSpec is the MLP a zero Spec stands for.
func defaultSpec(d *federated.Dataset) federated.Spec {
	return federated.Spec{Family: "mlp", Sizes: []int{d.Dim, DefaultHidden, d.Classes}}
}

// fillSGD applies the documented defaults to a local training config.
func fillSGD(c federated.SGDConfig) federated.SGDConfig {
	def := federated.DefaultSGDConfig()
	if c.LR == 0 {
		c.LR = def.LR
	}
	if c.BatchSize == 0 {
		c.BatchSize = def.BatchSize
	}
	if c.Epochs == 0 {
		c.Epochs = def.Epochs
	}
	return c
}

func workers(n int) int {
	if n <= 0 {
		return runtime.GOMAXPROCS(0)
	}
	return n
}

// withDefaults returns c with its zero fields set to their defaults. It
// does not validate.
func (c Config) withDefaults() Config {
	if c.Model.Family == "" && len(c.Model.Sizes) == 0 && c.Train != nil {
		c.Model = defaultSpec(c.Train)
	}
	if c.Clients == 0 {
		c.Clients = DefaultClients
	}
	if c.Fraction == 0 {
		c.Fraction = DefaultFraction
	}
	if c.Rounds == 0 {
		c.Rounds = DefaultRounds
	}
	if c.Partition.Kind == "" {
		c.Partition.Kind = PartitionIID
	}
	if c.Partition.Alpha == 0 {
		c.Partition.Alpha = DefaultAlpha
	}
	if c.Partition.K == 0 {
		c.Partition.K = DefaultKClasses
	}
	c.SGD = fillSGD(c.SGD)
	if c.Aggregator == "" {
		c.Aggregator = DefaultAggregator
	}
	if c.Attack.Kind != AttackNone && c.Attack.Scale == 0 {
		c.Attack.Scale = DefaultAttackScale
	}
	if c.Privacy.Enabled() && c.Privacy.Delta == 0 {
		c.Privacy.Delta = DefaultDelta
	}
	if c.EvalEvery == 0 {
		c.EvalEvery = DefaultEvalEvery
	}
	c.Workers = workers(c.Workers)
	return c
}

// finite reports whether v is neither NaN nor infinite.
func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// checkData validates the train and test sets and that they fit spec.
func checkData(train, test *federated.Dataset, spec federated.Spec) error {
	if train == nil || test == nil {
		return invalid("Train and Test are required")
	}
	if err := train.Validate(); err != nil {
		return invalid("Train: %v", err)
	}
	if err := test.Validate(); err != nil {
		return invalid("Test: %v", err)
	}
	if train.N == 0 || test.N == 0 {
		return invalid("Train has %d samples and Test %d, want both non-empty", train.N, test.N)
	}
	if train.Dim != test.Dim {
		return invalid("Train has %d features, Test %d", train.Dim, test.Dim)
	}
	if err := spec.Validate(); err != nil {
		return invalid("%v", err)
	}
	if spec.Sizes[0] != train.Dim {
		return invalid("model %s takes %d features, the data has %d", spec, spec.Sizes[0], train.Dim)
	}
	return nil
}

// Validate checks a Config after its defaults are applied (Run applies
// them first, so a Config with zero fields is valid if the rest is).
// Every error wraps ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	if err := checkData(c.Train, c.Test, c.Model); err != nil {
		return err
	}
	switch {
	case c.Clients < 1 || c.Clients > c.Train.N:
		return invalid("Clients is %d, want 1..%d (the training samples)", c.Clients, c.Train.N)
	case !(c.Fraction > 0 && c.Fraction <= 1):
		return invalid("Fraction is %v, want (0, 1]", c.Fraction)
	case c.Rounds < 1:
		return invalid("Rounds is %d, want at least 1", c.Rounds)
	case c.EvalEvery < 1:
		return invalid("EvalEvery is %d, want at least 1", c.EvalEvery)
	}
	if !slices.Contains(PartitionKinds(), c.Partition.Kind) {
		return invalid("partition %q, want one of %v", c.Partition.Kind, PartitionKinds())
	}
	if !(c.Partition.Alpha > 0) || math.IsInf(c.Partition.Alpha, 0) {
		return invalid("partition Alpha is %v, want a positive finite number", c.Partition.Alpha)
	}
	if c.Partition.K < 1 {
		return invalid("partition K is %d, want at least 1", c.Partition.K)
	}
	if err := c.SGD.Validate(); err != nil {
		return invalid("%v", err)
	}
	if _, err := federated.NewAggregator(c.Aggregator, c.AggOptions); err != nil {
		return invalid("%v", err)
	}
	if err := c.Attack.validate(); err != nil {
		return err
	}
	if err := c.Privacy.validate(c.Aggregator); err != nil {
		return err
	}
	return c.Churn.validate()
}

func (a Attack) validate() error {
	if a.Kind == AttackNone {
		return nil
	}
	if !slices.Contains(AttackKinds(), a.Kind) {
		return invalid("attack %q, want one of %v", a.Kind, AttackKinds())
	}
	if !(a.Fraction > 0 && a.Fraction < 1) {
		return invalid("attack Fraction is %v, want (0, 1)", a.Fraction)
	}
	if !(a.Scale > 0) || math.IsInf(a.Scale, 0) {
		return invalid("attack Scale is %v, want a positive finite number", a.Scale)
	}
	return nil
}

func (p Privacy) validate(aggregator string) error {
	if p.Clip == 0 && p.NoiseMultiplier == 0 && p.TargetEpsilon == 0 {
		return nil
	}
	switch {
	case !(p.Clip > 0) || math.IsInf(p.Clip, 0):
		return invalid("privacy Clip is %v, want a positive finite number when privacy is on", p.Clip)
	case !(p.NoiseMultiplier >= 0) || math.IsInf(p.NoiseMultiplier, 0):
		return invalid("privacy NoiseMultiplier is %v, want a finite value ≥ 0", p.NoiseMultiplier)
	case !(p.TargetEpsilon >= 0) || math.IsInf(p.TargetEpsilon, 0):
		return invalid("privacy TargetEpsilon is %v, want a finite value ≥ 0", p.TargetEpsilon)
	case p.NoiseMultiplier > 0 && p.TargetEpsilon > 0:
		return invalid("privacy: set NoiseMultiplier or TargetEpsilon, not both")
	case !(p.Delta > 0 && p.Delta < 1):
		return invalid("privacy Delta is %v, want (0, 1)", p.Delta)
	case aggregator != federated.AggFedAvg:
		return invalid("privacy needs the fedavg aggregator (DP-FedAvg), got %q", aggregator)
	}
	return nil
}
