package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/node/sched"
)

// Pipelines. A model whose config.json has a "pipeline" and no version
// directories is virtual: a request to it runs the first step's model,
// feeds its outputs to the second step, and so on; the answer is the last
// step's outputs. Only chains are supported (no DAGs): step i+1 takes its
// inputs from step i's outputs only.
//
// Wiring. When step i has exactly one output and step i+1 exactly one
// input, the one feeds the other whatever their names. Otherwise every
// input of step i+1 is fed by the output of step i with the same name;
// step i's other outputs are dropped.
//
// Validation. A pipeline loads (READY, as version "1") only when every
// step's model is loaded on this node and each link agrees in datatype
// and in shape (same rank; a dimension matches when equal or when either
// side is dynamic, -1). Otherwise it is UNAVAILABLE with the reason in the
// repository index. Loading a step model validates the pipelines that use
// it again, so the order models load in does not matter.
//
// Runtime. Each step goes through its model's own scheduler (and so its
// dynamic batching, queue bound and metrics); the pipeline's scheduler
// does not batch by default (max_batch_size 1) and runs up to
// defaultPipelineConcurrency requests at once. Steps are looked up per
// request, so a reloaded step is used at once; a step unloaded later
// makes requests fail with 503 until it is back.

// PipelineConfig is the "pipeline" of a model's config.json.
type PipelineConfig struct {
	// Steps run in order; at least two (a one-step pipeline is an alias,
	// which is not what a pipeline is for), at most maxPipelineSteps.
	Steps []PipelineStep `json:"steps"`
}

// PipelineStep is one model of a pipeline.
type PipelineStep struct {
	// Model is the step's model name.
	Model string `json:"model"`
	// Version pins a version; "" is the model's latest.
	Version string `json:"version,omitempty"`
}

// maxPipelineSteps bounds a pipeline's length.
const maxPipelineSteps = models.MaxPipelineSteps

// defaultPipelineConcurrency is how many requests a pipeline runs at
// once when its config does not say; each step has its own bound.
const defaultPipelineConcurrency = 32

// pipelineVersion is the version a pipeline model is served as.
const pipelineVersion = "1"

func (p *PipelineConfig) validate() error {
	if len(p.Steps) < 2 || len(p.Steps) > maxPipelineSteps {
		return fmt.Errorf("%d steps: want 2..%d", len(p.Steps), maxPipelineSteps)
	}
	for i, s := range p.Steps {
		if !models.ValidName(s.Model) {
			return fmt.Errorf("step %d: model %q: want 1-128 letters, digits, '_', '.', '-'", i+1, s.Model)
		}
		if s.Version != "" && !models.ValidVersion(s.Version) {
			return fmt.Errorf("step %d: version %q: want 1-64 letters, digits, '_', '.', '-'", i+1, s.Version)
		}
	}
	return nil
}

// link feeds output from of one step to input to of the next.
type link struct{ from, to string }

// pipelineSession runs a pipeline's steps through their schedulers. It
// is the models.Session of the pipeline's version.
type pipelineSession struct {
	m     *manager
	name  string
	steps []PipelineStep
	sig   models.Signature
	links [][]link // links[i]: step i's outputs to step i+1's inputs
}

var _ models.Session = (*pipelineSession)(nil)

func (s *pipelineSession) Signature() models.Signature { return s.sig }
func (s *pipelineSession) Provider() string            { return "pipeline" }
func (s *pipelineSession) Close() error                { return nil }

// Run runs the steps in order; outputs selects the last step's outputs
// (nil: all of them).
func (s *pipelineSession) Run(ctx context.Context, inputs []models.Tensor, outputs []string) ([]models.Tensor, error) {
	cur := inputs
	last := len(s.steps) - 1
	for i, st := range s.steps {
		v, err := s.m.lookup(st.Model, st.Version)
		if err != nil {
			return nil, fmt.Errorf("pipeline %q step %d: %w", s.name, i+1, err)
		}
		if i > 0 {
			// The step may have been reloaded with another signature.
			if err := checkInputs(&v.manifest.Signature, cur); err != nil {
				return nil, fmt.Errorf("pipeline %q step %d (%s): %w: %v", s.name, i+1, st.Model, errPipelineMismatch, err)
			}
		}
		var want []string
		if i == last {
			want = outputs
		}
		outs, err := v.sched.Submit(ctx, &sched.Request{Inputs: cur, Outputs: want})
		if err != nil {
			return nil, fmt.Errorf("pipeline %q step %d (%s): %w", s.name, i+1, st.Model, err)
		}
		if i == last {
			return outs, nil
		}
		next := make([]models.Tensor, len(s.links[i]))
		for j, l := range s.links[i] {
			k := slices.IndexFunc(outs, func(t models.Tensor) bool { return t.Name == l.from })
			if k < 0 {
				return nil, fmt.Errorf("pipeline %q step %d (%s): %w: output %q missing from its answer", s.name, i+1, st.Model, errPipelineMismatch, l.from)
			}
			next[j] = outs[k]
			next[j].Name = l.to
		}
		cur = next
	}
	return nil, errors.New("pipeline has no steps")
}

