package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/simulations/edgesim"
	"github.com/petrel-mesh/petrel/simulations/rolloutsim"
)

// runSim is `petrel sim`: the internet-scale simulations of
// docs/simulations.md, each driving the project's own routing, cache,
// rollout, gossip and learning code.
func runSim(ctx context.Context, e *env, args []string) int {
	subs := []struct {
		name, summary string
		run           func(context.Context, *env, []string) int
	}{
		{"edge", "request-level scenarios: routing policies, caches, faults, against the oracle", runSimEdge},
		{"rollout", "a canary rollout (and a bad version's rollback) across thousands of sites", runSimRollout},
		{"churn", "federated rounds with client churn (Fashion-MNIST)", runSimChurn},
		{"gossip", "memberlist with 1,000+ members over an in-memory network: joins, failures, bandwidth", runSimGossip},
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w := e.stderr
		if len(args) > 0 {
			w = e.stdout
		}
		fmt.Fprintln(w, "usage: petrel sim <edge|rollout|churn|gossip> [flags]")
		for _, s := range subs {
			fmt.Fprintf(w, "  %-8s %s\n", s.name, s.summary)
		}
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "petrel sim: unknown simulation %q (edge, rollout, churn, gossip)\n", args[0])
	return 2
}

// simFail reports err: a configuration error exits 2, anything else 1.
func simFail(e *env, what string, err error) int {
	fmt.Fprintf(e.stderr, "petrel sim %s: %v\n", what, err)
	if errors.Is(err, edgesim.ErrInvalidConfig) || errors.Is(err, rolloutsim.ErrInvalidConfig) {
		return 2
	}
	return 1
}

func runSimEdge(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel sim edge", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var names []string
	for _, s := range edgesim.Scenarios() {
		names = append(names, s.Name)
	}
	scenarios := fs.String("scenario", "all", "scenario(s), comma-separated: "+strings.Join(names, ", ")+", or all")
	policies := fs.String("policy", edgesim.DefaultPolicy, "routing policies to compare, comma-separated: "+strings.Join(edgesim.Policies(), ", ")+", or all")
	entry := fs.String("entry", "", "how clients reach the edge, comma-separated to compare: "+strings.Join(edgesim.Entries(), ", ")+" (default: each scenario's)")
	sites := fs.Int("sites", 2000, "edge sites")
	requests := fs.Int("requests", 200000, "requests per run")
	seed := fs.Uint64("seed", 1, "seed (runs are deterministic)")
	out := fs.String("out", "", "directory for CSV files and PNG plots (none without it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "petrel sim edge: unexpected arguments %q\n", fs.Args())
		return 2
	}
	entries := []string{""} // the scenario's own
	if *entry != "" {
		entries = strings.Split(*entry, ",")
	}
	var pols []string
	if *policies != "all" {
		pols = strings.Split(*policies, ",")
	}
	var run []edgesim.Scenario
	for _, name := range strings.Split(*scenarios, ",") {
		if name == "all" {
			run = edgesim.Scenarios()
			break
		}
		sc, err := edgesim.ScenarioByName(strings.TrimSpace(name))
		if err != nil {
			return simFail(e, "edge", err)
		}
		run = append(run, sc)
	}
	var all []*edgesim.Result
	for _, sc := range run {
		start := time.Now()
		var rs []*edgesim.Result
		for _, ent := range entries {
			cfg := sc.Config(*sites, *requests, *seed)
			if ent != "" {
				cfg.Entry = strings.TrimSpace(ent)
			}
			r, err := edgesim.RunPolicies(ctx, cfg, pols)
			if err != nil {
				return simFail(e, "edge", err)
			}
			rs = append(rs, r...)
		}
		wall := time.Since(start)
		for _, r := range rs {
			l, p, c, f := r.Share()
			fmt.Fprintf(e.stdout, "%-10s %-11s %-6s p50 %6.1f ms  p99 %6.1f ms  oracle p99 %6.1f ms (×%.2f)  local %.3f peer %.3f central %.3f failed %.4f  model hits %.3f  egress %d MB\n",
				sc.Name, r.Policy, r.Entry, simMS(r.P50), simMS(r.P99), simMS(r.OracleP99), r.P99OverOracle, l, p, c, f, r.ModelHitRatio(), r.OriginEgressBytes>>20)
			if *out != "" {
				if err := r.WriteCSV(filepath.Join(*out, "csv")); err != nil {
					return simFail(e, "edge", err)
				}
			}
		}
		fmt.Fprintf(e.stdout, "%-10s %d run(s) in %.1f s wall\n", sc.Name, len(rs), wall.Seconds())
		if *out != "" {
			if err := edgesim.WritePlots(*out, rs); err != nil {
				return simFail(e, "edge", err)
			}
		}
		all = append(all, rs...)
	}
	if *out != "" {
		if err := edgesim.WriteSummaryCSV(filepath.Join(*out, "summary.csv"), all); err != nil {
			return simFail(e, "edge", err)
		}
		fmt.Fprintf(e.stdout, "wrote %s\n", *out)
	}
	return 0
}

func simMS(d time.Duration) float64 { return d.Seconds() * 1000 }

