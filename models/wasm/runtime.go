package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Runtime compiles and runs transforms; one per node. It is safe for
// concurrent use.
type Runtime struct {
	opts  Options
	rt    wazero.Runtime
	cache wazero.CompilationCache
	wasi  map[string]bool // names of the WASI functions a guest may import

	mu      sync.Mutex
	closed  bool
	modules map[*Module]struct{}
}

// NewRuntime creates a Runtime. With opts.CacheDir set, compiled code is
// cached in that directory and reused by later Runtimes.
func NewRuntime(ctx context.Context, opts Options) (*Runtime, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	var cache wazero.CompilationCache
	if opts.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm compilation cache %q: %w", opts.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(opts.MemoryLimitPages).
		WithCoreFeatures(api.CoreFeaturesV2)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		_ = cache.Close(ctx)
		return nil, fmt.Errorf("instantiate WASI host module: %w", err)
	}
	host := rt.Module(wasiModule)
	if host == nil {
		_ = rt.Close(ctx)
		_ = cache.Close(ctx)
		return nil, fmt.Errorf("WASI host module %s is missing after instantiation", wasiModule)
	}
	wasi := map[string]bool{}
	for name := range host.ExportedFunctionDefinitions() {
		wasi[name] = true
	}
	return &Runtime{opts: opts, rt: rt, cache: cache, wasi: wasi, modules: map[*Module]struct{}{}}, nil
}

// Options returns the options in effect, defaults filled in.
func (r *Runtime) Options() Options { return r.opts }

// Close closes every Module and releases the runtime. In-flight calls fail
// with ErrClosed or a trap. It is safe to call more than once.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	mods := make([]*Module, 0, len(r.modules))
	for m := range r.modules {
		mods = append(mods, m)
	}
	r.mu.Unlock()
	for _, m := range mods {
		_ = m.Close(ctx)
	}
	return errors.Join(r.rt.Close(ctx), r.cache.Close(ctx))
}

// Compile validates wasm as an ABI v1 transform and returns a Module ready
// to run it with grants g. The checks: it compiles; it imports only
// wasi_snapshot_preview1 functions that exist; it exports memory (whose
// declared sizes fit the memory limit), petrel_abi_version and petrel_alloc
// and at least one of petrel_pre/petrel_post, each with the ABI's
// signature; it is a reactor; an instance can be created within
// InitTimeout; and petrel_abi_version returns 1. Every refusal wraps
// ErrInvalidModule and says why.
func (r *Runtime) Compile(ctx context.Context, wasm []byte, g Grants) (*Module, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	if len(wasm) == 0 {
		return nil, fmt.Errorf("%w: empty module", ErrInvalidModule)
	}
	if len(wasm) > MaxModuleBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrInvalidModule, len(wasm), MaxModuleBytes)
	}
	compiled, err := r.rt.CompileModule(ctx, wasm)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("compile transform: %w", ctx.Err())
		}
		return nil, fmt.Errorf("%w: does not compile: %v", ErrInvalidModule, err)
	}
	if mx, ok := declaredMemoryMax(wasm); ok && mx > r.opts.MemoryLimitPages {
		_ = compiled.Close(ctx)
		return nil, fmt.Errorf("%w: memory declares a maximum of %d pages, the limit is %d", ErrInvalidModule, mx, r.opts.MemoryLimitPages)
	}
	m, err := r.newModule(compiled, g)
	if err != nil {
		_ = compiled.Close(ctx)
		return nil, err
	}
	// Create the first instance now: it runs _initialize and answers the
	// version check, then waits in the pool for the first request.
	inst, err := m.instantiate(ctx)
	if err != nil {
		_ = compiled.Close(ctx)
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: cannot create an instance: %v", ErrInvalidModule, err)
	}
	vctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	res, err := inst.version.Call(vctx)
	cancel()
	if err != nil {
		_ = inst.mod.Close(ctx)
		_ = compiled.Close(ctx)
		return nil, fmt.Errorf("%w: %s failed: %v", ErrInvalidModule, ExportABIVersion, err)
	}
	if v := uint32(res[0]); v != ABIVersion {
		_ = inst.mod.Close(ctx)
		_ = compiled.Close(ctx)
		return nil, fmt.Errorf("%w: ABI version %d, this node runs version %d", ErrInvalidModule, v, ABIVersion)
	}
	m.slots <- struct{}{}
	m.put(inst)

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		_ = m.Close(ctx)
		return nil, ErrClosed
	}
	r.modules[m] = struct{}{}
	return m, nil
}

