package operator

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/operator/api/v1alpha1"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/models"
)

// Defaults of a RolloutPolicy.
var (
	// DefaultSteps are the traffic steps of a rollout that gives none.
	DefaultSteps = []int32{10, 50, 100}
	// DefaultInterval is the least time at each step.
	DefaultInterval = time.Minute
	// DefaultMaxErrorRate is the error rate that rolls back.
	DefaultMaxErrorRate = 0.01
)

// ErrInvalidSpec is wrapped by the errors of ValidateSpec.
var ErrInvalidSpec = errors.New("invalid PetrelModel spec")

var (
	sha256RE   = regexp.MustCompile(`^[a-f0-9]{64}$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$`)
	regionRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	errRateRE  = regexp.MustCompile(`^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$`)
)

// maxLabelValue bounds a label value (as the coordinator does).
const maxLabelValue = 256

// ValidateSpec checks a spec with the rules of the CRD schema (which an
// API server enforces, but a client that skips it, or an older CRD, may
// not) and those of the coordinator, and returns an error wrapping
// ErrInvalidSpec that names the first thing wrong.
func ValidateSpec(s *v1alpha1.PetrelModelSpec) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, a...))
	}
	if !models.ValidName(s.Model) {
		return bad("model %q: want 1-128 letters, digits, '_', '.', '-', starting with a letter or digit", s.Model)
	}
	if !models.ValidVersion(s.Version) {
		return bad("version %q: want 1-64 letters, digits, '_', '.', '-', starting with a letter or digit", s.Version)
	}
	if err := validateFile("artifact.model", &s.Artifact.Model); err != nil {
		return bad("%v", err)
	}
	if g := s.Artifact.Golden; g != nil {
		if err := validateFile("artifact.golden", g); err != nil {
			return bad("%v", err)
		}
	}
	for _, t := range []struct {
		name string
		f    *v1alpha1.TransformFile
	}{{"artifact.pre", s.Artifact.Pre}, {"artifact.post", s.Artifact.Post}} {
		if t.f == nil {
			continue
		}
		if err := validateFile(t.name, &t.f.RemoteFile); err != nil {
			return bad("%v", err)
		}
		seen := map[v1alpha1.Grant]bool{}
		for _, g := range t.f.Grants {
			if !models.ValidGrant(string(g)) {
				return bad("%s.grants: unknown grant %q (clock, random)", t.name, g)
			}
			if seen[g] {
				return bad("%s.grants: %q given twice", t.name, g)
			}
			seen[g] = true
		}
	}
	if err := validateLabels("labels", s.Labels); err != nil {
		return bad("%v", err)
	}
	if p := s.Placement; p != nil {
		if len(p.Regions) > bus.MaxLabels {
			return bad("placement.regions: %d regions, at most %d", len(p.Regions), bus.MaxLabels)
		}
		for _, r := range p.Regions {
			if !regionRE.MatchString(r) {
				return bad("placement.regions: %q: want 1-128 letters, digits, '_', '.', '-'", r)
			}
		}
		if err := validateLabels("placement.labels", p.Labels); err != nil {
			return bad("%v", err)
		}
		if p.MinReplicasPerRegion < 0 || p.MinReplicasPerRegion > 1_000_000 {
			return bad("placement.minReplicasPerRegion %d: want 0-1000000", p.MinReplicasPerRegion)
		}
	}
	if s.Rollout != nil {
		if _, err := RolloutRequest(s); err != nil {
			return err
		}
	}
	return nil
}

