package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
)

// rolloutController advances canary rollouts. A rollout's state lives in
// the rollouts KV bucket and is written after every tick, so a coordinator
// that crashes resumes each rollout where it was (at worst one tick back);
// the desired state is re-derived from it at start.
type rolloutController struct {
	c  *Coordinator
	mu sync.Mutex
	// byModel holds the latest rollout of each model and its KV revision.
	byModel map[string]*roEntry
}

type roEntry struct {
	r   *rollout.Rollout
	rev uint64
}

func newRolloutController(c *Coordinator) *rolloutController {
	return &rolloutController{c: c, byModel: map[string]*roEntry{}}
}

// load reads every rollout back and re-applies the desired state of the
// ones still in progress.
func (rc *rolloutController) load(ctx context.Context) error {
	kl, err := rc.c.b.Rollouts.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil
		}
		return fmt.Errorf("coordinator: list rollouts: %w", err)
	}
	var keys []string
	for k := range kl.Keys() {
		keys = append(keys, k)
	}
	kl.Stop()
	for _, k := range keys {
		var r rollout.Rollout
		rev, err := bus.GetJSON(ctx, rc.c.b.Rollouts, k, &r)
		if err != nil {
			rc.c.log.Warn("skipping an unreadable rollout", "key", k, "err", err)
			continue
		}
		if err := r.Spec.Validate(); err != nil {
			rc.c.log.Warn("skipping an invalid rollout", "key", k, "err", err)
			continue
		}
		rc.byModel[r.Spec.Model] = &roEntry{r: &r, rev: rev}
		if !r.Terminal() {
			if err := rc.applyDesired(ctx, &r); err != nil {
				return fmt.Errorf("coordinator: resume rollout %s: %w", r.ID, err)
			}
			rc.c.log.Info("rollout resumed", "id", r.ID, "model", r.Spec.Model, "state", r.State, "step", r.Step)
			rc.c.audit(ctx, bus.AuditEvent{Kind: "rollout.resume", Actor: "coordinator", Model: r.Spec.Model, Version: r.Spec.To, OK: true,
				Detail: fmt.Sprintf("coordinator restarted; rollout %s continues %s at step %d", r.ID, r.State, r.Step+1)})
		}
	}
	return nil
}

// active returns a copy of the model's rollout if it is in progress.
func (rc *rolloutController) active(model string) *rollout.Rollout {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	e := rc.byModel[model]
	if e == nil || e.r.Terminal() {
		return nil
	}
	cp := *e.r
	return &cp
}

// get returns a copy of the model's latest rollout.
func (rc *rolloutController) get(model string) *rollout.Rollout {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	e := rc.byModel[model]
	if e == nil {
		return nil
	}
	cp := *e.r
	return &cp
}

func (rc *rolloutController) run(ctx context.Context) {
	t := time.NewTicker(rc.c.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			rc.tick(ctx, now)
		}
	}
}

func (rc *rolloutController) tick(ctx context.Context, now time.Time) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	keep := map[vkey]bool{}
	for model, e := range rc.byModel {
		r := e.r
		if r.Terminal() {
			continue
		}
		keep[vkey{model, r.Spec.To}] = true
		keep[vkey{model, r.Spec.From}] = true
		to := rc.c.ingest.take(model, r.Spec.To)
		from := rc.c.ingest.take(model, r.Spec.From)
		r.Observe(to, from)
		d := r.Tick(now)
		if d.Action != rollout.ActionNone {
			if err := rc.applyDesired(ctx, r); err != nil {
				rc.c.log.Error("rollout decision not applied; retrying next tick", "id", r.ID, "err", err)
			}
			rc.auditDecision(ctx, r, d)
		}
		if err := rc.saveLocked(ctx, e); err != nil {
			rc.c.log.Error("rollout state not saved", "id", r.ID, "err", err)
		}
	}
	rc.c.ingest.drop(keep)
}

func (rc *rolloutController) auditDecision(ctx context.Context, r *rollout.Rollout, d rollout.Decision) {
	kind := map[rollout.Action]string{
		rollout.ActionAdvance:  "rollout.step",
		rollout.ActionPromote:  "promote",
		rollout.ActionRollback: "rollback",
	}[d.Action]
	_, to := r.Weights()
	rc.c.audit(ctx, bus.AuditEvent{Kind: kind, Actor: "coordinator", Model: r.Spec.Model, Version: r.Spec.To, OK: d.Action != rollout.ActionRollback,
		Detail: d.Reason, Fields: map[string]string{"rollout": r.ID, "weight": fmt.Sprintf("%.4g", to), "from": r.Spec.From}})
	rc.c.log.Info("rollout "+kind, "id", r.ID, "model", r.Spec.Model, "to", r.Spec.To, "weight", to, "reason", d.Reason)
}

