package coordinator

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/federated"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/onnx"
)

// Federated rounds (docs/federated.md). A round takes the version a model
// serves, asks a sample of the nodes that serve it to train it on their
// feedback, aggregates their updates, checks the result on held-out data,
// and registers it through the same validation gate as a push, with
// lineage; optionally it starts a rollout of it.

// FLConfig configures federated rounds.
type FLConfig struct {
	// Holdout is each model's held-out data; a round of a model without
	// one is refused (a new version must be checked before it ships).
	Holdout map[string]*federated.Dataset
	// Auto starts rounds by schedule or on drift.
	Auto []FLAuto
}

// FLAuto starts rounds of one model every Every, and/or when a node
// reports a feature PSI above DriftPSI (at most once per Cooldown).
type FLAuto struct {
	Model    string
	Every    time.Duration
	DriftPSI float64
	Cooldown time.Duration
	Round    RoundRequest
}

// RoundRequest is the body of POST /v1/rounds.
type RoundRequest struct {
	Model string `json:"model"`
	// Fraction of the eligible nodes to sample, at least MinClients.
	Fraction   float64 `json:"fraction"`
	MinClients int     `json:"min_clients"`
	// Quorum: aggregate once this many updates arrived (default: all
	// sampled), or at the deadline with at least MinClients.
	Quorum   int    `json:"quorum,omitempty"`
	Deadline string `json:"deadline"` // duration, e.g. "2m"
	Strategy string `json:"strategy"` // federated.AggregatorNames()
	// Client training.
	LR          float64 `json:"lr"`
	Momentum    float64 `json:"momentum,omitempty"`
	WeightDecay float64 `json:"weight_decay,omitempty"`
	BatchSize   int     `json:"batch_size"`
	Epochs      int     `json:"epochs"`
	ProxMu      float64 `json:"prox_mu,omitempty"`
	MaxSamples  int     `json:"max_samples,omitempty"`
	// Differential privacy: clients clip to Clip, the server adds
	// Gaussian noise of NoiseMultiplier × Clip to the sum.
	Clip            float64 `json:"clip,omitempty"`
	NoiseMultiplier float64 `json:"noise_multiplier,omitempty"`
	Delta           float64 `json:"delta,omitempty"`
	// Margin: the new version may be at most this much less accurate
	// than the serving one on the held-out data (default 0.01).
	Margin float64 `json:"margin,omitempty"`
	// Rollout, when set, rolls the new version out ("10,50,100").
	RolloutSteps    string  `json:"rollout_steps,omitempty"`
	RolloutInterval string  `json:"rollout_interval,omitempty"`
	MaxErrorRate    float64 `json:"max_error_rate,omitempty"`
	Seed            uint64  `json:"seed,omitempty"`
}

// Round states.
const (
	RoundTraining   = "training"
	RoundRegistered = "registered"
	RoundRejected   = "rejected"
	RoundFailed     = "failed"
)

// Round is a federated round's record (KV petrel-rounds).
type Round struct {
	ID          string         `json:"id"`
	Request     RoundRequest   `json:"request"`
	Model       string         `json:"model"`
	BaseVersion string         `json:"base_version"`
	State       string         `json:"state"`
	Reason      string         `json:"reason,omitempty"`
	Trigger     string         `json:"trigger"` // manual | schedule | drift
	Actor       string         `json:"actor"`
	Clients     []string       `json:"clients"`
	Eligible    int            `json:"eligible"`
	Received    []string       `json:"received,omitempty"`
	Stragglers  []string       `json:"stragglers,omitempty"`
	Rejected    map[string]int `json:"rejected,omitempty"`
	Samples     int            `json:"samples,omitempty"`
	BaseAcc     float64        `json:"base_accuracy,omitempty"`
	NewAcc      float64        `json:"new_accuracy,omitempty"`
	Epsilon     float64        `json:"epsilon,omitempty"`
	NewVersion  string         `json:"new_version,omitempty"`
	Rollout     string         `json:"rollout,omitempty"`
	Started     time.Time      `json:"started"`
	Deadline    time.Time      `json:"deadline"`
	Finished    time.Time      `json:"finished,omitzero"`
}

// flState is the coordinator's federated side.
type flState struct {
	kv     jetstream.KeyValue
	mu     sync.Mutex
	active map[string]string    // model -> round id in progress
	last   map[string]time.Time // model -> last auto start
	wg     sync.WaitGroup
}

