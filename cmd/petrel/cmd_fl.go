package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
)

const (
	usageFL           = "petrel fl round start MODEL [flags] | petrel fl status [ROUND] [--model M] | petrel fl bench [flags]"
	usageFLRoundStart = "petrel fl round start MODEL [--fraction F] [--min-clients N] [--quorum N] [--deadline D] [--strategy S] [--lr X] [--epochs N] [--batch-size N] [--prox-mu X] [--clip C --noise-multiplier Z] [--margin M] [--rollout-steps 10,50,100 --rollout-interval 30s]"
	usageFLStatus     = "petrel fl status [ROUND] [--model M] [--json]"
)

func runFL(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "usage: %s\n", usageFL)
		return 2
	}
	switch {
	case args[0] == "round" && len(args) > 1 && args[1] == "start":
		return runFLRoundStart(ctx, e, args[2:])
	case args[0] == "status":
		return runFLStatus(ctx, e, args[1:])
	case args[0] == "bench":
		return runFLBench(ctx, e, args[1:])
	}
	fmt.Fprintf(e.stderr, "petrel fl: unknown subcommand %q\nusage: %s\n", strings.Join(args[:min(2, len(args))], " "), usageFL)
	return 2
}

func runFLRoundStart(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel fl round start", usageFLRoundStart)
	var req coordinator.RoundRequest
	fs.Float64Var(&req.Fraction, "fraction", 0.1, "share of the nodes serving the model to sample")
	fs.IntVar(&req.MinClients, "min-clients", 1, "least number of clients; the round fails with fewer updates by the deadline")
	fs.IntVar(&req.Quorum, "quorum", 0, "aggregate as soon as this many updates arrived (0: all sampled)")
	fs.StringVar(&req.Deadline, "deadline", "2m", "how long clients have")
	fs.StringVar(&req.Strategy, "strategy", "fedavg", "aggregation: fedavg, fedprox, fedadam, fedyogi, fedadagrad, median, trimmed-mean, krum, multi-krum")
	fs.Float64Var(&req.LR, "lr", 0.05, "client learning rate")
	fs.Float64Var(&req.Momentum, "momentum", 0, "client SGD momentum")
	fs.Float64Var(&req.WeightDecay, "weight-decay", 0, "client weight decay")
	fs.IntVar(&req.BatchSize, "batch-size", 32, "client minibatch size")
	fs.IntVar(&req.Epochs, "epochs", 1, "client epochs over its feedback")
	fs.Float64Var(&req.ProxMu, "prox-mu", 0, "FedProx proximal term (0: off)")
	fs.IntVar(&req.MaxSamples, "max-samples", 100000, "feedback rows a client trains on, at most")
	fs.Float64Var(&req.Clip, "clip", 0, "differential privacy: clients clip their update to this L2 norm")
	fs.Float64Var(&req.NoiseMultiplier, "noise-multiplier", 0, "differential privacy: server noise std = this × clip (needs --clip)")
	fs.Float64Var(&req.Margin, "margin", 0.01, "reject the new version when its held-out accuracy is lower than the serving one's by more than this")
	fs.StringVar(&req.RolloutSteps, "rollout-steps", "", "roll the new version out with these steps (e.g. 10,50,100); empty: register only")
	fs.StringVar(&req.RolloutInterval, "rollout-interval", "30s", "time at each rollout step")
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	pos, code, ok := c.parse(fs, args, 1, 1)
	if !ok {
		return code
	}
	if err := checkModel(pos[0]); err != nil {
		return c.fail(err)
	}
	req.Model = pos[0]
	if _, err := time.ParseDuration(req.Deadline); err != nil {
		return c.fail(usageErrorf("--deadline %q: %v", req.Deadline, err))
	}
	cl, err := c.mf.client(fs, requestTimeout)
	if err != nil {
		return c.fail(err)
	}
	var r coordinator.Round
	b, err := cl.sendJSON(ctx, http.MethodPost, "/v1/rounds", req, &r)
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		printRaw(e.stdout, b)
		return 0
	}
	fmt.Fprintf(e.stdout, "started round %s of %s from version %s: %d of %d nodes, %s, deadline %s\n",
		clean(r.ID), clean(r.Model), clean(r.BaseVersion), len(r.Clients), r.Eligible, clean(r.Request.Strategy), timeString(r.Deadline))
	fmt.Fprintf(e.stdout, "follow it with: petrel fl status %s\n", clean(r.ID))
	return 0
}

