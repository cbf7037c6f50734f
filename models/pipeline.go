package models

import (
	"encoding/json"
	"fmt"
	"strings"
)

// FormatPipeline is the format of a pipeline version: a chain of other
// models' pinned versions run on the node, with no artifact of its own
// (docs/coordinator.md, "Pipelines").
const FormatPipeline = "pipeline"

// Bounds on a pipeline's length. A one-step pipeline would be an alias,
// which is not what a pipeline is for.
const (
	MinPipelineSteps = 2
	MaxPipelineSteps = 16
)

// Pipeline is the chain of a pipeline version: a request runs the first
// step, feeds its outputs to the second (wired by WirePipeline), and so
// on; the answer is the last step's outputs.
type Pipeline struct {
	Steps []PipelineStep `json:"steps"`
}

// PipelineStep is one step of a pipeline manifest: a model version,
// pinned so that the manifest's signature covers exactly what runs.
type PipelineStep struct {
	Model   string `json:"model"`
	Version string `json:"version"`
	// Digest is the step version's ServingDigest when the pipeline was
	// pushed; a node refuses to run the pipeline over a step version with
	// another digest (the step was removed and pushed again). Required in
	// a manifest; the push request leaves it out and the coordinator
	// fills it in.
	Digest string `json:"digest,omitempty"`
}

// Validate checks the pipeline of the model called self: 2 to 16 steps,
// each naming a valid model other than self and a valid version, with a
// well-formed digest when one is given.
func (p *Pipeline) Validate(self string) error {
	if n := len(p.Steps); n < MinPipelineSteps || n > MaxPipelineSteps {
		return fmt.Errorf("pipeline has %d steps, want %d to %d", n, MinPipelineSteps, MaxPipelineSteps)
	}
	for i, s := range p.Steps {
		if !ValidName(s.Model) {
			return fmt.Errorf("pipeline step %d: model %q: want 1-128 letters, digits, '_', '.', '-'", i+1, s.Model)
		}
		if s.Model == self {
			return fmt.Errorf("pipeline step %d: model %q is the pipeline itself", i+1, s.Model)
		}
		if !ValidVersion(s.Version) {
			return fmt.Errorf("pipeline step %d (%s): version %q: want 1-64 letters, digits, '_', '.', '-' (a pipeline pins every step's version)", i+1, s.Model, s.Version)
		}
		if s.Digest != "" && !digestRE.MatchString(s.Digest) {
			return fmt.Errorf("pipeline step %d (%s): digest %q: want sha256:<64 hex digits>", i+1, s.Model, s.Digest)
		}
	}
	return nil
}

// ServingDigest identifies what serving this version runs, as the
// coordinator's desired state carries it: the model file's digest, or,
// for a pipeline (which has no file), "sha256:" of the manifest's JSON
// encoding, which pins every step's version and digest. It is a pure
// function of the manifest, so the coordinator and a node that decoded
// the same signed manifest compute the same value.
func (m *Manifest) ServingDigest() string {
	if m.Format != FormatPipeline {
		return m.Digest
	}
	c := *m
	c.Digest = ""
	b, err := json.Marshal(&c)
	if err != nil { // a manifest that validates always encodes
		return ""
	}
	return DigestBytes(b)
}

// Link feeds output From of one pipeline step to input To of the next.
type Link struct{ From, To string }

// LinkError says why one step's outputs do not fit the next step's
// inputs: Input has no output of its name (Output == ""), or Output does
// not fit Input (Err).
type LinkError struct {
	Output, Input string
	// Outputs are the names of the producing step's outputs.
	Outputs []string
	Err     error
}

func (e *LinkError) Error() string {
	if e.Output == "" {
		return fmt.Sprintf("input %q has no output of that name; the outputs are [%s]", e.Input, strings.Join(e.Outputs, ", "))
	}
	return fmt.Sprintf("output %q does not fit input %q: %v", e.Output, e.Input, e.Err)
}

func (e *LinkError) Unwrap() error { return e.Err }

// WirePipeline wires the outputs of one step (signature a) to the inputs
// of the next (signature b). When a has exactly one output and b exactly
// one input, the one feeds the other whatever their names; otherwise
// every input of b is fed by the output of a with the same name, and a's
// other outputs are dropped. Each link must agree in datatype and shape
// (see SpecFits). The error is a *LinkError.
func WirePipeline(a, b Signature) ([]Link, error) {
	if len(a.Outputs) == 1 && len(b.Inputs) == 1 {
		out, in := a.Outputs[0], b.Inputs[0]
		if err := SpecFits(out, in); err != nil {
			return nil, &LinkError{Output: out.Name, Input: in.Name, Err: err}
		}
		return []Link{{out.Name, in.Name}}, nil
	}
	ls := make([]Link, 0, len(b.Inputs))
	for _, in := range b.Inputs {
		out, ok := a.Output(in.Name)
		if !ok {
			names := make([]string, len(a.Outputs))
			for i, o := range a.Outputs {
				names[i] = o.Name
			}
			return nil, &LinkError{Input: in.Name, Outputs: names}
		}
		if err := SpecFits(out, in); err != nil {
			return nil, &LinkError{Output: out.Name, Input: in.Name, Err: err}
		}
		ls = append(ls, Link{out.Name, in.Name})
	}
	return ls, nil
}

// SpecFits reports whether a tensor produced as out can be fed as in:
// equal datatypes, equal ranks, and each dimension equal or dynamic (-1)
// on either side.
func SpecFits(out, in TensorSpec) error {
	if out.DataType != in.DataType {
		return fmt.Errorf("datatype %s, want %s", out.DataType, in.DataType)
	}
	if len(out.Shape) != len(in.Shape) {
		return fmt.Errorf("shape %v has rank %d, want %v (rank %d)", out.Shape, len(out.Shape), in.Shape, len(in.Shape))
	}
	for d := range out.Shape {
		a, b := out.Shape[d], in.Shape[d]
		if a != b && a >= 0 && b >= 0 {
			return fmt.Errorf("shape %v, want %v (dimension %d)", out.Shape, in.Shape, d)
		}
	}
	return nil
}

// PipelineSignature wires every pair of consecutive steps (signatures in
// step order, at least one) and returns the pipeline's signature, the
// first step's inputs and the last step's outputs, with links[i] the
// wiring of step i into step i+1. A failure is a *StepLinkError.
func PipelineSignature(steps []Signature) (Signature, [][]Link, error) {
	if len(steps) == 0 {
		return Signature{}, nil, fmt.Errorf("pipeline has no steps")
	}
	links := make([][]Link, 0, len(steps)-1)
	for i := 1; i < len(steps); i++ {
		ls, err := WirePipeline(steps[i-1], steps[i])
		if err != nil {
			return Signature{}, nil, &StepLinkError{Step: i, LinkError: err.(*LinkError)}
		}
		links = append(links, ls)
	}
	sig := Signature{
		Inputs:  append([]TensorSpec(nil), steps[0].Inputs...),
		Outputs: append([]TensorSpec(nil), steps[len(steps)-1].Outputs...),
	}
	return sig, links, nil
}

// StepLinkError is a LinkError between step Step and step Step+1
// (1-based).
type StepLinkError struct {
	Step int
	*LinkError
}

func (e *StepLinkError) Error() string {
	return fmt.Sprintf("step %d to step %d: %v", e.Step, e.Step+1, e.LinkError)
}

func (e *StepLinkError) Unwrap() error { return e.LinkError }
