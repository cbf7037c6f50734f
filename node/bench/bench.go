// Package bench is Petrel's load generator and benchmark suite.
//
// Run is a closed-loop load generator in the manner of Triton's
// perf_analyzer: Concurrency workers each send a pre-encoded request back
// to back, and the report gives throughput and latency percentiles over a
// measurement window that follows a warm-up. Plain-HTTP/1.1 requests go
// over a lean client of this package (rawh1.go: one keep-alive
// connection per worker, request bytes built once, no allocation per
// request), so that the load generator, on the same machine, takes as
// little CPU from the server as perf_analyzer or wrk would; HTTP/2 and
// HTTP/3, and HTTP/1.1 with Transport TransportNetHTTP, go through
// node/client.
//
// The suite (Suite) measures the performance targets of docs/PERFORMANCE.md
// across processes on loopback: it starts `petrel node` and the baseline
// server (Baseline, the simplest net/http + onnxruntime_go alternative) as
// separate processes, measures every figure next to its floor in one run,
// and prints a table of figures, targets and verdicts.
//
// Nothing here reads flags or exits; cmd/petrel wraps it.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mesh/petrel/node/client"
)

// Config is one load-generation run.
type Config struct {
	// Client sends the requests (any protocol), except those that go over
	// the raw HTTP/1.1 client (see URL and Transport). It may be nil when
	// every request does.
	Client *client.Client
	// URL is the base URL of the server ("http://host:port"), as Client
	// was made with. With Transport TransportRawH1 (the default), requests
	// to a plain http:// URL over HTTP/1.1 (Client nil or of protocol h1)
	// go over the raw HTTP/1.1 client (rawh1.go) instead of Client, with
	// one connection per worker. Without URL they go through Client.
	URL string
	// Transport picks the client of plain-HTTP/1.1 requests:
	// TransportRawH1 ("" means it) or TransportNetHTTP (always Client).
	// HTTP/2 and HTTP/3 always go through Client.
	Transport string
	// Timeout bounds each request of the raw client (connect, write and
	// read): a request that takes longer may fail, and one that takes
	// twice as long fails. Default DefaultRawTimeout. Client has its own.
	Timeout time.Duration
	// Method is GET or POST. Default: POST when Body is set, else GET.
	Method string
	// Path is the request path, e.g. "/v2/models/m/infer".
	Path string
	// Body is the pre-encoded request body (POST), sent unchanged by every
	// request. Workers never modify it.
	Body []byte
	// HeaderLen is the length of the JSON header of Body when it carries
	// binary tensors, as client.EncodeInfer returns it: -1 for a body that
	// is all JSON. Ignored for GET.
	HeaderLen int
	// Concurrency is the number of workers, each with one request in
	// flight at a time. Default 1.
	Concurrency int
	// Warmup runs before measuring; its requests are not recorded.
	Warmup time.Duration
	// Duration is the measurement window. Default 5 s unless MaxRequests
	// is set, in which case the window is unbounded.
	Duration time.Duration
	// MaxRequests ends the measurement after this many measured requests
	// (successful or not); 0 means no limit.
	MaxRequests int
	// Rows is the number of rows (batch size) one request carries, for
	// RowsPerSec. Default 1.
	Rows int
	// Progress, if set, gets a dot per second while the run lasts longer
	// than a few seconds, and a newline at the end.
	Progress io.Writer
}

