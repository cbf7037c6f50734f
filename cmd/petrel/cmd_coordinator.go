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
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/georoute"
	"github.com/petrel-mesh/petrel/federated"
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
	fs.StringVar(&cfg.EnrolConfigFile, "enrol-config", "", "edge-node enrolment (POST /v1/enrol, join tokens): YAML file of what enrolled nodes receive (docs/enrol.md); without it enrolment is off")
	cidrs := fs.String("cidr-table", "", "file of 'CIDR REGION [lat,lon]' lines: where client addresses are, for /v1/route")
	var holdouts []string
	fs.Func("fl-holdout", "federated rounds: MODEL=DIR of held-out IDX files (t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) a trained version is checked on; repeatable", func(s string) error {
		holdouts = append(holdouts, s)
		return nil
	})
	var autos []coordinator.FLAuto
	fs.Func("fl-auto", "automatic rounds: MODEL:every=1h,drift=0.25,cooldown=30m[,fraction=0.1,min-clients=2,deadline=2m,strategy=fedavg,epochs=1,lr=0.05,rollout=10/50/100]; repeatable", func(s string) error {
		a, err := parseFLAuto(s)
		if err != nil {
			return err
		}
		autos = append(autos, a)
		return nil
	})
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
	for _, h := range holdouts {
		model, dir, ok := strings.Cut(h, "=")
		if !ok || !models.ValidName(model) || dir == "" {
			return fail(2, "--fl-holdout %q: want MODEL=DIR", h)
		}
		_, test, err := federated.LoadFashionMNIST(dir)
		if err != nil {
			return fail(2, "--fl-holdout %s: %v", h, err)
		}
		if cfg.FL.Holdout == nil {
			cfg.FL.Holdout = map[string]*federated.Dataset{}
		}
		cfg.FL.Holdout[model] = test
	}
	for _, a := range autos {
		if cfg.FL.Holdout[a.Model] == nil {
			return fail(2, "--fl-auto %s: the model needs --fl-holdout %s=DIR too", a.Model, a.Model)
		}
	}
	cfg.FL.Auto = autos
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

// parseFLAuto parses --fl-auto MODEL:key=value,...
func parseFLAuto(s string) (coordinator.FLAuto, error) {
	var a coordinator.FLAuto
	model, rest, ok := strings.Cut(s, ":")
	if !ok || !models.ValidName(model) {
		return a, fmt.Errorf("%q: want MODEL:key=value,... such as fashion:every=1h,drift=0.25", s)
	}
	a.Model, a.Round.Model, a.Cooldown = model, model, 30*time.Minute
	for _, kv := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return a, fmt.Errorf("%q: %q is not key=value", s, kv)
		}
		var err error
		switch k {
		case "every":
			a.Every, err = time.ParseDuration(v)
		case "cooldown":
			a.Cooldown, err = time.ParseDuration(v)
		case "drift":
			a.DriftPSI, err = strconv.ParseFloat(v, 64)
		case "fraction":
			a.Round.Fraction, err = strconv.ParseFloat(v, 64)
		case "min-clients":
			a.Round.MinClients, err = strconv.Atoi(v)
		case "deadline":
			a.Round.Deadline = v
		case "strategy":
			a.Round.Strategy = v
		case "epochs":
			a.Round.Epochs, err = strconv.Atoi(v)
		case "lr":
			a.Round.LR, err = strconv.ParseFloat(v, 64)
		case "rollout":
			a.Round.RolloutSteps = strings.ReplaceAll(v, "/", ",")
		default:
			return a, fmt.Errorf("%q: unknown key %q", s, k)
		}
		if err != nil {
			return a, fmt.Errorf("%q: %s: %v", s, k, err)
		}
	}
	if a.Every <= 0 && a.DriftPSI <= 0 {
		return a, fmt.Errorf("%q: give every=DURATION and/or drift=PSI", s)
	}
	if a.Every < 0 || a.Cooldown < 0 || a.DriftPSI < 0 {
		return a, fmt.Errorf("%q: negative values", s)
	}
	return a, nil
}
