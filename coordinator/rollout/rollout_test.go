package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func newRollout(t *testing.T, modify func(*Spec)) *Rollout {
	t.Helper()
	s := validSpec()
	if modify != nil {
		modify(&s)
	}
	r, err := New("r1", s, t0)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ok returns figures of n requests with errs errors, all in the 10 ms
// latency bucket.
func ok(n, errs uint64) Figures {
	return Figures{Requests: n, Errors: errs, Latency: hist(0.01, float64(n))}
}

func TestNew(t *testing.T) {
	r := newRollout(t, func(s *Spec) { s.MinRequests = 0 })
	if r.State != StateRunning || r.Step != 0 || !r.StepStarted.Equal(t0) || !r.Started.Equal(t0) || !r.Updated.Equal(t0) {
		t.Fatalf("New: %+v", r)
	}
	if r.Spec.MinRequests != DefaultMinRequests {
		t.Fatalf("MinRequests = %d, want default %d", r.Spec.MinRequests, DefaultMinRequests)
	}
	if len(r.History) != 1 || r.History[0].What != EventStart || r.History[0].Actor != "alice" || r.History[0].Weight != 1 {
		t.Fatalf("History = %+v, want one start event by alice at 1%%", r.History)
	}
	if from, to := r.Weights(); from != 99 || to != 1 {
		t.Fatalf("Weights() = %g, %g; want 99, 1", from, to)
	}

	// The rollout owns its steps.
	steps := []float64{10, 100}
	r2, err := New("r2", Spec{Model: "m", To: "v1", Steps: steps, Interval: time.Second}, t0)
	if err != nil {
		t.Fatal(err)
	}
	steps[0] = 50
	if r2.Spec.Steps[0] != 10 {
		t.Fatal("New aliased the caller's Steps")
	}

	for _, tc := range []struct {
		id   string
		spec Spec
		want string
	}{
		{"", validSpec(), "ID"},
		{"a b", validSpec(), "ID"},
		{strings.Repeat("x", 129), validSpec(), "ID"},
		{"r", Spec{Model: "m", To: "v"}, "interval"},
	} {
		if _, err := New(tc.id, tc.spec, t0); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) error = %v, want one mentioning %q", tc.id, err, tc.want)
		}
	}
}

