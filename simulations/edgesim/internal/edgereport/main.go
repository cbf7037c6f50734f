// Command edgereport runs the edge scenarios with every routing policy
// and writes their CSV files, plots and a summary into a directory (the
// figures under docs/sim come from it):
//
//	go run ./simulations/edgesim/internal/edgereport -out docs/sim -sites 2000 -requests 200000
//
// -scenarios and -policies (comma-separated) restrict the runs; the wall
// column is the mean wall time per run of the scenario. -entries
// (comma-separated: metro, routed) runs each scenario and policy once per
// client entry mode, side by side in the same files and plots; without
// it every scenario runs with its own entry.
//
// With -scale it instead runs the steady state once at -sites and
// -requests with the default policy (once per entry of -entries) and
// prints the wall time and the p99 against the oracle's, the figures
// behind the scale target (10,000 sites and 1,000,000 requests in under
// two minutes) and the steady-state target (p99 within 15% of the
// oracle's).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/simulations/edgesim"
)

func main() {
	out := flag.String("out", "docs/sim", "output directory")
	sites := flag.Int("sites", 2000, "edge sites")
	requests := flag.Int("requests", 200000, "requests per run")
	seed := flag.Uint64("seed", 1, "seed")
	only := flag.String("scenarios", "", "comma-separated scenarios (default all)")
	policies := flag.String("policies", "", "comma-separated policies (default all)")
	entries := flag.String("entries", "", "comma-separated client entry modes (default each scenario's)")
	scale := flag.Bool("scale", false, "time one steady-state run instead")
	flag.Parse()
	var pols, ents []string
	if *policies != "" {
		pols = strings.Split(*policies, ",")
	}
	if *entries != "" {
		ents = strings.Split(*entries, ",")
	}
	if err := run(*out, *sites, *requests, *seed, *only, pols, ents, *scale); err != nil {
		fmt.Fprintln(os.Stderr, "edgereport:", err)
		os.Exit(1)
	}
}

func run(out string, sites, requests int, seed uint64, only string, policies, entries []string, scale bool) error {
	ctx := context.Background()
	if scale {
		sc, err := edgesim.ScenarioByName(edgesim.ScenarioSteady)
		if err != nil {
			return err
		}
		for _, e := range orOne(entries) {
			cfg := sc.Config(sites, requests, seed)
			if e != "" {
				cfg.Entry = e
			}
			start := time.Now()
			r, err := edgesim.Run(ctx, cfg)
			if err != nil {
				return err
			}
			wall := time.Since(start)
			fmt.Printf("scale: %d sites, %d requests, %d events, policy %s, entry %s: wall %.1f s (p99 %.1f ms, oracle p99 %.1f ms, ×%.2f; route lookups %d, routed %d)\n",
				r.Sites, r.Requests, r.Events, r.Policy, r.Entry, wall.Seconds(), ms(r.P99), ms(r.OracleP99), r.P99OverOracle, r.RouteLookups, r.Routed)
		}
		return nil
	}
	var all []*edgesim.Result
	for _, sc := range edgesim.Scenarios() {
		if only != "" && !strings.Contains(","+only+",", ","+sc.Name+",") {
			continue
		}
		start := time.Now()
		var rs []*edgesim.Result
		for _, e := range orOne(entries) {
			cfg := sc.Config(sites, requests, seed)
			if e != "" {
				cfg.Entry = e
			}
			part, err := edgesim.RunPolicies(ctx, cfg, policies)
			if err != nil {
				return err
			}
			rs = append(rs, part...)
		}
		wall := time.Since(start)
		for _, r := range rs {
			if err := r.WriteCSV(filepath.Join(out, "csv")); err != nil {
				return err
			}
			l, p, c, f := r.Share()
			fmt.Printf("%-10s %-11s %-6s wall %5.1fs p50 %6.1f p99 %6.1f oracle p99 %6.1f (×%.2f) flash p99 %6.1f | local %.3f peer %.3f central %.3f failed %.4f | resp %.3f model %.3f egress %d MB | lookups %d routed %d\n",
				sc.Name, r.Policy, r.Entry, wall.Seconds()/float64(len(rs)), ms(r.P50), ms(r.P99), ms(r.OracleP99), r.P99OverOracle, ms(r.FlashP99), l, p, c, f,
				r.RespHitRatio(), r.ModelHitRatio(), r.OriginEgressBytes>>20, r.RouteLookups, r.Routed)
		}
		if err := edgesim.WritePlots(out, rs); err != nil {
			return err
		}
		all = append(all, rs...)
	}
	return edgesim.WriteSummaryCSV(filepath.Join(out, "summary.csv"), all)
}

// orOne returns entries, or one empty entry (the scenario's own) when
// there are none.
func orOne(entries []string) []string {
	if len(entries) == 0 {
		return []string{""}
	}
	return entries
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }
