package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
)

const testToken = "s3cret-token-0123456789"

// seen is one request the fake coordinator received.
type seen struct {
	method, path string
	query        url.Values
	header       http.Header
	body         []byte
}

// fakeAPI is an httptest.Server standing in for the coordinator: each
// route answers with a canned status and body, and every request is
// recorded.
type fakeAPI struct {
	t   *testing.T
	srv *httptest.Server
	mux *http.ServeMux

	mu   sync.Mutex
	reqs []seen
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{t: t, mux: http.NewServeMux()}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("fake API: read body: %v", err)
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, seen{method: r.Method, path: r.URL.Path, query: r.URL.Query(), header: r.Header.Clone(), body: b})
		f.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		f.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// answer makes pattern ("METHOD /path") answer status and body.
func (f *fakeAPI) answer(pattern string, status int, body string) {
	f.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	})
}

// requests returns what was received so far.
func (f *fakeAPI) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

// only returns the one request received, failing the test otherwise.
func (f *fakeAPI) only() seen {
	f.t.Helper()
	rs := f.requests()
	if len(rs) != 1 {
		f.t.Fatalf("fake API got %d requests, want 1: %+v", len(rs), rs)
	}
	return rs[0]
}

// runClient runs the CLI with PETREL_COORDINATOR pointing at api (when not
// nil), PETREL_TOKEN set to testToken, plus vars.
func runClient(t *testing.T, api *fakeAPI, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	envs := map[string]string{"PETREL_TOKEN": testToken}
	if api != nil {
		envs["PETREL_COORDINATOR"] = api.srv.URL
	}
	for k, v := range vars {
		envs[k] = v
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := run(ctx, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return envs[k] }}, args)
	return code, out.String(), errb.String()
}

func wantAll(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const pushOK = `{
  "manifest": {"name": "mlp", "version": "v2", "digest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "format": "onnx", "signature": {"inputs": [], "outputs": []}, "labels": {"team": "vision", "tier": "gold"},
    "created_at": "2025-05-01T10:00:00Z", "lineage": {"parent": "v1", "source": "upload", "pushed_by": "ci", "pushed_at": "2025-05-01T10:00:00Z"}},
  "report": {"ok": true, "signature": {"inputs": [], "outputs": []}, "compatibility": "compatible", "breaking": false,
    "golden": "passed 2 examples", "latency_p50": 1500000, "latency_p99": 4000000,
    "checks": [{"name": "size", "ok": true, "detail": "1 MB"}]},
  "accepted": true
}`

func TestModelPushSendsMultipart(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("POST /v1/models/mlp/versions/v2", http.StatusCreated, pushOK)
	model := writeFile(t, "mlp.onnx", "\x08\x07onnx-bytes\x00\xff")
	golden := writeFile(t, "golden.json", `[{"inputs": [], "outputs": []}]`)
	tokenFile := writeFile(t, "token", "  file-token-0123456789\n")

	// Flags after the file, and the token from --token-file.
	code, out, errs := runClient(t, api, nil, "model", "push", model, "--name", "mlp", "--version", "v2",
		"--golden", golden, "--labels", "team=vision,tier=gold", "--allow-breaking", "--token-file", tokenFile)
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	r := api.only()
	if r.method != http.MethodPost || r.path != "/v1/models/mlp/versions/v2" {
		t.Fatalf("request %s %s", r.method, r.path)
	}
	if got := r.header.Get("Authorization"); got != "Bearer file-token-0123456789" {
		t.Errorf("Authorization %q", got)
	}
	mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("Content-Type %q: %v", r.header.Get("Content-Type"), err)
	}
	parts := map[string]string{}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		if _, dup := parts[p.FormName()]; dup {
			t.Errorf("part %q sent twice", p.FormName())
		}
		parts[p.FormName()] = string(b)
	}
	want := map[string]string{
		"model":          "\x08\x07onnx-bytes\x00\xff",
		"golden":         `[{"inputs": [], "outputs": []}]`,
		"labels":         "team=vision,tier=gold",
		"allow_breaking": "true",
	}
	if len(parts) != len(want) {
		t.Errorf("parts %v, want %v", parts, want)
	}
	for k, v := range want {
		if parts[k] != v {
			t.Errorf("part %q = %q, want %q", k, parts[k], v)
		}
	}
	wantAll(t, "push output", out, "mlp version v2", "sha256:0123456789abcdef", "compatible", "passed 2 examples",
		"1.5ms (p99 4ms)", "parent", "v1", "team=vision,tier=gold")
}

func TestModelPushMinimalAndJSON(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("POST /v1/models/mlp/versions/v2", http.StatusCreated, pushOK)
	model := writeFile(t, "m.onnx", "abc")
	code, out, errs := runClient(t, api, nil, "model", "push", "--json", "--name", "mlp", "--version", "v2", model)
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	r := api.only()
	if got := r.header.Get("Authorization"); got != "Bearer "+testToken {
		t.Errorf("Authorization %q, want the PETREL_TOKEN one", got)
	}
	// Only the model part: no empty labels, no allow_breaking.
	if bytes.Contains(r.body, []byte(`name="labels"`)) || bytes.Contains(r.body, []byte(`name="allow_breaking"`)) || bytes.Contains(r.body, []byte(`name="golden"`)) {
		t.Errorf("unexpected parts in body:\n%s", r.body)
	}
	var res coordinator.PushResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Accepted || res.Manifest.Version != "v2" {
		t.Fatalf("--json output is not the answer: %v\n%s", err, out)
	}
}

