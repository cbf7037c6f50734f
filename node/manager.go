package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/golden"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node/sched"
	"github.com/prometheus/client_golang/prometheus"
)

// Model states, as the repository index reports them.
const (
	StateReady       = "READY"
	StateLoading     = "LOADING"
	StateUnavailable = "UNAVAILABLE"
)

// Errors the HTTP layer maps to status codes.
var (
	ErrModelNotFound   = errors.New("model not found")
	ErrVersionNotFound = errors.New("model version not found")
	ErrModelNotReady   = errors.New("model is not ready")
)

// SessionLoader turns model bytes into a runnable session. The default
// uses ONNX Runtime; tests of the HTTP layer may pass an in-memory twin.
type SessionLoader func(onnx []byte, mc *ModelConfig) (models.Session, error)

// version is one loaded model version: manifest, session and scheduler.
type version struct {
	manifest models.Manifest
	config   *ModelConfig
	session  models.Session
	sched    *sched.Scheduler
	schedCfg sched.Config  // as the scheduler got it, defaults resolved
	profile  *BatchProfile // nil when not profiled
	bytes    int64
	gpuBytes int64 // GPU memory accounted (CUDA sessions only), see GPUFootprint
	acquired bool  // fetched from the mesh, not from the repository: evictable
	synced   bool  // installed by the control loop (coordinator): pinned
	hist     latencyHist
	// requests and serverErrors are the figures rollouts judge by:
	// serverErrors counts 5xx and 422 (a request that fits the signature
	// but the model refused); a client's malformed input is not counted.
	requests, serverErrors atomic.Uint64
	shadow                 atomic.Pointer[shadowAgg] // set once the version gets mirrored traffic
	stats                  *modelStats
	obs                    *schedObserver
	outIndex               map[string]int
	// transforms are the version's WebAssembly pre/post modules (nil:
	// none; see transforms.go).
	transforms *transformSet
	// Metric children resolved once at load, not per request.
	okCount, failCount     prometheus.Counter
	reqLat                 prometheus.Observer
	cacheHits, cacheMisses prometheus.Counter
}

// modelEntry is a model's state on this node.
type modelEntry struct {
	name     string
	state    string
	reason   string
	versions map[string]*version
	latest   string
}

// manager owns the loaded models. Loads of one model are serialised; reads
// take a snapshot under the lock.
type manager struct {
	n      *Node
	mu     sync.RWMutex
	models map[string]*modelEntry
	// traffic holds the coordinator's split of models it manages.
	traffic map[string]*traffic
	// splits and shadowed count the models with a split and with
	// shadows, so that requests skip the traffic lookups when there are
	// none.
	splits, shadowed atomic.Int32
	loadMu           sync.Mutex // serialises load/unload
	// gpuLoading is the model a repository load is replacing and the GPU
	// bytes of its versions loaded so far, which checkGPUBudget counts
	// instead of the versions being replaced. Guarded by loadMu.
	gpuLoading struct {
		name  string
		bytes int64
	}
	// generation counts catalog changes (loads, unloads), for the mesh.
	generation atomic.Uint64
	// pipelineSteps maps each pipeline model that was loaded (or tried)
	// to its step models, so that loading a step re-validates the
	// pipelines that use it (pipeline.go). Guarded by loadMu.
	pipelineSteps map[string][]string
}

func newManager(n *Node) *manager {
	return &manager{n: n, models: map[string]*modelEntry{}, traffic: map[string]*traffic{}, pipelineSteps: map[string][]string{}}
}

// lookup returns the ready version asked for ("" = latest).
func (m *manager) lookup(name, ver string) (*version, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.models[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrModelNotFound, name)
	}
	if e.state != StateReady {
		return nil, fmt.Errorf("%w: %q is %s", ErrModelNotReady, name, e.state)
	}
	if ver == "" {
		ver = e.latest
	}
	v, ok := e.versions[ver]
	if !ok {
		return nil, fmt.Errorf("%w: %q version %q", ErrVersionNotFound, name, ver)
	}
	return v, nil
}

// IndexEntry is one row of the repository index.
type IndexEntry struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
}

