package rolloutsim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/petrel-mesh/petrel/federated"
	"github.com/petrel-mesh/petrel/simulations/fedsim"
)

// Defaults of a ChurnConfig.
const (
	// DefaultMidRound is the share of the churn that happens mid-round
	// (a client drops out after starting) rather than at the start (a
	// client is offline).
	DefaultMidRound = 0.25
	// DefaultChurnRounds is the number of rounds of a ChurnConfig whose
	// Base leaves Rounds zero.
	DefaultChurnRounds = 30
)

// DefaultChurnLevels are the churn levels of a ChurnConfig with none.
func DefaultChurnLevels() []float64 { return []float64{0, 0.2, 0.5} }

// ChurnConfig configures RunChurn: the same federated run (Base) repeated
// at several churn levels.
type ChurnConfig struct {
	// Base is the federated run; its Churn is set per level, and its
	// Train and Test come from the fields below when nil. A zero Rounds
	// means DefaultChurnRounds and a zero Partition a Dirichlet label skew
	// with fedsim.DefaultAlpha (stores see different goods, which is what
	// makes missing clients matter); the rest takes fedsim's defaults.
	Base fedsim.Config
	// DataDir holds Fashion-MNIST, read when Base.Train or Base.Test is
	// nil; empty means federated.FashionMNISTDir.
	DataDir string
	// TrainSamples and TestSamples, when positive, keep a seeded random
	// subset of that many samples of each set (for quick runs).
	TrainSamples, TestSamples int
	// Levels are the churn levels: the probability, in [0, 1], that a
	// sampled client sends nothing in a round.
	Levels []float64
	// MidRound is the share, in [0, 1], of each level's churn that is a
	// mid-round dropout rather than a client offline at the start of the
	// round; zero means DefaultMidRound and a negative value none.
	MidRound float64
	// CentralEpochs is how many epochs the oracle trains: the same model
	// and SGD settings on all the training data in one place
	// (fedsim.Centralized), the best any federated run on this data can
	// hope for. Zero means fedsim.DefaultCentralEpochs, negative skips it.
	CentralEpochs int
	// Progress, when set, is called after every evaluation with the level
	// being run.
	Progress func(level float64, p fedsim.Point) `json:"-"`
}

// ChurnLevel is one churn level's run.
type ChurnLevel struct {
	// Level is the probability that a sampled client sends nothing;
	// Churn is how it was split between offline and mid-round dropout.
	Level float64
	Churn fedsim.Churn
	// Result is fedsim's report: accuracy per round (Points), and the
	// updates and dropped clients counted.
	Result *fedsim.Result
}

// ChurnResult is what RunChurn reports, one entry per level in the order
// of ChurnConfig.Levels.
type ChurnResult struct {
	Levels []ChurnLevel
	// Central is the oracle (see ChurnConfig.CentralEpochs): accuracy
	// per epoch of centralised training, nil when skipped.
	Central *fedsim.Result
	// Train and Test are the numbers of samples used.
	Train, Test int
}

// churnFor splits a churn level p into fedsim's two probabilities so that
// a sampled client is lost with probability p, a share mid of it mid-round:
// offline u = p(1-mid), dropout d with u + (1-u)d = p.
func churnFor(p, mid float64) fedsim.Churn {
	u := p * (1 - mid)
	if u >= 1 {
		return fedsim.Churn{Unavailable: 1}
	}
	return fedsim.Churn{Unavailable: u, Dropout: min(1, (p-u)/(1-u))}
}

func (c ChurnConfig) withDefaults() ChurnConfig {
	if len(c.Levels) == 0 {
		c.Levels = DefaultChurnLevels()
	}
	switch {
	case c.MidRound == 0:
		c.MidRound = DefaultMidRound
	case c.MidRound < 0:
		c.MidRound = 0
	}
	if c.Base.Rounds == 0 {
		c.Base.Rounds = DefaultChurnRounds
	}
	if c.Base.Partition.Kind == "" {
		c.Base.Partition = fedsim.Partition{Kind: fedsim.PartitionDirichlet, Alpha: fedsim.DefaultAlpha}
	}
	return c
}