func TestModelPushRejected(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("POST /v1/models/mlp/versions/v3", http.StatusUnprocessableEntity, `{
  "error": "model \"mlp\" version \"v3\" failed validation: golden example 1: output differs by 0.5",
  "report": {"ok": false, "compatibility": "compatible", "golden": "failed",
    "checks": [
      {"name": "size", "ok": true, "detail": "2 KB"},
      {"name": "golden", "ok": false, "detail": "golden example 1: output differs by 0.5"},
      {"name": "latency", "ok": false, "skipped": true, "detail": "not run"},
      {"name": "signature", "ok": false, "detail": "input \"x\" removed\u001b[31m"}
    ],
    "reason": "golden example 1: output differs by 0.5"}
}`)
	model := writeFile(t, "m.onnx", "abc")
	code, out, errs := runClient(t, api, nil, "model", "push", model, "--name", "mlp", "--version", "v3")
	if code != 1 {
		t.Fatalf("code %d, want 1: %s", code, errs)
	}
	if out != "" {
		t.Errorf("stdout %q, want nothing", out)
	}
	wantAll(t, "stderr", errs,
		`petrel model push: 422 Unprocessable Entity: model "mlp" version "v3" failed validation`,
		"FAILED golden: golden example 1: output differs by 0.5",
		`FAILED signature: input "x" removed`)
	if strings.Contains(errs, "validation failed:") {
		t.Errorf("the reason is repeated although the error quotes it:\n%s", errs)
	}
	if strings.Contains(errs, "FAILED size") || strings.Contains(errs, "FAILED latency") {
		t.Errorf("passed or skipped checks printed as failed:\n%s", errs)
	}
	if strings.Contains(errs, "\x1b") {
		t.Errorf("control characters from the server reached the terminal: %q", errs)
	}

	// A reason the error does not quote is printed.
	api.answer("POST /v1/models/mlp/versions/v4", http.StatusUnprocessableEntity,
		`{"error": "rejected", "report": {"ok": false, "checks": [{"name": "load", "ok": false, "detail": "bad protobuf"}], "reason": "bad protobuf"}}`)
	code, _, errs = runClient(t, api, nil, "model", "push", model, "--name", "mlp", "--version", "v4")
	if code != 1 || !strings.Contains(errs, "422 Unprocessable Entity: rejected\n  validation failed: bad protobuf\n  FAILED load: bad protobuf\n") {
		t.Errorf("code %d, stderr %q", code, errs)
	}

	// --json prints the answer with its report, and still fails.
	code, out, _ = runClient(t, api, nil, "model", "push", model, "--name", "mlp", "--version", "v3", "--json")
	if code != 1 || !strings.Contains(out, `"report"`) {
		t.Fatalf("--json: code %d, stdout %q", code, out)
	}
}

func TestAPIErrors(t *testing.T) {
	api := newFakeAPI(t)
	api.mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error": "invalid token"}`)
			return
		}
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "<html>upstream "+strings.Repeat("x", 500)+"</html>")
	})
	cases := []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{"bad token", nil, []string{"--token", "wrong-token-0123456789"}, "petrel model list: 401 Unauthorized: invalid token\n"},
		{"no token", map[string]string{"PETREL_TOKEN": ""}, nil, "401 Unauthorized: invalid token (no token given: use --token, --token-file or PETREL_TOKEN)"},
		{"not JSON", nil, nil, "petrel model list: 502 Bad Gateway: <html>upstream xxx"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runClient(t, api, c.vars, append([]string{"model", "list"}, c.args...)...)
			if code != 1 || out != "" || !strings.Contains(errs, c.want) {
				t.Fatalf("code %d, stdout %q, stderr %q; want 1 and %q", code, out, errs, c.want)
			}
			if len(errs) > 400 {
				t.Errorf("error message not shortened: %d bytes", len(errs))
			}
		})
	}
}

func TestCoordinatorUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	code, _, errs := runClient(t, nil, map[string]string{"PETREL_COORDINATOR": addr}, "model", "list")
	if code != 1 || !strings.Contains(errs, "GET "+addr+"/v1/models") || !strings.Contains(errs, "is the coordinator running there?") {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
}

