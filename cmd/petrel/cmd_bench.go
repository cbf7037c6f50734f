package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node/bench"
	"github.com/petrel-mesh/petrel/node/client"
)

const benchUsage = `usage:
  petrel bench --url U --model M [--protocol h1|h2|h3] [--encoding json|binary]
               [--concurrency 1,8,64] [--duration 5s] [--warmup 1s] [--batch 1] [--noop]
               [--client raw-h1|nethttp]
  petrel bench suite [--quick] [--out FILE] [--strict] [--client raw-h1|nethttp]
  petrel bench runtime [--providers cpu,cuda] [...]   (ONNX Runtime alone, CPU vs GPU)`

// clientFlagUsage documents --client of both bench commands.
const clientFlagUsage = "client of plain-HTTP/1.1 requests: raw-h1 (lean keep-alive client, one connection per worker, no allocation per request) | nethttp (node/client's net/http, for comparison); h2 and h3 always use node/client"

func runBench(ctx context.Context, e *env, args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "suite":
			return runBenchSuite(ctx, e, args[1:])
		case "runtime":
			return runBenchRuntime(ctx, e, args[1:])
		case "baseline-server": // hidden: the suite starts it as its own process
			return runBaselineServer(ctx, e, args[1:])
		}
	}
	fs := flag.NewFlagSet("petrel bench", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, benchUsage)
		fs.PrintDefaults()
	}
	var cf clientFlags
	cf.register(fs)
	model := fs.String("model", "", "model name")
	encoding := fs.String("encoding", bench.EncodingJSON, "request encoding: json | binary (binary tensors both ways)")
	levels := fs.String("concurrency", "1,8,64", "comma-separated concurrency levels")
	duration := fs.Duration("duration", 5*time.Second, "measurement window per level")
	warmup := fs.Duration("warmup", time.Second, "warm-up before each level")
	batch := fs.Int("batch", 1, "rows per request (the dynamic first dimension)")
	noop := fs.Bool("noop", false, "measure GET /v2/health/live instead of inference (the HTTP floor)")
	maxReq := fs.Int("max-requests", 0, "stop each level after this many measured requests (0: no limit)")
	seed := fs.Uint64("seed", 1, "seed for the random input values")
	quiet := fs.Bool("quiet", false, "no progress dots")
	transport := fs.String("client", bench.TransportRawH1, clientFlagUsage)
	metaURL := fs.String("meta-url", "", "read the model's metadata from this server instead of --url (e.g. a mesh node that forwards the model)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !slices.Contains(bench.Transports, *transport) {
		fmt.Fprintf(e.stderr, "petrel bench: --client %q: want %s\n", *transport, strings.Join(bench.Transports, " or "))
		return 2
	}
	if fs.NArg() > 0 || (*model == "" && !*noop) {
		fs.Usage()
		return 2
	}
	conc, err := parseLevels(*levels)
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel bench: --concurrency: %v\n", err)
		return 2
	}
	c, err := cf.client()
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel bench: %v\n", err)
		return 2
	}
	defer c.Close()

	var payload *bench.Payload
	what := "GET /v2/health/live"
	if !*noop {
		mc := c
		if *metaURL != "" {
			mc, err = client.New(client.Config{BaseURL: *metaURL, Protocol: c.Protocol(), CAFile: cf.ca, Insecure: cf.insecure})
			if err != nil {
				fmt.Fprintf(e.stderr, "petrel bench: --meta-url: %v\n", err)
				return 2
			}
			defer mc.Close()
		}
		p, err := bench.BuildPayload(ctx, mc, *model, *batch, *encoding, *seed)
		if err == nil {
			err = bench.Probe(ctx, c, p)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "petrel bench: %v\n", err)
			return 1
		}
		payload = &p
		what = fmt.Sprintf("%s, %s, batch %d, %d-byte body", p.Path, *encoding, p.Rows, len(p.Body))
	}
	sender := bench.ClientName(bench.Config{Client: c, URL: cf.url, Transport: *transport})
	fmt.Fprintf(e.stdout, "%s over %s at %s (client %s): %s warm-up, %s per level\n\n", what, c.Protocol(), cf.url, sender, *warmup, *duration)
	// Fixed widths rather than tabwriter: each row is printed as soon as
	// its level is done.
	const row = "%11v %9v %10v %9v %9v %9v  %v\n"
	fmt.Fprintf(e.stdout, row, "concurrency", "req/s", "rows/s", "p50", "p90", "p99", "errors")
	for _, n := range conc {
		cfg := bench.Config{Client: c, URL: cf.url, Transport: *transport, Timeout: cf.timeout,
			Concurrency: n, Warmup: *warmup, Duration: *duration, MaxRequests: *maxReq, Path: "/v2/health/live"}
		if payload != nil {
			payload.Apply(&cfg)
		}
		if !*quiet {
			cfg.Progress = e.stderr
		}
		rep, err := bench.Run(ctx, cfg)
		if err != nil {
			fmt.Fprintf(e.stderr, "petrel bench: %v\n", err)
			return 1
		}
		errs := strconv.Itoa(rep.Errors)
		if rep.Errors > 0 {
			errs += fmt.Sprintf(" %v", rep.ErrorsByStatus)
		}
		fmt.Fprintf(e.stdout, row, n, fmt.Sprintf("%.0f", rep.Throughput), fmt.Sprintf("%.0f", rep.RowsPerSec), micros(rep.P50), micros(rep.P90), micros(rep.P99), errs)
		if rep.Errors > 0 && rep.FirstError != "" {
			fmt.Fprintf(e.stderr, "petrel bench: first error at concurrency %d: %s\n", n, rep.FirstError)
		}
	}
	return 0
}

