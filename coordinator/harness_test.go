package coordinator_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/validate"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/models/ort/onnxtest"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/meshtls"
)

// These tests run a real coordinator (embedded NATS with JetStream, or a
// separate nats-server process) and real nodes on loopback, with ONNX
// Runtime. They fail, never skip, without the runtime library.

const (
	adminToken = "admin-secret-0123456789"
	pushToken  = "push-secret-0123456789"
	readToken  = "read-secret-0123456789"
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PETREL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testTokens(t testing.TB) *coordinator.Tokens {
	toks, err := coordinator.NewTokens([]coordinator.Token{
		{Name: "alice", Secret: adminToken, Scopes: []string{"admin"}},
		{Name: "ci", Secret: pushToken, Scopes: []string{"push"}},
		{Name: "viewer", Secret: readToken, Scopes: []string{"read"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

func initORT(t testing.TB) {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		t.Fatalf("these tests need the ONNX Runtime shared library (make setup): %v", err)
	}
}

// testMesh is a coordinator and nodes.
type testMesh struct {
	t     testing.TB
	dir   string
	cfg   coordinator.Config
	c     *coordinator.Coordinator
	nodes []*node.Node
	natsU string
	// base and pub describe a coordinator running as a separate process
	// (c is nil then).
	base     string
	pub      ed25519.PublicKey
	mesh     bool
	feedback bool
}

func (m *testMesh) url() string {
	if m.base != "" {
		return m.base
	}
	return m.c.URL()
}

func (m *testMesh) key() ed25519.PublicKey {
	if m.pub != nil {
		return m.pub
	}
	return m.c.PublicKey()
}

type meshOpts struct {
	nodes    int
	mesh     bool   // nodes also gossip and fetch from each other
	feedback bool   // nodes keep a feedback log (federated rounds)
	natsURL  string // external NATS; "" = embedded
	mutate   func(*coordinator.Config)
}

var regions = []struct {
	name     string
	lat, lon float64
}{{"eu-west", 48.85, 2.35}, {"us-east", 40.71, -74.01}, {"ap-south", 1.35, 103.82}, {"sa-east", -23.55, -46.63}, {"af-south", -33.92, 18.42}}

func newTestMesh(t testing.TB, o meshOpts) *testMesh {
	t.Helper()
	initORT(t)
	m := &testMesh{t: t, dir: t.TempDir()}
	m.cfg = coordinator.Config{
		DataDir: m.dir, Listen: "127.0.0.1:0", Tokens: testTokens(t), Logger: testLogger(t).With("c", "coordinator"),
		NATSURL: o.natsURL, Tick: 200 * time.Millisecond,
		Embedded: bus.EmbeddedOptions{Port: 0, Users: []bus.User{{Name: "node", Password: "node-password"}}},
		Validate: validate.Options{LatencyBudget: time.Hour, LatencyRuns: 3},
	}
	if o.mutate != nil {
		o.mutate(&m.cfg)
	}
	m.startCoordinator()
	m.mesh, m.feedback = o.mesh, o.feedback
	if o.mesh {
		if _, err := meshtls.NewDevCA(filepath.Join(m.dir, "ca"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < o.nodes; i++ {
		m.addNode(i)
	}
	t.Cleanup(m.close)
	return m
}

func (m *testMesh) startCoordinator() {
	m.t.Helper()
	c, err := coordinator.New(m.cfg)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		m.t.Fatal(err)
	}
	m.c = c
	if m.natsU == "" {
		m.natsU = c.NATSURL()
	}
}

func (m *testMesh) addNode(i int) *node.Node {
	m.t.Helper()
	r := regions[i%len(regions)]
	cfg := node.DefaultConfig()
	cfg.ID = fmt.Sprintf("node-%d", i)
	cfg.Listen = "127.0.0.1:0"
	cfg.PlainTCP = true
	cfg.HTTP3 = false
	cfg.Logger = testLogger(m.t).With("c", cfg.ID)
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.Mesh.Region, cfg.Mesh.Lat, cfg.Mesh.Lon, cfg.Mesh.HasLocation = r.name, r.lat, r.lon, true
	cfg.Control = node.ControlConfig{
		NATS:           bus.ConnOptions{URL: m.natsU},
		CoordinatorKey: m.key(),
		StatusInterval: 200 * time.Millisecond,
		Labels:         map[string]string{"tier": "edge"},
	}
	if m.cfg.NATSURL == "" {
		cfg.Control.NATS.User, cfg.Control.NATS.Password = "node", "node-password"
	}
	if m.feedback {
		cfg.Feedback.Dir = filepath.Join(m.dir, cfg.ID+"-feedback")
		cfg.Feedback.Online.Disabled = true // rounds train from the log; keep CPU for them
		cfg.Feedback.DriftBaseline, cfg.Feedback.DriftWindow = 50, 50
	}
	if m.mesh {
		mc := &cfg.Mesh
		cfg.HTTP3 = true // peers talk HTTP/3
		mc.Enabled, mc.Role, mc.GossipBind, mc.Profile, mc.DevMode = true, "edge", "127.0.0.1:0", "local", true
		mc.TLSDir, mc.BlobDir = filepath.Join(m.dir, "ca"), filepath.Join(m.dir, cfg.ID+"-blobs")
		if len(m.nodes) > 0 {
			mc.Seeds = []string{m.nodes[0].GossipAddr()}
		}
	}
	n, err := node.New(cfg)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		m.t.Fatal(err)
	}
	m.nodes = append(m.nodes, n)
	return n
}

func (m *testMesh) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range m.nodes {
		n.Shutdown(ctx)
	}
	if m.c != nil {
		m.c.Close()
	}
}

// api calls the management API and decodes a JSON answer into out.
func (m *testMesh) api(method, path, token string, body any, out any) (int, string) {
	m.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, m.url()+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return m.do(req, out)
}

func (m *testMesh) do(req *http.Request, out any) (int, string) {
	m.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			m.t.Fatalf("%s %s: decode %s: %v", req.Method, req.URL, b, err)
		}
	}
	return resp.StatusCode, string(b)
}

// push sends a model version as `petrel model push` does.
func (m *testMesh) push(token, name, ver string, model []byte, golden []models.Golden, extra map[string]string) (int, string) {
	m.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("model", "model.onnx")
	fw.Write(model)
	if golden != nil {
		gb, _ := json.Marshal(golden)
		gw, _ := mw.CreateFormFile("golden", "golden.json")
		gw.Write(gb)
	}
	for k, v := range extra {
		mw.WriteField(k, v)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", m.url()+"/v1/models/"+name+"/versions/"+ver, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return m.do(req, nil)
}

// mlpVersion is the sample MLP (64 -> 32 -> 16, softmax) with a golden
// example; seed varies the weights.
func mlpVersion(t testing.TB, seed uint64, sizes ...int) ([]byte, []models.Golden) {
	t.Helper()
	if len(sizes) == 0 {
		sizes = []int{64, 32, 16}
	}
	mm := onnx.NewMLP(sizes, onnx.Softmax).RandomInit(seed)
	b, err := mm.MarshalONNX()
	if err != nil {
		t.Fatal(err)
	}
	in := make([]float32, sizes[0])
	for i := range in {
		in[i] = float32(i%5)/5 - 0.4
	}
	out, err := mm.Forward(in, 1)
	if err != nil {
		t.Fatal(err)
	}
	inJ, _ := json.Marshal(in)
	outJ, _ := json.Marshal(out)
	return b, []models.Golden{{
		Inputs:    []models.GoldenTensor{{Name: "input", DataType: models.FP32, Shape: []int64{1, int64(sizes[0])}, Data: inJ}},
		Outputs:   []models.GoldenTensor{{Name: mm.Signature().Outputs[0].Name, DataType: models.FP32, Shape: []int64{1, int64(sizes[len(sizes)-1])}, Data: outJ}},
		Tolerance: 1e-5,
	}}
}

// faultyVersion has the MLP's signature (input [N,64] -> outName [N,16])
// but looks its answer up in a two-row table by the first input value:
// inputs whose first value is 0 or 1 work (the validation gate's golden
// and latency inputs), others make ONNX Runtime fail the run, as a
// canary with a bug in a code path the gate did not exercise would.
func faultyVersion(t testing.TB, outName string) []byte {
	t.Helper()
	table := make([]float32, 32)
	for i := range table {
		table[i] = 1.0 / 16
	}
	g := onnxtest.Graph{
		Name:    "faulty",
		Inputs:  []onnxtest.Value{{Name: "input", Type: models.FP32, Shape: []int64{-1, 64}, Params: []string{"batch"}}},
		Outputs: []onnxtest.Value{{Name: outName, Type: models.FP32, Shape: []int64{-1, 16}, Params: []string{"batch"}}},
		Initializers: []models.Tensor{
			onnxtest.Tensor("table", models.FP32, []int64{2, 16}, table...),
			onnxtest.Tensor("starts", models.Int64, []int64{1}, int64(0)),
			onnxtest.Tensor("ends", models.Int64, []int64{1}, int64(1)),
			onnxtest.Tensor("axes", models.Int64, []int64{1}, int64(1)),
			onnxtest.Tensor("shape", models.Int64, []int64{2}, int64(-1), int64(16)),
		},
		Nodes: []onnxtest.Node{
			{Op: "Slice", Inputs: []string{"input", "starts", "ends", "axes"}, Outputs: []string{"col"}},
			{Op: "Cast", Inputs: []string{"col"}, Outputs: []string{"idx"}, Attrs: []onnxtest.Attr{onnxtest.Int("to", 7)}},
			{Op: "Gather", Inputs: []string{"table", "idx"}, Outputs: []string{"rows"}, Attrs: []onnxtest.Attr{onnxtest.Int("axis", 0)}},
			{Op: "Reshape", Inputs: []string{"rows", "shape"}, Outputs: []string{outName}},
		},
	}
	return onnxtest.Model(g, 13)
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, last)
}

// readyEverywhere waits until every node reports model/ver ready.
func (m *testMesh) readyEverywhere(model, ver string, timeout time.Duration) {
	m.t.Helper()
	waitFor(m.t, timeout, model+" "+ver+" ready on every node", func() (bool, string) {
		ready := 0
		var states []string
		var nodes []coordinator.NodeView
		m.api("GET", "/v1/nodes", readToken, nil, &nodes)
		for _, n := range nodes {
			for _, s := range n.Models {
				if s.Model == model && s.Version == ver {
					states = append(states, n.Node+":"+s.State+" "+s.Reason)
					if s.State == "READY" {
						ready++
					}
				}
			}
		}
		return ready == len(m.nodes), strings.Join(states, "; ")
	})
}

// infer sends one request to a node and returns the status and the
// version that answered.
func infer(t testing.TB, n *node.Node, model, key string, first float32) (int, string) {
	t.Helper()
	width := 64
	if w, ok := inputWidths[model]; ok {
		width = w
	}
	vals := make([]string, width)
	for i := range vals {
		vals[i] = "0.25"
	}
	vals[0] = fmt.Sprint(first)
	body := `{"inputs":[{"name":"input","shape":[1,` + fmt.Sprint(width) + `],"datatype":"FP32","data":[` + strings.Join(vals, ",") + `]}]}`
	req, _ := http.NewRequest("POST", "http://"+n.Addr()+"/v2/models/"+model+"/infer", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(node.DefaultRequestKeyHeader, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var out struct {
		Version string `json:"model_version"`
		Error   string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 {
		return resp.StatusCode, out.Error
	}
	return resp.StatusCode, out.Version
}

// inputWidths are the input widths of test models other than the
// 64-wide MLPs.
var inputWidths = map[string]int{"fashion": 784}

// load sends requests round robin over the nodes with keyed users until
// stopped; it counts answers by status and version.
type load struct {
	once   sync.Once
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	byVer  map[string]int
	status map[int]int
	sent   atomic.Int64
}

func startLoad(t testing.TB, m *testMesh, model string, first float32, workers int) *load {
	l := &load{stop: make(chan struct{}), byVer: map[string]int{}, status: map[int]int{}}
	for w := 0; w < workers; w++ {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				n := m.nodes[(i+w)%len(m.nodes)]
				st, ver := infer(t, n, model, fmt.Sprintf("user-%d-%d", w, i%50), first)
				l.sent.Add(1)
				l.mu.Lock()
				l.status[st]++
				if st == 200 {
					l.byVer[ver]++
				}
				l.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	return l
}

func (l *load) halt() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

func (l *load) snapshot() (map[int]int, map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, v := map[int]int{}, map[string]int{}
	for k, x := range l.status {
		s[k] = x
	}
	for k, x := range l.byVer {
		v[k] = x
	}
	return s, v
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