func (c *Coordinator) startFL(ctx context.Context) error {
	kv, err := bus.ProvisionFL(ctx, c.b.JS, c.names, c.cfg.Replicas)
	if err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	c.fl = &flState{kv: kv, active: map[string]string{}, last: map[string]time.Time{}}
	// Rounds a crash interrupted are over: their clients trained a base
	// that may no longer serve. They are recorded as failed.
	kl, err := kv.ListKeys(ctx)
	if err == nil {
		for k := range kl.Keys() {
			var r Round
			rev, err := bus.GetJSON(ctx, kv, k, &r)
			if err == nil && r.State == RoundTraining {
				r.State, r.Reason, r.Finished = RoundFailed, "the coordinator restarted during the round", time.Now().UTC()
				bus.UpdateJSON(ctx, kv, k, r, rev)
			}
		}
		kl.Stop()
	}
	if len(c.cfg.FL.Auto) > 0 {
		c.wg.Go(func() { c.autoRounds(c.ctx) })
	}
	return nil
}

// StartRound validates a request and starts a round in the background.
func (c *Coordinator) StartRound(ctx context.Context, req RoundRequest, trigger, actor string) (*Round, error) {
	if err := normaliseRound(&req); err != nil {
		return nil, badRequest("%v", err)
	}
	hold := c.cfg.FL.Holdout[req.Model]
	if hold == nil {
		return nil, conflict("model %q has no held-out data configured (--fl-holdout %s=DIR): a trained version could not be checked", req.Model, req.Model)
	}
	d, _, err := c.desired(ctx, req.Model)
	if err != nil {
		return nil, err
	}
	base := ""
	if d != nil {
		w := -1.0
		for _, v := range d.Versions {
			if v.Weight > w {
				base, w = v.Version, v.Weight
			}
		}
	}
	if base == "" {
		return nil, conflict("model %q serves no version: deploy one before a round", req.Model)
	}
	man, _, err := c.manifest(ctx, req.Model, base)
	if err != nil {
		return nil, err
	}
	art, err := c.b.GetArtifact(ctx, man.Digest, c.cfg.MaxModelBytes)
	if err != nil {
		return nil, fmt.Errorf("base artifact: %w", err)
	}
	global, err := onnx.Parse(art)
	if err != nil {
		return nil, conflict("model %q version %q cannot be trained: %v", req.Model, base, err)
	}
	nparams := federated.NumParams(global)
	if 4*nparams+4096 > bus.MaxUpdateBytes {
		return nil, conflict("model %q has %d parameters: updates would exceed %d bytes", req.Model, nparams, bus.MaxUpdateBytes)
	}
	// Eligible: healthy nodes with the base version ready.
	var eligible []string
	for _, n := range c.Nodes() {
		if !n.Healthy {
			continue
		}
		for _, m := range n.Models {
			if m.Model == req.Model && m.Version == base && m.State == "READY" {
				eligible = append(eligible, n.Node)
			}
		}
	}
	slices.Sort(eligible)
	k := max(req.MinClients, int(math.Ceil(req.Fraction*float64(len(eligible)))))
	if len(eligible) < req.MinClients {
		return nil, conflict("model %q: %d nodes serve version %q, the round needs at least %d", req.Model, len(eligible), base, req.MinClients)
	}
	k = min(k, len(eligible))
	rng := rand.New(rand.NewPCG(req.Seed, uint64(time.Now().UnixNano())))
	rng.Shuffle(len(eligible), func(i, j int) { eligible[i], eligible[j] = eligible[j], eligible[i] })
	clients := slices.Clone(eligible[:k])
	slices.Sort(clients)
	if req.Quorum == 0 || req.Quorum > k {
		req.Quorum = k
	}
	c.fl.mu.Lock()
	if id, busy := c.fl.active[req.Model]; busy {
		c.fl.mu.Unlock()
		return nil, conflict("model %q has round %s in progress", req.Model, id)
	}
	now := time.Now().UTC()
	dl, _ := time.ParseDuration(req.Deadline)
	r := &Round{ID: fmt.Sprintf("r%d-%04x", now.UnixMilli(), rng.Uint32()&0xffff), Request: req, Model: req.Model, BaseVersion: base,
		State: RoundTraining, Trigger: trigger, Actor: actor, Clients: clients, Eligible: len(eligible), Started: now, Deadline: now.Add(dl)}
	c.fl.active[req.Model] = r.ID
	c.fl.mu.Unlock()
	if _, err := bus.UpdateJSON(ctx, c.fl.kv, r.ID, r, 0); err != nil {
		c.endRound(r)
		return nil, fmt.Errorf("record round: %w", err)
	}
	start := bus.RoundStart{Round: r.ID, Model: req.Model, BaseVersion: base, BaseDigest: man.Digest, NumParams: nparams, Clients: clients,
		Deadline: r.Deadline, LR: req.LR, Momentum: req.Momentum, WeightDecay: req.WeightDecay, BatchSize: req.BatchSize, Epochs: req.Epochs,
		ProxMu: req.ProxMu, MaxSamples: req.MaxSamples, Clip: req.Clip, Seed: req.Seed}
	// Collect before announcing, so that no update is missed.
	cons, err := c.b.JS.OrderedConsumer(ctx, c.names.FLStream(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{c.names.FLUpdate(r.ID, "*")}})
	if err != nil {
		c.endRound(r)
		return nil, fmt.Errorf("round consumer: %w", err)
	}
	if err := publishJSON(ctx, c.b.JS, c.names.FLStart(r.ID), start); err != nil {
		c.endRound(r)
		return nil, fmt.Errorf("announce round: %w", err)
	}
	c.audit(ctx, bus.AuditEvent{Kind: "fl.round.start", Actor: actor, Model: req.Model, Version: base, OK: true,
		Detail: fmt.Sprintf("round %s (%s): %d of %d nodes, %s, quorum %d, deadline %s", r.ID, trigger, len(clients), len(eligible), req.Strategy, req.Quorum, req.Deadline),
		Fields: map[string]string{"round": r.ID}})
	cp := *r
	c.fl.wg.Go(func() { c.runRound(r, cons, global, hold) })
	return &cp, nil
}