// saveLocked writes the rollout with its revision (optimistic concurrency:
// a second coordinator writing the same rollout makes this one re-read).
func (rc *rolloutController) saveLocked(ctx context.Context, e *roEntry) error {
	rev, err := bus.UpdateJSON(ctx, rc.c.b.Rollouts, e.r.Spec.Model, e.r, e.rev)
	if err != nil {
		var r rollout.Rollout
		if nrev, gerr := bus.GetJSON(ctx, rc.c.b.Rollouts, e.r.Spec.Model, &r); gerr == nil {
			e.r, e.rev = &r, nrev
		}
		return err
	}
	e.rev = rev
	return nil
}

// applyDesired writes the traffic split the rollout calls for.
func (rc *rolloutController) applyDesired(ctx context.Context, r *rollout.Rollout) error {
	c := rc.c
	fromW, toW := r.Weights()
	toMan, _, err := c.manifest(ctx, r.Spec.Model, r.Spec.To)
	if err != nil {
		return err
	}
	old, _, err := c.desired(ctx, r.Spec.Model)
	if err != nil {
		return err
	}
	d := bus.Desired{Model: r.Spec.Model, Rollout: r.ID, UpdatedAt: time.Now().UTC()}
	if old != nil {
		d.Placement = old.Placement
	}
	// The serving version first, the candidate last: routing.Split keeps a
	// request key on the candidate as its weight grows.
	if r.Spec.From != "" {
		fromMan, _, err := c.manifest(ctx, r.Spec.Model, r.Spec.From)
		if err != nil {
			return err
		}
		if fromW > 0 || toW < 100 {
			d.Versions = append(d.Versions, bus.DesiredVersion{Version: r.Spec.From, Digest: fromMan.ServingDigest(), Weight: fromW})
		}
	} else if toW < 100 {
		toW = 100 // a first deployment has nothing to fall back to
		if r.State == rollout.StateRolledBack {
			toW = 0
		}
	}
	if toW > 0 || r.Spec.From != "" {
		d.Versions = append(d.Versions, bus.DesiredVersion{Version: r.Spec.To, Digest: toMan.ServingDigest(), Weight: toW})
	}
	if r.Spec.From != "" && toW == 0 {
		// Rolled back: only the old version stays.
		d.Versions = d.Versions[:1]
		d.Versions[0].Weight = 100
	}
	if toW == 100 && r.Spec.From != "" && fromW == 0 {
		d.Versions = []bus.DesiredVersion{{Version: r.Spec.To, Digest: toMan.ServingDigest(), Weight: 100}}
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("desired state of rollout %s: %w", r.ID, err)
	}
	_, err = bus.PutJSON(ctx, c.b.Desired, r.Spec.Model, d)
	return err
}

