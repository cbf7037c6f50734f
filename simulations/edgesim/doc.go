// Package edgesim is the request-level simulator of the edge mesh: client
// requests from the world's metros, served by thousands of edge sites and
// a few central clusters, on the deterministic event engine of
// simulations/des and the geography of simulations/world. It drives the
// project's own decision code, not a re-implementation:
//
//   - routing.NewPolicy ("nearest", "p2c", "rendezvous") orders the peers
//     a request is forwarded to, over routing.Candidate values built as
//     node/forward.go builds them (RTT, in-flight and queued requests,
//     ready and healthy); routing.GeoRTT, routing.EstimateRTT and
//     routing.CoordinateClient (Vivaldi) supply the RTTs of the "geo" and
//     "coordinates" variants; routing.Place spreads the preloaded models;
//   - node/modelcache decides evictions (the same Victims the node's
//     manager calls) and admission (a doorkeeper);
//   - node/respcache is each node's response cache, keyed by
//     respcache.KeyFor as the node keys it;
//   - coordinator/georoute.Rank, the decision behind the coordinator's
//     GET /v1/route, answers routed clients (Config.Entry EntryRouted).
//
// # A request
//
//  1. A client of a metro (chosen by population, thinned by a diurnal
//     factor of its local hour) asks for a model (Zipf popularity) with
//     an input (repeating or unique) and sends it to one of its metro's
//     edge sites (the nearest ones when the metro has none): the metro
//     entry (EntryMetro).
//     With routed entry (EntryRouted) the client first takes a route
//     answer instead: clients are spread over a metro as its sites are, so a
//     client stands at a random site of its metro (its cell) and its
//     cache holds one answer per cell and model for RouteTTL. A miss
//     asks the coordinator: georoute.Rank over georoute.Node values as
//     the coordinator sees the nodes (location, Ready when the model is
//     loaded, Healthy unless known down, Load = in flight + queued as
//     last reported, at most every RouteReportInterval), from the
//     cell's location, Limit RouteLimit. The client sends the request to
//     the first ranked edge node (after FailoverTimeout on a dead one,
//     the next), which is then its entry. When the ranking
//     is empty, its best is central, or its best edge score exceeds the
//     cell's own GeoRTT plus RouteSlack, the client uses its cell's site
//     as the metro entry (step 2, where admission may load the model).
//     The answer's latency: with LookupPrefetched (default) zero, as
//     answers are fetched ahead of use and refreshed in the background;
//     with LookupRTT a miss waits one round trip from the client to the
//     nearest central cluster (the coordinator) before the request goes.
//     Result.RouteLookups counts the coordinator's answers.
//  2. The entry site answers from its response cache, else runs the
//     model if loaded and not overloaded (fewer than OverloadQueue
//     requests waiting), else forwards to the first peer of the policy's
//     order among the ready holders of its Neighbourhood (up to
//     PeerCandidates, loads as reported every LoadReportInterval), up to
//     MaxTries peers, else to the nearest central cluster (every model,
//     no queue). A miss also asks the admission policy whether to load
//     the model, from the nearest holder or from the origin.
//  3. A node executes requests FIFO on Slots slots, each taking the
//     model's service time (×Factor on a slow node). The answer goes back
//     the way it came and is cached at the entry.
//
// Faults: a crashed node loses what it holds; senders time out after
// FailoverTimeout and try elsewhere; everyone stops choosing it after
// DetectDelay. A partitioned region reaches no central cluster (no
// fallback, no origin). A flash crowd multiplies one metro's rate.
//
// Time is compressed: the run spans one day of the diurnal cycle, and its
// length follows from Requests and Utilisation (the mean busy share of
// the edge's slots), so that load, not wall-clock realism, is what the
// run has. Model loads still take size / bandwidth.
//
// The oracle of a request, the same with either entry, is the round trip from its client to the
// nearest site that holds the model (or the nearest central cluster, which
// holds all), with no queue, plus the service time, with the same jitter
// on the client's leg: the lowest latency physically possible given the
// geography and where the models are.
package edgesim
