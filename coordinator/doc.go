// Package coordinator is Petrel's control plane: the model registry with
// its validation gate, model sync to the nodes over NATS JetStream, canary
// rollouts with automatic rollback, shadow comparisons, the geo-routing
// API and the audit trail (docs/coordinator.md).
//
// State lives in NATS, not in the coordinator: artifacts in an object
// store, signed manifests, desired state and rollouts in KV buckets, the
// audit trail on a stream. A coordinator that crashes and restarts reads
// it back and carries on; nodes keep serving what they have meanwhile.
package coordinator
