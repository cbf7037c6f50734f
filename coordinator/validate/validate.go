// Package validate is the coordinator's validation gate: the checks a
// pushed model version must pass before it may deploy.
//
// Validate runs them in order on the model bytes:
//
//  1. size: not empty and within Options.MaxBytes;
//  2. load: ONNX Runtime loads it (the caller has run ort.Init);
//  3. signature: the signature read from the model is valid, and, when
//     there is a previous version, compatible with its signature (see
//     CompareSignatures), unless breaking changes are allowed;
//  4. golden: the golden examples reproduce; without any, the inputs of
//     the previous version's examples that fit the new signature must at
//     least run;
//  5. latency: the p50 of single runs of a batch-1 request is within
//     Options.LatencyBudget.
//
// A model that fails a check is an answer, not an error: the Report says
// which check failed and why (Report.Reason). Validate returns an error
// only when it cannot give that answer: bad options, the runtime not
// initialised, a cancelled context.
package validate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/golden"
	"github.com/petrel-mesh/petrel/models/ort"
)

// Defaults of Options.
const (
	DefaultLatencyBudget = 50 * time.Millisecond
	DefaultLatencyRuns   = 20
	DefaultMaxBytes      = 256 << 20
	// WarmupRuns run before the timed ones and are not counted.
	WarmupRuns = 2
)

// maxLatencyRuns bounds Options.LatencyRuns, so that a misconfiguration
// cannot keep the gate busy for hours.
const maxLatencyRuns = 10000

// maxZeroInputBytes bounds the zero-filled input built for the latency
// check from fixed dimensions.
const maxZeroInputBytes = 256 << 20

// Check names, in the order the checks run.
const (
	CheckSize      = "size"
	CheckLoad      = "load"
	CheckSignature = "signature"
	CheckGolden    = "golden"
	CheckLatency   = "latency"
)

// ErrInvalidOptions wraps every Options validation failure.
var ErrInvalidOptions = errors.New("validate: invalid options")

// Options configures the gate. The zero value means the defaults.
type Options struct {
	// LatencyBudget is the most the p50 of single batch-1 runs may take;
	// 0 means DefaultLatencyBudget.
	LatencyBudget time.Duration
	// LatencyRuns is how many runs are timed, after WarmupRuns untimed
	// ones; 0 means DefaultLatencyRuns.
	LatencyRuns int
	// MaxBytes is the largest model accepted; 0 means DefaultMaxBytes.
	MaxBytes int64
	// Runtime are the session options the model is loaded with. The zero
	// value (one intra-op thread, CPU) is a fair stand-in for a node.
	Runtime ort.Options
}

