package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node/sched"
)

// ModelConfig is the optional <model>/config.json of a model repository.
// Every field is optional; zero values take the defaults noted.
type ModelConfig struct {
	// MaxBatchSize enables dynamic batching up to this many rows when the
	// model's inputs and outputs all have a dynamic first dimension.
	// Default 64; 1 disables batching.
	MaxBatchSize *int `json:"max_batch_size,omitempty"`
	// MaxQueueDelayMicros is how long a request may wait for others to batch
	// with. Default 0: never wait, batch only what queues up while the
	// runtime is busy.
	MaxQueueDelayMicros int64 `json:"max_queue_delay_microseconds,omitempty"`
	// BusyQueueDelayMicros is the queue delay applied only while the model
	// is busy (its last execution batched or left requests waiting); an
	// idle model never waits. Default 300; ignored when
	// max_queue_delay_microseconds is set.
	BusyQueueDelayMicros *int64 `json:"busy_queue_delay_microseconds,omitempty"`
	// PreferredBatchSizes dispatch a batch as soon as it reaches one of them.
	// Default: measured when the version loads (see ProfileBatchSizes).
	PreferredBatchSizes []int `json:"preferred_batch_size,omitempty"`
	// ProfileBatchSizes, when preferred_batch_size is not given, times the
	// model at batch sizes 1, 2, 4, … max_batch_size as each version loads
	// and prefers the sizes whose cost per row is within 10% of the
	// cheapest (see profile.go). Default true; false leaves no preferred
	// sizes.
	ProfileBatchSizes *bool `json:"profile_batch_sizes,omitempty"`
	// MaxQueueSize bounds waiting requests (429 beyond). Default 1024.
	MaxQueueSize int `json:"max_queue_size,omitempty"`
	// Concurrency is how many executions of one version run at once.
	// Default: the cores (at most 4) divided by the intra-op threads, so
	// one-threaded sessions run in parallel on every core.
	Concurrency int `json:"concurrency,omitempty"`
	// TimeoutMillis is the default request deadline; 0 means none.
	TimeoutMillis int64 `json:"timeout_ms,omitempty"`
	// ResponseCache enables the response cache for this model.
	ResponseCache bool `json:"response_cache,omitempty"`
	// Runtime overrides the node's ONNX Runtime options.
	Runtime *RuntimeOverrides `json:"runtime,omitempty"`
	// Labels are copied into each version's manifest.
	Labels map[string]string `json:"labels,omitempty"`
	// Golden examples each version must reproduce when it loads.
	Golden []models.Golden `json:"golden,omitempty"`
	// Personal lists input features to drop or hash before feedback is
	// written (see PersonalRule).
	Personal *PersonalRule `json:"personal,omitempty"`
	// Transforms grants capabilities to the versions' pre.wasm and
	// post.wasm (see TransformConfig and docs/transforms.md).
	Transforms *TransformConfig `json:"transforms,omitempty"`
	// Escalation sends requests this model is not confident about to a
	// larger model in the central tier (see EscalationConfig, escalate.go).
	Escalation *EscalationConfig `json:"escalation,omitempty"`
	// Pipeline makes this a virtual model that chains other models (see
	// PipelineConfig, pipeline.go). A pipeline model has no versions of
	// its own in the repository.
	Pipeline *PipelineConfig `json:"pipeline,omitempty"`
}

// TransformConfig is the "transforms" object of config.json. The modules
// themselves are <model>/<version>/pre.wasm and post.wasm; without a
// grant a module sees no clock and no randomness.
type TransformConfig struct {
	// Grants maps "pre" and "post" to the grants of that module:
	// "clock", "random".
	Grants map[string][]string `json:"grants,omitempty"`
}

func (t *TransformConfig) validate() error {
	for stage, gs := range t.Grants {
		if stage != "pre" && stage != "post" {
			return fmt.Errorf("transforms: grants for %q: want \"pre\" or \"post\"", stage)
		}
		tr := models.Transform{Digest: "sha256:" + strings.Repeat("0", 64), Size: 1, Grants: gs}
		if err := tr.Validate(); err != nil {
			return fmt.Errorf("transforms: %s: %w", stage, err)
		}
	}
	return nil
}

// RuntimeOverrides are the per-model ONNX Runtime settings.
type RuntimeOverrides struct {
	IntraOpThreads    *int   `json:"intra_op_threads,omitempty"`
	GraphOptimization string `json:"graph_optimization,omitempty"`
	Spinning          *bool  `json:"spinning,omitempty"`
	MemArena          *bool  `json:"mem_arena,omitempty"`
	Provider          string `json:"provider,omitempty"`
	RequireProvider   bool   `json:"require_provider,omitempty"`
	// DeviceID, GPUMemLimit (bytes) and ArenaExtendStrategy override the
	// node's CUDA settings for this model (ort.Options of the same names).
	DeviceID            *int   `json:"device_id,omitempty"`
	GPUMemLimit         *int64 `json:"gpu_mem_limit,omitempty"`
	ArenaExtendStrategy string `json:"arena_extend_strategy,omitempty"`
}

