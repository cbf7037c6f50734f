package node_test

// Helpers of the node's end-to-end tests: a model repository in a temporary
// directory, nodes on loopback port 0 with the real ONNX Runtime, and
// clients for each protocol.
//
// These tests need the ONNX Runtime shared library (found as
// ort.FindLibrary("") finds it) and Debian's libonnx-testdata. Both missing
// are failures, never skips: the message says how to install them.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/models/ort/onnxtest"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
	"github.com/quic-go/quic-go/http3"
)

// requestTimeout bounds every request a test sends: a hang is a failure,
// not a stuck test binary.
const requestTimeout = 20 * time.Second

// protocols are the three HTTP versions every transport test runs over.
var protocols = []string{client.HTTP1, client.HTTP2, client.HTTP3}

// requireORT fails the test when the ONNX Runtime library is missing.
func requireORT(t testing.TB) {
	t.Helper()
	if _, err := ort.FindLibrary(""); err != nil {
		t.Fatalf("the node tests need the ONNX Runtime shared library: %v", err)
	}
	if _, err := ort.Init(""); err != nil {
		t.Fatalf("the node tests need the ONNX Runtime shared library: %v", err)
	}
}

// nodeTest reads one of the ONNX project's published node tests, failing
// (with the install hint) when libonnx-testdata is missing.
func nodeTest(t testing.TB, name string) onnxtest.Case {
	t.Helper()
	if _, err := os.Stat(onnxtest.NodeTestDir); err != nil {
		t.Fatalf("%s is missing: install Debian package libonnx-testdata (make setup)", onnxtest.NodeTestDir)
	}
	c, err := onnxtest.LoadNodeTest(name)
	if err != nil {
		t.Fatalf("read node test %s (install Debian package libonnx-testdata (make setup)): %v", name, err)
	}
	return c
}

// repo is a model repository under t.TempDir().
type repo struct {
	t   testing.TB
	dir string
}

func newRepo(t testing.TB) *repo { return &repo{t: t, dir: t.TempDir()} }

