package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PetrelModel is one version of a model to push to the Petrel
// coordinator's registry and roll out to the mesh. The operator downloads
// the artifacts named in the spec, checks their SHA-256 digests, pushes
// them (as `petrel model push` does), applies the placement and starts a
// canary rollout, then mirrors the rollout's progress into the status.
//
// Changing spec.version (with new artifacts) rolls out a new version;
// versions are immutable in the registry. Deleting a PetrelModel leaves the
// registry, the desired state and any rollout as they are.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=pm,categories=petrel
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.spec.model`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Weight",type=string,JSONPath=`.status.rollout.weight`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PetrelModel struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the version wanted and how to roll it out.
	// +required
	Spec PetrelModelSpec `json:"spec"`
	// Status is what the operator last saw.
	// +optional
	Status PetrelModelStatus `json:"status,omitempty"`
}

// PetrelModelList is a list of PetrelModels.
//
// +kubebuilder:object:root=true
type PetrelModelList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PetrelModel `json:"items"`
}

// PetrelModelSpec is the model version to serve.
type PetrelModelSpec struct {
	// Model is the model's name in the registry: 1-128 letters, digits,
	// '_', '.', '-', starting with a letter or digit. It cannot change.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="model is immutable; create another PetrelModel"
	// +required
	Model string `json:"model"`
	// Version is the version to push and serve: 1-64 letters, digits, '_',
	// '.', '-', starting with a letter or digit. Registry versions are
	// immutable: a new artifact needs a new version.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`
	// +required
	Version string `json:"version"`
	// Artifact names the files of the version.
	// +required
	Artifact Artifact `json:"artifact"`
	// Labels are the version's labels (the push's "labels" part).
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$'))",message="label keys: 1-63 letters, digits, '_', '.', '/', '-'"
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// AllowBreaking accepts a signature incompatible with the previous
	// version's (the push's "allow_breaking" part).
	// +optional
	AllowBreaking bool `json:"allowBreaking,omitempty"`
	// Rollout is the canary policy. When absent, the version is deployed
	// with all traffic at once (POST /v1/models/{model}/deploy). A first
	// deployment of a model (nothing serving yet) is always direct: a
	// canary has nothing to fall back to.
	// +optional
	Rollout *RolloutPolicy `json:"rollout,omitempty"`
	// Placement says which nodes serve the model. When absent, the
	// coordinator's current placement is kept.
	// +optional
	Placement *Placement `json:"placement,omitempty"`
	// Paused holds the version back: it is pushed but not deployed or
	// rolled out, and a rollout of it in progress is paused (the
	// coordinator still rolls back on a threshold). Setting it false
	// resumes.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// Artifact names the files of a version, each with its SHA-256 digest.
type Artifact struct {
	// Model is the ONNX file.
	// +required
	Model RemoteFile `json:"model"`
	// Golden is a golden examples file (JSON) the version must reproduce
	// (the push's "golden" part).
	// +optional
	Golden *RemoteFile `json:"golden,omitempty"`
	// Pre is the pre-processing WebAssembly transform (request body to
	// input tensors).
	// +optional
	Pre *TransformFile `json:"pre,omitempty"`
	// Post is the post-processing WebAssembly transform (output tensors to
	// response body).
	// +optional
	Post *TransformFile `json:"post,omitempty"`
}

// RemoteFile is a file the operator downloads, and the digest it must
// have.
type RemoteFile struct {
	// URL is where the file is: http or https.
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	// +kubebuilder:validation:MaxLength=2048
	// +required
	URL string `json:"url"`
	// SHA256 is the file's SHA-256 digest: 64 lower-case hex digits (what
	// sha256sum prints). A download with another digest is not pushed.
	// +kubebuilder:validation:Pattern=`^[a-f0-9]{64}$`
	// +required
	SHA256 string `json:"sha256"`
}

// Grant is a capability a transform may use beyond pure computation.
// +kubebuilder:validation:Enum=clock;random
type Grant string

// Transform grants.
const (
	GrantClock  Grant = "clock"
	GrantRandom Grant = "random"
)

// TransformFile is a WebAssembly transform and its grants.
type TransformFile struct {
	RemoteFile `json:",inline"`
	// Grants are the capabilities the module may use (none by default).
	// +kubebuilder:validation:MaxItems=2
	// +listType=set
	// +optional
	Grants []Grant `json:"grants,omitempty"`
}