func runSimRollout(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel sim rollout", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	sites := fs.String("sites", "1000,3000,10000", "edge site counts, comma-separated")
	seed := fs.Uint64("seed", 1, "seed (runs are deterministic)")
	bad := fs.Bool("bad", true, "also roll out a bad version (elevated error rate) and time its rollback")
	originOnly := fs.Bool("origin-only", false, "every site fetches from the origin (no peer in its metro)")
	out := fs.String("out", "", "directory for CSV files and PNG plots (none without it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "petrel sim rollout: unexpected arguments %q\n", fs.Args())
		return 2
	}
	counts, err := parseInts(*sites)
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel sim rollout: --sites: %v\n", err)
		return 2
	}
	var rep rolloutsim.Report
	for _, n := range counts {
		for _, isBad := range []bool{false, true} {
			if isBad && !*bad {
				continue
			}
			start := time.Now()
			r, err := rolloutsim.RunRollout(ctx, rolloutsim.RolloutConfig{Seed: *seed, Sites: n, OriginOnly: *originOnly, Bad: isBad})
			if err != nil {
				return simFail(e, "rollout", err)
			}
			wall := time.Since(start)
			if isBad {
				rep.Rollbacks = append(rep.Rollbacks, r)
				fmt.Fprintf(e.stdout, "%6d sites, bad version:  rolled back at %s, all sites on the old version at %s (oracle: %s after the decision) (wall %.1f s)\n",
					n, simTime(r.RolledBack), simTime(r.AllOnOld), r.Oracle.Propagate.Round(time.Millisecond), wall.Seconds())
			} else {
				rep.Rollouts = append(rep.Rollouts, r)
				fmt.Fprintf(e.stdout, "%6d sites, good version: all fetched at %s (oracle %s), all at 100%% at %s (oracle %s), origin egress %.1f GB, peers %.1f GB (wall %.1f s)\n",
					n, simTime(r.AllFetched), simTime(r.Oracle.Fetched), simTime(r.AllOnNew), simTime(r.Oracle.AllOnNew),
					float64(r.OriginEgress)/1e9, float64(r.PeerBytes)/1e9, wall.Seconds())
			}
		}
	}
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return simFail(e, "rollout", err)
		}
		if err := rolloutsim.WriteCSV(*out, rep); err != nil {
			return simFail(e, "rollout", err)
		}
		if err := rolloutsim.WritePlots(*out, rep); err != nil {
			return simFail(e, "rollout", err)
		}
		fmt.Fprintf(e.stdout, "wrote %s\n", *out)
	}
	return 0
}

// simTime formats a simulated time, or "never".
func simTime(d time.Duration) string {
	if d == rolloutsim.Never {
		return "never"
	}
	return d.Round(100 * time.Millisecond).String()
}

func runSimChurn(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel sim churn", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	levels := fs.String("levels", "0,0.2,0.5", "churn levels: the probability that a sampled client sends nothing in a round")
	rounds := fs.Int("rounds", 30, "federated rounds")
	clients := fs.Int("clients", 100, "clients (stores)")
	seed := fs.Uint64("seed", 1, "seed")
	central := fs.Int("central-epochs", 10, "epochs of the centralised oracle (same model, all data in one place); 0 skips it")
	data := fs.String("data", "", "Fashion-MNIST directory (default: Debian's dataset-fashion-mnist)")
	out := fs.String("out", "", "directory for CSV files and PNG plots (none without it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "petrel sim churn: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *central < 0 || *central > 1000 {
		fmt.Fprintf(e.stderr, "petrel sim churn: --central-epochs %d: want 0-1000\n", *central)
		return 2
	}
	var lv []float64
	for _, s := range strings.Split(*levels, ",") {
		var v float64
		if _, err := fmt.Sscan(strings.TrimSpace(s), &v); err != nil {
			fmt.Fprintf(e.stderr, "petrel sim churn: --levels %q: want numbers in [0, 1]\n", *levels)
			return 2
		}
		lv = append(lv, v)
	}
	cfg := rolloutsim.ChurnConfig{Levels: lv, DataDir: *data, CentralEpochs: *central}
	if *central == 0 {
		cfg.CentralEpochs = -1
	}
	cfg.Base.Rounds, cfg.Base.Clients, cfg.Base.Seed = *rounds, *clients, *seed
	r, err := rolloutsim.RunChurn(ctx, cfg)
	if err != nil {
		return simFail(e, "churn", err)
	}
	for _, l := range r.Levels {
		pts := l.Result.Points
		if len(pts) == 0 {
			continue
		}
		last := pts[len(pts)-1]
		fmt.Fprintf(e.stdout, "churn %.2f: accuracy %.3f after %d rounds\n", l.Level, last.Accuracy, last.Round)
	}
	if acc, ok := r.CentralAccuracy(); ok {
		fmt.Fprintf(e.stdout, "oracle (centralised, %d epochs): best accuracy %.3f\n", len(r.Central.Points), acc)
	}
	if *out != "" {
		rep := rolloutsim.Report{Churn: r}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return simFail(e, "churn", err)
		}
		if err := rolloutsim.WriteCSV(*out, rep); err != nil {
			return simFail(e, "churn", err)
		}
		if err := rolloutsim.WritePlots(*out, rep); err != nil {
			return simFail(e, "churn", err)
		}
		fmt.Fprintf(e.stdout, "wrote %s\n", *out)
	}
	return 0
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: want positive integers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}
