package fedsim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/petrel-mesh/petrel/federated"
	"github.com/petrel-mesh/petrel/models/onnx"
)

// Independent random streams derived from Config.Seed.
const (
	streamPartition uint64 = 0x70617274 + iota
	streamAttack
	streamSample
	streamNoise
	streamClient
	streamChurn
)

// Point is the global model's quality after a round (or, for Centralized,
// an epoch).
type Point struct {
	Round    int     `json:"round"`    // rounds (epochs) completed
	Accuracy float64 `json:"accuracy"` // test accuracy in [0, 1]
	Loss     float64 `json:"loss"`     // mean test cross-entropy
	Epsilon  float64 `json:"epsilon"`  // privacy spent so far at Privacy.Delta; 0 without privacy, +Inf with clipping but no noise
}

// Result is what Run and Centralized report.
type Result struct {
	// Points holds one Point per evaluation, in round order.
	Points []Point
	// Final is the last point, Best the one with the highest accuracy
	// (the earliest on ties).
	Final, Best Point
	// NoiseMultiplier is the z used (0 without privacy), Delta the δ of
	// the Epsilon figures.
	NoiseMultiplier, Delta float64
	// Sampled is the number of clients trained each round.
	Sampled int
	// ClientSamples is the number of training samples of each client.
	ClientSamples []int
	// Malicious lists the malicious clients (ids 0..Clients-1).
	Malicious []int
	// Updates counts the updates aggregated over all rounds, and
	// MaliciousUpdates those among them sent by malicious clients.
	Updates, MaliciousUpdates int
	// Dropped counts sampled clients that sent nothing: offline or
	// dropped out (Churn), no training data, local training diverged, or
	// a non-finite update.
	Dropped int
	// Offline and DroppedOut count the sampled clients lost to
	// Config.Churn (both included in Dropped).
	Offline, DroppedOut int
	// FailedRounds counts rounds whose aggregation failed (no updates,
	// too few for the aggregator, or a result beyond float32); the
	// global model is kept unchanged in those rounds.
	FailedRounds int
	// LastError is the error of the last failed round or dropped client,
	// for the record.
	LastError string
}

// add records an evaluation point and calls progress.
func (r *Result) add(p Point, progress func(Point)) {
	r.Points = append(r.Points, p)
	r.Final = p
	if len(r.Points) == 1 || p.Accuracy > r.Best.Accuracy {
		r.Best = p
	}
	if progress != nil {
		progress(p)
	}
}

// sim is the state of one Run.
type sim struct {
	cfg       Config
	agg       federated.Aggregator
	clients   []*federated.Dataset
	malicious []bool
	sampled   int
	eval      *evaluator
	sampleRNG *rand.Rand
	noiseRNG  *rand.Rand
	acct      *federated.Accountant
	z         float64
	models    []*onnx.Model // one per worker
}

// clientResult is one sampled client's contribution.
type clientResult struct {
	update federated.Update
	err    error
}

// Run simulates cfg.Rounds rounds of federated learning and evaluates the
// global model every cfg.EvalEvery rounds and after the last. Each round
// samples its clients, trains them in parallel on cfg.Workers goroutines
// (each with its own model copy and Trainer), applies the attack to the
// malicious ones, and aggregates in client-id order, so the result
// depends only on cfg, not on scheduling. It returns ctx's error when ctx
// is cancelled (after the clients in flight finish their local
// training).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s, res, err := newSim(cfg)
	if err != nil {
		return nil, err
	}
	global, err := federated.NewModel(cfg.Model, cfg.Seed)
	if err != nil {
		return nil, fmt.Errorf("fedsim: initial model: %w", err)
	}
	params := federated.Flatten(global)
	for round := 1; round <= cfg.Rounds; round++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		next, err := s.round(ctx, round, params, res)
		if err != nil {
			return nil, err
		}
		if next != nil {
			params = next
		}
		if round%cfg.EvalEvery == 0 || round == cfg.Rounds {
			if err := federated.SetParams(global, params); err != nil {
				return nil, fmt.Errorf("fedsim: round %d: %w", round, err)
			}
			acc, loss := s.eval.evaluate(global)
			eps := 0.0
			if s.acct != nil {
				eps, _ = s.acct.Epsilon(cfg.Privacy.Delta)
			}
			res.add(Point{Round: round, Accuracy: acc, Loss: loss, Epsilon: eps}, cfg.Progress)
		}
	}
	return res, nil
}

