package node_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/federated"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
)

// The two-model escalation example (docs/PERFORMANCE.md, "Escalation and
// pipelines"): a small edge model (784-16-10, one epoch) and a larger
// central model (784-256-10, three epochs), both trained with package
// federated on Fashion-MNIST, served by two real nodes on loopback. Each
// sub-benchmark sends one test image per request (binary tensors,
// HTTP/1.1) and reports accuracy over the images it sent, the escalation
// rate, and the mean latency as ns/op. Run it with a fixed count so that
// every variant sees the same images:
//
//	go test ./node/ -run '^$' -bench BenchmarkEscalation -benchtime 2000x

var (
	escModelsOnce    sync.Once
	escEdge, escCent *onnx.Model
	escTest          *federated.Dataset
	escErr           error
)

// escalationModels trains the two models once per test binary.
func escalationModels(b *testing.B) (edge, central *onnx.Model, test *federated.Dataset) {
	escModelsOnce.Do(func() {
		train, test, err := federated.LoadFashionMNIST("")
		if err != nil {
			escErr = fmt.Errorf("Fashion-MNIST (scripts/setup.sh installs dataset-fashion-mnist): %w", err)
			return
		}
		escTest = test
		fit := func(sizes []int, epochs int, seed uint64) (*onnx.Model, error) {
			m, err := federated.NewModel(federated.Spec{Family: "mlp", Sizes: sizes}, seed)
			if err != nil {
				return nil, err
			}
			cfg := federated.DefaultSGDConfig()
			cfg.Epochs, cfg.Seed = epochs, seed
			tr, err := federated.NewTrainer(m, cfg)
			if err != nil {
				return nil, err
			}
			if _, err := tr.Train(train, nil); err != nil {
				return nil, err
			}
			return m, nil
		}
		if escEdge, escErr = fit([]int{784, 16, 10}, 1, 1); escErr != nil {
			return
		}
		escCent, escErr = fit([]int{784, 256, 10}, 3, 2)
	})
	if escErr != nil {
		b.Fatal(escErr)
	}
	return escEdge, escCent, escTest
}

func writeModel(r *repo, name string, m *onnx.Model) {
	r.t.Helper()
	bts, err := m.MarshalONNX()
	if err != nil {
		r.t.Fatal(err)
	}
	r.write(filepath.Join(name, "1", "model.onnx"), bts)
}

func BenchmarkEscalation(b *testing.B) {
	edge, central, test := escalationModels(b)
	l := newMeshLab(b)
	cr, er := newRepo(b), newRepo(b)
	writeModel(cr, "central", central)
	writeModel(er, "edge", edge)
	thresholds := []string{"0.5", "0.7", "0.9"}
	for _, th := range thresholds {
		writeModel(er, "edge"+th[2:], edge)
		er.config("edge"+th[2:], `{"escalation": {"to": "central", "max_prob_below": `+th+`, "timeout": "1s"}}`)
	}
	c := l.start("central-1", cr, nil, func(cfg *node.Config) { cfg.Mesh.Role = "central" })
	e := l.start("edge-1", er, nil, func(cfg *node.Config) { cfg.Mesh.Fallback = []string{"https://" + c.Addr()} })

	variants := []struct{ name, model string }{
		{"edge-only", "edge"}, {"central-only", "central"},
		{"escalate-0.5", "edge5"}, {"escalate-0.7", "edge7"}, {"escalate-0.9", "edge9"},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			target := e
			if v.model == "central" {
				target = c
			}
			rc := target.raw(b, client.HTTP1)
			correct, escalated := 0, 0
			var total time.Duration
			b.ResetTimer()
			for i := range b.N {
				k := i % test.N
				x := test.X[k*test.Dim : (k+1)*test.Dim]
				req := &oip.Request{Inputs: []models.Tensor{f32("input", []int64{1, int64(test.Dim)}, x)}, BinaryOutput: true}
				body, hl := encode(b, req, true)
				start := time.Now()
				rep := rc.do(b, http.MethodPost, "/v2/models/"+v.model+"/infer", body, inferHeaders(hl))
				total += time.Since(start)
				resp := decodeReply(b, rep)
				if rep.header.Get(node.HeaderEscalated) != "" {
					escalated++
				}
				if rep.header.Get(node.HeaderEscalation) != "" {
					b.Fatalf("escalation failed: %s", rep.header.Get(node.HeaderEscalation))
				}
				p := probs(b, resp.Outputs[0])
				best := 0
				for j := range p {
					if p[j] > p[best] {
						best = j
					}
				}
				if int32(best) == test.Y[k] {
					correct++
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(correct)/float64(b.N), "accuracy")
			b.ReportMetric(float64(escalated)/float64(b.N), "escalated")
			b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/req")
		})
	}
}
