package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/models/wasm"
)

// CheckTransforms is the check of a version's WebAssembly transforms; it
// runs after the model's own checks, and only when the push has any.
const CheckTransforms = "transforms"

// MaxPredictExamples bounds the predict examples of one push.
const MaxPredictExamples = 64

// TransformModule is one transform offered with a push.
type TransformModule struct {
	Wasm   []byte
	Grants []string // models.GrantClock, models.GrantRandom
}

// Spec describes the module for the manifest.
func (t *TransformModule) Spec() *models.Transform {
	if t == nil {
		return nil
	}
	return &models.Transform{Digest: models.DigestBytes(t.Wasm), Grants: t.Grants, Size: int64(len(t.Wasm))}
}

// PredictExample is one "predict golden": a raw request body that the
// version's /predict must answer as expected. It is given in the golden
// file's "predict" array (see ParsePredictExamples).
type PredictExample struct {
	// ContentType and Body are the request (Body as text).
	ContentType string `json:"content_type"`
	Body        string `json:"body"`
	// Accept is the request's Accept header (optional).
	Accept string `json:"accept,omitempty"`
	// ExpectStatus is 200 (the default) or 400: the pre transform must
	// refuse the body as the client's error.
	ExpectStatus int `json:"expect_status,omitempty"`
	// ExpectContains, if set, must occur in the response body (200) or
	// in the refusal's message (400).
	ExpectContains string `json:"expect_contains,omitempty"`
}

// ParsePredictExamples reads the optional "predict" array of a golden
// file given as a JSON object ({"golden": [...], "predict": [...]}). A
// file that is an array, or an object without "predict", has none.
func ParsePredictExamples(b []byte) ([]PredictExample, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("golden file: %w", err)
	}
	raw, ok := obj["predict"]
	if !ok {
		return nil, nil
	}
	var out []PredictExample
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("golden file: predict: %w", err)
	}
	if len(out) > MaxPredictExamples {
		return nil, fmt.Errorf("golden file: %d predict examples, the limit is %d", len(out), MaxPredictExamples)
	}
	for i := range out {
		e := &out[i]
		if e.ExpectStatus == 0 {
			e.ExpectStatus = http.StatusOK
		}
		if e.ExpectStatus != http.StatusOK && e.ExpectStatus != http.StatusBadRequest {
			return nil, fmt.Errorf("golden file: predict example %d: expect_status %d: want 200 or 400", i, e.ExpectStatus)
		}
	}
	return out, nil
}

// Transforms checks a version's transforms and appends the result to
// rep as the CheckTransforms check (OK and Reason updated). Each module
// must compile under the node's limits with its grants (a module that is
// not WebAssembly, lacks the ABI's exports, imports what it was not
// granted or declares too much memory fails with that reason). Then
// every predict example goes pre → signature check → model → post; when
// there are none, post (if any) must accept the model's outputs for the
// golden examples' inputs. The model must have passed its own checks.
// The error is for a gate that could not run (runtime, context).
func Transforms(ctx context.Context, rep *Report, model []byte, pre, post *TransformModule, examples []PredictExample, goldens []models.Golden, opts Options) error {
	if pre == nil && post == nil {
		if len(examples) > 0 {
			rep.fail(CheckTransforms, "the golden file has predict examples but the push has no transforms")
		}
		return nil
	}
	if !rep.OK {
		rep.Checks = append(rep.Checks, Check{Name: CheckTransforms, Skipped: true, Detail: "not run: an earlier check failed"})
		return nil
	}
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	rt, err := wasm.NewRuntime(ctx, wasm.Options{})
	if err != nil {
		return fmt.Errorf("validate: transform runtime: %w", err)
	}
	defer rt.Close(context.WithoutCancel(ctx))
	mods := map[string]*wasm.Module{}
	for _, s := range []struct {
		stage string
		t     *TransformModule
	}{{"pre", pre}, {"post", post}} {
		if s.t == nil {
			continue
		}
		if err := s.t.Spec().Validate(); err != nil {
			rep.fail(CheckTransforms, fmt.Sprintf("%s transform: %v", s.stage, err))
			return nil
		}
		m, err := rt.Compile(ctx, s.t.Wasm, wasm.Grants{Clock: s.t.Spec().Has(models.GrantClock), Random: s.t.Spec().Has(models.GrantRandom)})
		if err != nil {
			if errors.Is(err, wasm.ErrInvalidModule) {
				rep.fail(CheckTransforms, fmt.Sprintf("%s transform is invalid: %v", s.stage, err))
				return nil
			}
			return fmt.Errorf("validate: compile %s transform: %w", s.stage, err)
		}
		mods[s.stage] = m
	}
	if len(examples) > 0 && mods["pre"] == nil {
		rep.fail(CheckTransforms, "the golden file has predict examples but the push has no pre transform")
		return nil
	}
	sess, err := ort.Load(model, o.Runtime)
	if err != nil {
		return fmt.Errorf("validate: load model for the transforms check: %w", err)
	}
	defer sess.Close()
	sig := rep.Signature
	for i, ex := range examples {
		if detail := predictOne(ctx, sess, &sig, mods["pre"], mods["post"], ex); detail != "" {
			rep.fail(CheckTransforms, fmt.Sprintf("predict example %d: %s", i, detail))
			return nil
		}
	}
	ran := fmt.Sprintf("compiled %s", strings.Join(stages(mods), " and "))
	switch {
	case len(examples) > 0:
		ran += fmt.Sprintf("; passed %d predict examples", len(examples))
	case mods["post"] != nil && len(goldens) > 0:
		for i, in := range inputsOf(goldens) {
			outs, err := sess.Run(ctx, in, nil)
			if err != nil {
				rep.fail(CheckTransforms, fmt.Sprintf("golden example %d: model: %v", i, err))
				return nil
			}
			if _, _, err := mods["post"].Post(ctx, outs, ""); err != nil {
				rep.fail(CheckTransforms, fmt.Sprintf("post transform refused the outputs of golden example %d: %v", i, err))
				return nil
			}
		}
		ran += fmt.Sprintf("; post accepted the outputs of %d golden examples", len(goldens))
	default:
		ran += "; no predict examples given"
	}
	rep.pass(CheckTransforms, ran)
	return nil
}

