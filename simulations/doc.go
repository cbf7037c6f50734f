// Package simulations holds Petrel's simulations at internet scale, each
// driving the project's own routing, cache, rollout, gossip and learning
// code (docs/simulations.md; `petrel sim`):
//
//   - des: the deterministic discrete-event engine (virtual clock);
//   - world: real metros, edge sites and central clusters, latency and
//     bandwidth;
//   - edgesim: requests across the edge mesh under traffic patterns and
//     faults, against an oracle;
//   - rolloutsim: canary rollouts and rollbacks across thousands of
//     sites, and federated rounds under client churn;
//   - gossipsim: the node's gossip mesh with 1,000+ members over an
//     in-memory network;
//   - fedsim: the federated learning benchmarks (`petrel fl bench`);
//   - netem, netns: delaying relays and network-namespace labs for the
//     real multi-process tests.
package simulations