// RolloutPolicy mirrors the body of the coordinator's POST
// /v1/rollouts/{model}.
type RolloutPolicy struct {
	// Steps are the new version's traffic share in percent at each step:
	// strictly increasing, each in [1, 100], the last 100. Default
	// [10, 50, 100].
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=100
	// +kubebuilder:validation:XValidation:rule="self[size(self)-1] == 100",message="the last step must be 100"
	// +kubebuilder:validation:XValidation:rule="self.isSorted() && self.all(x, self.exists_one(y, y == x))",message="steps must strictly increase"
	// +listType=atomic
	// +optional
	Steps []int32 `json:"steps,omitempty"`
	// Interval is the least time at each step: at least 1s. Default 1m.
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`
	// MaxErrorRate rolls back when the new version's share of failed
	// requests at a step exceeds it: a decimal fraction in [0, 1] such as
	// "0.01" (1 %). "1" disables the check. Default "0.01".
	// +kubebuilder:validation:Pattern=`^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$`
	// +optional
	MaxErrorRate string `json:"maxErrorRate,omitempty"`
	// MaxP99 rolls back when the new version's 99th percentile latency at
	// a step exceeds it. Absent or 0: no latency check.
	// +optional
	MaxP99 *metav1.Duration `json:"maxP99,omitempty"`
	// MinRequests is how many requests the new version must serve at a
	// step before it is judged; 0 means the coordinator's default (20).
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinRequests int64 `json:"minRequests,omitempty"`
}

// Placement mirrors the placement of POST /v1/models/{model}/deploy.
type Placement struct {
	// Regions that serve the model; empty means every region.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`
	// +listType=set
	// +optional
	Regions []string `json:"regions,omitempty"`
	// Labels a node must have to serve the model; empty means any node.
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$'))",message="label keys: 1-63 letters, digits, '_', '.', '/', '-'"
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// MinReplicasPerRegion is the replicas per region the coordinator
	// checks and warns about (it does not start nodes).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	MinReplicasPerRegion int32 `json:"minReplicasPerRegion,omitempty"`
}

// Phase summarises a PetrelModel's state.
// +kubebuilder:validation:Enum=Pending;Pushed;Progressing;Paused;Ready;RolledBack;Failed
type Phase string

// Phases of a PetrelModel.
const (
	// PhasePending: nothing is done yet, or the coordinator could not be
	// reached.
	PhasePending Phase = "Pending"
	// PhasePushed: the version is in the registry, waiting (for another
	// rollout of the model to end, for example).
	PhasePushed Phase = "Pushed"
	// PhaseProgressing: a rollout of the version is stepping.
	PhaseProgressing Phase = "Progressing"
	// PhasePaused: spec.paused holds the version or its rollout.
	PhasePaused Phase = "Paused"
	// PhaseReady: the version serves all of the model's traffic.
	PhaseReady Phase = "Ready"
	// PhaseRolledBack: the rollout was rolled back (or aborted); traffic
	// is on the previous version.
	PhaseRolledBack Phase = "RolledBack"
	// PhaseFailed: the spec cannot be carried out as it is (an invalid
	// spec, a digest mismatch, a version the validation gate rejected);
	// the operator tries again when the spec changes.
	PhaseFailed Phase = "Failed"
)

// Condition types of a PetrelModel.
const (
	// ConditionPushed: the version is in the coordinator's registry with
	// the spec's digest.
	ConditionPushed = "Pushed"
	// ConditionProgressing: a rollout of the version is in progress.
	ConditionProgressing = "Progressing"
	// ConditionReady: the version serves all of the model's traffic.
	ConditionReady = "Ready"
	// ConditionDegraded: something is wrong; the reason says what.
	ConditionDegraded = "Degraded"
)

// PetrelModelStatus is what the operator last saw.
type PetrelModelStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase summarises the conditions.
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// PushedVersion and PushedDigest are the version found in (or pushed
	// to) the registry and its model file's digest ("sha256:<hex>").
	// +optional
	PushedVersion string `json:"pushedVersion,omitempty"`
	// +optional
	PushedDigest string `json:"pushedDigest,omitempty"`
	// Rollout is the coordinator's rollout of the version, if any.
	// +optional
	Rollout *RolloutStatus `json:"rollout,omitempty"`
	// Conditions are Pushed, Progressing, Ready and Degraded.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LastError is the last error met, empty after a reconcile without one.
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// RolloutStatus mirrors the coordinator's GET /v1/rollouts/{model}.
type RolloutStatus struct {
	// ID is the coordinator's rollout id.
	ID string `json:"id"`
	// State is running, paused, promoted, rolled_back or aborted.
	State string `json:"state"`
	// From is the version the rollout moves traffic from ("" for none).
	// +optional
	From string `json:"from,omitempty"`
	// Step is the current step, counted from 1, of Steps.
	Step int32 `json:"step"`
	// Steps is the number of steps.
	Steps int32 `json:"steps"`
	// Weight is the new version's traffic share now, e.g. "10%".
	Weight string `json:"weight"`
	// Reason is the coordinator's reason for the state (why it rolled
	// back, what it waits for).
	// +optional
	Reason string `json:"reason,omitempty"`
	// Updated is when the rollout last changed.
	// +optional
	Updated *metav1.Time `json:"updated,omitempty"`
}
