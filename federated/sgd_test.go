package federated

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models/onnx"
)

// coreRandBatch returns rows random inputs in [-1, 1] (about a quarter of
// them exactly zero, like image pixels) and labels below classes.
func coreRandBatch(rng *rand.Rand, rows, in, classes int) ([]float32, []int32) {
	x := make([]float32, rows*in)
	for i := range x {
		if rng.IntN(4) > 0 {
			x[i] = float32(2*rng.Float64() - 1)
		}
	}
	y := make([]int32, rows)
	for i := range y {
		y[i] = int32(rng.IntN(classes))
	}
	return x, y
}

// coreRefLoss is an independent float64 implementation of the mean loss
// of m with parameters p (Flatten's layout) on the batch.
func coreRefLoss(m *onnx.Model, p []float64, x []float32, y []int32, rows int) float64 {
	var total float64
	for r := range rows {
		cur := make([]float64, m.InSize())
		for k := range cur {
			cur[k] = float64(x[r*m.InSize()+k])
		}
		off := 0
		for li, l := range m.Layers {
			w := p[off : off+l.In*l.Out]
			b := p[off+l.In*l.Out : off+l.In*l.Out+l.Out]
			off += l.In*l.Out + l.Out
			next := make([]float64, l.Out)
			for j := range next {
				s := b[j]
				for k := range cur {
					s += cur[k] * w[k*l.Out+j]
				}
				next[j] = s
			}
			if li < len(m.Layers)-1 {
				for j, v := range next {
					switch m.Hidden {
					case onnx.ReLU, "":
						next[j] = math.Max(v, 0)
					case onnx.Sigmoid:
						next[j] = 1 / (1 + math.Exp(-v))
					case onnx.Tanh:
						next[j] = math.Tanh(v)
					}
				}
			}
			cur = next
		}
		if m.Output == onnx.Sigmoid {
			pr := 1 / (1 + math.Exp(-cur[0]))
			if y[r] == 1 {
				total -= math.Log(pr)
			} else {
				total -= math.Log(1 - pr)
			}
			continue
		}
		hi := math.Inf(-1)
		for _, v := range cur {
			hi = math.Max(hi, v)
		}
		var sum float64
		for _, v := range cur {
			sum += math.Exp(v - hi)
		}
		total += hi + math.Log(sum) - cur[y[r]]
	}
	return total / float64(rows)
}

func TestGradientFiniteDifferences(t *testing.T) {
	mlpTanh := onnx.NewMLP([]int{5, 6, 4, 3}, onnx.Softmax)
	mlpTanh.Hidden = onnx.Tanh
	mlpSigmoid := onnx.NewMLP([]int{5, 6, 4, 3}, onnx.Identity)
	mlpSigmoid.Hidden = onnx.Sigmoid
	tests := []struct {
		name    string
		model   *onnx.Model
		classes int
	}{
		{"softmax", onnx.NewSoftmax(6, 4), 4},
		{"logistic", onnx.NewLogistic(7), 2},
		{"mlp-relu-2-hidden", onnx.NewMLP([]int{6, 8, 7, 4}, onnx.Softmax), 4},
		{"mlp-tanh-2-hidden", mlpTanh, 3},
		{"mlp-sigmoid-logits", mlpSigmoid, 3},
		{"mlp-relu-logistic", onnx.NewMLP([]int{4, 5, 1}, onnx.Sigmoid), 2},
	}
	for ti, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(ti), 1))
			m := tt.model.RandomInit(uint64(ti) + 10)
			// Non-zero biases so their gradient paths are exercised.
			for _, l := range m.Layers {
				for j := range l.B {
					l.B[j] = float32(0.2 * rng.NormFloat64())
				}
			}
			const rows = 9
			x, y := coreRandBatch(rng, rows, m.InSize(), tt.classes)
			grad, loss, err := Gradient(m, x, y, rows)
			if err != nil {
				t.Fatal(err)
			}
			p32 := Flatten(m)
			p := make([]float64, len(p32))
			for i, v := range p32 {
				p[i] = float64(v)
			}
			if ref := coreRefLoss(m, p, x, y, rows); math.Abs(ref-loss) > 1e-5*math.Max(1, ref) {
				t.Errorf("loss %v, float64 reference %v", loss, ref)
			}
			const h = 1e-6
			var worst float64
			for i := range p {
				orig := p[i]
				p[i] = orig + h
				up := coreRefLoss(m, p, x, y, rows)
				p[i] = orig - h
				down := coreRefLoss(m, p, x, y, rows)
				p[i] = orig
				num := (up - down) / (2 * h)
				an := float64(grad[i])
				// Relative error, with a floor on the scale for entries
				// that are (numerically) zero.
				rel := math.Abs(an-num) / math.Max(math.Max(math.Abs(an), math.Abs(num)), 1e-3)
				if rel > 1e-3 {
					t.Errorf("parameter %d: analytic %.8g, numeric %.8g (relative error %.2g)", i, an, num, rel)
				}
				worst = math.Max(worst, rel)
			}
			t.Logf("%d parameters, worst relative error %.2g", len(p), worst)
		})
	}
}

