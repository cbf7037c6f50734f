package node_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/internal/testproc"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
	"github.com/quic-go/quic-go/http3"
)

// handlerGet serves a GET through the node's handler, without the network
// (which may be closed already).
func handlerGet(n *node.Node, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	n.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w
}

// inflight reads the node's in-flight inference gauge.
func inflight(n *node.Node) float64 {
	v, _ := metricValue(handlerGet(n, "/metrics").Body.String(), "petrel_inference_inflight_requests", nil)
	return v
}

// h3Reachable reports whether a fresh HTTP/3 connection gets an answer.
func h3Reachable(t *testing.T, tn *testNode, wait time.Duration) bool {
	tr := &http3.Transport{TLSClientConfig: tn.tlsConfig(t)}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+tn.Addr()+"/v2/health/live", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// TestGracefulShutdown: requests in flight on all three protocols when
// Shutdown begins (executing or queued) complete with 200; readiness turns
// 503 at once; new connections are refused; Shutdown is idempotent.
func TestGracefulShutdown(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("slow", 1, `{"max_batch_size": 1, "concurrency": 4, "labels": {"`+labelGated+`": "1"}}`)
	var l slowLoader
	l.shut()
	cfg := testConfig(t, r.dir)
	requireORT(t)
	n, err := node.New(cfg, l.option())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // when the test fails early; a no-op otherwise
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	t.Cleanup(l.open)
	tn := &testNode{Node: n, cfg: cfg, caFile: filepath.Join(cfg.DevCertDir, "cert.pem")}

	type result struct {
		x   []float32
		rep reply
		err error
	}
	const perProto = 2
	results := make([]result, perProto*len(protocols))
	var wg sync.WaitGroup
	rng := rand.New(rand.NewPCG(8, 8))
	for i := range results {
		rc := tn.raw(t, protocols[i%len(protocols)])
		req, x := mlpRequest(m, rng, 1)
		body, hl := encode(t, req, i%2 == 0)
		results[i].x = x
		wg.Go(func() {
			results[i].rep, results[i].err = rc.try(http.MethodPost, "/v2/models/slow/infer", body, inferHeaders(hl))
		})
	}
	// Every request is in the handler: four executing, two queued.
	if !eventually(10*time.Second, func() bool { return inflight(n) == float64(len(results)) && l.running.Load() == 4 }) {
		t.Fatalf("in flight %v, executing %d; want %d and 4", inflight(n), l.running.Load(), len(results))
	}

	shutdownErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shutdownErr <- n.Shutdown(ctx)
	}()

	// While draining: not ready, no new connections on TCP or UDP.
	if !eventually(5*time.Second, func() bool { return handlerGet(n, "/v2/health/ready").Code == http.StatusServiceUnavailable }) {
		t.Error("readiness did not turn 503 while draining")
	}
	if w := handlerGet(n, "/v2/health/live"); w.Code != http.StatusOK {
		t.Errorf("liveness while draining: %d", w.Code)
	}
	refused := eventually(5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", n.Addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if !refused {
		t.Error("TCP connections still accepted while draining")
	}
	if h3Reachable(t, tn, 300*time.Millisecond) {
		t.Error("a new HTTP/3 connection was served while draining")
	}
	if got := inflight(n); got != float64(len(results)) {
		t.Errorf("%v requests in flight while draining, want %d", got, len(results))
	}
	l.open()

	select {
	case err := <-shutdownErr:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	wg.Wait()
	for i, res := range results {
		if res.err != nil {
			t.Errorf("request %d (%s): %v", i, protocols[i%len(protocols)], res.err)
			continue
		}
		if res.rep.status != http.StatusOK {
			t.Errorf("request %d (%s): %d %s", i, protocols[i%len(protocols)], res.rep.status, res.rep.body)
			continue
		}
		checkMLP(t, m, res.x, decodeReply(t, res.rep).Outputs)
	}

	// After: idempotent, closed on both transports.
	if err := n.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", n.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("TCP connection accepted after Shutdown")
	}
	if h3Reachable(t, tn, 300*time.Millisecond) {
		t.Error("HTTP/3 served after Shutdown")
	}
}