// StartRollout begins a canary rollout of spec.To. The version serving
// the model now becomes spec.From.
func (c *Coordinator) StartRollout(ctx context.Context, spec rollout.Spec) (*rollout.Rollout, error) {
	rc := c.ro
	if _, _, err := c.manifest(ctx, spec.Model, spec.To); err != nil {
		return nil, err
	}
	d, _, err := c.desired(ctx, spec.Model)
	if err != nil {
		return nil, err
	}
	spec.From = ""
	if d != nil {
		var serving []string
		for _, v := range d.Versions {
			if v.Weight > 0 {
				serving = append(serving, v.Version)
			}
		}
		switch len(serving) {
		case 0:
		case 1:
			spec.From = serving[0]
		default:
			return nil, conflict("model %q splits traffic between %s; deploy or roll back to one version before a rollout", spec.Model, strings.Join(serving, ", "))
		}
	}
	if spec.From == spec.To {
		return nil, conflict("model %q version %q already serves all traffic", spec.Model, spec.To)
	}
	if err := spec.Validate(); err != nil {
		return nil, badRequest("%v", err)
	}
	now := time.Now().UTC()
	id := fmt.Sprintf("%s-%s-%s", spec.Model, spec.To, now.Format("20060102T150405"))
	r, err := rollout.New(id, spec, now)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	e := rc.byModel[spec.Model]
	var rev uint64
	if e != nil {
		if !e.r.Terminal() {
			return nil, conflict("model %q already has a rollout in progress (%s, %s); pause, promote or roll it back first", spec.Model, e.r.ID, e.r.State)
		}
		rev = e.rev
	}
	// CAS on the rollout key: two coordinators (or two requests) cannot
	// both start one.
	nrev, err := bus.UpdateJSON(ctx, c.b.Rollouts, spec.Model, r, rev)
	if err != nil {
		return nil, conflict("another rollout of %q started meanwhile: %v", spec.Model, err)
	}
	ne := &roEntry{r: r, rev: nrev}
	rc.byModel[spec.Model] = ne
	if err := rc.applyDesired(ctx, r); err != nil {
		return nil, err
	}
	_, toW := r.Weights()
	c.audit(ctx, bus.AuditEvent{Kind: "rollout.start", Actor: spec.Actor, Model: spec.Model, Version: spec.To, OK: true,
		Detail: fmt.Sprintf("from %q, steps %v, interval %s", spec.From, spec.Steps, spec.Interval),
		Fields: map[string]string{"rollout": id, "weight": fmt.Sprintf("%.4g", toW)}})
	cp := *r
	return &cp, nil
}

// RolloutAction is pause, resume, promote or rollback.
func (c *Coordinator) RolloutAction(ctx context.Context, model, action, actor, reason string) (*rollout.Rollout, error) {
	rc := c.ro
	rc.mu.Lock()
	defer rc.mu.Unlock()
	e := rc.byModel[model]
	if e == nil {
		return nil, notFound("model %q has no rollout", model)
	}
	now := time.Now().UTC()
	var err error
	switch action {
	case "pause":
		err = e.r.Pause(now, actor)
	case "resume":
		err = e.r.Resume(now, actor)
	case "promote":
		err = e.r.Promote(now, actor)
	case "rollback":
		if reason == "" {
			reason = "rolled back by " + actor
		}
		err = e.r.Rollback(now, actor, reason)
	default:
		return nil, badRequest("unknown rollout action %q (pause, resume, promote, rollback)", action)
	}
	if err != nil {
		return nil, conflict("%v", err)
	}
	if err := rc.applyDesired(ctx, e.r); err != nil {
		return nil, err
	}
	if err := rc.saveLocked(ctx, e); err != nil {
		return nil, err
	}
	kind := map[string]string{"pause": "rollout.pause", "resume": "rollout.resume", "promote": "promote", "rollback": "rollback"}[action]
	c.audit(ctx, bus.AuditEvent{Kind: kind, Actor: actor, Model: model, Version: e.r.Spec.To, OK: true, Detail: e.r.Reason,
		Fields: map[string]string{"rollout": e.r.ID}})
	cp := *e.r
	return &cp, nil
}

// RollbackTo serves a kept version with all traffic, ending any rollout.
func (c *Coordinator) RollbackTo(ctx context.Context, model, ver, actor string) (*bus.Desired, error) {
	if r := c.ro.active(model); r != nil {
		if _, err := c.RolloutAction(ctx, model, "rollback", actor, fmt.Sprintf("rolled back to %s by %s", ver, actor)); err != nil {
			return nil, err
		}
	}
	m, _, err := c.manifest(ctx, model, ver)
	if err != nil {
		return nil, err
	}
	old, _, err := c.desired(ctx, model)
	if err != nil {
		return nil, err
	}
	d := bus.Desired{Model: model, Versions: []bus.DesiredVersion{{Version: ver, Digest: m.ServingDigest(), Weight: 100}}, UpdatedAt: time.Now().UTC()}
	if old != nil {
		d.Placement = old.Placement
	}
	if _, err := bus.PutJSON(ctx, c.b.Desired, model, d); err != nil {
		return nil, err
	}
	c.audit(ctx, bus.AuditEvent{Kind: "rollback", Actor: actor, Model: model, Version: ver, OK: true, Detail: "all traffic to " + ver})
	return &d, nil
}

// Rollout returns a model's latest rollout.
func (c *Coordinator) Rollout(model string) (*rollout.Rollout, error) {
	r := c.ro.get(model)
	if r == nil {
		return nil, notFound("model %q has no rollout", model)
	}
	return r, nil
}