func TestForwardMatchesONNX(t *testing.T) {
	specs := []Spec{
		{Family: "softmax", Sizes: []int{20, 5}},
		{Family: "logistic", Sizes: []int{20, 1}},
		{Family: "mlp", Sizes: []int{20, 16, 8, 5}},
	}
	for si, spec := range specs {
		t.Run(spec.String(), func(t *testing.T) {
			m, err := NewModel(spec, uint64(si))
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(7, uint64(si)))
			const rows = 33
			x, _ := coreRandBatch(rng, rows, 20, 2)
			want, err := m.Forward(x, rows)
			if err != nil {
				t.Fatal(err)
			}
			ws, err := newWorkspace(m)
			if err != nil {
				t.Fatal(err)
			}
			ws.ensure(rows)
			ws.forward(m, x, rows)
			out := m.OutSize()
			logits := ws.acts[len(ws.acts)-1][:rows*out]
			for r := range rows {
				z := logits[r*out : (r+1)*out]
				got := make([]float64, out)
				if ws.kind == lossBinaryCE {
					got[0] = stableSigmoid(float64(z[0]))
				} else {
					var sum float64
					for j, v := range z {
						got[j] = math.Exp(float64(v))
						sum += got[j]
					}
					for j := range got {
						got[j] /= sum
					}
				}
				for j := range got {
					if d := math.Abs(got[j] - float64(want[r*out+j])); d > 1e-5 {
						t.Fatalf("row %d output %d: training forward %v, onnx Forward %v", r, j, got[j], want[r*out+j])
					}
				}
			}
			pred, err := Predict(m, x, rows)
			if err != nil {
				t.Fatal(err)
			}
			for r, p := range pred {
				if w := coreArgmax(want[r*out : (r+1)*out]); p != w {
					t.Errorf("row %d: Predict %d, onnx Forward argmax %d", r, p, w)
				}
			}
		})
	}
}

// coreArgmax is the predicted class of one row of onnx Forward output (a
// single sigmoid probability or a probability vector).
func coreArgmax(row []float32) int32 {
	if len(row) == 1 {
		if row[0] >= 0.5 {
			return 1
		}
		return 0
	}
	best := 0
	for j, v := range row {
		if v > row[best] {
			best = j
		}
	}
	return int32(best)
}