// TestShutdownConcurrentCalls: concurrent Shutdowns all return, with the
// same result, and a node that never started shuts down too.
func TestShutdownConcurrentCalls(t *testing.T) {
	r := newRepo(t)
	r.smallMLP("mlp", 1, "")
	requireORT(t)
	n, err := node.New(testConfig(t, r.dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of a node never started: %v", err)
	}

	tn := startNode(t, testConfig(t, r.dir))
	// Idle keep-alive connections on every protocol must not hold the
	// drain up.
	for _, p := range protocols {
		if res, err := tn.client(t, p).Get(t.Context(), "/v2/health/live"); err != nil || res.Status != http.StatusOK {
			t.Fatalf("%s: %v", p, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = tn.Shutdown(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Shutdown %d: %v", i, err)
		}
	}
	if ctx.Err() != nil {
		t.Error("Shutdown waited for its context to end: idle client connections held the drain up")
	}
}

// TestNoGoroutineLeak: after Shutdown, the goroutines a node started (and
// those of the clients, once closed) are gone, including after requests
// that were batched, timed out in the queue or abandoned while executing.
func TestNoGoroutineLeak(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("mlp", 1, `{"max_queue_delay_microseconds": 1000}`)
	// An execution of "slow" takes 300 ms: longer than the 150 ms
	// request's whole deadline, so that request times out whether it
	// waits in the queue or runs at once (on a loaded machine the
	// requests of the three protocols reach the queue in any order).
	r.smallMLP("slow", 1, `{"max_batch_size": 1, "concurrency": 1, "labels": {"`+labelDelay+`": "300"}}`)
	r.published("topk", "test_top_k")
	requireORT(t)
	var l slowLoader
	base := runtime.NumGoroutine()
	func() {
		cfg := testConfig(t, r.dir)
		n, err := node.New(cfg, l.option())
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		tn := &testNode{Node: n, cfg: cfg, caFile: filepath.Join(cfg.DevCertDir, "cert.pem")}
		var wg sync.WaitGroup
		for _, p := range protocols {
			c, err := client.New(client.Config{BaseURL: tn.baseURL(p), Protocol: p, CAFile: tn.caFile, Timeout: requestTimeout})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 8 {
				wg.Go(func() {
					req, _ := mlpRequest(m, rand.New(rand.NewPCG(uint64(i), 1)), 1+i%3)
					if _, _, err := c.Infer(context.Background(), "mlp", "", req, i%2 == 0); err != nil {
						t.Errorf("%s: %v", p, err)
					}
				})
			}
			// One request keeps the slow model busy; one times out queued
			// behind it and one gives up while executing.
			for i, timeout := range []string{"", "10ms", "150ms"} {
				wg.Go(func() {
					if i > 0 {
						time.Sleep(20 * time.Millisecond)
					}
					req, _ := mlpRequest(m, rand.New(rand.NewPCG(uint64(i), 2)), 1)
					body, hl := encode(t, req, false)
					hdr := http.Header{}
					if timeout != "" {
						hdr.Set("Petrel-Timeout", timeout)
					}
					res, err := c.Post(context.Background(), client.InferPath("slow", ""), body, hl, hdr)
					if want := []int{200, 504, 504}[i]; err != nil || res.Status != want {
						t.Errorf("%s: slow request %d: %v %v, want status %d", p, i, res, err, want)
					}
				})
			}
			wg.Wait()
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	const slack = 2
	if !eventually(5*time.Second, func() bool { return runtime.NumGoroutine() <= base+slack }) {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Errorf("%d goroutines after Shutdown, %d before the node started:\n%s", runtime.NumGoroutine(), base, b.String())
	}
}

// syncBuffer is safe for a writer and a reader.
type syncBuffer = testproc.Buffer

// buildPetrel builds the petrel binary into a temporary directory.
func buildPetrel(t testing.TB) string { return testproc.BuildPetrel(t) }

var servingRE = regexp.MustCompile(`msg="node serving".* addr=(\S+)`)

// TestProcessSIGTERM runs `petrel node` as a process, sends SIGTERM while
// requests are in flight, and expects every request to complete and the
// process to exit 0.
func TestProcessSIGTERM(t *testing.T) {
	lib, err := ort.FindLibrary("")
	if err != nil {
		t.Fatalf("the node tests need the ONNX Runtime shared library: %v", err)
	}
	t0 := time.Now()
	bin := buildPetrel(t)
	t.Logf("built cmd/petrel in %v", time.Since(t0).Round(time.Millisecond))
	r := newRepo(t)
	// Real work for a real process: 256 rows through 512 -> 2048 -> 512
	// per request, one request at a time.
	m := r.mlp("heavy", "1", []int{512, 2048, 512}, 5)
	r.config("heavy", `{"max_batch_size": 1, "concurrency": 1}`)

	cmd := exec.Command(bin, "node", "--model-repo", r.dir, "--listen", "127.0.0.1:0", "--plain-tcp",
		"--dev-cert-dir", t.TempDir(), "--id", "proc-node", "--shutdown-timeout", "30s")
	cmd.Env = append(os.Environ(), ort.EnvLibrary+"="+lib)
	cmd.Stdout = io.Discard
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})
	var stderr syncBuffer
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			stderr.Write([]byte(line + "\n"))
			if mm := servingRE.FindStringSubmatch(line); mm != nil {
				select {
				case addrCh <- mm[1]:
				default:
				}
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case err := <-exited:
		t.Fatalf("petrel node exited early: %v\n%s", err, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("petrel node did not report its address\n%s", stderr.String())
	}
	c, err := client.New(client.Config{BaseURL: "http://" + addr, Protocol: client.HTTP1, Timeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	if res, err := c.Get(ctx, "/v2/health/ready"); err != nil || res.Status != http.StatusOK {
		t.Fatalf("ready: %v %v", res, err)
	}

	const rows, requests = 256, 6
	req, x := mlpRequest(m, rand.New(rand.NewPCG(6, 6)), rows)
	type result struct {
		err  error
		ok   bool
		done time.Time
	}
	results := make([]result, requests)
	var wg sync.WaitGroup
	var firstOut []models.Tensor
	var mu sync.Mutex
	for i := range results {
		wg.Go(func() {
			resp, res, err := c.Infer(ctx, "heavy", "", req, true)
			results[i].done = time.Now()
			if err != nil {
				results[i].err = err
				return
			}
			results[i].ok = res.Status == http.StatusOK
			mu.Lock()
			if firstOut == nil {
				firstOut = resp.Outputs
			} else if !bytes.Equal(firstOut[0].Data, resp.Outputs[0].Data) {
				results[i].err = errors.New("outputs differ between identical requests")
			}
			mu.Unlock()
		})
	}
	// Wait until the node has accepted every request (a connection still
	// in the listen backlog when the listener closes is reset: that
	// request was never in flight) and is working on them, then ask it
	// to stop.
	busy := eventually(30*time.Second, func() bool {
		res, err := c.Get(ctx, "/metrics")
		if err != nil {
			return false
		}
		inflight, _ := metricValue(string(res.Body), "petrel_inference_inflight_requests", nil)
		done, _ := metricValue(string(res.Body), "petrel_inference_requests_total", map[string]string{"model": "heavy"})
		return inflight >= 1 && inflight+done >= requests
	})
	if !busy {
		t.Fatalf("the requests never reached the node\n%s", stderr.String())
	}
	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	select {
	case exitErr = <-exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("petrel node did not exit after SIGTERM\n%s", stderr.String())
	}
	wg.Wait()
	if exitErr != nil {
		t.Errorf("petrel node: %v (want exit status 0)\n%s", exitErr, stderr.String())
	}
	after := 0
	for i, res := range results {
		if res.err != nil || !res.ok {
			t.Errorf("request %d: ok %v, %v", i, res.ok, res.err)
		}
		if res.done.After(signalled) {
			after++
		}
	}
	t.Logf("%d of %d requests completed after SIGTERM", after, requests)
	// One full comparison with the pure-Go forward pass.
	if firstOut != nil {
		want, _ := m.Forward(x, rows)
		if err := sameFloats(firstOut, want, []int64{rows, 512}); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(stderr.String(), "node stopped") {
		t.Errorf("no \"node stopped\" in the log:\n%s", stderr.String())
	}
}

// TestUnloadDrainsInFlight: unloading a model lets the requests already
// executing or queued for it finish; later ones get 404.
func TestUnloadDrainsInFlight(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("slow", 1, `{"max_batch_size": 1, "concurrency": 1, "labels": {"`+labelGated+`": "1"}}`)
	var l slowLoader
	tn := startNode(t, testConfig(t, r.dir), l.option())
	l.shut()
	t.Cleanup(l.open)
	rc := tn.raw(t, client.HTTP2)
	type result struct {
		x   []float32
		rep reply
		err error
	}
	results := make([]result, 3)
	var wg sync.WaitGroup
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range results {
		req, x := mlpRequest(m, rng, 1)
		body, hl := encode(t, req, false)
		results[i].x = x
		wg.Go(func() {
			results[i].rep, results[i].err = rc.try(http.MethodPost, "/v2/models/slow/infer", body, inferHeaders(hl))
		})
	}
	if !eventually(10*time.Second, func() bool { return inflight(tn.Node) == 3 && l.running.Load() == 1 }) {
		t.Fatalf("in flight %v, executing %d", inflight(tn.Node), l.running.Load())
	}
	var unload reply
	var unloadErr error
	wg.Go(func() { unload, unloadErr = rc.try(http.MethodPost, "/v2/repository/models/slow/unload", nil, nil) })
	// The model leaves the index at once; new requests are refused while
	// the old ones drain.
	if !eventually(10*time.Second, func() bool {
		rep, err := rc.try(http.MethodGet, "/v2/models/slow/ready", nil, nil)
		return err == nil && rep.status == http.StatusNotFound
	}) {
		t.Error("the model stayed ready while unloading")
	}
	req, _ := mlpRequest(m, rng, 1)
	body, hl := encode(t, req, false)
	wantError(t, rc.do(t, http.MethodPost, "/v2/models/slow/infer", body, inferHeaders(hl)), http.StatusNotFound, "slow")
	l.open()
	wg.Wait()
	if unloadErr != nil || unload.status != http.StatusOK {
		t.Errorf("unload: %v %d %s", unloadErr, unload.status, unload.body)
	}
	for i, res := range results {
		if res.err != nil {
			t.Fatalf("request %d: %v", i, res.err)
		}
		checkMLP(t, m, res.x, decodeReply(t, res.rep).Outputs)
	}
	wantError(t, rc.do(t, http.MethodPost, "/v2/models/slow/infer", body, inferHeaders(hl)), http.StatusNotFound, "slow")
	text := scrape(t, rc)
	if v, _ := metricValue(text, "petrel_models_loaded", nil); v != 0 {
		t.Errorf("petrel_models_loaded %v after unload", v)
	}
	if v, _ := metricValue(text, "petrel_models_loaded_bytes", nil); v != 0 {
		t.Errorf("petrel_models_loaded_bytes %v after unload", v)
	}
}

// TestRunStopsOnCancel: Run serves until its context ends, then shuts
// down and returns nil.
func TestRunStopsOnCancel(t *testing.T) {
	r := newRepo(t)
	r.smallMLP("mlp", 1, "")
	requireORT(t)
	cfg := testConfig(t, r.dir)
	cfg.PlainTCP = true
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestProcessSIGHUPReloadsCertificate runs `petrel node` as a process with
// certificate files, replaces the files, sends SIGHUP, and expects new
// connections to get the new certificate while the process keeps
// serving; a broken file and another SIGHUP leave it serving the last
// good one.
func TestProcessSIGHUPReloadsCertificate(t *testing.T) {
	lib, err := ort.FindLibrary("")
	if err != nil {
		t.Fatalf("the node tests need the ONNX Runtime shared library: %v", err)
	}
	bin := buildPetrel(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_, certA, keyA, err := node.DevCertificate()
	if err != nil {
		t.Fatal(err)
	}
	_, certB, keyB, err := node.DevCertificate()
	if err != nil {
		t.Fatal(err)
	}
	writeKeyPair(t, certFile, keyFile, certA, keyA)
	cmd := exec.Command(bin, "node", "--model-repo", newRepo(t).dir, "--listen", "127.0.0.1:0",
		"--tls-cert", certFile, "--tls-key", keyFile, "--id", "hup-node")
	cmd.Env = append(os.Environ(), ort.EnvLibrary+"="+lib)
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var addr string
	if !eventually(30*time.Second, func() bool {
		m := servingRE.FindStringSubmatch(stderr.String())
		if m != nil {
			addr = strings.Trim(m[1], `"`)
		}
		return m != nil
	}) {
		t.Fatalf("the node did not start:\n%s", stderr.String())
	}
	client := &tls.Config{InsecureSkipVerify: true} // the test compares certificates itself
	served := func() *x509.Certificate {
		c, err := tls.Dial("tcp", addr, client)
		if err != nil {
			t.Fatalf("dial: %v\n%s", err, stderr.String())
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	leafA, leafB := parseLeaf(t, certA), parseLeaf(t, certB)
	if !served().Equal(leafA) {
		t.Fatal("the node does not present certificate A")
	}
	writeKeyPair(t, certFile, keyFile, certB, keyB)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool { return served().Equal(leafB) }) {
		t.Fatalf("after SIGHUP the node still presents certificate A:\n%s", stderr.String())
	}
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	if !eventually(10*time.Second, func() bool { return strings.Contains(stderr.String(), "TLS certificates not changed") }) {
		t.Fatalf("a broken key was not reported:\n%s", stderr.String())
	}
	if !served().Equal(leafB) {
		t.Fatal("after a failed reload the node no longer presents certificate B")
	}
	if cmd.ProcessState != nil {
		t.Fatal("the node exited")
	}
}
