package federated

import (
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	fashionOnce               sync.Once
	fashionTrain, fashionTest *Dataset
	fashionErr                error
)

// coreFashion loads Fashion-MNIST from FashionMNISTDir once per test
// binary and fails (never skips) when it is not installed.
func coreFashion(tb testing.TB) (train, test *Dataset) {
	tb.Helper()
	fashionOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(FashionMNISTDir, "train-images-idx3-ubyte.gz")); err != nil {
			fashionErr = err
			return
		}
		fashionTrain, fashionTest, fashionErr = LoadFashionMNIST("")
	})
	if fashionErr != nil {
		tb.Fatalf("Fashion-MNIST is not available in %s: %v\nrun scripts/setup.sh (it installs the Debian package dataset-fashion-mnist)", FashionMNISTDir, fashionErr)
	}
	return fashionTrain, fashionTest
}

func TestLoadFashionMNIST(t *testing.T) {
	train, test := coreFashion(t)
	for _, c := range []struct {
		name string
		d    *Dataset
		n    int
	}{{"train", train, 60000}, {"test", test, 10000}} {
		if c.d.N != c.n || c.d.Dim != 784 || c.d.Classes != 10 {
			t.Errorf("%s: N, Dim, Classes = %d, %d, %d; want %d, 784, 10", c.name, c.d.N, c.d.Dim, c.d.Classes, c.n)
		}
		if err := c.d.Validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		counts := make([]int, 10)
		for _, y := range c.d.Y {
			counts[y]++
		}
		// Fashion-MNIST is balanced: 6000 and 1000 per class.
		for k, n := range counts {
			if n != c.n/10 {
				t.Errorf("%s: class %d has %d samples, want %d", c.name, k, n, c.n/10)
			}
		}
	}
	if _, _, err := LoadFashionMNIST(t.TempDir()); err == nil {
		t.Error("LoadFashionMNIST of an empty directory: no error")
	}
}

// TestFashionAccuracy is a correctness test of the whole training path:
// softmax regression and a 784-64-10 MLP trained for 2 epochs on 5000
// Fashion-MNIST images must classify 2000 test images with more than 75%
// accuracy.
func TestFashionAccuracy(t *testing.T) {
	train, test := coreFashion(t)
	idx := PartitionIID(train.N, 12, coreRNG(11))[0] // 5000 random images
	local := train.Subset(idx)
	held := test.Subset(PartitionIID(test.N, 5, coreRNG(12))[0]) // 2000
	if local.N != 5000 || held.N != 2000 {
		t.Fatalf("subsets of %d and %d", local.N, held.N)
	}
	for _, spec := range []Spec{
		{Family: "softmax", Sizes: []int{784, 10}},
		{Family: "mlp", Sizes: []int{784, 64, 10}},
	} {
		t.Run(spec.String(), func(t *testing.T) {
			m, err := NewModel(spec, 1)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := Evaluate(m, held)
			cfg := DefaultSGDConfig()
			cfg.Epochs, cfg.Seed = 2, 3
			tr, err := NewTrainer(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			trainLoss, err := tr.Train(local, nil)
			if err != nil {
				t.Fatal(err)
			}
			acc, loss := Evaluate(m, held)
			t.Logf("train loss %.3f; test accuracy %.3f (before training %.3f), test loss %.3f", trainLoss, acc, before, loss)
			if acc <= 0.75 {
				t.Errorf("test accuracy %.3f, want > 0.75", acc)
			}
		})
	}
}

// TestExportMatchesEvaluate trains a model, exports it to ONNX, and checks
// that the onnx package's Forward on the trained model predicts what
// Evaluate counts.
func TestExportMatchesEvaluate(t *testing.T) {
	train, test := coreFashion(t)
	local := train.Subset(PartitionIID(train.N, 30, coreRNG(21))[0])
	held := test.Subset(PartitionIID(test.N, 10, coreRNG(22))[0])
	for _, spec := range []Spec{
		{Family: "mlp", Sizes: []int{784, 32, 10}},
		{Family: "logistic", Sizes: []int{784, 1}},
	} {
		t.Run(spec.String(), func(t *testing.T) {
			tl, hd := local, held
			if spec.Family == "logistic" {
				// Binary task: trouser (1) or not.
				tl, hd = coreBinary(local, 1), coreBinary(held, 1)
			}
			m, err := NewModel(spec, 5)
			if err != nil {
				t.Fatal(err)
			}
			cfg := DefaultSGDConfig()
			cfg.Epochs = 2
			tr, err := NewTrainer(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tr.Train(tl, nil); err != nil {
				t.Fatal(err)
			}
			file, err := m.MarshalONNX()
			if err != nil {
				t.Fatal(err)
			}
			if len(file) < 4*NumParams(m) {
				t.Errorf("ONNX file of %d bytes for %d float32 parameters", len(file), NumParams(m))
			}
			acc, _ := Evaluate(m, hd)
			out, err := m.Forward(hd.X, hd.N)
			if err != nil {
				t.Fatal(err)
			}
			pred, err := Predict(m, hd.X, hd.N)
			if err != nil {
				t.Fatal(err)
			}
			k := m.OutSize()
			correct, mismatched := 0, 0
			for r := range hd.N {
				row := out[r*k : (r+1)*k]
				p := coreArgmax(row)
				if p == hd.Y[r] {
					correct++
				}
				if p != pred[r] {
					// Only a near-tie may round differently between
					// float32 and float64 accumulation.
					if coreMargin(row) > 1e-4 {
						t.Errorf("sample %d: onnx Forward predicts %d, Predict %d (outputs %v)", r, p, pred[r], row)
					}
					mismatched++
				}
			}
			onnxAcc := float64(correct) / float64(hd.N)
			t.Logf("accuracy: Evaluate %.4f, onnx Forward %.4f; %d near-tie mismatches", acc, onnxAcc, mismatched)
			if math.Abs(onnxAcc-acc) > float64(mismatched)/float64(hd.N)+1e-12 {
				t.Errorf("onnx Forward accuracy %.4f, Evaluate %.4f", onnxAcc, acc)
			}
			if acc < 0.6 {
				t.Errorf("accuracy %.3f after training, want >= 0.6", acc)
			}
		})
	}
}

// coreBinary relabels d as class positive (1) against the rest (0).
func coreBinary(d *Dataset, positive int32) *Dataset {
	b := &Dataset{X: d.X, Y: make([]int32, d.N), N: d.N, Dim: d.Dim, Classes: 2}
	for i, y := range d.Y {
		if y == positive {
			b.Y[i] = 1
		}
	}
	return b
}

// coreMargin is how far an onnx output row is from a tie between its top
// two classes (for one sigmoid output, from 0.5).
func coreMargin(row []float32) float64 {
	if len(row) == 1 {
		return math.Abs(float64(row[0]) - 0.5)
	}
	first, second := math.Inf(-1), math.Inf(-1)
	for _, v := range row {
		f := float64(v)
		if f > first {
			first, second = f, first
		} else if f > second {
			second = f
		}
	}
	return first - second
}

// BenchmarkTrainEpoch trains a 784-128-10 MLP for one epoch over the 60000
// Fashion-MNIST training images in batches of 32 (one op is one epoch).
func BenchmarkTrainEpoch(b *testing.B) {
	train, _ := coreFashion(b)
	m, err := NewModel(Spec{Family: "mlp", Sizes: []int{784, 128, 10}}, 1)
	if err != nil {
		b.Fatal(err)
	}
	tr, err := NewTrainer(m, SGDConfig{LR: 0.01, Momentum: 0.9, BatchSize: 32, Epochs: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := tr.Train(train, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(train.N)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}
