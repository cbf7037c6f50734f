package operator_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/operator"
	"github.com/petrel-mesh/petrel/coordinator/operator/api/v1alpha1"
	"github.com/petrel-mesh/petrel/coordinator/validate"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/models/ort"
)

// These tests run a real coordinator (embedded NATS, ONNX Runtime for its
// validation gate) behind a counting proxy, serve artifacts from an
// httptest server, and keep PetrelModels in controller-runtime's fake
// client; apiserver_test.go runs the operator against a real API server.

const (
	pushSecret = "operator-push-token-0123456789"
	pollEvery  = 7 * time.Second
	namespace  = "petrel"
)

func testLogger() *slog.Logger {
	if os.Getenv("PETREL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startCoordinator starts a coordinator on loopback with embedded NATS.
func startCoordinator(t *testing.T) *coordinator.Coordinator {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		t.Fatalf("these tests need the ONNX Runtime shared library (make setup; PETREL_ORT_LIB): %v", err)
	}
	toks, err := coordinator.NewTokens([]coordinator.Token{{Name: "operator", Secret: pushSecret, Scopes: []string{"push"}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.New(coordinator.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", Tokens: toks, Logger: testLogger(),
		Tick:     100 * time.Millisecond,
		Embedded: bus.EmbeddedOptions{Port: 0},
		Validate: validate.Options{LatencyBudget: time.Hour, LatencyRuns: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// counter is a proxy in front of the coordinator that counts requests by
// "METHOD kind" (kind: push, deploy, rollout, action, get).
type counter struct {
	mu     sync.Mutex
	counts map[string]int
	srv    *httptest.Server
}

func newCounter(t *testing.T, target string) *counter {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	c := &counter{counts: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.counts[kindOf(r)]++
		c.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func kindOf(r *http.Request) string {
	p := r.URL.Path
	switch {
	case r.Method == "GET":
		return "get"
	case strings.HasPrefix(p, "/v1/models/") && strings.Contains(p, "/versions/"):
		return "push"
	case strings.HasSuffix(p, "/deploy"):
		return "deploy"
	case strings.HasPrefix(p, "/v1/rollouts/") && strings.Count(p, "/") == 3:
		return "rollout"
	case strings.HasPrefix(p, "/v1/rollouts/"):
		return "action"
	}
	return "other"
}

func (c *counter) get(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[kind]
}

func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.counts {
		n += v
	}
	return n
}

// artifacts serves files by path and counts downloads.
type artifacts struct {
	mu        sync.Mutex
	files     map[string][]byte
	downloads atomic.Int64
	srv       *httptest.Server
}

func newArtifacts(t *testing.T) *artifacts {
	a := &artifacts{files: map[string][]byte{}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		b, ok := a.files[r.URL.Path]
		a.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		a.downloads.Add(1)
		w.Write(b)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// add serves b at path and returns the spec's file for it.
func (a *artifacts) add(path string, b []byte) v1alpha1.RemoteFile {
	a.mu.Lock()
	a.files[path] = b
	a.mu.Unlock()
	sum := sha256.Sum256(b)
	return v1alpha1.RemoteFile{URL: a.srv.URL + path, SHA256: hex.EncodeToString(sum[:])}
}

// mlp returns a small MLP (8 -> 16 -> 4, softmax) and a golden file for
// it; seed varies the weights.
func mlp(t *testing.T, seed uint64) (model, golden []byte) {
	t.Helper()
	sizes := []int{8, 16, 4}
	m := onnx.NewMLP(sizes, onnx.Softmax).RandomInit(seed)
	b, err := m.MarshalONNX()
	if err != nil {
		t.Fatal(err)
	}
	in := make([]float32, sizes[0])
	for i := range in {
		in[i] = float32(i%5)/5 - 0.4
	}
	out, err := m.Forward(in, 1)
	if err != nil {
		t.Fatal(err)
	}
	inJ, _ := json.Marshal(in)
	outJ, _ := json.Marshal(out)
	g, err := json.Marshal([]models.Golden{{
		Inputs:    []models.GoldenTensor{{Name: "input", DataType: models.FP32, Shape: []int64{1, int64(sizes[0])}, Data: inJ}},
		Outputs:   []models.GoldenTensor{{Name: m.Signature().Outputs[0].Name, DataType: models.FP32, Shape: []int64{1, int64(sizes[2])}, Data: outJ}},
		Tolerance: 1e-5,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return b, g
}

// world is a coordinator, its counting proxy, an artifact server, a fake
// cluster and a reconciler.
type world struct {
	t      *testing.T
	coord  *coordinator.Coordinator
	proxy  *counter
	cl     *operator.Client // through the proxy (the reconciler's)
	direct *operator.Client // to the coordinator (the test's own calls)
	art    *artifacts
	kube   client.Client
	rec    *operator.Reconciler
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, coord: startCoordinator(t), art: newArtifacts(t)}
	w.proxy = newCounter(t, w.coord.URL())
	var err error
	if w.cl, err = operator.NewClient(operator.ClientConfig{URL: w.proxy.srv.URL, Token: pushSecret}); err != nil {
		t.Fatal(err)
	}
	if w.direct, err = operator.NewClient(operator.ClientConfig{URL: w.coord.URL(), Token: pushSecret}); err != nil {
		t.Fatal(err)
	}
	scheme, err := operator.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	w.kube = fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1alpha1.PetrelModel{}).Build()
	w.rec = w.reconciler(w.cl)
	return w
}

func (w *world) reconciler(cl *operator.Client) *operator.Reconciler {
	w.t.Helper()
	r, err := operator.NewReconciler(w.kube, operator.Config{Coordinator: cl, PollInterval: pollEvery,
		Fetcher: &operator.HTTPFetcher{Timeout: 10 * time.Second}, MaxModelBytes: 1 << 20})
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

// spec returns a spec of model/version whose artifacts (a model made with
// seed and its golden file) are served.
func (w *world) spec(model, version string, seed uint64) v1alpha1.PetrelModelSpec {
	m, g := mlp(w.t, seed)
	golden := w.art.add("/"+model+"/"+version+"/golden.json", g)
	return v1alpha1.PetrelModelSpec{
		Model: model, Version: version,
		Artifact: v1alpha1.Artifact{Model: w.art.add("/"+model+"/"+version+"/model.onnx", m), Golden: &golden},
		Labels:   map[string]string{"team": "vision"},
	}
}

// create stores a PetrelModel at generation 1.
func (w *world) create(name string, spec v1alpha1.PetrelModelSpec) {
	w.t.Helper()
	pm := &v1alpha1.PetrelModel{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Generation: 1}, Spec: spec}
	if err := w.kube.Create(context.Background(), pm); err != nil {
		w.t.Fatal(err)
	}
}

// update changes the spec and bumps the generation, as an API server does.
func (w *world) update(name string, mutate func(*v1alpha1.PetrelModelSpec)) {
	w.t.Helper()
	pm := w.get(name)
	mutate(&pm.Spec)
	pm.Generation++
	if err := w.kube.Update(context.Background(), pm); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) get(name string) *v1alpha1.PetrelModel {
	w.t.Helper()
	var pm v1alpha1.PetrelModel
	if err := w.kube.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: name}, &pm); err != nil {
		w.t.Fatal(err)
	}
	return &pm
}

func (w *world) reconcile(name string) (ctrl.Result, error) {
	w.t.Helper()
	return w.reconcileWith(w.rec, name)
}

func (w *world) reconcileWith(r *operator.Reconciler, name string) (ctrl.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: namespace, Name: name}})
}

// mustReconcile reconciles and fails the test on an error.
func (w *world) mustReconcile(name string) ctrl.Result {
	w.t.Helper()
	res, err := w.reconcile(name)
	if err != nil {
		w.t.Fatalf("reconcile %s: %v", name, err)
	}
	return res
}

// cond checks a condition's status and reason and returns it.
func cond(t *testing.T, pm *v1alpha1.PetrelModel, typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(pm.Status.Conditions, typ)
	if c == nil {
		t.Fatalf("no %s condition; status: %+v", typ, pm.Status)
	}
	if c.Status != status || c.Reason != reason {
		t.Fatalf("condition %s = %s/%s (%q), want %s/%s", typ, c.Status, c.Reason, c.Message, status, reason)
	}
	if c.ObservedGeneration != pm.Generation {
		t.Fatalf("condition %s observed generation %d, want %d", typ, c.ObservedGeneration, pm.Generation)
	}
	return c
}

func phase(t *testing.T, pm *v1alpha1.PetrelModel, want v1alpha1.Phase) {
	t.Helper()
	if pm.Status.Phase != want {
		t.Fatalf("phase %q, want %q; status: %+v", pm.Status.Phase, want, pm.Status)
	}
	if pm.Status.ObservedGeneration != pm.Generation {
		t.Fatalf("observedGeneration %d, want %d", pm.Status.ObservedGeneration, pm.Generation)
	}
}

// closedURL is an http URL where nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// String lists the counts, for failure messages.
func (c *counter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, _ := json.Marshal(c.counts)
	return string(b)
}