func TestUsageErrors(t *testing.T) {
	api := newFakeAPI(t)
	model := writeFile(t, "m.onnx", "abc")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"model", "frob"}, `unknown subcommand "frob" (push, list, show, rm, deploy, shadow, inspect, sample)`},
		{[]string{"model", "push", model, "--version", "v1"}, "--name is required"},
		{[]string{"model", "push", model, "--name", "mlp"}, "--version is required"},
		{[]string{"model", "push", "--name", "mlp", "--version", "v1"}, "missing arguments"},
		{[]string{"model", "push", model, "extra", "--name", "mlp", "--version", "v1"}, `unexpected arguments ["extra"]`},
		{[]string{"model", "push", model, "--name", "../etc", "--version", "v1"}, `model name "../etc"`},
		{[]string{"model", "push", model, "--name", "mlp", "--version", "v 1"}, `version "v 1"`},
		{[]string{"model", "push", model, "--name", "mlp", "--version", "v1", "--labels", "novalue"}, "--labels: label \"novalue\": want key=value"},
		{[]string{"model", "push", model, "--name", "mlp", "--version", "v1", "--token", "x", "--token-file", model}, "give --token or --token-file, not both"},
		{[]string{"model", "push", model, "--name", "mlp", "--version", "v1", "--coordinator", "ftp://host"}, "--coordinator \"ftp://host\": want http(s)://host[:port]"},
		{[]string{"model", "list", "--coordinator", "http://host/?x=1"}, "no query or fragment"},
		{[]string{"model", "list", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"model", "list", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"model", "show"}, "missing arguments"},
		{[]string{"model", "rm", "mlp", "--version", ""}, "--version is required"},
		{[]string{"model", "deploy", "mlp"}, "--version is required"},
		{[]string{"model", "deploy", "mlp", "--version", "v1", "--min-replicas", "-1"}, "--min-replicas -1 is negative"},
		{[]string{"model", "deploy", "mlp", "--version", "v1", "--labels", "a=1,a=2"}, `label "a" given twice`},
		{[]string{"model", "shadow", "mlp", "--version", "v2"}, "--share is required"},
		{[]string{"model", "shadow", "mlp", "--version", "v2", "--share", "101"}, "--share 101: want a percentage in [0, 100]"},
		{[]string{"model", "shadow", "mlp", "--report", "--version", "v2"}, "--report takes no --version or --share"},
		{[]string{"rollout"}, "usage: petrel rollout start|status"},
		{[]string{"rollout", "explode", "mlp"}, `unknown subcommand "explode" (start, status, pause, resume, promote, rollback)`},
		{[]string{"rollout", "start", "mlp"}, "--version is required"},
		{[]string{"rollout", "start", "mlp", "--version", "v2", "--steps", "1,x,100"}, `--steps "1,x,100": step 2 "x" is not a number`},
		{[]string{"rollout", "start", "mlp", "--version", "v2", "--steps", "10,5,100"}, "steps must increase"},
		{[]string{"rollout", "start", "mlp", "--version", "v2", "--steps", "1,50"}, "last step must be 100"},
		{[]string{"rollout", "start", "mlp", "--version", "v2", "--interval", "10ms"}, "--interval 10ms is shorter than 1s"},
		{[]string{"rollout", "start", "mlp", "--version", "v2", "--interval", "soon"}, `invalid value "soon" for flag -interval`},
		{[]string{"rollout", "start", "mlp", "--version", "v2", "--max-error-rate", "5"}, "--max-error-rate 5: want a fraction in [0, 1]"},
		{[]string{"rollout", "status"}, "missing arguments"},
		{[]string{"rollout", "pause", "mlp", "--reason", "x"}, "flag provided but not defined: -reason"},
		{[]string{"rollout", "rollback", "mlp", "--version", "bad version"}, `version "bad version"`},
		{[]string{"route"}, "missing arguments"},
		{[]string{"route", "mlp", "--lat", "10"}, "give both --lat and --lon, or neither"},
		{[]string{"route", "mlp", "--lat", "91", "--lon", "0"}, "want degrees in [-90, 90] and [-180, 180]"},
		{[]string{"route", "mlp", "--limit", "0"}, "--limit 0: want 1-1000"},
		{[]string{"audit", "--since", "yesterday"}, `--since "yesterday": want an RFC 3339 time or a positive duration`},
		{[]string{"audit", "--since", "-1h"}, `--since "-1h"`},
		{[]string{"audit", "--kind", "push.*"}, `--kind "push.*"`},
		{[]string{"audit", "--limit", "10001"}, "--limit 10001: want 1-10000"},
		{[]string{"audit", "stray"}, `unexpected arguments ["stray"]`},
	}
	for _, c := range cases {
		code, out, errs := runClient(t, api, nil, c.args...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%q: code %d, stderr %q; want 2 and %q", c.args, code, errs, c.want)
			continue
		}
		if out != "" {
			t.Errorf("%q: stdout %q, want nothing", c.args, out)
		}
		if !strings.Contains(errs, "usage: petrel") && !strings.Contains(errs, "unknown subcommand") {
			t.Errorf("%q: stderr lacks a usage line: %q", c.args, errs)
		}
	}
	if rs := api.requests(); len(rs) != 0 {
		t.Errorf("usage errors sent %d requests, want none: %+v", len(rs), rs)
	}
}

func TestHelpExitsZero(t *testing.T) {
	code, _, errs := runClient(t, nil, nil, "route", "-h")
	if code != 0 || !strings.Contains(errs, "usage: "+usageRoute) || !strings.Contains(errs, "-coordinator") {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
}

func TestModelList(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("GET /v1/models", 200, `[
  {"name": "mlp", "versions": ["v1", "v2"], "latest": "v2",
   "desired": {"model": "mlp", "versions": [
     {"version": "v1", "digest": "sha256:aa", "weight": 95},
     {"version": "v2", "digest": "sha256:bb", "weight": 5},
     {"version": "v3", "digest": "sha256:cc", "weight": 0, "shadow": 10}], "placement": {}, "updated_at": "2025-05-01T10:00:00Z"}},
  {"name": "resnet", "versions": ["1"], "latest": "1"}
]`)
	code, out, errs := runClient(t, api, nil, "model", "list")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows:\n%s", out)
	}
	wantAll(t, "header", lines[0], "NAME", "VERSIONS", "LATEST", "SERVING")
	wantAll(t, "mlp row", lines[1], "mlp", "v1,v2", "v2", "v1 95%, v2 5%, v3 shadow 10%")
	if f := strings.Fields(lines[2]); len(f) != 4 || f[0] != "resnet" || f[3] != "-" {
		t.Errorf("resnet row %q", lines[2])
	}
	if r := api.only(); r.method != "GET" || r.header.Get("Authorization") != "Bearer "+testToken {
		t.Errorf("request %+v", r)
	}

	empty := newFakeAPI(t)
	empty.answer("GET /v1/models", 200, `[]`)
	if code, out, _ := runClient(t, empty, nil, "model", "list"); code != 0 || !strings.Contains(out, "no models") {
		t.Errorf("empty list: code %d, out %q", code, out)
	}
}

