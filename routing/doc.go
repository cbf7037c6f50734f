// Package routing is Petrel's pure decision code: how far away a peer is,
// which node should serve a request, where a model should be placed, and
// when to retry, hedge, eject or stop calling. It opens no sockets, reads no
// files and owns no goroutines beyond a call; observations and time come in
// as arguments (clocks are injectable), decisions come out. That is what lets
// node/ and coordinator/ use it live and simulations/ drive the same code at
// world scale. The only dependency beyond the standard library is
// github.com/cespare/xxhash/v2.
//
// # Distance: coordinates, then geography, then a constant
//
// Each node runs a CoordinateClient, a reimplementation of hashicorp/serf's
// Vivaldi client (Dabek et al. 2004, with the height vector, adjustment
// window, per-peer moving-median latency filter and gravity of Ledlie et al.
// 2007 and Lee et al. 2010) with serf's defaults (DefaultCoordinateConfig:
// 8 dimensions, ce = cc = 0.25, error cap 1.5, ...). It differs from serf
// where Petrel's inputs are less trusted: Update and SetCoordinate reject a
// nil, NaN, infinite, out-of-range or negative-error coordinate and an RTT
// outside (0, MaxObservedRTT] with an error, leaving all state unchanged
// (serf accepts a zero RTT); DistanceTo never panics (incompatible input
// gives UnknownRTT); and the random direction used to separate coincident
// nodes comes from a per-client seeded source (NewCoordinateClientSeeded),
// so simulations are reproducible.
//
// Coordinates travel in memberlist ping payloads in a fixed little-endian
// layout (Coordinate.MarshalBinary): a version byte (CoordinateVersion), a
// dimensionality byte (1..MaxDimensionality), then Vec, Error, Adjustment
// and Height as float64 — 90 bytes for 8 dimensions. The decoder checks the
// version, the dimensionality, the exact length, finiteness, magnitude
// (MaxCoordinateComponent, which keeps every distance far from overflowing
// time.Duration) and the signs of Error and Height; the encoder refuses what
// the decoder would reject, so every accepted encoding is canonical.
//
// A fresh coordinate is meaningless until it has seen a few peers, so
// EstimateRTT uses coordinates only when both ends have an Error below
// ConvergedCoordinateError (0.75, half the default cap: a 75 % relative
// error is where a geographic guess starts to win). Before that it falls
// back to geography: GeoRTT is the great-circle distance (HaversineKm) at
// FibreKmPerMs (200 km/ms, light in fibre), times GeoPathInflation (1.5, real
// cable routes against the great circle), there and back, plus GeoRTTFloor
// (2 ms of access links and stacks). Without usable locations either, the
// answer is UnknownRTT (250 ms, a typical intercontinental round trip, so an
// unmeasured peer never outranks a known-near one). A Location's zero value,
// 0°N 0°E, means "unset": that point is open ocean, and the convention keeps
// Location a plain JSON pair.
//
// # Choosing a node
//
// Score turns a Candidate into one number, in milliseconds:
// RTT + (InFlight + QueueDepth) × serviceTime, the time to the first byte if
// the node drains its queue one request at a time. A Policy orders the
// eligible candidates (Ready and Healthy); the first is the pick and the rest
// the failover and hedging order:
//
//   - "nearest" sorts by Score. Best for few deciders.
//   - "p2c", the power of two choices (Mitzenmacher), picks the better of two
//     random eligible candidates, then the rest by Score. Many independent
//     deciders do not stampede the single best node, yet the pick is never
//     the worst one.
//   - "rendezvous" is highest-random-weight hashing on xxhash(key NUL ID),
//     so a model keeps hitting the same node (warm caches, fuller batches),
//     with bounded load (Mirrokni, Thorup, Zadimoghaddam 2017): a node with
//     no room under ⌈(1+ε)(L+1)/n⌉ moves to the back. With ε =
//     DefaultLoadEpsilon (0.25) no node carries more than 25 % above the
//     mean (rounded up), and adding a node moves about 1.1× the minimal
//     1/(n+1) of keys in the package's tests.
//
// Place applies the same bounded-load rendezvous hashing to model placement
// (replicas on Healthy nodes, Ready or not). Orders are deterministic: ties
// break by ID and then index, and p2c draws from a source seeded by
// PolicyOptions.Seed (or PolicyOptions.Rand).
//
// # Failing well
//
//   - RetryBudget (Finagle and Linkerd style): each original request deposits
//     ratio of a retry, each retry or hedge withdraws one, deposits and
//     withdrawals expire after a TTL (a sliding window of ten slices), and a
//     reserve of minPerSecond × TTL keeps quiet clients able to retry. It caps
//     the extra load retries can add to a struggling backend.
//   - LatencyTracker and HedgeDelay turn recent latencies into a hedging
//     delay: a tail quantile (nearest rank over a bounded window, once
//     MinLatencySamples have arrived) clamped to [min, max].
//   - Hedge runs attempts as hedged requests ("The Tail at Scale"): the next
//     attempt starts when the latest one is slower than the delay or fails,
//     budget permitting; the first success wins and the others are cancelled
//     and waited for, so no goroutine outlives the call.
//   - OutlierDetector (Envoy style) ejects a host after ConsecutiveFailures
//     failures in a row for BaseEjection × its ejection count (capped at
//     MaxEjection, earned back while healthy), never ejecting more than
//     MaxEjectedPercent of known hosts: when many fail at once, the fault is
//     probably not theirs.
//   - CircuitBreaker: closed → open after FailureThreshold consecutive
//     failures, open → half-open after OpenFor, half-open → closed after
//     HalfOpenProbes successful probes or back to open on any failure.
//     Reports from before a state change are ignored, and a half-open round
//     whose probes never report restarts after OpenFor.
//
// Every type with state is safe for concurrent use. Configuration structs
// take their defaults from zero fields; invalid coordinate configurations
// and policy options are errors, while the retry budget and the ejection and
// breaker settings clamp out-of-range values, as documented on each.
package routing