func TestTransitions(t *testing.T) {
	type action struct {
		name string
		do   func(r *Rollout, now time.Time) error
	}
	actions := []action{
		{"pause", func(r *Rollout, now time.Time) error { return r.Pause(now, "bob") }},
		{"resume", func(r *Rollout, now time.Time) error { return r.Resume(now, "bob") }},
		{"promote", func(r *Rollout, now time.Time) error { return r.Promote(now, "bob") }},
		{"rollback", func(r *Rollout, now time.Time) error { return r.Rollback(now, "bob", "looks wrong") }},
		{"abort", func(r *Rollout, now time.Time) error { return r.Abort(now, "bob", "superseded") }},
	}
	// Resulting state per (state, action); missing means ErrBadTransition.
	allowed := map[State]map[string]State{
		StateRunning: {"pause": StatePaused, "promote": StatePromoted, "rollback": StateRolledBack, "abort": StateAborted},
		StatePaused:  {"resume": StateRunning, "promote": StatePromoted, "rollback": StateRolledBack, "abort": StateAborted},
	}
	setup := map[State]func(r *Rollout){
		StateRunning:    func(*Rollout) {},
		StatePaused:     func(r *Rollout) { _ = r.Pause(t0, "x") },
		StatePromoted:   func(r *Rollout) { _ = r.Promote(t0, "x") },
		StateRolledBack: func(r *Rollout) { _ = r.Rollback(t0, "x", "") },
		StateAborted:    func(r *Rollout) { _ = r.Abort(t0, "x", "") },
	}
	wantWeight := map[State]float64{StateRunning: 1, StatePaused: 1, StatePromoted: 100, StateRolledBack: 0, StateAborted: 0}
	for from, prepare := range setup {
		for _, a := range actions {
			t.Run(fmt.Sprintf("%s/%s", from, a.name), func(t *testing.T) {
				r := newRollout(t, nil)
				prepare(r)
				if r.State != from {
					t.Fatalf("setup reached %s, want %s", r.State, from)
				}
				events := len(r.History)
				now := t0.Add(time.Minute)
				err := a.do(r, now)
				want, ok := allowed[from][a.name]
				if !ok {
					if !errors.Is(err, ErrBadTransition) {
						t.Fatalf("err = %v, want ErrBadTransition", err)
					}
					if !strings.Contains(err.Error(), "it is "+string(from)) {
						t.Fatalf("error %q does not name the state", err)
					}
					if r.State != from || len(r.History) != events {
						t.Fatal("a refused transition changed the rollout")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if r.State != want {
					t.Fatalf("state = %s, want %s", r.State, want)
				}
				last := r.History[len(r.History)-1]
				if len(r.History) != events+1 || last.Actor != "bob" || !last.Time.Equal(now) || !r.Updated.Equal(now) {
					t.Fatalf("history/updated not recorded: %+v", r.History)
				}
				if !strings.Contains(r.Reason, "bob") {
					t.Fatalf("reason %q does not name the actor", r.Reason)
				}
				if _, to := r.Weights(); to != wantWeight[want] || last.Weight != to {
					t.Fatalf("Weights() to = %g, event weight %g, want %g", to, last.Weight, wantWeight[want])
				}
				if r.Terminal() != want.Terminal() {
					t.Fatalf("Terminal() = %v in state %s", r.Terminal(), want)
				}
			})
		}
	}
}

func TestManualReasons(t *testing.T) {
	r := newRollout(t, nil)
	if err := r.Rollback(t0, "carol", "latency spike on dashboard"); err != nil {
		t.Fatal(err)
	}
	if want := "rolled back by carol at step 1 (1%): latency spike on dashboard"; r.Reason != want {
		t.Fatalf("Reason = %q, want %q", r.Reason, want)
	}
	r = newRollout(t, nil)
	if err := r.Pause(t0, strings.Repeat("a", 300)); err == nil {
		t.Fatal("Pause accepted an over-long actor")
	}
	if r.State != StateRunning {
		t.Fatal("a refused Pause changed the state")
	}
}

func TestTickThresholds(t *testing.T) {
	tests := []struct {
		name   string
		spec   func(*Spec)
		paused bool
		to     Figures
		from   Figures
		want   Action
		reason string
	}{
		{"healthy", nil, false, ok(100, 1), ok(1000, 1), ActionNone, "step 1 (1%)"},
		{"error rate over", nil, false, ok(100, 12), ok(1000, 3), ActionRollback,
			"error rate 12.0% > 5.0% at step 1 (1%): 12/100 requests (v1: 0.3%, 3/1000)"},
		{"error rate equal is fine", nil, false, ok(100, 5), Figures{}, ActionNone, ""},
		{"below min requests not judged", nil, false, ok(19, 19), Figures{}, ActionNone, "19/20 requests"},
		{"at min requests judged", nil, false, ok(20, 2), Figures{}, ActionRollback, "error rate 10.0% > 5.0%"},
		{"zero max rolls back on one error", func(s *Spec) { s.MaxErrorRate = 0 }, false, ok(1000, 1), Figures{}, ActionRollback, "error rate 0.1% > 0.0%"},
		{"max 1 never rolls back", func(s *Spec) { s.MaxErrorRate = 1 }, false, ok(100, 100), Figures{}, ActionNone, ""},
		{"p99 over", nil, false, Figures{Requests: 100, Latency: hist(0.01, 98, 0.5, 2)}, Figures{Requests: 100, Latency: hist(0.01, 100)}, ActionRollback,
			"p99 latency 500ms > 200ms at step 1 (1%) over 100 requests (v1: p99 10ms)"},
		{"p99 in overflow", nil, false, Figures{Requests: 100, Latency: hist(0.01, 98, 0, 2)}, Figures{}, ActionRollback, "p99 latency over 5s > 200ms"},
		{"p99 at the bound is fine", nil, false, Figures{Requests: 100, Latency: hist(0.2, 100)}, Figures{}, ActionNone, ""},
		{"p99 check disabled", func(s *Spec) { s.MaxP99 = 0 }, false, Figures{Requests: 100, Latency: hist(0, 100)}, Figures{}, ActionNone, ""},
		{"paused still rolls back", nil, true, ok(100, 50), Figures{}, ActionRollback, "error rate 50.0%"},
		{"paused healthy", nil, true, ok(100, 0), Figures{}, ActionNone, "paused at step 1 (1%)"},
		{"first deploy has no from context", func(s *Spec) { s.From = "" }, false, ok(100, 12), Figures{}, ActionRollback,
			"error rate 12.0% > 5.0% at step 1 (1%): 12/100 requests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRollout(t, tt.spec)
			if tt.paused {
				if err := r.Pause(t0, "x"); err != nil {
					t.Fatal(err)
				}
			}
			r.Observe(tt.to, tt.from)
			now := t0.Add(10 * time.Second) // before the interval ends
			d := r.Tick(now)
			if d.Action != tt.want || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("Tick = %+v, want %s with reason containing %q", d, tt.want, tt.reason)
			}
			if tt.want == ActionRollback {
				if r.State != StateRolledBack || r.Reason != d.Reason || !r.Updated.Equal(now) {
					t.Fatalf("after rollback: state %s reason %q", r.State, r.Reason)
				}
				if strings.Contains(d.Reason, "(v1") && r.Spec.From == "" {
					t.Fatal("first deploy quoted a From version")
				}
				if from, to := r.Weights(); from != 100 || to != 0 {
					t.Fatalf("Weights() = %g, %g after rollback", from, to)
				}
				last := r.History[len(r.History)-1]
				if last.What != EventRollback || last.Actor != "" || last.Weight != 0 {
					t.Fatalf("last event %+v", last)
				}
				return
			}
			if r.Terminal() {
				t.Fatalf("state %s, want not terminal", r.State)
			}
		})
	}
}