func TestModelShow(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("GET /v1/models/mlp", 200, `{
  "name": "mlp",
  "versions": [
    {"name": "mlp", "version": "v1", "digest": "sha256:1111111111112222222222223333333333334444444444445555555555556666",
     "format": "onnx", "signature": {}, "created_at": "2025-05-01T10:00:00Z", "lineage": {"source": "upload", "pushed_by": "alice", "pushed_at": "2025-05-01T10:00:00Z"}},
    {"name": "mlp", "version": "v2", "digest": "sha256:abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd",
     "format": "onnx", "signature": {}, "created_at": "2025-05-02T10:00:00Z", "lineage": {"parent": "v1", "source": "training", "round": "r7", "pushed_at": "2025-05-02T10:00:00Z"}}
  ],
  "desired": {"model": "mlp", "versions": [{"version": "v1", "digest": "sha256:11", "weight": 90}, {"version": "v2", "digest": "sha256:ab", "weight": 10}],
    "placement": {"regions": ["eu-west", "us-east"], "labels": {"gpu": "no"}, "min_replicas_per_region": 2}, "rollout": "mlp-v2-x", "updated_at": "2025-05-02T11:00:00Z"},
  "rollout": {"id": "mlp-v2-x", "spec": {"model": "mlp", "from": "v1", "to": "v2", "steps": [10, 100], "interval": "30s", "max_error_rate": 0.01},
    "state": "running", "step": 0, "step_started": "2025-05-02T11:00:00Z", "started": "2025-05-02T11:00:00Z", "updated": "2025-05-02T11:00:00Z",
    "reason": "at step 1 (10%) for 5s of 30s", "window": {"to": {"requests": 0, "errors": 0}, "from": {"requests": 0, "errors": 0}}},
  "stats": [{"version": "v1", "requests": 900, "errors": 3, "p50_ms": 1.5, "p99_ms": 20, "nodes": 2}],
  "nodes": [{"node": "edge-1", "region": "eu-west", "version": "v2", "state": "FAILED", "reason": "out of memory"}]
}`)
	code, out, errs := runClient(t, api, nil, "model", "show", "mlp")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	wantAll(t, "show output", out,
		"model mlp", "111111111111 ", "abcdefabcdef ", "2025-05-01T10:00:00Z", "alice", "training (round r7)",
		"serving:   v1 90%, v2 10%", "regions eu-west,us-east; labels gpu=no; min 2 replicas per region",
		"rollout:   mlp-v2-x running at step 1/2, 10% of traffic on v2", "at step 1 (10%) for 5s of 30s",
		"REQUESTS", "900", "1.5ms", "20ms",
		"edge-1", "eu-west", "FAILED", "out of memory")
	if strings.Contains(out, "5555555555556666") {
		t.Errorf("digest not shortened:\n%s", out)
	}

	api.answer("GET /v1/models/nope", 404, `{"error": "model \"nope\" is not in the registry"}`)
	code, _, errs = runClient(t, api, nil, "model", "show", "nope")
	if code != 1 || !strings.Contains(errs, `petrel model show: 404 Not Found: model "nope" is not in the registry`) {
		t.Errorf("missing model: code %d, stderr %q", code, errs)
	}
}

func TestModelRm(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("DELETE /v1/models/mlp", 200, `{"removed": "mlp"}`)
	api.answer("DELETE /v1/models/mlp/versions/v1", 200, `{"removed": "mlp/v1"}`)
	code, out, errs := runClient(t, api, nil, "model", "rm", "mlp")
	if code != 0 || out != "removed mlp\n" {
		t.Fatalf("code %d, out %q, stderr %q", code, out, errs)
	}
	code, out, errs = runClient(t, api, nil, "model", "rm", "mlp", "--version", "v1")
	if code != 0 || out != "removed mlp/v1\n" {
		t.Fatalf("code %d, out %q, stderr %q", code, out, errs)
	}
	rs := api.requests()
	if len(rs) != 2 || rs[0].method != "DELETE" || rs[0].path != "/v1/models/mlp" || rs[1].path != "/v1/models/mlp/versions/v1" {
		t.Errorf("requests %+v", rs)
	}
}

func TestModelDeploy(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("POST /v1/models/mlp/deploy", 200, `{"model": "mlp", "versions": [{"version": "v2", "digest": "sha256:bb", "weight": 100}],
  "placement": {"regions": ["eu-west"], "min_replicas_per_region": 1}, "updated_at": "2025-05-02T11:00:00Z"}`)
	cases := []struct {
		name string
		args []string
		want string // the request body, compact
	}{
		{"no placement", nil, `{"version":"v2"}`},
		{"placement", []string{"--regions", "eu-west, us-east", "--labels", "gpu=yes", "--min-replicas", "1"},
			`{"version":"v2","placement":{"regions":["eu-west","us-east"],"labels":{"gpu":"yes"},"min_replicas_per_region":1}}`},
		{"only min replicas", []string{"--min-replicas", "3"}, `{"version":"v2","placement":{"min_replicas_per_region":3}}`},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runClient(t, api, nil, append([]string{"model", "deploy", "mlp", "--version", "v2"}, c.args...)...)
			if code != 0 {
				t.Fatalf("code %d: %s", code, errs)
			}
			r := api.requests()[i]
			if r.header.Get("Content-Type") != "application/json" || string(r.body) != c.want {
				t.Errorf("body %s (%s), want %s", r.body, r.header.Get("Content-Type"), c.want)
			}
			// The server decodes with DisallowUnknownFields.
			dec := json.NewDecoder(bytes.NewReader(r.body))
			dec.DisallowUnknownFields()
			var req coordinator.DeployRequest
			if err := dec.Decode(&req); err != nil {
				t.Errorf("the server would refuse the body: %v", err)
			}
			wantAll(t, "deploy output", out, "deployed mlp version v2", "serving:   v2 100%", "placement: regions eu-west; min 1 replicas per region")
		})
	}
}