// maxConfigBytes bounds config.json; a repository is operator input but
// a runaway file must not take the node down.
const maxConfigBytes = 1 << 20

// parseModelConfig decodes and validates config.json strictly: unknown
// fields are errors, so a typo does not silently fall back to a default.
func parseModelConfig(b []byte) (ModelConfig, error) {
	var c ModelConfig
	if len(b) > maxConfigBytes {
		return c, fmt.Errorf("config is %d bytes, limit %d", len(b), maxConfigBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if dec.More() {
		return c, errors.New("config: trailing data after the JSON object")
	}
	return c, c.Validate()
}

// Validate checks ranges.
func (c *ModelConfig) Validate() error {
	if c.MaxBatchSize != nil && (*c.MaxBatchSize < 1 || *c.MaxBatchSize > 1<<16) {
		return fmt.Errorf("config: max_batch_size %d: want 1..65536", *c.MaxBatchSize)
	}
	if c.MaxQueueDelayMicros < 0 || c.MaxQueueDelayMicros > 10_000_000 {
		return fmt.Errorf("config: max_queue_delay_microseconds %d: want 0..10000000", c.MaxQueueDelayMicros)
	}
	if d := c.BusyQueueDelayMicros; d != nil && (*d < 0 || *d > 10_000_000) {
		return fmt.Errorf("config: busy_queue_delay_microseconds %d: want 0..10000000", *d)
	}
	for _, p := range c.PreferredBatchSizes {
		if p < 1 || (c.MaxBatchSize != nil && p > *c.MaxBatchSize) {
			return fmt.Errorf("config: preferred_batch_size %d: want 1..max_batch_size", p)
		}
	}
	if c.MaxQueueSize < 0 || c.Concurrency < 0 || c.TimeoutMillis < 0 {
		return errors.New("config: max_queue_size, concurrency and timeout_ms must not be negative")
	}
	if c.Concurrency > 256 {
		return fmt.Errorf("config: concurrency %d: want at most 256", c.Concurrency)
	}
	if c.Runtime != nil {
		// The overrides on top of valid defaults must make valid options.
		if err := c.runtimeOptions(ort.Options{}).Validate(); err != nil {
			return fmt.Errorf("config: runtime: %w", err)
		}
	}
	if c.Personal != nil {
		if err := c.Personal.validate(); err != nil {
			return fmt.Errorf("config: personal: %w", err)
		}
	}
	if c.Transforms != nil {
		if err := c.Transforms.validate(); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	if c.Escalation != nil {
		if err := c.Escalation.validate(); err != nil {
			return fmt.Errorf("config: escalation: %w", err)
		}
	}
	if c.Pipeline != nil {
		if err := c.Pipeline.validate(); err != nil {
			return fmt.Errorf("config: pipeline: %w", err)
		}
	}
	return nil
}

func (c *ModelConfig) schedConfig() sched.Config {
	sc := sched.Config{
		MaxBatchSize:        64,
		MaxQueueDelay:       time.Duration(c.MaxQueueDelayMicros) * time.Microsecond,
		PreferredBatchSizes: c.PreferredBatchSizes,
		MaxQueueSize:        1024,
		Concurrency:         1,
		DefaultTimeout:      time.Duration(c.TimeoutMillis) * time.Millisecond,
		// ONNX Runtime sessions honour cancellation (RunOptions.Terminate),
		// which running requests inline needs.
		InlineWhenIdle: true,
		LoadDelay:      defaultLoadDelay,
	}
	if c.BusyQueueDelayMicros != nil {
		sc.LoadDelay = time.Duration(*c.BusyQueueDelayMicros) * time.Microsecond
	}
	if c.MaxBatchSize != nil {
		sc.MaxBatchSize = *c.MaxBatchSize
	}
	if c.MaxQueueSize > 0 {
		sc.MaxQueueSize = c.MaxQueueSize
	}
	if c.Concurrency > 0 {
		sc.Concurrency = c.Concurrency
	}
	return sc
}

// defaultLoadDelay is how long a busy model's batch waits for company
// (sched.Config.LoadDelay); an idle model never waits.
const defaultLoadDelay = 300 * time.Microsecond

// AutoIntraOpThreads is the intra-op thread count when the config says 0
// (auto): one. A node serves many requests at once, and runs several
// executions of a model in parallel (see AutoConcurrency), so it gets its
// parallelism across runs rather than inside one. One-threaded runs need
// no thread pool: nothing spins, no run waits at a barrier for a thread
// that the OS gave to the HTTP side or to another process, which is what
// made two-threaded runs of the 1024→4096→1024 MLP twice as slow inside a
// loaded node as in isolation (docs/PERFORMANCE.md). A model that must
// finish one large run fast can still set runtime.intra_op_threads.
const AutoIntraOpThreads = 1

// maxAutoConcurrency caps the automatic execution concurrency.
const maxAutoConcurrency = 4

// AutoConcurrency is how many executions of a version run at once when
// the config does not say: the cores (at most maxAutoConcurrency) divided
// by the intra-op threads of each, at least one.
func AutoConcurrency(intraOpThreads int) int {
	return max(1, min(runtime.NumCPU(), maxAutoConcurrency)/max(intraOpThreads, 1))
}

func (c *ModelConfig) runtimeOptions(base ort.Options) ort.Options {
	o := base
	if r := c.Runtime; r != nil {
		if r.IntraOpThreads != nil {
			o.IntraOpThreads = *r.IntraOpThreads
		}
		if r.GraphOptimization != "" {
			o.GraphOptimization = r.GraphOptimization
		}
		if r.Spinning != nil {
			o.Spinning = r.Spinning
		}
		if r.MemArena != nil {
			o.MemArena = r.MemArena
		}
		if r.Provider != "" {
			o.Provider = r.Provider
			o.RequireProvider = r.RequireProvider
		}
		if r.DeviceID != nil {
			o.DeviceID = *r.DeviceID
		}
		if r.GPUMemLimit != nil {
			o.GPUMemLimit = *r.GPUMemLimit
		}
		if r.ArenaExtendStrategy != "" {
			o.ArenaExtendStrategy = r.ArenaExtendStrategy
		}
	}
	if o.IntraOpThreads == 0 {
		o.IntraOpThreads = AutoIntraOpThreads
	}
	return o
}

// repoModel is what the repository holds for one model: its config and
// its versions' files.
type repoModel struct {
	Name     string
	Config   ModelConfig
	Versions []repoVersion // ascending; the last is the default
}

type repoVersion struct {
	Version string
	Path    string // "" for a version acquired from the mesh
	ModTime time.Time
}

// source names where a version's model file comes from, for errors that
// API clients see: the path inside the repository, never the absolute
// one.
func (rv repoVersion) source() string {
	if rv.Path == "" {
		return "the artifact fetched from the mesh"
	}
	dir, file := filepath.Split(rv.Path)
	ver := filepath.Base(dir)
	model := filepath.Base(filepath.Dir(filepath.Clean(dir)))
	return filepath.Join(model, ver, file)
}

// scanRepository lists the models under dir. A model whose config is
// invalid is returned with the error so the index can say why it is
// unavailable, rather than failing the whole scan.
func scanRepository(dir string) (map[string]*repoModel, map[string]error, error) {
	if dir == "" { // a node that serves only what the coordinator sends
		return map[string]*repoModel{}, map[string]error{}, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("model repository %q: %w", dir, err)
	}
	out := map[string]*repoModel{}
	bad := map[string]error{}
	for _, e := range entries {
		if !e.IsDir() || !models.ValidName(e.Name()) {
			continue
		}
		m, err := scanModel(dir, e.Name())
		if err != nil {
			bad[e.Name()] = err
			continue
		}
		if len(m.Versions) > 0 || m.Config.Pipeline != nil {
			out[m.Name] = m
		}
	}
	return out, bad, nil
}

func scanModel(dir, name string) (*repoModel, error) {
	if dir == "" {
		return nil, fmt.Errorf("model %q: %w (this node has no repository)", name, os.ErrNotExist)
	}
	m := &repoModel{Name: name}
	mdir := filepath.Join(dir, name)
	if b, err := os.ReadFile(filepath.Join(mdir, "config.json")); err == nil {
		if m.Config, err = parseModelConfig(b); err != nil {
			return nil, fmt.Errorf("model %q: %w", name, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("model %q: %w", name, err)
	}
	vs, err := os.ReadDir(mdir)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", name, err)
	}
	for _, v := range vs {
		if !v.IsDir() || !models.ValidVersion(v.Name()) {
			continue
		}
		p := filepath.Join(mdir, v.Name(), "model.onnx")
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		m.Versions = append(m.Versions, repoVersion{Version: v.Name(), Path: p, ModTime: st.ModTime()})
	}
	sort.Slice(m.Versions, func(i, j int) bool { return versionLess(m.Versions[i].Version, m.Versions[j].Version) })
	if p := m.Config.Pipeline; p != nil {
		// A pipeline is virtual: its steps are other models.
		if len(m.Versions) > 0 {
			return nil, fmt.Errorf("model %q: config has a pipeline but the directory also holds model versions (%s/model.onnx); a pipeline has no model file of its own", name, m.Versions[0].Version)
		}
		for i, s := range p.Steps {
			if s.Model == name {
				return nil, fmt.Errorf("model %q: pipeline step %d is the pipeline itself", name, i+1)
			}
		}
	}
	return m, nil
}

// versionLess orders numeric versions numerically, before any
// non-numeric ones, which sort lexically.
func versionLess(a, b string) bool {
	ai, aerr := strconv.ParseUint(a, 10, 64)
	bi, berr := strconv.ParseUint(b, 10, 64)
	switch {
	case aerr == nil && berr == nil:
		return ai < bi
	case aerr == nil:
		return true
	case berr == nil:
		return false
	}
	return a < b
}