// validate fills defaults and reports a config that cannot run.
func (c *Config) validate() error {
	switch c.Transport {
	case "":
		c.Transport = TransportRawH1
	case TransportRawH1, TransportNetHTTP:
	default:
		return fmt.Errorf("bench: transport %q: want %s or %s", c.Transport, TransportRawH1, TransportNetHTTP)
	}
	if c.Client == nil && !c.raw() {
		return errors.New("bench: no client")
	}
	if c.Path == "" || c.Path[0] != '/' {
		return fmt.Errorf("bench: path %q: want an absolute path", c.Path)
	}
	if c.Method == "" {
		c.Method = http.MethodGet
		if c.Body != nil {
			c.Method = http.MethodPost
		}
	}
	if c.Method != http.MethodGet && c.Method != http.MethodPost {
		return fmt.Errorf("bench: method %q: want GET or POST", c.Method)
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.Concurrency < 0 || c.Concurrency > 1<<14 {
		return fmt.Errorf("bench: concurrency %d: want 1..16384", c.Concurrency)
	}
	if c.Rows == 0 {
		c.Rows = 1
	}
	if c.Rows < 0 || c.Warmup < 0 || c.Duration < 0 || c.MaxRequests < 0 || c.Timeout < 0 {
		return errors.New("bench: rows, warmup, duration, max requests and timeout must not be negative")
	}
	if c.Duration == 0 && c.MaxRequests == 0 {
		c.Duration = 5 * time.Second
	}
	return nil
}

// raw reports whether cfg's requests go over the raw HTTP/1.1 client.
func (c *Config) raw() bool {
	return useRaw(c.Transport, c.Client, c.URL)
}

// useRaw reports whether requests to url sent with cl go over the raw
// HTTP/1.1 client under transport.
func useRaw(transport string, cl *client.Client, url string) bool {
	if transport != TransportRawH1 && transport != "" || url == "" {
		return false
	}
	if cl != nil && cl.Protocol() != client.HTTP1 {
		return false
	}
	_, _, _, ok := rawAddr(url)
	return ok
}

// ClientName names the client that sends cfg's requests, as
// Report.Client will.
func ClientName(cfg Config) string {
	if cfg.Transport == "" {
		cfg.Transport = TransportRawH1
	}
	return clientName(cfg.raw(), cfg.Client)
}

// clientName names the client that sends a target's requests, for
// reports: "raw-h1", "net/http h1", "net/http h2" or "quic-go h3".
func clientName(raw bool, cl *client.Client) string {
	switch {
	case raw:
		return TransportRawH1
	case cl == nil:
		return ""
	case cl.Protocol() == client.HTTP3:
		return "quic-go h3"
	}
	return "net/http " + cl.Protocol()
}

// Report is the outcome of one run. Latencies are of successful (200)
// requests only; Throughput and RowsPerSec count successful requests over
// the measurement window.
type Report struct {
	Concurrency int
	// Client is the client that sent the requests: "raw-h1" (the raw
	// HTTP/1.1 client), "net/http h1", "net/http h2" or "quic-go h3".
	Client string
	// Requests is the number of measured requests, successful or not.
	Requests int
	// Errors counts the measured requests that did not answer 200;
	// ErrorsByStatus splits them by status, with 0 for transport errors
	// (connection refused, timeout); FirstError describes one of them.
	Errors         int
	ErrorsByStatus map[int]int
	FirstError     string
	// Elapsed is the measurement window as it actually ran: from its start
	// to the end of the last measured request.
	Elapsed    time.Duration
	Throughput float64 // successful requests per second
	RowsPerSec float64 // Throughput × rows per request
	P50, P90   time.Duration
	P99        time.Duration
	Mean       time.Duration
	Min, Max   time.Duration
}

// workerResult is what one worker collected for one target, without
// locks.
type workerResult struct {
	lat      []time.Duration // successful requests, in order
	errs     map[int]int     // status (0: transport error) -> count
	firstErr string
	lastEnd  time.Time // end of the last measured request
}

// Target is one kind of request of a mixed run (RunMix).
type Target struct {
	// Name labels the target in errors.
	Name string
	// Client and URL are as in Config, for this target alone, so that a
	// mix can span protocols or servers. A target with neither takes
	// both of Config's.
	Client *client.Client
	URL    string
	// Method, Path, Body, HeaderLen and Rows are as in Config.
	Method    string
	Path      string
	Body      []byte
	HeaderLen int
	Rows      int
}

// Run drives the load described by cfg and returns the report of the
// measurement window. When ctx ends early Run stops the workers and
// returns what was measured so far together with ctx.Err().
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.validate(); err != nil {
		return Report{}, err
	}
	reps, err := runTargets(ctx, &cfg, []Target{{Client: cfg.Client, URL: cfg.URL, Method: cfg.Method, Path: cfg.Path, Body: cfg.Body, HeaderLen: cfg.HeaderLen, Rows: cfg.Rows}})
	return reps[0], err
}