func TestModelShadow(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("POST /v1/models/mlp/shadow", 200, `{"model": "mlp", "versions": [{"version": "v1", "digest": "sha256:aa", "weight": 100},
  {"version": "v2", "digest": "sha256:bb", "weight": 0, "shadow": 12.5}], "placement": {}, "updated_at": "2025-05-02T11:00:00Z"}`)
	api.answer("GET /v1/models/mlp/shadow", 200, `[{"version": "v2", "requests": 0, "errors": 0, "p50_ms": 0, "p99_ms": 0,
  "shadow": {"against": "v1", "mirrored": 400, "failed": 2, "compared": 6400, "sum_abs_diff": 3.2, "max_abs_diff": 0.0125, "mismatched": 7, "sum_squared_diff": 0.1},
  "mean_abs_diff": 0.0005, "nodes": 2}]`)
	code, out, errs := runClient(t, api, nil, "model", "shadow", "mlp", "--version", "v2", "--share", "12.5")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	r := api.requests()[0]
	if string(r.body) != `{"version":"v2","share":12.5}` {
		t.Errorf("body %s", r.body)
	}
	wantAll(t, "shadow output", out, "mirroring 12.5% of mlp traffic to version v2", "v1 100%, v2 shadow 12.5%")

	code, out, errs = runClient(t, api, nil, "model", "shadow", "mlp", "--version", "v2", "--share", "0")
	if code != 0 || !strings.Contains(out, "stopped mirroring mlp traffic to version v2") {
		t.Fatalf("share 0: code %d, out %q, stderr %q", code, out, errs)
	}
	if r := api.requests()[1]; string(r.body) != `{"version":"v2","share":0}` {
		t.Errorf("share 0 body %s", r.body)
	}

	code, out, errs = runClient(t, api, nil, "model", "shadow", "mlp", "--report")
	if code != 0 {
		t.Fatalf("report: code %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("report: want a header and a row:\n%s", out)
	}
	wantAll(t, "report header", lines[0], "VERSION", "AGAINST", "MIRRORED", "FAILED", "MEAN_ABS_DIFF", "MAX_ABS_DIFF", "MISMATCHED")
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != "v2 v1 400 2 0.0005 0.0125 7" {
		t.Errorf("report row %q", lines[1])
	}
	if r := api.requests()[2]; r.method != "GET" || r.path != "/v1/models/mlp/shadow" {
		t.Errorf("report request %s %s", r.method, r.path)
	}
}

// rolloutJSON is a rollout as the coordinator encodes it.
func rolloutJSON(state string, step int, reason string) string {
	return `{"id": "mlp-v2-20250502T110000", "spec": {"model": "mlp", "from": "v1", "to": "v2", "steps": [1, 50, 100], "interval": "1m0s",
  "max_error_rate": 0.02, "max_p99": "200ms", "min_requests": 50, "actor": "ci"},
  "state": "` + state + `", "step": ` + strconv.Itoa(step) + `, "step_started": "2025-05-02T11:01:00Z", "started": "2025-05-02T11:00:00Z",
  "updated": "2025-05-02T11:01:00Z", "reason": "` + reason + `",
  "window": {"to": {"requests": 120, "errors": 1, "latency": [0, 0, 0, 0, 0, 100, 20]}, "from": {"requests": 2000, "errors": 3}},
  "history": [{"time": "2025-05-02T11:00:00Z", "step": 0, "weight": 1, "what": "start", "actor": "ci", "reason": "rolling out mlp version v2"},
    {"time": "2025-05-02T11:01:00Z", "step": 1, "weight": 50, "what": "advance", "reason": "advanced to step 2 (50%)"}]}`
}

func TestRolloutStart(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("POST /v1/rollouts/mlp", 201, rolloutJSON("running", 0, "started"))
	code, out, errs := runClient(t, api, nil, "rollout", "start", "mlp", "--version", "v2", "--steps", "1, 50%,100",
		"--interval", "1m", "--max-error-rate", "0.02", "--max-p99", "200ms", "--min-requests", "50")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	r := api.only()
	if r.method != "POST" || r.path != "/v1/rollouts/mlp" || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("request %s %s %s", r.method, r.path, r.header.Get("Content-Type"))
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	var req coordinator.RolloutRequest
	if err := dec.Decode(&req); err != nil {
		t.Fatalf("the server would refuse %s: %v", r.body, err)
	}
	if req.Version != "v2" || len(req.Steps) != 3 || req.Steps[0] != 1 || req.Steps[1] != 50 || req.Steps[2] != 100 ||
		req.Interval != "1m0s" || req.MaxErrorRate != 0.02 || req.MaxP99 != "200ms" || req.MinRequests != 50 {
		t.Errorf("request %+v from %s", req, r.body)
	}
	wantAll(t, "start output", out, "started rollout mlp-v2-20250502T110000", "(mlp: v1 -> v2)", "state    running",
		"step     1/3, 1% of traffic on v2", "max error rate 2%, max p99 200ms, min 50 requests and 1m0s per step")

	// Defaults: no max_p99 or min_requests in the body.
	api2 := newFakeAPI(t)
	api2.answer("POST /v1/rollouts/mlp", 201, rolloutJSON("running", 0, "started"))
	if code, _, errs := runClient(t, api2, nil, "rollout", "start", "mlp", "--version", "v2"); code != 0 {
		t.Fatalf("defaults: code %d: %s", code, errs)
	}
	if got := string(api2.only().body); got != `{"version":"v2","steps":[1,5,10,50,100],"interval":"30s","max_error_rate":0.01}` {
		t.Errorf("default body %s", got)
	}
}

func TestRolloutStatus(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("GET /v1/rollouts/mlp", 200, rolloutJSON("running", 1, "at step 2 (50%) for 10s of 1m0s: 120/50 requests"))
	code, out, errs := runClient(t, api, nil, "rollout", "status", "mlp")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	wantAll(t, "status output", out, "mlp-v2-20250502T110000", "running", "step     2/3, 50% of traffic on v2, since 2025-05-02T11:01:00Z",
		"at step 2 (50%) for 10s", "v2: 120 requests, 1 errors (0.83%), p99 50ms", "v1: 2000 requests, 3 errors (0.15%)",
		"history:", "start", "advance", "advanced to step 2 (50%)")

	code, out, _ = runClient(t, api, nil, "rollout", "status", "mlp", "--json")
	if code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, `"state": "running"`) {
		t.Errorf("--json: code %d, out %s", code, out)
	}

	api.answer("GET /v1/rollouts/none", 404, `{"error": "model \"none\" has no rollout"}`)
	code, _, errs = runClient(t, api, nil, "rollout", "status", "none")
	if code != 1 || !strings.Contains(errs, `404 Not Found: model "none" has no rollout`) {
		t.Errorf("no rollout: code %d, stderr %q", code, errs)
	}
}

