package edgesim

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/petrel-mesh/petrel/simulations/des"
)

// Result is the outcome of one run. Latencies are client-observed, from
// the client sending a request to it holding the answer, over the
// requests that were answered; failed requests are counted apart.
type Result struct {
	// Name, Scenario, Policy and Entry (EntryMetro or EntryRouted) label
	// the run.
	Name, Scenario, Policy, Entry string
	// Sites is the number of edge sites, Models the catalogue size.
	Sites, Models int
	// Requests is the number of requests generated.
	Requests int
	// Events is the number of simulation events run; Simulated the
	// simulated time at the end.
	Events    uint64
	Simulated des.Time

	// P50, P95 and P99 are the answered requests' latency percentiles.
	P50, P95, P99 time.Duration
	// OracleP50 and OracleP99 are the percentiles of the per-request
	// oracle: the round trip to the nearest site (edge or central, no
	// queue, model loaded) plus the service time, with the same jitter
	// on the client's leg.
	OracleP50, OracleP99 time.Duration
	// P99OverOracle is P99 / OracleP99.
	P99OverOracle float64
	// GeoBoundP99 is the p99 of a looser bound: the round trip to the
	// nearest site of any kind, as if every site had every model.
	GeoBoundP99 time.Duration
	// FlashRequests counts the requests of the flash metro during the
	// flash crowd; FlashP99 is their p99 latency (zero without one).
	FlashRequests int
	FlashP99      time.Duration

	// Local, Peer, Central and Failed count where requests were served
	// (Local includes response-cache hits at the entry site).
	Local, Peer, Central, Failed int

	// RespHits / RespLookups is the response cache hit ratio at entry
	// sites; ModelHits / ModelLookups the model cache's (requests that
	// missed the response cache and found the model loaded at the entry).
	RespHits, RespLookups   int
	ModelHits, ModelLookups int
	// ModelLoads is the number of models loaded during the run;
	// Evictions the models evicted (including during preload).
	ModelLoads, Evictions int
	// OriginEgressBytes are model bytes fetched from the central origin;
	// PeerTransferBytes from peers.
	OriginEgressBytes, PeerTransferBytes int64
	// RouteLookups counts the route queries clients sent to the
	// coordinator (georoute.Rank calls: route-cache misses); Routed the
	// requests sent first to a ranked node rather than the metro entry
	// (routed entry only).
	RouteLookups, Routed int
	// Crashes is the number of node crashes.
	Crashes int
	// CoordinateError is the median relative error of the Vivaldi RTT
	// estimates (coordinates policy only).
	CoordinateError float64

	// Series is the run in time buckets (by request start).
	Series []Bucket

	// latencies and oracle are sorted answered latencies in ms, for plots.
	latencies, oracle []float64
}

// Bucket is one time slice of a run.
type Bucket struct {
	// Start is the bucket's start in simulated time.
	Start des.Time
	// Requests started in the bucket, and how many failed.
	Requests, Failed int
	// P50 and P99 of the answered ones; EdgeShare of all served at the
	// edge (local or peer).
	P50, P99  time.Duration
	EdgeShare float64
}

// EdgeShare is the share of requests served at the edge (local or peer).
func (r *Result) EdgeShare() float64 { return ratio(r.Local+r.Peer, r.Requests) }

// Share returns the shares of requests served locally, by a peer, by the
// centre and failed.
func (r *Result) Share() (local, peer, central, failed float64) {
	return ratio(r.Local, r.Requests), ratio(r.Peer, r.Requests), ratio(r.Central, r.Requests), ratio(r.Failed, r.Requests)
}

// RespHitRatio is the response cache hit ratio.
func (r *Result) RespHitRatio() float64 { return ratio(r.RespHits, r.RespLookups) }