// RunMix is Run with several kinds of request: each worker cycles through
// mix, one request of each in turn (worker i starting at target i mod
// len(mix)), and the reports, one per target, count each target's own
// requests. Alternating request by request exposes every target to the
// same noise from the machine, which makes differences between them (an
// inference against a no-op on the same server) far steadier than
// separate runs. cfg's Method, Path, Body, HeaderLen and Rows are ignored;
// MaxRequests counts the requests of all targets together.
func RunMix(ctx context.Context, cfg Config, mix []Target) ([]Report, error) {
	if len(mix) == 0 {
		return nil, errors.New("bench: empty mix")
	}
	cfg.Path, cfg.Method, cfg.Body = "/", http.MethodGet, nil
	if cfg.Client == nil && cfg.URL == "" {
		cfg.Client, cfg.URL = mix[0].Client, mix[0].URL
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	mix = slices.Clone(mix)
	for i := range mix {
		t := &mix[i]
		if t.Client == nil && t.URL == "" {
			t.Client, t.URL = cfg.Client, cfg.URL
		}
		tc := Config{Client: t.Client, URL: t.URL, Transport: cfg.Transport, Method: t.Method, Path: t.Path, Body: t.Body, HeaderLen: t.HeaderLen, Rows: t.Rows, Duration: time.Second}
		if err := tc.validate(); err != nil {
			return nil, fmt.Errorf("target %d %q: %w", i, t.Name, err)
		}
		t.Method, t.Rows = tc.Method, tc.Rows
	}
	return runTargets(ctx, &cfg, mix)
}

// runTargets is the load loop of Run and RunMix; cfg is validated.
func runTargets(ctx context.Context, cfg *Config, targets []Target) ([]Report, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	var measureTo time.Time // zero: no time limit
	if cfg.Duration > 0 {
		measureTo = measureFrom.Add(cfg.Duration)
	}
	var budget atomic.Int64 // measured requests left when MaxRequests > 0
	budget.Store(int64(cfg.MaxRequests))

	stopProgress := progress(cfg.Progress, cfg.Warmup+cfg.Duration)
	defer stopProgress()

	// Each worker appends to its own slices; a guess at the capacity saves
	// most of the growth.
	capHint := 1 << 16 / (cfg.Concurrency * len(targets))
	if cfg.MaxRequests > 0 {
		capHint = cfg.MaxRequests/(cfg.Concurrency*len(targets)) + 1
	}
	capHint = min(max(capHint, 256), 1<<16)

	// Targets that go over the raw HTTP/1.1 client get their request
	// bytes built once, here, and a server index: each worker has one
	// connection per server.
	raws, servers, err := rawTargets(cfg, targets)
	if err != nil {
		return nil, err
	}
	var conns []*rawConn // all workers' connections
	workerConns := make([][]*rawConn, cfg.Concurrency)
	for w := range workerConns {
		for _, addr := range servers {
			c := newRawConn(runCtx, addr, cfg.Timeout)
			workerConns[w] = append(workerConns[w], c)
			conns = append(conns, c)
		}
	}
	// Ending the run (ctx) fails the requests in flight at once.
	stopRaw := context.AfterFunc(runCtx, func() {
		for _, c := range conns {
			c.stop()
		}
	})
	defer func() {
		stopRaw()
		for _, c := range conns {
			c.close()
		}
	}()

	// results[w][t] belongs to worker w alone until wg.Wait.
	results := make([][]workerResult, cfg.Concurrency)
	var wg sync.WaitGroup
	for w := range results {
		results[w] = make([]workerResult, len(targets))
		for t := range targets {
			results[w][t].lat = make([]time.Duration, 0, capHint)
		}
		mine, myConns := results[w], workerConns[w]
		wg.Go(func() {
			for i := w; runCtx.Err() == nil; i++ {
				k := i % len(targets)
				t0 := time.Now()
				if !measureTo.IsZero() && !t0.Before(measureTo) {
					return
				}
				measured := !t0.Before(measureFrom)
				if measured && cfg.MaxRequests > 0 && budget.Add(-1) < 0 {
					return
				}
				var status int
				var err error
				if r := &raws[k]; r.req != nil {
					status, err = myConns[r.server].do(r.req, t0)
				} else {
					status, err = send(runCtx, &targets[k])
				}
				t1 := time.Now()
				if !measured {
					continue
				}
				if runCtx.Err() != nil {
					return // interrupted, not a server error
				}
				res := &mine[k]
				res.lastEnd = t1
				if err == nil && status == http.StatusOK {
					res.lat = append(res.lat, t1.Sub(t0))
					continue
				}
				if res.errs == nil {
					res.errs = map[int]int{}
				}
				res.errs[status]++
				if res.firstErr == "" {
					if err != nil {
						res.firstErr = err.Error()
					} else {
						res.firstErr = fmt.Sprintf("status %d", status)
					}
				}
			}
		})
	}
	wg.Wait()
	reps := make([]Report, len(targets))
	per := make([]workerResult, cfg.Concurrency)
	for t := range targets {
		for w := range results {
			per[w] = results[w][t]
		}
		reps[t] = merge(per, measureFrom, cfg.Concurrency, targets[t].Rows)
		reps[t].Client = clientName(raws[t].req != nil, targets[t].Client)
	}
	// A target's window ends with the last request of any target.
	var end time.Duration
	for _, r := range reps {
		end = max(end, r.Elapsed)
	}
	for t := range reps {
		if r := &reps[t]; r.Elapsed != end && end > 0 {
			r.Elapsed = end
			r.Throughput = float64(r.Requests-r.Errors) / end.Seconds()
			r.RowsPerSec = r.Throughput * float64(targets[t].Rows)
		}
	}
	return reps, ctx.Err()
}

// rawTarget is how a target goes over the raw HTTP/1.1 client: its
// prebuilt request and the index of its server. req is nil for a target
// that goes through its Client.
type rawTarget struct {
	req    *rawRequest
	server int
}

// rawTargets prebuilds the requests of the targets that go over the raw
// client, and lists their servers' addresses.
func rawTargets(cfg *Config, targets []Target) ([]rawTarget, []string, error) {
	raws := make([]rawTarget, len(targets))
	var servers []string
	for i, t := range targets {
		if !useRaw(cfg.Transport, t.Client, t.URL) {
			continue
		}
		req, err := newRawRequest(t.URL, t.Method, t.Path, t.Body, t.HeaderLen)
		if err != nil {
			return nil, nil, fmt.Errorf("bench: target %d %q: %w", i, t.Name, err)
		}
		k := slices.Index(servers, req.addr)
		if k < 0 {
			k = len(servers)
			servers = append(servers, req.addr)
		}
		raws[i] = rawTarget{req: req, server: k}
	}
	return raws, servers, nil
}

// send issues one request and returns its status (0 with the error when
// there was no answer).
func send(ctx context.Context, t *Target) (int, error) {
	var (
		res *client.Result
		err error
	)
	if t.Method == http.MethodGet {
		res, err = t.Client.Get(ctx, t.Path)
	} else {
		res, err = t.Client.Post(ctx, t.Path, t.Body, t.HeaderLen, nil)
	}
	if err != nil {
		return 0, err
	}
	return res.Status, nil
}

// merge combines the workers' results into a report. from is the start of
// the measurement window.
func merge(results []workerResult, from time.Time, concurrency, rows int) Report {
	rep := Report{Concurrency: concurrency}
	n := 0
	for i := range results {
		n += len(results[i].lat)
	}
	all := make([]time.Duration, 0, n)
	var last time.Time
	for i := range results {
		r := &results[i]
		all = append(all, r.lat...)
		for status, k := range r.errs {
			if rep.ErrorsByStatus == nil {
				rep.ErrorsByStatus = map[int]int{}
			}
			rep.ErrorsByStatus[status] += k
			rep.Errors += k
		}
		if rep.FirstError == "" {
			rep.FirstError = r.firstErr
		}
		if r.lastEnd.After(last) {
			last = r.lastEnd
		}
	}
	rep.Requests = len(all) + rep.Errors
	if !last.IsZero() && last.After(from) {
		rep.Elapsed = last.Sub(from)
	}
	if rep.Elapsed > 0 {
		rep.Throughput = float64(len(all)) / rep.Elapsed.Seconds()
		rep.RowsPerSec = rep.Throughput * float64(rows)
	}
	if len(all) == 0 {
		return rep
	}
	slices.Sort(all)
	rep.P50 = Percentile(all, 50)
	rep.P90 = Percentile(all, 90)
	rep.P99 = Percentile(all, 99)
	rep.Min, rep.Max = all[0], all[len(all)-1]
	var sum float64
	for _, d := range all {
		sum += float64(d)
	}
	rep.Mean = time.Duration(math.Round(sum / float64(len(all))))
	return rep
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value such that at least p% of the
// values are less than or equal to it. It returns 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Median returns the median of ds (the lower middle for an even count),
// without modifying ds; 0 for none. The suite uses it to combine rounds.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// MedianFloat is Median for rates.
func MedianFloat(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// progressMin is the shortest run that shows progress.
const progressMin = 3 * time.Second

// progress writes a dot per second to w until the returned function is
// called, when the run is expected to last at least progressMin.
func progress(w io.Writer, expected time.Duration) (stop func()) {
	if w == nil || expected < progressMin {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprintln(w)
				return
			case <-t.C:
				fmt.Fprint(w, ".")
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}
