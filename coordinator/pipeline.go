package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/validate"
	"github.com/petrel-mesh/petrel/models"
)

// Pipelines (docs/coordinator.md, "Pipelines"). A pipeline version is a
// signed manifest of format models.FormatPipeline that pins a chain of
// other models' versions; it has no artifact. At push time every step
// must be in the registry as an ONNX version, each step's outputs must
// wire into the next step's inputs (models.WirePipeline, the rule nodes
// apply too), and the resulting signature (first step's inputs, last
// step's outputs) must be compatible with the model's previous version
// unless breaking changes are allowed. It deploys and rolls out like any
// version; its desired-state digest is the manifest's ServingDigest. A
// version that a pipeline in the registry pins is in use: it is neither
// removed nor garbage-collected.

// PipelineRequest is the body of POST /v1/models/{m}/versions/{v}/pipeline.
type PipelineRequest struct {
	Steps  []PipelineStepRef `json:"steps"`
	Labels map[string]string `json:"labels,omitempty"`
	// AllowBreaking accepts a signature that is incompatible with the
	// previous version's.
	AllowBreaking bool `json:"allow_breaking,omitempty"`
}

// PipelineStepRef names one step's model and pinned version.
type PipelineStepRef struct {
	Model   string `json:"model"`
	Version string `json:"version"`
}

// PushPipeline validates a pipeline version against the registry and, if
// its steps exist and fit together, signs and stores its manifest. A
// malformed request is a 400; a step that is missing, is not an ONNX
// version, or does not fit the next step is a 422 saying which.
func (c *Coordinator) PushPipeline(ctx context.Context, name, ver string, req PipelineRequest, actor string) (*models.Manifest, error) {
	if !models.ValidName(name) {
		return nil, badRequest("model name %q: want 1-128 letters, digits, '_', '.', '-'", name)
	}
	if !models.ValidVersion(ver) {
		return nil, badRequest("version %q: want 1-64 letters, digits, '_', '.', '-'", ver)
	}
	if len(req.Labels) > bus.MaxLabels {
		return nil, badRequest("%d labels, at most %d", len(req.Labels), bus.MaxLabels)
	}
	p := &models.Pipeline{Steps: make([]models.PipelineStep, len(req.Steps))}
	for i, s := range req.Steps {
		p.Steps[i] = models.PipelineStep{Model: s.Model, Version: s.Version}
	}
	if err := p.Validate(name); err != nil {
		return nil, badRequest("%v", err)
	}
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	if _, _, err := c.manifest(ctx, name, ver); err == nil {
		return nil, conflict("model %q version %q already exists; versions are immutable, push a new one", name, ver)
	} else if statusOf(err) != http.StatusNotFound {
		return nil, err
	}
	refuse := func(compat, format string, a ...any) error {
		reason := fmt.Sprintf(format, a...)
		c.audit(ctx, bus.AuditEvent{Kind: "validate", Actor: actor, Model: name, Version: ver, OK: false, Detail: reason,
			Fields: map[string]string{"compatibility": compat, "format": models.FormatPipeline}})
		return errf(http.StatusUnprocessableEntity, "pipeline %q version %q refused: %s", name, ver, reason)
	}
	sigs := make([]models.Signature, len(p.Steps))
	for i := range p.Steps {
		st := &p.Steps[i]
		sm, _, err := c.manifest(ctx, st.Model, st.Version)
		if err != nil {
			if statusOf(err) == http.StatusNotFound {
				return nil, refuse("unknown", "step %d: %v", i+1, err)
			}
			return nil, err
		}
		if sm.Format != models.FormatONNX {
			return nil, refuse("unknown", "step %d: %s version %s has format %q; steps must be %q versions", i+1, st.Model, st.Version, sm.Format, models.FormatONNX)
		}
		st.Digest = sm.ServingDigest()
		sigs[i] = sm.Signature
	}
	sig, _, err := models.PipelineSignature(sigs)
	if err != nil {
		var le *models.StepLinkError
		if errors.As(err, &le) {
			i := le.Step
			a, b := p.Steps[i-1], p.Steps[i]
			if le.Output == "" {
				return nil, refuse("unknown", "step %d (%s %s) input %q has no output of that name in step %d (%s %s), whose outputs are [%s]",
					i+1, b.Model, b.Version, le.Input, i, a.Model, a.Version, strings.Join(le.Outputs, ", "))
			}
			return nil, refuse("unknown", "step %d (%s %s) output %q does not fit step %d (%s %s) input %q: %v",
				i, a.Model, a.Version, le.Output, i+1, b.Model, b.Version, le.Input, le.Err)
		}
		return nil, refuse("unknown", "%v", err)
	}
	vs, err := c.Versions(ctx, name)
	if err != nil {
		return nil, err
	}
	compat, parent := "first version", ""
	if len(vs) > 0 {
		prev := vs[len(vs)-1]
		parent = prev.Version
		compat = "compatible"
		if breaking, _ := validate.CompareSignatures(prev.Signature, sig); len(breaking) > 0 {
			compat = "breaking: " + strings.Join(breaking, "; ")
			if !req.AllowBreaking {
				return nil, refuse(compat, "breaking change from version %s, not allowed: %s", prev.Version, strings.Join(breaking, "; "))
			}
		}
	}
	now := time.Now().UTC()
	man := models.Manifest{
		Name: name, Version: ver, Format: models.FormatPipeline, Signature: sig, Labels: req.Labels, CreatedAt: now,
		Lineage:  &models.Lineage{Source: "upload", PushedBy: actor, PushedAt: now, Parent: parent},
		Pipeline: p,
	}
	if err := man.Validate(); err != nil {
		return nil, badRequest("%v", err)
	}
	mj, sigBytes, err := c.signer.Sign(&man)
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	raw, err := json.Marshal(bus.SignedManifest{Manifest: mj, Signature: sigBytes, KeyID: c.signer.KeyID()})
	if err != nil {
		return nil, err
	}
	if _, err := c.b.Registry.Create(ctx, registryKey(name, ver), raw); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, conflict("model %q version %q already exists", name, ver)
		}
		return nil, fmt.Errorf("store manifest: %w", err)
	}
	steps := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		steps[i] = s.Model + ":" + s.Version
	}
	digest := man.ServingDigest()
	c.audit(ctx, bus.AuditEvent{Kind: "validate", Actor: actor, Model: name, Version: ver, OK: true, Detail: "pipeline steps fit together",
		Fields: map[string]string{"compatibility": compat, "format": models.FormatPipeline, "digest": digest}})
	c.audit(ctx, bus.AuditEvent{Kind: "push", Actor: actor, Model: name, Version: ver, OK: true,
		Detail: fmt.Sprintf("pipeline %s, %s", strings.Join(steps, " -> "), compat),
		Fields: map[string]string{"digest": digest, "parent": parent, "source": "upload", "format": models.FormatPipeline}})
	c.log.Info("pipeline pushed", "model", name, "version", ver, "steps", strings.Join(steps, " -> "), "actor", actor)
	if err := c.gc(ctx, name); err != nil {
		c.log.Warn("garbage collection failed", "model", name, "err", err)
	}
	return &man, nil
}

