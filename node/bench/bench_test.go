package bench

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/node/client"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestPercentile(t *testing.T) {
	ten := []time.Duration{ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(7), ms(8), ms(9), ms(10)}
	cases := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", []time.Duration{ms(7)}, 99, ms(7)},
		{"p50 of ten", ten, 50, ms(5)},
		{"p90 of ten", ten, 90, ms(9)},
		{"p99 of ten", ten, 99, ms(10)},
		{"p100 of ten", ten, 100, ms(10)},
		{"tiny p", ten, 0.01, ms(1)},
		{"p50 of two", []time.Duration{ms(1), ms(2)}, 50, ms(1)},
		{"p51 of two", []time.Duration{ms(1), ms(2)}, 51, ms(2)},
	}
	for _, c := range cases {
		if got := Percentile(c.sorted, c.p); got != c.want {
			t.Errorf("%s: Percentile(p%v) = %v, want %v", c.name, c.p, got, c.want)
		}
	}
}

func TestMedian(t *testing.T) {
	in := []time.Duration{ms(3), ms(1), ms(2)}
	if got := Median(in); got != ms(2) {
		t.Errorf("Median = %v, want 2ms", got)
	}
	if in[0] != ms(3) {
		t.Error("Median modified its argument")
	}
	if got := Median([]time.Duration{ms(4), ms(1), ms(3), ms(2)}); got != ms(2) {
		t.Errorf("Median of four = %v, want the lower middle 2ms", got)
	}
	if Median(nil) != 0 || MedianFloat(nil) != 0 {
		t.Error("median of nothing is not 0")
	}
	if got := MedianFloat([]float64{5, 1, 9}); got != 5 {
		t.Errorf("MedianFloat = %v, want 5", got)
	}
}

func TestMerge(t *testing.T) {
	from := time.Unix(1000, 0)
	results := []workerResult{
		{lat: []time.Duration{ms(4), ms(1)}, lastEnd: from.Add(ms(1500))},
		{lat: []time.Duration{ms(3)}, errs: map[int]int{503: 2, 0: 1}, firstErr: "status 503", lastEnd: from.Add(2 * time.Second)},
		{lat: []time.Duration{ms(2)}, errs: map[int]int{503: 1}, firstErr: "x"},
	}
	rep := merge(results, from, 3, 8)
	if rep.Concurrency != 3 || rep.Requests != 8 || rep.Errors != 4 {
		t.Fatalf("concurrency %d requests %d errors %d, want 3, 8, 4", rep.Concurrency, rep.Requests, rep.Errors)
	}
	if rep.ErrorsByStatus[503] != 3 || rep.ErrorsByStatus[0] != 1 || rep.FirstError != "status 503" {
		t.Errorf("errors by status %v, first %q", rep.ErrorsByStatus, rep.FirstError)
	}
	if rep.Elapsed != 2*time.Second || rep.Throughput != 2 || rep.RowsPerSec != 16 {
		t.Errorf("elapsed %v throughput %v rows/s %v, want 2s, 2, 16", rep.Elapsed, rep.Throughput, rep.RowsPerSec)
	}
	if rep.Min != ms(1) || rep.Max != ms(4) || rep.P50 != ms(2) || rep.P90 != ms(4) || rep.Mean != 2500*time.Microsecond {
		t.Errorf("min %v max %v p50 %v p90 %v mean %v", rep.Min, rep.Max, rep.P50, rep.P90, rep.Mean)
	}

	empty := merge(make([]workerResult, 2), from, 2, 1)
	if empty.Requests != 0 || empty.Throughput != 0 || empty.P50 != 0 || empty.ErrorsByStatus != nil {
		t.Errorf("empty merge: %+v", empty)
	}
}

// countingServer answers POST /infer with 200, except every tenth request
// with 500, and records what it saw.
type countingServer struct {
	n           atomic.Int64
	mu          sync.Mutex
	badBody     int
	headers     map[string]int
	inflight    atomic.Int64
	maxInflight atomic.Int64
}

