package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/validate"
	"github.com/petrel-mesh/petrel/models"
)

// PushRequest is one model version offered to the registry.
type PushRequest struct {
	Name, Version string
	Model         []byte
	Golden        []models.Golden
	Labels        map[string]string
	// AllowBreaking accepts a signature that is incompatible with the
	// previous version's.
	AllowBreaking bool
	// Source is "upload" (default) or "training"; Round, Nodes and Samples
	// describe a training round's result.
	Source  string
	Round   string
	Nodes   []string
	Samples int64
	Actor   string
	// Pre and Post are the optional WebAssembly transforms (multipart
	// parts "pre" and "post", grants in "grants"); Predict are the
	// golden file's predict examples (see validate.PredictExample).
	Pre, Post *validate.TransformModule
	Predict   []validate.PredictExample
}

// PushResult is what a push produced: the signed manifest, or the
// validation report that rejected it.
type PushResult struct {
	Manifest *models.Manifest `json:"manifest,omitempty"`
	Report   *validate.Report `json:"report"`
	Accepted bool             `json:"accepted"`
}

func registryKey(name, ver string) string { return name + "." + ver }

// Push validates a version and, if it passes, stores its artifact and
// signed manifest. A version that fails is not stored; the result's
// report says why (and the error is a 422).
func (c *Coordinator) Push(ctx context.Context, req PushRequest) (*PushResult, error) {
	if !models.ValidName(req.Name) {
		return nil, badRequest("model name %q: want 1-128 letters, digits, '_', '.', '-'", req.Name)
	}
	if !models.ValidVersion(req.Version) {
		return nil, badRequest("version %q: want 1-64 letters, digits, '_', '.', '-'", req.Version)
	}
	if len(req.Model) == 0 {
		return nil, badRequest("model file is empty")
	}
	if int64(len(req.Model)) > c.cfg.MaxModelBytes {
		return nil, errf(http.StatusRequestEntityTooLarge, "model file is %d bytes, the limit is %d", len(req.Model), c.cfg.MaxModelBytes)
	}
	if req.Source == "" {
		req.Source = "upload"
	}
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	if _, _, err := c.manifest(ctx, req.Name, req.Version); err == nil {
		return nil, conflict("model %q version %q already exists; versions are immutable, push a new one", req.Name, req.Version)
	} else if statusOf(err) != http.StatusNotFound {
		return nil, err
	}
	vs, err := c.Versions(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	var prev *models.Manifest
	if len(vs) > 0 {
		prev = &vs[len(vs)-1]
	}
	rep, err := validate.Validate(ctx, req.Model, req.Golden, prev, req.AllowBreaking, c.cfg.Validate)
	if err != nil {
		return nil, fmt.Errorf("validation: %w", err)
	}
	if err := validate.Transforms(ctx, rep, req.Model, req.Pre, req.Post, req.Predict, req.Golden, c.cfg.Validate); err != nil {
		return nil, fmt.Errorf("validation: %w", err)
	}
	ev := bus.AuditEvent{Kind: "validate", Actor: req.Actor, Model: req.Name, Version: req.Version, OK: rep.OK, Detail: rep.Reason,
		Fields: map[string]string{"compatibility": rep.Compatibility, "golden": rep.Golden, "latency_p50": rep.LatencyP50.String()}}
	if !rep.OK {
		c.audit(ctx, ev)
		return &PushResult{Report: rep}, errf(http.StatusUnprocessableEntity, "model %q version %q failed validation: %s", req.Name, req.Version, rep.Reason)
	}
	now := time.Now().UTC()
	man := models.Manifest{
		Name: req.Name, Version: req.Version, Digest: models.DigestBytes(req.Model), Format: models.FormatONNX,
		Signature: rep.Signature, Golden: req.Golden, Labels: req.Labels, CreatedAt: now,
		Lineage: &models.Lineage{Source: req.Source, Round: req.Round, PushedBy: req.Actor, PushedAt: now, Nodes: req.Nodes, Samples: req.Samples},
	}
	if prev != nil {
		man.Lineage.Parent = prev.Version
	}
	if req.Pre != nil || req.Post != nil {
		man.Transforms = &models.Transforms{Pre: req.Pre.Spec(), Post: req.Post.Spec()}
	}
	if err := man.Validate(); err != nil {
		return nil, badRequest("%v", err)
	}
	mj, sig, err := c.signer.Sign(&man)
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	// The artifact goes first: an artifact without a manifest is invisible
	// and collected later; a manifest without its artifact would be a
	// half-written version.
	if _, err := c.b.PutArtifact(ctx, man.Digest, bytes.NewReader(req.Model)); err != nil {
		return nil, fmt.Errorf("store artifact: %w", err)
	}
	for _, t := range []*validate.TransformModule{req.Pre, req.Post} {
		if t == nil {
			continue
		}
		if _, err := c.b.PutArtifact(ctx, models.DigestBytes(t.Wasm), bytes.NewReader(t.Wasm)); err != nil {
			return nil, fmt.Errorf("store transform: %w", err)
		}
	}
	sm := bus.SignedManifest{Manifest: mj, Signature: sig, KeyID: c.signer.KeyID()}
	raw, err := json.Marshal(sm)
	if err != nil {
		return nil, err
	}
	if _, err := c.b.Registry.Create(ctx, registryKey(req.Name, req.Version), raw); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, conflict("model %q version %q already exists", req.Name, req.Version)
		}
		return nil, fmt.Errorf("store manifest: %w", err)
	}
	ev.Fields["digest"] = man.Digest
	c.audit(ctx, ev)
	c.audit(ctx, bus.AuditEvent{Kind: "push", Actor: req.Actor, Model: req.Name, Version: req.Version, OK: true,
		Detail: fmt.Sprintf("%d bytes, %s", len(req.Model), rep.Compatibility),
		Fields: map[string]string{"digest": man.Digest, "parent": man.Lineage.Parent, "source": req.Source, "round": req.Round}})
	c.log.Info("model pushed", "model", req.Name, "version", req.Version, "digest", man.Digest, "actor", req.Actor)
	if err := c.gc(ctx, req.Name); err != nil {
		c.log.Warn("garbage collection failed", "model", req.Name, "err", err)
	}
	return &PushResult{Manifest: &man, Report: rep, Accepted: true}, nil
}