// newSim partitions the data, picks the malicious clients and sets up
// the aggregator, the evaluator and the privacy accounting.
func newSim(cfg Config) (*sim, *Result, error) {
	agg, err := federated.NewAggregator(cfg.Aggregator, cfg.AggOptions)
	if err != nil {
		return nil, nil, invalid("%v", err)
	}
	parts, err := partition(cfg)
	if err != nil {
		return nil, nil, err
	}
	s := &sim{
		cfg:       cfg,
		agg:       agg,
		clients:   make([]*federated.Dataset, cfg.Clients),
		malicious: make([]bool, cfg.Clients),
		sampled:   max(1, int(math.Round(cfg.Fraction*float64(cfg.Clients)))),
		eval:      newEvaluator(cfg.Test, cfg.Workers),
		sampleRNG: rand.New(rand.NewPCG(cfg.Seed, streamSample)),
		noiseRNG:  rand.New(rand.NewPCG(cfg.Seed, streamNoise)),
	}
	s.sampled = min(s.sampled, cfg.Clients)
	res := &Result{Sampled: s.sampled, ClientSamples: make([]int, cfg.Clients)}
	for i, idx := range parts {
		s.clients[i] = cfg.Train.Subset(idx)
		res.ClientSamples[i] = len(idx)
	}
	if cfg.Attack.Kind != AttackNone {
		n := int(math.Round(cfg.Attack.Fraction * float64(cfg.Clients)))
		perm := rand.New(rand.NewPCG(cfg.Seed, streamAttack)).Perm(cfg.Clients)
		res.Malicious = slices.Sorted(slices.Values(perm[:n]))
		for _, c := range res.Malicious {
			s.malicious[c] = true
		}
	}
	if cfg.Privacy.Enabled() {
		p := cfg.Privacy
		q := float64(s.sampled) / float64(cfg.Clients) // the actual sampling rate
		s.z = p.NoiseMultiplier
		if p.TargetEpsilon > 0 {
			s.z = federated.NoiseForEpsilon(q, cfg.Rounds, p.TargetEpsilon, p.Delta)
			if math.IsInf(s.z, 0) {
				return nil, nil, invalid("privacy: no noise multiplier reaches ε = %v at δ = %v over %d rounds", p.TargetEpsilon, p.Delta, cfg.Rounds)
			}
		}
		s.acct = federated.NewAccountant(q, s.z)
		if err := s.acct.Err(); err != nil {
			return nil, nil, invalid("privacy: %v", err)
		}
		res.NoiseMultiplier, res.Delta = s.z, p.Delta
	}
	s.models = make([]*onnx.Model, min(cfg.Workers, s.sampled))
	for i := range s.models {
		if s.models[i], err = federated.NewModel(cfg.Model, cfg.Seed); err != nil {
			return nil, nil, fmt.Errorf("fedsim: client model: %w", err)
		}
	}
	return s, res, nil
}

// partition splits the training set as cfg.Partition says.
func partition(cfg Config) ([][]int, error) {
	rng := rand.New(rand.NewPCG(cfg.Seed, streamPartition))
	p, d := cfg.Partition, cfg.Train
	var parts [][]int
	switch p.Kind {
	case PartitionIID:
		parts = federated.PartitionIID(d.N, cfg.Clients, rng)
	case PartitionDirichlet:
		parts = federated.PartitionDirichlet(d.Y, d.Classes, cfg.Clients, p.Alpha, rng)
	case PartitionQuantity:
		parts = federated.PartitionQuantitySkew(d.N, cfg.Clients, p.Alpha, rng)
	case PartitionKClasses:
		parts = federated.PartitionKClasses(d.Y, d.Classes, cfg.Clients, p.K, rng)
	}
	if len(parts) != cfg.Clients {
		return nil, invalid("partition %s of %d samples among %d clients failed", p, d.N, cfg.Clients)
	}
	return parts, nil
}

// sample draws the round's clients without replacement, in id order.
func (s *sim) sample() []int {
	ids := s.sampleRNG.Perm(s.cfg.Clients)[:s.sampled]
	slices.Sort(ids)
	return ids
}

// churn returns the sampled clients ids that take part in the round,
// counting the others in res. The draws come from a stream of its own per
// round, two per sampled client in id order, so they depend only on the
// seed, the round and the sample.
func (s *sim) churn(round int, ids []int, res *Result) []int {
	c := s.cfg.Churn
	if !c.Enabled() {
		return ids
	}
	rng := rand.New(rand.NewPCG(s.cfg.Seed^streamChurn, uint64(round)))
	kept := ids[:0]
	for _, id := range ids {
		offline, drop := rng.Float64() < c.Unavailable, rng.Float64() < c.Dropout
		switch {
		case offline:
			res.Offline++
		case drop:
			res.DroppedOut++
		default:
			kept = append(kept, id)
			continue
		}
		res.Dropped++
	}
	return kept
}

// clientSeed derives the local-training seed of a client in a round
// (SplitMix64 finaliser over the three values).
func clientSeed(seed uint64, round, client int) uint64 {
	x := seed ^ streamClient
	for _, v := range []uint64{uint64(round), uint64(client)} {
		x += 0x9e3779b97f4a7c15 + v
		x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
		x = (x ^ (x >> 27)) * 0x94d049bb133111eb
		x ^= x >> 31
	}
	return x
}

