// Package rtbench measures ONNX Runtime sessions directly (no HTTP, no
// scheduler) on the CPU and on the CUDA provider, side by side: an MLP
// and a small convolutional network at several batch sizes and
// concurrencies, reporting rows per second and per-run p50/p99.
//
// `petrel bench runtime` runs it; scripts/gpu-bench.sh runs that on a GPU
// machine. A CUDA row is measured only when the session really runs on
// CUDA: Run refuses a silent CPU fallback (RequireProvider), so a GPU
// table cannot be CPU figures by mistake.
package rtbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/models/ort/onnxtest"
)

// The models.
const (
	ModelMLP  = "mlp"  // 784 → 1024 → 1024 → 10, softmax: 1.9 M weights
	ModelConv = "conv" // 1×28×28 → conv 32 → pool → conv 64 → pool → 128 → 10
)

// Config is one sweep. Zero fields take the defaults of DefaultConfig.
type Config struct {
	Providers   []string // ort.ProviderCPU, ort.ProviderCUDA
	Models      []string // ModelMLP, ModelConv
	Batches     []int    // rows per run
	Concurrency []int    // runs in flight at once
	Duration    time.Duration
	Warmup      time.Duration
	// CPU is the options of the CPU sessions (IntraOpThreads 0: one per
	// core, as a benchmark of the runtime alone should use the machine).
	CPU ort.Options
	// GPU is the options of the CUDA sessions (DeviceID, GPUMemLimit,
	// ArenaExtendStrategy); Provider and RequireProvider are set by Run.
	GPU  ort.Options
	Seed uint64
}

// DefaultConfig is the sweep scripts/gpu-bench.sh runs.
func DefaultConfig() Config {
	return Config{
		Providers:   []string{ort.ProviderCPU, ort.ProviderCUDA},
		Models:      []string{ModelMLP, ModelConv},
		Batches:     []int{1, 8, 64, 256},
		Concurrency: []int{1, 4},
		Duration:    2 * time.Second,
		Warmup:      300 * time.Millisecond,
		Seed:        1,
	}
}

// Row is one measurement.
type Row struct {
	Model, Provider string
	Batch, Conc     int
	Runs            int64
	RowsPerSec      float64
	P50, P99        time.Duration
}

// Validate checks c (after defaults).
func (c Config) Validate() error {
	var errs []error
	for _, p := range c.Providers {
		if p != ort.ProviderCPU && p != ort.ProviderCUDA {
			errs = append(errs, fmt.Errorf("provider %q: want cpu or cuda", p))
		}
	}
	for _, m := range c.Models {
		if m != ModelMLP && m != ModelConv {
			errs = append(errs, fmt.Errorf("model %q: want mlp or conv", m))
		}
	}
	for _, b := range c.Batches {
		if b < 1 || b > 4096 {
			errs = append(errs, fmt.Errorf("batch %d: want 1-4096", b))
		}
	}
	for _, n := range c.Concurrency {
		if n < 1 || n > 256 {
			errs = append(errs, fmt.Errorf("concurrency %d: want 1-256", n))
		}
	}
	if c.Duration <= 0 || c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("duration %v, warm-up %v: want a positive duration and a warm-up of at least 0", c.Duration, c.Warmup))
	}
	if err := c.GPU.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.CPU.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.Providers) == 0 {
		c.Providers = d.Providers
	}
	if len(c.Models) == 0 {
		c.Models = d.Models
	}
	if len(c.Batches) == 0 {
		c.Batches = d.Batches
	}
	if len(c.Concurrency) == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.Duration == 0 {
		c.Duration = d.Duration
	}
	return c
}