func normaliseRound(r *RoundRequest) error {
	if !models.ValidName(r.Model) {
		return fmt.Errorf("model %q", r.Model)
	}
	if r.Fraction == 0 {
		r.Fraction = 0.1
	}
	if r.Fraction < 0 || r.Fraction > 1 || math.IsNaN(r.Fraction) {
		return fmt.Errorf("fraction %v: want (0, 1]", r.Fraction)
	}
	if r.MinClients == 0 {
		r.MinClients = 1
	}
	if r.MinClients < 1 || r.Quorum < 0 {
		return fmt.Errorf("min clients %d, quorum %d", r.MinClients, r.Quorum)
	}
	if r.Deadline == "" {
		r.Deadline = "2m"
	}
	if d, err := time.ParseDuration(r.Deadline); err != nil || d < time.Second || d > 24*time.Hour {
		return fmt.Errorf("deadline %q: want a duration from 1s to 24h", r.Deadline)
	}
	if r.Strategy == "" {
		r.Strategy = "fedavg"
	}
	if !slices.Contains(federated.AggregatorNames(), r.Strategy) {
		return fmt.Errorf("strategy %q: want one of %s", r.Strategy, strings.Join(federated.AggregatorNames(), ", "))
	}
	if r.LR == 0 {
		r.LR = 0.05
	}
	if r.BatchSize == 0 {
		r.BatchSize = 32
	}
	if r.Epochs == 0 {
		r.Epochs = 1
	}
	if r.MaxSamples == 0 {
		r.MaxSamples = 100000
	}
	if r.Margin == 0 {
		r.Margin = 0.01
	}
	if r.Delta == 0 {
		r.Delta = 1e-5
	}
	if r.Clip < 0 || r.NoiseMultiplier < 0 || (r.NoiseMultiplier > 0 && r.Clip == 0) {
		return fmt.Errorf("clip %v, noise multiplier %v: noise needs a clipping bound", r.Clip, r.NoiseMultiplier)
	}
	if r.Margin < 0 || r.Margin > 1 {
		return fmt.Errorf("margin %v: want [0, 1]", r.Margin)
	}
	if r.RolloutSteps != "" {
		if _, err := rollout.ParseSteps(r.RolloutSteps); err != nil {
			return err
		}
		if r.RolloutInterval == "" {
			r.RolloutInterval = "30s"
		}
		if _, err := time.ParseDuration(r.RolloutInterval); err != nil {
			return fmt.Errorf("rollout interval %q: %v", r.RolloutInterval, err)
		}
	}
	s := bus.RoundStart{Round: "r", Model: r.Model, BaseVersion: "v", BaseDigest: "sha256:" + strings.Repeat("0", 64), NumParams: 1, Clients: []string{"n"},
		Deadline: time.Now(), LR: r.LR, Momentum: r.Momentum, WeightDecay: r.WeightDecay, BatchSize: r.BatchSize, Epochs: r.Epochs,
		ProxMu: r.ProxMu, MaxSamples: r.MaxSamples, Clip: r.Clip}
	return s.Validate()
}

