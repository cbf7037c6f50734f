package node_test

import (
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/node/client"
)

// TestDeadlines: while a model is busy, a request whose deadline (header
// Petrel-Timeout as a duration or milliseconds, or the OIP "timeout"
// parameter) passes in the queue gets 504 and is never executed; a model's
// timeout_ms applies to requests without a deadline of their own.
func TestDeadlines(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("slow", 1, `{"max_batch_size": 1, "concurrency": 1, "labels": {"`+labelGated+`": "1"}}`)
	r.smallMLP("slowdefault", 1, `{"max_batch_size": 1, "concurrency": 1, "timeout_ms": 40, "labels": {"`+labelGated+`": "1"}}`)
	var l slowLoader
	tn := startNode(t, testConfig(t, r.dir), l.option())
	t.Cleanup(l.open)
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			defer l.open()
			rc := tn.raw(t, proto)
			rc.hc.Timeout = 5 * time.Second // a request that is not cut short hangs on the gate
			rng := rand.New(rand.NewPCG(uint64(proto[1]), 1))
			started := l.started.Load()

			// A occupies the runtime until the gate opens.
			l.shut()
			req, x := mlpRequest(m, rng, 1)
			body, hl := encode(t, req, false)
			var busy reply
			var busyErr error
			var wg sync.WaitGroup
			wg.Go(func() {
				busy, busyErr = rc.try(http.MethodPost, "/v2/models/slow/infer", body, inferHeaders(hl))
			})
			if !eventually(10*time.Second, func() bool { return l.running.Load() == 1 }) {
				t.Fatal("the first request never started executing")
			}

			short, _ := mlpRequest(m, rng, 1)
			short.Timeout = 30 * time.Millisecond
			paramBody, paramHL := encode(t, short, false)
			for _, tc := range []struct {
				name string
				body []byte
				hdr  map[string]string
			}{
				{"Petrel-Timeout duration", body, map[string]string{"Petrel-Timeout": "30ms"}},
				{"Petrel-Timeout milliseconds", body, map[string]string{"Petrel-Timeout": "30"}},
				{"timeout parameter", paramBody, inferHeaders(paramHL)},
				{"both, the smaller wins", paramBody, map[string]string{"Petrel-Timeout": "1h"}},
			} {
				rep := rc.do(t, http.MethodPost, "/v2/models/slow/infer", tc.body, tc.hdr)
				if rep.status != http.StatusGatewayTimeout {
					t.Errorf("%s: status %d (%s), want 504 while the model is busy", tc.name, rep.status, rep.body)
					continue
				}
				wantError(t, rep, http.StatusGatewayTimeout, "deadline")
			}
			l.open()
			wg.Wait()
			if busyErr != nil {
				t.Fatal(busyErr)
			}
			checkMLP(t, m, x, decodeReply(t, busy).Outputs)
			if n := l.started.Load() - started; n != 1 {
				t.Errorf("%d executions; the requests that timed out in the queue must not run", n)
			}

			// The model's default deadline, here passing while executing.
			l.shut()
			wantError(t, rc.do(t, http.MethodPost, "/v2/models/slowdefault/infer", body, inferHeaders(hl)), http.StatusGatewayTimeout, "deadline")
			l.open()
			// An explicit longer deadline overrides it.
			rep := rc.do(t, http.MethodPost, "/v2/models/slowdefault/infer", body, map[string]string{"Petrel-Timeout": "10s"})
			checkMLP(t, m, x, decodeReply(t, rep).Outputs)
		})
	}
}