// write writes a file under the repository, creating directories.
func (r *repo) write(rel string, b []byte) {
	r.t.Helper()
	p := filepath.Join(r.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// config writes <name>/config.json.
func (r *repo) config(name, cfg string) {
	r.t.Helper()
	r.write(filepath.Join(name, "config.json"), []byte(cfg))
}

// mlp writes an MLP of the given widths (softmax output), randomly
// initialised from seed, as <name>/<version>/model.onnx, and returns it
// for Forward.
func (r *repo) mlp(name, version string, sizes []int, seed uint64) *onnx.Model {
	r.t.Helper()
	m := onnx.NewMLP(sizes, onnx.Softmax).RandomInit(seed)
	b, err := m.MarshalONNX()
	if err != nil {
		r.t.Fatal(err)
	}
	r.write(filepath.Join(name, version, "model.onnx"), b)
	return m
}

// smallMLP is the 64 -> 128 -> 16 softmax MLP the node tests serve.
func (r *repo) smallMLP(name string, seed uint64, cfg string) *onnx.Model {
	r.t.Helper()
	m := r.mlp(name, "1", []int{64, 128, 16}, seed)
	if cfg != "" {
		r.config(name, cfg)
	}
	return m
}

// published copies a published node test's model as <name>/1/model.onnx.
func (r *repo) published(name, test string) onnxtest.Case {
	r.t.Helper()
	c := nodeTest(r.t, test)
	r.write(filepath.Join(name, "1", "model.onnx"), c.Model)
	return c
}

// testNode is a started node and what clients need to reach it.
type testNode struct {
	*node.Node
	cfg    node.Config
	caFile string // the development certificate, for TLS clients and HTTP/3
}

// logWriter sends the node's log to the test log until the test ends.
type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// testConfig is a node config for tests: loopback port 0, HTTP/3 on, a
// development certificate in a temporary directory, warnings logged.
func testConfig(t testing.TB, repoDir string) node.Config {
	cfg := node.DefaultConfig()
	cfg.ID = "test-node"
	cfg.Listen = "127.0.0.1:0"
	cfg.ModelRepository = repoDir
	cfg.DevCertDir = t.TempDir()
	cfg.ShutdownTimeout = 10 * time.Second
	lw := &logWriter{t: t}
	t.Cleanup(func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() })
	cfg.Logger = slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

// startNode starts a node on cfg and shuts it down when the test ends.
func startNode(t testing.TB, cfg node.Config, opts ...node.Option) *testNode {
	t.Helper()
	requireORT(t)
	n, err := node.New(cfg, opts...)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &testNode{Node: n, cfg: cfg, caFile: filepath.Join(cfg.DevCertDir, "cert.pem")}
}

// baseURL is the URL clients of proto use.
func (tn *testNode) baseURL(proto string) string {
	if tn.cfg.PlainTCP && proto != client.HTTP3 {
		return "http://" + tn.Addr()
	}
	return "https://" + tn.Addr()
}

// port is the node's TCP (and UDP) port.
func (tn *testNode) port() string {
	_, p, _ := net.SplitHostPort(tn.Addr())
	return p
}

// client returns a node/client for proto, closed when the test ends.
func (tn *testNode) client(t testing.TB, proto string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{BaseURL: tn.baseURL(proto), Protocol: proto, CAFile: tn.caFile, Timeout: requestTimeout})
	if err != nil {
		t.Fatalf("client.New(%s): %v", proto, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tlsConfig trusts the node's development certificate.
func (tn *testNode) tlsConfig(t testing.TB) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(tn.caFile)
	if err != nil {
		t.Fatalf("development certificate: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", tn.caFile)
	}
	return &tls.Config{RootCAs: pool}
}

// raw is a plain *http.Client for proto, for what node/client does not
// expose (response headers, arbitrary methods and bodies).
type raw struct {
	hc    *http.Client
	base  string
	close func()
}

func (tn *testNode) raw(t testing.TB, proto string) *raw {
	t.Helper()
	tc := tn.tlsConfig(t)
	r := &raw{base: tn.baseURL(proto)}
	switch proto {
	case client.HTTP1, client.HTTP2:
		tr := &http.Transport{TLSClientConfig: tc}
		var p http.Protocols
		switch {
		case proto == client.HTTP1:
			p.SetHTTP1(true)
		case tn.cfg.PlainTCP:
			p.SetUnencryptedHTTP2(true)
		default:
			p.SetHTTP2(true)
		}
		tr.Protocols = &p
		r.hc = &http.Client{Transport: tr, Timeout: requestTimeout}
		r.close = tr.CloseIdleConnections
	case client.HTTP3:
		tr := &http3.Transport{TLSClientConfig: tc}
		r.hc = &http.Client{Transport: tr, Timeout: requestTimeout}
		r.close = func() { tr.Close() }
	default:
		t.Fatalf("protocol %q", proto)
	}
	t.Cleanup(r.close)
	return r
}

// reply is a response read in full.
type reply struct {
	status int
	header http.Header
	body   []byte
	proto  string
}

// do sends a request; hdr may be nil. A transport error fails the test.
func (r *raw) do(t testing.TB, method, path string, body []byte, hdr map[string]string) reply {
	t.Helper()
	rep, err := r.try(method, path, body, hdr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return rep
}

// try is do that returns the transport error.
func (r *raw) try(method, path string, body []byte, hdr map[string]string) (reply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	return r.send(method, path, rd, hdr)
}

func (r *raw) send(method, path string, body io.Reader, hdr map[string]string) (reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, body)
	if err != nil {
		return reply{}, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("read body: %w", err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b, proto: resp.Proto}, nil
}

// getJSON GETs path, expects 200 and decodes the JSON body into v.
func (r *raw) getJSON(t testing.TB, path string, v any) reply {
	t.Helper()
	rep := r.do(t, http.MethodGet, path, nil, nil)
	if rep.status != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, rep.status, rep.body)
	}
	if v != nil {
		if err := json.Unmarshal(rep.body, v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, rep.body)
		}
	}
	return rep
}

// errorMessage decodes an error body {"error": "..."}.
func errorMessage(t testing.TB, body []byte) string {
	t.Helper()
	var e struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		t.Errorf("error body is not {\"error\": ...}: %q", body)
		return ""
	}
	return *e.Error
}