// manifest reads and verifies one registry entry.
func (c *Coordinator) manifest(ctx context.Context, name, ver string) (*models.Manifest, *bus.SignedManifest, error) {
	e, err := c.b.Registry.Get(ctx, registryKey(name, ver))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, nil, notFound("model %q has no version %q", name, ver)
		}
		return nil, nil, err
	}
	return c.decodeEntry(e.Value(), name, ver)
}

func (c *Coordinator) decodeEntry(raw []byte, name, ver string) (*models.Manifest, *bus.SignedManifest, error) {
	var sm bus.SignedManifest
	if err := json.Unmarshal(raw, &sm); err != nil {
		return nil, nil, fmt.Errorf("registry entry %s: %w", registryKey(name, ver), err)
	}
	m, err := models.VerifyManifest(c.signer.PublicKey(), sm.Manifest, sm.Signature)
	if err != nil {
		return nil, nil, fmt.Errorf("registry entry %s: %w", registryKey(name, ver), err)
	}
	return m, &sm, nil
}

// Versions lists a model's versions, oldest first.
func (c *Coordinator) Versions(ctx context.Context, name string) ([]models.Manifest, error) {
	if !models.ValidName(name) {
		return nil, badRequest("model name %q is not valid", name)
	}
	keys, err := c.registryKeys(ctx, name+".>")
	if err != nil {
		return nil, err
	}
	var out []models.Manifest
	for _, k := range keys {
		e, err := c.b.Registry.Get(ctx, k)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return nil, err
		}
		m, _, err := c.decodeEntry(e.Value(), name, strings.TrimPrefix(k, name+"."))
		if err != nil {
			c.log.Warn("skipping a registry entry that does not verify", "key", k, "err", err)
			continue
		}
		if m.Name != name { // "a.b" + "c" vs "a" + "b.c"
			continue
		}
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b models.Manifest) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