// withDefaults validates o and fills in the defaults.
func (o Options) withDefaults() (Options, error) {
	bad := func(format string, a ...any) (Options, error) {
		return o, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	switch {
	case o.LatencyBudget < 0:
		return bad("LatencyBudget %v: want >= 0 (0 = %v)", o.LatencyBudget, DefaultLatencyBudget)
	case o.LatencyRuns < 0 || o.LatencyRuns > maxLatencyRuns:
		return bad("LatencyRuns %d: want 0-%d (0 = %d)", o.LatencyRuns, maxLatencyRuns, DefaultLatencyRuns)
	case o.MaxBytes < 0:
		return bad("MaxBytes %d: want >= 0 (0 = %d)", o.MaxBytes, DefaultMaxBytes)
	}
	if err := o.Runtime.Validate(); err != nil {
		return o, fmt.Errorf("%w: Runtime: %w", ErrInvalidOptions, err)
	}
	if o.LatencyBudget == 0 {
		o.LatencyBudget = DefaultLatencyBudget
	}
	if o.LatencyRuns == 0 {
		o.LatencyRuns = DefaultLatencyRuns
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	return o, nil
}

// Check is the outcome of one check. A check that could not run because
// an earlier one failed is Skipped (and not OK).
type Check struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"`
	Detail  string `json:"detail"`
}

// Report is the gate's verdict on one model version.
type Report struct {
	// OK is true when every check passed: the version may deploy.
	OK bool `json:"ok"`
	// Signature is the model's signature as ONNX Runtime reads it (zero
	// when it did not load).
	Signature models.Signature `json:"signature"`
	// Compatibility is "compatible", "first version", or "breaking: "
	// followed by the changes (empty when the model did not load).
	Compatibility string `json:"compatibility"`
	// Breaking is true when the signature breaks the previous version's
	// clients, whether or not that was allowed.
	Breaking bool `json:"breaking"`
	// Golden is "passed N examples", "none given" (with what was run
	// instead, if anything), or why the examples failed.
	Golden string `json:"golden"`
	// LatencyP50 and LatencyP99 are over the timed runs (zero when the
	// latency check did not run or a run failed).
	LatencyP50 time.Duration `json:"latency_p50"`
	LatencyP99 time.Duration `json:"latency_p99"`
	// Checks are size, load, signature, golden and latency, in that order.
	Checks []Check `json:"checks"`
	// Reason is the first failing check's detail; empty when OK.
	Reason string `json:"reason,omitempty"`
}

// Validate runs the gate on model, a new version of the model whose
// previous version is prev (nil for the first version). golden are the
// new version's examples (may be empty). allowBreaking lets a signature
// that breaks prev's clients pass (the report still says what broke).
//
// ort.Init must have succeeded. See the package documentation for the
// checks and when an error is returned rather than a failed Report.
func Validate(ctx context.Context, model []byte, goldens []models.Golden, prev *models.Manifest, allowBreaking bool, opts Options) (*Report, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	g := &gate{ctx: ctx, opts: o, r: &Report{}}

	// 1. size
	switch n := int64(len(model)); {
	case n == 0:
		g.fail(CheckSize, "model is empty")
	case n > o.MaxBytes:
		g.fail(CheckSize, fmt.Sprintf("model is %s, more than the limit of %s", byteSize(n), byteSize(o.MaxBytes)))
	default:
		g.pass(CheckSize, byteSize(n))
	}
	if !g.allOK() {
		return g.finish(CheckLoad, CheckSignature, CheckGolden, CheckLatency), nil
	}

	// 2. load
	sess, err := ort.Load(model, o.Runtime)
	if err != nil {
		if errors.Is(err, ort.ErrNotInitialized) || errors.Is(err, ort.ErrInvalidOptions) || errors.Is(err, ort.ErrProviderUnavailable) {
			return nil, fmt.Errorf("validate: load: %w", err)
		}
		g.fail(CheckLoad, "model does not load: "+err.Error())
		return g.finish(CheckSignature, CheckGolden, CheckLatency), nil
	}
	defer sess.Close()
	loaded := "loaded on " + sess.Provider()
	if note := sess.ProviderNote(); note != "" {
		loaded += " (" + note + ")"
	}
	g.pass(CheckLoad, loaded)

	// 3. signature
	sig := sess.Signature()
	g.r.Signature = sig
	g.signature(sig, prev, allowBreaking)

	// 4. golden
	examples, err := g.golden(sess, sig, goldens, prev)
	if err != nil {
		return nil, err
	}

	// 5. latency
	if err := g.latency(sess, sig, examples); err != nil {
		return nil, err
	}
	return g.finish(), nil
}

// gate carries one Validate call.
type gate struct {
	ctx  context.Context
	opts Options
	r    *Report
}

// allOK reports whether every check so far passed.
func (g *gate) allOK() bool {
	for _, c := range g.r.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

func (g *gate) pass(name, detail string) {
	g.r.Checks = append(g.r.Checks, Check{Name: name, OK: true, Detail: detail})
}

func (g *gate) fail(name, detail string) {
	g.r.Checks = append(g.r.Checks, Check{Name: name, Detail: detail})
}

// finish marks the named checks skipped and sets OK and Reason.
func (g *gate) finish(skipped ...string) *Report {
	failed := ""
	for _, c := range g.r.Checks {
		if !c.OK {
			failed = c.Name
			break
		}
	}
	for _, name := range skipped {
		g.r.Checks = append(g.r.Checks, Check{Name: name, Skipped: true, Detail: "not run: the " + failed + " check failed"})
	}
	g.r.OK = true
	for _, c := range g.r.Checks {
		if !c.OK {
			g.r.OK = false
			g.r.Reason = c.Detail
			break
		}
	}
	return g.r
}

// signature checks the model's signature and its compatibility with prev.
func (g *gate) signature(sig models.Signature, prev *models.Manifest, allowBreaking bool) {
	if err := sig.Validate(); err != nil {
		g.r.Compatibility = "unknown"
		g.fail(CheckSignature, "model signature is not usable: "+err.Error())
		return
	}
	if prev == nil {
		g.r.Compatibility = "first version"
		g.pass(CheckSignature, "first version")
		return
	}
	breaking, notes := CompareSignatures(prev.Signature, sig)
	against := fmt.Sprintf("version %s", prev.Version)
	if len(breaking) == 0 {
		g.r.Compatibility = "compatible"
		detail := "compatible with " + against
		if len(notes) > 0 {
			detail += " (" + strings.Join(notes, "; ") + ")"
		}
		g.pass(CheckSignature, detail)
		return
	}
	changes := strings.Join(breaking, "; ")
	g.r.Breaking = true
	g.r.Compatibility = "breaking: " + changes
	if allowBreaking {
		g.pass(CheckSignature, fmt.Sprintf("breaking change from %s, allowed: %s", against, changes))
		return
	}
	g.fail(CheckSignature, fmt.Sprintf("breaking change from %s, not allowed: %s", against, changes))
}

// golden runs the golden check and returns the decoded examples' inputs
// that ran, for the latency check. The error is for a cancelled context
// only.
func (g *gate) golden(sess models.Session, sig models.Signature, goldens []models.Golden, prev *models.Manifest) ([][]models.Tensor, error) {
	if len(goldens) > 0 {
		err := golden.RunGolden(g.ctx, sess, goldens)
		if cerr := g.ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("validate: golden: %w", cerr)
		}
		if err != nil {
			g.r.Golden = err.Error()
			g.fail(CheckGolden, err.Error())
			return nil, nil
		}
		g.r.Golden = fmt.Sprintf("passed %d %s", len(goldens), plural(len(goldens), "example"))
		g.pass(CheckGolden, g.r.Golden)
		return inputsOf(goldens), nil
	}
	if prev == nil || len(prev.Golden) == 0 {
		g.r.Golden = "none given"
		g.pass(CheckGolden, g.r.Golden)
		return nil, nil
	}
	var fit []models.Golden
	for _, ex := range prev.Golden {
		if fits(sig, ex.Inputs) {
			fit = append(fit, ex)
		}
	}
	if len(fit) == 0 {
		g.r.Golden = fmt.Sprintf("none given (the inputs of version %s's %d golden %s do not fit the new signature)",
			prev.Version, len(prev.Golden), plural(len(prev.Golden), "example"))
		g.pass(CheckGolden, g.r.Golden)
		return nil, nil
	}
	err := golden.RunInputs(g.ctx, sess, fit)
	if cerr := g.ctx.Err(); cerr != nil {
		return nil, fmt.Errorf("validate: golden: %w", cerr)
	}
	ran := fmt.Sprintf("%d of version %s's %d golden %s", len(fit), prev.Version, len(prev.Golden), plural(len(prev.Golden), "example"))
	if err != nil {
		g.r.Golden = fmt.Sprintf("none given; the inputs of %s fit the new signature but do not run: %v", ran, err)
		g.fail(CheckGolden, g.r.Golden)
		return nil, nil
	}
	g.r.Golden = fmt.Sprintf("none given; ran the inputs of %s (outputs not compared)", ran)
	g.pass(CheckGolden, g.r.Golden)
	return inputsOf(fit), nil
}

// fits reports whether golden inputs decode and match sig's inputs: every
// input exactly once, with an accepted datatype and shape.
func fits(sig models.Signature, inputs []models.GoldenTensor) bool {
	if len(inputs) != len(sig.Inputs) {
		return false
	}
	ts, err := golden.GoldenTensors(inputs)
	if err != nil {
		return false
	}
	seen := make(map[string]bool, len(ts))
	for _, t := range ts {
		spec, ok := sig.Input(t.Name)
		if !ok || seen[t.Name] || spec.Accepts(t.DataType, t.Shape) != nil {
			return false
		}
		seen[t.Name] = true
	}
	return true
}

// inputsOf decodes the inputs of examples that are known to decode.
func inputsOf(gs []models.Golden) [][]models.Tensor {
	var out [][]models.Tensor
	for _, ex := range gs {
		if ts, err := golden.GoldenTensors(ex.Inputs); err == nil {
			out = append(out, ts)
		}
	}
	return out
}

// latency times single runs of a batch-1 request. The error is for a
// cancelled context only.
func (g *gate) latency(sess models.Session, sig models.Signature, examples [][]models.Tensor) error {
	in, what, err := latencyInput(sig, examples)
	if err != nil {
		g.fail(CheckLatency, "cannot build a batch-1 input: "+err.Error())
		return nil
	}
	runs := make([]time.Duration, 0, g.opts.LatencyRuns)
	for i := range WarmupRuns + g.opts.LatencyRuns {
		start := time.Now()
		_, err := sess.Run(g.ctx, in, nil)
		d := time.Since(start)
		if cerr := g.ctx.Err(); cerr != nil {
			return fmt.Errorf("validate: latency: %w", cerr)
		}
		if err != nil {
			g.fail(CheckLatency, fmt.Sprintf("run with %s failed: %v", what, err))
			return nil
		}
		if i >= WarmupRuns {
			runs = append(runs, d)
		}
	}
	slices.Sort(runs)
	p50, p99 := percentile(runs, 0.50), percentile(runs, 0.99)
	g.r.LatencyP50, g.r.LatencyP99 = p50, p99
	detail := fmt.Sprintf("p50 %v, p99 %v over %d runs with %s; budget %v", p50, p99, len(runs), what, g.opts.LatencyBudget)
	if p50 > g.opts.LatencyBudget {
		g.fail(CheckLatency, fmt.Sprintf("latency p50 %v exceeds the budget of %v (p99 %v over %d runs with %s)", p50, g.opts.LatencyBudget, p99, len(runs), what))
		return nil
	}
	g.pass(CheckLatency, detail)
	return nil
}

// latencyInput picks the request to time: the first golden example whose
// batch dimension is 1, else zeros shaped by the signature with every
// dynamic dimension 1 (and rank 1 where the rank is undeclared).
func latencyInput(sig models.Signature, examples [][]models.Tensor) (in []models.Tensor, what string, err error) {
	for _, ex := range examples {
		if batchOne(sig, ex) {
			return ex, "golden inputs", nil
		}
	}
	in = make([]models.Tensor, len(sig.Inputs))
	for i, spec := range sig.Inputs {
		if in[i], err = zeros(spec); err != nil {
			return nil, "", err
		}
	}
	return in, "zero inputs", nil
}

// batchOne reports whether every input whose first dimension is dynamic
// has 1 there.
func batchOne(sig models.Signature, ts []models.Tensor) bool {
	for _, t := range ts {
		spec, ok := sig.Input(t.Name)
		if !ok {
			return false
		}
		if len(spec.Shape) > 0 && spec.Shape[0] < 0 && (len(t.Shape) == 0 || t.Shape[0] != 1) {
			return false
		}
	}
	return true
}

// zeros returns a zero-filled input for spec (empty strings for BYTES).
func zeros(spec models.TensorSpec) (models.Tensor, error) {
	shape := []int64{1}
	if spec.Shape != nil {
		shape = make([]int64, len(spec.Shape))
		for d, v := range spec.Shape {
			shape[d] = max(v, 1)
			if v == 0 {
				shape[d] = 0
			}
		}
	}
	t := models.Tensor{Name: spec.Name, DataType: spec.DataType, Shape: shape}
	tooBig := fmt.Errorf("input %q: shape %v needs more than %s", spec.Name, shape, byteSize(maxZeroInputBytes))
	if spec.DataType == models.Bytes {
		n, err := models.NumElements(shape)
		if err != nil {
			return t, fmt.Errorf("input %q: %w", spec.Name, err)
		}
		if n > maxZeroInputBytes/4 {
			return t, tooBig
		}
		t.Data = make([]byte, 4*n) // a zero length prefix per element
		return t, nil
	}
	size, err := models.ByteSize(spec.DataType, shape)
	if err != nil {
		return t, fmt.Errorf("input %q: %w", spec.Name, err)
	}
	if size > maxZeroInputBytes {
		return t, tooBig
	}
	t.Data = make([]byte, size)
	return t, nil
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// byteSize spells a byte count for people.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB (%d bytes)", float64(n)/(1<<20), n)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