func (m *manager) index(ready bool) ([]IndexEntry, error) {
	repo, bad, err := scanRepository(m.n.cfg.ModelRepository)
	if err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []IndexEntry
	names := map[string]bool{}
	for n := range repo {
		names[n] = true
	}
	for n := range bad {
		names[n] = true
	}
	for n := range m.models {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		e := m.models[n]
		switch {
		case e != nil && e.state == StateReady:
			vs := make([]string, 0, len(e.versions))
			for v := range e.versions {
				vs = append(vs, v)
			}
			sort.Slice(vs, func(i, j int) bool { return versionLess(vs[i], vs[j]) })
			for _, v := range vs {
				out = append(out, IndexEntry{Name: n, Version: v, State: StateReady})
			}
		case ready:
			continue
		case e != nil:
			out = append(out, IndexEntry{Name: n, State: e.state, Reason: e.reason})
		case bad[n] != nil:
			out = append(out, IndexEntry{Name: n, State: StateUnavailable, Reason: bad[n].Error()})
		default:
			out = append(out, IndexEntry{Name: n, State: StateUnavailable, Reason: "unloaded"})
		}
	}
	return out, nil
}

// load (re)loads every version of a model from the repository. On failure
// the model's previous versions keep serving and the error is recorded.
// Once it is loaded, the pipelines that use it are validated again (so a
// pipeline loaded before its steps becomes ready when they arrive).
func (m *manager) load(ctx context.Context, name string) error {
	if err := m.loadOne(ctx, name); err != nil {
		return err
	}
	m.reloadPipelinesUsing(ctx, name, 0)
	return nil
}

func (m *manager) loadOne(ctx context.Context, name string) error {
	if !models.ValidName(name) {
		return fmt.Errorf("%w: invalid model name %q", ErrModelNotFound, name)
	}
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	rm, err := scanModel(m.n.cfg.ModelRepository, name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %q is not in the repository", ErrModelNotFound, name)
		}
		m.setFailed(name, err)
		return err
	}
	if rm.Config.Pipeline != nil {
		return m.loadPipeline(ctx, rm)
	}
	if len(rm.Versions) == 0 {
		err := fmt.Errorf("%w: %q has no <version>/model.onnx in the repository", ErrModelNotFound, name)
		return err
	}
	m.mu.Lock()
	if e, ok := m.models[name]; !ok || e.state != StateReady {
		m.models[name] = &modelEntry{name: name, state: StateLoading}
	}
	m.mu.Unlock()

	loaded := map[string]*version{}
	m.gpuLoading.name, m.gpuLoading.bytes = name, 0
	defer func() { m.gpuLoading.name, m.gpuLoading.bytes = "", 0 }()
	for _, rv := range rm.Versions {
		v, err := m.loadVersion(ctx, rm, rv)
		if err != nil {
			for _, l := range loaded {
				l.close(ctx)
			}
			m.setFailed(name, err)
			return err
		}
		loaded[rv.Version] = v
		m.gpuLoading.bytes += v.gpuBytes
	}
	m.mu.Lock()
	old := m.models[name]
	m.models[name] = &modelEntry{name: name, state: StateReady, versions: loaded, latest: rm.Versions[len(rm.Versions)-1].Version}
	// Acquired versions make room for the repository's (host or GPU).
	evicted := m.evictLocked(nil)
	m.mu.Unlock()
	for _, ev := range evicted {
		ev.close(ctx)
		m.forgetMetrics(ev)
	}
	for _, v := range loaded {
		m.n.metrics.modelProvider.WithLabelValues(name, v.manifest.Version, v.session.Provider()).Set(1)
	}
	if old != nil {
		for _, v := range old.versions {
			v.close(ctx)
			m.n.metrics.modelProvider.DeleteLabelValues(name, v.manifest.Version, v.session.Provider())
		}
	}
	m.refreshGauges()
	m.generation.Add(1)
	m.n.meshChanged()
	m.n.log.Info("model loaded", "model", name, "versions", len(loaded))
	return nil
}

func (m *manager) setFailed(name string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.models[name]; ok && e.state == StateReady {
		// Keep serving what was loaded; the failure is logged.
		m.n.log.Warn("model reload failed; previous versions keep serving", "model", name, "err", err)
		return
	}
	m.models[name] = &modelEntry{name: name, state: StateUnavailable, reason: err.Error()}
	m.n.log.Warn("model failed to load", "model", name, "err", err)
}