// errPipelineMismatch: a step's outputs no longer fit the next step.
var errPipelineMismatch = errors.New("pipeline steps no longer fit together")

// planPipeline checks a pipeline against the models loaded now and wires
// its steps. The error says which step or link is wrong.
func (m *manager) planPipeline(name string, p *PipelineConfig) (*pipelineSession, error) {
	s := &pipelineSession{m: m, name: name, steps: slices.Clone(p.Steps)}
	sigs := make([]models.Signature, len(p.Steps))
	for i, st := range p.Steps {
		v, err := m.lookup(st.Model, st.Version)
		if err != nil {
			return nil, fmt.Errorf("pipeline %q step %d: %w", name, i+1, err)
		}
		sigs[i] = v.manifest.Signature
	}
	sig, links, err := models.PipelineSignature(sigs)
	if err != nil {
		var le *models.StepLinkError
		if !errors.As(err, &le) {
			return nil, fmt.Errorf("pipeline %q: %w", name, err)
		}
		i := le.Step // 1-based index of the producing step
		pname, cname := p.Steps[i-1].Model, p.Steps[i].Model
		if le.Output == "" {
			return nil, fmt.Errorf("pipeline %q: step %d (%s) input %q has no output of that name in step %d (%s), whose outputs are [%s]", name, i+1, cname, le.Input, i, pname, strings.Join(le.Outputs, ", "))
		}
		return nil, fmt.Errorf("pipeline %q: step %d (%s) output %q does not fit step %d (%s) input %q: %v", name, i, pname, le.Output, i+1, cname, le.Input, le.Err)
	}
	for _, ls := range links {
		ll := make([]link, len(ls))
		for j, l := range ls {
			ll[j] = link{l.From, l.To}
		}
		s.links = append(s.links, ll)
	}
	s.sig = sig
	return s, nil
}

// specsFit reports whether a tensor produced as out can be fed as in
// (models.SpecFits, the rule the coordinator checks at push time too).
func specsFit(out, in models.TensorSpec) error { return models.SpecFits(out, in) }

// loadPipeline (re)loads a pipeline model. The caller holds loadMu. A
// pipeline that does not validate is UNAVAILABLE with the reason, even if
// it was ready before: its steps changed under it.
func (m *manager) loadPipeline(ctx context.Context, rm *repoModel) error {
	p := rm.Config.Pipeline
	steps := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		steps[i] = s.Model
	}
	m.pipelineSteps[rm.Name] = steps
	fail := func(err error) error {
		m.mu.Lock()
		old := m.models[rm.Name]
		m.models[rm.Name] = &modelEntry{name: rm.Name, state: StateUnavailable, reason: err.Error()}
		m.mu.Unlock()
		if old != nil {
			for _, v := range old.versions {
				v.close(ctx)
				m.forgetMetrics(v)
			}
			m.refreshGauges()
			m.generation.Add(1)
			m.n.meshChanged()
		}
		m.n.log.Warn("pipeline unavailable", "model", rm.Name, "err", err)
		return err
	}
	ps, err := m.planPipeline(rm.Name, p)
	if err != nil {
		return fail(err)
	}
	// The pipeline's own scheduler passes requests through; its steps'
	// schedulers batch.
	prm := *rm
	if prm.Config.MaxBatchSize == nil {
		one := 1
		prm.Config.MaxBatchSize = &one
	}
	if prm.Config.Concurrency == 0 {
		prm.Config.Concurrency = defaultPipelineConcurrency
	}
	noProfile := false
	prm.Config.ProfileBatchSizes = &noProfile
	digest, err := m.pipelineDigest(rm.Name, p)
	if err != nil {
		return fail(err)
	}
	v, err := m.newVersion(ctx, &prm, repoVersion{Version: pipelineVersion, ModTime: time.Now()}, ps, digest, 0)
	if err != nil {
		return fail(err)
	}
	m.mu.Lock()
	old := m.models[rm.Name]
	m.models[rm.Name] = &modelEntry{name: rm.Name, state: StateReady, versions: map[string]*version{pipelineVersion: v}, latest: pipelineVersion}
	m.mu.Unlock()
	if old != nil {
		for _, ov := range old.versions {
			ov.close(ctx)
		}
	}
	m.n.metrics.modelProvider.WithLabelValues(rm.Name, pipelineVersion, ps.Provider()).Set(1)
	m.refreshGauges()
	m.generation.Add(1)
	m.n.meshChanged()
	m.n.log.Info("pipeline loaded", "model", rm.Name, "steps", strings.Join(steps, " -> "))
	return nil
}

// pipelineDigest identifies a pipeline by its steps and their digests, so
// that a changed step changes the pipeline's digest.
func (m *manager) pipelineDigest(name string, p *PipelineConfig) (string, error) {
	type step struct {
		Model, Version, Digest string
	}
	all := make([]step, len(p.Steps))
	for i, s := range p.Steps {
		v, err := m.lookup(s.Model, s.Version)
		if err != nil {
			return "", fmt.Errorf("pipeline %q step %d: %w", name, i+1, err)
		}
		all[i] = step{s.Model, v.manifest.Version, v.manifest.Digest}
	}
	b, err := json.Marshal(all)
	if err != nil {
		return "", err
	}
	return models.DigestBytes(b), nil
}

