package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/node/client"
	"github.com/petrel-mesh/petrel/node/sched"
)

// Escalation (joint edge-central inference). A model whose config has an
// "escalation" answers every request itself first. When its classifier
// output is not confident for some row of the request, the node sends the
// whole request on to the larger model named by "to" and returns that
// answer instead:
//
//  1. The decision output ("output", default the model's first) must be
//     FP32 or FP64 of shape [N, C] (or [C]: one row). A row whose values
//     are all in [0, 1] and sum to 1 (within 1e-3) is taken as
//     probabilities; any other row as logits, and softmax applies.
//  2. A row is not confident when its largest probability is below
//     max_prob_below, or its entropy (in nats) is above entropy_above
//     (each test off when 0). One such row escalates the request; a NaN
//     makes a row not confident.
//  3. The central model runs on this node when it is loaded here;
//     otherwise the request goes through the mesh forwarder (peers that
//     serve "to", central ones after edge ones, then MeshConfig.Fallback),
//     with the mesh headers and the remaining deadline.
//  4. The central call gets the smaller of "timeout" (default 1 s) and
//     what is left of the request's deadline. A central answer other than
//     200, a transport error or the timeout returns the edge answer with
//     the header "Petrel-Escalation: failed (<reason>)". A central answer
//     is relayed as sent (status 200, encoding, body) with
//     "Petrel-Escalated: <node that answered>" and Petrel-Served-By
//     naming that node.
//
// The edge and central models must share input names (and the output
// names a request asks for); the central model is usually a larger model
// of the same task.
//
// Metrics: petrel_escalations_total{model, result} with result
// "confident" (no escalation needed), "escalated" (the central answer was
// returned) or "failed" (needed, but the edge answer was returned). The
// escalation rate is computed from it:
//
//	sum by (model) (rate(petrel_escalations_total{result!="confident"}[5m]))
//	  / sum by (model) (rate(petrel_escalations_total[5m]))

// Headers of escalation.
const (
	// HeaderEscalated names the node whose central model answered.
	HeaderEscalated = "Petrel-Escalated"
	// HeaderEscalation is "failed (<reason>)" when the request needed
	// escalation but the edge answer was returned.
	HeaderEscalation = "Petrel-Escalation"
)

// Escalation results, the "result" label of petrel_escalations_total.
const (
	EscalationConfident = "confident"
	EscalationEscalated = "escalated"
	EscalationFailed    = "failed"
)

// EscalationConfig is the "escalation" of a model's config.json.
type EscalationConfig struct {
	// To is the central model's name.
	To string `json:"to"`
	// MaxProbBelow escalates a request when some row's largest class
	// probability is below it; 0 disables the test. In [0, 1].
	MaxProbBelow float64 `json:"max_prob_below,omitempty"`
	// EntropyAbove escalates a request when some row's entropy (nats) is
	// above it; 0 disables the test.
	EntropyAbove float64 `json:"entropy_above,omitempty"`
	// Output is the output the decision reads; default the first.
	Output string `json:"output,omitempty"`
	// Timeout bounds the central call (a Go duration, "200ms"); default
	// 1s, at most 1m. The request's own deadline still applies.
	Timeout string `json:"timeout,omitempty"`

	timeout time.Duration // parsed Timeout
}

const (
	defaultEscalationTimeout = time.Second
	maxEscalationTimeout     = time.Minute
	// maxEscalationReason bounds the reason in Petrel-Escalation.
	maxEscalationReason = 300
)