func (c *Coordinator) endRound(r *Round) {
	c.fl.mu.Lock()
	if c.fl.active[r.Model] == r.ID {
		delete(c.fl.active, r.Model)
	}
	c.fl.mu.Unlock()
}

// saveRound writes the round's record (last writer wins: one goroutine
// owns a round).
func (c *Coordinator) saveRound(r *Round) {
	if _, err := bus.PutJSON(context.Background(), c.fl.kv, r.ID, r); err != nil {
		c.log.Error("round state not saved", "round", r.ID, "err", err)
	}
}

// runRound collects, aggregates, validates and registers.
func (c *Coordinator) runRound(r *Round, cons jetstream.Consumer, global *onnx.Model, hold *federated.Dataset) {
	defer c.endRound(r)
	ctx := c.ctx
	finish := func(state, reason string) {
		r.State, r.Reason, r.Finished = state, reason, time.Now().UTC()
		c.saveRound(r)
		c.audit(context.Background(), bus.AuditEvent{Kind: "fl.round." + state, Actor: "coordinator", Model: r.Model, Version: r.NewVersion,
			OK: state == RoundRegistered, Detail: reason, Fields: map[string]string{"round": r.ID}})
		c.log.Info("federated round ended", "round", r.ID, "model", r.Model, "state", state, "reason", reason)
	}
	base := federated.Flatten(global)
	col, err := federated.NewCollector(federated.CollectorConfig{Round: r.ID, BaseVersion: r.BaseVersion, Clients: r.Clients, NumParams: len(base),
		MaxNorm: maxNorm(r.Request)})
	if err != nil {
		finish(RoundFailed, err.Error())
		return
	}
	rctx, cancel := context.WithDeadline(ctx, r.Deadline)
	defer cancel()
	msgs, err := cons.Messages()
	if err != nil {
		finish(RoundFailed, "consume updates: "+err.Error())
		return
	}
	go func() { <-rctx.Done(); msgs.Stop() }()
	malformed := 0
	for col.Count() < r.Request.Quorum {
		m, err := msgs.Next()
		if err != nil {
			break // deadline (or shutdown)
		}
		h, delta, err := bus.DecodeUpdate(m.Data())
		if err == nil && m.Subject() != c.names.FLUpdate(r.ID, h.Node) {
			err = fmt.Errorf("node %q sent it under %s", h.Node, m.Subject())
		}
		if err != nil {
			malformed++
			c.log.Warn("malformed round update", "round", r.ID, "subject", m.Subject(), "err", err)
		} else if err := col.Offer(h.Round, h.BaseVersion, federated.Update{Client: h.Node, Delta: delta, Samples: h.Samples}); err != nil {
			c.log.Warn("round update rejected", "round", r.ID, "err", err)
		}
		r.Received, r.Rejected = receivedOf(col), rejectedOf(col, malformed)
		c.saveRound(r)
	}
	col.Close()
	if ctx.Err() != nil {
		finish(RoundFailed, "the coordinator stopped during the round")
		return
	}
	r.Received, r.Stragglers, r.Samples = receivedOf(col), col.Stragglers(), col.Samples()
	r.Rejected = rejectedOf(col, malformed)
	if col.Count() < r.Request.MinClients {
		finish(RoundFailed, fmt.Sprintf("%d updates by the deadline, the round needs %d (stragglers: %s)", col.Count(), r.Request.MinClients, strings.Join(r.Stragglers, ", ")))
		return
	}
	next, eps, err := c.aggregate(r, base, col.Updates())
	if err != nil {
		finish(RoundFailed, "aggregate: "+err.Error())
		return
	}
	r.Epsilon = eps
	baseAcc, _ := federated.Evaluate(global, hold)
	if err := federated.SetParams(global, next); err != nil {
		finish(RoundFailed, err.Error())
		return
	}
	newAcc, _ := federated.Evaluate(global, hold)
	r.BaseAcc, r.NewAcc = baseAcc, newAcc
	if newAcc < baseAcc-r.Request.Margin {
		finish(RoundRejected, fmt.Sprintf("held-out accuracy %.2f%% is below the serving version's %.2f%% by more than the %.2f-point margin", 100*newAcc, 100*baseAcc, 100*r.Request.Margin))
		return
	}
	b, err := global.MarshalONNX()
	if err != nil {
		finish(RoundFailed, "export: "+err.Error())
		return
	}
	labels := map[string]string{"round": r.ID, "strategy": r.Request.Strategy, "holdout_accuracy": strconv.FormatFloat(newAcc, 'f', 4, 64)}
	if eps > 0 {
		labels["epsilon"] = strconv.FormatFloat(eps, 'f', 3, 64)
	}
	ver := r.ID
	res, err := c.Push(ctx, PushRequest{Name: r.Model, Version: ver, Model: b, Labels: labels, Source: models.SourceTraining, Round: r.ID,
		Nodes: r.Received, Samples: int64(r.Samples), Actor: "fl/" + r.Actor})
	if err != nil {
		reason := "register: " + err.Error()
		if res != nil && res.Report != nil {
			reason = "the validation gate refused it: " + res.Report.Reason
		}
		finish(RoundRejected, reason)
		return
	}
	r.NewVersion = ver
	if r.Request.RolloutSteps != "" {
		steps, _ := rollout.ParseSteps(r.Request.RolloutSteps)
		iv, _ := time.ParseDuration(r.Request.RolloutInterval)
		me := r.Request.MaxErrorRate
		if me == 0 {
			me = 0.05
		}
		ro, err := c.StartRollout(ctx, rollout.Spec{Model: r.Model, To: ver, Steps: steps, Interval: iv, MaxErrorRate: me, Actor: "fl/" + r.Actor})
		if err != nil {
			finish(RoundRegistered, fmt.Sprintf("registered %s (held-out accuracy %.2f%%, was %.2f%%) but the rollout did not start: %v", ver, 100*newAcc, 100*baseAcc, err))
			return
		}
		r.Rollout = ro.ID
	}
	_ = res
	finish(RoundRegistered, fmt.Sprintf("registered %s from %d updates (%d samples): held-out accuracy %.2f%% (serving %.2f%%)", ver, col.Count(), r.Samples, 100*newAcc, 100*baseAcc))
}

