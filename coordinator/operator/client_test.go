package operator_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/operator"
)

func TestNewClientChecksItsConfig(t *testing.T) {
	for _, c := range []operator.ClientConfig{
		{URL: "ftp://coordinator:7070", Token: "t"},
		{URL: "http://", Token: "t"},
		{URL: "http://user:pw@coordinator:7070", Token: "t"},
		{URL: "http://coordinator:7070?x=1", Token: "t"},
		{URL: "http://coordinator:7070", Token: " "},
		{URL: "http://coordinator:7070", Token: "a b"},
	} {
		if _, err := operator.NewClient(c); err == nil {
			t.Errorf("NewClient(%+v) accepted it", c)
		}
	}
	cl, err := operator.NewClient(operator.ClientConfig{URL: "https://coordinator.example/api/", Token: " tok "})
	if err != nil {
		t.Fatal(err)
	}
	if cl.URL() != "https://coordinator.example/api" {
		t.Fatalf("URL() = %q", cl.URL())
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := operator.ReadTokenFile(write("ok", "  secret-token\n")); err != nil || tok != "secret-token" {
		t.Fatalf("ReadTokenFile = %q, %v", tok, err)
	}
	if _, err := operator.ReadTokenFile(write("empty", "\n")); err == nil {
		t.Fatal("an empty token file was accepted")
	}
	if _, err := operator.ReadTokenFile(write("big", strings.Repeat("x", 5000))); err == nil {
		t.Fatal("a 5000-byte token file was accepted")
	}
	if _, err := operator.ReadTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing token file was accepted")
	}
}

// TestClientErrors checks how answers map to the sentinel errors, and
// that the token is sent.
func TestClientErrors(t *testing.T) {
	status := map[string]int{"/v1/rollouts/a": 404, "/v1/rollouts/b": 409, "/v1/rollouts/c": 403, "/v1/rollouts/d": 503, "/v1/rollouts/e": 422}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok-123" {
			w.WriteHeader(401)
			return
		}
		w.WriteHeader(status[r.URL.Path])
		w.Write([]byte(`{"error":"told so"}`))
	}))
	defer srv.Close()
	cl, err := operator.NewClient(operator.ClientConfig{URL: srv.URL, Token: "tok-123"})
	if err != nil {
		t.Fatal(err)
	}
	for model, want := range map[string]error{"a": operator.ErrNotFound, "b": operator.ErrConflict, "c": operator.ErrUnauthorized, "d": operator.ErrUnavailable} {
		_, err := cl.Rollout(context.Background(), model)
		if !errors.Is(err, want) || !strings.Contains(err.Error(), "told so") {
			t.Errorf("GET rollout %s: %v, want %v with the coordinator's message", model, err, want)
		}
	}
	_, err = cl.Rollout(context.Background(), "e")
	var ae *operator.APIError
	if !errors.As(err, &ae) || ae.Status != 422 || errors.Is(err, operator.ErrNotFound) || errors.Is(err, operator.ErrUnavailable) {
		t.Fatalf("GET rollout e: %v, want a plain 422 APIError", err)
	}
	if _, err := cl.RolloutAction(context.Background(), "a", "explode"); err == nil {
		t.Fatal("an unknown rollout action was sent")
	}
}

func TestHTTPFetcherLimits(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			w.Write([]byte("0123456789"))
		case "/chunked": // no Content-Length: the limit applies while reading
			w.(http.Flusher).Flush()
			w.Write([]byte(strings.Repeat("x", 100)))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	f := &operator.HTTPFetcher{}
	if b, err := f.Fetch(context.Background(), srv.URL+"/small", 10); err != nil || string(b) != "0123456789" {
		t.Fatalf("Fetch small = %q, %v", b, err)
	}
	if _, err := f.Fetch(context.Background(), srv.URL+"/small", 9); !errors.Is(err, operator.ErrTooLarge) {
		t.Fatalf("Fetch over the limit: %v, want ErrTooLarge", err)
	}
	if _, err := f.Fetch(context.Background(), srv.URL+"/chunked", 99); !errors.Is(err, operator.ErrTooLarge) {
		t.Fatalf("Fetch of a chunked body over the limit: %v, want ErrTooLarge", err)
	}
	if _, err := f.Fetch(context.Background(), srv.URL+"/missing", 10); err == nil || errors.Is(err, operator.ErrTooLarge) {
		t.Fatalf("Fetch of a 404: %v", err)
	}
}

// TestNewManager builds (but does not start: there is no API server) the
// controller manager.
func TestNewManager(t *testing.T) {
	cl, err := operator.NewClient(operator.ClientConfig{URL: "http://127.0.0.1:1", Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	opts := operator.ManagerOptions{Reconciler: operator.Config{Coordinator: cl}, Namespace: "petrel", HealthAddr: "0", MetricsAddr: "0", SkipNameValidation: true}
	if _, err := operator.NewManager(&rest.Config{Host: "http://127.0.0.1:1"}, opts); err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	if _, err := operator.NewManager(nil, opts); err == nil {
		t.Fatal("NewManager without a configuration")
	}
	opts.Reconciler.Coordinator = nil
	if _, err := operator.NewManager(&rest.Config{Host: "http://127.0.0.1:1"}, opts); err == nil {
		t.Fatal("NewManager without a coordinator client")
	}
}

// TestPushParts checks the multipart body of a push against the parts
// the coordinator's handlePush reads.
func TestPushParts(t *testing.T) {
	got := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/v1/models/vision/versions/v1" {
			t.Errorf("%s %s", r.Method, r.URL.Path)
		}
		mr, err := r.MultipartReader()
		if err != nil {
			t.Error(err)
			w.WriteHeader(400)
			return
		}
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(p)
			got[p.FormName()] = string(b)
		}
		w.WriteHeader(201)
		w.Write([]byte(`{"accepted":true,"manifest":{"name":"vision","version":"v1","digest":"sha256:00"}}`))
	}))
	defer srv.Close()
	cl, err := operator.NewClient(operator.ClientConfig{URL: srv.URL, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.Push(context.Background(), "vision", "v1", operator.PushParts{
		Model: []byte("onnx"), Golden: []byte("[]"), Labels: map[string]string{"team": "vision", "app": "x=y"},
		AllowBreaking: true, Pre: []byte("pre-wasm"), Post: []byte("post-wasm"),
		PreGrants: []string{"clock", "random"}, PostGrants: []string{"clock"},
	})
	if err != nil || res.Manifest == nil || res.Manifest.Digest != "sha256:00" {
		t.Fatalf("Push = %+v, %v", res, err)
	}
	want := map[string]string{"model": "onnx", "golden": "[]", "labels": "app=x=y,team=vision", "allow_breaking": "true",
		"pre": "pre-wasm", "post": "post-wasm", "grants": "pre=clock+random,post=clock"}
	if !maps.Equal(got, want) {
		t.Fatalf("parts %v, want %v", got, want)
	}
	labels, err := coordinator.ParseLabels(got["labels"])
	if err != nil || labels["app"] != "x=y" || labels["team"] != "vision" {
		t.Fatalf("the coordinator reads labels %v, %v", labels, err)
	}
	grants, err := coordinator.ParseGrants(got["grants"])
	if err != nil || !slices.Equal(grants["pre"], []string{"clock", "random"}) || !slices.Equal(grants["post"], []string{"clock"}) {
		t.Fatalf("the coordinator reads grants %v, %v", grants, err)
	}
	if _, err := cl.Push(context.Background(), "vision", "v1", operator.PushParts{}); err == nil {
		t.Fatal("a push without a model was sent")
	}
}