func TestTickAdvanceAndPromote(t *testing.T) {
	r := newRollout(t, func(s *Spec) { s.Steps = []float64{10, 100} })
	r.Observe(ok(50, 0), ok(450, 0))
	if d := r.Tick(t0.Add(59 * time.Second)); d.Action != ActionNone {
		t.Fatalf("before the interval: %+v", d)
	}
	now := t0.Add(time.Minute)
	d := r.Tick(now)
	if d.Action != ActionAdvance {
		t.Fatalf("at the interval: %+v, want advance", d)
	}
	wantReason := "advanced to step 2 (100%) after 1m0s at step 1 (10%): 50 requests, error rate 0.0% (max 5.0%), p99 10ms (max 200ms)"
	if d.Reason != wantReason || r.Reason != wantReason {
		t.Fatalf("reason %q, want %q", d.Reason, wantReason)
	}
	if r.Step != 1 || !r.StepStarted.Equal(now) || !reflect.DeepEqual(r.Window, Window{}) {
		t.Fatalf("after advance: step %d started %v window %+v", r.Step, r.StepStarted, r.Window)
	}
	if from, to := r.Weights(); from != 0 || to != 100 {
		t.Fatalf("Weights() = %g, %g", from, to)
	}
	// At 100 % the rollout still waits out the interval before promoting,
	// and can still roll back.
	r.Observe(ok(500, 0), Figures{})
	if d := r.Tick(now.Add(30 * time.Second)); d.Action != ActionNone {
		t.Fatalf("mid last step: %+v", d)
	}
	d = r.Tick(now.Add(time.Minute))
	if d.Action != ActionPromote || r.State != StatePromoted || !strings.HasPrefix(d.Reason, "promoted after 1m0s at step 2 (100%)") {
		t.Fatalf("end of last step: %+v, state %s", d, r.State)
	}
	// Terminal: nothing more happens.
	r.Observe(ok(100, 100), Figures{})
	if d := r.Tick(now.Add(time.Hour)); d.Action != ActionNone || r.State != StatePromoted {
		t.Fatalf("after promotion: %+v, %s", d, r.State)
	}
	if r.Window.To.Requests != 500 {
		t.Fatal("Observe counted figures on a terminal rollout")
	}
	var whats []string
	for _, e := range r.History {
		whats = append(whats, e.What)
	}
	if got := strings.Join(whats, ","); got != "start,advance,promote" {
		t.Fatalf("history %s", got)
	}
}

func TestTickStall(t *testing.T) {
	r := newRollout(t, nil)
	r.Observe(ok(3, 0), Figures{})
	// Long after the interval, with too little traffic, it waits for good.
	var d Decision
	for i := 1; i <= 100; i++ {
		d = r.Tick(t0.Add(time.Duration(i) * time.Hour))
		if d.Action != ActionNone {
			t.Fatalf("tick %d: %+v, want none", i, d)
		}
	}
	if !strings.Contains(d.Reason, "waiting for traffic: 3/20 requests at step 1 (1%) after 100h0m0s") {
		t.Fatalf("Decision reason %q", d.Reason)
	}
	if r.Reason != "waiting for traffic: 3/20 requests at step 1 (1%)" || r.State != StateRunning || r.Step != 0 {
		t.Fatalf("state %s step %d reason %q", r.State, r.Step, r.Reason)
	}
	// Updated moved once, when the wait began, not on every tick.
	if !r.Updated.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Updated = %v, want the first waiting tick", r.Updated)
	}
	if len(r.History) != 1 {
		t.Fatalf("waiting added history: %+v", r.History)
	}
	// Traffic arrives: the step is judged and advances at once.
	r.Observe(ok(17, 0), Figures{})
	if d := r.Tick(t0.Add(101 * time.Hour)); d.Action != ActionAdvance || r.Step != 1 {
		t.Fatalf("after traffic: %+v step %d", d, r.Step)
	}
}