// micros prints a latency in µs (ms from 10 ms on).
func micros(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func parseLevels(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 4096 {
			return nil, fmt.Errorf("%q: want positive integers up to 4096, e.g. 1,8,64", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func runBenchSuite(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel bench suite", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cfg bench.SuiteConfig
	fs.BoolVar(&cfg.Quick, "quick", false, "smoke run: one round, short windows, no variants")
	out := fs.String("out", "", "also write the markdown report to this file")
	fs.StringVar(&cfg.Library, "ort-lib", "", "path of libonnxruntime.so (default: $PETREL_ORT_LIB, then the setup cache)")
	fs.StringVar(&cfg.Executable, "petrel", "", "petrel binary to start nodes with (default: this one)")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "directory for repositories and logs (default: a temporary one, removed)")
	fs.BoolVar(&cfg.KeepWorkDir, "keep", false, "keep the temporary work directory (child logs)")
	fs.IntVar(&cfg.Rounds, "rounds", 0, "alternating rounds of the concurrency-1 figures (default 3, quick 1)")
	fs.DurationVar(&cfg.Window, "window", 0, "window of each concurrency-1 figure per round (default 2s, quick 1s)")
	fs.DurationVar(&cfg.ThroughputWindow, "throughput-window", 0, "window of each mlp-small c=64 figure (default 5s, quick 2s)")
	fs.DurationVar(&cfg.LargeWindow, "large-window", 0, "window of each mlp-large c=64 figure (default 10s, quick 4s)")
	noVariants := fs.Bool("no-variants", false, "skip the session-option variants")
	fs.StringVar(&cfg.Transport, "client", bench.TransportRawH1, clientFlagUsage)
	strict := fs.Bool("strict", false, "exit 3 when a target fails")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "petrel bench suite: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *noVariants {
		cfg.Variants = []bench.Variant{}
	}
	cfg.Log = e.stderr
	rep, err := bench.Suite(ctx, cfg)
	if err != nil {
		// What was measured before the failure is still worth seeing,
		// but is not written to --out as if it were a whole report.
		if rep != nil {
			fmt.Fprint(e.stdout, rep.Markdown())
		}
		fmt.Fprintf(e.stderr, "petrel bench suite: %v\n", err)
		return 1
	}
	md := rep.Markdown()
	fmt.Fprint(e.stdout, md)
	if *out != "" {
		err := os.MkdirAll(filepath.Dir(*out), 0o755)
		if err == nil {
			err = os.WriteFile(*out, []byte(md), 0o644)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "petrel bench suite: --out: %v\n", err)
			return 1
		}
	}
	if *strict && rep.Failed() {
		return 3
	}
	return 0
}

// runBaselineServer serves one model the way the simplest alternative
// would, as its own process, for the suite.
func runBaselineServer(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel bench baseline-server", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	model := fs.String("model", "", "ONNX model file")
	name := fs.String("name", "", "model name in URLs (default: the file's directory two levels up, as in a repository, else its base name)")
	listen := fs.String("listen", "127.0.0.1:8001", "TCP address (HTTP/1.1)")
	lib := fs.String("ort-lib", "", "path of libonnxruntime.so (default: $PETREL_ORT_LIB, then the setup cache)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *model == "" || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "usage: petrel bench baseline-server --model FILE [--name NAME] [--listen ADDR] [--ort-lib PATH]")
		return 2
	}
	if *name == "" {
		*name = defaultModelName(*model)
	}
	path, err := ort.FindLibrary(*lib)
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel bench baseline-server: %v\n", err)
		return 1
	}
	b, err := bench.NewBaseline(path, *model, *name)
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel bench baseline-server: %v\n", err)
		return 1
	}
	defer b.Close()
	err = bench.ServeBaseline(ctx, b, *listen, func(addr string) {
		fmt.Fprintf(e.stdout, "baseline serving %s on http://%s\n", *name, addr)
	})
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel bench baseline-server: %v\n", err)
		return 1
	}
	return 0
}

// defaultModelName names a model by its repository layout
// (<name>/<version>/model.onnx), else by its file name.
func defaultModelName(file string) string {
	dir := filepath.Dir(file)
	if base := filepath.Base(file); base == "model.onnx" && filepath.Base(filepath.Dir(dir)) != "." {
		return filepath.Base(filepath.Dir(dir))
	}
	return strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
}
