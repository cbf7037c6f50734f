// Package mesh is a Petrel node's gossip membership, built on
// hashicorp/memberlist (SWIM with Lifeguard). Each node advertises compact
// metadata (role, region, location, service addresses, load and a digest
// of its model catalog), exchanges full catalogs in push/pull state,
// measures network coordinates from probe round trips, and keeps a peer
// table that the forwarding and routing code read through Peers.
//
// # Lifecycle
//
// New validates a Config, binds the gossip port and starts a one-node
// mesh; Join merges it with others through any member's address. Shutdown
// stops at once: peers detect a failure. Leave departs gracefully and then
// shuts down; Shutdown may be called any number of times, also after
// Leave.
//
// memberlist's event callbacks do not say whether a node left or failed
// (the Node they pass always reads StateAlive). So Leave first
// re-advertises the metadata with a leaving flag and sends a leave notice
// (a user message over TCP, memberlist SendReliable) straight to every
// live peer, waits for the flagged metadata's gossip to finish its
// retransmissions, and only then sends memberlist's leave. A peer that sees
// the node go records StateLeft if it got the notice or the flag, else
// StateDead: only a peer the leaving node could not reach at all records
// a failure. Peer.Leaving is set from the notice or the flag, so routers
// stop sending new work to a node as soon as it starts to leave.
//
// # Metadata
//
// memberlist carries at most memberlist.MetaMaxSize (512) bytes of
// metadata per node and panics beyond it, so the metadata is a fixed
// binary layout (see meta.go) whose variable fields are bounded when the
// Config is validated: MaxNodeIDLen (64), MaxRegionLen (32) and MaxAddrLen
// (64) bytes. The worst case is 263 bytes, which leaves room for later
// versions. Latitude and longitude are fixed point at 1e-7 degree (about
// 1 cm) in int32s. The first byte is a version; decoding is strict (unknown
// version, role or flag bits, truncation, trailing bytes, invalid UTF-8 or
// out-of-range fields are errors), and a node whose metadata does not
// decode, or names another node, is kept out of the peer table and logged.
// It still takes part in memberlist's failure detection, so a newer node
// with a metadata version this one does not know degrades to "not routable
// from here" rather than splitting the cluster. A future version must
// therefore be rolled out by first deploying decoders for it everywhere.
//
// The load in the metadata (in-flight requests and queue depth) and the
// catalog digest change at run time. The owner calls NotifyChanged; a
// single update loop re-reads the StateSource at most once per
// Config.UpdateInterval (DefaultUpdateInterval, 200 ms), coalescing bursts,
// and calls memberlist's UpdateNode only when the encoded metadata changed.
// Every update is an alive broadcast to the whole cluster, so the interval
// bounds gossip load: about RetransmitMult*log(N+1) packets per update.
//
// # Catalogs
//
// The full Catalog does not fit in metadata. The metadata carries its
// Digest (xxhash64 of the entries in canonical order) and Generation; the
// catalog itself travels in two ways:
//
//   - Push/pull state (Delegate.LocalState and MergeRemoteState), at
//     memberlist's PushPullInterval and on join. A node's state holds its
//     own catalog first and then the current catalogs it holds for other
//     live nodes, most recently received first, up to MaxStateBytes
//     (1 MiB). Relaying makes a catalog reach everyone in a few push/pull
//     rounds instead of waiting for a direct exchange with its owner,
//     which takes N/2 rounds on average in an N-node cluster.
//   - Gossip broadcasts (a versioned user message, see wire.go, through a
//     memberlist.TransmitLimitedQueue), when the catalog's message fits in
//     MaxBroadcastBytes (1 KiB, well within a UDP packet after memberlist's
//     framing and encryption overhead). Receivers that learn something new
//     re-broadcast it, so small catalogs spread at gossip speed.
//
// The metadata is the authority: a received catalog is accepted for a peer
// only if its generation and digest equal those in the peer's current
// metadata. One that is newer than the metadata (the broadcast overtook
// the metadata update) is held, one per peer, until the metadata catches
// up. Peer.Catalog is the latest accepted catalog and may lag;
// Peer.CatalogCurrent says whether it is the one the metadata names.
//
// A catalog holds at most MaxCatalogEntries (4096) entries with names of
// at most MaxModelNameLen (128) bytes and versions of at most
// MaxModelVersionLen (64) bytes, so that the largest valid catalog encodes
// to about 940 KiB and always fits in one push/pull state. Encodings are
// canonical (entries sorted, digests as raw bytes), so a decoder can
// demand sorted, unique entries. State larger than MaxStateBytes, or
// invalid in any way, is logged and dropped as a whole.
//
// # Network coordinates
//
// As in Serf, the ping delegate puts this node's routing.Coordinate in
// every probe ack (AckPayload), and on every completed direct probe
// (NotifyPingComplete) decodes the peer's coordinate, feeds it with the
// measured round trip to routing.CoordinateClient.Update and stores it
// with the raw RTT in the peer table. Peers estimates each peer's RTT with
// routing.EstimateRTT, which prefers converged coordinates and falls back
// to geography. Invalid payloads are logged and dropped; peers that send
// no payload simply have no coordinate.
//
// # Peer states and events
//
// StateAlive, StateDead and StateLeft follow memberlist's events. memberlist
// has no callback for suspicion, so StateSuspect is this node's own view:
// it is entered when memberlist logs that this node's probe of the peer
// failed (the log line that precedes memberlist's suspicion; see
// logBridge), and left when a later direct probe or a direct ping from the
// maintenance loop (every probe interval) succeeds, when the peer's
// metadata changes, or when it is declared dead. Suspicion gossiped by
// other nodes is not visible. Treat StateSuspect as "unreachable from
// here, pending a verdict".
//
// Subscribe delivers EventJoin, EventUpdate (metadata, catalog or
// suspicion change) and EventLeave. Delivery never blocks memberlist:
// memberlist calls the event delegate with its node lock held, so an event
// that does not fit in a subscriber's buffer (Config.EventBuffer) is
// dropped and counted in DroppedEvents. Consumers that need the exact
// state should treat events as hints and read Peers.
//
// Dead and left peers stay in the table, with their state, for
// Config.ReapTimeout (DefaultReapTimeout, 10 minutes).
//
// # Security and key rotation
//
// Gossip is encrypted and authenticated with AES-GCM using memberlist's
// keyring; Config.SecretKeys[0] is the primary (encrypting) key and every
// installed key is tried for decryption. Running without a key requires
// DevMode. A node without a key the cluster uses cannot join it: its
// packets and streams fail authentication and are dropped.
//
// Keys are rotated on a running mesh without losing membership in three
// steps, each completed on every node before the next starts:
//
//  1. InstallKey(new) on every node. All nodes now decrypt both keys.
//  2. UseKey(new) on every node. Nodes encrypt with the new key; nodes not
//     yet switched still decrypt it.
//  3. RemoveKey(old) on every node.
//
// Update each node's configured SecretKeys (new key first) so that a
// restart keeps the new keyring. ListKeys shows a node's keyring.
//
// # Convergence benchmark
//
// BenchmarkConvergence starts 50 nodes on loopback with memberlist's LAN
// defaults (no shortened intervals), joins a new node through one of them
// and measures how long it takes until all 50 have seen it join; then it
// shuts the new node down hard and measures how long it takes until all 50
// mark it dead. It reports the median, 99th percentile and slowest
// observer of both, in milliseconds (join-p50-ms ... dead-all-ms), for
// comparison with Serf's convergence model (about 1.4 s for 99 % of a
// 100-node LAN cluster to see an event). Reproduce with:
//
//	go test -run '^$' -bench BenchmarkConvergence -benchtime 1x -timeout 10m ./node/mesh/
//
// Failure detection dominates: at LAN defaults the suspicion timeout alone
// is 4*log10(50)*1s, about 6.8 s, before confirmations accelerate it. Two
// runs on a shared 2-core machine: the join was seen by all 50 nodes within
// 0.36 to 0.40 s (median 0.24 to 0.28 s), the failure marked by all within
// 8.0 to 8.9 s.
package mesh