func TestPauseBlocksAdvanceResumeKeepsWindow(t *testing.T) {
	r := newRollout(t, nil)
	r.Observe(ok(100, 0), Figures{})
	if err := r.Pause(t0.Add(time.Second), "ops"); err != nil {
		t.Fatal(err)
	}
	if d := r.Tick(t0.Add(time.Hour)); d.Action != ActionNone || r.Step != 0 {
		t.Fatalf("paused tick: %+v", d)
	}
	if err := r.Resume(t0.Add(2*time.Hour), "ops"); err != nil {
		t.Fatal(err)
	}
	if r.Window.To.Requests != 100 || !r.StepStarted.Equal(t0) {
		t.Fatal("Resume reset the window")
	}
	if d := r.Tick(t0.Add(2 * time.Hour)); d.Action != ActionAdvance {
		t.Fatalf("after resume: %+v, want advance", d)
	}
}

func TestManualPromoteSetsLastStep(t *testing.T) {
	r := newRollout(t, nil)
	if err := r.Promote(t0, "ops"); err != nil {
		t.Fatal(err)
	}
	if r.Step != len(r.Spec.Steps)-1 {
		t.Fatalf("Step = %d", r.Step)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestFirstDeployRollbackServesNothing(t *testing.T) {
	r := newRollout(t, func(s *Spec) { s.From = "" })
	if !strings.Contains(r.History[0].Reason, "over nothing (first deploy)") {
		t.Fatalf("start reason %q", r.History[0].Reason)
	}
	r.Observe(ok(100, 50), Figures{})
	if d := r.Tick(t0.Add(time.Second)); d.Action != ActionRollback {
		t.Fatalf("%+v", d)
	}
	if from, to := r.Weights(); from != 100 || to != 0 || r.Spec.From != "" {
		t.Fatalf("Weights() = %g, %g", from, to)
	}
}

func TestHistoryBounded(t *testing.T) {
	r := newRollout(t, nil)
	for i := range 200 {
		now := t0.Add(time.Duration(i) * time.Second)
		if err := r.Pause(now, "a"); err != nil {
			t.Fatal(err)
		}
		if err := r.Resume(now, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.History) != MaxHistory {
		t.Fatalf("len(History) = %d, want %d", len(r.History), MaxHistory)
	}
	if last := r.History[MaxHistory-1]; last.What != EventResume || !last.Time.Equal(t0.Add(199*time.Second)) {
		t.Fatalf("last event %+v", last)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestJSONRoundTripResumes(t *testing.T) {
	a := newRollout(t, nil)
	a.Observe(ok(100, 0), ok(900, 0))
	a.Tick(t0.Add(time.Minute))
	a.Observe(ok(30, 1), ok(570, 2))
	if err := a.Pause(t0.Add(70*time.Second), "ops"); err != nil {
		t.Fatal(err)
	}

	data, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"state":"paused"`, `"interval":"1m0s"`, `"max_p99":"200ms"`, `"step":1`, `"step_started":"2025-06-01T12:01:00Z"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("JSON lacks %s: %s", want, data)
		}
	}
	b, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", b, a)
	}
	// Both carry on identically.
	for _, r := range []*Rollout{a, b} {
		if err := r.Resume(t0.Add(2*time.Minute), "ops"); err != nil {
			t.Fatal(err)
		}
		r.Observe(ok(10, 0), Figures{})
	}
	da, db := a.Tick(t0.Add(3*time.Minute)), b.Tick(t0.Add(3*time.Minute))
	if da != db || da.Action != ActionAdvance || !reflect.DeepEqual(a, b) {
		t.Fatalf("after resume: %+v vs %+v", da, db)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := newRollout(t, nil).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"not JSON", []byte("{"), "decode"},
		{"no ID", edit(func(m map[string]any) { delete(m, "id") }), "ID"},
		{"unknown state", edit(func(m map[string]any) { m["state"] = "flying" }), `unknown state "flying"`},
		{"step out of range", edit(func(m map[string]any) { m["step"] = 5 }), "step index 5 out of range [0, 5)"},
		{"negative step", edit(func(m map[string]any) { m["step"] = -1 }), "step index -1"},
		{"bad spec", edit(func(m map[string]any) { m["spec"].(map[string]any)["steps"] = []float64{5, 1, 100} }), "steps must increase"},
		{"bad interval", edit(func(m map[string]any) { m["spec"].(map[string]any)["interval"] = "x" }), `duration "x"`},
		{"no start", edit(func(m map[string]any) { delete(m, "started") }), "start time missing"},
		{"too many buckets", edit(func(m map[string]any) {
			m["window"] = map[string]any{"to": map[string]any{"latency": make([]int, 30)}}
		}), "latency buckets"},
		{"too much history", edit(func(m map[string]any) {
			h := make([]any, MaxHistory+1)
			for i := range h {
				h[i] = map[string]any{"what": "pause"}
			}
			m["history"] = h
		}), "history events"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Decode(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode = %+v, %v; want error containing %q", r, err, tt.want)
			}
		})
	}
	if _, err := Decode(good); err != nil {
		t.Fatalf("the unedited JSON: %v", err)
	}
}