// TestStepUpdateRule checks the momentum, weight decay and proximal terms
// against the update written out by hand.
func TestStepUpdateRule(t *testing.T) {
	tests := []struct {
		name string
		cfg  SGDConfig
		prox bool
	}{
		{"plain", SGDConfig{LR: 0.1, BatchSize: 1, Epochs: 1}, false},
		{"momentum", SGDConfig{LR: 0.1, Momentum: 0.9, BatchSize: 1, Epochs: 1}, false},
		{"weight-decay", SGDConfig{LR: 0.1, Momentum: 0.5, WeightDecay: 0.01, BatchSize: 1, Epochs: 1}, false},
		{"prox", SGDConfig{LR: 0.05, Momentum: 0.9, WeightDecay: 0.001, ProxMu: 0.5, BatchSize: 1, Epochs: 1}, true},
		{"prox-mu-without-ref", SGDConfig{LR: 0.05, ProxMu: 0.5, BatchSize: 1, Epochs: 1}, false},
	}
	for ti, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewModel(Spec{Family: "mlp", Sizes: []int{6, 5, 3}}, 3)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(ti), 2))
			var ref []float32
			if tt.prox {
				ref = Flatten(m)
				for i := range ref {
					ref[i] += float32(0.3 * rng.NormFloat64())
				}
			}
			tr, err := NewTrainer(m, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			vel := make([]float64, NumParams(m))
			for step := range 3 {
				x, y := coreRandBatch(rng, 4, 6, 3)
				w := Flatten(m)
				g, wantLoss, err := Gradient(m, x, y, 4)
				if err != nil {
					t.Fatal(err)
				}
				loss, err := tr.Step(x, y, 4, ref)
				if err != nil {
					t.Fatal(err)
				}
				if loss != wantLoss {
					t.Errorf("step %d: loss %v, Gradient's %v", step, loss, wantLoss)
				}
				got := Flatten(m)
				for i := range w {
					gi := float64(g[i]) + tt.cfg.WeightDecay*float64(w[i])
					if ref != nil {
						gi += tt.cfg.ProxMu * float64(w[i]-ref[i])
					}
					vel[i] = tt.cfg.Momentum*vel[i] + gi
					want := float64(w[i]) - tt.cfg.LR*vel[i]
					if math.Abs(float64(got[i])-want) > 1e-6*math.Max(1, math.Abs(want)) {
						t.Fatalf("step %d parameter %d: %v, want %v", step, i, got[i], want)
					}
				}
			}
		})
	}
}

