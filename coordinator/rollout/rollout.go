// Package rollout is the canary state machine of the coordinator: it
// decides, from figures and time given to it, when a rollout advances to its
// next traffic step, is promoted, or is rolled back. It opens no sockets,
// reads no clock and starts no goroutines.
//
// # States
//
//	         Pause            Promote (manual), or Tick after the last step
//	running ──────► paused   running/paused ─────────────────────► promoted
//	        ◄──────
//	         Resume           running/paused ── Tick (threshold), Rollback ──► rolled_back
//	                          running/paused ── Abort ──────────────────────► aborted
//
// promoted, rolled_back and aborted are terminal. A transition that the
// state does not allow is an error wrapping ErrBadTransition.
//
// # Usage
//
// The coordinator's rollout controller runs this loop for each rollout:
//
//  1. New (or Decode of the stored JSON after a restart).
//  2. Publish Weights to the model's desired state (To last in the split,
//     so that routing.Split keeps canary keys sticky).
//  3. Every tick: Observe the figures To and From served since the last
//     tick (Tracker turns node reports into such deltas), then Tick with
//     the current time. On a Decision other than ActionNone, publish the
//     new Weights and write an audit event (the last History entry).
//  4. Store the Rollout as JSON after every change; stop when Terminal.
//
// # Rules
//
// Thresholds are absolute and judged on To's figures at the current step
// only, at every Tick once To has served at least MinRequests requests
// there: the rollout rolls back when the error rate exceeds MaxErrorRate or
// the 99th percentile latency exceeds MaxP99 (when set). From's figures
// over the same window are quoted in the Reason for context but are not
// compared against.
//
// A running rollout advances when it has been at its step for at least
// Interval and To has served MinRequests requests there without crossing a
// threshold. If the interval has passed but the requests have not come, it
// waits, for as long as it takes, and says so in Reason ("waiting for
// traffic"): a step is never passed unjudged. After the interval at the last
// step (100 %), the rollout is promoted: From keeps serving as the rollback
// target until then.
//
// A paused rollout does not advance, but it still rolls back when a
// threshold is crossed: safety first. Resume keeps the step's window and
// start time, so a rollout that was paused long enough may advance at the
// next Tick.
package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/coordinator/bus"
)

// State is the state of a Rollout.
type State string

// States of a Rollout.
const (
	StateRunning    State = "running"
	StatePaused     State = "paused"
	StatePromoted   State = "promoted"
	StateRolledBack State = "rolled_back"
	StateAborted    State = "aborted"
)

// Valid reports whether s is one of the states above.
func (s State) Valid() bool {
	switch s {
	case StateRunning, StatePaused, StatePromoted, StateRolledBack, StateAborted:
		return true
	}
	return false
}

// Terminal reports whether s is final: promoted, rolled back or aborted.
func (s State) Terminal() bool {
	return s == StatePromoted || s == StateRolledBack || s == StateAborted
}

// Action is what a Tick did.
type Action string

// Actions of a Decision.
const (
	// ActionNone: nothing changed (the Reason says what the rollout waits
	// for).
	ActionNone Action = "none"
	// ActionAdvance: the rollout moved to its next step.
	ActionAdvance Action = "advance"
	// ActionPromote: the rollout finished; To takes all traffic.
	ActionPromote Action = "promote"
	// ActionRollback: a threshold was crossed; traffic goes back to From.
	ActionRollback Action = "rollback"
)

// Decision is the result of a Tick.
type Decision struct {
	Action Action `json:"action"`
	Reason string `json:"reason"`
}

// What an Event records.
const (
	EventStart    = "start"
	EventAdvance  = "advance"
	EventPromote  = "promote"
	EventRollback = "rollback"
	EventPause    = "pause"
	EventResume   = "resume"
	EventAbort    = "abort"
)

// MaxHistory is how many Events a Rollout keeps; older ones are dropped.
const MaxHistory = 100

