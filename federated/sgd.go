package federated

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/petrel-mesh/petrel/models/onnx"
)

// Training errors callers check.
var (
	// ErrEmptyDataset is returned by Train for a data set without
	// samples (a client whose partition is empty).
	ErrEmptyDataset = errors.New("empty dataset")
	// ErrDiverged is returned when the loss or a parameter becomes NaN
	// or infinite; the model's parameters are then unusable.
	ErrDiverged = errors.New("training diverged")
)

// SGDConfig configures local training.
//
// Each step computes the minibatch gradient g of the mean data loss, adds
// WeightDecay*w (L2 regularisation, on weights and biases alike) and, when
// a FedProx anchor ref is given, ProxMu*(w - ref) (the gradient of
// ProxMu/2*||w - ref||^2), then takes a heavy-ball momentum step:
//
//	v = Momentum*v + g
//	w = w - LR*v
//
// The regularisation terms change the gradient, not the reported loss.
type SGDConfig struct {
	LR          float64 // learning rate, > 0
	Momentum    float64 // heavy-ball momentum in [0, 1); 0 is plain SGD
	WeightDecay float64 // L2 coefficient, >= 0
	BatchSize   int     // minibatch size for Train, >= 1
	Epochs      int     // passes over the data per Train call, >= 1
	ProxMu      float64 // FedProx proximal coefficient, >= 0; used only with a ref
	Seed        uint64  // seeds the minibatch shuffling
}

// DefaultSGDConfig is a configuration that trains the families NewModel
// builds well on image data scaled to [0, 1]: LR 0.01, momentum 0.9,
// batches of 32, one epoch, no regularisation.
func DefaultSGDConfig() SGDConfig {
	return SGDConfig{LR: 0.01, Momentum: 0.9, BatchSize: 32, Epochs: 1}
}

// Validate checks every field's range (see SGDConfig).
func (c SGDConfig) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !finite(c.LR) || c.LR <= 0:
		return fmt.Errorf("sgd config: LR is %v, want > 0", c.LR)
	case !finite(c.Momentum) || c.Momentum < 0 || c.Momentum >= 1:
		return fmt.Errorf("sgd config: Momentum is %v, want [0, 1)", c.Momentum)
	case !finite(c.WeightDecay) || c.WeightDecay < 0:
		return fmt.Errorf("sgd config: WeightDecay is %v, want >= 0", c.WeightDecay)
	case !finite(c.ProxMu) || c.ProxMu < 0:
		return fmt.Errorf("sgd config: ProxMu is %v, want >= 0", c.ProxMu)
	case c.BatchSize < 1:
		return fmt.Errorf("sgd config: BatchSize is %d, want >= 1", c.BatchSize)
	case c.Epochs < 1:
		return fmt.Errorf("sgd config: Epochs is %d, want >= 1", c.Epochs)
	}
	return nil
}

// Trainer runs minibatch SGD on one model. It keeps the momentum buffer
// and scratch space between calls, so a Trainer is meant to live as long
// as the model it trains; its steps do not allocate. It reads and writes
// the model's Layers in place: set new global parameters with SetParams
// between rounds and call Reset to clear the momentum if the new round
// should start afresh.
//
// A Trainer is not safe for concurrent use, and the model must not be
// used concurrently with a running Train or Step.
type Trainer struct {
	m     *onnx.Model
	cfg   SGDConfig
	rng   *rand.Rand
	ws    *workspace
	grad  []float32
	vel   []float32
	perm  []int
	batch Dataset // minibatch gathered from the shuffled rows
}

// NewTrainer checks m (see Gradient for the models that can be trained)
// and cfg and returns a Trainer for m.
func NewTrainer(m *onnx.Model, cfg SGDConfig) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ws, err := newWorkspace(m)
	if err != nil {
		return nil, err
	}
	n := NumParams(m)
	return &Trainer{
		m:    m,
		cfg:  cfg,
		rng:  rand.New(rand.NewPCG(cfg.Seed, 0x7e7e1f5eedc0ffee)),
		ws:   ws,
		grad: make([]float32, n),
		vel:  make([]float32, n),
	}, nil
}

// Model returns the model the Trainer trains.
func (t *Trainer) Model() *onnx.Model { return t.m }

// Config returns the Trainer's configuration.
func (t *Trainer) Config() SGDConfig { return t.cfg }

// Reset clears the momentum buffer.
func (t *Trainer) Reset() { clear(t.vel) }

