package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/federated"
	"github.com/petrel-mesh/petrel/node"
)

var (
	fashionOnce         sync.Once
	fashionTrain, fTest *federated.Dataset
	fashionErr          error
)

func fashion(t testing.TB) (*federated.Dataset, *federated.Dataset) {
	t.Helper()
	fashionOnce.Do(func() { fashionTrain, fTest, fashionErr = federated.LoadFashionMNIST("") })
	if fashionErr != nil {
		t.Fatalf("these tests need Fashion-MNIST (scripts/setup.sh installs Debian's dataset-fashion-mnist): %v", fashionErr)
	}
	return fashionTrain, fTest
}

// postFeedback sends labelled examples to a node's feedback endpoint.
func postFeedback(t testing.TB, n *node.Node, model string, d *federated.Dataset) {
	t.Helper()
	type ex struct {
		Inputs []map[string]any `json:"inputs"`
		Label  int32            `json:"label"`
	}
	for start := 0; start < d.N; start += 500 {
		end := min(start+500, d.N)
		var body struct {
			Examples []ex `json:"examples"`
		}
		for i := start; i < end; i++ {
			body.Examples = append(body.Examples, ex{Inputs: []map[string]any{{"name": "input", "datatype": "FP32", "shape": []int{1, d.Dim},
				"data": d.X[i*d.Dim : (i+1)*d.Dim]}}, Label: d.Y[i]})
		}
		b, _ := json.Marshal(body)
		resp, err := http.Post("http://"+n.Addr()+"/v2/models/"+model+"/feedback", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("feedback: %d", resp.StatusCode)
		}
	}
}

