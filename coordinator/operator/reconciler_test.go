package operator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/operator"
	"github.com/petrel-mesh/petrel/coordinator/operator/api/v1alpha1"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
)

func canary() *v1alpha1.RolloutPolicy {
	return &v1alpha1.RolloutPolicy{
		Steps: []int32{10, 50, 100}, Interval: &metav1.Duration{Duration: time.Minute},
		MaxErrorRate: "0.05", MaxP99: &metav1.Duration{Duration: 250 * time.Millisecond}, MinRequests: 5,
	}
}

// deployV1 creates PetrelModel name for model/v1 (first deployment: direct)
// with the canary policy, reconciles it to Ready and returns the spec.
func (w *world) deployV1(name, model string) v1alpha1.PetrelModelSpec {
	w.t.Helper()
	spec := w.spec(model, "v1", 1)
	spec.Rollout = canary()
	w.create(name, spec)
	if res := w.mustReconcile(name); res.RequeueAfter != 0 {
		w.t.Fatalf("a deployed version is requeued after %v", res.RequeueAfter)
	}
	phase(w.t, w.get(name), v1alpha1.PhaseReady)
	return spec
}

// toV2 points PetrelModel name at version v2 of model (new artifacts).
func (w *world) toV2(name, model string, mutate func(*v1alpha1.PetrelModelSpec)) {
	w.t.Helper()
	v2 := w.spec(model, "v2", 2)
	w.update(name, func(s *v1alpha1.PetrelModelSpec) {
		s.Version, s.Artifact = "v2", v2.Artifact
		if mutate != nil {
			mutate(s)
		}
	})
}

