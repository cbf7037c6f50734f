package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/federated"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/onnx"
)

// The node's side of a federated round (docs/federated.md): when a round
// start names this node, it trains the round's base version on its own
// feedback (which never leaves the node) and sends back only the change
// of the parameters, clipped when the round asks for differential
// privacy, through JetStream so that an acknowledged update is stored.

func (c *control) startFL() {
	sub, err := c.nc.Subscribe(c.names.FLStart("*"), func(m *nats.Msg) {
		rs, err := bus.DecodeRoundStart(m.Data)
		if err != nil {
			c.n.log.Warn("ignoring a malformed round start", "subject", m.Subject, "err", err)
			return
		}
		if m.Subject != c.names.FLStart(rs.Round) || !slices.Contains(rs.Clients, c.n.cfg.ID) {
			return
		}
		c.wg.Go(func() { c.trainRound(rs) })
	})
	if err != nil {
		c.n.log.Error("federated rounds: subscribe", "err", err)
		return
	}
	c.flSub = sub
}

func (c *control) trainRound(rs *bus.RoundStart) {
	ctx, cancel := context.WithDeadline(c.ctx, rs.Deadline)
	defer cancel()
	log := c.n.log.With("round", rs.Round, "model", rs.Model)
	h, delta, err := c.localUpdate(ctx, rs)
	if err != nil {
		log.Warn("federated round: no update from this node", "err", err)
		return
	}
	b, err := bus.EncodeUpdate(*h, delta)
	if err != nil {
		log.Warn("federated round: encode update", "err", err)
		return
	}
	js, err := jetstream.New(c.nc)
	if err != nil {
		log.Warn("federated round: jetstream", "err", err)
		return
	}
	for {
		_, err := js.Publish(ctx, c.names.FLUpdate(rs.Round, c.n.cfg.ID), b)
		if err == nil {
			log.Info("federated round: update sent", "samples", h.Samples, "loss", h.Loss)
			return
		}
		if ctx.Err() != nil {
			log.Warn("federated round: update not delivered before the deadline", "err", err)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// localUpdate trains the round's base on this node's feedback.
func (c *control) localUpdate(ctx context.Context, rs *bus.RoundStart) (*bus.UpdateHeader, []float32, error) {
	c.mu.Lock()
	b := c.b
	c.mu.Unlock()
	if b == nil {
		return nil, nil, fmt.Errorf("not connected to the coordinator's buckets yet")
	}
	var sm bus.SignedManifest
	if _, err := bus.GetJSON(ctx, b.Registry, rs.Model+"."+rs.BaseVersion, &sm); err != nil {
		return nil, nil, fmt.Errorf("base manifest: %w", err)
	}
	man, err := models.VerifyManifest(c.cfg.CoordinatorKey, sm.Manifest, sm.Signature)
	if err != nil {
		return nil, nil, err
	}
	if man.Digest != rs.BaseDigest {
		return nil, nil, fmt.Errorf("round base %s, registry says %s", rs.BaseDigest, man.Digest)
	}
	art, _, err := c.fetch(ctx, b, rs.Model, man)
	if err != nil {
		return nil, nil, err
	}
	if err := models.VerifyArtifact(man, art); err != nil {
		return nil, nil, err
	}
	m, err := onnx.Parse(art)
	if err != nil {
		return nil, nil, err
	}
	if federated.NumParams(m) != rs.NumParams {
		return nil, nil, fmt.Errorf("base has %d parameters, the round says %d", federated.NumParams(m), rs.NumParams)
	}
	ds, err := c.n.FeedbackDataset(rs.Model, rs.MaxSamples)
	if err != nil {
		return nil, nil, err
	}
	if ds == nil || ds.N == 0 {
		return nil, nil, fmt.Errorf("no feedback for %s on this node", rs.Model)
	}
	if ds.Dim != m.InSize() {
		return nil, nil, fmt.Errorf("feedback has %d features, the model takes %d", ds.Dim, m.InSize())
	}
	base := federated.Flatten(m)
	tr, err := federated.NewTrainer(m, federated.SGDConfig{LR: rs.LR, Momentum: rs.Momentum, WeightDecay: rs.WeightDecay,
		BatchSize: rs.BatchSize, Epochs: rs.Epochs, ProxMu: rs.ProxMu, Seed: rs.Seed})
	if err != nil {
		return nil, nil, err
	}
	var ref []float32
	if rs.ProxMu > 0 {
		ref = base
	}
	loss, err := tr.Train(ds, ref)
	if err != nil {
		return nil, nil, err
	}
	delta := federated.Flatten(m)
	for i := range delta {
		delta[i] -= base[i]
	}
	h := &bus.UpdateHeader{Round: rs.Round, Node: c.n.cfg.ID, BaseVersion: rs.BaseVersion, Samples: ds.N, Loss: loss}
	if rs.Clip > 0 {
		federated.ClipUpdate(delta, rs.Clip)
		h.Clipped = true
	}
	return h, delta, nil
}