// round runs one round from params and returns the next global
// parameters, or nil when the round failed and the model stays.
func (s *sim) round(ctx context.Context, round int, params []float32, res *Result) ([]float32, error) {
	ids := s.churn(round, s.sample(), res)
	results := make([]clientResult, len(ids))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range min(len(s.models), len(ids)) {
		m := s.models[w]
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) || ctx.Err() != nil {
					return
				}
				results[i] = s.train(m, round, ids[i], params)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.acct != nil {
		s.acct.Step(1)
	}
	updates := make([]federated.Update, 0, len(ids))
	for i, r := range results {
		if r.err != nil {
			res.Dropped++
			res.LastError = fmt.Sprintf("round %d: client %d: %v", round, ids[i], r.err)
			continue
		}
		updates = append(updates, r.update)
		if s.malicious[ids[i]] {
			res.MaliciousUpdates++
		}
	}
	res.Updates += len(updates)
	var out []float32
	var err error
	if s.acct != nil {
		out, err = s.privateMean(params, updates)
	} else if len(updates) == 0 {
		err = federated.ErrNoUpdates
	} else {
		out, err = s.agg.Aggregate(params, updates)
	}
	if err != nil {
		res.FailedRounds++
		res.LastError = fmt.Sprintf("round %d: aggregate: %v", round, err)
		return nil, nil
	}
	return out, nil
}

// train runs one client's local training from params and returns its
// (possibly attacked) update.
func (s *sim) train(m *onnx.Model, round, id int, params []float32) clientResult {
	data := s.clients[id]
	if data.N == 0 {
		return clientResult{err: federated.ErrEmptyDataset}
	}
	if err := federated.SetParams(m, params); err != nil {
		return clientResult{err: err}
	}
	sgd := s.cfg.SGD
	sgd.Seed = clientSeed(s.cfg.Seed, round, id)
	t, err := federated.NewTrainer(m, sgd)
	if err != nil {
		return clientResult{err: err}
	}
	var ref []float32
	if sgd.ProxMu > 0 {
		ref = params
	}
	if _, err := t.Train(data, ref); err != nil {
		return clientResult{err: err}
	}
	delta := federated.Flatten(m)
	for i, g := range params {
		delta[i] -= g
	}
	if s.malicious[id] {
		k := float32(s.cfg.Attack.Scale)
		if s.cfg.Attack.Kind == AttackSignFlip {
			k = -k
		}
		for i := range delta {
			delta[i] *= k
		}
	}
	for i, v := range delta {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return clientResult{err: fmt.Errorf("update value %d is %v", i, v)}
		}
	}
	return clientResult{update: federated.Update{Client: fmt.Sprintf("client-%04d", id), Delta: delta, Samples: data.N}}
}

// privateMean is DP-FedAvg's server step: clip every update to C, sum in
// client order, add N(0, (zC)²) noise, divide by the number of clients
// sampled and apply with the server learning rate.
func (s *sim) privateMean(params []float32, updates []federated.Update) ([]float32, error) {
	c := s.cfg.Privacy.Clip
	sum := make([]float32, len(params))
	for _, u := range updates {
		federated.ClipUpdate(u.Delta, c)
		for i, v := range u.Delta {
			sum[i] += v
		}
	}
	federated.AddNoise(sum, s.z*c, s.noiseRNG)
	lr := s.cfg.AggOptions.ServerLR
	if lr == 0 {
		lr = federated.DefaultServerLR
	}
	f := lr / float64(s.sampled)
	out := make([]float32, len(params))
	for i, g := range params {
		v := float64(g) + f*float64(sum[i])
		if !finite(v) || math.Abs(v) > math.MaxFloat32 {
			return nil, errors.New("the noised mean overflows float32")
		}
		out[i] = float32(v)
	}
	return out, nil
}

// evalChunks is the fixed number of pieces the test set is evaluated in,
// so that the loss is summed in the same order whatever the number of
// workers.
const evalChunks = 8

// evaluator evaluates a model on a test set split into chunks, in
// parallel.
type evaluator struct {
	chunks  []*federated.Dataset
	n       int
	workers int
}

func newEvaluator(test *federated.Dataset, workers int) *evaluator {
	e := &evaluator{n: test.N, workers: workers}
	k := min(evalChunks, test.N)
	for c := range k {
		lo, hi := c*test.N/k, (c+1)*test.N/k
		idx := make([]int, hi-lo)
		for i := range idx {
			idx[i] = lo + i
		}
		e.chunks = append(e.chunks, test.Subset(idx))
	}
	return e
}

// evaluate returns m's accuracy and mean loss on the whole test set. m is
// only read.
func (e *evaluator) evaluate(m *onnx.Model) (accuracy, loss float64) {
	accs := make([]float64, len(e.chunks))
	losses := make([]float64, len(e.chunks))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(e.workers, len(e.chunks)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(e.chunks) {
					return
				}
				accs[i], losses[i] = federated.Evaluate(m, e.chunks[i])
			}
		})
	}
	wg.Wait()
	correct := 0.0
	for i, c := range e.chunks {
		correct += math.Round(accs[i] * float64(c.N))
		loss += losses[i] * float64(c.N)
	}
	return correct / float64(e.n), loss / float64(e.n)
}
