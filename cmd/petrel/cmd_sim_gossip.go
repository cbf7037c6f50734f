package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/petrel-mesh/petrel/simulations/gossipsim"
)

// runSimGossip is `petrel sim gossip`: the node's own gossip mesh
// (node/mesh over memberlist) with many members over an in-memory
// network with latency and loss.
func runSimGossip(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel sim gossip", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	members := fs.Int("members", gossipsim.DefaultMembers, "members of the mesh")
	scale := fs.Float64("time-scale", 8, "stretch memberlist's timers and the network's delays by this factor so that a small machine keeps up (figures are reported in deployment time)")
	seed := fs.Uint64("seed", 1, "seed")
	out := fs.String("out", "", "directory for CSV files and the PNG plot (none without it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "petrel sim gossip: unexpected arguments %q\n", fs.Args())
		return 2
	}
	r, err := gossipsim.Run(ctx, gossipsim.Config{Members: *members, TimeScale: *scale, Seed: *seed})
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel sim gossip: %v\n", err)
		if errors.Is(err, gossipsim.ErrInvalidConfig) {
			return 2
		}
		return 1
	}
	fmt.Fprint(e.stdout, r.Summary())
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			fmt.Fprintf(e.stderr, "petrel sim gossip: %v\n", err)
			return 1
		}
		if err := r.WriteCSV(*out); err != nil {
			fmt.Fprintf(e.stderr, "petrel sim gossip: %v\n", err)
			return 1
		}
		if err := r.WritePlot(*out); err != nil {
			fmt.Fprintf(e.stderr, "petrel sim gossip: %v\n", err)
			return 1
		}
		fmt.Fprintf(e.stdout, "wrote %s\n", *out)
	}
	return 0
}