// ModelHitRatio is the model cache hit ratio at entry sites.
func (r *Result) ModelHitRatio() float64 { return ratio(r.ModelHits, r.ModelLookups) }

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// result assembles the Result from the per-request records.
func (x *sim) result() *Result {
	res := x.res
	res.Requests = len(x.lat)
	res.CoordinateError = x.coordErr
	lat := make([]float64, 0, len(x.lat))
	orc := make([]float64, 0, len(x.lat))
	geo := make([]float64, 0, len(x.lat))
	var flash []float64
	nb := x.cfg.Buckets
	per := make([][]float64, nb)
	counts := make([]Bucket, nb)
	for i, l := range x.lat {
		b := x.bkt[i]
		counts[b].Requests++
		k := x.kind[i] &^ flashFlag
		if x.kind[i]&flashFlag != 0 {
			res.FlashRequests++
			if k != servedFailed {
				flash = append(flash, float64(l))
			}
		}
		switch k {
		case servedLocal:
			res.Local++
		case servedPeer:
			res.Peer++
		case servedCentral:
			res.Central++
		case servedFailed:
			res.Failed++
			counts[b].Failed++
			continue
		}
		if k == servedLocal || k == servedPeer {
			counts[b].EdgeShare++
		}
		lat = append(lat, float64(l))
		orc = append(orc, float64(x.orc[i]))
		geo = append(geo, float64(x.geo[i]))
		per[b] = append(per[b], float64(l))
	}
	slices.Sort(lat)
	slices.Sort(orc)
	slices.Sort(geo)
	slices.Sort(flash)
	res.GeoBoundP99 = dur(quantile(geo, 0.99))
	res.FlashP99 = dur(quantile(flash, 0.99))
	res.latencies, res.oracle = lat, orc
	res.P50, res.P95, res.P99 = dur(quantile(lat, 0.5)), dur(quantile(lat, 0.95)), dur(quantile(lat, 0.99))
	res.OracleP50, res.OracleP99 = dur(quantile(orc, 0.5)), dur(quantile(orc, 0.99))
	if res.OracleP99 > 0 {
		res.P99OverOracle = float64(res.P99) / float64(res.OracleP99)
	}
	res.Series = make([]Bucket, nb)
	for b := range nb {
		slices.Sort(per[b])
		c := counts[b]
		res.Series[b] = Bucket{
			Start:    des.Time(float64(b) * float64(x.dur) / float64(nb)),
			Requests: c.Requests, Failed: c.Failed,
			P50: dur(quantile(per[b], 0.5)), P99: dur(quantile(per[b], 0.99)),
			EdgeShare: ratio(int(c.EdgeShare), c.Requests),
		}
	}
	return res
}

// quantile of sorted xs by the nearest-rank method; 0 when empty.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

func dur(msv float64) time.Duration { return time.Duration(msv * float64(time.Millisecond)) }

// SummaryHeader is the header of the summary CSV row.
var SummaryHeader = []string{
	"name", "scenario", "policy", "sites", "models", "requests", "events", "simulated_s",
	"p50_ms", "p95_ms", "p99_ms", "oracle_p50_ms", "oracle_p99_ms", "p99_over_oracle", "geo_bound_p99_ms", "flash_requests", "flash_p99_ms",
	"local", "peer", "central", "failed", "edge_share",
	"resp_hit_ratio", "model_hit_ratio", "model_loads", "evictions",
	"origin_egress_bytes", "peer_transfer_bytes", "crashes", "coordinate_error",
	"entry", "route_lookups", "routed",
}

// SummaryRow returns the summary CSV row of r, in SummaryHeader's order.
func (r *Result) SummaryRow() []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }
	d := func(v time.Duration) string { return f(ms(v)) }
	i := func(v int) string { return strconv.Itoa(v) }
	return []string{
		r.Name, r.Scenario, r.Policy, i(r.Sites), i(r.Models), i(r.Requests),
		strconv.FormatUint(r.Events, 10), f(r.Simulated.Seconds()),
		d(r.P50), d(r.P95), d(r.P99), d(r.OracleP50), d(r.OracleP99), f(r.P99OverOracle), d(r.GeoBoundP99), i(r.FlashRequests), d(r.FlashP99),
		i(r.Local), i(r.Peer), i(r.Central), i(r.Failed), f(r.EdgeShare()),
		f(r.RespHitRatio()), f(r.ModelHitRatio()), i(r.ModelLoads), i(r.Evictions),
		strconv.FormatInt(r.OriginEgressBytes, 10), strconv.FormatInt(r.PeerTransferBytes, 10),
		i(r.Crashes), f(r.CoordinateError),
		r.Entry, i(r.RouteLookups), i(r.Routed),
	}
}

// WriteCSV writes NAME.csv (the summary row under SummaryHeader) and
// NAME-series.csv (the time buckets) into dir, creating dir if needed.
func (r *Result) WriteCSV(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("edgesim: %w", err)
	}
	if err := writeCSV(filepath.Join(dir, r.Name+".csv"), [][]string{SummaryHeader, r.SummaryRow()}); err != nil {
		return err
	}
	rows := [][]string{{"start_s", "requests", "failed", "p50_ms", "p99_ms", "edge_share"}}
	for _, b := range r.Series {
		rows = append(rows, []string{
			strconv.FormatFloat(b.Start.Seconds(), 'f', 4, 64), strconv.Itoa(b.Requests), strconv.Itoa(b.Failed),
			strconv.FormatFloat(ms(b.P50), 'f', 3, 64), strconv.FormatFloat(ms(b.P99), 'f', 3, 64),
			strconv.FormatFloat(b.EdgeShare, 'f', 4, 64),
		})
	}
	return writeCSV(filepath.Join(dir, r.Name+"-series.csv"), rows)
}

// WriteSummaryCSV writes one summary row per result into path.
func WriteSummaryCSV(path string, results []*Result) error {
	rows := [][]string{SummaryHeader}
	for _, r := range results {
		rows = append(rows, r.SummaryRow())
	}
	return writeCSV(path, rows)
}

func writeCSV(path string, rows [][]string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("edgesim: %w", err)
	}
	w := csv.NewWriter(f)
	if err := w.WriteAll(rows); err != nil {
		f.Close()
		return fmt.Errorf("edgesim: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("edgesim: close %s: %w", path, err)
	}
	return nil
}
