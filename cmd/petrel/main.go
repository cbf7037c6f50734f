// Command petrel is the one Petrel binary: the node, the client, model
// tools and the load generator.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "0.1.0-dev"

// env is what a command gets from the outside world, so that commands can
// be tested without a process (STYLE: commands as values).
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) int
}

func commands() []command {
	return []command{
		{"dev", "the all-in-one local mesh: a coordinator, three nodes, a model rolled out", runDev},
		{"node", "run a node serving models from a repository and/or the coordinator", runNode},
		{"operator", "the PetrelModel operator: push and roll out models from Kubernetes", runOperator},
		{"enrol", "enrol this machine as an edge node with a join token (writes credentials and a node config)", runEnrol},
		{"coordinator", "run the coordinator: registry, sync over NATS, rollouts, routing, audit", runCoordinator},
		{"infer", "send an inference request and print the outputs", runInfer},
		{"model", "models: push, list, show, rm, deploy, shadow; inspect FILE, sample --repo DIR", runModel},
		{"rollout", "canary rollouts: start, status, pause, resume, promote, rollback", runRollout},
		{"route", "ask the coordinator for the nearest nodes serving a model", runRoute},
		{"audit", "list the audit trail", runAudit},
		{"fl", "federated learning: round start, status, bench", runFL},
		{"sim", "simulations at internet scale: edge, rollout, churn, gossip", runSim},
		{"bench", "load generator: concurrency sweep, throughput and latency percentiles", runBench},
		{"cert", "mesh credentials: ca --dir D, node --ca-dir D --id ID, gossip-key", runCert},
		{"version", "print the version", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: petrel <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'petrel <command> -h' for a command's flags.")
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "petrel: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return 2
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}

func runVersion(_ context.Context, e *env, _ []string) int {
	fmt.Fprintf(e.stdout, "petrel %s\n", Version)
	return 0
}