// maxNorm is the L2 bound the server enforces: the clients' clip when DP
// is on (a larger update is out of range), else none.
func maxNorm(r RoundRequest) float64 {
	if r.Clip > 0 {
		return r.Clip * 1.0001
	}
	return 0
}

// aggregate combines the updates; with differential privacy it takes the
// unweighted mean of the clipped updates and adds Gaussian noise of
// NoiseMultiplier × Clip / n to it, and reports ε so far for the model.
func (c *Coordinator) aggregate(r *Round, base []float32, ups []federated.Update) ([]float32, float64, error) {
	req := r.Request
	if req.NoiseMultiplier == 0 {
		agg, err := federated.NewAggregator(req.Strategy, federated.AggOptions{})
		if err != nil {
			return nil, 0, err
		}
		next, err := agg.Aggregate(base, ups)
		return next, 0, err
	}
	// Sum of the clipped updates (clients clip; the collector refused any
	// above the bound), plus noise of z·C, over the expected number of
	// clients: the mean would otherwise depend on who answered.
	sum := make([]float32, len(base))
	for _, u := range ups {
		for i, x := range u.Delta {
			sum[i] += x
		}
	}
	rng := rand.New(rand.NewChaCha8(seedFromCrypto()))
	federated.AddNoise(sum, req.NoiseMultiplier*req.Clip, rng)
	expected := float32(len(r.Clients))
	for i := range sum {
		sum[i] /= expected
	}
	agg, err := federated.NewAggregator("fedavg", federated.AggOptions{})
	if err != nil {
		return nil, 0, err
	}
	next, err := agg.Aggregate(base, []federated.Update{{Client: "dp-mean", Delta: sum, Samples: 1}})
	if err != nil {
		return nil, 0, err
	}
	// ε over this model's DP rounds so far, sampling rate = sampled share.
	q := float64(len(r.Clients)) / float64(max(r.Eligible, len(r.Clients)))
	acc := federated.NewAccountant(q, req.NoiseMultiplier)
	acc.Step(c.dpRounds(r.Model) + 1)
	eps, _ := acc.Epsilon(req.Delta)
	return next, eps, nil
}

