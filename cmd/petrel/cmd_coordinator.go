package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/georoute"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort"
)

func newLogger(e *env, level string, asJSON bool) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: lvl}
	if asJSON {
		return slog.New(slog.NewJSONHandler(e.stderr, hopts)), nil
	}
	return slog.New(slog.NewTextHandler(e.stderr, hopts)), nil
}

func runCoordinator(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel coordinator", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cfg coordinator.Config
	fs.StringVar(&cfg.DataDir, "data-dir", "", "state directory: the embedded NATS store and the signing key (required)")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:7070", "management API address (HTTP)")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "use this NATS server or cluster instead of the embedded one")
	natsUser := fs.String("nats-user", "", "NATS user name (with --nats-url)")
	natsPass := fs.String("nats-password-file", "", "file holding the NATS password (with --nats-url)")
	natsCreds := fs.String("nats-creds", "", "NATS credentials file (with --nats-url)")
	natsListen := fs.String("nats-listen", "127.0.0.1:4222", "embedded NATS client address (port 0 picks one)")
	natsUsers := fs.String("nats-users-file", "", "embedded NATS: JSON [{\"name\",\"password\"}] of clients (nodes); without it NATS needs no authentication (local use)")
	maxMem := fs.Int64("nats-max-memory", bus.DefaultMaxMemory, "embedded JetStream memory limit, bytes")
	maxStore := fs.Int64("nats-max-store", bus.DefaultMaxStore, "embedded JetStream disk limit, bytes")
	fs.StringVar(&cfg.Prefix, "nats-prefix", "", "bucket, stream and subject prefix (default petrel)")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "replicas of buckets and streams (3 on a NATS cluster)")
	tokens := fs.String("tokens-file", "", "management API tokens: JSON [{\"name\",\"token\",\"scopes\":[admin|push|read]}] (required)")
	fs.IntVar(&cfg.KeepVersions, "keep-versions", 5, "versions kept per model; older ones are garbage-collected")
	fs.StringVar(&cfg.SigningKeyFile, "signing-key", "", "ed25519 key that signs manifests (default <data-dir>/signing.key, created when missing)")
	pubOut := fs.String("public-key-out", "", "write the public key nodes verify manifests with here (default <data-dir>/coordinator.pub)")
	budget := fs.Duration("latency-budget", 50*time.Millisecond, "validation gate: p50 latency budget of one request")
	cidrs := fs.String("cidr-table", "", "file of 'CIDR REGION [lat,lon]' lines: where client addresses are, for /v1/route")
	lib := fs.String("ort-lib", "", "path of libonnxruntime.so (default: $PETREL_ORT_LIB, then the setup cache)")
	logLevel := fs.String("log-level", "info", "debug|info|warn|error")
	logJSON := fs.Bool("log-json", false, "log as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(e.stderr, "petrel coordinator: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(2, "unexpected arguments %q", fs.Args())
	}
	if cfg.DataDir == "" || *tokens == "" {
		return fail(2, "--data-dir and --tokens-file are required")
	}
	log, err := newLogger(e, *logLevel, *logJSON)
	if err != nil {
		return fail(2, "%v", err)
	}
	cfg.Logger = log
	if cfg.Tokens, err = coordinator.LoadTokens(*tokens); err != nil {
		return fail(2, "%v", err)
	}
	if cfg.NATSURL != "" {
		cfg.NATS.User, cfg.NATS.CredsFile = *natsUser, *natsCreds
		if *natsPass != "" {
			if cfg.NATS.Password, err = readSecret(*natsPass, "--nats-password-file"); err != nil {
				return fail(2, "%v", err)
			}
		}
	} else {
		host, port, err := net.SplitHostPort(*natsListen)
		p, perr := strconv.Atoi(port)
		if err != nil || perr != nil || p < 0 || p > 65535 {
			return fail(2, "--nats-listen %q: want host:port", *natsListen)
		}
		cfg.Embedded = bus.EmbeddedOptions{Host: host, Port: p, MaxMemory: *maxMem, MaxStore: *maxStore}
		if *natsUsers != "" {
			s, err := readSecret(*natsUsers, "--nats-users-file")
			if err != nil {
				return fail(2, "%v", err)
			}
			if err := json.Unmarshal([]byte(s), &cfg.Embedded.Users); err != nil {
				return fail(2, "--nats-users-file: want a JSON array of {\"name\",\"password\"}: %v", err)
			}
		}
	}
	if *cidrs != "" {
		f, err := os.Open(*cidrs)
		if err != nil {
			return fail(2, "--cidr-table: %v", err)
		}
		cfg.CIDRs, err = georoute.ParseCIDRTable(f)
		f.Close()
		if err != nil {
			return fail(2, "--cidr-table %s: %v", *cidrs, err)
		}
	}
	if _, err := ort.Init(*lib); err != nil {
		return fail(1, "%v", err)
	}
	cfg.Validate.LatencyBudget = *budget
	c, err := coordinator.New(cfg)
	if err != nil {
		return fail(1, "%v", err)
	}
	if *pubOut == "" {
		*pubOut = filepath.Join(cfg.DataDir, "coordinator.pub")
	}
	if err := models.WritePublicKey(*pubOut, c.PublicKey()); err != nil {
		return fail(1, "write public key: %v", err)
	}
	if err := c.Start(ctx); err != nil {
		return fail(1, "%v", err)
	}
	log.Info("coordinator ready", "api", c.URL(), "nats", c.NATSURL(), "public_key", *pubOut)
	<-ctx.Done()
	log.Info("coordinator stopping")
	c.Close()
	return 0
}
