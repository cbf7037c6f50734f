package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/models"
)

// Limits and defaults of a Spec.
const (
	// DefaultMinRequests is the MinRequests used when a Spec leaves it 0.
	DefaultMinRequests = 20

	// MinInterval is the smallest Interval a Spec may have.
	MinInterval = time.Second

	// MaxSteps is the most steps a Spec may have.
	MaxSteps = 100

	// maxActorLen bounds Spec.Actor and the actor of manual transitions.
	maxActorLen = 256
)

// ErrInvalidSpec is wrapped by every error of Spec.Validate and ParseSteps.
var ErrInvalidSpec = errors.New("rollout: invalid spec")

// Spec is what a rollout was asked to do: move Model's traffic from From to
// To in Steps, waiting at least Interval and MinRequests requests at each
// step, and roll back when To's figures at a step cross MaxErrorRate or
// MaxP99.
//
// In JSON, Interval and MaxP99 are Go duration strings ("30s", "250ms");
// numbers are read as nanoseconds too.
type Spec struct {
	// Model is the model whose traffic moves.
	Model string
	// From is the version serving now; "" when there is none, which makes
	// the rollout a first deploy: rolling it back serves nothing.
	From string
	// To is the version rolled out.
	To string
	// Steps are To's traffic share in percent at each step: strictly
	// increasing, each in (0, 100], the last 100.
	Steps []float64
	// Interval is the least time spent at a step before advancing, at least
	// MinInterval.
	Interval time.Duration
	// MaxErrorRate is the largest tolerated share of failed requests, in
	// [0, 1]: the rollout rolls back when Errors/Requests > MaxErrorRate. 0
	// rolls back on any error; 1 disables the check.
	MaxErrorRate float64
	// MaxP99 is the largest tolerated 99th-percentile latency of To; 0
	// disables the check. Latencies are known to histogram bucket
	// precision (see Figures.Quantile), so a bound equal to one of
	// bus.LatencyBounds is exact, and any other is judged against the
	// upper bound of the bucket the 99th percentile falls in.
	MaxP99 time.Duration
	// MinRequests is how many requests To must have served at a step before
	// its figures are judged and before the step may advance. 0 means
	// DefaultMinRequests (New fills it in).
	MinRequests uint64
	// Actor is who started the rollout.
	Actor string
}

// Validate checks s and returns an error wrapping ErrInvalidSpec that names
// the first thing wrong.
func (s Spec) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, a...))
	}
	switch {
	case !models.ValidName(s.Model):
		return bad("model name %q is not valid", s.Model)
	case !models.ValidVersion(s.To):
		return bad("version to roll out %q is not valid", s.To)
	case s.From != "" && !models.ValidVersion(s.From):
		return bad("current version %q is not valid", s.From)
	case s.From == s.To:
		return bad("from and to are both %q", s.To)
	case s.Interval < MinInterval:
		return bad("interval %v is shorter than %v", s.Interval, MinInterval)
	case math.IsNaN(s.MaxErrorRate) || s.MaxErrorRate < 0 || s.MaxErrorRate > 1:
		return bad("max error rate %g is not in [0, 1]", s.MaxErrorRate)
	case s.MaxP99 < 0:
		return bad("max p99 latency %v is negative", s.MaxP99)
	case len(s.Actor) > maxActorLen:
		return bad("actor is %d bytes long, more than %d", len(s.Actor), maxActorLen)
	}
	if err := validateSteps(s.Steps); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	return nil
}

// validateSteps checks the rules of Spec.Steps.
func validateSteps(steps []float64) error {
	switch {
	case len(steps) == 0:
		return errors.New("no steps")
	case len(steps) > MaxSteps:
		return fmt.Errorf("%d steps, more than %d", len(steps), MaxSteps)
	}
	for i, w := range steps {
		switch {
		case math.IsNaN(w) || w <= 0 || w > 100:
			return fmt.Errorf("step %d is %s, not in (0, 100]", i+1, pct(w))
		case i > 0 && w <= steps[i-1]:
			return fmt.Errorf("steps must increase: %s after %s", pct(w), pct(steps[i-1]))
		}
	}
	if last := steps[len(steps)-1]; last != 100 {
		return fmt.Errorf("last step must be 100, not %s", pct(last))
	}
	return nil
}

// ParseSteps parses a comma-separated list of percentages such as
// "1,5,10,50,100" (spaces and a trailing "%" on each are allowed) and checks
// it with the rules of Spec.Steps. Errors wrap ErrInvalidSpec.
func ParseSteps(s string) ([]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: no steps", ErrInvalidSpec)
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxSteps {
		return nil, fmt.Errorf("%w: %d steps, more than %d", ErrInvalidSpec, len(parts), MaxSteps)
	}
	steps := make([]float64, len(parts))
	for i, p := range parts {
		t := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(p), "%"))
		w, err := strconv.ParseFloat(t, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: step %d %q is not a number", ErrInvalidSpec, i+1, strings.TrimSpace(p))
		}
		steps[i] = w
	}
	if err := validateSteps(steps); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	return steps, nil
}

// withDefaults returns s with MinRequests filled in.
func (s Spec) withDefaults() Spec {
	if s.MinRequests == 0 {
		s.MinRequests = DefaultMinRequests
	}
	s.Steps = append([]float64(nil), s.Steps...)
	return s
}

// specJSON is the JSON form of Spec.
type specJSON struct {
	Model        string    `json:"model"`
	From         string    `json:"from,omitempty"`
	To           string    `json:"to"`
	Steps        []float64 `json:"steps"`
	Interval     duration  `json:"interval"`
	MaxErrorRate float64   `json:"max_error_rate"`
	MaxP99       duration  `json:"max_p99,omitempty"`
	MinRequests  uint64    `json:"min_requests,omitempty"`
	Actor        string    `json:"actor,omitempty"`
}

// MarshalJSON encodes s with durations as strings.
func (s Spec) MarshalJSON() ([]byte, error) {
	return json.Marshal(specJSON{
		Model: s.Model, From: s.From, To: s.To, Steps: s.Steps,
		Interval: duration(s.Interval), MaxErrorRate: s.MaxErrorRate,
		MaxP99: duration(s.MaxP99), MinRequests: s.MinRequests, Actor: s.Actor,
	})
}

// UnmarshalJSON decodes what MarshalJSON writes. It does not validate; call
// Validate (Decode does).
func (s *Spec) UnmarshalJSON(b []byte) error {
	var j specJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Spec{
		Model: j.Model, From: j.From, To: j.To, Steps: j.Steps,
		Interval: time.Duration(j.Interval), MaxErrorRate: j.MaxErrorRate,
		MaxP99: time.Duration(j.MaxP99), MinRequests: j.MinRequests, Actor: j.Actor,
	}
	return nil
}

// duration is a time.Duration that is a string such as "1m30s" in JSON and
// also accepts a number of nanoseconds.
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("rollout: duration %q: %w", s, err)
		}
		*d = duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("rollout: duration %s is neither a string nor a whole number of nanoseconds", b)
	}
	*d = duration(n)
	return nil
}

// pct formats a percentage without trailing zeros: "5%", "0.5%".
func pct(w float64) string {
	return strconv.FormatFloat(w, 'f', -1, 64) + "%"
}
