// Package coordinator will hold the control plane: model registry and
// sync over NATS JetStream, rollouts, geo-routing, federated rounds and
// the audit trail (see docs/ARCHITECTURE.md). It is empty until the
// coordinator issue lands.
package coordinator