// Run measures every (model, provider, batch, concurrency) in that order,
// calling progress (if set) after each row. ONNX Runtime must be
// initialised (ort.Init). A provider that cannot be used is an error
// naming the reason (for CUDA: why the provider did not load).
func Run(ctx context.Context, cfg Config, progress func(Row)) ([]Row, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rtbench: %w", err)
	}
	var rows []Row
	for _, name := range cfg.Models {
		b, err := Model(name, cfg.Seed)
		if err != nil {
			return nil, err
		}
		for _, prov := range cfg.Providers {
			opts := cfg.CPU
			if prov == ort.ProviderCUDA {
				opts = cfg.GPU
				opts.Provider, opts.RequireProvider = ort.ProviderCUDA, true
			} else {
				opts.Provider = ort.ProviderCPU
				if opts.IntraOpThreads == 0 {
					// 0 in ort.Options means Petrel's default of one
					// thread; the runtime alone gets every core.
					opts.IntraOpThreads = runtime.NumCPU()
				}
			}
			s, err := ort.Load(b, opts)
			if err != nil {
				return nil, fmt.Errorf("rtbench: %s on %s: %w", name, prov, err)
			}
			if s.Provider() != prov {
				s.Close()
				return nil, fmt.Errorf("rtbench: %s on %s: the session runs on %s (%s)", name, prov, s.Provider(), s.ProviderNote())
			}
			for _, batch := range cfg.Batches {
				in := Inputs(name, batch, cfg.Seed)
				for _, conc := range cfg.Concurrency {
					r, err := measure(ctx, s, in, cfg.Warmup, cfg.Duration, conc)
					if err != nil {
						s.Close()
						return nil, fmt.Errorf("rtbench: %s on %s, batch %d, concurrency %d: %w", name, prov, batch, conc, err)
					}
					r.Model, r.Provider, r.Batch, r.Conc = name, prov, batch, conc
					r.RowsPerSec = float64(r.Runs) * float64(batch) / cfg.Duration.Seconds()
					rows = append(rows, r)
					if progress != nil {
						progress(r)
					}
				}
			}
			s.Close()
		}
	}
	return rows, nil
}