func (m *manager) loadVersion(ctx context.Context, rm *repoModel, rv repoVersion) (*version, error) {
	b, err := os.ReadFile(rv.Path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the absolute path stays in the node's log, not in API answers
		}
		return nil, fmt.Errorf("model %q version %s: read %s: %w", rm.Name, rv.Version, rv.source(), err)
	}
	v, err := m.loadVersionBytes(ctx, rm, rv, b)
	if err != nil {
		return nil, err
	}
	if err := m.attachRepoTransforms(ctx, rm, rv, v); err != nil {
		v.close(ctx)
		return nil, err
	}
	m.n.storeRepositoryBlob(v.manifest.Digest, b)
	return v, nil
}

// loadVersionBytes loads one version from its model file's bytes.
func (m *manager) loadVersionBytes(ctx context.Context, rm *repoModel, rv repoVersion, b []byte) (*version, error) {
	sess, err := m.n.loader(b, &rm.Config)
	if err != nil {
		return nil, fmt.Errorf("model %q version %s: load %s: %w", rm.Name, rv.Version, rv.source(), err)
	}
	return m.newVersion(ctx, rm, rv, sess, models.DigestBytes(b), int64(len(b)))
}

// newVersion checks a loaded session (manifest, golden examples) and
// starts its scheduler. It closes sess when it fails.
func (m *manager) newVersion(ctx context.Context, rm *repoModel, rv repoVersion, sess models.Session, digest string, size int64) (*version, error) {
	man := models.Manifest{
		Name: rm.Name, Version: rv.Version, Digest: digest, Format: models.FormatONNX,
		Signature: sess.Signature(), Golden: rm.Config.Golden, Labels: rm.Config.Labels, CreatedAt: rv.ModTime.UTC(),
	}
	if err := man.Validate(); err != nil {
		sess.Close()
		return nil, err
	}
	if err := golden.RunGolden(ctx, sess, man.Golden); err != nil {
		sess.Close()
		return nil, fmt.Errorf("model %q version %s: %w", rm.Name, rv.Version, err)
	}
	if err := checkEscalationOutput(rm.Name, rm.Config.Escalation, man.Signature); err != nil {
		sess.Close()
		return nil, fmt.Errorf("model %q version %s: %w", rm.Name, rv.Version, err)
	}
	v := &version{manifest: man, config: &rm.Config, session: sess, bytes: size, stats: &modelStats{}}
	if sess.Provider() == ort.ProviderCUDA {
		v.gpuBytes = GPUFootprint(rm.Config.runtimeOptions(m.n.cfg.Runtime).GPUMemLimit, size)
		if err := m.checkGPUBudget(v); err != nil {
			sess.Close()
			return nil, fmt.Errorf("model %q version %s: %w", rm.Name, rv.Version, err)
		}
	}
	attrs := []any{"model", rm.Name, "version", rv.Version, "provider", sess.Provider()}
	if v.gpuBytes > 0 {
		attrs = append(attrs, "gpu_bytes", v.gpuBytes)
	}
	if note := providerNote(sess); note != "" {
		m.n.log.Warn("model version runs on another execution provider than configured", append(attrs, "reason", note)...)
	} else {
		m.n.log.Info("model version session created", attrs...)
	}
	v.outIndex = make(map[string]int, len(man.Signature.Outputs))
	for i, o := range man.Signature.Outputs {
		v.outIndex[o.Name] = i
	}
	mt := m.n.metrics
	v.okCount = mt.requests.WithLabelValues(rm.Name, rv.Version, "success")
	v.failCount = mt.requests.WithLabelValues(rm.Name, rv.Version, "failure")
	v.reqLat = mt.requestLat.WithLabelValues(rm.Name, rv.Version)
	v.cacheHits = mt.cacheHits.WithLabelValues(rm.Name)
	v.cacheMisses = mt.cacheMisses.WithLabelValues(rm.Name)
	v.obs = &schedObserver{
		queue:   mt.queueLat.WithLabelValues(rm.Name, rv.Version),
		compute: mt.computeLat.WithLabelValues(rm.Name, rv.Version),
		batch:   mt.batchSize.WithLabelValues(rm.Name, rv.Version),
		stats:   v.stats,
	}
	var err error
	v.schedCfg, v.profile, err = m.schedConfig(ctx, rm, sess, man.Signature)
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("model %q version %s: %w", rm.Name, rv.Version, err)
	}
	if p := v.profile; p != nil {
		m.n.log.Info("batch profile", "model", rm.Name, "version", rv.Version, "preferred", p.Preferred, "row_us", p.rowCosts())
	}
	v.sched, err = sched.New(v.schedCfg, sess, man.Signature, v.obs)
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("model %q version %s: scheduler: %w", rm.Name, rv.Version, err)
	}
	return v, nil
}

