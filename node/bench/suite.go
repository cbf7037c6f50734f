package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	petrelort "github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node/client"
)

// IdleGap is the idle time before each run of the informational "cold"
// in-process measurement: about the gap between two requests at
// concurrency 1 on loopback.
const IdleGap = 100 * time.Microsecond

// Model names of the samples that `petrel model sample` writes.
const (
	SmallModel = "mlp-small"
	LargeModel = "mlp-large"
)

// Variant is an alternative node configuration measured on mlp-large at
// concurrency 64 and on mlp-small at concurrency 1, next to the default.
type Variant struct {
	Name string
	// NodeArgs are added to `petrel node` (e.g. --intra-op-threads 2).
	NodeArgs []string
	// ModelConfig is merged into the config.json of Models (all models
	// when empty), e.g. {"concurrency": 2} or {"runtime": {"spinning":
	// true}}.
	ModelConfig map[string]any
	Models      []string
}

// DefaultVariants are the session-option alternatives PERFORMANCE.md
// discusses, each against the defaults (one intra-op thread, as many
// executions at once as cores, preferred batch sizes from a load-time
// profile).
func DefaultVariants() []Variant {
	intra2 := []string{"--intra-op-threads", "2"}
	one := map[string]any{"concurrency": 1}
	return []Variant{
		{Name: "before: intra-op threads 2, one execution, no batch profile", NodeArgs: intra2,
			ModelConfig: map[string]any{"concurrency": 1, "profile_batch_sizes": false}},
		{Name: "intra-op threads 2, one execution", NodeArgs: intra2, ModelConfig: one},
		{Name: "intra-op threads 2, one execution, spinning", NodeArgs: intra2,
			ModelConfig: map[string]any{"concurrency": 1, "runtime": map[string]any{"spinning": true}}},
		{Name: "no batch profile", ModelConfig: map[string]any{"profile_batch_sizes": false}},
		{Name: "one execution", ModelConfig: one},
	}
}

// SuiteConfig configures Suite. Zero fields take the defaults noted; Quick
// shortens them for a smoke run.
type SuiteConfig struct {
	// Executable is the petrel binary to start nodes and baseline servers
	// with; "" means the running executable (os.Executable).
	Executable string
	// Library is the ONNX Runtime library for the children and the
	// in-process measurements; "" resolves it like ort.FindLibrary("").
	Library string
	// WorkDir holds the model repositories, TLS files and child logs; ""
	// means a temporary directory, removed at the end unless KeepWorkDir.
	WorkDir     string
	KeepWorkDir bool
	// Quick is a smoke run: one round and short windows.
	Quick bool
	// Rounds is how many alternating rounds each concurrency-1 p50 takes;
	// the median round is reported. Default 3 (Quick: 1).
	Rounds int
	// Window is the measurement window of each concurrency-1 figure in a
	// round. Default 2 s (Quick: 1 s).
	Window time.Duration
	// Warmup precedes every measurement. Default 500 ms (Quick: 200 ms).
	Warmup time.Duration
	// ThroughputWindow is the window of each small-MLP concurrency-64
	// figure. Default 5 s (Quick: 2 s).
	ThroughputWindow time.Duration
	// LargeWindow is the window of each mlp-large concurrency-64 figure.
	// Default 10 s (Quick: 4 s).
	LargeWindow time.Duration
	// InProcessIterations for the small MLP at batch 1 per round (default
	// 2000) and for mlp-large at batch 64 (default 60).
	SmallIterations, LargeIterations int
	// Protocols measured for own cost. Default h1, h2, h3.
	Protocols []string
	// Transport is the client of the HTTP/1.1 measurements, Petrel's and
	// the baseline's alike: TransportRawH1 (default), the lean raw client,
	// or TransportNetHTTP, node/client's net/http (see Config.Transport).
	Transport string
	// Variants are alternative node configurations; nil means
	// DefaultVariants (Quick: none). Use an empty non-nil slice for none.
	Variants []Variant
	// Log gets a line per measurement; nil discards.
	Log io.Writer
}