// Event is one entry of a Rollout's history.
type Event struct {
	Time time.Time `json:"time"`
	// Step is the step index after the event.
	Step int `json:"step"`
	// Weight is To's traffic share in percent after the event.
	Weight float64 `json:"weight"`
	// What is one of the Event* constants.
	What string `json:"what"`
	// Actor is who caused the event; empty for automatic ones.
	Actor  string `json:"actor,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Window holds the figures of the current step: what To and From served
// since StepStarted.
type Window struct {
	To   Figures `json:"to"`
	From Figures `json:"from"`
}

// ErrBadTransition is wrapped by the errors of transitions the current state
// does not allow, such as resuming a running rollout.
var ErrBadTransition = errors.New("rollout: transition not allowed")

// Rollout is one canary rollout and its progress. Every field is exported
// and encoded in JSON, so a coordinator that stores it (Marshal) and reads
// it back (Decode) after a crash carries on where it left off. A Rollout is
// not safe for concurrent use.
type Rollout struct {
	// ID names the rollout.
	ID string `json:"id"`
	// Spec is what was asked for, with defaults filled in.
	Spec Spec `json:"spec"`
	// State is where the rollout stands.
	State State `json:"state"`
	// Step is the index into Spec.Steps of the current step (0-based;
	// Reasons count steps from 1).
	Step int `json:"step"`
	// StepStarted is when the current step began.
	StepStarted time.Time `json:"step_started"`
	// Started is when the rollout began; Updated when it last changed.
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Reason says why the rollout is in its state, or what it waits for.
	Reason string `json:"reason,omitempty"`
	// Window holds the figures of the current step.
	Window Window `json:"window"`
	// History holds the last MaxHistory events, oldest first.
	History []Event `json:"history,omitempty"`
}

// New starts a rollout of spec at its first step at time now. The spec is
// validated and MinRequests defaulted.
func New(id string, spec Spec, now time.Time) (*Rollout, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	r := &Rollout{
		ID:          id,
		Spec:        spec.withDefaults(),
		State:       StateRunning,
		StepStarted: now,
		Started:     now,
	}
	from := "nothing (first deploy)"
	if spec.From != "" {
		from = "version " + spec.From
	}
	r.record(now, EventStart, spec.Actor, fmt.Sprintf("rolling out %s version %s over %s, steps %s, %s each",
		spec.Model, spec.To, from, stepsString(spec.Steps), spec.Interval))
	return r, nil
}

func validateID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsFunc(id, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		return fmt.Errorf("rollout: ID %q must be 1 to 128 bytes without spaces or control characters", id)
	}
	return nil
}

// stepWeight returns Steps[i], clamping i, or 0 if there are no steps.
func (r *Rollout) stepWeight(i int) float64 {
	steps := r.Spec.Steps
	if len(steps) == 0 {
		return 0
	}
	return steps[min(max(i, 0), len(steps)-1)]
}

// Weights returns the traffic split the rollout wants now, in percent: To's
// share is the current step's while running or paused, 100 once promoted,
// and 0 once rolled back or aborted; From's is the rest. With no From (a
// first deploy), From's share means serving nothing.
func (r *Rollout) Weights() (from, to float64) {
	switch r.State {
	case StatePromoted:
		to = 100
	case StateRolledBack, StateAborted:
		to = 0
	default:
		to = r.stepWeight(r.Step)
	}
	return 100 - to, to
}

// Terminal reports whether the rollout has finished: promoted, rolled back
// or aborted.
func (r *Rollout) Terminal() bool { return r.State.Terminal() }

// Observe adds figures that To and From served at the current step (deltas,
// not cumulative counts) to the Window. It does nothing once the rollout is
// terminal. Figures are judged at the next Tick.
func (r *Rollout) Observe(to, from Figures) {
	if r.Terminal() {
		return
	}
	r.Window.To.Add(to)
	r.Window.From.Add(from)
}

// Tick judges the current step at time now and applies the decision to r:
// roll back if a threshold is crossed (running or paused), else, if
// running, advance or promote when the step's interval has passed and
// enough requests were judged. See the package documentation for the rules.
func (r *Rollout) Tick(now time.Time) Decision {
	if r.Terminal() {
		return Decision{Action: ActionNone, Reason: "rollout is " + string(r.State)}
	}
	minReq := r.Spec.MinRequests
	if minReq == 0 {
		minReq = DefaultMinRequests
	}
	to := r.Window.To
	if to.Requests >= minReq {
		if why := r.crossed(); why != "" {
			r.State = StateRolledBack
			r.Reason = why
			r.record(now, EventRollback, "", why)
			return Decision{Action: ActionRollback, Reason: why}
		}
	}
	if r.State == StatePaused {
		return Decision{Action: ActionNone, Reason: "paused at " + r.stepName()}
	}
	elapsed := now.Sub(r.StepStarted)
	if elapsed < r.Spec.Interval {
		return Decision{Action: ActionNone, Reason: fmt.Sprintf("at %s for %s of %s: %d/%d requests",
			r.stepName(), max(elapsed, 0).Round(time.Millisecond), r.Spec.Interval, to.Requests, minReq)}
	}
	if to.Requests < minReq {
		// The state's reason changes only when the count does, so a long
		// wait does not churn Updated (and the stored JSON) every tick.
		why := fmt.Sprintf("waiting for traffic: %d/%d requests at %s", to.Requests, minReq, r.stepName())
		if r.Reason != why {
			r.Reason = why
			r.Updated = now
		}
		return Decision{Action: ActionNone, Reason: fmt.Sprintf("%s after %s", why, elapsed.Round(time.Second))}
	}
	summary := r.summary()
	if r.Step >= len(r.Spec.Steps)-1 {
		why := fmt.Sprintf("promoted after %s at %s: %s", elapsed.Round(time.Second), r.stepName(), summary)
		r.State = StatePromoted
		r.Reason = why
		r.record(now, EventPromote, "", why)
		return Decision{Action: ActionPromote, Reason: why}
	}
	prev := r.stepName()
	r.Step++
	r.StepStarted = now
	r.Window = Window{}
	why := fmt.Sprintf("advanced to %s after %s at %s: %s", r.stepName(), elapsed.Round(time.Second), prev, summary)
	r.Reason = why
	r.record(now, EventAdvance, "", why)
	return Decision{Action: ActionAdvance, Reason: why}
}

// crossed returns why To's window crosses a threshold, or "".
func (r *Rollout) crossed() string {
	to, from := r.Window.To, r.Window.From
	if rate := to.ErrorRate(); rate > r.Spec.MaxErrorRate {
		why := fmt.Sprintf("error rate %.1f%% > %.1f%% at %s: %d/%d requests",
			100*rate, 100*r.Spec.MaxErrorRate, r.stepName(), to.Errors, to.Requests)
		if r.Spec.From != "" {
			why += fmt.Sprintf(" (%s: %.1f%%, %d/%d)", r.Spec.From, 100*from.ErrorRate(), from.Errors, from.Requests)
		}
		return why
	}
	if r.Spec.MaxP99 > 0 {
		if p99 := to.Quantile(0.99); p99 > r.Spec.MaxP99 {
			why := fmt.Sprintf("p99 latency %s > %s at %s over %d requests",
				latencyString(p99), r.Spec.MaxP99, r.stepName(), to.Requests)
			if r.Spec.From != "" {
				why += fmt.Sprintf(" (%s: p99 %s)", r.Spec.From, latencyString(from.Quantile(0.99)))
			}
			return why
		}
	}
	return ""
}

// latencyString formats a quantile, spelling out the overflow sentinel.
func latencyString(d time.Duration) string {
	if o := OverflowLatency(); d == o && len(bus.LatencyBounds) > 0 {
		return "over " + seconds(bus.LatencyBounds[len(bus.LatencyBounds)-1]).String()
	}
	return d.String()
}

// summary describes the window's figures for an advance or promotion.
func (r *Rollout) summary() string {
	to := r.Window.To
	s := fmt.Sprintf("%d requests, error rate %.1f%% (max %.1f%%)", to.Requests, 100*to.ErrorRate(), 100*r.Spec.MaxErrorRate)
	if r.Spec.MaxP99 > 0 {
		s += fmt.Sprintf(", p99 %s (max %s)", latencyString(to.Quantile(0.99)), r.Spec.MaxP99)
	}
	return s
}

// stepName names the current step for humans: "step 2 (5%)".
func (r *Rollout) stepName() string {
	return fmt.Sprintf("step %d (%s)", r.Step+1, pct(r.stepWeight(r.Step)))
}

// record appends an event with the state after it and marks r updated.
func (r *Rollout) record(now time.Time, what, actor, reason string) {
	_, w := r.Weights()
	r.History = append(r.History, Event{Time: now, Step: r.Step, Weight: w, What: what, Actor: actor, Reason: reason})
	if n := len(r.History); n > MaxHistory {
		r.History = append(r.History[:0:0], r.History[n-MaxHistory:]...)
	}
	r.Updated = now
}

// transition checks that r is in one of the states from, for the named
// manual action, and that actor is acceptable.
func (r *Rollout) transition(action, actor string, from ...State) error {
	if len(actor) > maxActorLen {
		return fmt.Errorf("rollout %s: %s: actor is %d bytes long, more than %d", r.ID, action, len(actor), maxActorLen)
	}
	for _, s := range from {
		if r.State == s {
			return nil
		}
	}
	return fmt.Errorf("%w: cannot %s rollout %s: it is %s", ErrBadTransition, action, r.ID, r.State)
}

// Pause stops a running rollout from advancing (thresholds still apply).
func (r *Rollout) Pause(now time.Time, actor string) error {
	if err := r.transition("pause", actor, StateRunning); err != nil {
		return err
	}
	r.State = StatePaused
	r.Reason = "paused by " + actorName(actor) + " at " + r.stepName()
	r.record(now, EventPause, actor, r.Reason)
	return nil
}

// Resume lets a paused rollout advance again.
func (r *Rollout) Resume(now time.Time, actor string) error {
	if err := r.transition("resume", actor, StatePaused); err != nil {
		return err
	}
	r.State = StateRunning
	r.Reason = "resumed by " + actorName(actor) + " at " + r.stepName()
	r.record(now, EventResume, actor, r.Reason)
	return nil
}

// Promote ends a running or paused rollout at once with To taking all
// traffic.
func (r *Rollout) Promote(now time.Time, actor string) error {
	if err := r.transition("promote", actor, StateRunning, StatePaused); err != nil {
		return err
	}
	why := "promoted by " + actorName(actor) + " at " + r.stepName()
	r.State = StatePromoted
	r.Step = max(len(r.Spec.Steps)-1, 0)
	r.Reason = why
	r.record(now, EventPromote, actor, why)
	return nil
}

// Rollback ends a running or paused rollout with traffic back on From (or
// on nothing for a first deploy). reason is recorded; empty means "by hand".
func (r *Rollout) Rollback(now time.Time, actor, reason string) error {
	if err := r.transition("roll back", actor, StateRunning, StatePaused); err != nil {
		return err
	}
	why := "rolled back by " + actorName(actor) + " at " + r.stepName()
	if reason != "" {
		why += ": " + reason
	}
	r.State = StateRolledBack
	r.Reason = why
	r.record(now, EventRollback, actor, why)
	return nil
}

// Abort ends a running or paused rollout for a reason outside it, such as a
// newer rollout of the same model superseding it or To being removed.
// Traffic goes back to From as on a rollback; the state says it was
// cancelled rather than failed.
func (r *Rollout) Abort(now time.Time, actor, reason string) error {
	if err := r.transition("abort", actor, StateRunning, StatePaused); err != nil {
		return err
	}
	why := "aborted by " + actorName(actor) + " at " + r.stepName()
	if reason != "" {
		why += ": " + reason
	}
	r.State = StateAborted
	r.Reason = why
	r.record(now, EventAbort, actor, why)
	return nil
}

func actorName(a string) string {
	if a == "" {
		return "an unnamed actor"
	}
	return a
}

// Validate checks a Rollout read back from storage: a valid ID, Spec and
// State, a Step within the steps, start times set, and at most MaxHistory
// events.
func (r *Rollout) Validate() error {
	if err := validateID(r.ID); err != nil {
		return err
	}
	if err := r.Spec.Validate(); err != nil {
		return fmt.Errorf("rollout %s: %w", r.ID, err)
	}
	switch {
	case !r.State.Valid():
		return fmt.Errorf("rollout %s: unknown state %q", r.ID, r.State)
	case r.Step < 0 || r.Step >= len(r.Spec.Steps):
		return fmt.Errorf("rollout %s: step index %d out of range [0, %d)", r.ID, r.Step, len(r.Spec.Steps))
	case r.Started.IsZero() || r.StepStarted.IsZero():
		return fmt.Errorf("rollout %s: start time missing", r.ID)
	case len(r.History) > MaxHistory:
		return fmt.Errorf("rollout %s: %d history events, more than %d", r.ID, len(r.History), MaxHistory)
	}
	for name, f := range map[string]Figures{"to": r.Window.To, "from": r.Window.From} {
		if len(f.Latency) > len(bus.LatencyBounds)+1 {
			return fmt.Errorf("rollout %s: window %s has %d latency buckets, more than %d", r.ID, name, len(f.Latency), len(bus.LatencyBounds)+1)
		}
	}
	return nil
}

// Marshal encodes r as JSON for storage.
func (r *Rollout) Marshal() ([]byte, error) { return json.Marshal(r) }

// Decode decodes a Rollout stored by Marshal and validates it. Fields the
// JSON lacks are zero; a MinRequests of 0 is defaulted as by New.
func Decode(data []byte) (*Rollout, error) {
	var r Rollout
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("rollout: decode: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("rollout: decode: %w", err)
	}
	r.Spec = r.Spec.withDefaults()
	return &r, nil
}

// stepsString formats steps as "1% → 5% → 100%".
func stepsString(steps []float64) string {
	parts := make([]string, len(steps))
	for i, w := range steps {
		parts[i] = pct(w)
	}
	return strings.Join(parts, " → ")
}