func runFLStatus(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel fl status", usageFLStatus)
	model := fs.String("model", "", "only this model's rounds")
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	pos, code, ok := c.parse(fs, args, 0, 1)
	if !ok {
		return code
	}
	cl, err := c.mf.client(fs, requestTimeout)
	if err != nil {
		return c.fail(err)
	}
	if len(pos) == 1 {
		var r coordinator.Round
		b, err := cl.getJSON(ctx, "/v1/rounds/"+url.PathEscape(pos[0]), &r)
		if err != nil {
			return c.fail(err)
		}
		if *asJSON {
			printRaw(e.stdout, b)
			return 0
		}
		printRound(e.stdout, &r)
		return 0
	}
	path := "/v1/rounds"
	if *model != "" {
		if err := checkModel(*model); err != nil {
			return c.fail(err)
		}
		path += "?model=" + url.QueryEscape(*model)
	}
	var rs []coordinator.Round
	b, err := cl.getJSON(ctx, path, &rs)
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		printRaw(e.stdout, b)
		return 0
	}
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ROUND\tMODEL\tBASE\tSTATE\tUPDATES\tTRIGGER\tSTARTED\tRESULT")
	for _, r := range rs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", clean(r.ID), clean(r.Model), clean(r.BaseVersion), r.State,
			len(r.Received), len(r.Clients), clean(r.Trigger), timeString(r.Started), orDash(clean(r.NewVersion)))
	}
	w.Flush()
	return 0
}

func printRound(w io.Writer, r *coordinator.Round) {
	fmt.Fprintf(w, "round     %s (%s, started by %s)\n", clean(r.ID), clean(r.Trigger), clean(r.Actor))
	fmt.Fprintf(w, "model     %s from version %s\n", clean(r.Model), clean(r.BaseVersion))
	fmt.Fprintf(w, "state     %s", r.State)
	if r.Reason != "" {
		fmt.Fprintf(w, ": %s", clean(r.Reason))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "clients   %d sampled of %d (%s), quorum %d, deadline %s\n", len(r.Clients), r.Eligible, clean(r.Request.Strategy), r.Request.Quorum, timeString(r.Deadline))
	fmt.Fprintf(w, "updates   %d received (%d samples): %s\n", len(r.Received), r.Samples, orDash(strings.Join(r.Received, ", ")))
	if len(r.Stragglers) > 0 {
		fmt.Fprintf(w, "dropped   %s\n", strings.Join(r.Stragglers, ", "))
	}
	for reason, n := range r.Rejected {
		fmt.Fprintf(w, "rejected  %d %s\n", n, reason)
	}
	if r.BaseAcc > 0 || r.NewAcc > 0 {
		fmt.Fprintf(w, "held-out  %.2f%% (serving version %.2f%%)\n", 100*r.NewAcc, 100*r.BaseAcc)
	}
	if r.Epsilon > 0 {
		fmt.Fprintf(w, "privacy   ε = %.2f (δ = %g)\n", r.Epsilon, r.Request.Delta)
	}
	if r.NewVersion != "" {
		fmt.Fprintf(w, "version   %s", clean(r.NewVersion))
		if r.Rollout != "" {
			fmt.Fprintf(w, ", rollout %s", clean(r.Rollout))
		}
		fmt.Fprintln(w)
	}
}