// validate checks what fedsim does not: the levels, the split and the
// subset sizes. fedsim.Config.Validate checks the rest once data is
// loaded.
func (c ChurnConfig) validate() error {
	if len(c.Levels) > 100 {
		return invalid("%d churn levels, at most 100", len(c.Levels))
	}
	for _, p := range c.Levels {
		if !(p >= 0 && p <= 1) {
			return invalid("churn level %v, want [0, 1]", p)
		}
	}
	if !(c.MidRound >= 0 && c.MidRound <= 1) {
		return invalid("MidRound is %v, want [0, 1] (or negative for none)", c.MidRound)
	}
	if c.TrainSamples < 0 || c.TestSamples < 0 {
		return invalid("TrainSamples %d and TestSamples %d must not be negative", c.TrainSamples, c.TestSamples)
	}
	if c.Base.Churn.Enabled() {
		return invalid("Base.Churn is set; RunChurn sets it per level")
	}
	return nil
}

// subset keeps n samples of d chosen with rng, in their original order;
// n ≤ 0 or n ≥ d.N keeps everything.
func subset(d *federated.Dataset, n int, rng *rand.Rand) *federated.Dataset {
	if n <= 0 || n >= d.N {
		return d
	}
	idx := rng.Perm(d.N)[:n]
	slices.Sort(idx)
	return d.Subset(idx)
}

// RunChurn runs the federated simulation of fedsim (real local training
// and aggregation of package federated, on Fashion-MNIST unless Base
// brings data) once per churn level, with everything else, the seed
// included, the same, and returns the accuracy per round of each.
func RunChurn(ctx context.Context, cfg ChurnConfig) (*ChurnResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	base := cfg.Base
	if base.Train == nil || base.Test == nil {
		train, test, err := federated.LoadFashionMNIST(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("rolloutsim: %w", err)
		}
		if base.Train == nil {
			base.Train = train
		}
		if base.Test == nil {
			base.Test = test
		}
	}
	rng := rand.New(rand.NewPCG(base.Seed, 0x63687572)) // "chur"
	base.Train = subset(base.Train, cfg.TrainSamples, rng)
	base.Test = subset(base.Test, cfg.TestSamples, rng)
	if err := base.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	res := &ChurnResult{Train: base.Train.N, Test: base.Test.N}
	for _, p := range cfg.Levels {
		run := base
		run.Churn = churnFor(p, cfg.MidRound)
		if cfg.Progress != nil {
			run.Progress = func(pt fedsim.Point) { cfg.Progress(p, pt) }
		}
		r, err := fedsim.Run(ctx, run)
		if err != nil {
			return nil, fmt.Errorf("rolloutsim: churn %.0f%%: %w", 100*p, err)
		}
		res.Levels = append(res.Levels, ChurnLevel{Level: p, Churn: run.Churn, Result: r})
	}
	if cfg.CentralEpochs >= 0 {
		c, err := fedsim.Centralized(ctx, fedsim.CentralConfig{
			Train: base.Train, Test: base.Test, Model: base.Model, SGD: base.SGD,
			Epochs: cfg.CentralEpochs, Workers: base.Workers, Seed: base.Seed,
		})
		if err != nil {
			return nil, fmt.Errorf("rolloutsim: centralised oracle: %w", err)
		}
		res.Central = c
	}
	return res, nil
}

// lostShare returns the share of sampled clients that sent nothing in a
// level's run.
func (l ChurnLevel) lostShare() float64 {
	r := l.Result
	total := r.Updates + r.Dropped
	if total == 0 {
		return math.NaN()
	}
	return float64(r.Dropped) / float64(total)
}
