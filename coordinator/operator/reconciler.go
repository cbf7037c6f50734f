package operator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/operator/api/v1alpha1"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/models"
)

// Condition reasons the operator writes.
const (
	ReasonPushed                 = "Pushed"
	ReasonNotPushed              = "NotPushed"
	ReasonInvalidSpec            = "InvalidSpec"
	ReasonDigestMismatch         = "DigestMismatch"
	ReasonArtifactTooLarge       = "ArtifactTooLarge"
	ReasonDownloadFailed         = "DownloadFailed"
	ReasonValidationFailed       = "ValidationFailed"
	ReasonPushRejected           = "PushRejected"
	ReasonVersionConflict        = "VersionConflict"
	ReasonCoordinatorUnavailable = "CoordinatorUnavailable"
	ReasonUnauthorized           = "Unauthorized"
	ReasonConflict               = "Conflict"
	ReasonError                  = "Error"
	ReasonAsExpected             = "AsExpected"
	ReasonRolloutRunning         = "RolloutRunning"
	ReasonRolloutPaused          = "RolloutPaused"
	ReasonRolloutInProgress      = "RolloutInProgress"
	ReasonPromoted               = "Promoted"
	ReasonDeployed               = "Deployed"
	ReasonRolledBack             = "RolledBack"
	ReasonAborted                = "Aborted"
	ReasonPaused                 = "Paused"
	ReasonWaitingForRollout      = "WaitingForRollout"
	ReasonTrafficSplit           = "TrafficSplit"
	ReasonFailed                 = "Failed"
)

// Defaults of Config.
const (
	// DefaultPollInterval is how often a rollout in progress is polled.
	DefaultPollInterval = 10 * time.Second
	// DefaultMaxModelBytes bounds a downloaded model file (the
	// coordinator's default limit).
	DefaultMaxModelBytes = 256 << 20
	// maxGoldenBytes is the coordinator's limit on a push's golden part.
	maxGoldenBytes = 1 << 20
	// maxMessage bounds a condition message and LastError.
	maxMessage = 4096
)

// errVersionConflict: the registry has the version with other artifacts.
var errVersionConflict = errors.New("version conflict")