func (e *EscalationConfig) validate() error {
	if !models.ValidName(e.To) {
		return fmt.Errorf("to %q: want the central model's name (1-128 letters, digits, '_', '.', '-')", e.To)
	}
	if math.IsNaN(e.MaxProbBelow) || e.MaxProbBelow < 0 || e.MaxProbBelow > 1 {
		return fmt.Errorf("max_prob_below %v: want 0..1", e.MaxProbBelow)
	}
	if math.IsNaN(e.EntropyAbove) || math.IsInf(e.EntropyAbove, 0) || e.EntropyAbove < 0 {
		return fmt.Errorf("entropy_above %v: want a finite number >= 0", e.EntropyAbove)
	}
	if e.MaxProbBelow == 0 && e.EntropyAbove == 0 {
		return errors.New("neither max_prob_below nor entropy_above is set: nothing would ever escalate")
	}
	if e.Output != "" && len(e.Output) > 256 {
		return fmt.Errorf("output name of %d bytes: at most 256", len(e.Output))
	}
	e.timeout = defaultEscalationTimeout
	if e.Timeout != "" {
		d, err := time.ParseDuration(e.Timeout)
		if err != nil || d <= 0 || d > maxEscalationTimeout {
			return fmt.Errorf("timeout %q: want a duration in (0, %v], such as \"200ms\"", e.Timeout, maxEscalationTimeout)
		}
		e.timeout = d
	}
	return nil
}

// callTimeout is the bound of one central call.
func (e *EscalationConfig) callTimeout() time.Duration {
	if e.timeout > 0 {
		return e.timeout
	}
	if d, err := time.ParseDuration(e.Timeout); err == nil && d > 0 && d <= maxEscalationTimeout {
		return d
	}
	return defaultEscalationTimeout
}

// checkEscalationOutput checks, when a version loads, that its escalation
// policy can be applied to its signature.
func checkEscalationOutput(model string, e *EscalationConfig, sig models.Signature) error {
	if e == nil {
		return nil
	}
	if e.To == model {
		return fmt.Errorf("escalation: to %q is the model itself", e.To)
	}
	if len(sig.Outputs) == 0 {
		return errors.New("escalation: the model has no outputs")
	}
	spec := sig.Outputs[0]
	if e.Output != "" {
		var ok bool
		if spec, ok = sig.Output(e.Output); !ok {
			return fmt.Errorf("escalation: output %q: the model's outputs are %s", e.Output, specNames(sig.Outputs))
		}
	}
	if spec.DataType != models.FP32 && spec.DataType != models.FP64 {
		return fmt.Errorf("escalation: output %q is %s; the decision needs FP32 or FP64 class scores", spec.Name, spec.DataType)
	}
	if len(spec.Shape) != 1 && len(spec.Shape) != 2 {
		return fmt.Errorf("escalation: output %q has shape %v; the decision needs [N, C] or [C] class scores", spec.Name, spec.Shape)
	}
	return nil
}

// needsEscalation reports whether some row of the class scores t is not
// confident (see the package comment above). It never panics on a
// malformed tensor; it returns an error instead.
func needsEscalation(t models.Tensor, maxProbBelow, entropyAbove float64) (bool, error) {
	var rows, classes int64
	switch len(t.Shape) {
	case 1:
		rows, classes = 1, t.Shape[0]
	case 2:
		rows, classes = t.Shape[0], t.Shape[1]
	default:
		return false, fmt.Errorf("output %q has shape %v, want [N, C] or [C]", t.Name, t.Shape)
	}
	if rows < 0 || classes < 1 || classes > 1<<24 || rows > 1<<30 {
		return false, fmt.Errorf("output %q has shape %v, want [N, C] with C >= 1", t.Name, t.Shape)
	}
	var size int64
	switch t.DataType {
	case models.FP32:
		size = 4
	case models.FP64:
		size = 8
	default:
		return false, fmt.Errorf("output %q is %s, want FP32 or FP64", t.Name, t.DataType)
	}
	if int64(len(t.Data)) != rows*classes*size {
		return false, fmt.Errorf("output %q has %d bytes, want %d for shape %v", t.Name, len(t.Data), rows*classes*size, t.Shape)
	}
	row := make([]float64, classes)
	for r := range rows {
		for c := range classes {
			off := (r*classes + c) * size
			if size == 4 {
				row[c] = float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Data[off:])))
			} else {
				row[c] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[off:]))
			}
		}
		maxP, ent, ok := rowConfidence(row)
		if !ok || (maxProbBelow > 0 && maxP < maxProbBelow) || (entropyAbove > 0 && ent > entropyAbove) {
			return true, nil
		}
	}
	return false, nil
}