func validateFile(name string, f *v1alpha1.RemoteFile) error {
	u, err := url.Parse(f.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(f.URL) > 2048 {
		return fmt.Errorf("%s.url %q: want an http or https URL of at most 2048 bytes", name, f.URL)
	}
	if !sha256RE.MatchString(f.SHA256) {
		return fmt.Errorf("%s.sha256 %q: want 64 lower-case hex digits", name, f.SHA256)
	}
	return nil
}

func validateLabels(name string, l map[string]string) error {
	if len(l) > bus.MaxLabels {
		return fmt.Errorf("%s: %d labels, at most %d", name, len(l), bus.MaxLabels)
	}
	for k, v := range l {
		if !labelKeyRE.MatchString(k) {
			return fmt.Errorf("%s: key %q: want 1-63 letters, digits, '_', '.', '/', '-'", name, k)
		}
		if len(v) > maxLabelValue {
			return fmt.Errorf("%s: %q: value longer than %d bytes", name, k, maxLabelValue)
		}
		if strings.ContainsAny(v, ",") {
			return fmt.Errorf("%s: %q: a value cannot contain ','", name, k)
		}
	}
	return nil
}

// RolloutRequest builds the body of POST /v1/rollouts/{model} from the
// spec's rollout policy, with defaults filled in, and checks it with the
// coordinator's rules. Errors wrap ErrInvalidSpec.
func RolloutRequest(s *v1alpha1.PetrelModelSpec) (coordinator.RolloutRequest, error) {
	bad := func(format string, a ...any) (coordinator.RolloutRequest, error) {
		return coordinator.RolloutRequest{}, fmt.Errorf("%w: rollout: %s", ErrInvalidSpec, fmt.Sprintf(format, a...))
	}
	p := s.Rollout
	if p == nil {
		p = &v1alpha1.RolloutPolicy{}
	}
	steps := p.Steps
	if len(steps) == 0 {
		steps = DefaultSteps
	}
	req := coordinator.RolloutRequest{Version: s.Version, Steps: make([]float64, len(steps)), MaxErrorRate: DefaultMaxErrorRate}
	for i, w := range steps {
		req.Steps[i] = float64(w)
	}
	interval := DefaultInterval
	if p.Interval != nil {
		interval = p.Interval.Duration
	}
	req.Interval = interval.String()
	if p.MaxErrorRate != "" {
		if !errRateRE.MatchString(p.MaxErrorRate) {
			return bad("maxErrorRate %q: want a decimal fraction in [0, 1] such as \"0.01\"", p.MaxErrorRate)
		}
		v, err := strconv.ParseFloat(p.MaxErrorRate, 64)
		if err != nil {
			return bad("maxErrorRate %q: %v", p.MaxErrorRate, err)
		}
		req.MaxErrorRate = v
	}
	var maxP99 time.Duration
	if p.MaxP99 != nil {
		maxP99 = p.MaxP99.Duration
		if maxP99 < 0 {
			return bad("maxP99 %v is negative", maxP99)
		}
		if maxP99 > 0 {
			req.MaxP99 = maxP99.String()
		}
	}
	if p.MinRequests < 0 {
		return bad("minRequests %d is negative", p.MinRequests)
	}
	req.MinRequests = uint64(p.MinRequests)
	// The coordinator's own rules (it fills From in itself).
	spec := rollout.Spec{Model: s.Model, To: s.Version, Steps: req.Steps, Interval: interval,
		MaxErrorRate: req.MaxErrorRate, MaxP99: maxP99, MinRequests: req.MinRequests}
	if err := spec.Validate(); err != nil {
		return bad("%s", strings.TrimPrefix(err.Error(), rollout.ErrInvalidSpec.Error()+": "))
	}
	return req, nil
}

// placement converts the spec's placement (nil when absent).
func placement(p *v1alpha1.Placement) *bus.Placement {
	if p == nil {
		return nil
	}
	out := &bus.Placement{MinReplicasPerRegion: int(p.MinReplicasPerRegion)}
	if len(p.Regions) > 0 {
		out.Regions = slices.Clone(p.Regions)
	}
	if len(p.Labels) > 0 {
		out.Labels = maps.Clone(p.Labels)
	}
	return out
}

// samePlacement compares placements, nil and empty lists alike.
func samePlacement(a, b bus.Placement) bool {
	return a.MinReplicasPerRegion == b.MinReplicasPerRegion &&
		slices.Equal(a.Regions, b.Regions) && maps.Equal(a.Labels, b.Labels)
}

// grants converts transform grants to strings.
func grants(t *v1alpha1.TransformFile) []string {
	if t == nil {
		return nil
	}
	out := make([]string, len(t.Grants))
	for i, g := range t.Grants {
		out[i] = string(g)
	}
	return out
}