// pipelineUses adds to use the versions of model name that a pipeline
// version in the registry pins as a step. It reads the manifests without
// verifying them: being conservative about what is in use is safe.
func (c *Coordinator) pipelineUses(ctx context.Context, name string, use map[string]string) error {
	keys, err := c.registryKeys(ctx, ">")
	if err != nil {
		return err
	}
	for _, k := range keys {
		e, err := c.b.Registry.Get(ctx, k)
		if err != nil {
			continue
		}
		var sm bus.SignedManifest
		if json.Unmarshal(e.Value(), &sm) != nil {
			continue
		}
		var m struct {
			Name     string           `json:"name"`
			Version  string           `json:"version"`
			Pipeline *models.Pipeline `json:"pipeline"`
		}
		if json.Unmarshal(sm.Manifest, &m) != nil || m.Pipeline == nil {
			continue
		}
		for _, s := range m.Pipeline.Steps {
			if s.Model == name {
				if _, ok := use[s.Version]; !ok {
					use[s.Version] = fmt.Sprintf("a step of pipeline %q version %q", m.Name, m.Version)
				}
			}
		}
	}
	return nil
}

// handlePushPipeline takes a JSON PipelineRequest.
func (c *Coordinator) handlePushPipeline(w http.ResponseWriter, r *http.Request, tok *Token) {
	var req PipelineRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	man, err := c.PushPipeline(r.Context(), r.PathValue("model"), r.PathValue("version"), req, tok.Name)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"manifest": man, "accepted": true})
}