func TestRolloutStatusWatch(t *testing.T) {
	old := watchInterval
	watchInterval = 5 * time.Millisecond
	t.Cleanup(func() { watchInterval = old })
	cases := []struct {
		final    string
		wantCode int
	}{
		{"promoted", 0},
		{"rolled_back", 1},
	}
	for _, c := range cases {
		t.Run(c.final, func(t *testing.T) {
			api := newFakeAPI(t)
			var mu sync.Mutex
			polls := 0
			answers := []string{
				rolloutJSON("running", 0, "at step 1"),
				rolloutJSON("running", 0, "at step 1"), // unchanged: not printed again
				rolloutJSON("running", 1, "advanced to step 2"),
				rolloutJSON(c.final, 2, "the end"),
			}
			api.mux.HandleFunc("GET /v1/rollouts/mlp", func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				i := min(polls, len(answers)-1)
				polls++
				mu.Unlock()
				io.WriteString(w, answers[i])
			})
			code, out, errs := runClient(t, api, nil, "rollout", "status", "mlp", "--watch")
			if code != c.wantCode {
				t.Fatalf("code %d, want %d: %s", code, c.wantCode, errs)
			}
			if n := strings.Count(out, "rollout  mlp-v2-"); n != 3 {
				t.Errorf("printed %d states, want 3:\n%s", n, out)
			}
			if len(api.requests()) != 4 {
				t.Errorf("%d polls, want 4 (it stops at a terminal state)", len(api.requests()))
			}
			if c.wantCode == 1 && !strings.Contains(errs, "ended rolled_back: the end") {
				t.Errorf("stderr %q", errs)
			}
		})
	}
}

func TestRolloutStatusWatchStopsWithContext(t *testing.T) {
	old := watchInterval
	watchInterval = 5 * time.Millisecond
	t.Cleanup(func() { watchInterval = old })
	api := newFakeAPI(t)
	api.answer("GET /v1/rollouts/mlp", 200, rolloutJSON("paused", 0, "paused"))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, &env{stdout: &out, stderr: &errb, getenv: func(k string) string {
		return map[string]string{"PETREL_COORDINATOR": api.srv.URL}[k]
	}}, []string{"rollout", "status", "mlp", "--watch"})
	if code != 1 || !strings.Contains(errb.String(), "stopped watching") {
		t.Fatalf("code %d, stderr %q", code, errb.String())
	}
	if strings.Count(out.String(), "rollout  mlp-v2-") != 1 {
		t.Errorf("an unchanged rollout was printed more than once:\n%s", out.String())
	}
}