// measure runs s with in from conc goroutines for warmup, then counts the
// runs that complete within d and their latencies.
func measure(ctx context.Context, s *ort.Session, in []models.Tensor, warmup, d time.Duration, conc int) (Row, error) {
	var (
		mu       sync.Mutex
		lat      []time.Duration
		runs     atomic.Int64
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(d)
	for range conc {
		wg.Go(func() {
			var mine []time.Duration
			for {
				t0 := time.Now()
				if t0.After(end) || ctx.Err() != nil {
					break
				}
				if _, err := s.Run(ctx, in, nil); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				t1 := time.Now()
				if t0.After(measureFrom) && !t1.After(end) {
					mine = append(mine, t1.Sub(t0))
					runs.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if firstErr != nil {
		return Row{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return Row{}, err
	}
	if len(lat) == 0 {
		return Row{}, fmt.Errorf("no run completed within %v", d)
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[max(0, int(math.Ceil(p*float64(len(lat))))-1)] }
	return Row{Runs: runs.Load(), P50: q(0.5), P99: q(0.99)}, nil
}

// Model returns the ONNX bytes of a benchmark model, randomly initialised
// from seed.
func Model(name string, seed uint64) ([]byte, error) {
	switch name {
	case ModelMLP:
		return onnx.NewMLP([]int{784, 1024, 1024, 10}, onnx.Softmax).RandomInit(seed).MarshalONNX()
	case ModelConv:
		return onnxtest.Model(convGraph(seed), 17), nil
	}
	return nil, fmt.Errorf("rtbench: no model %q", name)
}

// Inputs returns a batch of random inputs for a benchmark model.
func Inputs(name string, batch int, seed uint64) []models.Tensor {
	rng := rand.New(rand.NewPCG(seed, uint64(batch)))
	x := make([]float32, batch*784)
	for i := range x {
		x[i] = rng.Float32()
	}
	switch name {
	case ModelConv:
		return []models.Tensor{onnxtest.Tensor("image", models.FP32, []int64{int64(batch), 1, 28, 28}, x...)}
	default:
		return []models.Tensor{onnxtest.Tensor("input", models.FP32, []int64{int64(batch), 784}, x...)}
	}
}

// convGraph is a LeNet-like network for 28×28 grey images: two 3×3
// convolutions with ReLU and 2×2 max pooling, then two dense layers.
func convGraph(seed uint64) onnxtest.Graph {
	rng := rand.New(rand.NewPCG(seed, 0xc0))
	w := func(name string, fanIn int, shape ...int64) models.Tensor {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		scale := float32(math.Sqrt(2 / float64(fanIn)))
		for i := range v {
			v[i] = float32(rng.NormFloat64()) * scale
		}
		return onnxtest.Tensor(name, models.FP32, shape, v...)
	}
	zeros := func(name string, n int64) models.Tensor {
		return onnxtest.Tensor(name, models.FP32, []int64{n}, make([]float32, n)...)
	}
	pool := []onnxtest.Attr{onnxtest.Ints("kernel_shape", 2, 2), onnxtest.Ints("strides", 2, 2)}
	conv := []onnxtest.Attr{onnxtest.Ints("kernel_shape", 3, 3), onnxtest.Ints("pads", 1, 1, 1, 1)}
	return onnxtest.Graph{
		Name: "conv",
		Nodes: []onnxtest.Node{
			{Op: "Conv", Inputs: []string{"image", "w1", "b1"}, Outputs: []string{"c1"}, Attrs: conv},
			{Op: "Relu", Inputs: []string{"c1"}, Outputs: []string{"r1"}},
			{Op: "MaxPool", Inputs: []string{"r1"}, Outputs: []string{"p1"}, Attrs: pool},
			{Op: "Conv", Inputs: []string{"p1", "w2", "b2"}, Outputs: []string{"c2"}, Attrs: conv},
			{Op: "Relu", Inputs: []string{"c2"}, Outputs: []string{"r2"}},
			{Op: "MaxPool", Inputs: []string{"r2"}, Outputs: []string{"p2"}, Attrs: pool},
			{Op: "Flatten", Inputs: []string{"p2"}, Outputs: []string{"f"}, Attrs: []onnxtest.Attr{onnxtest.Int("axis", 1)}},
			{Op: "Gemm", Inputs: []string{"f", "w3", "b3"}, Outputs: []string{"d1"}, Attrs: []onnxtest.Attr{onnxtest.Int("transB", 1)}},
			{Op: "Relu", Inputs: []string{"d1"}, Outputs: []string{"r3"}},
			{Op: "Gemm", Inputs: []string{"r3", "w4", "b4"}, Outputs: []string{"logits"}, Attrs: []onnxtest.Attr{onnxtest.Int("transB", 1)}},
			{Op: "Softmax", Inputs: []string{"logits"}, Outputs: []string{"probabilities"}, Attrs: []onnxtest.Attr{onnxtest.Int("axis", -1)}},
		},
		Initializers: []models.Tensor{
			w("w1", 9, 32, 1, 3, 3), zeros("b1", 32),
			w("w2", 32*9, 64, 32, 3, 3), zeros("b2", 64),
			w("w3", 64*7*7, 128, 64*7*7), zeros("b3", 128),
			w("w4", 128, 10, 128), zeros("b4", 10),
		},
		Inputs:  []onnxtest.Value{{Name: "image", Type: models.FP32, Shape: []int64{-1, 1, 28, 28}, Params: []string{"N"}}},
		Outputs: []onnxtest.Value{{Name: "probabilities", Type: models.FP32, Shape: []int64{-1, 10}, Params: []string{"N"}}},
	}
}

// WriteTable writes rows as a Markdown table with CPU and GPU side by side
// for each (model, batch, concurrency), and the GPU/CPU throughput ratio.
func WriteTable(w io.Writer, rows []Row) error {
	type key struct {
		model       string
		batch, conc int
	}
	byKey := map[key]map[string]Row{}
	var order []key
	for _, r := range rows {
		k := key{r.Model, r.Batch, r.Conc}
		if byKey[k] == nil {
			byKey[k] = map[string]Row{}
			order = append(order, k)
		}
		byKey[k][r.Provider] = r
	}
	cell := func(r Row, ok bool) string {
		if !ok {
			return "— | — | —"
		}
		return fmt.Sprintf("%.0f | %s | %s", r.RowsPerSec, us(r.P50), us(r.P99))
	}
	if _, err := fmt.Fprintln(w, "| model | batch | concurrency | CPU rows/s | CPU p50 | CPU p99 | GPU rows/s | GPU p50 | GPU p99 | GPU/CPU |"); err != nil {
		return err
	}
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, k := range order {
		c, okc := byKey[k][ort.ProviderCPU]
		g, okg := byKey[k][ort.ProviderCUDA]
		ratio := "—"
		if okc && okg && c.RowsPerSec > 0 {
			ratio = fmt.Sprintf("×%.1f", g.RowsPerSec/c.RowsPerSec)
		}
		if _, err := fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s |\n", k.model, k.batch, k.conc, cell(c, okc), cell(g, okg), ratio); err != nil {
			return err
		}
	}
	return nil
}

func us(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}