// reloadPipelinesUsing validates again, and reloads, every pipeline that
// has name as a step, after name was loaded. depth bounds pipelines of
// pipelines.
func (m *manager) reloadPipelinesUsing(ctx context.Context, name string, depth int) {
	if depth > maxPipelineSteps {
		return
	}
	m.loadMu.Lock()
	var users []string
	for p, steps := range m.pipelineSteps {
		if slices.Contains(steps, name) {
			users = append(users, p)
		}
	}
	m.loadMu.Unlock()
	sort.Strings(users)
	for _, p := range users {
		if err := m.loadOne(ctx, p); err == nil {
			m.reloadPipelinesUsing(ctx, p, depth+1)
		}
	}
}

// Synced pipelines. A pipeline version the coordinator deploys comes as
// a signed manifest of format models.FormatPipeline that pins each step's
// version and digest. The control loop installs the step versions first
// (as synced versions of their own models, with no traffic split of
// their own unless their model is deployed too; control.go), then calls
// installSyncedPipeline, which checks every step is loaded with the
// pinned digest and that the steps, as loaded here, still wire into the
// signature the manifest signs.

// installSyncedPipeline loads a pipeline version from its verified
// manifest. It is pinned (never evicted) like any synced version.
func (m *manager) installSyncedPipeline(ctx context.Context, man *models.Manifest) error {
	if man.Format != models.FormatPipeline || man.Pipeline == nil {
		return fmt.Errorf("model %q version %q is not a pipeline", man.Name, man.Version)
	}
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	want := man.ServingDigest()
	if v, err := m.lookup(man.Name, man.Version); err == nil && v.manifest.ServingDigest() == want {
		v.synced = true
		return nil
	}
	pc := &PipelineConfig{Steps: make([]PipelineStep, len(man.Pipeline.Steps))}
	for i, st := range man.Pipeline.Steps {
		v, err := m.lookup(st.Model, st.Version)
		if err != nil {
			return fmt.Errorf("pipeline %q step %d: %w", man.Name, i+1, err)
		}
		if d := v.manifest.ServingDigest(); d != st.Digest {
			return fmt.Errorf("pipeline %q step %d: %s version %s here has digest %s, the pipeline pins %s", man.Name, i+1, st.Model, st.Version, d, st.Digest)
		}
		pc.Steps[i] = PipelineStep{Model: st.Model, Version: st.Version}
	}
	ps, err := m.planPipeline(man.Name, pc)
	if err != nil {
		return err
	}
	if !sameSignature(ps.sig, man.Signature) {
		return fmt.Errorf("pipeline %q version %s: its steps as loaded here wire into inputs %s and outputs %s, the manifest signs inputs %s and outputs %s",
			man.Name, man.Version, specNames(ps.sig.Inputs), specNames(ps.sig.Outputs), specNames(man.Signature.Inputs), specNames(man.Signature.Outputs))
	}
	one := 1
	noProfile := false
	rm := &repoModel{Name: man.Name}
	rm.Config.Labels = man.Labels
	rm.Config.MaxBatchSize = &one
	rm.Config.Concurrency = defaultPipelineConcurrency
	rm.Config.ProfileBatchSizes = &noProfile
	v, err := m.newVersion(ctx, rm, repoVersion{Version: man.Version, ModTime: man.CreatedAt}, ps, want, 0)
	if err != nil {
		return err
	}
	v.manifest = *man
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
	m.mu.Unlock()
	if old != nil {
		old.close(ctx)
	}
	m.n.metrics.modelProvider.WithLabelValues(man.Name, man.Version, ps.Provider()).Set(1)
	m.refreshGauges()
	m.generation.Add(1)
	m.n.meshChanged()
	m.n.log.Info("pipeline version loaded", "model", man.Name, "version", man.Version, "steps", len(pc.Steps))
	return nil
}

// pinnedSteps lists the step versions that the loaded synced pipelines
// run, which the control loop must not retire.
func (m *manager) pinnedSteps() map[vkey]bool {
	out := map[vkey]bool{}
	for _, v := range m.loadedVersions() {
		if v.synced && v.manifest.Pipeline != nil {
			for _, st := range v.manifest.Pipeline.Steps {
				out[vkey{st.Model, st.Version}] = true
			}
		}
	}
	return out
}

// sameSignature reports whether two signatures have the same inputs and
// outputs in the same order.
func sameSignature(a, b models.Signature) bool {
	eq := func(x, y []models.TensorSpec) bool {
		return slices.EqualFunc(x, y, func(s, t models.TensorSpec) bool {
			return s.Name == t.Name && s.DataType == t.DataType && slices.Equal(s.Shape, t.Shape)
		})
	}
	return eq(a.Inputs, b.Inputs) && eq(a.Outputs, b.Outputs)
}