// dpRounds counts the model's registered rounds that used noise.
func (c *Coordinator) dpRounds(model string) int {
	n := 0
	for _, r := range c.Rounds(context.Background(), model) {
		if r.State == RoundRegistered && r.Request.NoiseMultiplier > 0 {
			n++
		}
	}
	return n
}

func seedFromCrypto() [32]byte {
	var s [32]byte
	crand.Read(s[:])
	return s
}

func receivedOf(col *federated.Collector) []string {
	var out []string
	for _, u := range col.Updates() {
		out = append(out, u.Client)
	}
	slices.Sort(out)
	return out
}

func rejectedOf(col *federated.Collector, malformed int) map[string]int {
	out := col.Rejected()
	if malformed > 0 {
		out[federated.RejectMalformed] += malformed
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Rounds lists rounds, newest first (model "" = all).
func (c *Coordinator) Rounds(ctx context.Context, model string) []Round {
	kl, err := c.fl.kv.ListKeys(ctx)
	if err != nil {
		return nil
	}
	defer kl.Stop()
	var out []Round
	for k := range kl.Keys() {
		var r Round
		if _, err := bus.GetJSON(ctx, c.fl.kv, k, &r); err == nil && (model == "" || r.Model == model) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Round) int { return b.Started.Compare(a.Started) })
	return out
}

// autoRounds starts rounds by schedule and on drift.
func (c *Coordinator) autoRounds(ctx context.Context) {
	t := time.NewTicker(c.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, a := range c.cfg.FL.Auto {
				c.fl.mu.Lock()
				last, busy := c.fl.last[a.Model], c.fl.active[a.Model] != ""
				c.fl.mu.Unlock()
				if busy {
					continue
				}
				trigger := ""
				if a.Every > 0 && now.Sub(last) >= a.Every {
					trigger = "schedule"
				}
				if a.DriftPSI > 0 && now.Sub(last) >= a.Cooldown {
					for _, n := range c.Nodes() {
						for _, m := range n.Models {
							if m.Model == a.Model && m.PSI > a.DriftPSI {
								trigger = fmt.Sprintf("drift (node %s PSI %.3f > %.3f)", n.Node, m.PSI, a.DriftPSI)
							}
						}
					}
				}
				if trigger == "" {
					continue
				}
				c.fl.mu.Lock()
				c.fl.last[a.Model] = now
				c.fl.mu.Unlock()
				req := a.Round
				req.Model = a.Model
				if _, err := c.StartRound(ctx, req, trigger, "coordinator"); err != nil {
					c.log.Warn("automatic round not started", "model", a.Model, "trigger", trigger, "err", err)
				}
			}
		}
	}
}

func publishJSON(ctx context.Context, js jetstream.JetStream, subj string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = js.Publish(ctx, subj, b)
	return err
}

func (c *Coordinator) handleRoundStart(w http.ResponseWriter, r *http.Request, tok *Token) {
	var req RoundRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	rd, err := c.StartRound(r.Context(), req, "manual", tok.Name)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, rd)
}

func (c *Coordinator) handleRounds(w http.ResponseWriter, r *http.Request, _ *Token) {
	out := c.Rounds(r.Context(), r.URL.Query().Get("model"))
	if out == nil {
		out = []Round{}
	}
	writeJSON(w, 200, out)
}

func (c *Coordinator) handleRound(w http.ResponseWriter, r *http.Request, _ *Token) {
	var rd Round
	if _, err := bus.GetJSON(r.Context(), c.fl.kv, r.PathValue("id"), &rd); err != nil {
		if errors.Is(err, bus.ErrNotFound) || errors.Is(err, bus.ErrInvalidKey) {
			writeErr(w, notFound("no round %q", r.PathValue("id")))
			return
		}
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, rd)
}
