package models

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"time"
)

// FormatONNX is the format of a version whose artifact is an ONNX model
// file (FormatPipeline, in pipeline.go, is the other format).
const FormatONNX = "onnx"

// TensorSpec describes one input or output of a model: its name, datatype
// and shape, with -1 for a dynamic dimension.
type TensorSpec struct {
	Name     string   `json:"name"`
	DataType DataType `json:"datatype"`
	Shape    []int64  `json:"shape"`
}

// Signature is the ordered inputs and outputs of a model.
type Signature struct {
	Inputs  []TensorSpec `json:"inputs"`
	Outputs []TensorSpec `json:"outputs"`
}

// Golden is one example the model must reproduce: inputs, and the outputs
// expected within Tolerance (absolute, per element; 0 means exact).
type Golden struct {
	Inputs    []GoldenTensor `json:"inputs"`
	Outputs   []GoldenTensor `json:"outputs"`
	Tolerance float64        `json:"tolerance,omitempty"`
}

// GoldenTensor carries its data as JSON numbers (or booleans), flattened
// row-major, like the OIP JSON encoding.
type GoldenTensor struct {
	Name     string          `json:"name"`
	DataType DataType        `json:"datatype"`
	Shape    []int64         `json:"shape"`
	Data     json.RawMessage `json:"data"`
}

