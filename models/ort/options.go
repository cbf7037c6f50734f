package ort

import (
	"errors"
	"fmt"
	"strconv"

	onnx "github.com/yalue/onnxruntime_go"
)

// Execution providers.
const (
	ProviderCPU  = "cpu"
	ProviderCUDA = "cuda"
)

// Graph optimisation levels, as ONNX Runtime names them.
const (
	OptimizeDisable  = "disable"
	OptimizeBasic    = "basic"
	OptimizeExtended = "extended"
	OptimizeAll      = "all"
)

// CUDA arena extension strategies.
const (
	ArenaNextPowerOfTwo  = "kNextPowerOfTwo"
	ArenaSameAsRequested = "kSameAsRequested"
)

// ErrInvalidOptions wraps every Options validation failure.
var ErrInvalidOptions = errors.New("ort: invalid options")

// ErrProviderUnavailable is returned by Load when RequireProvider is set and
// the requested execution provider cannot be initialised.
var ErrProviderUnavailable = errors.New("ort: execution provider unavailable")

// Options configures one session. The zero value is valid and means the
// defaults that DefaultOptions spells out.
type Options struct {
	// IntraOpThreads is the size of the thread pool that parallelises work
	// inside one operator. 0 means the Petrel default, 1: no pool, the
	// calling goroutine's thread does the work, which suits a server that
	// runs many requests at once.
	IntraOpThreads int
	// InterOpThreads parallelises independent operators; 0 lets ONNX
	// Runtime choose (it only matters in parallel execution mode).
	InterOpThreads int
	// GraphOptimization is "disable", "basic", "extended" or "all"
	// (default "all").
	GraphOptimization string
	// Spinning lets idle intra-op (and inter-op) pool threads spin waiting
	// for work: lower latency, burnt CPU. nil means false, Petrel's
	// default (session config "session.intra_op.allow_spinning" = "0").
	Spinning *bool
	// MemArena enables the CPU memory arena; nil means true.
	MemArena *bool
	// Provider is "cpu" (default) or "cuda".
	Provider string
	// RequireProvider makes Load fail when Provider cannot be initialised;
	// otherwise the session falls back to the CPU and ProviderNote says why.
	RequireProvider bool
	// DeviceID is the CUDA device ordinal.
	DeviceID int
	// GPUMemLimit caps the CUDA arena, in bytes; 0 means unlimited.
	GPUMemLimit int64
	// ArenaExtendStrategy is the CUDA arena's growth policy:
	// "kNextPowerOfTwo" (ONNX Runtime's default) or "kSameAsRequested".
	ArenaExtendStrategy string
}

// DefaultOptions returns the options a zero Options stands for, spelled
// out: one intra-op thread, all graph optimisations, no spinning, the CPU
// arena on, the CPU provider.
func DefaultOptions() Options {
	f, t := false, true
	return Options{
		IntraOpThreads:    1,
		GraphOptimization: OptimizeAll,
		Spinning:          &f,
		MemArena:          &t,
		Provider:          ProviderCPU,
	}
}

// Validate checks every field and returns an error wrapping
// ErrInvalidOptions that names the first one that is wrong.
func (o Options) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	if o.IntraOpThreads < 0 {
		return bad("IntraOpThreads %d: want >= 0", o.IntraOpThreads)
	}
	if o.InterOpThreads < 0 {
		return bad("InterOpThreads %d: want >= 0", o.InterOpThreads)
	}
	if _, ok := optLevels[o.GraphOptimization]; !ok {
		return bad("GraphOptimization %q: want disable, basic, extended or all", o.GraphOptimization)
	}
	switch o.Provider {
	case "", ProviderCPU, ProviderCUDA:
	default:
		return bad("Provider %q: want cpu or cuda", o.Provider)
	}
	if o.DeviceID < 0 {
		return bad("DeviceID %d: want >= 0", o.DeviceID)
	}
	if o.GPUMemLimit < 0 {
		return bad("GPUMemLimit %d: want >= 0 (0 = unlimited)", o.GPUMemLimit)
	}
	switch o.ArenaExtendStrategy {
	case "", ArenaNextPowerOfTwo, ArenaSameAsRequested:
	default:
		return bad("ArenaExtendStrategy %q: want kNextPowerOfTwo or kSameAsRequested", o.ArenaExtendStrategy)
	}
	return nil
}

var optLevels = map[string]onnx.GraphOptimizationLevel{
	"":               onnx.GraphOptimizationLevelEnableAll,
	OptimizeDisable:  onnx.GraphOptimizationLevelDisableAll,
	OptimizeBasic:    onnx.GraphOptimizationLevelEnableBasic,
	OptimizeExtended: onnx.GraphOptimizationLevelEnableExtended,
	OptimizeAll:      onnx.GraphOptimizationLevelEnableAll,
}

func (o Options) provider() string {
	if o.Provider == "" {
		return ProviderCPU
	}
	return o.Provider
}

// sessionOptions builds the CPU part of the ONNX Runtime session options.
// The caller must Destroy the result.
func (o Options) sessionOptions() (*onnx.SessionOptions, error) {
	so, err := onnx.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ort: session options: %w", err)
	}
	intra := o.IntraOpThreads
	if intra == 0 {
		intra = 1
	}
	spin := o.Spinning != nil && *o.Spinning
	arena := o.MemArena == nil || *o.MemArena
	steps := []struct {
		what string
		do   func() error
	}{
		{"intra-op threads", func() error { return so.SetIntraOpNumThreads(intra) }},
		{"inter-op threads", func() error { return so.SetInterOpNumThreads(o.InterOpThreads) }},
		{"graph optimisation", func() error { return so.SetGraphOptimizationLevel(optLevels[o.GraphOptimization]) }},
		{"intra-op spinning", func() error {
			return so.AddSessionConfigEntry("session.intra_op.allow_spinning", boolFlag(spin))
		}},
		{"inter-op spinning", func() error {
			return so.AddSessionConfigEntry("session.inter_op.allow_spinning", boolFlag(spin))
		}},
		{"cpu memory arena", func() error { return so.SetCpuMemArena(arena) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			so.Destroy()
			return nil, fmt.Errorf("ort: session options: %s: %w", s.what, err)
		}
	}
	return so, nil
}

// appendCUDA adds the CUDA execution provider to so: with the V2 API
// (onnxruntime_go's), or when the library refuses that, the V1 API (see
// cudav1.go).
func (o Options) appendCUDA(so *onnx.SessionOptions) error {
	errV2 := o.appendCUDAV2(so)
	if errV2 == nil {
		return nil
	}
	if errV1 := o.appendCUDAV1(so); errV1 != nil {
		return fmt.Errorf("%w; with the V1 API: %v", errV2, errV1)
	}
	return nil
}

// appendCUDAV2 adds the CUDA provider with the V2 API.
func (o Options) appendCUDAV2(so *onnx.SessionOptions) error {
	co, err := onnx.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("cuda provider options: %w", err)
	}
	defer co.Destroy()
	kv := map[string]string{"device_id": strconv.Itoa(o.DeviceID)}
	if o.GPUMemLimit > 0 {
		kv["gpu_mem_limit"] = strconv.FormatInt(o.GPUMemLimit, 10)
	}
	if o.ArenaExtendStrategy != "" {
		kv["arena_extend_strategy"] = o.ArenaExtendStrategy
	}
	if err := co.Update(kv); err != nil {
		return fmt.Errorf("cuda provider options %v: %w", kv, err)
	}
	if err := so.AppendExecutionProviderCUDA(co); err != nil {
		return fmt.Errorf("append cuda provider: %w", err)
	}
	return nil
}

func boolFlag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