// TestSimulation feeds a whole rollout tick by tick: a fixed request rate
// split by the rollout's own weights, with To's error rate and latency set
// by a scenario, and checks where it ends and which steps it went through.
func TestSimulation(t *testing.T) {
	const rps = 20 // requests per second to the model
	tick := 10 * time.Second
	tests := []struct {
		name string
		spec func(*Spec)
		// errPerMille and slow give To's errors per 1000 requests and
		// whether its requests take 1 s, as a function of To's weight.
		errPerMille func(w float64) uint64
		slow        func(w float64) bool
		wantState   State
		wantWhats   string
		wantTicks   int
	}{
		{
			name:        "healthy version is promoted",
			errPerMille: func(float64) uint64 { return 1 },
			slow:        func(float64) bool { return false },
			wantState:   StatePromoted,
			// 1 % of 20 rps is 0.2 rps: step 1 needs 100 s to see 20 requests.
			wantWhats: "start,advance,advance,advance,advance,promote",
			wantTicks: 10 + 6 + 6 + 6 + 6,
		},
		{
			name:        "errors at scale roll back at 50%",
			errPerMille: func(w float64) uint64 { return map[bool]uint64{true: 100, false: 0}[w >= 50] },
			slow:        func(float64) bool { return false },
			wantState:   StateRolledBack,
			wantWhats:   "start,advance,advance,advance,rollback",
			wantTicks:   10 + 6 + 6 + 1,
		},
		{
			name:        "latency regression rolls back at 10%",
			errPerMille: func(float64) uint64 { return 0 },
			slow:        func(w float64) bool { return w >= 10 },
			wantState:   StateRolledBack,
			wantWhats:   "start,advance,advance,rollback",
			wantTicks:   10 + 6 + 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRollout(t, tt.spec)
			now := t0
			ticks := 0
			// Fractional requests carry over between ticks.
			var carryTo, carryFrom float64
			for !r.Terminal() && ticks < 1000 {
				now = now.Add(tick)
				ticks++
				from, to := r.Weights()
				carryTo += rps * tick.Seconds() * to / 100
				carryFrom += rps * tick.Seconds() * from / 100
				nTo, nFrom := uint64(carryTo), uint64(carryFrom)
				carryTo -= float64(nTo)
				carryFrom -= float64(nFrom)
				bound := 0.01
				if tt.slow(to) {
					bound = 1
				}
				errs := nTo * tt.errPerMille(to) / 1000
				r.Observe(
					Figures{Requests: nTo, Errors: errs, Latency: hist(bound, float64(nTo))},
					Figures{Requests: nFrom, Latency: hist(0.01, float64(nFrom))},
				)
				r.Tick(now)
			}
			var whats []string
			for _, e := range r.History {
				whats = append(whats, e.What)
			}
			if r.State != tt.wantState || strings.Join(whats, ",") != tt.wantWhats || ticks != tt.wantTicks {
				t.Fatalf("ended %s after %d ticks with %s (%s); want %s after %d with %s",
					r.State, ticks, strings.Join(whats, ","), r.Reason, tt.wantState, tt.wantTicks, tt.wantWhats)
			}
			// Weights recorded in history follow the steps.
			for i, e := range r.History {
				if e.What == EventAdvance && e.Weight != r.Spec.Steps[e.Step] {
					t.Fatalf("event %d: weight %g at step %d", i, e.Weight, e.Step)
				}
			}
		})
	}
}