func TestPushDeployRollOutPromote(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	spec := w.spec("vision", "v1", 1)
	spec.Placement = &v1alpha1.Placement{Regions: []string{"eu-west"}, Labels: map[string]string{"tier": "edge"}, MinReplicasPerRegion: 1}
	spec.Rollout = canary()
	w.create("vision", spec)

	// A first version is pushed and deployed at once, with the placement.
	if res := w.mustReconcile("vision"); res.RequeueAfter != 0 {
		t.Fatalf("a deployed version is requeued after %v", res.RequeueAfter)
	}
	pm := w.get("vision")
	phase(t, pm, v1alpha1.PhaseReady)
	cond(t, pm, v1alpha1.ConditionPushed, metav1.ConditionTrue, operator.ReasonPushed)
	cond(t, pm, v1alpha1.ConditionReady, metav1.ConditionTrue, operator.ReasonDeployed)
	cond(t, pm, v1alpha1.ConditionProgressing, metav1.ConditionFalse, operator.ReasonDeployed)
	cond(t, pm, v1alpha1.ConditionDegraded, metav1.ConditionFalse, operator.ReasonAsExpected)
	if want := "sha256:" + spec.Artifact.Model.SHA256; pm.Status.PushedDigest != want || pm.Status.PushedVersion != "v1" {
		t.Fatalf("pushed %s %s, want v1 %s", pm.Status.PushedVersion, pm.Status.PushedDigest, want)
	}
	if pm.Status.Rollout != nil || pm.Status.LastError != "" {
		t.Fatalf("rollout %+v, last error %q; want neither", pm.Status.Rollout, pm.Status.LastError)
	}
	if w.proxy.get("push") != 1 || w.proxy.get("deploy") != 1 || w.proxy.get("rollout") != 0 {
		t.Fatalf("requests %v; want one push and one deploy", w.proxy)
	}
	det, err := w.direct.Model(ctx, "vision")
	if err != nil {
		t.Fatal(err)
	}
	if d := det.Desired; d == nil || len(d.Versions) != 1 || d.Versions[0].Version != "v1" || d.Versions[0].Weight != 100 {
		t.Fatalf("desired state %+v, want v1 at 100%%", det.Desired)
	}
	wantPl := bus.Placement{Regions: []string{"eu-west"}, Labels: map[string]string{"tier": "edge"}, MinReplicasPerRegion: 1}
	if p := det.Desired.Placement; !slices.Equal(p.Regions, wantPl.Regions) || p.Labels["tier"] != "edge" || p.MinReplicasPerRegion != 1 {
		t.Fatalf("placement %+v, want %+v", p, wantPl)
	}
	if m := det.Versions[0]; m.Labels["team"] != "vision" || len(m.Golden) != 1 {
		t.Fatalf("manifest labels %v, %d golden examples; want team=vision and the golden file's example", m.Labels, len(m.Golden))
	}

	// Reconciling again changes nothing: no push, no deploy, no status write.
	rv := pm.ResourceVersion
	downloads := w.art.downloads.Load()
	w.mustReconcile("vision")
	if w.proxy.get("push") != 1 || w.proxy.get("deploy") != 1 || w.art.downloads.Load() != downloads {
		t.Fatalf("a second reconcile sent %v and downloaded %d files", w.proxy, w.art.downloads.Load()-downloads)
	}
	if got := w.get("vision").ResourceVersion; got != rv {
		t.Fatalf("a second reconcile rewrote the status (resource version %s -> %s)", rv, got)
	}

	// A new version rolls out as a canary with the spec's policy.
	w.toV2("vision", "vision", nil)
	res := w.mustReconcile("vision")
	if res.RequeueAfter != pollEvery {
		t.Fatalf("a rollout in progress is requeued after %v, want %v", res.RequeueAfter, pollEvery)
	}
	pm = w.get("vision")
	phase(t, pm, v1alpha1.PhaseProgressing)
	cond(t, pm, v1alpha1.ConditionPushed, metav1.ConditionTrue, operator.ReasonPushed)
	cond(t, pm, v1alpha1.ConditionProgressing, metav1.ConditionTrue, operator.ReasonRolloutRunning)
	cond(t, pm, v1alpha1.ConditionReady, metav1.ConditionFalse, operator.ReasonRolloutInProgress)
	cond(t, pm, v1alpha1.ConditionDegraded, metav1.ConditionFalse, operator.ReasonAsExpected)
	rs := pm.Status.Rollout
	if rs == nil || rs.State != "running" || rs.Step != 1 || rs.Steps != 3 || rs.Weight != "10%" || rs.From != "v1" {
		t.Fatalf("status rollout %+v, want running at step 1 of 3, 10%%, from v1", rs)
	}
	ro, err := w.direct.Rollout(ctx, "vision")
	if err != nil {
		t.Fatal(err)
	}
	want := rollout.Spec{Model: "vision", From: "v1", To: "v2", Steps: []float64{10, 50, 100}, Interval: time.Minute,
		MaxErrorRate: 0.05, MaxP99: 250 * time.Millisecond, MinRequests: 5, Actor: "operator"}
	if got := ro.Spec; got.Model != want.Model || got.From != want.From || got.To != want.To || !slices.Equal(got.Steps, want.Steps) ||
		got.Interval != want.Interval || got.MaxErrorRate != want.MaxErrorRate || got.MaxP99 != want.MaxP99 || got.MinRequests != want.MinRequests || got.Actor != want.Actor {
		t.Fatalf("the coordinator's rollout spec is %+v, want %+v", got, want)
	}
	if ro.ID != rs.ID {
		t.Fatalf("status rollout id %q, coordinator's %q", rs.ID, ro.ID)
	}
	if w.proxy.get("push") != 2 || w.proxy.get("rollout") != 1 || w.proxy.get("deploy") != 1 {
		t.Fatalf("requests %v; want a second push, one rollout and no new deploy (same placement)", w.proxy)
	}

	// Polling the rollout neither pushes nor starts it again.
	w.mustReconcile("vision")
	if w.proxy.get("push") != 2 || w.proxy.get("rollout") != 1 {
		t.Fatalf("re-reconciling a rollout sent %v", w.proxy)
	}

	// Promoted (here by hand; nodes and traffic would do it): Ready.
	if _, err := w.direct.RolloutAction(ctx, "vision", "promote"); err != nil {
		t.Fatal(err)
	}
	if res := w.mustReconcile("vision"); res.RequeueAfter != 0 {
		t.Fatalf("a promoted version is requeued after %v", res.RequeueAfter)
	}
	pm = w.get("vision")
	phase(t, pm, v1alpha1.PhaseReady)
	cond(t, pm, v1alpha1.ConditionReady, metav1.ConditionTrue, operator.ReasonPromoted)
	cond(t, pm, v1alpha1.ConditionProgressing, metav1.ConditionFalse, operator.ReasonPromoted)
	if rs := pm.Status.Rollout; rs == nil || rs.State != "promoted" || rs.Weight != "100%" {
		t.Fatalf("status rollout %+v, want promoted at 100%%", rs)
	}
}