// Train runs cfg.Epochs passes over d, each over a fresh shuffle of its
// rows in minibatches of cfg.BatchSize (the last one smaller when
// BatchSize does not divide d.N), and returns the mean per-sample data
// loss over all steps, each measured before its update. ref is the
// FedProx anchor (usually the global parameters the round started from,
// laid out as Flatten's result) or nil for none.
//
// d must be valid, have the model's input width and labels the model can
// output; ErrEmptyDataset when it has no samples.
func (t *Trainer) Train(d *Dataset, ref []float32) (meanLoss float64, err error) {
	if err := d.Validate(); err != nil {
		return 0, fmt.Errorf("train: %w", err)
	}
	if err := t.ws.compatible(d); err != nil {
		return 0, fmt.Errorf("train: %w", err)
	}
	if err := t.checkRef(ref); err != nil {
		return 0, fmt.Errorf("train: %w", err)
	}
	if d.N == 0 {
		return 0, fmt.Errorf("train: %w", ErrEmptyDataset)
	}
	if err := t.ws.matches(t.m); err != nil {
		return 0, fmt.Errorf("train: %w", err)
	}
	if cap(t.perm) < d.N {
		t.perm = make([]int, d.N)
	}
	perm := t.perm[:d.N]
	for i := range perm {
		perm[i] = i
	}
	bs := min(t.cfg.BatchSize, d.N)
	b := &t.batch
	if cap(b.X) < bs*d.Dim {
		b.X = make([]float32, bs*d.Dim)
	}
	if cap(b.Y) < bs {
		b.Y = make([]int32, bs)
	}
	var total float64
	for range t.cfg.Epochs {
		t.rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		for start := 0; start < d.N; start += bs {
			rows := min(bs, d.N-start)
			x, y := b.X[:rows*d.Dim], b.Y[:rows]
			for r, i := range perm[start : start+rows] {
				copy(x[r*d.Dim:(r+1)*d.Dim], d.X[i*d.Dim:(i+1)*d.Dim])
				y[r] = d.Y[i]
			}
			loss, err := t.step(x, y, rows, ref)
			if err != nil {
				return 0, fmt.Errorf("train: %w", err)
			}
			total += loss * float64(rows)
		}
	}
	return total / float64(d.N) / float64(t.cfg.Epochs), nil
}

// Step takes one SGD step on the minibatch x (rows*in values, row-major)
// with labels y and returns the minibatch's mean data loss before the
// update. It is the online-learning entry point: cfg.BatchSize and
// cfg.Epochs do not apply. ref is the FedProx anchor or nil.
func (t *Trainer) Step(x []float32, y []int32, rows int, ref []float32) (loss float64, err error) {
	if err := t.ws.matches(t.m); err != nil {
		return 0, fmt.Errorf("step: %w", err)
	}
	if err := t.ws.checkBatch(x, y, rows); err != nil {
		return 0, fmt.Errorf("step: %w", err)
	}
	if err := t.checkRef(ref); err != nil {
		return 0, fmt.Errorf("step: %w", err)
	}
	loss, err = t.step(x, y, rows, ref)
	if err != nil {
		return 0, fmt.Errorf("step: %w", err)
	}
	return loss, nil
}

func (t *Trainer) checkRef(ref []float32) error {
	if ref == nil {
		return nil
	}
	if len(ref) != len(t.grad) {
		return fmt.Errorf("proximal anchor has %d values, the model has %d parameters", len(ref), len(t.grad))
	}
	if i := firstNonFinite(ref); i >= 0 {
		return fmt.Errorf("proximal anchor value %d is %v", i, ref[i])
	}
	return nil
}

// step runs forward, backward and the update on a checked minibatch.
func (t *Trainer) step(x []float32, y []int32, rows int, ref []float32) (float64, error) {
	ws := t.ws
	ws.ensure(rows)
	ws.forward(t.m, x, rows)
	loss := ws.lossAndDelta(y, rows, true)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return 0, fmt.Errorf("%w: loss is %v", ErrDiverged, loss)
	}
	ws.backward(t.m, x, rows, t.grad)
	if !t.update(ref) {
		return 0, fmt.Errorf("%w: a parameter became NaN or infinite (lower the learning rate)", ErrDiverged)
	}
	return loss, nil
}

