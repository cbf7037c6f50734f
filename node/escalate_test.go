package node_test

import (
	"encoding/binary"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
)

// crafted2x2 writes a softmax regression of 2 features and 2 classes with
// logits = x·W, as <name>/1/model.onnx. With W = diag(10, 10) an input
// [1, 0] is class 0 with p ≈ 1 (confident) and [0, 0] is 50/50 (not).
func crafted2x2(r *repo, name string, w [4]float32) *onnx.Model {
	r.t.Helper()
	m := onnx.NewSoftmax(2, 2)
	copy(m.Layers[0].W, w[:])
	b, err := m.MarshalONNX()
	if err != nil {
		r.t.Fatal(err)
	}
	r.write(filepath.Join(name, "1", "model.onnx"), b)
	return m
}

var (
	edgeW    = [4]float32{10, 0, 0, 10} // the identity: confident on one-hot inputs
	centralW = [4]float32{0, 10, 10, 0} // swaps the classes: its answers are told apart
)

// probs decodes an FP32 output.
func probs(t testing.TB, out models.Tensor) []float32 {
	t.Helper()
	if out.DataType != models.FP32 || len(out.Data)%4 != 0 {
		t.Fatalf("output %s is %s with %d bytes", out.Name, out.DataType, len(out.Data))
	}
	v := make([]float32, len(out.Data)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(out.Data[4*i:]))
	}
	return v
}

// wantProbs compares an answer with m's forward pass of x.
func wantProbs(t *testing.T, m *onnx.Model, x []float32, out models.Tensor) {
	t.Helper()
	want, err := m.Forward(x, len(x)/2)
	if err != nil {
		t.Fatal(err)
	}
	got := probs(t, out)
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5 {
			t.Fatalf("value %d = %v, want %v (got %v, want %v)", i, got[i], want[i], got, want)
		}
	}
}

// escalationLab is an edge node serving "edge" with an escalation policy
// and a central-role node serving "central", reached as the edge's
// fallback.
type escalationLab struct {
	edge, central *testNode
	em, cm        *onnx.Model
}

func newEscalationLab(t *testing.T, policy string, centralLabels string, opts ...node.Option) *escalationLab {
	l := newMeshLab(t)
	cr, er := newRepo(t), newRepo(t)
	cm := crafted2x2(cr, "central", centralW)
	if centralLabels != "" {
		cr.config("central", `{"profile_batch_sizes": false, "labels": `+centralLabels+`}`)
	}
	em := crafted2x2(er, "edge", edgeW)
	er.config("edge", `{"escalation": `+policy+`}`)
	c := l.start("central-1", cr, nil, func(cfg *node.Config) { cfg.Mesh.Role = "central" }, opts...)
	e := l.start("edge-1", er, nil, func(cfg *node.Config) {
		cfg.Mesh.Fallback = []string{"https://" + c.Addr()}
	})
	return &escalationLab{edge: e, central: c, em: em, cm: cm}
}

// ask sends rows x (2 features each) to the edge's "edge" model, JSON or
// binary, with extra headers.
func (l *escalationLab) ask(t *testing.T, x []float32, bin bool, hdr map[string]string) reply {
	t.Helper()
	req := &oip.Request{Inputs: []models.Tensor{f32("input", []int64{int64(len(x) / 2), 2}, x)}, BinaryOutput: bin}
	body, hl := encode(t, req, bin)
	h := inferHeaders(hl)
	for k, v := range hdr {
		h[k] = v
	}
	return l.edge.raw(t, client.HTTP1).do(t, http.MethodPost, "/v2/models/edge/infer", body, h)
}

func TestEscalation(t *testing.T) {
	l := newEscalationLab(t, `{"to": "central", "max_prob_below": 0.8, "timeout": "5s"}`, "")
	cases := []struct {
		name      string
		x         []float32
		bin       bool
		escalated bool
	}{
		{"confident json", []float32{1, 0}, false, false},
		{"confident binary", []float32{0, 1}, true, false},
		{"unsure json", []float32{0, 0}, false, true},
		{"unsure binary", []float32{0.05, 0}, true, true},
		{"one unsure row of two", []float32{1, 0, 0, 0}, false, true},
		{"confident batch", []float32{1, 0, 0, 1, 0.5, 0}, true, false},
	}
	var confident, escalated float64
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := l.ask(t, c.x, c.bin, nil)
			resp := decodeReply(t, rep)
			if got := rep.header.Get(node.HeaderEscalation); got != "" {
				t.Fatalf("Petrel-Escalation: %q", got)
			}
			if c.bin != (rep.header.Get(oip.HeaderContentLength) != "") {
				t.Errorf("binary request %v, answer headers %v", c.bin, rep.header)
			}
			if !c.escalated {
				confident++
				if got := rep.header.Get(node.HeaderEscalated); got != "" {
					t.Fatalf("confident request escalated to %q", got)
				}
				if resp.ModelName != "edge" {
					t.Errorf("answered by model %q, want edge", resp.ModelName)
				}
				wantProbs(t, l.em, c.x, resp.Outputs[0])
				return
			}
			escalated++
			if got := rep.header.Get(node.HeaderEscalated); got != "central-1" {
				t.Fatalf("Petrel-Escalated %q, want central-1", got)
			}
			if got := rep.header.Get(node.HeaderServedBy); got != "central-1" {
				t.Errorf("Petrel-Served-By %q, want central-1", got)
			}
			if resp.ModelName != "central" {
				t.Errorf("answered by model %q, want central", resp.ModelName)
			}
			wantProbs(t, l.cm, c.x, resp.Outputs[0])
		})
	}
	text := scrape(t, l.edge.raw(t, client.HTTP1))
	for result, want := range map[string]float64{"confident": confident, "escalated": escalated, "failed": 0} {
		got, _ := metricValue(text, "petrel_escalations_total", map[string]string{"model": "edge", "result": result})
		if got != want {
			t.Errorf("petrel_escalations_total{result=%q} = %v, want %v", result, got, want)
		}
	}

	// The central node gone: the edge answer, with the reason.
	l.central.Kill()
	rep := l.ask(t, []float32{0, 0}, false, nil)
	resp := decodeReply(t, rep)
	if got := rep.header.Get(node.HeaderEscalation); !strings.HasPrefix(got, "failed (") {
		t.Fatalf("Petrel-Escalation %q, want failed (...)", got)
	}
	if rep.header.Get(node.HeaderEscalated) != "" || resp.ModelName != "edge" {
		t.Fatalf("escalated to %q by model %q with the central node down", rep.header.Get(node.HeaderEscalated), resp.ModelName)
	}
	wantProbs(t, l.em, []float32{0, 0}, resp.Outputs[0])
	text = scrape(t, l.edge.raw(t, client.HTTP1))
	if got, _ := metricValue(text, "petrel_escalations_total", map[string]string{"model": "edge", "result": "failed"}); got != 1 {
		t.Errorf("petrel_escalations_total{result=failed} = %v, want 1", got)
	}
}

