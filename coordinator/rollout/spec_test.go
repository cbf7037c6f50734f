package rollout

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func validSpec() Spec {
	return Spec{
		Model:        "resnet",
		From:         "v1",
		To:           "v2",
		Steps:        []float64{1, 5, 10, 50, 100},
		Interval:     time.Minute,
		MaxErrorRate: 0.05,
		MaxP99:       200 * time.Millisecond,
		MinRequests:  20,
		Actor:        "alice",
	}
}

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Spec)
		want   string // "" means valid
	}{
		{"valid", func(*Spec) {}, ""},
		{"first deploy", func(s *Spec) { s.From = "" }, ""},
		{"single step", func(s *Spec) { s.Steps = []float64{100} }, ""},
		{"fractional steps", func(s *Spec) { s.Steps = []float64{0.5, 2.5, 100} }, ""},
		{"no latency threshold", func(s *Spec) { s.MaxP99 = 0 }, ""},
		{"min requests default", func(s *Spec) { s.MinRequests = 0 }, ""},
		{"error rate 0", func(s *Spec) { s.MaxErrorRate = 0 }, ""},
		{"error rate 1", func(s *Spec) { s.MaxErrorRate = 1 }, ""},
		{"empty model", func(s *Spec) { s.Model = "" }, `model name "" is not valid`},
		{"bad model", func(s *Spec) { s.Model = "a b" }, `model name "a b" is not valid`},
		{"empty to", func(s *Spec) { s.To = "" }, `version to roll out "" is not valid`},
		{"bad from", func(s *Spec) { s.From = "../x" }, `current version "../x" is not valid`},
		{"same versions", func(s *Spec) { s.From = "v2" }, `from and to are both "v2"`},
		{"short interval", func(s *Spec) { s.Interval = 500 * time.Millisecond }, "interval 500ms is shorter than 1s"},
		{"negative error rate", func(s *Spec) { s.MaxErrorRate = -0.1 }, "max error rate -0.1 is not in [0, 1]"},
		{"error rate above 1", func(s *Spec) { s.MaxErrorRate = 5 }, "max error rate 5 is not in [0, 1]"},
		{"NaN error rate", func(s *Spec) { s.MaxErrorRate = math.NaN() }, "max error rate NaN"},
		{"negative p99", func(s *Spec) { s.MaxP99 = -time.Second }, "max p99 latency -1s is negative"},
		{"long actor", func(s *Spec) { s.Actor = strings.Repeat("a", 300) }, "actor is 300 bytes long"},
		{"no steps", func(s *Spec) { s.Steps = nil }, "no steps"},
		{"too many steps", func(s *Spec) { s.Steps = make([]float64, MaxSteps+1) }, "more than 100"},
		{"zero step", func(s *Spec) { s.Steps = []float64{0, 100} }, "step 1 is 0%, not in (0, 100]"},
		{"step above 100", func(s *Spec) { s.Steps = []float64{50, 150} }, "step 2 is 150%, not in (0, 100]"},
		{"NaN step", func(s *Spec) { s.Steps = []float64{math.NaN(), 100} }, "step 1 is NaN%"},
		{"decreasing", func(s *Spec) { s.Steps = []float64{10, 5, 100} }, "steps must increase: 5% after 10%"},
		{"repeated", func(s *Spec) { s.Steps = []float64{10, 10, 100} }, "steps must increase: 10% after 10%"},
		{"last not 100", func(s *Spec) { s.Steps = []float64{1, 5, 50} }, "last step must be 100, not 50%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.modify(&s)
			err := s.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.want)
			}
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %q, want ErrInvalidSpec containing %q", err, tt.want)
			}
		})
	}
}

func TestParseSteps(t *testing.T) {
	tests := []struct {
		in   string
		want []float64
		err  string
	}{
		{"1,5,10,50,100", []float64{1, 5, 10, 50, 100}, ""},
		{" 1 , 5% ,100 % ", []float64{1, 5, 100}, ""},
		{"100", []float64{100}, ""},
		{"0.5,100", []float64{0.5, 100}, ""},
		{"", nil, "no steps"},
		{"  ", nil, "no steps"},
		{"1,,100", nil, `step 2 "" is not a number`},
		{"1,x,100", nil, `step 2 "x" is not a number`},
		{"1,5,10", nil, "last step must be 100"},
		{"10,5,100", nil, "steps must increase: 5% after 10%"},
		{"-1,100", nil, "not in (0, 100]"},
		{"NaN,100", nil, "not in (0, 100]"},
		{strings.Repeat("1,", 200) + "100", nil, "more than 100"},
	}
	for _, tt := range tests {
		got, err := ParseSteps(tt.in)
		if tt.err != "" {
			if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSteps(%q) error = %v, want ErrInvalidSpec containing %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseSteps(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestSpecJSON(t *testing.T) {
	s := validSpec()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"interval":"1m0s"`, `"max_p99":"200ms"`, `"steps":[1,5,10,50,100]`, `"from":"v1"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Fatalf("round trip: got %+v, want %+v", back, s)
	}

	// Durations as nanoseconds are accepted too; absent ones are zero.
	var n Spec
	if err := json.Unmarshal([]byte(`{"model":"m","to":"v2","steps":[100],"interval":30000000000}`), &n); err != nil {
		t.Fatal(err)
	}
	if n.Interval != 30*time.Second || n.MaxP99 != 0 {
		t.Fatalf("got interval %v, p99 %v", n.Interval, n.MaxP99)
	}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}

	for _, bad := range []string{`{"interval":"soon"}`, `{"interval":1.5}`, `{"interval":true}`, `{"steps":"1,100"}`} {
		if err := json.Unmarshal([]byte(bad), &n); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
}
