// Package k8s holds Petrel's Kubernetes manifests (Kustomize: base/ and
// overlays/dev, overlays/production) and the tests that build and check
// them. It has no Go API: the package exists so that `go test ./...`
// runs those tests.
//
// The tests build every kustomization in-process with the Kustomize API,
// decode each object strictly into its Kubernetes API type (an unknown
// field or kind fails), and check the manifests against the petrel binary
// they run: every flag in a container's arguments is one the binary
// accepts, probes hit paths the binary serves on ports the container
// declares, Services and disruption budgets select real pods, the
// autoscaler targets the central tier with both a CPU and a queue-depth
// metric, every pod passes the restricted Pod Security Standard, and the
// NATS configuration is accepted by a real nats-server. See README.md for
// what is deployed and how.
package k8s