// Manifest describes one model version artifact.
type Manifest struct {
	Name      string            `json:"name"`
	Version   string            `json:"version"`
	Digest    string            `json:"digest"` // "sha256:<hex>" of the model file
	Format    string            `json:"format"`
	Signature Signature         `json:"signature"`
	Golden    []Golden          `json:"golden,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	Lineage   *Lineage          `json:"lineage,omitempty"`
	// Baseline is the distribution of the input features the version
	// was trained on, for drift detection at the nodes (optional).
	Baseline *FeatureBaseline `json:"baseline,omitempty"`
	// Transforms are the optional WebAssembly pre- and post-processing
	// modules of the version (docs/transforms.md). Their digests are part
	// of the signed manifest, so a node verifies each module before
	// compiling it.
	Transforms *Transforms `json:"transforms,omitempty"`
	// Pipeline makes the version a chain of other models' pinned
	// versions (Format FormatPipeline, no Digest of its own; see
	// pipeline.go). Its Signature is the first step's inputs and the last
	// step's outputs.
	Pipeline *Pipeline `json:"pipeline,omitempty"`
}

// Transforms names a version's pre-processing module (request body to
// input tensors) and post-processing module (output tensors to response
// body). Either may be absent, not both.
type Transforms struct {
	Pre  *Transform `json:"pre,omitempty"`
	Post *Transform `json:"post,omitempty"`
}

// Transform is one WebAssembly (WASI) module of a version.
type Transform struct {
	// Digest is "sha256:<hex>" of the .wasm file.
	Digest string `json:"digest"`
	// Grants are the capabilities the module may use beyond pure
	// computation: GrantClock, GrantRandom. None by default.
	Grants []string `json:"grants,omitempty"`
	// Size is the .wasm file's length in bytes.
	Size int64 `json:"size"`
}

// Transform grants: what a transform module may see of the host.
const (
	GrantClock  = "clock"  // wall and monotonic clocks
	GrantRandom = "random" // a source of random bytes
)

// MaxTransformBytes bounds one transform module.
const MaxTransformBytes = 32 << 20

// ValidGrant reports whether g names a known transform grant.
func ValidGrant(g string) bool { return g == GrantClock || g == GrantRandom }

// Has reports whether the transform is granted g.
func (t *Transform) Has(g string) bool {
	for _, x := range t.Grants {
		if x == g {
			return true
		}
	}
	return false
}

// Validate checks the digest, size and grants of a transform.
func (t *Transform) Validate() error {
	if !digestRE.MatchString(t.Digest) {
		return fmt.Errorf("digest %q: want sha256:<64 hex digits>", t.Digest)
	}
	if t.Size <= 0 || t.Size > MaxTransformBytes {
		return fmt.Errorf("size %d: want 1 to %d bytes", t.Size, MaxTransformBytes)
	}
	seen := map[string]bool{}
	for _, g := range t.Grants {
		if !ValidGrant(g) {
			return fmt.Errorf("grant %q: want %q or %q", g, GrantClock, GrantRandom)
		}
		if seen[g] {
			return fmt.Errorf("grant %q given twice", g)
		}
		seen[g] = true
	}
	return nil
}

// Validate checks that at least one transform is present and each is
// valid.
func (t *Transforms) Validate() error {
	if t.Pre == nil && t.Post == nil {
		return errors.New("transforms: neither pre nor post is given")
	}
	for _, x := range []struct {
		stage string
		t     *Transform
	}{{"pre", t.Pre}, {"post", t.Post}} {
		if x.t == nil {
			continue
		}
		if err := x.t.Validate(); err != nil {
			return fmt.Errorf("transforms: %s: %w", x.stage, err)
		}
	}
	return nil
}

// Digests lists the digests of the transforms present, pre first.
func (t *Transforms) Digests() []string {
	var out []string
	if t == nil {
		return nil
	}
	if t.Pre != nil {
		out = append(out, t.Pre.Digest)
	}
	if t.Post != nil {
		out = append(out, t.Post.Digest)
	}
	return out
}

// Limits of a FeatureBaseline.
const (
	MaxBaselineFeatures = 1 << 16
	MaxBaselineBins     = 64
)

// FeatureBaseline describes, for each feature of a model's single FP32
// [batch, features] input, the bins of a histogram and the fraction of
// the training inputs that fell in each. Nodes compare the inputs they
// see with it (population stability index) to detect drift.
type FeatureBaseline struct {
	// Features has one entry per input feature, in input order.
	Features []FeatureBins `json:"features"`
}

// FeatureBins is one feature's histogram. Edges are the k-1 ascending,
// finite, distinct interior boundaries of k bins: bin 0 is
// (-inf, Edges[0]), bin i is [Edges[i-1], Edges[i]), bin k-1 is
// [Edges[k-2], +inf). Expected holds the k fractions, each in [0, 1],
// summing to 1 (within 1e-3). 2 <= k <= MaxBaselineBins.
type FeatureBins struct {
	Edges    []float64 `json:"edges"`
	Expected []float64 `json:"expected"`
}

// Bin returns the bin of value v.
func (f *FeatureBins) Bin(v float64) int {
	lo, hi := 0, len(f.Edges)
	for lo < hi { // first edge > v
		mid := (lo + hi) / 2
		if f.Edges[mid] > v {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// Validate checks the histogram of every feature (see FeatureBins).
func (b *FeatureBaseline) Validate() error {
	if len(b.Features) == 0 || len(b.Features) > MaxBaselineFeatures {
		return fmt.Errorf("baseline has %d features, want 1 to %d", len(b.Features), MaxBaselineFeatures)
	}
	for i, f := range b.Features {
		k := len(f.Expected)
		if k < 2 || k > MaxBaselineBins || len(f.Edges) != k-1 {
			return fmt.Errorf("baseline feature %d: %d bins and %d edges, want 2 to %d bins and one edge fewer", i, k, len(f.Edges), MaxBaselineBins)
		}
		for j, e := range f.Edges {
			if math.IsNaN(e) || math.IsInf(e, 0) || (j > 0 && e <= f.Edges[j-1]) {
				return fmt.Errorf("baseline feature %d: edges %v are not finite and strictly ascending", i, f.Edges)
			}
		}
		var sum float64
		for _, p := range f.Expected {
			if math.IsNaN(p) || p < 0 || p > 1 {
				return fmt.Errorf("baseline feature %d: expected fraction %v is outside [0, 1]", i, p)
			}
			sum += p
		}
		if math.Abs(sum-1) > 1e-3 {
			return fmt.Errorf("baseline feature %d: expected fractions sum to %v, want 1", i, sum)
		}
	}
	return nil
}

var (
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	digestRE  = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// ErrInvalidManifest wraps every manifest validation failure.
var ErrInvalidManifest = errors.New("invalid manifest")

// ValidName reports whether s can name a model (also used for directory names).
func ValidName(s string) bool { return nameRE.MatchString(s) && s != "." && s != ".." }

// ValidVersion reports whether s can name a model version.
func ValidVersion(s string) bool { return versionRE.MatchString(s) && s != "." && s != ".." }

// Validate checks the manifest's fields and returns an error naming the
// first field that is wrong.
func (m *Manifest) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidManifest, fmt.Sprintf(format, a...))
	}
	if !ValidName(m.Name) {
		return bad("name %q: want 1-128 letters, digits, '_', '.', '-'", m.Name)
	}
	if !ValidVersion(m.Version) {
		return bad("version %q: want 1-64 letters, digits, '_', '.', '-'", m.Version)
	}
	if m.Digest != "" && !digestRE.MatchString(m.Digest) {
		return bad("digest %q: want sha256:<64 hex digits>", m.Digest)
	}
	switch m.Format {
	case FormatONNX:
		if m.Pipeline != nil {
			return bad("an %q version cannot have a pipeline (use format %q)", FormatONNX, FormatPipeline)
		}
	case FormatPipeline:
		if m.Digest != "" {
			return bad("digest %q: a pipeline has no artifact of its own", m.Digest)
		}
		if m.Pipeline == nil {
			return bad("format %q without a pipeline", FormatPipeline)
		}
		if err := m.Pipeline.Validate(m.Name); err != nil {
			return bad("%v", err)
		}
		for i, s := range m.Pipeline.Steps {
			if s.Digest == "" {
				return bad("pipeline step %d (%s): no digest", i+1, s.Model)
			}
		}
		if m.Transforms != nil {
			return bad("a pipeline has no transforms of its own; its steps may")
		}
	default:
		return bad("format %q: want %q or %q", m.Format, FormatONNX, FormatPipeline)
	}
	if err := m.Signature.Validate(); err != nil {
		return bad("%v", err)
	}
	for k := range m.Labels {
		if k == "" || len(k) > 63 || strings.ContainsAny(k, " =,\n") {
			return bad("label key %q", k)
		}
	}
	if m.Lineage != nil {
		if err := m.Lineage.Validate(); err != nil {
			return bad("lineage: %v", err)
		}
	}
	if m.Baseline != nil {
		if err := m.Baseline.Validate(); err != nil {
			return bad("%v", err)
		}
		in := m.Signature.Inputs
		if len(in) != 1 || len(in[0].Shape) != 2 || in[0].Shape[1] < 1 {
			return bad("a baseline needs a single input of shape [batch, features]")
		}
		if int64(len(m.Baseline.Features)) != in[0].Shape[1] {
			return bad("baseline has %d features, input %q has %d", len(m.Baseline.Features), in[0].Name, in[0].Shape[1])
		}
	}
	if m.Transforms != nil {
		if err := m.Transforms.Validate(); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// Validate checks names are unique and non-empty, datatypes known and
// dimensions >= -1.
func (s *Signature) Validate() error {
	check := func(kind string, specs []TensorSpec) error {
		seen := map[string]bool{}
		for i, t := range specs {
			if t.Name == "" {
				return fmt.Errorf("%s %d has no name", kind, i)
			}
			if seen[t.Name] {
				return fmt.Errorf("%s %q appears twice", kind, t.Name)
			}
			seen[t.Name] = true
			if !t.DataType.Valid() {
				return fmt.Errorf("%s %q: %w %q", kind, t.Name, ErrUnsupportedDataType, t.DataType)
			}
			for _, d := range t.Shape {
				if d < -1 {
					return fmt.Errorf("%s %q: dimension %d (use -1 for dynamic)", kind, t.Name, d)
				}
			}
		}
		return nil
	}
	if len(s.Inputs) == 0 {
		return errors.New("signature has no inputs")
	}
	if len(s.Outputs) == 0 {
		return errors.New("signature has no outputs")
	}
	if err := check("input", s.Inputs); err != nil {
		return err
	}
	return check("output", s.Outputs)
}

// Input returns the spec of the named input.
func (s *Signature) Input(name string) (TensorSpec, bool) {
	for _, t := range s.Inputs {
		if t.Name == name {
			return t, true
		}
	}
	return TensorSpec{}, false
}

// Output returns the spec of the named output.
func (s *Signature) Output(name string) (TensorSpec, bool) {
	for _, t := range s.Outputs {
		if t.Name == name {
			return t, true
		}
	}
	return TensorSpec{}, false
}

// Accepts reports whether a tensor of this datatype and shape fits the
// spec: same datatype, same rank, and equal dimensions where the spec's
// dimension is fixed. A nil spec shape means the model does not declare
// a rank, and any shape is accepted.
func (t TensorSpec) Accepts(dt DataType, shape []int64) error {
	if dt != t.DataType {
		return fmt.Errorf("input %q: datatype %s, model expects %s", t.Name, dt, t.DataType)
	}
	if t.Shape == nil {
		return nil
	}
	if len(shape) != len(t.Shape) {
		return fmt.Errorf("input %q: shape %v has rank %d, model expects rank %d %v", t.Name, shape, len(shape), len(t.Shape), t.Shape)
	}
	for i, d := range t.Shape {
		if d >= 0 && shape[i] != d {
			return fmt.Errorf("input %q: shape %v, model expects %v", t.Name, shape, t.Shape)
		}
	}
	return nil
}

// Digest returns "sha256:<hex>" of everything r yields.
func Digest(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// DigestBytes returns "sha256:<hex>" of b.
func DigestBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