// rowConfidence returns the largest probability and the entropy (nats)
// of one row of probabilities or logits; ok is false when the row holds
// a NaN or an infinity.
func rowConfidence(row []float64) (maxP, entropy float64, ok bool) {
	probs, sum := true, 0.0
	for _, x := range row {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, 0, false
		}
		if x < -1e-6 || x > 1+1e-6 {
			probs = false
		}
		sum += x
	}
	if probs && math.Abs(sum-1) <= 1e-3 {
		for _, p := range row {
			maxP = max(maxP, p)
			if p > 0 {
				entropy -= p * math.Log(p)
			}
		}
		return maxP, entropy, true
	}
	// Logits: a numerically stable softmax.
	m := slices.Max(row)
	z := 0.0
	for _, x := range row {
		z += math.Exp(x - m)
	}
	logZ := math.Log(z)
	for _, x := range row {
		lp := x - m - logZ
		p := math.Exp(lp)
		maxP = max(maxP, p)
		if p > 0 {
			entropy -= p * lp
		}
	}
	return maxP, entropy, true
}

// escalate applies v's escalation policy to the edge answer outs of req.
// It returns true when it wrote the central model's answer; false when
// the edge answer is to be written (confident, or escalation failed, in
// which case it has set the Petrel-Escalation header).
func (n *Node) escalate(ctx context.Context, w http.ResponseWriter, r *http.Request, v *version, req *oip.Request, outs []models.Tensor, hop meshHop) bool {
	e := v.config.Escalation
	model := v.manifest.Name
	fail := func(reason string) bool {
		n.metrics.escalations.WithLabelValues(model, EscalationFailed).Inc()
		w.Header().Set(HeaderEscalation, "failed ("+headerSafe(reason)+")")
		return false
	}
	outName := e.Output
	if outName == "" && len(v.manifest.Signature.Outputs) > 0 {
		outName = v.manifest.Signature.Outputs[0].Name
	}
	k := slices.IndexFunc(outs, func(t models.Tensor) bool { return t.Name == outName })
	if k < 0 {
		return fail(fmt.Sprintf("output %q, which the decision reads, is not in the answer", outName))
	}
	esc, err := needsEscalation(outs[k], e.MaxProbBelow, e.EntropyAbove)
	if err != nil {
		return fail(err.Error())
	}
	if !esc {
		n.metrics.escalations.WithLabelValues(model, EscalationConfident).Inc()
		return false
	}
	limit := e.callTimeout()
	ectx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if dl, _ := ectx.Deadline(); time.Until(dl) <= 0 {
		return fail("no time left in the request's deadline")
	}
	ans, err := n.askCentral(ectx, r, e.To, req, hop)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return fail("request deadline exceeded: " + err.Error())
		case ectx.Err() != nil:
			return fail(fmt.Sprintf("central model %q did not answer within %v", e.To, limit))
		}
		return fail(fmt.Sprintf("central model %q: %v", e.To, err))
	}
	h := w.Header()
	for _, k := range []string{"Content-Type", "Inference-Header-Content-Length"} {
		if val := ans.header.Get(k); val != "" {
			h.Set(k, val)
		} else {
			h.Del(k)
		}
	}
	by := ans.header.Get(HeaderServedBy)
	if by == "" {
		by = ans.node
	}
	h[HeaderServedBy] = []string{by}
	h.Set(HeaderEscalated, by)
	h.Set("Content-Length", strconv.Itoa(len(ans.body)))
	w.WriteHeader(http.StatusOK)
	w.Write(ans.body)
	n.metrics.escalations.WithLabelValues(model, EscalationEscalated).Inc()
	return true
}