// update applies the regularised momentum step to every parameter and
// reports whether all of them are still finite.
func (t *Trainer) update(ref []float32) bool {
	lr, mom, wd := float32(t.cfg.LR), float32(t.cfg.Momentum), float32(t.cfg.WeightDecay)
	mu := float32(t.cfg.ProxMu)
	if mu == 0 {
		ref = nil
	}
	var bad float32 // stays 0 unless some parameter is NaN or ±Inf
	off := 0
	apply := func(p []float32) {
		g := t.grad[off : off+len(p)]
		v := t.vel[off : off+len(p)]
		if ref != nil {
			r := ref[off : off+len(p)]
			for i, w := range p {
				vi := mom*v[i] + g[i] + wd*w + mu*(w-r[i])
				v[i] = vi
				w -= lr * vi
				p[i] = w
				bad += 0 * w
			}
		} else {
			for i, w := range p {
				vi := mom*v[i] + g[i] + wd*w
				v[i] = vi
				w -= lr * vi
				p[i] = w
				bad += 0 * w
			}
		}
		off += len(p)
	}
	for _, l := range t.m.Layers {
		apply(l.W)
		apply(l.B)
	}
	return bad == 0
}

// Gradient returns the gradient of the mean loss over the rows*in inputs
// x (row-major) with labels y, laid out as Flatten's result, and that mean
// loss. It allocates its scratch space; Trainer reuses its own.
//
// The models that can be trained are those NewModel builds and, more
// generally, any valid onnx.Model whose family is not linear with
//   - a Softmax output of two or more classes: softmax cross-entropy,
//     labels in [0, out);
//   - an Identity output of two or more values, read as logits:
//     softmax cross-entropy on them;
//   - a Sigmoid output of one value: binary cross-entropy, labels 0 or 1;
//
// and any hidden activation (ReLU, Sigmoid, Tanh, Identity).
func Gradient(m *onnx.Model, x []float32, y []int32, rows int) (grad []float32, loss float64, err error) {
	ws, err := newWorkspace(m)
	if err != nil {
		return nil, 0, fmt.Errorf("gradient: %w", err)
	}
	if err := ws.checkBatch(x, y, rows); err != nil {
		return nil, 0, fmt.Errorf("gradient: %w", err)
	}
	ws.ensure(rows)
	ws.forward(m, x, rows)
	loss = ws.lossAndDelta(y, rows, true)
	grad = make([]float32, NumParams(m))
	ws.backward(m, x, rows, grad)
	return grad, loss, nil
}

// evalChunk is how many rows Evaluate and Predict run at a time.
const evalChunk = 256

// Evaluate returns m's accuracy on d (the fraction of samples whose most
// probable class is the label; for a one-output sigmoid model, class 1
// when the probability is at least 0.5) and its mean cross-entropy loss.
// Both are NaN when m cannot be trained (see Gradient), d is invalid or
// incompatible with m, or d is empty.
//
// Gradient, Evaluate and Predict only read m and allocate their own
// scratch space, so they may run concurrently on one model as long as
// nothing modifies it.
func Evaluate(m *onnx.Model, d *Dataset) (accuracy, loss float64) {
	ws, err := newWorkspace(m)
	if err != nil || d.Validate() != nil || ws.compatible(d) != nil || d.N == 0 {
		return math.NaN(), math.NaN()
	}
	ws.ensure(min(d.N, evalChunk))
	correct := 0
	for start := 0; start < d.N; start += evalChunk {
		rows := min(evalChunk, d.N-start)
		x, y := d.X[start*d.Dim:(start+rows)*d.Dim], d.Y[start:start+rows]
		ws.forward(m, x, rows)
		loss += ws.lossAndDelta(y, rows, false) * float64(rows)
		for r := range rows {
			if ws.predict(r) == y[r] {
				correct++
			}
		}
	}
	return float64(correct) / float64(d.N), loss / float64(d.N)
}

// Predict returns m's predicted class for each of the rows inputs in x
// (rows*in values, row-major), as Evaluate counts them.
func Predict(m *onnx.Model, x []float32, rows int) ([]int32, error) {
	ws, err := newWorkspace(m)
	if err != nil {
		return nil, fmt.Errorf("predict: %w", err)
	}
	in := ws.sizes[0]
	if rows < 0 || rows > math.MaxInt/in || len(x) != rows*in {
		return nil, fmt.Errorf("predict: %d values for %d rows of %d inputs", len(x), rows, in)
	}
	if i := firstNonFinite(x); i >= 0 {
		return nil, fmt.Errorf("predict: row %d input %d is %v", i/in, i%in, x[i])
	}
	out := make([]int32, rows)
	ws.ensure(min(rows, evalChunk))
	for start := 0; start < rows; start += evalChunk {
		n := min(evalChunk, rows-start)
		ws.forward(m, x[start*in:(start+n)*in], n)
		for r := range n {
			out[start+r] = ws.predict(r)
		}
	}
	return out, nil
}