func (s *countingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for {
		m := s.maxInflight.Load()
		if in <= m || s.maxInflight.CompareAndSwap(m, in) {
			break
		}
	}
	k := s.n.Add(1)
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	if string(body) != "payload" {
		s.badBody++
	}
	s.headers[r.Method+" "+r.Header.Get("Inference-Header-Content-Length")+" "+r.Header.Get("Content-Type")]++
	s.mu.Unlock()
	if k%10 == 0 {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	time.Sleep(time.Millisecond) // lets the workers overlap
}

func newTestClient(t *testing.T, url string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{BaseURL: url, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRunCountsRequestsAndErrors(t *testing.T) {
	cs := &countingServer{headers: map[string]int{}}
	srv := httptest.NewServer(cs)
	defer srv.Close()
	c := newTestClient(t, srv.URL)

	rep, err := Run(context.Background(), Config{
		Client: c, Path: "/infer", Body: []byte("payload"), HeaderLen: 3,
		Concurrency: 4, MaxRequests: 100, Rows: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.n.Load(); got != 100 {
		t.Errorf("server saw %d requests, want exactly 100", got)
	}
	if rep.Requests != 100 || rep.Errors != 10 || rep.ErrorsByStatus[500] != 10 || len(rep.ErrorsByStatus) != 1 {
		t.Errorf("requests %d errors %d by status %v, want 100, 10 {500: 10}", rep.Requests, rep.Errors, rep.ErrorsByStatus)
	}
	if rep.FirstError != "status 500" {
		t.Errorf("first error %q", rep.FirstError)
	}
	if cs.badBody != 0 {
		t.Errorf("%d requests arrived with a wrong body", cs.badBody)
	}
	if want := "POST 3 application/octet-stream"; cs.headers[want] != 100 {
		t.Errorf("headers seen %v, want 100 × %q", cs.headers, want)
	}
	if cs.maxInflight.Load() > 4 {
		t.Errorf("%d requests in flight at once with concurrency 4", cs.maxInflight.Load())
	}
	if rep.Concurrency != 4 || rep.Throughput <= 0 || rep.RowsPerSec != 2*rep.Throughput {
		t.Errorf("concurrency %d throughput %v rows/s %v", rep.Concurrency, rep.Throughput, rep.RowsPerSec)
	}
	if !(rep.Min > 0 && rep.Min <= rep.P50 && rep.P50 <= rep.P90 && rep.P90 <= rep.P99 && rep.P99 <= rep.Max) {
		t.Errorf("percentiles out of order: min %v p50 %v p90 %v p99 %v max %v", rep.Min, rep.P50, rep.P90, rep.P99, rep.Max)
	}
}

// eachTransport runs a test over the raw HTTP/1.1 client and over
// net/http.
func eachTransport(t *testing.T, f func(t *testing.T, transport string)) {
	for _, tr := range Transports {
		t.Run(tr, func(t *testing.T) { f(t, tr) })
	}
}

// wantClient is Report.Client of an h1 run over a transport.
func wantClient(transport string) string {
	if transport == TransportRawH1 {
		return TransportRawH1
	}
	return "net/http h1"
}

func TestRunJSONAndGet(t *testing.T) { eachTransport(t, testRunJSONAndGet) }

func testRunJSONAndGet(t *testing.T, tr string) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+r.Header.Get("Inference-Header-Content-Length")]++
		mu.Unlock()
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL)

	if _, err := Run(context.Background(), Config{Client: c, URL: srv.URL, Transport: tr, Path: "/j", Body: []byte("{}"), HeaderLen: -1, MaxRequests: 5}); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{Client: c, URL: srv.URL, Transport: tr, Path: "/v2/health/live", MaxRequests: 7, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 7 || rep.Errors != 0 || rep.Client != wantClient(tr) {
		t.Errorf("GET run: %d requests %d errors, client %q", rep.Requests, rep.Errors, rep.Client)
	}
	if seen["POST /j application/json "] != 5 || seen["GET /v2/health/live  "] != 7 || len(seen) != 2 {
		t.Errorf("server saw %v", seen)
	}
}

func TestRunWarmupAndWindow(t *testing.T) { eachTransport(t, testRunWarmupAndWindow) }

func testRunWarmupAndWindow(t *testing.T, tr string) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1) }))
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	var progress strings.Builder
	rep, err := Run(context.Background(), Config{Client: c, URL: srv.URL, Transport: tr, Path: "/", Warmup: 50 * time.Millisecond, Duration: 150 * time.Millisecond, Concurrency: 2, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.Errors != 0 {
		t.Fatalf("requests %d errors %d", rep.Requests, rep.Errors)
	}
	if got := n.Load(); int64(rep.Requests) > got {
		t.Errorf("measured %d requests but the server saw only %d", rep.Requests, got)
	}
	if progress.Len() != 0 {
		t.Errorf("progress written for a short run: %q", progress.String())
	}
}

func TestRunTransportErrors(t *testing.T) { eachTransport(t, testRunTransportErrors) }

func testRunTransportErrors(t *testing.T, tr string) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := newTestClient(t, url)
	rep, err := Run(context.Background(), Config{Client: c, URL: url, Transport: tr, Path: "/", MaxRequests: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 3 || rep.ErrorsByStatus[0] != 3 || rep.FirstError == "" || rep.Throughput != 0 {
		t.Errorf("errors %d by status %v first %q throughput %v", rep.Errors, rep.ErrorsByStatus, rep.FirstError, rep.Throughput)
	}
}

func TestRunCancelled(t *testing.T) { eachTransport(t, testRunCancelled) }

func testRunCancelled(t *testing.T, tr string) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := newTestClient(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	rep, err := Run(ctx, Config{Client: c, URL: srv.URL, Transport: tr, Path: "/", Duration: time.Hour, Concurrency: 3})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if rep.Errors != 0 {
		t.Errorf("interrupted requests counted as errors: %v", rep.ErrorsByStatus)
	}
}

func TestRunConfigErrors(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1")
	for _, cfg := range []Config{
		{Path: "/"},
		{Client: c, Path: "rel"},
		{Client: c, Path: "/", Method: "PUT"},
		{Client: c, Path: "/", Concurrency: -1},
		{Client: c, Path: "/", Duration: -time.Second},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("config %+v: no error", cfg)
		}
	}
}

func TestProgressDots(t *testing.T) {
	var mu sync.Mutex
	var b strings.Builder
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return b.Write(p) })
	stop := progress(w, time.Hour)
	stop()
	stop() // idempotent
	mu.Lock()
	defer mu.Unlock()
	if !strings.HasSuffix(b.String(), "\n") {
		t.Errorf("progress output %q does not end the line", b.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestRunMixAlternates(t *testing.T) { eachTransport(t, testRunMixAlternates) }

func testRunMixAlternates(t *testing.T, tr string) {
	var mu sync.Mutex
	var order []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		order = append(order, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.URL.Path == "/bad" {
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	mix := []Target{
		{Name: "a", Path: "/a"},
		{Name: "b", Path: "/b", Body: []byte("x"), HeaderLen: -1, Rows: 4},
		{Name: "bad", Client: c, URL: srv.URL, Path: "/bad"},
	}
	reps, err := RunMix(context.Background(), Config{Client: c, URL: srv.URL, Transport: tr, MaxRequests: 30}, mix)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 3 {
		t.Fatalf("%d reports", len(reps))
	}
	for _, rep := range reps {
		if rep.Client != wantClient(tr) {
			t.Errorf("client %q, want %q", rep.Client, wantClient(tr))
		}
	}
	for i, want := range []struct{ requests, errors int }{{10, 0}, {10, 0}, {10, 10}} {
		if reps[i].Requests != want.requests || reps[i].Errors != want.errors {
			t.Errorf("target %s: %d requests %d errors, want %d and %d", mix[i].Name, reps[i].Requests, reps[i].Errors, want.requests, want.errors)
		}
	}
	if reps[2].ErrorsByStatus[http.StatusTeapot] != 10 || reps[1].RowsPerSec != 4*reps[1].Throughput {
		t.Errorf("bad target errors %v; rows/s %v for %v req/s", reps[2].ErrorsByStatus, reps[1].RowsPerSec, reps[1].Throughput)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, got := range order {
		if want := []string{"GET /a", "POST /b", "GET /bad"}[i%3]; got != want {
			t.Fatalf("request %d was %q, want %q (order %v)", i, got, want, order)
		}
	}
	if _, err := RunMix(context.Background(), Config{Client: c}, nil); err == nil {
		t.Error("empty mix accepted")
	}
	if _, err := RunMix(context.Background(), Config{Client: c}, []Target{{Path: "nope"}}); err == nil {
		t.Error("relative path accepted")
	}
}

func TestOwnCostsPerRound(t *testing.T) {
	ip := func(p50 time.Duration) InProcessReport {
		return InProcessReport{Petrel: InProcessResult{Runtime: RuntimePetrel, P50: p50 + us(1)}, Default: InProcessResult{Runtime: RuntimeDefault, P50: p50}}
	}
	r := &SuiteReport{
		Rounds: map[string][]Report{
			"h1 noop":   {{P50: us(100)}, {P50: us(150)}, {P50: us(90)}},
			"h1 json":   {{P50: us(140)}, {P50: us(200)}, {P50: us(125)}},
			"h1 binary": {{P50: us(130)}, {P50: us(180)}, {P50: us(300)}},
		},
		InProcessSmall: []InProcessReport{ip(us(10)), ip(us(10)), ip(us(5))},
	}
	ocs := ownCosts(r, []string{"h1"})
	if len(ocs) != 2 {
		t.Fatalf("%d own costs", len(ocs))
	}
	// json rounds: 30, 40, 30 -> median 30; binary: 20, 20, 205 -> 20.
	if ocs[0].Encoding != EncodingJSON || ocs[0].Cost != us(30) || ocs[1].Cost != us(20) {
		t.Errorf("own costs %+v", ocs)
	}
	if ocs[0].InferP50 != us(140) || ocs[0].NoopP50 != us(100) || ocs[0].InProcessP50 != us(10) {
		t.Errorf("medians %+v", ocs[0])
	}
}