func (c *SuiteConfig) defaults() {
	dur := func(d *time.Duration, normal, quick time.Duration) {
		if *d == 0 {
			*d = normal
			if c.Quick {
				*d = quick
			}
		}
	}
	dur(&c.Window, 2*time.Second, time.Second)
	dur(&c.Warmup, 500*time.Millisecond, 200*time.Millisecond)
	dur(&c.ThroughputWindow, 5*time.Second, 2*time.Second)
	dur(&c.LargeWindow, 10*time.Second, 4*time.Second)
	if c.Rounds == 0 {
		c.Rounds = 3
		if c.Quick {
			c.Rounds = 1
		}
	}
	if c.SmallIterations == 0 {
		c.SmallIterations = 2000
		if c.Quick {
			c.SmallIterations = 500
		}
	}
	if c.LargeIterations == 0 {
		c.LargeIterations = 60
		if c.Quick {
			c.LargeIterations = 16
		}
	}
	if len(c.Protocols) == 0 {
		c.Protocols = []string{client.HTTP1, client.HTTP2, client.HTTP3}
	}
	if c.Variants == nil && !c.Quick {
		c.Variants = DefaultVariants()
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.Transport == "" {
		c.Transport = TransportRawH1
	}
}

// NamedReport is one run of the suite.
type NamedReport struct {
	Name string
	Report
}

// OwnCost is Petrel's own cost per request for one protocol and encoding:
// node inference p50 − node no-op p50 − in-process ONNX Runtime p50.
type OwnCost struct {
	Protocol, Encoding string
	InferP50, NoopP50  time.Duration // medians of the rounds
	InProcessP50       time.Duration
	// Cost is the median over rounds of each round's own cost (Rounds),
	// which is steadier than the difference of the medians.
	Cost   time.Duration
	Rounds []time.Duration
}

// VariantResult is a variant's figures.
type VariantResult struct {
	Variant
	SmallP50      time.Duration // mlp-small, JSON, h1, c=1
	SmallNoopP50  time.Duration // no-op interleaved with SmallP50
	LargeRowsPerS float64       // mlp-large, JSON, h1, c=64
	// The default node, measured side by side with the variant: its
	// small-MLP requests interleaved with the variant's, its mlp-large
	// run right before.
	DefaultSmallP50, DefaultSmallNoopP50 time.Duration
	DefaultLargeRowsPerS                 float64
	Err                                  string
}

// SuiteReport is everything the suite measured. Markdown renders it.
type SuiteReport struct {
	Started time.Time
	Took    time.Duration
	Host    string // CPUs, Go, kernel load when started
	// ForeignCPU is the share of the machine's CPU time that other
	// processes took while the suite ran (its children stopped and
	// reaped); -1 when unknown. High values mean noisy figures.
	ForeignCPU float64
	ORTVersion string
	Config     SuiteConfig

	// Per round, keyed by series ("h1 noop", "h1 json", "baseline json",
	// ...), in round order.
	Rounds map[string][]Report
	// InProcessSmall (batch 1) and InProcessLarge (mlp-large, batch 64)
	// are per round.
	InProcessSmall []InProcessReport
	// InProcessSmallIdle is batch 1 with the thread idle for IdleGap
	// before each run (informational).
	InProcessSmallIdle InProcessReport
	InProcessLarge     []InProcessReport

	OwnCosts []OwnCost

	// Concurrency-64 runs: small MLP (req/s) and mlp-large (rows/s).
	PetrelSmall64, BaselineSmall64 []Report
	PetrelLarge64, BaselineLarge64 []Report
	// PetrelLarge64Binary is mlp-large at c=64 with binary tensors, one
	// per round next to the JSON runs and the in-process measurement.
	PetrelLarge64Binary []Report
	// Informational runs (binary encodings and the like).
	Extra []NamedReport

	Variants []VariantResult

	NodeMemory, BaselineMemory Memory
}

// Median p50 of a series over rounds.
func (r *SuiteReport) p50(series string) time.Duration {
	var ds []time.Duration
	for _, rep := range r.Rounds[series] {
		ds = append(ds, rep.P50)
	}
	return Median(ds)
}

// InProcessSmallP50 is the median over rounds of the best in-process p50.
func (r *SuiteReport) InProcessSmallP50() (time.Duration, string) {
	var ds []time.Duration
	counts := map[string]int{}
	for _, ip := range r.InProcessSmall {
		best, _ := ip.Best()
		ds = append(ds, best.P50)
		counts[best.Runtime]++
	}
	which := RuntimePetrel
	if counts[RuntimeDefault] > counts[RuntimePetrel] {
		which = RuntimeDefault
	}
	return Median(ds), which
}

func medianThroughput(rs []Report, rows bool) float64 {
	var vs []float64
	for _, r := range rs {
		if rows {
			vs = append(vs, r.RowsPerSec)
		} else {
			vs = append(vs, r.Throughput)
		}
	}
	return MedianFloat(vs)
}

// suite is one run of Suite: its config, children and findings.
type suite struct {
	cfg    SuiteConfig
	ctx    context.Context
	rep    *SuiteReport
	work   string
	exe    string
	lib    string
	procs  []*process
	clock0 time.Time
	// urls has the base URL of each client made by client, for the raw
	// HTTP/1.1 transport.
	urls map[*client.Client]string
}

// Suite runs the whole benchmark suite and returns its report. It starts
// its children from cfg.Executable (it builds nothing) and stops them all
// before returning, also on error (the report then holds what was
// measured so far). In order:
//
//  1. `petrel model sample` writes mlp-small and mlp-large into one
//     repository and mlp-small alone into another.
//  2. A node (plain TCP + HTTP/3) serves both models; a baseline server
//     serves mlp-small.
//  3. Concurrency 1, cfg.Rounds rounds: per protocol the node's no-op,
//     JSON and binary requests interleaved; the baseline's no-op and JSON
//     interleaved with the node's JSON; in-process ONNX Runtime. Own cost
//     is computed per round.
//  4. mlp-small at concurrency 64, Petrel and baseline alternating.
//  5. The baseline is replaced by one serving mlp-large; mlp-large at
//     concurrency 64, Petrel, baseline and in-process batch 64 in turn.
//  6. Each Variant: a second node next to the default one.
//  7. A node with only mlp-small: load, then its resident memory.
func Suite(ctx context.Context, cfg SuiteConfig) (*SuiteReport, error) {
	cfg.defaults()
	s := &suite{cfg: cfg, ctx: ctx, clock0: time.Now(), urls: map[*client.Client]string{}}
	s.rep = &SuiteReport{Started: s.clock0, Config: cfg, Rounds: map[string][]Report{}}
	if !slices.Contains(Transports, cfg.Transport) {
		return s.rep, fmt.Errorf("suite: transport %q: want one of %s", cfg.Transport, strings.Join(Transports, ", "))
	}
	defer s.stopAll()
	if err := s.setup(); err != nil {
		return s.rep, err
	}
	if !cfg.KeepWorkDir && cfg.WorkDir == "" {
		defer os.RemoveAll(s.work)
	}
	cpu0 := sampleCPU()
	err := s.run()
	s.stopAll()
	s.rep.ForeignCPU = -1
	if f, ok := foreignCPU(cpu0, sampleCPU()); ok {
		s.rep.ForeignCPU = f
	}
	s.rep.Took = time.Since(s.clock0)
	return s.rep, err
}

func (s *suite) logf(format string, a ...any) {
	fmt.Fprintf(s.cfg.Log, "[%5.1fs] %s\n", time.Since(s.clock0).Seconds(), fmt.Sprintf(format, a...))
}

func (s *suite) setup() error {
	var err error
	s.exe = s.cfg.Executable
	if s.exe == "" {
		if s.exe, err = os.Executable(); err != nil {
			return fmt.Errorf("suite: find own executable: %w", err)
		}
	}
	if s.lib, err = petrelort.FindLibrary(s.cfg.Library); err != nil {
		return err
	}
	if s.rep.ORTVersion, err = petrelort.Init(s.lib); err != nil {
		return err
	}
	s.work = s.cfg.WorkDir
	if s.work == "" {
		if s.work, err = os.MkdirTemp("", "petrel-bench-"); err != nil {
			return err
		}
		if s.cfg.KeepWorkDir {
			s.logf("work directory %s (kept)", s.work)
		}
	}
	for _, d := range []string{"logs", "tls"} {
		if err := os.MkdirAll(filepath.Join(s.work, d), 0o755); err != nil {
			return err
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	s.rep.Host = fmt.Sprintf("%d CPUs (GOMAXPROCS %d), %s %s/%s, load average at start %s",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH,
		strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	return nil
}

// sample writes the sample models into dir with `petrel model sample`.
func (s *suite) sample(dir string, large bool) error {
	args := []string{"model", "sample", "--repo", dir}
	if large {
		args = append(args, "--large")
	}
	out, err := exec.CommandContext(s.ctx, s.exe, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("suite: %s %s: %w\n%s", s.exe, strings.Join(args, " "), err, out)
	}
	return nil
}

// patchConfigs merges patch into <repo>/<model>/config.json for each of
// models (every model when none).
func patchConfigs(repo string, patch map[string]any, models []string) error {
	if len(patch) == 0 {
		return nil
	}
	paths, err := filepath.Glob(filepath.Join(repo, "*", "config.json"))
	if err != nil {
		return err
	}
	if len(models) > 0 {
		paths = slices.DeleteFunc(paths, func(p string) bool {
			return !slices.Contains(models, filepath.Base(filepath.Dir(p)))
		})
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var cfg map[string]any
		if err := json.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for k, v := range patch {
			cfg[k] = v
		}
		if b, err = json.MarshalIndent(cfg, "", "  "); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// startNode starts `petrel node` on repo and waits until every listed
// model is ready.
func (s *suite) startNode(name, repo string, extra []string, models ...string) (*process, error) {
	port, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	args := append([]string{"node", "--id", name, "--model-repo", repo, "--listen", addr, "--plain-tcp",
		"--dev-cert-dir", filepath.Join(s.work, "tls", name), "--ort-lib", s.lib}, extra...)
	p, err := startProcess(name, s.exe, args, nil, filepath.Join(s.work, "logs"), addr)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, p)
	c, err := s.client(p, client.HTTP1)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	paths := []string{"/v2/health/ready"}
	for _, m := range models {
		paths = append(paths, "/v2/models/"+m+"/ready")
	}
	if err := p.waitReady(s.ctx, c, 2*time.Minute, paths...); err != nil {
		return p, err
	}
	mem, _ := ReadMemory(p.pid())
	s.logf("%s ready on %s (pid %d, RSS %s)", name, addr, p.pid(), formatBytes(mem.RSS))
	return p, nil
}

// startBaseline starts `petrel bench baseline-server` for one model.
func (s *suite) startBaseline(name, modelFile, model string) (*process, error) {
	port, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	args := []string{"bench", "baseline-server", "--model", modelFile, "--name", model, "--listen", addr, "--ort-lib", s.lib}
	p, err := startProcess(name, s.exe, args, nil, filepath.Join(s.work, "logs"), addr)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, p)
	c, err := s.client(p, client.HTTP1)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := p.waitReady(s.ctx, c, time.Minute, "/v2/health/live", "/v2/models/"+model); err != nil {
		return nil, err
	}
	s.logf("%s ready on %s (pid %d)", name, addr, p.pid())
	return p, nil
}

// client returns a client for a child in the given protocol. HTTP/3 trusts
// the node's development certificate.
func (s *suite) client(p *process, proto string) (*client.Client, error) {
	cfg := client.Config{BaseURL: "http://" + p.addr, Protocol: proto, Timeout: time.Minute}
	if proto == client.HTTP3 {
		cfg.CAFile = filepath.Join(s.work, "tls", p.name, "cert.pem")
	}
	c, err := client.New(cfg)
	if err == nil {
		s.urls[c] = cfg.BaseURL
	}
	return c, err
}

// loadTimeout bounds each request of the raw HTTP/1.1 client, as
// client's Timeout does for node/client.
const loadTimeout = time.Minute

// runMix is RunMix with the suite's transport, and each target's URL
// that of its client, so that HTTP/1.1 targets go over the raw client
// when the transport says so.
func (s *suite) runMix(cfg Config, mix []Target) ([]Report, error) {
	cfg.Transport, cfg.Timeout = s.cfg.Transport, loadTimeout
	mix = slices.Clone(mix)
	for i := range mix {
		mix[i].URL = s.urls[mix[i].Client]
	}
	return RunMix(s.ctx, cfg, mix)
}

func (s *suite) stopAll() {
	for _, p := range s.procs {
		p.stop(15 * time.Second)
	}
	s.procs = nil
}

func (s *suite) stop(p *process) {
	p.stop(15 * time.Second)
	for i, q := range s.procs {
		if q == p {
			s.procs = append(s.procs[:i], s.procs[i+1:]...)
			break
		}
	}
}

// measure runs one load and logs it.
func (s *suite) measure(name string, c *client.Client, p *Payload, concurrency int, window time.Duration) (Report, error) {
	cfg := Config{Client: c, URL: s.urls[c], Transport: s.cfg.Transport, Timeout: loadTimeout,
		Concurrency: concurrency, Warmup: s.cfg.Warmup, Duration: window, Path: "/v2/health/live"}
	if p != nil {
		p.Apply(&cfg)
	}
	rep, err := Run(s.ctx, cfg)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", name, err)
	}
	return rep, s.logRun(name, rep)
}

// logRun logs a run's figures; a run without a single success is an
// error.
func (s *suite) logRun(name string, rep Report) error {
	msg := fmt.Sprintf("%-28s c=%-3d %8.0f req/s %9.0f rows/s  p50 %-9s p99 %-9s", name, rep.Concurrency, rep.Throughput, rep.RowsPerSec, fmtDur(rep.P50), fmtDur(rep.P99))
	msg += "  " + rep.Client
	if rep.Errors > 0 {
		msg += fmt.Sprintf("  %d errors %v (%s)", rep.Errors, rep.ErrorsByStatus, rep.FirstError)
	}
	s.logf("%s", msg)
	if rep.Requests == rep.Errors {
		return fmt.Errorf("%s: no request succeeded (%d errors: %s)", name, rep.Errors, rep.FirstError)
	}
	return nil
}

// payloads holds the encoded requests of one model against one server.
type payloads struct{ json, binary Payload }

func (s *suite) payloads(c *client.Client, model string, withBinary bool) (payloads, error) {
	var ps payloads
	var err error
	if ps.json, err = BuildPayload(s.ctx, c, model, 1, EncodingJSON, 1); err != nil {
		return ps, err
	}
	if err := Probe(s.ctx, c, ps.json); err != nil {
		return ps, err
	}
	if withBinary {
		if ps.binary, err = BuildPayload(s.ctx, c, model, 1, EncodingBinary, 1); err != nil {
			return ps, err
		}
		if err := Probe(s.ctx, c, ps.binary); err != nil {
			return ps, err
		}
	}
	return ps, nil
}

func (s *suite) run() error {
	repo := filepath.Join(s.work, "repo")
	small := filepath.Join(s.work, "repo-small")
	if err := s.sample(repo, true); err != nil {
		return err
	}
	if err := s.sample(small, false); err != nil {
		return err
	}
	smallFile := filepath.Join(repo, SmallModel, "1", "model.onnx")
	largeFile := filepath.Join(repo, LargeModel, "1", "model.onnx")

	node, err := s.startNode("node", repo, nil, SmallModel, LargeModel)
	if err != nil {
		return err
	}
	base, err := s.startBaseline("baseline-small", smallFile, SmallModel)
	if err != nil {
		return err
	}
	if err := s.concurrencyOne(node, base, smallFile); err != nil {
		return err
	}
	if err := s.smallThroughput(node, base); err != nil {
		return err
	}
	if s.rep.BaselineMemory, err = ReadMemory(base.pid()); err != nil {
		return err
	}
	s.stop(base)

	base, err = s.startBaseline("baseline-large", largeFile, LargeModel)
	if err != nil {
		return err
	}
	if err := s.largeThroughput(node, base, largeFile); err != nil {
		return err
	}
	s.stop(base)

	for _, v := range s.cfg.Variants {
		s.rep.Variants = append(s.rep.Variants, s.variant(node, v))
		if s.ctx.Err() != nil {
			return s.ctx.Err()
		}
	}
	s.stop(node)
	return s.memory(small)
}

// concurrencyOne measures the c=1 p50s in rounds. Within a group the
// requests alternate one by one (RunMix): per protocol, the node's no-op,
// JSON and binary inferences; then the baseline's no-op and JSON next to
// the node's JSON over HTTP/1.1. Odd rounds take the groups in reverse
// order, and each round ends with the in-process measurement.
func (s *suite) concurrencyOne(node, base *process, smallFile string) error {
	type group struct {
		series []string
		mix    []Target
	}
	var groups []group
	var h1JSON *Payload
	for _, proto := range s.cfg.Protocols {
		c, err := s.client(node, proto)
		if err != nil {
			return err
		}
		defer c.Close()
		ps, err := s.payloads(c, SmallModel, true)
		if err != nil {
			return fmt.Errorf("node over %s: %w", proto, err)
		}
		if h1JSON == nil || proto == client.HTTP1 {
			h1JSON = &ps.json
		}
		groups = append(groups, group{
			series: []string{proto + " noop", proto + " json", proto + " binary"},
			mix:    []Target{noopTarget(c), ps.json.Target(c), ps.binary.Target(c)},
		})
	}
	nc, err := s.client(node, client.HTTP1)
	if err != nil {
		return err
	}
	defer nc.Close()
	bc, err := s.client(base, client.HTTP1)
	if err != nil {
		return err
	}
	defer bc.Close()
	// The baseline gets the very same JSON body as the node.
	if err := Probe(s.ctx, bc, *h1JSON); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	groups = append(groups, group{
		series: []string{seriesBaselineNoop, seriesBaselineJSON, seriesPetrelVsBaseline},
		mix:    []Target{noopTarget(bc), h1JSON.Target(bc), h1JSON.Target(nc)},
	})

	for round := range s.cfg.Rounds {
		s.logf("concurrency 1, round %d of %d", round+1, s.cfg.Rounds)
		order := slices.Clone(groups)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, g := range order {
			cfg := Config{Concurrency: 1, Warmup: s.cfg.Warmup, Duration: s.cfg.Window * time.Duration(len(g.mix))}
			reps, err := s.runMix(cfg, g.mix)
			if err != nil {
				return err
			}
			for i, rep := range reps {
				if err := s.logRun(g.series[i], rep); err != nil {
					return err
				}
				s.rep.Rounds[g.series[i]] = append(s.rep.Rounds[g.series[i]], rep)
			}
		}
		ip, err := InProcess(smallFile, 1, s.cfg.SmallIterations)
		if err != nil {
			return err
		}
		s.logf("in-process %s batch 1: p50 %s (%s), %s (%s)", SmallModel, fmtDur(ip.Petrel.P50), RuntimePetrel, fmtDur(ip.Default.P50), RuntimeDefault)
		s.rep.InProcessSmall = append(s.rep.InProcessSmall, ip)
	}
	s.rep.OwnCosts = ownCosts(s.rep, s.cfg.Protocols)
	// Not a target: what a Run costs when the thread was idle before it,
	// as in a server at concurrency 1.
	ip, err := InProcessGap(smallFile, 1, max(s.cfg.SmallIterations/4, 2), IdleGap)
	if err != nil {
		return err
	}
	s.rep.InProcessSmallIdle = ip
	s.logf("in-process %s batch 1 after %v idle: p50 %s (%s), %s (%s)", SmallModel, IdleGap, fmtDur(ip.Petrel.P50), RuntimePetrel, fmtDur(ip.Default.P50), RuntimeDefault)
	return nil
}

// Series of the head-to-head group at concurrency 1.
const (
	seriesBaselineNoop     = "baseline noop"
	seriesBaselineJSON     = "baseline json"
	seriesPetrelVsBaseline = "h1 json (next to baseline)"
)

// ownCosts computes, per protocol and encoding, the own cost of each round
// (inference p50 − no-op p50 of the same interleaved run − the round's
// best in-process p50) and takes the median over rounds.
func ownCosts(r *SuiteReport, protocols []string) []OwnCost {
	inProc, _ := r.InProcessSmallP50()
	var out []OwnCost
	for _, proto := range protocols {
		for _, enc := range []string{EncodingJSON, EncodingBinary} {
			infer, noop := r.Rounds[proto+" "+enc], r.Rounds[proto+" noop"]
			var costs []time.Duration
			for i := range min(len(infer), len(noop), len(r.InProcessSmall)) {
				best, _ := r.InProcessSmall[i].Best()
				costs = append(costs, infer[i].P50-noop[i].P50-best.P50)
			}
			out = append(out, OwnCost{
				Protocol: proto, Encoding: enc,
				InferP50: r.p50(proto + " " + enc), NoopP50: r.p50(proto + " noop"), InProcessP50: inProc,
				Cost: Median(costs), Rounds: costs,
			})
		}
	}
	return out
}

// noopTarget is GET /v2/health/live.
func noopTarget(c *client.Client) Target {
	return Target{Name: "noop", Client: c, Method: http.MethodGet, Path: "/v2/health/live"}
}

// throughputRounds is how many alternating rounds the c=64 figures take:
// as many as the c=1 ones, so that the median is a real middle.
func (s *suite) throughputRounds() int { return s.cfg.Rounds }

func (s *suite) smallThroughput(node, base *process) error {
	nc, err := s.client(node, client.HTTP1)
	if err != nil {
		return err
	}
	defer nc.Close()
	bc, err := s.client(base, client.HTTP1)
	if err != nil {
		return err
	}
	defer bc.Close()
	ps, err := s.payloads(nc, SmallModel, true)
	if err != nil {
		return err
	}
	bp := ps.json
	for round := range s.throughputRounds() {
		s.logf("%s concurrency 64, round %d of %d", SmallModel, round+1, s.throughputRounds())
		runs := []func() error{
			func() error {
				r, err := s.measure("petrel small json", nc, &ps.json, 64, s.cfg.ThroughputWindow)
				s.rep.PetrelSmall64 = append(s.rep.PetrelSmall64, r)
				return err
			},
			func() error {
				r, err := s.measure("baseline small json", bc, &bp, 64, s.cfg.ThroughputWindow)
				s.rep.BaselineSmall64 = append(s.rep.BaselineSmall64, r)
				return err
			},
		}
		if round%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, f := range runs {
			if err := f(); err != nil {
				return err
			}
		}
	}
	r, err := s.measure("petrel small binary", nc, &ps.binary, 64, s.cfg.ThroughputWindow)
	if err != nil {
		return err
	}
	s.rep.Extra = append(s.rep.Extra, NamedReport{"Petrel mlp-small, binary, HTTP/1.1, c=64", r})
	return nil
}

func (s *suite) largeThroughput(node, base *process, largeFile string) error {
	nc, err := s.client(node, client.HTTP1)
	if err != nil {
		return err
	}
	defer nc.Close()
	bc, err := s.client(base, client.HTTP1)
	if err != nil {
		return err
	}
	defer bc.Close()
	ps, err := s.payloads(nc, LargeModel, true)
	if err != nil {
		return err
	}
	bp := ps.json
	if err := Probe(s.ctx, bc, bp); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	for round := range s.throughputRounds() {
		s.logf("%s concurrency 64, round %d of %d", LargeModel, round+1, s.throughputRounds())
		runs := []func() error{
			func() error {
				r, err := s.measure("petrel large json", nc, &ps.json, 64, s.cfg.LargeWindow)
				s.rep.PetrelLarge64 = append(s.rep.PetrelLarge64, r)
				return err
			},
			func() error {
				r, err := s.measure("baseline large json", bc, &bp, 64, s.cfg.LargeWindow)
				s.rep.BaselineLarge64 = append(s.rep.BaselineLarge64, r)
				return err
			},
			func() error {
				r, err := s.measure("petrel large binary", nc, &ps.binary, 64, s.cfg.LargeWindow)
				s.rep.PetrelLarge64Binary = append(s.rep.PetrelLarge64Binary, r)
				return err
			},
			func() error {
				ip, err := InProcess(largeFile, 64, s.cfg.LargeIterations)
				if err != nil {
					return err
				}
				s.rep.InProcessLarge = append(s.rep.InProcessLarge, ip)
				s.logf("in-process %s batch 64: %.0f rows/s (%s), %.0f rows/s (%s), %.0f rows/s (%s)", LargeModel, ip.Petrel.RowsPerSec, RuntimePetrel, ip.Default.RowsPerSec, RuntimeDefault, ip.Parallel.RowsPerSec, RuntimeParallel)
				return nil
			},
		}
		if round%2 == 1 {
			slices.Reverse(runs)
		}
		for _, f := range runs {
			if err := f(); err != nil {
				return err
			}
		}
	}
	return nil
}

// variant measures one alternative node configuration; a failure is
// recorded, not fatal.
func (s *suite) variant(def *process, v Variant) VariantResult {
	res := VariantResult{Variant: v}
	err := func() error {
		repo := filepath.Join(s.work, "repo-variant")
		os.RemoveAll(repo)
		if err := s.sample(repo, true); err != nil {
			return err
		}
		if err := patchConfigs(repo, v.ModelConfig, v.Models); err != nil {
			return err
		}
		s.logf("variant %q", v.Name)
		p, err := s.startNode("node-variant", repo, v.NodeArgs, SmallModel, LargeModel)
		if p != nil {
			defer s.stop(p)
		}
		if err != nil {
			return err
		}
		c, err := s.client(p, client.HTTP1)
		if err != nil {
			return err
		}
		defer c.Close()
		dc, err := s.client(def, client.HTTP1)
		if err != nil {
			return err
		}
		defer dc.Close()
		sp, err := s.payloads(c, SmallModel, false)
		if err != nil {
			return err
		}
		// The default node's requests alternate with the variant's.
		mix := []Target{noopTarget(c), sp.json.Target(c), noopTarget(dc), sp.json.Target(dc)}
		reps, err := s.runMix(Config{Concurrency: 1, Warmup: s.cfg.Warmup, Duration: 4 * s.cfg.Window}, mix)
		if err != nil {
			return err
		}
		for i, name := range []string{"variant h1 noop", "variant h1 json", "default h1 noop", "default h1 json"} {
			if err := s.logRun(name, reps[i]); err != nil {
				return err
			}
		}
		res.SmallNoopP50, res.SmallP50 = reps[0].P50, reps[1].P50
		res.DefaultSmallNoopP50, res.DefaultSmallP50 = reps[2].P50, reps[3].P50
		lp, err := s.payloads(c, LargeModel, false)
		if err != nil {
			return err
		}
		r, err := s.measure("default large json", dc, &lp.json, 64, s.cfg.LargeWindow)
		if err != nil {
			return err
		}
		res.DefaultLargeRowsPerS = r.RowsPerSec
		r, err = s.measure("variant large json", c, &lp.json, 64, s.cfg.LargeWindow)
		if err != nil {
			return err
		}
		res.LargeRowsPerS = r.RowsPerSec
		return nil
	}()
	if err != nil {
		res.Err = err.Error()
		s.logf("variant %q failed: %v", v.Name, err)
	}
	return res
}

// memory starts a node with only mlp-small, puts load on it and reads its
// resident memory.
func (s *suite) memory(repo string) error {
	p, err := s.startNode("node-small-only", repo, nil, SmallModel)
	if p != nil {
		defer s.stop(p)
	}
	if err != nil {
		return err
	}
	c, err := s.client(p, client.HTTP1)
	if err != nil {
		return err
	}
	defer c.Close()
	ps, err := s.payloads(c, SmallModel, true)
	if err != nil {
		return err
	}
	if _, err := s.measure("memory run json c=1", c, &ps.json, 1, s.cfg.Window); err != nil {
		return err
	}
	if _, err := s.measure("memory run binary c=64", c, &ps.binary, 64, s.cfg.Window); err != nil {
		return err
	}
	if s.rep.NodeMemory, err = ReadMemory(p.pid()); err != nil {
		return err
	}
	s.logf("node with only %s: RSS %s, peak %s", SmallModel, formatBytes(s.rep.NodeMemory.RSS), formatBytes(s.rep.NodeMemory.Peak))
	return nil
}