// TestFederatedRoundEndToEnd: feedback posted to real nodes, a round
// started through the API, updates over NATS, one sampled node that
// crashes mid-round, a malformed update and a poisoned one from a fake
// sampled client, median aggregation, the held-out check, registration
// through the validation gate with lineage, a rollout, and the nodes
// serving the new version.
func TestFederatedRoundEndToEnd(t *testing.T) {
	train, test := fashion(t)
	hold := test.Subset(seq(0, 2000))
	m := newTestMesh(t, meshOpts{nodes: 4, feedback: true, mutate: func(c *coordinator.Config) {
		c.FL.Holdout = map[string]*federated.Dataset{"fashion": hold}
	}})
	// Version 1: a 784-32-10 MLP trained on 1,000 examples centrally.
	base, err := federated.NewModel(federated.Spec{Family: "mlp", Sizes: []int{784, 32, 10}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := federated.NewTrainer(base, federated.SGDConfig{LR: 0.05, Momentum: 0.9, BatchSize: 32, Epochs: 1, Seed: 1})
	if _, err := tr.Train(train.Subset(seq(0, 1000)), nil); err != nil {
		t.Fatal(err)
	}
	baseAcc, _ := federated.Evaluate(base, hold)
	v1, _ := base.MarshalONNX()
	if st, body := m.push(pushToken, "fashion", "1", v1, nil, nil); st != 201 {
		t.Fatalf("push: %d %s", st, body)
	}
	m.api("POST", "/v1/models/fashion/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil)
	m.readyEverywhere("fashion", "1", 30*time.Second)

	// Each store sees its own 1,500 examples (never sent anywhere else).
	rng := rand.New(rand.NewPCG(7, 7))
	parts := federated.PartitionDirichlet(train.Y[10000:16000], 10, 4, 1.0, rng)
	for i, n := range m.nodes {
		idx := make([]int, len(parts[i]))
		for j, k := range parts[i] {
			idx[j] = 10000 + k
		}
		postFeedback(t, n, "fashion", train.Subset(idx))
	}
	// A fake client that poses as a node serving the model, to be sampled
	// and send a poisoned update.
	nc, err := nats.Connect(m.c.NATSURL(), nats.UserInfo("node", "node-password"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	names := bus.Names{}
	stopFake := make(chan struct{})
	var fakeWG sync.WaitGroup
	fakeWG.Go(func() {
		for {
			st := bus.NodeStatus{Node: "evil", Role: "edge", HTTPURL: "http://127.0.0.1:1", Sent: time.Now().UTC(),
				Models: []bus.ModelStatus{{Model: "fashion", Version: "1", State: "READY"}}}
			b, _ := json.Marshal(st)
			nc.Publish(names.StatusSubject("evil"), b)
			select {
			case <-stopFake:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	waitFor(t, 5*time.Second, "the fake client to be seen", func() (bool, string) {
		for _, n := range m.c.Nodes() {
			if n.Node == "evil" {
				return true, ""
			}
		}
		return false, ""
	})
	// Traffic, so that the new version's rollout has figures.
	l := startLoad(t, &testMesh{t: t, nodes: m.nodes[:3]}, "fashion", 0.25, 2)
	defer l.halt()

	var r coordinator.Round
	if st, body := m.api("POST", "/v1/rounds", pushToken, coordinator.RoundRequest{Model: "fashion", Fraction: 1, MinClients: 3, Quorum: 5,
		Deadline: "8s", Strategy: "median", LR: 0.05, Momentum: 0.9, BatchSize: 32, Epochs: 3, Margin: 0.02,
		RolloutSteps: "100", RolloutInterval: "1s", Seed: 3}, &r); st != 201 {
		t.Fatalf("round start: %d %s", st, body)
	}
	if len(r.Clients) != 5 || r.Eligible != 5 {
		t.Fatalf("sampled %v of %d", r.Clients, r.Eligible)
	}
	// node-3 crashes mid-round.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	m.nodes[3].Shutdown(ctx)
	cancel()
	close(stopFake)
	fakeWG.Wait()
	// The fake client: a malformed update, then a poisoned one (a large
	// sign-flipped step), then a duplicate.
	js, _ := jetstream.New(nc)
	nparams := federated.NumParams(base)
	bad := make([]float32, nparams)
	for i := range bad {
		bad[i] = -50 * float32((i%7)-3) / 3
	}
	poisoned, _ := bus.EncodeUpdate(bus.UpdateHeader{Round: r.ID, Node: "evil", BaseVersion: "1", Samples: 100000}, bad)
	malformed := append([]byte(nil), poisoned[:len(poisoned)-1]...)
	for _, msg := range [][]byte{malformed, poisoned, poisoned} {
		if _, err := js.Publish(context.Background(), names.FLUpdate(r.ID, "evil"), msg); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 60*time.Second, "the round to end", func() (bool, string) {
		m.api("GET", "/v1/rounds/"+r.ID, readToken, nil, &r)
		return r.State != coordinator.RoundTraining, fmt.Sprintf("%s, %d updates", r.State, len(r.Received))
	})
	t.Logf("round %s: %s: %s; received %v, stragglers %v, rejected %v", r.ID, r.State, r.Reason, r.Received, r.Stragglers, r.Rejected)
	if r.State != coordinator.RoundRegistered {
		t.Fatalf("round %s: %s", r.State, r.Reason)
	}
	if strings.Join(r.Stragglers, ",") != "node-3" || len(r.Received) != 4 {
		t.Fatalf("received %v, stragglers %v", r.Received, r.Stragglers)
	}
	if r.Rejected["malformed"] != 1 || r.Rejected["duplicate"] != 1 {
		t.Fatalf("rejected %v", r.Rejected)
	}
	if r.NewAcc < baseAcc+0.02 {
		t.Fatalf("held-out accuracy %.3f after the round, %.3f before: the poisoned update was not out-voted", r.NewAcc, baseAcc)
	}
	// Registered with lineage, through the gate, and rolled out.
	var det coordinator.ModelDetail
	m.api("GET", "/v1/models/fashion", readToken, nil, &det)
	last := det.Versions[len(det.Versions)-1]
	if last.Version != r.ID || last.Lineage == nil || last.Lineage.Source != "training" || last.Lineage.Round != r.ID || last.Lineage.Parent != "1" ||
		len(last.Lineage.Nodes) != 4 {
		t.Fatalf("new version %+v lineage %+v", last, last.Lineage)
	}
	waitFor(t, 60*time.Second, "the new version's rollout", func() (bool, string) {
		var ro rollout.Rollout
		m.api("GET", "/v1/rollouts/fashion", readToken, nil, &ro)
		return ro.State == rollout.StatePromoted, string(ro.State) + " " + ro.Reason
	})
	waitFor(t, 10*time.Second, "the nodes to serve it", func() (bool, string) {
		for _, n := range m.nodes[:3] {
			if _, ver := infer(t, n, "fashion", "k", 0.25); ver != r.ID {
				return false, ver
			}
		}
		return true, ""
	})
	var evs []bus.AuditEvent
	m.api("GET", "/v1/audit?model=fashion", readToken, nil, &evs)
	kinds := map[string]bool{}
	for _, e := range evs {
		kinds[e.Kind] = true
	}
	for _, k := range []string{"fl.round.start", "fl.round.registered", "push", "rollout.start", "promote"} {
		if !kinds[k] {
			t.Errorf("audit lacks %s: %v", k, kinds)
		}
	}
}

// TestFederatedRoundRejectedByHoldout: a round whose result is worse than
// the serving version on held-out data is rejected with the reason, and
// nothing is registered.
func TestFederatedRoundRejectedByHoldout(t *testing.T) {
	train, test := fashion(t)
	hold := test.Subset(seq(0, 1000))
	m := newTestMesh(t, meshOpts{nodes: 2, feedback: true, mutate: func(c *coordinator.Config) {
		c.FL.Holdout = map[string]*federated.Dataset{"fashion": hold}
	}})
	base, _ := federated.NewModel(federated.Spec{Family: "softmax", Sizes: []int{784, 10}}, 1)
	tr, _ := federated.NewTrainer(base, federated.SGDConfig{LR: 0.05, Momentum: 0.9, BatchSize: 32, Epochs: 2, Seed: 1})
	tr.Train(train.Subset(seq(0, 3000)), nil)
	v1, _ := base.MarshalONNX()
	m.push(pushToken, "fashion", "1", v1, nil, nil)
	m.api("POST", "/v1/models/fashion/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil)
	m.readyEverywhere("fashion", "1", 30*time.Second)
	// Every store's feedback has the wrong labels (a labelling bug).
	for i, n := range m.nodes {
		d := train.Subset(seq(20000+i*500, 20000+(i+1)*500))
		for j := range d.Y {
			d.Y[j] = (d.Y[j] + 1) % 10
		}
		postFeedback(t, n, "fashion", d)
	}
	// Requests the API refuses.
	for _, bad := range []coordinator.RoundRequest{
		{Model: "fashion", Strategy: "mean-of-nothing"},
		{Model: "fashion", Fraction: 2},
		{Model: "fashion", NoiseMultiplier: 1},
		{Model: "fashion", Deadline: "forever"},
		{Model: "unknown"},
	} {
		if st, body := m.api("POST", "/v1/rounds", pushToken, bad, nil); st < 400 || st >= 500 {
			t.Errorf("round %+v: %d %s", bad, st, body)
		}
	}
	var r coordinator.Round
	if st, body := m.api("POST", "/v1/rounds", pushToken, coordinator.RoundRequest{Model: "fashion", Fraction: 1, MinClients: 2, Deadline: "20s",
		LR: 0.1, Epochs: 3, Clip: 5, NoiseMultiplier: 0.5}, &r); st != 201 {
		t.Fatalf("round start: %d %s", st, body)
	}
	if st, _ := m.api("POST", "/v1/rounds", pushToken, coordinator.RoundRequest{Model: "fashion"}, nil); st != 409 {
		t.Fatalf("a second concurrent round: %d", st)
	}
	waitFor(t, 60*time.Second, "the round to end", func() (bool, string) {
		m.api("GET", "/v1/rounds/"+r.ID, readToken, nil, &r)
		return r.State != coordinator.RoundTraining, string(r.State)
	})
	t.Logf("round: %s: %s (ε %.2f)", r.State, r.Reason, r.Epsilon)
	if r.State != coordinator.RoundRejected || !strings.Contains(r.Reason, "held-out accuracy") || r.Epsilon <= 0 {
		t.Fatalf("round %s: %s (ε %v)", r.State, r.Reason, r.Epsilon)
	}
	if st, _ := m.api("GET", "/v1/models/fashion/versions/"+r.ID, readToken, nil, nil); st != 404 {
		t.Fatalf("a rejected round's version is in the registry: %d", st)
	}
}

func inferVec(t testing.TB, n *node.Node, model string, x []float32) int {
	b, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "input", "datatype": "FP32", "shape": []int{1, len(x)}, "data": x}}})
	resp, err := http.Post("http://"+n.Addr()+"/v2/models/"+model+"/infer", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func seq(a, b int) []int {
	out := make([]int, b-a)
	for i := range out {
		out[i] = a + i
	}
	return out
}

// TestRoundStartedByDrift: a node whose inputs drift away from the
// baseline reports it in its status, and the coordinator starts a round
// of that model by itself.
func TestRoundStartedByDrift(t *testing.T) {
	train, test := fashion(t)
	m := newTestMesh(t, meshOpts{nodes: 2, feedback: true, mutate: func(c *coordinator.Config) {
		c.FL.Holdout = map[string]*federated.Dataset{"fashion": test.Subset(seq(0, 500))}
		c.FL.Auto = []coordinator.FLAuto{{Model: "fashion", DriftPSI: 0.5, Cooldown: time.Hour,
			Round: coordinator.RoundRequest{Fraction: 1, MinClients: 1, Deadline: "5s", LR: 0.05, Epochs: 1}}}
	}})
	base, _ := federated.NewModel(federated.Spec{Family: "softmax", Sizes: []int{784, 10}}, 1)
	v1, _ := base.MarshalONNX()
	m.push(pushToken, "fashion", "1", v1, nil, nil)
	m.api("POST", "/v1/models/fashion/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil)
	m.readyEverywhere("fashion", "1", 30*time.Second)
	postFeedback(t, m.nodes[0], "fashion", train.Subset(seq(0, 200)))
	// 50 requests like the training data (the baseline), then 50 of
	// photographic negatives: the inputs drift.
	for i := 0; i < 100; i++ {
		x := append([]float32(nil), test.X[i*784:(i+1)*784]...)
		if i >= 50 {
			for j := range x {
				x[j] = 1 - x[j]
			}
		}
		if st := inferVec(t, m.nodes[0], "fashion", x); st != 200 {
			t.Fatalf("infer: %d", st)
		}
	}
	var rounds []coordinator.Round
	waitFor(t, 20*time.Second, "a drift-triggered round", func() (bool, string) {
		m.api("GET", "/v1/rounds?model=fashion", readToken, nil, &rounds)
		return len(rounds) > 0, ""
	})
	if !strings.HasPrefix(rounds[0].Trigger, "drift (node node-0 PSI") || rounds[0].Actor != "coordinator" {
		t.Fatalf("round %+v", rounds[0])
	}
}