// lossKind is the loss a model is trained with.
type lossKind int

const (
	lossSoftmaxCE lossKind = iota // softmax cross-entropy over the last layer's logits
	lossBinaryCE                  // binary cross-entropy over one logit
)

// workspace holds a model's structure and the per-layer scratch buffers of
// the forward and backward passes.
type workspace struct {
	kind   lossKind
	hidden onnx.Activation
	sizes  []int       // widths: input, then each layer's output
	rows   int         // rows the buffers hold
	acts   [][]float32 // acts[l]: layer l's output after its hidden activation; the last layer's holds logits
	deltas [][]float32 // deltas[l]: dLoss/d(pre-activation) of layer l
	nzIdx  []int       // non-zero positions of the vector being multiplied
	nzVal  []float32   // their values
}

// newWorkspace checks that m can be trained and describes it.
func newWorkspace(m *onnx.Model) (*workspace, error) {
	if m == nil {
		return nil, errors.New("nil model")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if m.Family == onnx.FamilyLinear {
		return nil, errors.New("linear regression models cannot be trained on class labels")
	}
	ws := &workspace{hidden: m.Hidden, sizes: []int{m.InSize()}}
	if ws.hidden == "" {
		ws.hidden = onnx.ReLU
	}
	out := m.OutSize()
	switch m.Output {
	case onnx.Softmax:
		ws.kind = lossSoftmaxCE
	case onnx.Identity, "":
		if out < 2 {
			return nil, fmt.Errorf("an identity output is trained as softmax logits and needs 2 or more outputs, got %d", out)
		}
		ws.kind = lossSoftmaxCE
	case onnx.Sigmoid:
		if out != 1 {
			return nil, fmt.Errorf("a sigmoid output is trained with binary cross-entropy and needs 1 output, got %d", out)
		}
		ws.kind = lossBinaryCE
	default:
		return nil, fmt.Errorf("output activation %q cannot be trained", m.Output)
	}
	for _, l := range m.Layers {
		ws.sizes = append(ws.sizes, l.Out)
	}
	ws.acts = make([][]float32, len(m.Layers))
	ws.deltas = make([][]float32, len(m.Layers))
	return ws, nil
}

// matches checks that m still has the structure ws was built for.
func (ws *workspace) matches(m *onnx.Model) error {
	if len(m.Layers) != len(ws.sizes)-1 {
		return fmt.Errorf("the model now has %d layers, the trainer was built for %d", len(m.Layers), len(ws.sizes)-1)
	}
	for i, l := range m.Layers {
		if l.In != ws.sizes[i] || l.Out != ws.sizes[i+1] || len(l.W) != l.In*l.Out || len(l.B) != l.Out {
			return fmt.Errorf("layer %d changed shape since the trainer was built", i)
		}
	}
	return nil
}

// classes is the number of labels the model can output.
func (ws *workspace) classes() int {
	if ws.kind == lossBinaryCE {
		return 2
	}
	return ws.sizes[len(ws.sizes)-1]
}

// compatible checks that d (already validated) fits the model.
func (ws *workspace) compatible(d *Dataset) error {
	if d.Dim != ws.sizes[0] {
		return fmt.Errorf("dataset has %d features, the model takes %d", d.Dim, ws.sizes[0])
	}
	if d.Classes > ws.classes() {
		return fmt.Errorf("dataset has %d classes, the model outputs %d", d.Classes, ws.classes())
	}
	return nil
}

// checkBatch validates a minibatch given by a caller.
func (ws *workspace) checkBatch(x []float32, y []int32, rows int) error {
	in := ws.sizes[0]
	if rows < 1 {
		return fmt.Errorf("batch of %d rows, want at least 1", rows)
	}
	if rows > math.MaxInt/in || len(x) != rows*in {
		return fmt.Errorf("batch has %d input values, want rows*in = %d*%d", len(x), rows, in)
	}
	if len(y) != rows {
		return fmt.Errorf("batch has %d labels for %d rows", len(y), rows)
	}
	c := int32(ws.classes())
	for i, v := range y {
		if v < 0 || v >= c {
			return fmt.Errorf("label %d is %d, want 0..%d", i, v, c-1)
		}
	}
	if i := firstNonFinite(x); i >= 0 {
		return fmt.Errorf("row %d input %d is %v", i/in, i%in, x[i])
	}
	return nil
}

// ensure grows the buffers to hold rows rows.
func (ws *workspace) ensure(rows int) {
	if rows <= ws.rows {
		return
	}
	for l := range ws.acts {
		ws.acts[l] = make([]float32, rows*ws.sizes[l+1])
		ws.deltas[l] = make([]float32, rows*ws.sizes[l+1])
	}
	nz := max(rows, slices.Max(ws.sizes))
	ws.nzIdx, ws.nzVal = make([]int, nz), make([]float32, nz)
	ws.rows = rows
}

// forward computes every layer's output for rows inputs.
//
// Each output row is B plus the sum of W's rows weighted by the input
// row's non-zero values, four at a time (kernAxpy4): image inputs are
// about half zeros, and a zero contributes nothing.
func (ws *workspace) forward(m *onnx.Model, x []float32, rows int) {
	in := x
	last := len(m.Layers) - 1
	for li, l := range m.Layers {
		out := ws.acts[li][:rows*l.Out]
		for r := range rows {
			row := out[r*l.Out : (r+1)*l.Out]
			copy(row, l.B)
			n := 0
			for k, xv := range in[r*l.In : (r+1)*l.In] {
				if xv != 0 {
					ws.nzIdx[n], ws.nzVal[n] = k, xv
					n++
				}
			}
			ws.accumulate(row, l.W, l.Out, n)
		}
		if li < last {
			activateHidden(ws.hidden, out)
		}
		in = out
	}
}

// accumulate adds to dst the rows src[nzIdx[i]*stride :][:len(dst)]
// weighted by nzVal[i], for i < n.
func (ws *workspace) accumulate(dst, src []float32, stride, n int) {
	idx, val := ws.nzIdx[:n], ws.nzVal[:n]
	w := len(dst)
	i := 0
	for ; i+4 <= n; i += 4 {
		k0, k1, k2, k3 := idx[i]*stride, idx[i+1]*stride, idx[i+2]*stride, idx[i+3]*stride
		kernAxpy4(dst, val[i], val[i+1], val[i+2], val[i+3],
			src[k0:k0+w], src[k1:k1+w], src[k2:k2+w], src[k3:k3+w])
	}
	for ; i < n; i++ {
		k := idx[i] * stride
		kernAxpy(dst, val[i], src[k:k+w])
	}
}

// activateHidden applies a hidden activation in place.
func activateHidden(act onnx.Activation, v []float32) {
	switch act {
	case onnx.ReLU:
		for i, x := range v {
			if x < 0 {
				v[i] = 0
			}
		}
	case onnx.Sigmoid:
		for i, x := range v {
			v[i] = float32(stableSigmoid(float64(x)))
		}
	case onnx.Tanh:
		for i, x := range v {
			v[i] = float32(math.Tanh(float64(x)))
		}
	}
}

// lossAndDelta returns the mean loss of the rows in the last forward pass
// against labels y and, when withDelta, stores dLoss/dlogits (already
// divided by rows) in the last layer's delta buffer.
func (ws *workspace) lossAndDelta(y []int32, rows int, withDelta bool) float64 {
	last := len(ws.acts) - 1
	out := ws.sizes[last+1]
	z := ws.acts[last][:rows*out]
	delta := ws.deltas[last][:rows*out]
	inv := 1 / float64(rows)
	var total float64
	switch ws.kind {
	case lossBinaryCE:
		for r, zv := range z {
			v, t := float64(zv), float64(y[r])
			// softplus(v) - t*v, computed without overflow.
			total += max(v, 0) - t*v + math.Log1p(math.Exp(-math.Abs(v)))
			if withDelta {
				delta[r] = float32((stableSigmoid(v) - t) * inv)
			}
		}
	default:
		for r := range rows {
			zr := z[r*out : (r+1)*out]
			hi := math.Inf(-1)
			for _, v := range zr {
				hi = max(hi, float64(v))
			}
			var sum float64
			for _, v := range zr {
				sum += math.Exp(float64(v) - hi)
			}
			lse := hi + math.Log(sum)
			total += lse - float64(zr[y[r]])
			if withDelta {
				dr := delta[r*out : (r+1)*out]
				for j, v := range zr {
					dr[j] = float32(math.Exp(float64(v)-lse) * inv)
				}
				dr[y[r]] -= float32(inv)
			}
		}
	}
	return total * inv
}

// predict returns the predicted class of row r of the last forward pass.
func (ws *workspace) predict(r int) int32 {
	last := len(ws.acts) - 1
	out := ws.sizes[last+1]
	zr := ws.acts[last][r*out : (r+1)*out]
	if ws.kind == lossBinaryCE {
		if zr[0] >= 0 {
			return 1
		}
		return 0
	}
	best := 0
	for j, v := range zr {
		if v > zr[best] {
			best = j
		}
	}
	return int32(best)
}

// backward accumulates the gradient of the last forward pass into grad
// (overwriting it), starting from the last layer's delta.
func (ws *workspace) backward(m *onnx.Model, x []float32, rows int, grad []float32) {
	clear(grad)
	off := len(grad)
	for li := len(m.Layers) - 1; li >= 0; li-- {
		l := m.Layers[li]
		off -= l.In*l.Out + l.Out
		gW := grad[off : off+l.In*l.Out]
		gB := grad[off+l.In*l.Out : off+l.In*l.Out+l.Out]
		in := x
		if li > 0 {
			in = ws.acts[li-1]
		}
		d := ws.deltas[li][:rows*l.Out]
		for r := range rows {
			kernAxpy(gB, 1, d[r*l.Out:(r+1)*l.Out])
		}
		// gW[k] = sum over rows r of in[r][k] * d[r], over the rows
		// where in[r][k] is not zero.
		in = in[:rows*l.In]
		for k := range l.In {
			n := 0
			for r := range rows {
				if xv := in[r*l.In+k]; xv != 0 {
					ws.nzIdx[n], ws.nzVal[n] = r, xv
					n++
				}
			}
			ws.accumulate(gW[k*l.Out:(k+1)*l.Out], d, l.Out, n)
		}
		if li == 0 {
			break
		}
		// Delta of the layer below: (d · W^T) ⊙ act'(its output).
		prev := ws.deltas[li-1][:rows*l.In]
		a := ws.acts[li-1][:rows*l.In]
		for r := range rows {
			dr := d[r*l.Out : (r+1)*l.Out]
			for k, av := range a[r*l.In : (r+1)*l.In] {
				var deriv float32
				switch ws.hidden {
				case onnx.ReLU:
					if av <= 0 {
						prev[r*l.In+k] = 0
						continue
					}
					deriv = 1
				case onnx.Sigmoid:
					deriv = av * (1 - av)
				case onnx.Tanh:
					deriv = 1 - av*av
				default:
					deriv = 1
				}
				prev[r*l.In+k] = deriv * kernDot(l.W[k*l.Out:(k+1)*l.Out], dr)
			}
		}
	}
}

// stableSigmoid is 1/(1+e^-v) without overflow for large |v|.
func stableSigmoid(v float64) float64 {
	if v >= 0 {
		return 1 / (1 + math.Exp(-v))
	}
	e := math.Exp(v)
	return e / (1 + e)
}

// kernAxpy computes dst += a*src; src must be at least as long as dst.
func kernAxpy(dst []float32, a float32, src []float32) {
	src = src[:len(dst)]
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		d := dst[i : i+4 : i+4]
		s := src[i : i+4 : i+4]
		d[0] += a * s[0]
		d[1] += a * s[1]
		d[2] += a * s[2]
		d[3] += a * s[3]
	}
	for ; i < len(dst); i++ {
		dst[i] += a * src[i]
	}
}

// kernAxpy4 computes dst += a0*s0 + a1*s1 + a2*s2 + a3*s3; every s must
// be at least as long as dst. Four sources per pass load and store dst a
// quarter as often as four kernAxpy calls.
func kernAxpy4(dst []float32, a0, a1, a2, a3 float32, s0, s1, s2, s3 []float32) {
	s0, s1, s2, s3 = s0[:len(dst)], s1[:len(dst)], s2[:len(dst)], s3[:len(dst)]
	for j := range dst {
		dst[j] += a0*s0[j] + a1*s1[j] + a2*s2[j] + a3*s3[j]
	}
}

// kernDot returns the dot product of a and b[:len(a)], with four partial
// sums.
func kernDot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		x := a[i : i+4 : i+4]
		y := b[i : i+4 : i+4]
		s0 += x[0] * y[0]
		s1 += x[1] * y[1]
		s2 += x[2] * y[2]
		s3 += x[3] * y[3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}
