package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/models/ort/rtbench"
)

const benchRuntimeUsage = `usage:
  petrel bench runtime [--providers cpu,cuda] [--models mlp,conv] [--batches 1,8,64,256]
                       [--concurrency 1,4] [--duration 2s] [--warmup 300ms]
                       [--gpu-device 0] [--gpu-mem-limit BYTES] [--gpu-arena-strategy S]
                       [--intra-op-threads N] [--ort-lib PATH] [--out FILE]

Runs ONNX Runtime sessions directly (no HTTP, no scheduler) and prints rows/s
and p50/p99 per run, CPU and GPU side by side. A CUDA session that would fall
back to the CPU is an error, not a row.`

// runBenchRuntime is `petrel bench runtime` (models/ort/rtbench).
func runBenchRuntime(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel bench runtime", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, benchRuntimeUsage)
		fs.PrintDefaults()
	}
	d := rtbench.DefaultConfig()
	providers := fs.String("providers", "cpu", "execution providers to measure: cpu, cuda or cpu,cuda")
	modelList := fs.String("models", strings.Join(d.Models, ","), "benchmark models: mlp, conv")
	batches := fs.String("batches", "1,8,64,256", "rows per run")
	levels := fs.String("concurrency", "1,4", "runs in flight at once")
	duration := fs.Duration("duration", d.Duration, "measurement window per row")
	warmup := fs.Duration("warmup", d.Warmup, "warm-up before each row")
	var cfg rtbench.Config
	fs.IntVar(&cfg.GPU.DeviceID, "gpu-device", 0, "CUDA device ordinal")
	fs.Int64Var(&cfg.GPU.GPUMemLimit, "gpu-mem-limit", 0, "CUDA arena limit, bytes (0: unlimited)")
	fs.StringVar(&cfg.GPU.ArenaExtendStrategy, "gpu-arena-strategy", "", "kNextPowerOfTwo or kSameAsRequested")
	fs.IntVar(&cfg.CPU.IntraOpThreads, "intra-op-threads", 0, "CPU sessions' intra-op threads (0: one per core)")
	lib := fs.String("ort-lib", "", "path of libonnxruntime.so (default: $PETREL_ORT_LIB, then the setup cache)")
	out := fs.String("out", "", "also write the Markdown table to this file")
	seed := fs.Uint64("seed", 1, "seed of the weights and inputs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "petrel bench runtime: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var err error
	if cfg.Batches, err = parseLevels(*batches); err != nil {
		fmt.Fprintf(e.stderr, "petrel bench runtime: --batches %v\n", err)
		return 2
	}
	if cfg.Concurrency, err = parseLevels(*levels); err != nil {
		fmt.Fprintf(e.stderr, "petrel bench runtime: --concurrency %v\n", err)
		return 2
	}
	cfg.Providers, cfg.Models = splitList(*providers), splitList(*modelList)
	cfg.Duration, cfg.Warmup, cfg.Seed = *duration, *warmup, *seed
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(e.stderr, "petrel bench runtime: %v\n", err)
		return 2
	}
	v, err := ort.Init(*lib)
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel bench runtime: %v\n", err)
		return 1
	}
	fmt.Fprintf(e.stdout, "ONNX Runtime %s; providers %s; %v per row\n", v, strings.Join(cfg.Providers, ","), cfg.Duration)
	rows, err := rtbench.Run(ctx, cfg, func(r rtbench.Row) {
		fmt.Fprintf(e.stdout, "%-4s %-4s batch %4d conc %3d: %10.0f rows/s  p50 %s  p99 %s\n",
			r.Model, r.Provider, r.Batch, r.Conc, r.RowsPerSec, micros(r.P50), micros(r.P99))
	})
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel bench runtime: %v\n", err)
		return 1
	}
	var table bytes.Buffer
	if err := rtbench.WriteTable(&table, rows); err != nil {
		fmt.Fprintf(e.stderr, "petrel bench runtime: %v\n", err)
		return 1
	}
	fmt.Fprint(e.stdout, "\n", table.String())
	if *out != "" {
		if err := os.WriteFile(*out, table.Bytes(), 0o644); err != nil {
			fmt.Fprintf(e.stderr, "petrel bench runtime: %v\n", err)
			return 1
		}
	}
	return 0
}