func TestRolloutActions(t *testing.T) {
	api := newFakeAPI(t)
	for _, a := range []string{"pause", "resume", "promote", "rollback"} {
		api.answer("POST /v1/rollouts/mlp/"+a, 200, rolloutJSON("paused", 1, a+" by ci"))
	}
	for _, a := range []string{"pause", "resume", "promote", "rollback"} {
		code, out, errs := runClient(t, api, nil, "rollout", a, "mlp")
		if code != 0 || !strings.Contains(out, a+" by ci") {
			t.Errorf("%s: code %d, out %q, stderr %q", a, code, out, errs)
		}
	}
	rs := api.requests()
	for i, a := range []string{"pause", "resume", "promote", "rollback"} {
		if rs[i].method != "POST" || rs[i].path != "/v1/rollouts/mlp/"+a || len(rs[i].body) != 0 {
			t.Errorf("%s: %s %s body %q", a, rs[i].method, rs[i].path, rs[i].body)
		}
	}

	// rollback with a reason sends it; with a version, the answer is the
	// desired state.
	api2 := newFakeAPI(t)
	api2.mux.HandleFunc("POST /v1/rollouts/mlp/rollback", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Version, Reason string }
		json.NewDecoder(r.Body).Decode(&body)
		if body.Version != "" {
			io.WriteString(w, `{"model": "mlp", "versions": [{"version": "v1", "digest": "sha256:aa", "weight": 100}], "placement": {}, "updated_at": "2025-05-02T11:00:00Z"}`)
			return
		}
		io.WriteString(w, rolloutJSON("rolled_back", 1, "rolled back by ci at step 2 (50%): "+body.Reason))
	})
	code, out, errs := runClient(t, api2, nil, "rollout", "rollback", "mlp", "--reason", "latency spike")
	if code != 0 || !strings.Contains(out, "rolled_back") || !strings.Contains(out, "latency spike") {
		t.Errorf("rollback --reason: code %d, out %q, stderr %q", code, out, errs)
	}
	code, out, errs = runClient(t, api2, nil, "rollout", "rollback", "mlp", "--version", "v1")
	if code != 0 || !strings.Contains(out, "rolled mlp back to version v1") || !strings.Contains(out, "serving: v1 100%") {
		t.Errorf("rollback --version: code %d, out %q, stderr %q", code, out, errs)
	}
	rs = api2.requests()
	if string(rs[0].body) != `{"reason":"latency spike"}` || string(rs[1].body) != `{"version":"v1"}` {
		t.Errorf("bodies %q, %q", rs[0].body, rs[1].body)
	}

	api.answer("POST /v1/rollouts/other/resume", 409, `{"error": "rollout: transition not allowed: cannot resume rollout x: it is running"}`)
	code, _, errs = runClient(t, api, nil, "rollout", "resume", "other")
	if code != 1 || !strings.Contains(errs, "petrel rollout resume: 409 Conflict: rollout: transition not allowed") {
		t.Errorf("conflict: code %d, stderr %q", code, errs)
	}
}

const routeAnswer = `{
  "model": "mlp",
  "client": {"region": "eu-west", "lat": 48.85, "lon": 2.35, "has_location": true, "from": "query"},
  "candidates": [
    {"node": "edge-paris", "url": "http://10.0.0.1:8000", "region": "eu-west", "distance_km": 3.4, "load": 2, "role": "edge", "score": 1, "why": "nearest ready node"},
    {"node": "central-1", "url": "https://central.example:8443", "region": "eu-central", "distance_km": 478.6, "load": 40, "role": "central", "score": 2, "why": "central fallback"}
  ],
  "unmatched": {"edge-nyc": "not ready"}
}`

func TestRoute(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("GET /v1/route", 200, routeAnswer)
	code, out, errs := runClient(t, api, nil, "route", "mlp", "--lat", "48.85", "--lon", "2.35", "--region", "eu-west", "--limit", "2")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	r := api.only()
	want := url.Values{"model": {"mlp"}, "lat": {"48.85"}, "lon": {"2.35"}, "region": {"eu-west"}, "limit": {"2"}}
	if r.method != "GET" || r.path != "/v1/route" || r.query.Encode() != want.Encode() {
		t.Errorf("request %s %s?%s, want query %s", r.method, r.path, r.query.Encode(), want.Encode())
	}
	wantAll(t, "route output", out, "model mlp, client region eu-west at 48.8500, 2.3500 (from query)", "edge-nyc: not ready")
	lines := strings.Split(out, "\n")
	var table []string
	for _, l := range lines {
		if strings.HasPrefix(l, "NODE") || strings.HasPrefix(l, "edge-paris") || strings.HasPrefix(l, "central-1") {
			table = append(table, l)
		}
	}
	if len(table) != 3 {
		t.Fatalf("want a header and two rows in order:\n%s", out)
	}
	wantAll(t, "route header", table[0], "NODE", "URL", "REGION", "DISTANCE_KM", "LOAD", "WHY")
	wantAll(t, "first row", table[1], "edge-paris", "http://10.0.0.1:8000", "eu-west", " 3 ", " 2 ", "nearest ready node")
	wantAll(t, "second row", table[2], "central-1", "https://central.example:8443", "479", "40", "central fallback")

	// Without location flags, only the model is asked for.
	api2 := newFakeAPI(t)
	api2.answer("GET /v1/route", 200, `{"model": "mlp", "client": {"has_location": false, "from": "none"}, "candidates": []}`)
	code, out, errs = runClient(t, api2, nil, "route", "mlp")
	if code != 1 || !strings.Contains(errs, "no healthy node serves model mlp") || !strings.Contains(out, "unknown location (from none)") {
		t.Errorf("no candidates: code %d, out %q, stderr %q", code, out, errs)
	}
	if q := api2.only().query.Encode(); q != "model=mlp" {
		t.Errorf("query %q", q)
	}
}

func TestAudit(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("GET /v1/audit", 200, `[
  {"time": "2025-05-02T11:00:00Z", "kind": "push", "actor": "ci", "model": "mlp", "version": "v2", "ok": true, "detail": "1234 bytes, compatible", "seq": 7},
  {"time": "2025-05-02T11:05:00Z", "kind": "validate", "actor": "bob", "model": "mlp", "version": "v3", "ok": false, "detail": "golden\nfailed", "seq": 8},
  {"time": "2025-05-02T11:06:00Z", "kind": "login", "actor": "ops", "ok": true, "seq": 9}
]`)
	code, out, errs := runClient(t, api, nil, "audit", "--model", "mlp", "--kind", "rollout.start", "--actor", "ci", "--since", "1h", "--limit", "50")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	want := url.Values{"model": {"mlp"}, "kind": {"rollout.start"}, "actor": {"ci"}, "since": {"1h"}, "limit": {"50"}}
	if q := api.only().query.Encode(); q != want.Encode() {
		t.Errorf("query %s, want %s", q, want.Encode())
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want one line per event:\n%s", out)
	}
	for i, wants := range [][]string{
		{"2025-05-02T11:00:00Z", "push", "ci", "mlp/v2", " ok ", "1234 bytes, compatible"},
		{"2025-05-02T11:05:00Z", "validate", "bob", "mlp/v3", "FAILED", "golden failed"},
		{"2025-05-02T11:06:00Z", "login", "ops", " - ", " ok"},
	} {
		wantAll(t, "audit line", lines[i], wants...)
	}

	api2 := newFakeAPI(t)
	api2.answer("GET /v1/audit", 200, `[]`)
	code, out, _ = runClient(t, api2, nil, "audit", "--since", "2025-05-01T00:00:00Z")
	if code != 0 || !strings.Contains(out, "no audit events match") {
		t.Errorf("empty: code %d, out %q", code, out)
	}
	if q := api2.only().query.Get("since"); q != "2025-05-01T00:00:00Z" {
		t.Errorf("since %q", q)
	}
}

