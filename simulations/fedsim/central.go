package fedsim

import (
	"context"
	"fmt"

	"github.com/petrel-mesh/petrel/federated"
)

// CentralConfig configures the centralised baseline: the same model and
// SGD settings as a federated run, trained on all the training data in
// one place. Zero fields take the same defaults as Config's.
type CentralConfig struct {
	// Train and Test are required.
	Train, Test *federated.Dataset
	// Model; a zero Spec means the default MLP (see Config.Model).
	Model federated.Spec
	// SGD is the training configuration (zero LR, BatchSize or Epochs as
	// in Config.SGD). SGD.Epochs is ignored: Epochs below counts the
	// passes, one Train call each, evaluating after every one. ProxMu is
	// ignored (there is no anchor).
	SGD federated.SGDConfig
	// Epochs is the number of passes over Train; zero means
	// DefaultCentralEpochs.
	Epochs int
	// Workers evaluates the test set in parallel; zero means GOMAXPROCS.
	// Training itself is sequential.
	Workers int
	// Seed seeds the initial model (the same as a Run with the same
	// seed) and the shuffling.
	Seed uint64
	// Progress, when set, is called after every epoch's evaluation.
	Progress func(Point) `json:"-"`
}

// Centralized trains the baseline and evaluates it after every epoch; in
// the result, Point.Round is the number of epochs completed and Epsilon
// is 0. It returns ctx's error when ctx is cancelled between epochs.
func Centralized(ctx context.Context, cfg CentralConfig) (*Result, error) {
	if cfg.Model.Family == "" && len(cfg.Model.Sizes) == 0 && cfg.Train != nil {
		cfg.Model = defaultSpec(cfg.Train)
	}
	if cfg.Epochs == 0 {
		cfg.Epochs = DefaultCentralEpochs
	}
	cfg.Workers = workers(cfg.Workers)
	if err := checkData(cfg.Train, cfg.Test, cfg.Model); err != nil {
		return nil, err
	}
	if cfg.Epochs < 1 {
		return nil, invalid("Epochs is %d, want at least 1", cfg.Epochs)
	}
	sgd := fillSGD(cfg.SGD)
	sgd.Epochs, sgd.ProxMu, sgd.Seed = 1, 0, clientSeed(cfg.Seed, 0, -1)
	if err := sgd.Validate(); err != nil {
		return nil, invalid("%v", err)
	}
	m, err := federated.NewModel(cfg.Model, cfg.Seed)
	if err != nil {
		return nil, fmt.Errorf("fedsim: centralised model: %w", err)
	}
	t, err := federated.NewTrainer(m, sgd)
	if err != nil {
		return nil, fmt.Errorf("fedsim: centralised trainer: %w", err)
	}
	eval := newEvaluator(cfg.Test, cfg.Workers)
	res := &Result{}
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, err := t.Train(cfg.Train, nil); err != nil {
			return nil, fmt.Errorf("fedsim: centralised epoch %d: %w", epoch, err)
		}
		acc, loss := eval.evaluate(m)
		res.add(Point{Round: epoch, Accuracy: acc, Loss: loss}, cfg.Progress)
	}
	return res, nil
}