// schedConfig resolves the scheduler configuration of a version: the
// model config, the automatic concurrency, and preferred batch sizes from
// a batch profile when the config names none.
func (m *manager) schedConfig(ctx context.Context, rm *repoModel, sess models.Session, sig models.Signature) (sched.Config, *BatchProfile, error) {
	c := &rm.Config
	sc := c.schedConfig()
	gpu := sess.Provider() == ort.ProviderCUDA
	if gpu && c.MaxBatchSize == nil {
		sc.MaxBatchSize = GPUMaxBatchSize
	}
	if c.Concurrency == 0 {
		sc.Concurrency = AutoConcurrency(c.runtimeOptions(m.n.cfg.Runtime).IntraOpThreads)
		if gpu {
			sc.Concurrency = GPUConcurrency
		}
	}
	if len(sc.PreferredBatchSizes) > 0 || sc.MaxBatchSize < 2 || (c.ProfileBatchSizes != nil && !*c.ProfileBatchSizes) {
		return sc, nil, nil
	}
	p, ok, err := profileBatches(ctx, sess, sig, sc.MaxBatchSize, profileBudget)
	if err != nil || !ok {
		return sc, nil, err
	}
	sc.PreferredBatchSizes = p.Preferred
	return sc, &p, nil
}

// unload drains and closes every version of a model.
func (m *manager) unload(ctx context.Context, name string) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	delete(m.pipelineSteps, name) // an unloaded pipeline stays unloaded
	m.mu.Lock()
	e, ok := m.models[name]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w: %q is not loaded", ErrModelNotFound, name)
	}
	delete(m.models, name)
	m.mu.Unlock()
	for _, v := range e.versions {
		v.close(ctx)
		m.forgetMetrics(v)
	}
	m.refreshGauges()
	m.generation.Add(1)
	m.n.meshChanged()
	m.n.log.Info("model unloaded", "model", name)
	return nil
}

func (m *manager) closeAll(ctx context.Context) {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	m.mu.Lock()
	all := m.models
	m.models = map[string]*modelEntry{}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range all {
		for _, v := range e.versions {
			wg.Go(func() { v.close(ctx) })
		}
	}
	wg.Wait()
	m.refreshGauges()
	m.generation.Add(1)
	m.n.meshChanged()
}

func (m *manager) refreshGauges() {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var n, b int64
	for _, e := range m.models {
		for _, v := range e.versions {
			n++
			b += v.bytes
		}
	}
	m.n.metrics.loadedModels.Set(float64(n))
	m.n.metrics.loadedBytes.Set(float64(b))
}

// close drains the scheduler (in-flight and queued requests finish) and
// then releases the session.
// forgetMetrics drops the Prometheus series of a version that is gone
// (unloaded or evicted, not replaced by a reload of the same version,
// whose new series share the labels).
func (m *manager) forgetMetrics(v *version) {
	mt, name, ver := m.n.metrics, v.manifest.Name, v.manifest.Version
	mt.modelProvider.DeleteLabelValues(name, ver, v.session.Provider())
	for _, outcome := range []string{"success", "failure"} {
		mt.requests.DeleteLabelValues(name, ver, outcome)
	}
	mt.requestLat.DeleteLabelValues(name, ver)
	mt.queueLat.DeleteLabelValues(name, ver)
	mt.computeLat.DeleteLabelValues(name, ver)
	mt.batchSize.DeleteLabelValues(name, ver)
}

func (v *version) close(ctx context.Context) {
	_ = v.sched.Close(ctx)
	_ = v.session.Close()
	v.transforms.close(ctx)
}

// modelStats backs the per-model statistics endpoint, in the shape of
// Triton's statistics extension.
type modelStats struct {
	inferenceCount atomic.Int64 // rows
	executionCount atomic.Int64 // runtime executions
	successCount   atomic.Int64
	successNs      atomic.Int64
	failCount      atomic.Int64
	failNs         atomic.Int64
	queueCount     atomic.Int64
	queueNs        atomic.Int64
	computeCount   atomic.Int64
	computeNs      atomic.Int64
	cacheHitCount  atomic.Int64
	cacheHitNs     atomic.Int64
	cacheMissCount atomic.Int64
	lastInference  atomic.Int64 // unix ms
}