func TestProxPullsTowardsAnchor(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	d := coreBlobs(rng, 400, 8, 3)
	dist := func(mu float64) float64 {
		m, _ := NewModel(Spec{Family: "softmax", Sizes: []int{8, 3}}, 1)
		ref := Flatten(m)
		tr, err := NewTrainer(m, SGDConfig{LR: 0.1, BatchSize: 10, Epochs: 3, ProxMu: mu, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Train(d, ref); err != nil {
			t.Fatal(err)
		}
		var s float64
		for i, v := range Flatten(m) {
			s += float64(v-ref[i]) * float64(v-ref[i])
		}
		return math.Sqrt(s)
	}
	free, prox := dist(0), dist(5)
	if !(prox < 0.5*free) {
		t.Errorf("distance from the anchor: %.4g with mu=5, %.4g with mu=0; want the proximal term to at least halve it", prox, free)
	}
}

// coreBlobs returns n samples of dim features in classes Gaussian clusters
// whose centres are far apart, so they are separable.
func coreBlobs(rng *rand.Rand, n, dim, classes int) *Dataset {
	centres := make([][]float64, classes)
	for c := range centres {
		centres[c] = make([]float64, dim)
		for k := range centres[c] {
			centres[c][k] = 2 * rng.NormFloat64()
		}
	}
	d := &Dataset{X: make([]float32, n*dim), Y: make([]int32, n), N: n, Dim: dim, Classes: classes}
	for i := range n {
		c := rng.IntN(classes)
		d.Y[i] = int32(c)
		for k := range dim {
			d.X[i*dim+k] = float32(centres[c][k] + 0.5*rng.NormFloat64())
		}
	}
	return d
}

func TestTrainLearnsAndIsDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	train := coreBlobs(rng, 600, 10, 4)
	specs := []Spec{
		{Family: "softmax", Sizes: []int{10, 4}},
		{Family: "mlp", Sizes: []int{10, 16, 16, 4}},
	}
	for _, spec := range specs {
		t.Run(spec.String(), func(t *testing.T) {
			run := func() (*onnx.Model, float64, float64) {
				m, err := NewModel(spec, 9)
				if err != nil {
					t.Fatal(err)
				}
				tr, err := NewTrainer(m, SGDConfig{LR: 0.05, Momentum: 0.9, BatchSize: 16, Epochs: 1, Seed: 4})
				if err != nil {
					t.Fatal(err)
				}
				first, err := tr.Train(train, nil)
				if err != nil {
					t.Fatal(err)
				}
				var last float64
				for range 3 {
					if last, err = tr.Train(train, nil); err != nil {
						t.Fatal(err)
					}
				}
				return m, first, last
			}
			m, first, last := run()
			if !(last < 0.5*first) {
				t.Errorf("mean training loss went from %.4g (epoch 1) to %.4g (epoch 4), want it at least halved", first, last)
			}
			acc, loss := Evaluate(m, train)
			if acc < 0.95 {
				t.Errorf("accuracy on separable blobs %.3f (loss %.3g), want >= 0.95", acc, loss)
			}
			m2, _, _ := run()
			a, b := Flatten(m), Flatten(m2)
			for i := range a {
				if a[i] != b[i] {
					t.Fatalf("parameter %d differs between two runs with the same seeds: %v vs %v", i, a[i], b[i])
				}
			}
		})
	}
}

func TestTrainLogistic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	d := coreBlobs(rng, 500, 6, 2)
	m, err := NewModel(Spec{Family: "logistic", Sizes: []int{6}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(m, SGDConfig{LR: 0.1, BatchSize: 20, Epochs: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Train(d, nil); err != nil {
		t.Fatal(err)
	}
	if acc, loss := Evaluate(m, d); acc < 0.95 || loss > 0.2 {
		t.Errorf("logistic regression on separable data: accuracy %.3f, loss %.3g; want >= 0.95 and <= 0.2", acc, loss)
	}
}

func TestStepDoesNotAllocate(t *testing.T) {
	m, _ := NewModel(Spec{Family: "mlp", Sizes: []int{30, 20, 5}}, 1)
	tr, err := NewTrainer(m, SGDConfig{LR: 0.01, Momentum: 0.9, WeightDecay: 1e-4, ProxMu: 0.1, BatchSize: 8, Epochs: 1})
	if err != nil {
		t.Fatal(err)
	}
	x, y := coreRandBatch(rand.New(rand.NewPCG(1, 1)), 8, 30, 5)
	ref := Flatten(m)
	if _, err := tr.Step(x, y, 8, ref); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := tr.Step(x, y, 8, ref); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Step allocates %v times per call, want 0", allocs)
	}
}

func TestTrainerErrors(t *testing.T) {
	newTrainer := func() *Trainer {
		m, _ := NewModel(Spec{Family: "softmax", Sizes: []int{4, 3}}, 1)
		tr, err := NewTrainer(m, SGDConfig{LR: 0.1, BatchSize: 2, Epochs: 1})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	good := &Dataset{X: make([]float32, 8), Y: []int32{0, 2}, N: 2, Dim: 4, Classes: 3}
	tests := []struct {
		name string
		run  func(*Trainer) error
		is   error
		want string
	}{
		{"wrong dim", func(tr *Trainer) error {
			_, err := tr.Train(&Dataset{X: make([]float32, 10), Y: []int32{0, 1}, N: 2, Dim: 5, Classes: 3}, nil)
			return err
		}, nil, "5 features"},
		{"too many classes", func(tr *Trainer) error {
			_, err := tr.Train(&Dataset{X: make([]float32, 8), Y: []int32{0, 1}, N: 2, Dim: 4, Classes: 4}, nil)
			return err
		}, nil, "4 classes"},
		{"invalid dataset", func(tr *Trainer) error {
			_, err := tr.Train(&Dataset{X: make([]float32, 7), Y: []int32{0, 1}, N: 2, Dim: 4, Classes: 3}, nil)
			return err
		}, nil, "X has 7 values"},
		{"nil dataset", func(tr *Trainer) error { _, err := tr.Train(nil, nil); return err }, nil, "nil"},
		{"empty dataset", func(tr *Trainer) error {
			_, err := tr.Train(&Dataset{Dim: 4, Classes: 3}, nil)
			return err
		}, ErrEmptyDataset, "empty"},
		{"short ref", func(tr *Trainer) error { _, err := tr.Train(good, make([]float32, 3)); return err }, nil, "3 values"},
		{"NaN ref", func(tr *Trainer) error {
			ref := make([]float32, 15)
			ref[7] = float32(math.NaN())
			_, err := tr.Train(good, ref)
			return err
		}, nil, "value 7 is NaN"},
		{"step label out of range", func(tr *Trainer) error {
			_, err := tr.Step(make([]float32, 8), []int32{0, 3}, 2, nil)
			return err
		}, nil, "label 1 is 3"},
		{"step negative label", func(tr *Trainer) error {
			_, err := tr.Step(make([]float32, 8), []int32{-1, 0}, 2, nil)
			return err
		}, nil, "label 0 is -1"},
		{"step zero rows", func(tr *Trainer) error { _, err := tr.Step(nil, nil, 0, nil); return err }, nil, "0 rows"},
		{"step short x", func(tr *Trainer) error {
			_, err := tr.Step(make([]float32, 7), []int32{0, 1}, 2, nil)
			return err
		}, nil, "7 input values"},
		{"step short y", func(tr *Trainer) error {
			_, err := tr.Step(make([]float32, 8), []int32{0}, 2, nil)
			return err
		}, nil, "1 labels for 2 rows"},
		{"step Inf input", func(tr *Trainer) error {
			x := make([]float32, 8)
			x[5] = float32(math.Inf(1))
			_, err := tr.Step(x, []int32{0, 1}, 2, nil)
			return err
		}, nil, "row 1 input 1 is +Inf"},
		{"model changed shape", func(tr *Trainer) error {
			tr.Model().Layers[0] = onnx.NewDense(4, 2)
			_, err := tr.Train(good, nil)
			return err
		}, nil, "changed shape"},
		{"NaN weight", func(tr *Trainer) error {
			tr.Model().Layers[0].W[0] = float32(math.NaN())
			_, err := tr.Train(good, nil)
			return err
		}, ErrDiverged, "NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(newTrainer())
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestTrainDiverges(t *testing.T) {
	m, _ := NewModel(Spec{Family: "softmax", Sizes: []int{4, 3}}, 1)
	tr, err := NewTrainer(m, SGDConfig{LR: 1e38, Momentum: 0.99, BatchSize: 1, Epochs: 5})
	if err != nil {
		t.Fatal(err)
	}
	d := coreBlobs(rand.New(rand.NewPCG(1, 1)), 20, 4, 3)
	if _, err := tr.Train(d, nil); !errors.Is(err, ErrDiverged) {
		t.Errorf("training with LR 1e38: error %v, want ErrDiverged", err)
	}
}

func TestNewTrainerRejects(t *testing.T) {
	good := SGDConfig{LR: 0.1, BatchSize: 1, Epochs: 1}
	softmax, _ := NewModel(Spec{Family: "softmax", Sizes: []int{3, 2}}, 1)
	sigmoidWide := onnx.NewMLP([]int{3, 4, 2}, onnx.Sigmoid)
	identityOne := onnx.NewMLP([]int{3, 4, 1}, onnx.Identity)
	tests := []struct {
		name  string
		model *onnx.Model
		cfg   SGDConfig
		want  string
	}{
		{"zero LR", softmax, SGDConfig{BatchSize: 1, Epochs: 1}, "LR"},
		{"NaN LR", softmax, SGDConfig{LR: math.NaN(), BatchSize: 1, Epochs: 1}, "LR"},
		{"momentum 1", softmax, SGDConfig{LR: 0.1, Momentum: 1, BatchSize: 1, Epochs: 1}, "Momentum"},
		{"negative decay", softmax, SGDConfig{LR: 0.1, WeightDecay: -1, BatchSize: 1, Epochs: 1}, "WeightDecay"},
		{"negative mu", softmax, SGDConfig{LR: 0.1, ProxMu: -1, BatchSize: 1, Epochs: 1}, "ProxMu"},
		{"zero batch", softmax, SGDConfig{LR: 0.1, Epochs: 1}, "BatchSize"},
		{"zero epochs", softmax, SGDConfig{LR: 0.1, BatchSize: 1}, "Epochs"},
		{"nil model", nil, good, "nil model"},
		{"linear", onnx.NewLinear(3, 2), good, "linear"},
		{"sigmoid with 2 outputs", sigmoidWide, good, "needs 1 output"},
		{"identity with 1 output", identityOne, good, "2 or more outputs"},
		{"invalid model", &onnx.Model{Family: onnx.FamilySoftmax}, good, "no layers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTrainer(tt.model, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	if err := DefaultSGDConfig().Validate(); err != nil {
		t.Errorf("DefaultSGDConfig: %v", err)
	}
}

func TestEvaluate(t *testing.T) {
	// Softmax regression on 2 features whose logits are the features:
	// row 0 predicts 0, row 1 predicts 1, row 2 predicts 1.
	m := onnx.NewSoftmax(2, 2)
	m.Layers[0].W = []float32{1, 0, 0, 1}
	d := &Dataset{X: []float32{2, 0, 0, 3, 1, 1.5}, Y: []int32{0, 1, 0}, N: 3, Dim: 2, Classes: 2}
	acc, loss := Evaluate(m, d)
	if math.Abs(acc-2.0/3) > 1e-12 {
		t.Errorf("accuracy %v, want 2/3", acc)
	}
	lse := func(a, b float64) float64 { return math.Log(math.Exp(a) + math.Exp(b)) }
	want := ((lse(2, 0) - 2) + (lse(0, 3) - 3) + (lse(1, 1.5) - 1)) / 3
	if math.Abs(loss-want) > 1e-6 {
		t.Errorf("loss %v, want %v", loss, want)
	}

	for name, dd := range map[string]*Dataset{
		"nil":        nil,
		"empty":      {Dim: 2, Classes: 2},
		"wrong dim":  {X: []float32{1, 2, 3}, Y: []int32{0}, N: 1, Dim: 3, Classes: 2},
		"bad labels": {X: []float32{1, 2}, Y: []int32{5}, N: 1, Dim: 2, Classes: 2},
	} {
		if acc, loss := Evaluate(m, dd); !math.IsNaN(acc) || !math.IsNaN(loss) {
			t.Errorf("%s dataset: Evaluate = %v, %v, want NaN, NaN", name, acc, loss)
		}
	}
	if acc, _ := Evaluate(nil, d); !math.IsNaN(acc) {
		t.Errorf("nil model: accuracy %v, want NaN", acc)
	}
}

func TestPredictErrors(t *testing.T) {
	m, _ := NewModel(Spec{Family: "softmax", Sizes: []int{3, 2}}, 1)
	if _, err := Predict(m, make([]float32, 5), 2); err == nil {
		t.Error("Predict with 5 values for 2 rows of 3: no error")
	}
	if _, err := Predict(m, []float32{1, float32(math.NaN()), 0}, 1); err == nil {
		t.Error("Predict with a NaN input: no error")
	}
	if p, err := Predict(m, nil, 0); err != nil || len(p) != 0 {
		t.Errorf("Predict of no rows = %v, %v; want empty, nil", p, err)
	}
}

func TestGradientErrors(t *testing.T) {
	m, _ := NewModel(Spec{Family: "logistic", Sizes: []int{3, 1}}, 1)
	if _, _, err := Gradient(m, make([]float32, 3), []int32{2}, 1); err == nil || !strings.Contains(err.Error(), "label 0 is 2") {
		t.Errorf("logistic label 2: error %v", err)
	}
	if _, _, err := Gradient(nil, nil, nil, 1); err == nil {
		t.Error("nil model: no error")
	}
}

// BenchmarkStep measures one minibatch step of a 784-128-10 MLP on
// random image-like data (no data set needed).
func BenchmarkStep(b *testing.B) {
	m, _ := NewModel(Spec{Family: "mlp", Sizes: []int{784, 128, 10}}, 1)
	tr, err := NewTrainer(m, SGDConfig{LR: 0.01, Momentum: 0.9, BatchSize: 32, Epochs: 1})
	if err != nil {
		b.Fatal(err)
	}
	x, y := coreRandBatch(rand.New(rand.NewPCG(1, 1)), 32, 784, 10)
	for i := range x {
		x[i] = float32(math.Abs(float64(x[i])))
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := tr.Step(x, y, 32, nil); err != nil {
			b.Fatal(err)
		}
	}
}
