// Package operator is the Kubernetes operator of Petrel: a controller
// (controller-runtime) for the PetrelModel custom resource (api/v1alpha1,
// group petrel.dev) that pushes model versions to the coordinator and
// rolls them out through its management API, and a small client of that
// API (Client). `petrel operator` runs it (cmd/petrel/cmd_operator.go).
//
// # What a reconcile does
//
// For each PetrelModel (namespaced, short name pm):
//
//  1. Skip it when its status is final for its generation: phase Failed
//     (the spec cannot be carried out: invalid, a digest mismatch, a
//     version the validation gate rejected, a version that exists with
//     other artifacts) or RolledBack. A spec change (a new generation)
//     starts over.
//  2. Check the spec (ValidateSpec: the CRD schema's rules again, for
//     clients that bypass it, and the coordinator's rollout rules).
//  3. GET /v1/models/{m}/versions/{v}. If the registry has the version, its
//     digests must be the spec's (model, pre, post); otherwise download
//     each artifact (bounded: Config.MaxModelBytes, the coordinator's
//     transform and golden limits), check its SHA-256 against the spec
//     (a mismatch is Degraded/DigestMismatch, and nothing is pushed), and
//     push them as one multipart request, as `petrel model push` does. A
//     409 (pushed meanwhile) counts as pushed when the registry's digest
//     is the spec's. Condition Pushed.
//  4. GET /v1/models/{m} (desired state and latest rollout) and act on the
//     first of the cases below that holds.
//  5. Write the status (observedGeneration, phase, pushedVersion,
//     pushedDigest, rollout, conditions, lastError) when it changed.
//
// The cases of step 4, in order:
//
//   - A rollout of this version is in progress: pause or resume it to
//     match spec.paused, mirror it into status.rollout (Progressing, or
//     phase Paused); requeue after Config.PollInterval, paused rollouts
//     too, since the coordinator still rolls them back on a threshold.
//   - The version serves all traffic: apply spec.placement if it differs
//     (POST /v1/models/{m}/deploy of the same version); Ready.
//   - Its rollout was rolled back or aborted: Degraded with the
//     coordinator's reason, phase RolledBack (final; give a new version).
//   - Another version's rollout is in progress: wait (phase Pushed,
//     Progressing False/WaitingForRollout); requeue.
//   - spec.paused: hold (phase Paused); nothing is deployed.
//   - Nothing serves the model yet, or spec.rollout is absent: deploy the
//     version at once with the placement (POST .../deploy); Ready.
//   - Traffic is split between versions outside a rollout: wait
//     (TrafficSplit); requeue.
//   - One other version serves: apply the placement to it, start the
//     rollout (POST /v1/rollouts/{m} with spec.rollout and its defaults:
//     steps [10, 50, 100] %, 1m, max error rate 0.01) and track it.
//
// Transient failures (the coordinator unreachable or answering 5xx, a 401
// or 403, a failed download, a 409 race) set Degraded with a reason and
// lastError and return the error, so controller-runtime retries with
// backoff. The reconcile is idempotent: a pushed version is never pushed
// again, a started rollout is not started twice.
//
// # Deletion
//
// There is no finalizer: deleting a PetrelModel leaves the registry, the
// desired state and any rollout as they are (the version keeps serving).
// Remove a version with `petrel model rm`.
//
// # Generated files
//
// The deepcopy functions and the CRD (deploy/k8s/base/crds) are generated
// from api/v1alpha1 and the ClusterRole of deploy/k8s/base/operator-rbac.yaml
// from the rbac markers in reconciler.go, followed by rbac_extra.yaml (the
// ServiceAccount and ClusterRoleBinding); run `go generate
// ./coordinator/operator/...`. TestGeneratedFilesUpToDate fails when they
// are stale.
package operator

//go:generate sh -c "go tool controller-gen rbac:roleName=petrel-operator paths=. output:rbac:stdout > ../../deploy/k8s/base/operator-rbac.yaml && cat rbac_extra.yaml >> ../../deploy/k8s/base/operator-rbac.yaml"
