package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/petrel-mesh/petrel/node"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

func runNode(ctx context.Context, e *env, args []string) int {
	cfg := node.DefaultConfig()
	fs := flag.NewFlagSet("petrel node", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&cfg.ID, "id", cfg.ID, "node id, reported in the Petrel-Served-By header")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "TCP address for HTTP/1.1 and HTTP/2; HTTP/3 uses the same UDP port")
	fs.StringVar(&cfg.ModelRepository, "model-repo", "", "model repository: <model>/<version>/model.onnx [+ <model>/config.json]")
	fs.StringVar(&cfg.CertFile, "tls-cert", "", "TLS certificate (PEM); without it a development certificate is generated")
	fs.StringVar(&cfg.KeyFile, "tls-key", "", "TLS private key (PEM)")
	fs.BoolVar(&cfg.PlainTCP, "plain-tcp", false, "serve cleartext HTTP/1.1 and h2c on TCP (local use); HTTP/3 still uses TLS")
	fs.StringVar(&cfg.DevCertDir, "dev-cert-dir", "", "write the generated development certificate here (cert.pem, key.pem)")
	fs.BoolVar(&cfg.HTTP3, "http3", cfg.HTTP3, "serve HTTP/3 on UDP")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", cfg.MaxBodyBytes, "largest request body accepted (413 beyond)")
	fs.Int64Var(&cfg.ResponseCacheBytes, "response-cache-bytes", cfg.ResponseCacheBytes, "response cache size; 0 disables")
	fs.StringVar(&cfg.ORTLibrary, "ort-lib", "", "path of libonnxruntime.so (default: $PETREL_ORT_LIB, then the setup cache)")
	fs.IntVar(&cfg.Runtime.IntraOpThreads, "intra-op-threads", cfg.Runtime.IntraOpThreads, "ONNX Runtime intra-op threads per run; 0 = auto: 1 (parallelism comes from concurrent runs, see a model's concurrency)")
	fs.StringVar(&cfg.Runtime.GraphOptimization, "graph-optimization", cfg.Runtime.GraphOptimization, "disable|basic|extended|all")
	fs.StringVar(&cfg.Runtime.Provider, "provider", cfg.Runtime.Provider, "execution provider: cpu|cuda (falls back to cpu unless --require-provider)")
	fs.BoolVar(&cfg.Runtime.RequireProvider, "require-provider", false, "fail to load models when the provider cannot be used")
	fs.IntVar(&cfg.Runtime.DeviceID, "gpu-device", 0, "CUDA device ordinal (with --provider cuda)")
	fs.Int64Var(&cfg.Runtime.GPUMemLimit, "gpu-mem-limit", 0, "CUDA arena limit of each model version, bytes (gpu_mem_limit); 0 = ONNX Runtime's default (unlimited)")
	fs.StringVar(&cfg.Runtime.ArenaExtendStrategy, "gpu-arena-strategy", "", "CUDA arena growth: kNextPowerOfTwo (ONNX Runtime's default) or kSameAsRequested")
	fs.Int64Var(&cfg.GPUMemoryBytes, "gpu-memory", 0, "GPU memory all CUDA model versions may use together, bytes; acquired versions are evicted to fit (0 = not bounded)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long to drain in-flight requests on shutdown")
	memArena := fs.Bool("mem-arena", true, "ONNX Runtime CPU memory arena")
	spinning := fs.Bool("spinning", false, "let ONNX Runtime intra-op threads spin while waiting for work")
	logLevel := fs.String("log-level", "info", "debug|info|warn|error")
	logJSON := fs.Bool("log-json", false, "log as JSON")
	examples := fs.Bool("print-examples", false, "print curl examples once serving")
	debugAddr := fs.String("debug-addr", "", "serve Go's pprof profiles on this separate address (e.g. 127.0.0.1:6060); off by default")
	mf := addMeshFlags(fs)
	cf := addControlFlags(fs)
	configFile := fs.String("config", "", "YAML file of flag values (keys are flag names; flags given here win); see docs/deploy.md")
	checkConfig := fs.Bool("check-config", false, "check the flags, the config file and the files they name, print what would run, and exit (0 when valid)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configFile != "" {
		if err := applyConfigFile(fs, *configFile); err != nil {
			fmt.Fprintf(e.stderr, "petrel node: %v\n", err)
			return 2
		}
	}
	if err := mf.apply(&cfg.Mesh); err != nil {
		fmt.Fprintf(e.stderr, "petrel node: %v\n", err)
		return 2
	}
	if err := cf.apply(&cfg.Control); err != nil {
		fmt.Fprintf(e.stderr, "petrel node: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "petrel node: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg.Runtime.MemArena, cfg.Runtime.Spinning = memArena, spinning
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(e.stderr, "petrel node: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	hopts := &slog.HandlerOptions{Level: lvl}
	if *logJSON {
		cfg.Logger = slog.New(slog.NewJSONHandler(e.stderr, hopts))
	} else {
		cfg.Logger = slog.New(slog.NewTextHandler(e.stderr, hopts))
	}
	if *checkConfig {
		if err := node.CheckFiles(cfg); err != nil {
			fmt.Fprintf(e.stderr, "petrel node: config is not valid:\n%v\n", err)
			return 2
		}
		fmt.Fprintf(e.stdout, "petrel node: config is valid: id %s, listen %s, role %s", cfg.ID, cfg.Listen, cmp.Or(cfg.Mesh.Role, "edge"))
		if cfg.Control.NATS.URL != "" {
			fmt.Fprintf(e.stdout, ", coordinator %s", cfg.Control.NATS.URL)
		}
		fmt.Fprintln(e.stdout)
		return 0
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registry = reg

	if *debugAddr != "" {
		stop, err := serveDebug(*debugAddr, cfg.Logger)
		if err != nil {
			fmt.Fprintf(e.stderr, "petrel node: --debug-addr: %v\n", err)
			return 1
		}
		defer stop()
	}
	n, err := node.New(cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel node: %v\n", err)
		return 1
	}
	if err := n.Start(ctx); err != nil {
		fmt.Fprintf(e.stderr, "petrel node: %v\n", err)
		return 1
	}
	if *examples {
		printExamples(e, n, cfg)
	}
	// SIGHUP re-reads the TLS certificates, keys and mesh CA, and the
	// gossip key file: certificate renewal without a restart, and the
	// keyring rotation of docs/mesh.md, one edit and one signal per step.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := n.ReloadTLS(); err != nil {
				cfg.Logger.Error("SIGHUP: TLS certificates not changed", "err", err)
			}
			if mf.keyFile == "" {
				continue
			}
			keys, err := readKeyring(mf.keyFile)
			if err == nil {
				err = n.SetGossipKeys(keys)
			}
			if err != nil {
				cfg.Logger.Error("SIGHUP: gossip keys not changed", "file", mf.keyFile, "err", err)
			} else {
				cfg.Logger.Info("SIGHUP: gossip keys reloaded", "file", mf.keyFile, "keys", len(keys))
			}
		}
	}()
	var serveErr error
	select {
	case <-ctx.Done():
		cfg.Logger.Info("shutting down: draining in-flight requests", "timeout", cfg.ShutdownTimeout)
	case serveErr = <-n.Err():
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := errors.Join(serveErr, n.Shutdown(sctx)); err != nil {
		fmt.Fprintf(e.stderr, "petrel node: %v\n", err)
		return 1
	}
	return 0
}

func printExamples(e *env, n *node.Node, cfg node.Config) {
	scheme := "https"
	flags := "-k "
	if cfg.PlainTCP {
		scheme, flags = "http", ""
	}
	base := scheme + "://" + n.Addr()
	var b strings.Builder
	fmt.Fprintf(&b, "\nPetrel node %q is serving on %s (HTTP/1.1, HTTP/2", cfg.ID, base)
	if cfg.HTTP3 {
		fmt.Fprintf(&b, "; HTTP/3 on udp/%s", n.Addr()[strings.LastIndex(n.Addr(), ":")+1:])
	}
	b.WriteString(").\nTry:\n\n")
	fmt.Fprintf(&b, "  curl %s%s/v2/models/mlp-small\n", flags, base)
	fmt.Fprintf(&b, "  curl %s%s/v2/models/mlp-small/infer -H 'Content-Type: application/json' \\\n    -d '{\"inputs\":[{\"name\":\"input\",\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[%s]}]}'\n",
		flags, base, strings.TrimSuffix(strings.Repeat("0.5,", 64), ","))
	fmt.Fprintf(&b, "  bin/petrel infer --url %s --model mlp-small --input input:FP32:1x64:random", base)
	if cfg.HTTP3 && cfg.DevCertDir != "" {
		fmt.Fprintf(&b, "\n  bin/petrel infer --url %s --protocol h3 --ca %s/cert.pem --model mlp-small --input input:FP32:1x64:random", base, cfg.DevCertDir)
	}
	fmt.Fprintf(&b, "\n  curl %s%s/metrics | grep petrel_\n\nPress Ctrl-C to stop (in-flight requests drain first).\n\n", flags, base)
	fmt.Fprint(e.stdout, b.String())
	if f, ok := e.stdout.(*os.File); ok {
		f.Sync()
	}
}

// serveDebug serves net/http/pprof on its own listener, never on the
// inference port.
func serveDebug(addr string, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Info("debug endpoints serving", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