func TestDigestMismatchPushesNothing(t *testing.T) {
	w := newWorld(t)
	spec := w.spec("vision", "v1", 1)
	good := spec.Artifact.Model.SHA256
	spec.Artifact.Model.SHA256 = strings.Repeat("ab", 32)
	w.create("vision", spec)
	res, err := w.reconcile("vision")
	if err != nil || res.RequeueAfter != 0 {
		t.Fatalf("reconcile: %v, %+v; want no error and no requeue (the spec must change)", err, res)
	}
	pm := w.get("vision")
	phase(t, pm, v1alpha1.PhaseFailed)
	c := cond(t, pm, v1alpha1.ConditionDegraded, metav1.ConditionTrue, operator.ReasonDigestMismatch)
	if !strings.Contains(c.Message, good) || !strings.Contains(pm.Status.LastError, "sha256 mismatch") {
		t.Fatalf("Degraded message %q / last error %q should give the real digest %s", c.Message, pm.Status.LastError, good)
	}
	cond(t, pm, v1alpha1.ConditionPushed, metav1.ConditionFalse, operator.ReasonDigestMismatch)
	cond(t, pm, v1alpha1.ConditionReady, metav1.ConditionFalse, operator.ReasonFailed)
	if n := w.proxy.get("push"); n != 0 {
		t.Fatalf("%d pushes after a digest mismatch", n)
	}
	if _, err := w.direct.Version(context.Background(), "vision", "v1"); !errors.Is(err, operator.ErrNotFound) {
		t.Fatalf("the registry has vision v1 (%v) after a digest mismatch", err)
	}

	// Final for this generation: no download, no request.
	downloads, requests := w.art.downloads.Load(), w.proxy.total()
	w.mustReconcile("vision")
	if w.art.downloads.Load() != downloads || w.proxy.total() != requests {
		t.Fatal("a failed generation was tried again without a spec change")
	}

	// Fixing the digest (a new generation) pushes it.
	w.update("vision", func(s *v1alpha1.PetrelModelSpec) { s.Artifact.Model.SHA256 = good })
	w.mustReconcile("vision")
	pm = w.get("vision")
	phase(t, pm, v1alpha1.PhaseReady)
	cond(t, pm, v1alpha1.ConditionDegraded, metav1.ConditionFalse, operator.ReasonAsExpected)
	if pm.Status.LastError != "" || w.proxy.get("push") != 1 {
		t.Fatalf("last error %q, %d pushes; want none and one", pm.Status.LastError, w.proxy.get("push"))
	}
}