func TestCoordinatorURLWithPath(t *testing.T) {
	api := newFakeAPI(t)
	api.answer("GET /petrel/v1/models", 200, `[]`)
	code, _, errs := runClient(t, api, nil, "model", "list", "--coordinator", api.srv.URL+"/petrel/")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	if p := api.only().path; p != "/petrel/v1/models" {
		t.Errorf("path %q", p)
	}
}

func TestParseInterspersed(t *testing.T) {
	cases := []struct {
		args []string
		pos  []string
		name string
	}{
		{[]string{"a", "--name", "x", "b"}, []string{"a", "b"}, "x"},
		{[]string{"--name", "x", "a"}, []string{"a"}, "x"},
		{[]string{"a", "--", "--name"}, []string{"a", "--name"}, ""},
		{nil, nil, ""},
	}
	for _, c := range cases {
		var errb bytes.Buffer
		cc := &cmdCtx{e: &env{stderr: &errb}, name: "t", use: "t"}
		fs := cc.newFlagSet()
		name := fs.String("name", "", "")
		pos, code, ok := cc.parse(fs, c.args, 0, 5)
		if !ok || code != 0 || strings.Join(pos, "|") != strings.Join(c.pos, "|") || *name != c.name {
			t.Errorf("%q: pos %q name %q ok %v code %d; want %q %q", c.args, pos, *name, ok, code, c.pos, c.name)
		}
	}
}

func TestRolloutStatusWatchRetriesTransportErrors(t *testing.T) {
	old := watchInterval
	watchInterval = 5 * time.Millisecond
	t.Cleanup(func() { watchInterval = old })
	cases := []struct {
		name      string
		failUntil int // polls with index in [1, failUntil) drop the connection
		wantCode  int
		wantErr   string
	}{
		{"recovers", 4, 0, "(retrying)"},
		{"gives up", 1 << 30, 1, "giving up after 5 failed polls"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			polls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				i := polls
				polls++
				mu.Unlock()
				switch {
				case i == 0:
					io.WriteString(w, rolloutJSON("running", 0, "at step 1"))
				case i < c.failUntil:
					conn, _, err := http.NewResponseController(w).Hijack()
					if err == nil {
						conn.Close()
					}
				default:
					io.WriteString(w, rolloutJSON("promoted", 2, "done"))
				}
			}))
			defer srv.Close()
			code, _, errs := runClient(t, nil, map[string]string{"PETREL_COORDINATOR": srv.URL}, "rollout", "status", "mlp", "--watch")
			if code != c.wantCode || !strings.Contains(errs, c.wantErr) {
				t.Fatalf("code %d, stderr %q; want %d and %q", code, errs, c.wantCode, c.wantErr)
			}
		})
	}
}

// TestPushEndsWhenServerAnswersEarly checks that a push whose answer comes
// before the coordinator has read the upload returns the answer and does
// not hang on the streaming writer.
func TestPushEndsWhenServerAnswersEarly(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, `{"error": "push body exceeds 1024 bytes"}`)
	}))
	defer srv.Close()
	model := writeFile(t, "big.onnx", strings.Repeat("x", 8<<20))
	code, _, errs := runClient(t, nil, map[string]string{"PETREL_COORDINATOR": srv.URL}, "model", "push", model, "--name", "big", "--version", "1")
	if code != 1 {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
	// Depending on timing the client sees the 413 or a broken upload;
	// either way it names the push and returns.
	if !strings.Contains(errs, "413 Request Entity Too Large: push body exceeds 1024 bytes") && !strings.Contains(errs, "POST "+srv.URL+"/v1/models/big/versions/1") {
		t.Errorf("stderr %q", errs)
	}
}

func TestPushLocalFileErrors(t *testing.T) {
	api := newFakeAPI(t)
	dir := t.TempDir()
	empty := writeFile(t, "empty.onnx", "")
	model := writeFile(t, "m.onnx", "abc")
	badGolden := writeFile(t, "g.json", "{not json")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{filepath.Join(dir, "missing.onnx")}, "model file: stat"},
		{[]string{dir}, "is not a regular file"},
		{[]string{empty}, "is empty"},
		{[]string{model, "--golden", badGolden}, "is not valid JSON"},
		{[]string{model, "--golden", filepath.Join(dir, "nope.json")}, "golden file: open"},
		{[]string{model, "--token-file", filepath.Join(dir, "nope")}, "token file: open"},
		{[]string{model, "--token-file", empty}, "is empty"},
	}
	for _, c := range cases {
		args := append([]string{"model", "push", "--name", "m", "--version", "1"}, c.args...)
		code, _, errs := runClient(t, api, nil, args...)
		if code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("%q: code %d, stderr %q; want 1 and %q", c.args, code, errs, c.want)
		}
	}
	if n := len(api.requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}