func (c *Coordinator) registryKeys(ctx context.Context, filter string) ([]string, error) {
	kl, err := c.b.Registry.ListKeysFiltered(ctx, filter)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	defer kl.Stop()
	var keys []string
	for k := range kl.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// ModelSummary is one row of the model list.
type ModelSummary struct {
	Name     string       `json:"name"`
	Versions []string     `json:"versions"`
	Latest   string       `json:"latest"`
	Desired  *bus.Desired `json:"desired,omitempty"`
}

// Models lists every model in the registry.
func (c *Coordinator) Models(ctx context.Context) ([]ModelSummary, error) {
	keys, err := c.registryKeys(ctx, ">")
	if err != nil {
		return nil, err
	}
	// One pass over the registry: each entry read and verified once.
	byName := map[string][]models.Manifest{}
	for _, k := range keys {
		e, err := c.b.Registry.Get(ctx, k)
		if err != nil {
			continue
		}
		m, _, err := c.decodeEntry(e.Value(), k, "")
		if err != nil {
			c.log.Warn("skipping a registry entry that does not verify", "key", k, "err", err)
			continue
		}
		byName[m.Name] = append(byName[m.Name], *m)
	}
	out := make([]ModelSummary, 0, len(byName))
	for name, vs := range byName {
		slices.SortFunc(vs, func(a, b models.Manifest) int { return a.CreatedAt.Compare(b.CreatedAt) })
		s := ModelSummary{Name: name, Latest: vs[len(vs)-1].Version}
		for _, v := range vs {
			s.Versions = append(s.Versions, v.Version)
		}
		if d, _, err := c.desired(ctx, name); err == nil {
			s.Desired = d
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ModelSummary) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// desired reads a model's desired state (nil, 0 when there is none).
func (c *Coordinator) desired(ctx context.Context, name string) (*bus.Desired, uint64, error) {
	var d bus.Desired
	rev, err := bus.GetJSON(ctx, c.b.Desired, name, &d)
	if err != nil {
		if errors.Is(err, bus.ErrNotFound) {
			return nil, 0, nil
		}
		return nil, 0, err
	}
	return &d, rev, nil
}

// inUse reports the versions of a model that are serving, shadowing or in
// an active rollout.
func (c *Coordinator) inUse(ctx context.Context, name string) (map[string]string, error) {
	use := map[string]string{}
	d, _, err := c.desired(ctx, name)
	if err != nil {
		return nil, err
	}
	if d != nil {
		for _, v := range d.Versions {
			switch {
			case v.Weight > 0:
				use[v.Version] = fmt.Sprintf("serving %.4g%% of traffic", v.Weight)
			case v.Shadow > 0:
				use[v.Version] = "in shadow mode"
			default:
				use[v.Version] = "in the desired state"
			}
		}
	}
	if r := c.ro.active(name); r != nil {
		use[r.Spec.To] = "in rollout " + r.ID
		if r.Spec.From != "" {
			use[r.Spec.From] = "in rollout " + r.ID
		}
	}
	if err := c.pipelineUses(ctx, name, use); err != nil {
		return nil, err
	}
	return use, nil
}

// gc removes the oldest versions beyond KeepVersions that are not in use,
// then their artifacts when no other version shares them.
func (c *Coordinator) gc(ctx context.Context, name string) error {
	vs, err := c.Versions(ctx, name)
	if err != nil {
		return err
	}
	extra := len(vs) - c.cfg.KeepVersions
	if extra <= 0 {
		return nil
	}
	use, err := c.inUse(ctx, name)
	if err != nil {
		return err
	}
	for _, v := range vs {
		if extra == 0 {
			break
		}
		if _, ok := use[v.Version]; ok {
			continue
		}
		if err := c.removeVersion(ctx, &v, "gc", fmt.Sprintf("keeping the last %d versions", c.cfg.KeepVersions)); err != nil {
			return err
		}
		extra--
	}
	return nil
}

// removeVersion deletes a manifest, then its artifact unless another
// version still refers to the same digest.
func (c *Coordinator) removeVersion(ctx context.Context, m *models.Manifest, actor, why string) error {
	if err := c.b.Registry.Purge(ctx, registryKey(m.Name, m.Version)); err != nil {
		return fmt.Errorf("remove manifest %s: %w", registryKey(m.Name, m.Version), err)
	}
	for _, d := range append([]string{m.Digest}, m.Transforms.Digests()...) {
		if d == "" { // a pipeline has no artifact of its own
			continue
		}
		shared, err := c.digestInUse(ctx, d)
		if err != nil {
			return err
		}
		if !shared {
			if err := c.b.DeleteArtifact(ctx, d); err != nil {
				c.log.Warn("artifact not deleted", "digest", d, "err", err)
			}
		}
	}
	c.audit(ctx, bus.AuditEvent{Kind: "rm", Actor: actor, Model: m.Name, Version: m.Version, OK: true, Detail: why,
		Fields: map[string]string{"digest": m.ServingDigest()}})
	c.log.Info("model version removed", "model", m.Name, "version", m.Version, "why", why)
	return nil
}

func (c *Coordinator) digestInUse(ctx context.Context, digest string) (bool, error) {
	keys, err := c.registryKeys(ctx, ">")
	if err != nil {
		return false, err
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
			Digest     string             `json:"digest"`
			Transforms *models.Transforms `json:"transforms"`
		}
		if json.Unmarshal(sm.Manifest, &m) == nil && (m.Digest == digest || slices.Contains(m.Transforms.Digests(), digest)) {
			return true, nil
		}
	}
	return false, nil
}

// Remove deletes one version (ver != "") or a whole model. Versions in use
// (serving, shadowing, in a rollout) are refused.
func (c *Coordinator) Remove(ctx context.Context, name, ver, actor string) error {
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	use, err := c.inUse(ctx, name)
	if err != nil {
		return err
	}
	if ver != "" {
		m, _, err := c.manifest(ctx, name, ver)
		if err != nil {
			return err
		}
		if why, ok := use[ver]; ok {
			return conflict("model %q version %q is %s; roll it out of service first", name, ver, why)
		}
		return c.removeVersion(ctx, m, actor, "removed by "+actor)
	}
	vs, err := c.Versions(ctx, name)
	if err != nil {
		return err
	}
	if len(vs) == 0 {
		return notFound("model %q is not in the registry", name)
	}
	if r := c.ro.active(name); r != nil {
		return conflict("model %q has an active rollout (%s); roll it back or promote it first", name, r.ID)
	}
	// Nodes stop serving it first, then the versions go.
	if err := c.b.Desired.Purge(ctx, name); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("remove desired state: %w", err)
	}
	for i := range vs {
		if err := c.removeVersion(ctx, &vs[i], actor, "model removed by "+actor); err != nil {
			return err
		}
	}
	return nil
}

// Deploy makes one version serve all of a model's traffic at once (a
// first deployment, or a hotfix); rollouts are the gradual way.
func (c *Coordinator) Deploy(ctx context.Context, name, ver string, placement *bus.Placement, actor string) (*bus.Desired, error) {
	m, _, err := c.manifest(ctx, name, ver)
	if err != nil {
		return nil, err
	}
	if r := c.ro.active(name); r != nil {
		return nil, conflict("model %q has an active rollout (%s); pause and roll it back, or promote it, first", name, r.ID)
	}
	old, _, err := c.desired(ctx, name)
	if err != nil {
		return nil, err
	}
	d := bus.Desired{Model: name, Versions: []bus.DesiredVersion{{Version: ver, Digest: m.ServingDigest(), Weight: 100}}, UpdatedAt: time.Now().UTC()}
	if placement != nil {
		d.Placement = *placement
	} else if old != nil {
		d.Placement = old.Placement
	}
	if err := d.Validate(); err != nil {
		return nil, badRequest("%v", err)
	}
	if _, err := bus.PutJSON(ctx, c.b.Desired, name, d); err != nil {
		return nil, fmt.Errorf("write desired state: %w", err)
	}
	c.audit(ctx, bus.AuditEvent{Kind: "deploy", Actor: actor, Model: name, Version: ver, OK: true, Detail: "100% of traffic"})
	return &d, nil
}

// SetShadow mirrors share percent of a model's traffic to a version (0
// stops it). The version must be pushed and must not be serving traffic.
func (c *Coordinator) SetShadow(ctx context.Context, name, ver string, share float64, actor string) (*bus.Desired, error) {
	if share < 0 || share > 100 || share != share {
		return nil, badRequest("shadow share %v: want a percentage in [0, 100]", share)
	}
	m, _, err := c.manifest(ctx, name, ver)
	if err != nil {
		return nil, err
	}
	d, rev, err := c.desired(ctx, name)
	if err != nil {
		return nil, err
	}
	if d == nil || len(d.Versions) == 0 {
		return nil, conflict("model %q serves no version yet; deploy one before shadowing", name)
	}
	nd := *d
	nd.Versions = nil
	found := false
	for _, v := range d.Versions {
		if v.Version == ver {
			if v.Weight > 0 {
				return nil, conflict("model %q version %q serves %.4g%% of traffic; it cannot also be a shadow", name, ver, v.Weight)
			}
			found = true
			if share == 0 {
				continue
			}
			v.Shadow = share
		}
		nd.Versions = append(nd.Versions, v)
	}
	if !found && share > 0 {
		nd.Versions = append(nd.Versions, bus.DesiredVersion{Version: ver, Digest: m.ServingDigest(), Shadow: share})
	}
	nd.UpdatedAt = time.Now().UTC()
	if err := nd.Validate(); err != nil {
		return nil, badRequest("%v", err)
	}
	if _, err := bus.UpdateJSON(ctx, c.b.Desired, name, nd, rev); err != nil {
		return nil, conflict("desired state of %q changed meanwhile; try again (%v)", name, err)
	}
	c.audit(ctx, bus.AuditEvent{Kind: "shadow", Actor: actor, Model: name, Version: ver, OK: true, Detail: fmt.Sprintf("mirror %.4g%% of traffic", share)})
	return &nd, nil
}