// Config configures a Reconciler.
type Config struct {
	// Coordinator is the coordinator's management API. Required.
	Coordinator *Client
	// Fetcher downloads artifacts; default an HTTPFetcher.
	Fetcher Fetcher
	// PollInterval is how often a rollout in progress (or a model busy
	// with another rollout) is polled; default DefaultPollInterval.
	PollInterval time.Duration
	// MaxModelBytes bounds a downloaded model file; default
	// DefaultMaxModelBytes. Transforms are bounded by
	// models.MaxTransformBytes and golden files by 1 MiB, as the
	// coordinator bounds them.
	MaxModelBytes int64
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if c.Coordinator == nil {
		return errors.New("operator: no coordinator client")
	}
	if c.Fetcher == nil {
		c.Fetcher = &HTTPFetcher{}
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.PollInterval < 0 {
		return fmt.Errorf("operator: poll interval %v is negative", c.PollInterval)
	}
	if c.MaxModelBytes == 0 {
		c.MaxModelBytes = DefaultMaxModelBytes
	}
	if c.MaxModelBytes < 0 {
		return fmt.Errorf("operator: max model bytes %d is negative", c.MaxModelBytes)
	}
	return nil
}

// What the operator may do in the cluster (the ClusterRole petrel-operator
// in deploy/k8s/base/operator-rbac.yaml is generated from these lines):
// read PetrelModels and write their status, hold the leader-election
// Lease, and record events.
//
// +kubebuilder:rbac:groups=petrel.dev,resources=petrelmodels,verbs=get;list;watch
// +kubebuilder:rbac:groups=petrel.dev,resources=petrelmodels/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconciler reconciles PetrelModels with the coordinator. See the package
// documentation for what it does.
type Reconciler struct {
	kube client.Client
	cfg  Config
}

// NewReconciler returns a Reconciler that reads and writes PetrelModels
// through kube.
func NewReconciler(kube client.Client, cfg Config) (*Reconciler, error) {
	if kube == nil {
		return nil, errors.New("operator: no Kubernetes client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Reconciler{kube: kube, cfg: cfg}, nil
}

// SetupWithManager registers the reconciler for PetrelModels.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&v1alpha1.PetrelModel{}).Named("petrelmodel").Complete(r)
}

// Reconcile brings one PetrelModel's version to the coordinator and
// writes what it found to the status. It returns an error (requeue with
// backoff) on transient failures, RequeueAfter the poll interval while a
// rollout is in progress, and nothing once the version serves, or when
// the spec cannot be carried out until it changes.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pm v1alpha1.PetrelModel
	if err := r.kube.Get(ctx, req.NamespacedName, &pm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !pm.DeletionTimestamp.IsZero() {
		// No finalizer: the registry keeps the version (docs/operator.md).
		return ctrl.Result{}, nil
	}
	before := pm.Status.DeepCopy()
	res, err := r.sync(ctx, &pm)
	pm.Status.ObservedGeneration = pm.Generation
	if equality.Semantic.DeepEqual(before, &pm.Status) {
		return res, err
	}
	if uerr := r.kube.Status().Update(ctx, &pm); uerr != nil {
		switch {
		case apierrors.IsNotFound(uerr):
			return ctrl.Result{}, nil
		case apierrors.IsConflict(uerr):
			// The object changed meanwhile: look again soon.
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return res, errors.Join(err, fmt.Errorf("update status of %s: %w", req.NamespacedName, uerr))
	}
	return res, err
}

// sync does the work and sets pm.Status.
func (r *Reconciler) sync(ctx context.Context, pm *v1alpha1.PetrelModel) (ctrl.Result, error) {
	st := &pm.Status
	if st.ObservedGeneration == pm.Generation && (st.Phase == v1alpha1.PhaseFailed || st.Phase == v1alpha1.PhaseRolledBack) {
		// Final for this generation: nothing to do until the spec changes.
		return ctrl.Result{}, nil
	}
	st.LastError = ""
	if st.Phase == "" {
		st.Phase = v1alpha1.PhasePending
	}
	if err := ValidateSpec(&pm.Spec); err != nil {
		return r.fail(pm, true, err)
	}
	if err := r.ensurePushed(ctx, pm); err != nil {
		return r.fail(pm, true, err)
	}
	return r.ensureServing(ctx, pm)
}

// ensurePushed makes sure the registry has the version with the spec's
// artifacts, pushing them if it does not.
func (r *Reconciler) ensurePushed(ctx context.Context, pm *v1alpha1.PetrelModel) error {
	spec := &pm.Spec
	c := r.cfg.Coordinator
	man, err := c.Version(ctx, spec.Model, spec.Version)
	switch {
	case err == nil:
		return r.pushed(pm, man)
	case !errors.Is(err, ErrNotFound):
		return err
	}
	parts, err := r.download(ctx, spec)
	if err != nil {
		return err
	}
	res, err := c.Push(ctx, spec.Model, spec.Version, *parts)
	if errors.Is(err, ErrConflict) {
		// Pushed meanwhile (by an earlier reconcile whose answer was lost,
		// or by hand): fine if it is the same artifact.
		if man, err = c.Version(ctx, spec.Model, spec.Version); err != nil {
			return err
		}
		return r.pushed(pm, man)
	}
	if err != nil {
		return err
	}
	logf.FromContext(ctx).Info("pushed model version", "model", spec.Model, "version", spec.Version, "digest", res.Manifest.Digest)
	return r.pushed(pm, res.Manifest)
}

// pushed checks that the registry's manifest has the spec's digests and
// records it.
func (r *Reconciler) pushed(pm *v1alpha1.PetrelModel, man *models.Manifest) error {
	spec := &pm.Spec
	if want := "sha256:" + spec.Artifact.Model.SHA256; man.Digest != want {
		return fmt.Errorf("%w: model %q version %q is in the registry with digest %s, the spec says %s; versions are immutable, give a new version",
			errVersionConflict, spec.Model, spec.Version, man.Digest, want)
	}
	var pre, post *models.Transform
	if man.Transforms != nil {
		pre, post = man.Transforms.Pre, man.Transforms.Post
	}
	for _, t := range []struct {
		name string
		spec *v1alpha1.TransformFile
		got  *models.Transform
	}{{"pre", spec.Artifact.Pre, pre}, {"post", spec.Artifact.Post, post}} {
		want, got := "", ""
		if t.spec != nil {
			want = "sha256:" + t.spec.SHA256
		}
		if t.got != nil {
			got = t.got.Digest
		}
		if want != got {
			return fmt.Errorf("%w: model %q version %q is in the registry with %s transform %q, the spec says %q; give a new version",
				errVersionConflict, spec.Model, spec.Version, t.name, got, want)
		}
	}
	st := &pm.Status
	st.PushedVersion, st.PushedDigest = spec.Version, man.Digest
	r.setCond(pm, v1alpha1.ConditionPushed, metav1.ConditionTrue, ReasonPushed,
		fmt.Sprintf("version %s is in the registry with digest %s", spec.Version, man.Digest))
	return nil
}

// download fetches the artifacts and checks their digests.
func (r *Reconciler) download(ctx context.Context, spec *v1alpha1.PetrelModelSpec) (*PushParts, error) {
	f := r.cfg.Fetcher
	a := &spec.Artifact
	p := &PushParts{Labels: spec.Labels, AllowBreaking: spec.AllowBreaking}
	var err error
	if p.Model, err = fetchVerified(ctx, f, "artifact.model", a.Model.URL, a.Model.SHA256, r.cfg.MaxModelBytes); err != nil {
		return nil, err
	}
	if a.Golden != nil {
		if p.Golden, err = fetchVerified(ctx, f, "artifact.golden", a.Golden.URL, a.Golden.SHA256, maxGoldenBytes); err != nil {
			return nil, err
		}
	}
	if a.Pre != nil {
		if p.Pre, err = fetchVerified(ctx, f, "artifact.pre", a.Pre.URL, a.Pre.SHA256, models.MaxTransformBytes); err != nil {
			return nil, err
		}
		p.PreGrants = grants(a.Pre)
	}
	if a.Post != nil {
		if p.Post, err = fetchVerified(ctx, f, "artifact.post", a.Post.URL, a.Post.SHA256, models.MaxTransformBytes); err != nil {
			return nil, err
		}
		p.PostGrants = grants(a.Post)
	}
	return p, nil
}

// ensureServing deploys the version or rolls it out, and mirrors the
// rollout into the status.
func (r *Reconciler) ensureServing(ctx context.Context, pm *v1alpha1.PetrelModel) (ctrl.Result, error) {
	spec := &pm.Spec
	c := r.cfg.Coordinator
	log := logf.FromContext(ctx)
	det, err := c.Model(ctx, spec.Model)
	if err != nil {
		return r.fail(pm, false, err)
	}
	ro := det.Rollout
	ours := ro != nil && ro.Spec.To == spec.Version
	serving := servingVersions(det.Desired)
	want := placement(spec.Placement)
	switch {
	case ours && !ro.Terminal():
		return r.track(ctx, pm, ro)
	case len(serving) == 1 && serving[0] == spec.Version:
		if want != nil && !samePlacement(*want, det.Desired.Placement) && (ro == nil || ro.Terminal()) {
			if _, err := c.Deploy(ctx, spec.Model, spec.Version, want); err != nil {
				return r.fail(pm, false, err)
			}
			log.Info("placement applied", "model", spec.Model, "version", spec.Version)
		}
		if !ours {
			ro = nil
		}
		r.ready(pm, ro, ReasonDeployed)
		return ctrl.Result{}, nil
	case ours && (ro.State == rollout.StateRolledBack || ro.State == rollout.StateAborted):
		r.rolledBack(pm, ro)
		return ctrl.Result{}, nil
	case ro != nil && !ro.Terminal():
		r.waiting(pm, ReasonWaitingForRollout, fmt.Sprintf("rollout %s of version %s is in progress (%s); this version waits for it to end", ro.ID, ro.Spec.To, ro.State))
		return ctrl.Result{RequeueAfter: r.cfg.PollInterval}, nil
	case spec.Paused:
		pm.Status.Phase = v1alpha1.PhasePaused
		pm.Status.Rollout = nil
		r.setCond(pm, v1alpha1.ConditionProgressing, metav1.ConditionFalse, ReasonPaused, "spec.paused holds the version back: it is pushed but not rolled out")
		r.setCond(pm, v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonPaused, "the version is not serving")
		r.setCond(pm, v1alpha1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected, "")
		return ctrl.Result{}, nil
	case len(serving) == 0 || spec.Rollout == nil:
		// A first deployment has nothing to canary against; without a
		// rollout policy the version takes all traffic at once.
		if _, err := c.Deploy(ctx, spec.Model, spec.Version, want); err != nil {
			return r.fail(pm, false, err)
		}
		log.Info("deployed model version", "model", spec.Model, "version", spec.Version)
		r.ready(pm, nil, ReasonDeployed)
		return ctrl.Result{}, nil
	case len(serving) > 1:
		r.waiting(pm, ReasonTrafficSplit, fmt.Sprintf("the model's traffic is split between versions %v outside a rollout; deploy one of them to let this version roll out", serving))
		return ctrl.Result{RequeueAfter: r.cfg.PollInterval}, nil
	}
	// One other version serves: set the placement on it, then roll out.
	if want != nil && !samePlacement(*want, det.Desired.Placement) {
		if _, err := c.Deploy(ctx, spec.Model, serving[0], want); err != nil {
			return r.fail(pm, false, err)
		}
		log.Info("placement applied", "model", spec.Model, "version", serving[0])
	}
	req, err := RolloutRequest(spec)
	if err != nil {
		return r.fail(pm, false, err)
	}
	ro, err = c.StartRollout(ctx, spec.Model, req)
	if err != nil {
		return r.fail(pm, false, err)
	}
	log.Info("rollout started", "model", spec.Model, "version", spec.Version, "from", ro.Spec.From, "rollout", ro.ID)
	return r.track(ctx, pm, ro)
}

// track mirrors a rollout of the version in progress, pausing or resuming
// it to match spec.paused.
func (r *Reconciler) track(ctx context.Context, pm *v1alpha1.PetrelModel, ro *rollout.Rollout) (ctrl.Result, error) {
	action := ""
	switch {
	case pm.Spec.Paused && ro.State == rollout.StateRunning:
		action = "pause"
	case !pm.Spec.Paused && ro.State == rollout.StatePaused:
		action = "resume"
	}
	if action != "" {
		nro, err := r.cfg.Coordinator.RolloutAction(ctx, pm.Spec.Model, action)
		if err != nil {
			return r.fail(pm, false, err)
		}
		logf.FromContext(ctx).Info("rollout "+action+"d", "model", pm.Spec.Model, "rollout", nro.ID)
		ro = nro
	}
	st := &pm.Status
	st.Rollout = rolloutStatus(ro)
	switch ro.State {
	case rollout.StatePromoted:
		r.ready(pm, ro, ReasonPromoted)
		return ctrl.Result{}, nil
	case rollout.StateRolledBack, rollout.StateAborted:
		r.rolledBack(pm, ro)
		return ctrl.Result{}, nil
	case rollout.StatePaused:
		st.Phase = v1alpha1.PhasePaused
		r.setCond(pm, v1alpha1.ConditionProgressing, metav1.ConditionUnknown, ReasonRolloutPaused,
			fmt.Sprintf("rollout %s paused at step %d of %d (%s): %s", ro.ID, st.Rollout.Step, st.Rollout.Steps, st.Rollout.Weight, ro.Reason))
	default:
		st.Phase = v1alpha1.PhaseProgressing
		r.setCond(pm, v1alpha1.ConditionProgressing, metav1.ConditionTrue, ReasonRolloutRunning,
			fmt.Sprintf("rollout %s at step %d of %d (%s)", ro.ID, st.Rollout.Step, st.Rollout.Steps, st.Rollout.Weight))
	}
	r.setCond(pm, v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonRolloutInProgress, "the version serves part of the traffic")
	r.setCond(pm, v1alpha1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected, "")
	// Paused rollouts are polled too: the coordinator still rolls them
	// back on a threshold.
	return ctrl.Result{RequeueAfter: r.cfg.PollInterval}, nil
}

// ready records that the version serves all traffic.
func (r *Reconciler) ready(pm *v1alpha1.PetrelModel, ro *rollout.Rollout, reason string) {
	st := &pm.Status
	st.Phase = v1alpha1.PhaseReady
	st.Rollout = rolloutStatus(ro)
	msg := fmt.Sprintf("version %s serves all of model %s's traffic", pm.Spec.Version, pm.Spec.Model)
	if ro != nil {
		reason = ReasonPromoted
		msg += "; rollout " + ro.ID + " " + ro.Reason
	}
	r.setCond(pm, v1alpha1.ConditionProgressing, metav1.ConditionFalse, reason, "no rollout in progress")
	r.setCond(pm, v1alpha1.ConditionReady, metav1.ConditionTrue, reason, msg)
	r.setCond(pm, v1alpha1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected, "")
}

// rolledBack records a rollout that ended without the version: final for
// this generation.
func (r *Reconciler) rolledBack(pm *v1alpha1.PetrelModel, ro *rollout.Rollout) {
	st := &pm.Status
	st.Phase = v1alpha1.PhaseRolledBack
	st.Rollout = rolloutStatus(ro)
	reason := ReasonRolledBack
	if ro.State == rollout.StateAborted {
		reason = ReasonAborted
	}
	msg := fmt.Sprintf("rollout %s %s: %s", ro.ID, ro.State, ro.Reason)
	r.setCond(pm, v1alpha1.ConditionProgressing, metav1.ConditionFalse, reason, msg)
	r.setCond(pm, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, "the version does not serve; traffic went back to "+orNothing(ro.Spec.From))
	r.setCond(pm, v1alpha1.ConditionDegraded, metav1.ConditionTrue, reason, msg+"; give a new version to try again")
}

// waiting records a version that is pushed but cannot roll out yet.
func (r *Reconciler) waiting(pm *v1alpha1.PetrelModel, reason, msg string) {
	st := &pm.Status
	st.Phase = v1alpha1.PhasePushed
	st.Rollout = nil
	r.setCond(pm, v1alpha1.ConditionProgressing, metav1.ConditionFalse, reason, msg)
	r.setCond(pm, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, "the version is not serving")
	r.setCond(pm, v1alpha1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected, "")
}

// fail records err. Permanent failures (the spec cannot be carried out as
// it is) set the Failed phase and stop until the spec changes; others are
// returned, so that the request is retried with backoff. pushing says
// whether the failure was before the version was in the registry.
func (r *Reconciler) fail(pm *v1alpha1.PetrelModel, pushing bool, err error) (ctrl.Result, error) {
	reason, permanent := classify(err)
	st := &pm.Status
	msg := truncate(err.Error())
	st.LastError = msg
	r.setCond(pm, v1alpha1.ConditionDegraded, metav1.ConditionTrue, reason, msg)
	if pushing {
		if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionPushed); permanent || c == nil || c.Status != metav1.ConditionTrue {
			r.setCond(pm, v1alpha1.ConditionPushed, metav1.ConditionFalse, reason, msg)
		}
	}
	if !permanent {
		return ctrl.Result{}, err
	}
	st.Phase = v1alpha1.PhaseFailed
	r.setCond(pm, v1alpha1.ConditionProgressing, metav1.ConditionFalse, ReasonFailed, "the spec cannot be carried out; fix it")
	r.setCond(pm, v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonFailed, "the version is not serving")
	return ctrl.Result{}, nil
}

// classify names an error's reason and says whether retrying the same
// spec could help.
func classify(err error) (reason string, permanent bool) {
	var ae *APIError
	switch {
	case errors.Is(err, ErrInvalidSpec):
		return ReasonInvalidSpec, true
	case errors.Is(err, ErrDigestMismatch):
		return ReasonDigestMismatch, true
	case errors.Is(err, ErrTooLarge):
		return ReasonArtifactTooLarge, true
	case errors.Is(err, errVersionConflict):
		return ReasonVersionConflict, true
	case errors.Is(err, ErrUnauthorized):
		return ReasonUnauthorized, false
	case errors.Is(err, ErrUnavailable):
		return ReasonCoordinatorUnavailable, false
	case errors.Is(err, ErrConflict):
		return ReasonConflict, false
	case errors.As(err, &ae):
		switch ae.Status {
		case http.StatusUnprocessableEntity:
			return ReasonValidationFailed, true
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			return ReasonPushRejected, true
		}
		return ReasonError, false
	case errors.Is(err, errDownload):
		return ReasonDownloadFailed, false
	}
	return ReasonError, false
}

func (r *Reconciler) setCond(pm *v1alpha1.PetrelModel, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&pm.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: truncate(msg), ObservedGeneration: pm.Generation,
	})
}

// servingVersions lists the versions with traffic in a desired state.
func servingVersions(d *bus.Desired) []string {
	if d == nil {
		return nil
	}
	var out []string
	for _, v := range d.Versions {
		if v.Weight > 0 {
			out = append(out, v.Version)
		}
	}
	return out
}

// rolloutStatus converts a coordinator rollout (nil for none).
func rolloutStatus(ro *rollout.Rollout) *v1alpha1.RolloutStatus {
	if ro == nil {
		return nil
	}
	_, to := ro.Weights()
	rs := &v1alpha1.RolloutStatus{
		ID: ro.ID, State: string(ro.State), From: ro.Spec.From,
		Step: int32(ro.Step + 1), Steps: int32(len(ro.Spec.Steps)),
		Weight: strconv.FormatFloat(to, 'f', -1, 64) + "%", Reason: truncate(ro.Reason),
	}
	if !ro.Updated.IsZero() {
		// Seconds, as the API stores it: a status that round-trips equal
		// is not written again.
		t := metav1.NewTime(ro.Updated).Rfc3339Copy()
		rs.Updated = &t
	}
	return rs
}

func orNothing(v string) string {
	if v == "" {
		return "nothing (it was the model's first version)"
	}
	return "version " + v
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage] + "..."
}
