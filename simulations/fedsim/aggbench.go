package fedsim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"github.com/petrel-mesh/petrel/federated"
)

// AggBenchConfig configures AggregateThroughput. Zero fields take the
// defaults in brackets.
type AggBenchConfig struct {
	// Aggregator to time [fedavg], with AggOptions.
	Aggregator string
	AggOptions federated.AggOptions
	// Counts lists the numbers of updates to time, each a prefix of the
	// same pool of updates [{100}].
	Counts []int
	// Params is the length of every update [1,000,000].
	Params int
	// Repeats is the number of timed calls per count [5].
	Repeats int
	// Seed seeds the random updates.
	Seed uint64
}

// AggTiming is the time of one aggregation size.
type AggTiming struct {
	Updates int             `json:"updates"`
	Times   []time.Duration `json:"times_ns"` // every repeat, in order
	Min     time.Duration   `json:"min_ns"`
	Median  time.Duration   `json:"median_ns"`
}

// AggBenchResult is AggregateThroughput's report.
type AggBenchResult struct {
	Aggregator string      `json:"aggregator"`
	Params     int         `json:"params"`
	GOMAXPROCS int         `json:"gomaxprocs"` // during the measurement
	Timings    []AggTiming `json:"timings"`    // in Counts order
}

// maxAggBenchValues bounds Params·max(Counts): 2^30 float32 values (4 GiB).
const maxAggBenchValues = 1 << 30

// withDefaults returns c with its zero fields set to their defaults.
func (c AggBenchConfig) withDefaults() AggBenchConfig {
	if c.Aggregator == "" {
		c.Aggregator = DefaultAggregator
	}
	if len(c.Counts) == 0 {
		c.Counts = []int{100}
	}
	if c.Params == 0 {
		c.Params = 1_000_000
	}
	if c.Repeats == 0 {
		c.Repeats = 5
	}
	return c
}

// Validate checks c after its defaults are applied. Errors wrap
// ErrInvalidConfig.
func (c AggBenchConfig) Validate() error {
	c = c.withDefaults()
	if c.Params < 1 || c.Repeats < 1 || c.Repeats > 1000 {
		return invalid("Params is %d and Repeats %d, want at least 1 and 1..1000", c.Params, c.Repeats)
	}
	for _, n := range c.Counts {
		if n < 1 {
			return invalid("update count %d, want at least 1", n)
		}
	}
	if slices.Max(c.Counts) > maxAggBenchValues/c.Params {
		return invalid("%d updates of %d values exceed the bound of %d values", slices.Max(c.Counts), c.Params, maxAggBenchValues)
	}
	if _, err := federated.NewAggregator(c.Aggregator, c.AggOptions); err != nil {
		return invalid("%v", err)
	}
	return nil
}

// AggregateThroughput times the named aggregator on random updates
// (normal deltas, 100 to 1000 samples each) around a random global
// vector. It allocates max(Counts)·Params float32 values once, and runs a
// garbage collection before every timed call so that the time is the
// aggregator's. It uses as many cores as the aggregator does under the
// current GOMAXPROCS, which it reports: to time one core, call it with
// GOMAXPROCS set to 1 (the caller owns that process-wide setting).
func AggregateThroughput(ctx context.Context, cfg AggBenchConfig) (*AggBenchResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	maxCount := slices.Max(cfg.Counts)
	agg, err := federated.NewAggregator(cfg.Aggregator, cfg.AggOptions)
	if err != nil {
		return nil, invalid("%v", err)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xa66))
	global := make([]float32, cfg.Params)
	for i := range global {
		global[i] = float32(rng.NormFloat64())
	}
	updates := make([]federated.Update, maxCount)
	for u := range updates {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d := make([]float32, cfg.Params)
		for i := range d {
			d[i] = float32(0.01 * rng.NormFloat64())
		}
		updates[u] = federated.Update{Client: fmt.Sprintf("client-%04d", u), Delta: d, Samples: 100 + rng.IntN(901)}
	}
	res := &AggBenchResult{Aggregator: agg.Name(), Params: cfg.Params, GOMAXPROCS: runtime.GOMAXPROCS(0)}
	for _, n := range cfg.Counts {
		tm := AggTiming{Updates: n}
		for range cfg.Repeats {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			runtime.GC()
			start := time.Now()
			_, err := agg.Aggregate(global, updates[:n])
			d := time.Since(start)
			if err != nil {
				return nil, fmt.Errorf("fedsim: aggregate %d updates: %w", n, err)
			}
			tm.Times = append(tm.Times, d)
		}
		sorted := slices.Sorted(slices.Values(tm.Times))
		tm.Min, tm.Median = sorted[0], sorted[len(sorted)/2]
		res.Timings = append(res.Timings, tm)
	}
	return res, nil
}