func stages(mods map[string]*wasm.Module) []string {
	var out []string
	for _, s := range []string{"pre", "post"} {
		if mods[s] != nil {
			out = append(out, s)
		}
	}
	return out
}

// predictOne runs one example and returns what was wrong ("" if nothing).
func predictOne(ctx context.Context, sess models.Session, sig *models.Signature, pre, post *wasm.Module, ex PredictExample) string {
	ins, err := pre.Pre(ctx, ex.ContentType, []byte(ex.Body))
	if ex.ExpectStatus == http.StatusBadRequest {
		switch {
		case err == nil:
			return "pre accepted the body; want a refusal (400)"
		case !errors.Is(err, wasm.ErrClientInput):
			return fmt.Sprintf("pre failed (%v); want a refusal of the client's input (400)", err)
		case ex.ExpectContains != "" && !strings.Contains(err.Error(), ex.ExpectContains):
			return fmt.Sprintf("pre refused with %q, which does not contain %q", err.Error(), ex.ExpectContains)
		}
		return ""
	}
	if err != nil {
		return fmt.Sprintf("pre: %v", err)
	}
	if err := fitInputs(sig, ins); err != nil {
		return fmt.Sprintf("pre produced inputs that do not fit the model: %v", err)
	}
	outs, err := sess.Run(ctx, ins, nil)
	if err != nil {
		return fmt.Sprintf("model: %v", err)
	}
	var body []byte
	if post != nil {
		if _, body, err = post.Post(ctx, outs, ex.Accept); err != nil {
			return fmt.Sprintf("post: %v", err)
		}
	} else {
		body, _ = json.Marshal(outs)
	}
	if ex.ExpectContains != "" && !strings.Contains(string(body), ex.ExpectContains) {
		return fmt.Sprintf("response %q does not contain %q", truncate(body, 200), ex.ExpectContains)
	}
	return ""
}

// fitInputs checks tensors against the signature: each input present
// once, datatype and shape accepted, data consistent.
func fitInputs(sig *models.Signature, ins []models.Tensor) error {
	seen := map[string]bool{}
	for i := range ins {
		t := &ins[i]
		spec, ok := sig.Input(t.Name)
		if !ok {
			return fmt.Errorf("unknown input %q", t.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("input %q given twice", t.Name)
		}
		seen[t.Name] = true
		if err := spec.Accepts(t.DataType, t.Shape); err != nil {
			return err
		}
		if err := t.Validate(); err != nil {
			return err
		}
	}
	for _, s := range sig.Inputs {
		if !seen[s.Name] {
			return fmt.Errorf("missing input %q", s.Name)
		}
	}
	return nil
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

// fail and pass record a check on a finished report and keep OK and
// Reason consistent.
func (r *Report) fail(name, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, Detail: detail})
	if r.OK || r.Reason == "" {
		r.Reason = detail
	}
	r.OK = false
}

func (r *Report) pass(name, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Detail: detail})
}