// wantError checks an error reply: the status, an OIP error body, and a
// message that contains every one of words (case-insensitive).
func wantError(t testing.TB, rep reply, status int, words ...string) {
	t.Helper()
	if rep.status != status {
		t.Errorf("status %d, want %d; body %s", rep.status, status, rep.body)
		return
	}
	msg := errorMessage(t, rep.body)
	for _, w := range words {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
}

// encode encodes an inference request body; headerLen is -1 for all-JSON.
func encode(t testing.TB, req *oip.Request, binaryInputs bool) ([]byte, int) {
	t.Helper()
	body, hl, err := client.EncodeInfer(req, binaryInputs)
	if err != nil {
		t.Fatalf("encode request: %v", err)
	}
	return body, hl
}

// inferHeaders are the headers of an inference body with header length hl.
func inferHeaders(hl int) map[string]string {
	if hl < 0 {
		return map[string]string{"Content-Type": oip.ContentTypeJSON}
	}
	return map[string]string{"Content-Type": oip.ContentTypeBinary, oip.HeaderContentLength: strconv.Itoa(hl)}
}

// decodeReply decodes a successful inference reply.
func decodeReply(t testing.TB, rep reply) *oip.Response {
	t.Helper()
	if rep.status != http.StatusOK {
		t.Fatalf("status %d: %s", rep.status, rep.body)
	}
	hl := -1
	if h := rep.header.Get(oip.HeaderContentLength); h != "" {
		var err error
		if hl, err = strconv.Atoi(h); err != nil {
			t.Fatalf("%s %q", oip.HeaderContentLength, h)
		}
	}
	resp, err := oip.DecodeResponse(rep.body, hl)
	if err != nil {
		t.Fatalf("decode response: %v", err)
	}
	return resp
}

// f32 builds an FP32 tensor.
func f32(name string, shape []int64, v []float32) models.Tensor {
	return onnxtest.Tensor(name, models.FP32, shape, v...)
}

// randomRows returns rows*width values in [-1, 1) from rng.
func randomRows(rng *rand.Rand, rows, width int) []float32 {
	x := make([]float32, rows*width)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	return x
}

// mlpRequest is an inference request of rows random rows for m.
func mlpRequest(m *onnx.Model, rng *rand.Rand, rows int) (*oip.Request, []float32) {
	x := randomRows(rng, rows, m.InSize())
	return &oip.Request{Inputs: []models.Tensor{f32("input", []int64{int64(rows), int64(m.InSize())}, x)}}, x
}

// checkMLP compares a served output with Forward of the input.
func checkMLP(t testing.TB, m *onnx.Model, x []float32, outs []models.Tensor) {
	t.Helper()
	if len(outs) != 1 {
		t.Fatalf("%d outputs, want 1", len(outs))
	}
	rows := len(x) / m.InSize()
	want, err := m.Forward(x, rows)
	if err != nil {
		t.Fatal(err)
	}
	got := outs[0]
	if got.Name != "probabilities" || got.DataType != models.FP32 || fmt.Sprint(got.Shape) != fmt.Sprint([]int64{int64(rows), int64(m.OutSize())}) {
		t.Fatalf("output %s %s %v, want probabilities FP32 [%d %d]", got.Name, got.DataType, got.Shape, rows, m.OutSize())
	}
	if len(got.Data) != 4*len(want) {
		t.Fatalf("output has %d bytes, want %d", len(got.Data), 4*len(want))
	}
	for i, w := range want {
		g := math.Float32frombits(binary.LittleEndian.Uint32(got.Data[4*i:]))
		if math.Abs(float64(g-w)) > 1e-5 {
			t.Fatalf("output element %d (row %d) = %v, Forward says %v", i, i/m.OutSize(), g, w)
		}
	}
}

// checkCase compares served outputs with a node test's reference outputs,
// by name.
func checkCase(t testing.TB, c onnxtest.Case, outs []models.Tensor, names ...string) {
	t.Helper()
	if names == nil {
		for _, o := range c.Outputs {
			names = append(names, o.Name)
		}
	}
	if len(outs) != len(names) {
		t.Fatalf("%d outputs, want %d (%v)", len(outs), len(names), names)
	}
	for i, name := range names {
		if outs[i].Name != name {
			t.Fatalf("output %d is %q, want %q", i, outs[i].Name, name)
		}
		for _, w := range c.Outputs {
			if w.Name == name {
				if err := onnxtest.Compare(outs[i], w, 1e-6); err != nil {
					t.Errorf("%s: %v", c.Name, err)
				}
			}
		}
	}
}

// scrape GETs /metrics and returns the text.
func scrape(t testing.TB, r *raw) string {
	t.Helper()
	rep := r.do(t, http.MethodGet, "/metrics", nil, nil)
	if rep.status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rep.status)
	}
	return string(rep.body)
}

// metricValue returns the value of the series name{labels} (labels may be
// a subset), summed over matching series; ok is false when none matches.
func metricValue(text, name string, labels map[string]string) (v float64, ok bool) {
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series, val := line[:sp], line[sp+1:]
		sname, lbl, _ := strings.Cut(series, "{")
		if sname != name {
			continue
		}
		match := true
		for k, want := range labels {
			if !strings.Contains(lbl, k+`="`+want+`"`) {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		v += f
		ok = true
	}
	return v, ok
}

// eventually polls cond every 5 ms until it is true or d has passed.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
