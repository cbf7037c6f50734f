// Package rolloutsim simulates model rollouts and federated rounds at the
// scale of thousands of edge sites, driving the project's own code: the
// coordinator's canary state machine (coordinator/rollout), the node's
// weighted sticky traffic split (routing.Split), the coordinator–node
// contract (coordinator/bus) and the federated simulator
// (simulations/fedsim, which trains real models with package federated).
// Time is virtual (simulations/des) and every random draw is seeded, so a
// configuration always gives the same result.
//
// # Rollouts
//
// [RunRollout] builds a world (simulations/world: edge sites in real
// metros, central clusters in cloud regions, latency and bandwidth between
// them) in which every edge site serves version 1 of a model, and rolls
// version 2 out from the coordinator in the first central region:
//
//  1. The coordinator starts a rollout.Rollout (steps, interval, error-rate
//     and p99 thresholds, minimum requests) and publishes the desired
//     state of its weights (a validated bus.Desired, the old version first
//     and the new one last, as the coordinator writes it). Every decision
//     is published the same way.
//  2. Each site receives a desired state after the one-way latency from
//     the coordinator (world.Sample, with jitter) and reconciles after its
//     own delay (uniform in [0, ReconcileDelay], drawn once per site).
//     Like the node's control loop, a reconcile fetches and loads what is
//     wanted first and only then applies the split, and a state arriving
//     meanwhile is reconciled right after.
//  3. A site that lacks the artifact fetches it from its nearest central
//     cluster (the origin, whose egress is counted) or from a peer in its
//     metro that has it or is fetching it, whichever finishes first. Each
//     source's uplink is a queue (OriginBandwidth for an origin, the metro
//     link for a peer); a transfer also takes a round trip plus size over
//     the link's bandwidth. Loading takes LoadTime.
//  4. Each site serves Poisson(RequestRate) requests a second, each sent to
//     a version by its routing.Split (PickRandom); a request fails with the
//     version's error rate and takes a log-normal service time, counted in
//     the bus.LatencyBounds histogram. Every ReportInterval (at a random
//     phase per site) the site sends its cumulative bus.NodeStats, which
//     reach the coordinator after the one-way latency and go through a
//     rollout.Tracker into per-version deltas.
//  5. Every Tick the coordinator observes the pending deltas and ticks the
//     rollout; an advance, promotion or rollback is published (step 1).
//
// The run ends when the rollout is terminal and every site has applied
// its final desired state. The result has the decisions, a timeline of
// the sites holding the artifact, serving the new version at any weight
// and at 100 %, the time until all sites serve it at 100 %, and, for a
// bad version (Bad: a higher error rate and optionally slower), the time
// of the automatic rollback and until every site is back on the old
// version; plus origin egress and peer traffic.
//
// Not modelled: lost or reordered NATS messages beyond latency jitter,
// node crashes during the rollout, fetches from peers outside the metro,
// and contention on the receiving site's downlink.
//
// # Federated rounds with churn
//
// [RunChurn] runs one fedsim configuration (Fashion-MNIST by default) at
// several churn levels with everything else the same. A level p is the
// probability that a sampled client sends nothing in a round, split
// between clients offline at the start of the round and clients that drop
// out mid-round (fedsim.Churn); the result is the test accuracy per round
// at each level.
//
// # Outputs
//
// [WriteCSV] and [WritePlots] write a [Report] into a directory; the
// writer-level functions (WriteTimelineCSV, WriteSummaryCSV,
// WriteChurnCSV, PlotRollout, PlotRollback, PlotChurn) write one output
// to any io.Writer.
package rolloutsim