// askCentral runs req on model to: here when it is loaded here, else
// through the mesh. Only a 200 answer is returned.
func (n *Node) askCentral(ctx context.Context, r *http.Request, to string, req *oip.Request, hop meshHop) (*relayed, error) {
	if cv, err := n.models.lookup(to, ""); err == nil {
		return n.runLocal(ctx, cv, req)
	}
	if n.fwd == nil {
		return nil, fmt.Errorf("not loaded on this node, and the node is not in a mesh")
	}
	return n.fwd.ask(ctx, to, req, hop)
}

// runLocal runs req on a version loaded here and encodes the answer as
// the client asked for it.
func (n *Node) runLocal(ctx context.Context, v *version, req *oip.Request) (*relayed, error) {
	sig := &v.manifest.Signature
	if err := checkInputs(sig, req.Inputs); err != nil {
		return nil, err
	}
	// The inputs alias the request buffer, which goes back to the pool
	// when the request ends, even if this run was abandoned at the
	// deadline: the run gets its own copy.
	ins := make([]models.Tensor, len(req.Inputs))
	for i, t := range req.Inputs {
		ins[i] = t
		ins[i].Data = bytes.Clone(t.Data)
	}
	var names []string
	binary := make([]bool, 0, len(sig.Outputs))
	if len(req.Outputs) > 0 {
		for _, o := range req.Outputs {
			if _, ok := v.outIndex[o.Name]; !ok {
				return nil, fmt.Errorf("unknown output %q; model %q has outputs %s", o.Name, v.manifest.Name, specNames(sig.Outputs))
			}
			names = append(names, o.Name)
			binary = append(binary, o.Binary)
		}
	} else {
		for range sig.Outputs {
			binary = append(binary, req.BinaryOutput)
		}
	}
	outs, err := v.sched.Submit(ctx, &sched.Request{Inputs: ins, Outputs: names})
	if err != nil {
		return nil, err
	}
	resp := oip.Response{ModelName: v.manifest.Name, ModelVersion: v.manifest.Version, ID: req.ID, Outputs: outs}
	body, jsonLen, err := oip.AppendResponse(nil, &resp, binary)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	h := http.Header{HeaderServedBy: {n.cfg.ID}}
	if jsonLen < len(body) {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Inference-Header-Content-Length", strconv.Itoa(jsonLen))
	} else {
		h.Set("Content-Type", "application/json")
	}
	return &relayed{status: http.StatusOK, header: h, body: body, node: n.cfg.ID}, nil
}

// ask sends req to model name on a peer or the fallback tier, as forward
// does, and returns the answer instead of writing it. Only a 200 answer
// is returned; any other is an error with the peer's message.
func (f *forwarder) ask(ctx context.Context, name string, req *oip.Request, hop meshHop) (*relayed, error) {
	if hop.hops >= f.cfg.MaxHops {
		return nil, fmt.Errorf("the request already took %d hops, the most the mesh allows", hop.hops)
	}
	body, hdr, via, err := f.encodeHop(req, hop)
	if err != nil {
		return nil, fmt.Errorf("encode for escalation: %w", err)
	}
	path := client.InferPath(name, "")
	ans, err := f.toPeers(ctx, name, "", path, body, hdr, via)
	if ans == nil {
		var ferr error
		ans, ferr = f.toFallback(ctx, path, body, hdr)
		err = errors.Join(err, ferr)
	}
	if ans == nil {
		if err == nil {
			return nil, errors.New("no peer serves it and no fallback is configured")
		}
		return nil, err
	}
	if ans.status != http.StatusOK {
		msg := bytes.TrimSpace(ans.body)
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return nil, fmt.Errorf("%s answered %d: %s", ans.node, ans.status, msg)
	}
	return ans, nil
}

// headerSafe makes s fit in a header value: printable ASCII, bounded.
func headerSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = ' '
		}
	}
	if len(b) > maxEscalationReason {
		b = append(b[:maxEscalationReason-3], "..."...)
	}
	return string(b)
}
