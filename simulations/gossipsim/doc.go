// Package gossipsim measures the project's gossip layer at scale: a
// thousand or more node/mesh members (hashicorp/memberlist as node/mesh
// configures it, with its delegates, metadata, catalogs in push/pull state
// and Vivaldi coordinates) in one process, over an in-memory network with
// geographic latency, jitter and packet loss.
//
// # What runs
//
// Every member is a real *mesh.Mesh built by mesh.New from a mesh.Config
// with the chosen Profile (LAN by default), an AES-256-GCM keyring (as
// production requires; Config.Plaintext turns it off), an edge role, a
// region and location, and a catalog of Config.CatalogModels models. The
// only thing the simulator changes is memberlist's Transport, installed
// through mesh.Config.Tune (the hook node/mesh offers for memberlist
// settings; node/mesh needed no new seam), together with the time scaling
// below. Memberlist's own timing (probe, gossip and push/pull intervals,
// suspicion multipliers, retransmissions) is the profile's.
//
// # The network
//
// The transport implements memberlist.NodeAwareTransport. Each member has
// an address 10.x.y.z:7946 and is placed in one of Network.Regions in
// proportion to the regions' weights. A packet (UDP) from a to b is
// delivered after Base + great-circle distance × RouteInflation / KmPerMs
// (routing.HaversineKm) + both members' last-mile delays + uniform jitter,
// or lost with probability Loss; a full receive queue drops it too. A
// stream (TCP) connects after one round trip and delivers every write
// after the one-way delay, in order and without loss; a killed member's
// streams and packets vanish and dials to it time out. Every member counts
// the packets and bytes it sends, receives and loses, and the stream
// bytes it sends and receives (memberlist's payloads after compression
// and encryption, without IP headers).
//
// DefaultNetwork is one regional gossip pool (eight European metros, one
// way 1-25 ms, 0.5 % loss), which is how docs/ARCHITECTURE.md scales the
// mesh (LAN gossip per region, a WAN pool between regions); WorldNetwork
// puts one flat pool on every continent as a worst case.
//
// # Time
//
// memberlist runs on real timers, so a run takes real time: simulated time
// is the wall time of the run. Config.TimeScale stretches it: every
// memberlist interval and timeout, node/mesh's update interval and every
// network delay is multiplied by TimeScale, and measured durations are
// divided by it (rates multiplied) before they are reported. The protocol
// is invariant under this scaling (all its clocks scale together), so the
// figures are those of a real deployment with the profile's timing,
// provided the process keeps up; Result.SchedulerLag (how late a 10 ms
// ticker fired during the measurements) says whether it did. Interval
// changes in a deployment scale the figures linearly: halving every
// interval halves every convergence time and doubles the probe traffic.
//
// Because of the real clock and goroutine scheduling, and because
// memberlist draws probe order and gossip targets from its own global
// generator, runs are not bit-for-bit reproducible; Config.Seed fixes
// everything the simulator itself draws (placement, delays, loss, the
// seed member and the victim).
//
// # A run
//
//  1. Bootstrap: Members members join through member 0, JoinParallel at a
//     time; members still missing peers after five probe intervals push/pull
//     with member 0 again. Formation ends when every member lists every
//     other (Result.Bootstrap).
//  2. Settle: forming a cluster makes each member broadcast an alive
//     message about every other, N² messages each retransmitted
//     RetransmitMult·⌈log10(N+1)⌉ times; the run waits until the members
//     send at most 4 packets per probe interval (a settled member sends
//     about 2) for two consecutive windows (Result.Settled).
//  3. Bandwidth: every member's traffic over BandwidthWindow. memberlist
//     starts every member's push/pull timer when the member starts, so a
//     freshly formed cluster runs its periodic push/pulls in a burst and
//     the window usually sees none; Bandwidth.SteadySentMean adds them
//     back from one measured state size and memberlist's period (see
//     Bandwidth).
//  4. Join: one more member calls mesh.Join with one seed; Result.Join
//     holds, for each existing member, when its mesh first reported the
//     new member (a mesh.EventJoin's time).
//  5. Failure: one member's transport becomes a black hole and its mesh
//     shuts down without a leave; Result.Failure holds when each other
//     member's mesh reported it dead.
//
// Result.WriteCSV and Result.WritePlot write the curves, per-member
// bandwidth and a summary; BenchmarkGossip1000 runs the 1,000-member case.
package gossipsim