func TestCoordinatorDownIsRetried(t *testing.T) {
	w := newWorld(t)
	down, err := operator.NewClient(operator.ClientConfig{URL: closedURL(t), Token: pushSecret})
	if err != nil {
		t.Fatal(err)
	}
	w.create("vision", w.spec("vision", "v1", 1))
	res, err := w.reconcileWith(w.reconciler(down), "vision")
	if !errors.Is(err, operator.ErrUnavailable) {
		t.Fatalf("reconcile with the coordinator down: %v, want an error wrapping ErrUnavailable (retried with backoff)", err)
	}
	if res.RequeueAfter != 0 {
		t.Fatalf("result %+v with an error", res)
	}
	pm := w.get("vision")
	phase(t, pm, v1alpha1.PhasePending)
	cond(t, pm, v1alpha1.ConditionDegraded, metav1.ConditionTrue, operator.ReasonCoordinatorUnavailable)
	cond(t, pm, v1alpha1.ConditionPushed, metav1.ConditionFalse, operator.ReasonCoordinatorUnavailable)
	if !strings.Contains(pm.Status.LastError, "coordinator unavailable") {
		t.Fatalf("last error %q", pm.Status.LastError)
	}

	// The retry, with the coordinator back, goes through.
	w.mustReconcile("vision")
	pm = w.get("vision")
	phase(t, pm, v1alpha1.PhaseReady)
	cond(t, pm, v1alpha1.ConditionDegraded, metav1.ConditionFalse, operator.ReasonAsExpected)
	if pm.Status.LastError != "" {
		t.Fatalf("last error %q after a good reconcile", pm.Status.LastError)
	}

	// A token the coordinator does not know is an error too, not a failure
	// of the spec.
	bad, err := operator.NewClient(operator.ClientConfig{URL: w.coord.URL(), Token: "not-a-token-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	w.update("vision", func(s *v1alpha1.PetrelModelSpec) { s.Paused = true })
	if _, err := w.reconcileWith(w.reconciler(bad), "vision"); !errors.Is(err, operator.ErrUnauthorized) {
		t.Fatalf("reconcile with a bad token: %v, want ErrUnauthorized", err)
	}
	cond(t, w.get("vision"), v1alpha1.ConditionDegraded, metav1.ConditionTrue, operator.ReasonUnauthorized)
}

func TestInvalidSpecIsRejected(t *testing.T) {
	w := newWorld(t)
	base := w.spec("vision", "v1", 1)
	base.Rollout = canary()
	if err := operator.ValidateSpec(&base); err != nil {
		t.Fatalf("a valid spec: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*v1alpha1.PetrelModelSpec)
	}{
		{"model-name", func(s *v1alpha1.PetrelModelSpec) { s.Model = "-vision" }},
		{"version", func(s *v1alpha1.PetrelModelSpec) { s.Version = "v 1" }},
		{"url-scheme", func(s *v1alpha1.PetrelModelSpec) { s.Artifact.Model.URL = "ftp://example.com/model.onnx" }},
		{"sha256-case", func(s *v1alpha1.PetrelModelSpec) { s.Artifact.Model.SHA256 = strings.ToUpper(s.Artifact.Model.SHA256) }},
		{"golden-sha256", func(s *v1alpha1.PetrelModelSpec) { s.Artifact.Golden.SHA256 = "abc" }},
		{"last-step", func(s *v1alpha1.PetrelModelSpec) { s.Rollout.Steps = []int32{10, 50} }},
		{"steps-order", func(s *v1alpha1.PetrelModelSpec) { s.Rollout.Steps = []int32{50, 10, 100} }},
		{"steps-repeat", func(s *v1alpha1.PetrelModelSpec) { s.Rollout.Steps = []int32{10, 10, 100} }},
		{"step-zero", func(s *v1alpha1.PetrelModelSpec) { s.Rollout.Steps = []int32{0, 100} }},
		{"interval", func(s *v1alpha1.PetrelModelSpec) {
			s.Rollout.Interval = &metav1.Duration{Duration: 500 * time.Millisecond}
		}},
		{"error-rate-range", func(s *v1alpha1.PetrelModelSpec) { s.Rollout.MaxErrorRate = "1.5" }},
		{"error-rate-text", func(s *v1alpha1.PetrelModelSpec) { s.Rollout.MaxErrorRate = "1%" }},
		{"p99", func(s *v1alpha1.PetrelModelSpec) { s.Rollout.MaxP99 = &metav1.Duration{Duration: -time.Second} }},
		{"min-requests", func(s *v1alpha1.PetrelModelSpec) { s.Rollout.MinRequests = -1 }},
		{"label-key", func(s *v1alpha1.PetrelModelSpec) { s.Labels = map[string]string{"-team": "x"} }},
		{"label-comma", func(s *v1alpha1.PetrelModelSpec) { s.Labels = map[string]string{"team": "a,b"} }},
		{"region", func(s *v1alpha1.PetrelModelSpec) { s.Placement = &v1alpha1.Placement{Regions: []string{"eu west"}} }},
		{"replicas", func(s *v1alpha1.PetrelModelSpec) { s.Placement = &v1alpha1.Placement{MinReplicasPerRegion: -1} }},
		{"grant", func(s *v1alpha1.PetrelModelSpec) {
			s.Artifact.Pre = &v1alpha1.TransformFile{RemoteFile: s.Artifact.Model, Grants: []v1alpha1.Grant{"network"}}
		}},
		{"grant-twice", func(s *v1alpha1.PetrelModelSpec) {
			s.Artifact.Post = &v1alpha1.TransformFile{RemoteFile: s.Artifact.Model, Grants: []v1alpha1.Grant{"clock", "clock"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := *base.DeepCopy()
			tt.mutate(&s)
			if err := operator.ValidateSpec(&s); !errors.Is(err, operator.ErrInvalidSpec) {
				t.Fatalf("ValidateSpec: %v, want ErrInvalidSpec", err)
			}
			w.create("pm-"+tt.name, s)
			res, err := w.reconcile("pm-" + tt.name)
			if err != nil || res.RequeueAfter != 0 {
				t.Fatalf("reconcile: %v, %+v; want neither error nor requeue", err, res)
			}
			pm := w.get("pm-" + tt.name)
			phase(t, pm, v1alpha1.PhaseFailed)
			cond(t, pm, v1alpha1.ConditionDegraded, metav1.ConditionTrue, operator.ReasonInvalidSpec)
		})
	}
	if w.proxy.total() != 0 || w.art.downloads.Load() != 0 {
		t.Fatalf("invalid specs reached the coordinator (%v) or the artifact server (%d downloads)", w.proxy, w.art.downloads.Load())
	}
}

func TestPausedHoldsAndPausesTheRollout(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.deployV1("vision", "vision")

	// Paused before the rollout: pushed, not rolled out.
	w.toV2("vision", "vision", func(s *v1alpha1.PetrelModelSpec) { s.Paused = true })
	if res := w.mustReconcile("vision"); res.RequeueAfter != 0 {
		t.Fatalf("a held version is requeued after %v", res.RequeueAfter)
	}
	pm := w.get("vision")
	phase(t, pm, v1alpha1.PhasePaused)
	cond(t, pm, v1alpha1.ConditionPushed, metav1.ConditionTrue, operator.ReasonPushed)
	cond(t, pm, v1alpha1.ConditionProgressing, metav1.ConditionFalse, operator.ReasonPaused)
	cond(t, pm, v1alpha1.ConditionReady, metav1.ConditionFalse, operator.ReasonPaused)
	if _, err := w.direct.Rollout(ctx, "vision"); !errors.Is(err, operator.ErrNotFound) {
		t.Fatalf("a rollout exists while paused: %v", err)
	}
	if _, err := w.direct.Version(ctx, "vision", "v2"); err != nil {
		t.Fatalf("v2 was not pushed while paused: %v", err)
	}

	// Unpaused: the rollout starts.
	w.update("vision", func(s *v1alpha1.PetrelModelSpec) { s.Paused = false })
	w.mustReconcile("vision")
	phase(t, w.get("vision"), v1alpha1.PhaseProgressing)

	// Paused during the rollout: the coordinator's rollout is paused.
	w.update("vision", func(s *v1alpha1.PetrelModelSpec) { s.Paused = true })
	if res := w.mustReconcile("vision"); res.RequeueAfter != pollEvery {
		t.Fatalf("a paused rollout is requeued after %v, want %v (it can still roll back)", res.RequeueAfter, pollEvery)
	}
	pm = w.get("vision")
	phase(t, pm, v1alpha1.PhasePaused)
	cond(t, pm, v1alpha1.ConditionProgressing, metav1.ConditionUnknown, operator.ReasonRolloutPaused)
	if ro, err := w.direct.Rollout(ctx, "vision"); err != nil || ro.State != rollout.StatePaused {
		t.Fatalf("coordinator rollout %+v, %v; want paused", ro, err)
	}
	if pm.Status.Rollout == nil || pm.Status.Rollout.State != "paused" {
		t.Fatalf("status rollout %+v, want paused", pm.Status.Rollout)
	}
	w.mustReconcile("vision")
	if n := w.proxy.get("action"); n != 1 {
		t.Fatalf("%d rollout actions, want one pause", n)
	}

	// Unpaused again: resumed.
	w.update("vision", func(s *v1alpha1.PetrelModelSpec) { s.Paused = false })
	w.mustReconcile("vision")
	phase(t, w.get("vision"), v1alpha1.PhaseProgressing)
	if ro, err := w.direct.Rollout(ctx, "vision"); err != nil || ro.State != rollout.StateRunning {
		t.Fatalf("coordinator rollout %+v, %v; want running", ro, err)
	}
	if w.proxy.get("action") != 2 || w.proxy.get("rollout") != 1 {
		t.Fatalf("requests %v; want a pause, a resume and one rollout", w.proxy)
	}
}

// TestAutomaticRollbackIsDegraded feeds the coordinator node figures in
// which the canary fails 40 % of its requests; the coordinator rolls it
// back on its own and the operator reports why.
func TestAutomaticRollbackIsDegraded(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.deployV1("vision", "vision")
	w.toV2("vision", "vision", nil)
	w.mustReconcile("vision")
	phase(t, w.get("vision"), v1alpha1.PhaseProgressing)

	nc, err := nats.Connect(w.coord.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	started := time.Now().UTC()
	publish := func(requests, errs uint64) {
		lat := make([]uint64, len(bus.LatencyBounds)+1)
		lat[0] = requests
		b, err := json.Marshal(bus.NodeStats{Node: "edge-1", Started: started, Sent: time.Now().UTC(),
			Versions: []bus.VersionStats{{Model: "vision", Version: "v2", Requests: requests, Errors: errs, Latency: lat}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(bus.Names{}.StatsSubject("edge-1"), b); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	publish(0, 0) // the baseline
	time.Sleep(50 * time.Millisecond)
	publish(50, 20)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ro, err := w.direct.Rollout(ctx, "vision")
		if err != nil {
			t.Fatal(err)
		}
		if ro.State == rollout.StateRolledBack {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the coordinator did not roll back: %+v", ro)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if res := w.mustReconcile("vision"); res.RequeueAfter != 0 {
		t.Fatalf("a rolled back version is requeued after %v", res.RequeueAfter)
	}
	pm := w.get("vision")
	phase(t, pm, v1alpha1.PhaseRolledBack)
	c := cond(t, pm, v1alpha1.ConditionDegraded, metav1.ConditionTrue, operator.ReasonRolledBack)
	if !strings.Contains(c.Message, "error rate 40.0% > 5.0%") {
		t.Fatalf("Degraded message %q lacks the coordinator's reason", c.Message)
	}
	cond(t, pm, v1alpha1.ConditionReady, metav1.ConditionFalse, operator.ReasonRolledBack)
	cond(t, pm, v1alpha1.ConditionProgressing, metav1.ConditionFalse, operator.ReasonRolledBack)
	if rs := pm.Status.Rollout; rs == nil || rs.State != "rolled_back" || rs.Weight != "0%" {
		t.Fatalf("status rollout %+v, want rolled_back at 0%%", rs)
	}
	det, err := w.direct.Model(ctx, "vision")
	if err != nil {
		t.Fatal(err)
	}
	if d := det.Desired; len(d.Versions) != 1 || d.Versions[0].Version != "v1" {
		t.Fatalf("desired state %+v, want v1 only", d)
	}

	// Final for this generation: no request, no new rollout.
	requests := w.proxy.total()
	w.mustReconcile("vision")
	if w.proxy.total() != requests {
		t.Fatal("a rolled back generation was reconciled against the coordinator again")
	}
}

func TestManualRollbackReasonAndWaiting(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.deployV1("a", "vision")
	w.toV2("a", "vision", nil)
	w.mustReconcile("a")

	// A second PetrelModel of the same model waits for the rollout.
	spec3 := w.spec("vision", "v3", 3)
	spec3.Rollout = canary()
	w.create("b", spec3)
	if res := w.mustReconcile("b"); res.RequeueAfter != pollEvery {
		t.Fatalf("a waiting version is requeued after %v, want %v", res.RequeueAfter, pollEvery)
	}
	pm := w.get("b")
	phase(t, pm, v1alpha1.PhasePushed)
	cond(t, pm, v1alpha1.ConditionProgressing, metav1.ConditionFalse, operator.ReasonWaitingForRollout)

	// A rollback by hand, with a reason.
	body, _ := json.Marshal(map[string]string{"reason": "customer complaints"})
	req, _ := http.NewRequest("POST", w.coord.URL()+"/v1/rollouts/vision/rollback", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+pushSecret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("rollback: %s", resp.Status)
	}
	w.mustReconcile("a")
	pm = w.get("a")
	phase(t, pm, v1alpha1.PhaseRolledBack)
	if c := cond(t, pm, v1alpha1.ConditionDegraded, metav1.ConditionTrue, operator.ReasonRolledBack); !strings.Contains(c.Message, "customer complaints") {
		t.Fatalf("Degraded message %q lacks the reason", c.Message)
	}

	// The waiting one goes now.
	w.mustReconcile("b")
	pm = w.get("b")
	phase(t, pm, v1alpha1.PhaseProgressing)
	if ro, err := w.direct.Rollout(ctx, "vision"); err != nil || ro.Spec.To != "v3" || ro.Spec.From != "v1" {
		t.Fatalf("rollout %+v, %v; want v1 -> v3", ro, err)
	}
}

func TestExistingVersion(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	spec := w.spec("vision", "v1", 1)
	m, _ := mlp(t, 1)
	// Pushed by hand before the PetrelModel exists: not pushed again.
	if _, err := w.direct.Push(ctx, "vision", "v1", operator.PushParts{Model: m}); err != nil {
		t.Fatal(err)
	}
	w.create("vision", spec)
	w.mustReconcile("vision")
	pm := w.get("vision")
	phase(t, pm, v1alpha1.PhaseReady)
	cond(t, pm, v1alpha1.ConditionPushed, metav1.ConditionTrue, operator.ReasonPushed)
	if n := w.proxy.get("push"); n != 0 || w.art.downloads.Load() != 0 {
		t.Fatalf("%d pushes, %d downloads of a version already in the registry", n, w.art.downloads.Load())
	}

	// The same version with another artifact: a conflict, final.
	other := w.spec("vision", "v1-other", 7)
	w.create("other", v1alpha1.PetrelModelSpec{Model: "vision", Version: "v1", Artifact: other.Artifact})
	res, err := w.reconcile("other")
	if err != nil || res.RequeueAfter != 0 {
		t.Fatalf("reconcile: %v, %+v", err, res)
	}
	pm = w.get("other")
	phase(t, pm, v1alpha1.PhaseFailed)
	cond(t, pm, v1alpha1.ConditionDegraded, metav1.ConditionTrue, operator.ReasonVersionConflict)
	cond(t, pm, v1alpha1.ConditionPushed, metav1.ConditionFalse, operator.ReasonVersionConflict)

	// A version the validation gate rejects (not an ONNX model) fails.
	bad := w.art.add("/vision/v9/model.onnx", []byte("not an onnx model"))
	w.create("bad", v1alpha1.PetrelModelSpec{Model: "vision", Version: "v9", Artifact: v1alpha1.Artifact{Model: bad}})
	if _, err := w.reconcile("bad"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	pm = w.get("bad")
	phase(t, pm, v1alpha1.PhaseFailed)
	cond(t, pm, v1alpha1.ConditionDegraded, metav1.ConditionTrue, operator.ReasonValidationFailed)
}