// TestEscalationDeadline: a central model slower than the escalation's
// timeout, or than what is left of the request's deadline, gets the edge
// answer back with the reason.
func TestEscalationDeadline(t *testing.T) {
	var sl slowLoader
	l := newEscalationLab(t, `{"to": "central", "max_prob_below": 0.8, "timeout": "100ms"}`, `{"`+labelDelay+`": "3000"}`, sl.option())
	for _, c := range []struct {
		name string
		hdr  map[string]string
		want string
	}{
		// The central node gets the escalation's deadline too, so either
		// side may give up first: the edge's timer, or the central's 504.
		{"escalation timeout", nil, "did not answer within 100ms|deadline exceeded"},
		{"request deadline", map[string]string{node.HeaderTimeout: "60ms"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := l.ask(t, []float32{0, 0}, false, c.hdr)
			resp := decodeReply(t, rep)
			got := rep.header.Get(node.HeaderEscalation)
			matched := c.want == ""
			for _, w := range strings.Split(c.want, "|") {
				matched = matched || strings.Contains(got, w)
			}
			if !strings.HasPrefix(got, "failed (") || !matched {
				t.Fatalf("Petrel-Escalation %q, want failed (...%s...)", got, c.want)
			}
			if resp.ModelName != "edge" {
				t.Fatalf("answered by %q, want the edge model", resp.ModelName)
			}
		})
	}
	if sl.started.Load() == 0 {
		t.Error("the central model never ran: the test did not test the deadline")
	}
}

// TestEscalationLocal: a central model loaded on the same node runs there.
func TestEscalationLocal(t *testing.T) {
	r := newRepo(t)
	em := crafted2x2(r, "edge", edgeW)
	cm := crafted2x2(r, "central", centralW)
	r.config("edge", `{"escalation": {"to": "central", "entropy_above": 0.5}}`)
	tn := startNode(t, testConfig(t, r.dir))
	for _, c := range []struct {
		x         []float32
		escalated bool
	}{{[]float32{1, 0}, false}, {[]float32{0, 0}, true}} {
		req := &oip.Request{Inputs: []models.Tensor{f32("input", []int64{1, 2}, c.x)}}
		body, hl := encode(t, req, false)
		rep := tn.raw(t, client.HTTP2).do(t, http.MethodPost, "/v2/models/edge/infer", body, inferHeaders(hl))
		resp := decodeReply(t, rep)
		if got := rep.header.Get(node.HeaderEscalated); (got == "test-node") != c.escalated {
			t.Fatalf("x %v: Petrel-Escalated %q, escalation wanted: %v", c.x, got, c.escalated)
		}
		if c.escalated {
			wantProbs(t, cm, c.x, resp.Outputs[0])
		} else {
			wantProbs(t, em, c.x, resp.Outputs[0])
		}
	}
}

// TestEscalationBadConfig: a policy that cannot apply to the model keeps
// it from loading, with the reason in the index.
func TestEscalationBadConfig(t *testing.T) {
	r := newRepo(t)
	crafted2x2(r, "self", edgeW)
	r.config("self", `{"escalation": {"to": "self", "max_prob_below": 0.5}}`)
	crafted2x2(r, "noout", edgeW)
	r.config("noout", `{"escalation": {"to": "x", "max_prob_below": 0.5, "output": "nope"}}`)
	crafted2x2(r, "nothresh", edgeW)
	r.config("nothresh", `{"escalation": {"to": "x"}}`)
	tn := startNode(t, testConfig(t, r.dir))
	var idx []node.IndexEntry
	tn.raw(t, client.HTTP1).getJSON(t, "/v2/repository/index", &idx)
	want := map[string]string{"self": "model itself", "noout": `output "nope"`, "nothresh": "nothing would ever escalate"}
	for _, e := range idx {
		if w, ok := want[e.Name]; ok {
			if e.State != node.StateUnavailable || !strings.Contains(e.Reason, w) {
				t.Errorf("%s: %s %q, want UNAVAILABLE mentioning %q", e.Name, e.State, e.Reason, w)
			}
			delete(want, e.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("not in the index: %v", want)
	}
}