// TestQueueFull: a model with max_queue_size 1 and concurrency 1, flooded
// while busy, answers 429 with a Retry-After in whole seconds to what does
// not fit, and serves the running and the queued request.
func TestQueueFull(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("tiny", 1, `{"max_batch_size": 1, "max_queue_size": 1, "concurrency": 1, "labels": {"`+labelGated+`": "1"}}`)
	var l slowLoader
	tn := startNode(t, testConfig(t, r.dir), l.option())
	t.Cleanup(l.open)
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			defer l.open()
			rc := tn.raw(t, proto)
			rng := rand.New(rand.NewPCG(uint64(proto[1]), 2))
			type result struct {
				x   []float32
				rep reply
				err error
			}
			const flood = 6
			results := make([]result, flood+1)
			var wg sync.WaitGroup
			var refused atomic.Int64
			send := func(i int) {
				req, x := mlpRequest(m, rng, 1)
				body, hl := encode(t, req, i%2 == 0)
				results[i].x = x
				wg.Go(func() {
					results[i].rep, results[i].err = rc.try(http.MethodPost, "/v2/models/tiny/infer", body, inferHeaders(hl))
					if results[i].rep.status == http.StatusTooManyRequests {
						refused.Add(1)
					}
				})
			}
			l.shut()
			running := l.running.Load()
			send(0)
			if !eventually(10*time.Second, func() bool { return l.running.Load() == running+1 }) {
				t.Fatal("the first request never started executing")
			}
			for i := 1; i <= flood; i++ {
				send(i)
			}
			// One of the flood fits in the queue; the others are refused
			// at once.
			if !eventually(10*time.Second, func() bool { return refused.Load() == flood-1 }) {
				t.Errorf("%d of %d requests refused while the model was busy, want %d", refused.Load(), flood, flood-1)
			}
			l.open()
			wg.Wait()
			var ok, full int
			for i, res := range results {
				if res.err != nil {
					t.Fatalf("request %d: %v", i, res.err)
				}
				switch res.rep.status {
				case http.StatusOK:
					ok++
					checkMLP(t, m, res.x, decodeReply(t, res.rep).Outputs)
				case http.StatusTooManyRequests:
					full++
					wantError(t, res.rep, http.StatusTooManyRequests, "queue full")
					ra := res.rep.header.Get("Retry-After")
					if secs, err := strconv.Atoi(ra); err != nil || secs < 1 {
						t.Errorf("429 with Retry-After %q, want whole seconds >= 1", ra)
					}
				default:
					t.Errorf("request %d: status %d %s", i, res.rep.status, res.rep.body)
				}
			}
			if ok != 2 || full != flood-1 {
				t.Errorf("%d served and %d refused with 429; want the running and the queued one served, %d refused", ok, full, flood-1)
			}
		})
	}
}

// TestTimeoutParameterAccepted: a generous "timeout" parameter, and an
// explicit 0 (no deadline, as Triton reads it), do not fail a request.
func TestTimeoutParameterAccepted(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("mlp", 1, "")
	tn := startNode(t, testConfig(t, r.dir))
	req, x := mlpRequest(m, rand.New(rand.NewPCG(3, 4)), 1)
	req.Timeout = time.Minute
	resp, _, err := tn.client(t, client.HTTP1).Infer(t.Context(), "mlp", "", req, false)
	if err != nil {
		t.Fatal(err)
	}
	checkMLP(t, m, x, resp.Outputs)
	body := []byte(`{"parameters":{"timeout":0},"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":[` + values(64) + `]}]}`)
	if rep := tn.raw(t, client.HTTP1).do(t, http.MethodPost, "/v2/models/mlp/infer", body, nil); rep.status != http.StatusOK {
		t.Errorf("timeout 0: %d %s", rep.status, rep.body)
	}
}

// TestAbandonedInputsNotRecycled: when a request's deadline passes while
// its execution runs, the runtime may still read its inputs (an ONNX
// Runtime run stops only at its next termination check), and binary
// inputs alias the request body: the node must not recycle that body for
// other requests meanwhile, as the scheduler's contract says. One P makes
// the node's buffer pool hand the abandoned body to the very next request.
func TestAbandonedInputsNotRecycled(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("hold", 1, `{"max_batch_size": 1, "concurrency": 1, "labels": {"`+labelHold+`": "200"}}`)
	r.smallMLP("fast", 2, "")
	var l slowLoader
	tn := startNode(t, testConfig(t, r.dir), l.option())
	rc := tn.raw(t, client.HTTP1)
	rng := rand.New(rand.NewPCG(10, 10))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const rounds = 3
	for round := range rounds {
		req, _ := mlpRequest(m, rng, 1)
		body, hl := encode(t, req, true)
		hdr := inferHeaders(hl)
		hdr["Petrel-Timeout"] = "20ms"
		wantError(t, rc.do(t, http.MethodPost, "/v2/models/hold/infer", body, hdr), http.StatusGatewayTimeout, "deadline")
		// Other requests while the abandoned execution still runs.
		for range 4 {
			req, _ := mlpRequest(m, rng, 1)
			body, hl := encode(t, req, true)
			if rep := rc.do(t, http.MethodPost, "/v2/models/fast/infer", body, inferHeaders(hl)); rep.status != http.StatusOK {
				t.Fatalf("fast model: %d %s", rep.status, rep.body)
			}
		}
		if !eventually(5*time.Second, func() bool { return l.held.Load() == int64(round+1) }) {
			t.Fatal("the held execution did not finish")
		}
	}
	if n := l.modified.Load(); n > 0 {
		t.Errorf("%d of %d abandoned executions saw their input data overwritten by later requests", n, rounds)
	}
}