func (r *Runtime) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *Runtime) forget(m *Module) {
	r.mu.Lock()
	delete(r.modules, m)
	r.mu.Unlock()
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

type signature struct {
	params, results []api.ValueType
}

var abiExports = map[string]signature{
	ExportABIVersion: {nil, []api.ValueType{i32}},
	ExportAlloc:      {[]api.ValueType{i32}, []api.ValueType{i32}},
	ExportPre:        {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i64}},
	ExportPost:       {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i64}},
	"_initialize":    {nil, nil},
}

// validate checks imports and exports of a compiled module against ABI v1.
func (r *Runtime) validate(c wazero.CompiledModule) (hasPre, hasPost, hasInit bool, err error) {
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != wasiModule {
			return false, false, false, fmt.Errorf("%w: imports %s.%s; only %s functions are granted", ErrInvalidModule, mod, name, wasiModule)
		}
		if !r.wasi[name] {
			return false, false, false, fmt.Errorf("%w: imports %s.%s, which is not a WASI preview 1 function", ErrInvalidModule, mod, name)
		}
	}
	for _, mem := range c.ImportedMemories() {
		mod, name, _ := mem.Import()
		return false, false, false, fmt.Errorf("%w: imports memory %s.%s; a transform must define its own memory", ErrInvalidModule, mod, name)
	}
	mem, ok := c.ExportedMemories()[ExportMemory]
	if !ok {
		return false, false, false, fmt.Errorf("%w: does not export %q", ErrInvalidModule, ExportMemory)
	}
	if mem.Min() > r.opts.MemoryLimitPages {
		return false, false, false, fmt.Errorf("%w: memory needs %d pages at start, the limit is %d", ErrInvalidModule, mem.Min(), r.opts.MemoryLimitPages)
	}
	if mx, ok := mem.Max(); ok && mx > r.opts.MemoryLimitPages {
		return false, false, false, fmt.Errorf("%w: memory declares a maximum of %d pages, the limit is %d", ErrInvalidModule, mx, r.opts.MemoryLimitPages)
	}
	exports := c.ExportedFunctions()
	for name, sig := range abiExports {
		f, ok := exports[name]
		if !ok {
			continue
		}
		if !sameTypes(f.ParamTypes(), sig.params) || !sameTypes(f.ResultTypes(), sig.results) {
			return false, false, false, fmt.Errorf("%w: export %s has signature %s, ABI v%d wants %s",
				ErrInvalidModule, name, sigString(f.ParamTypes(), f.ResultTypes()), ABIVersion, sigString(sig.params, sig.results))
		}
	}
	for _, name := range []string{ExportABIVersion, ExportAlloc} {
		if _, ok := exports[name]; !ok {
			return false, false, false, fmt.Errorf("%w: does not export %s", ErrInvalidModule, name)
		}
	}
	_, hasPre = exports[ExportPre]
	_, hasPost = exports[ExportPost]
	if !hasPre && !hasPost {
		return false, false, false, fmt.Errorf("%w: exports neither %s nor %s", ErrInvalidModule, ExportPre, ExportPost)
	}
	_, hasInit = exports["_initialize"]
	if _, hasStart := exports["_start"]; hasStart && !hasInit {
		return false, false, false, fmt.Errorf("%w: is a command module (exports _start); build a reactor (Go: -buildmode=c-shared)", ErrInvalidModule)
	}
	return hasPre, hasPost, hasInit, nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sigString(params, results []api.ValueType) string {
	s := "("
	for i, p := range params {
		if i > 0 {
			s += ", "
		}
		s += api.ValueTypeName(p)
	}
	s += ") -> ("
	for i, p := range results {
		if i > 0 {
			s += ", "
		}
		s += api.ValueTypeName(p)
	}
	return s + ")"
}

// moduleConfig is the sandbox of one instance.
func moduleConfig(g Grants, hasInit bool, stderr io.Writer) wazero.ModuleConfig {
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStdout(io.Discard).
		WithStderr(stderr).
		WithRandSource(zeroReader{})
	if hasInit {
		cfg = cfg.WithStartFunctions("_initialize")
	} else {
		cfg = cfg.WithStartFunctions()
	}
	if g.Clock {
		cfg = cfg.WithSysWalltime().WithSysNanotime().WithSysNanosleep()
	}
	if g.Random {
		cfg = cfg.WithRandSource(rand.Reader)
	}
	return cfg
}

// zeroReader is the random source of a module without Grants.Random.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