func (o *schedObserver) QueueTime(d time.Duration) {
	o.queue.Observe(d.Seconds())
	o.stats.queueCount.Add(1)
	o.stats.queueNs.Add(int64(d))
}

func (o *schedObserver) ComputeTime(d time.Duration) {
	o.compute.Observe(d.Seconds())
	o.stats.computeCount.Add(1)
	o.stats.computeNs.Add(int64(d))
}

func (o *schedObserver) BatchSize(rows int) {
	o.batch.Observe(float64(rows))
	o.stats.executionCount.Add(1)
	o.stats.inferenceCount.Add(int64(rows))
}

// installSynced loads a version the coordinator asked for, with its
// registry manifest (signature verified, digest checked by the caller).
// Its golden examples run as the warm-up; it is pinned (never evicted).
// ts, compiled from the manifest's transforms, is owned by the version
// from here on (closed on every path).
func (m *manager) installSynced(ctx context.Context, man *models.Manifest, b []byte, ts *transformSet) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	if v, err := m.lookup(man.Name, man.Version); err == nil && v.manifest.Digest == man.Digest {
		v.synced = true
		ts.close(ctx)
		return nil
	}
	rm := &repoModel{Name: man.Name, Versions: []repoVersion{{Version: man.Version, ModTime: man.CreatedAt}}}
	rm.Config.Golden = man.Golden
	rm.Config.Labels = man.Labels
	v, err := m.loadVersionBytes(ctx, rm, rm.Versions[0], b)
	if err != nil {
		ts.close(ctx)
		return err
	}
	v.transforms = ts
	sig := v.manifest.Signature
	v.manifest = *man
	v.manifest.Signature = sig // what the runtime reports is what requests are checked against
	v.synced = true
	m.mu.Lock()
	e, ok := m.models[man.Name]
	if !ok || e.state != StateReady {
		e = &modelEntry{name: man.Name, state: StateReady, versions: map[string]*version{}, latest: man.Version}
		m.models[man.Name] = e
	}
	old := e.versions[man.Version]
	e.versions[man.Version] = v
	if versionLess(e.latest, man.Version) {
		e.latest = man.Version
	}
	// A synced version is pinned; acquired ones make room for it.
	evicted := m.evictLocked(v)
	m.mu.Unlock()
	if old != nil { // same version, other bytes: the registry changed under us
		old.close(ctx)
	}
	for _, ev := range evicted {
		ev.close(ctx)
		m.forgetMetrics(ev)
	}
	m.n.metrics.modelProvider.WithLabelValues(man.Name, man.Version, v.session.Provider()).Set(1)
	m.refreshGauges()
	m.generation.Add(1)
	m.n.meshChanged()
	return nil
}

// removeVersion drains and unloads one version.
func (m *manager) removeVersion(ctx context.Context, name, ver string) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	m.mu.Lock()
	e, ok := m.models[name]
	if !ok || e.versions[ver] == nil {
		m.mu.Unlock()
		return fmt.Errorf("%w: %q version %q", ErrVersionNotFound, name, ver)
	}
	v := e.versions[ver]
	delete(e.versions, ver)
	if len(e.versions) == 0 {
		delete(m.models, name)
	} else if e.latest == ver {
		e.latest = ""
		for other := range e.versions {
			if e.latest == "" || versionLess(e.latest, other) {
				e.latest = other
			}
		}
	}
	m.mu.Unlock()
	v.close(ctx)
	m.forgetMetrics(v)
	m.refreshGauges()
	m.generation.Add(1)
	m.n.meshChanged()
	return nil
}

// syncedVersions lists a model's versions installed by the control loop.
func (m *manager) syncedVersions(name string) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []string
	if e := m.models[name]; e != nil {
		for ver, v := range e.versions {
			if v.synced {
				out = append(out, ver)
			}
		}
	}
	return out
}

// loadedVersions lists every ready version.
func (m *manager) loadedVersions() []*version {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*version
	for _, e := range m.models {
		if e.state != StateReady {
			continue
		}
		for _, v := range e.versions {
			out = append(out, v)
		}
	}
	return out
}
