package operator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/models"
)

// Errors of Client calls, for errors.Is. An *APIError matches the one its
// status maps to; failures to reach the coordinator match ErrUnavailable.
var (
	// ErrNotFound: the coordinator answered 404.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the coordinator answered 409 (a version that exists, a
	// rollout in progress).
	ErrConflict = errors.New("conflict")
	// ErrUnauthorized: the coordinator answered 401 or 403 (a wrong token,
	// or one without the push scope).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable: the coordinator could not be reached, did not answer
	// in time, or answered with a 5xx status.
	ErrUnavailable = errors.New("coordinator unavailable")
)

// Limits of the client.
const (
	// DefaultRequestTimeout bounds a request other than a push.
	DefaultRequestTimeout = 30 * time.Second
	// DefaultPushTimeout bounds a push: upload and the coordinator's
	// validation gate.
	DefaultPushTimeout = 5 * time.Minute
	// maxAnswerBytes bounds what the client reads of an answer.
	maxAnswerBytes = 32 << 20
	// maxTokenFileBytes bounds a token file.
	maxTokenFileBytes = 4096
)

// APIError is an answer of the coordinator with a status other than 2xx.
type APIError struct {
	Method, Path string
	// Status is the HTTP status code.
	Status int
	// Message is the coordinator's {"error": "..."}, or the start of the
	// body when it is not such JSON.
	Message string
}

// Error reads "coordinator: POST /v1/...: 409 Conflict: <message>".
func (e *APIError) Error() string {
	return fmt.Sprintf("coordinator: %s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), e.Message)
}

// Is maps the status to ErrNotFound, ErrConflict, ErrUnauthorized or
// ErrUnavailable.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrUnavailable:
		return e.Status >= 500
	}
	return false
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// URL is the coordinator's management API base URL: http(s)://host[:port][/path].
	URL string
	// Token is the bearer token; it needs the push scope (push, deploy,
	// rollouts) and read.
	Token string
	// HTTPClient defaults to a client without a global timeout (each call
	// has its own).
	HTTPClient *http.Client
	// Timeout bounds each request but a push; default DefaultRequestTimeout.
	Timeout time.Duration
	// PushTimeout bounds a push; default DefaultPushTimeout.
	PushTimeout time.Duration
	// UserAgent is sent with each request (default "petrel-operator").
	UserAgent string
}

// Client is a small client of the coordinator's management API: the calls
// the operator makes. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	token     string
	hc        *http.Client
	timeout   time.Duration
	pushTO    time.Duration
	userAgent string
}

// NewClient checks cfg and returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(cfg.URL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("coordinator URL %q: want http(s)://host[:port] without credentials, query or fragment", cfg.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	tok := strings.TrimSpace(cfg.Token)
	if tok == "" {
		return nil, errors.New("coordinator token is empty")
	}
	if strings.ContainsFunc(tok, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return nil, errors.New("coordinator token contains spaces or control characters")
	}
	c := &Client{base: u, token: tok, hc: cfg.HTTPClient, timeout: cfg.Timeout, pushTO: cfg.PushTimeout, userAgent: cfg.UserAgent}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	if c.pushTO <= 0 {
		c.pushTO = DefaultPushTimeout
	}
	if c.userAgent == "" {
		c.userAgent = "petrel-operator"
	}
	return c, nil
}

// ReadTokenFile reads a bearer token file: one line, surrounding white
// space ignored.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	if len(b) > maxTokenFileBytes {
		return "", fmt.Errorf("token file %s is larger than %d bytes; it should hold just the token", path, maxTokenFileBytes)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return tok, nil
}

// URL is the coordinator's base URL.
func (c *Client) URL() string { return c.base.String() }

// do sends one request and returns the body of a 2xx answer; other
// answers are an *APIError.
func (c *Client) do(ctx context.Context, timeout time.Duration, method, path string, body io.Reader, contentType string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	target := c.base.String() + path
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("coordinator: build request %s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %v", ErrUnavailable, method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: read answer: %v", ErrUnavailable, method, target, err)
	}
	if len(b) > maxAnswerBytes {
		return nil, fmt.Errorf("coordinator: %s %s: answer larger than %d bytes", method, path, maxAnswerBytes)
	}
	if resp.StatusCode/100 != 2 {
		return nil, &APIError{Method: method, Path: path, Status: resp.StatusCode, Message: errorMessage(b)}
	}
	return b, nil
}

// errorMessage extracts the message of an error answer.
func errorMessage(b []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(empty answer)"
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	b, err := c.do(ctx, c.timeout, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	return decode(path, b, v)
}

func (c *Client) postJSON(ctx context.Context, path string, req, v any) error {
	var body io.Reader
	ct := ""
	if req != nil {
		rb, err := json.Marshal(req)
		if err != nil {
			return fmt.Errorf("coordinator: encode request to %s: %w", path, err)
		}
		body, ct = bytes.NewReader(rb), "application/json"
	}
	b, err := c.do(ctx, c.timeout, http.MethodPost, path, body, ct)
	if err != nil {
		return err
	}
	return decode(path, b, v)
}

func decode(path string, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("coordinator: the answer of %s is not what the operator expects (version mismatch?): %w", path, err)
	}
	return nil
}

func modelPath(name string, more ...string) string {
	p := "/v1/models/" + url.PathEscape(name)
	for _, m := range more {
		p += "/" + url.PathEscape(m)
	}
	return p
}

// Version returns a version's manifest (GET /v1/models/{m}/versions/{v});
// ErrNotFound when the registry does not have it.
func (c *Client) Version(ctx context.Context, model, version string) (*models.Manifest, error) {
	var m models.Manifest
	if err := c.getJSON(ctx, modelPath(model, "versions", version), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Model returns a model's versions, desired state and latest rollout (GET
// /v1/models/{m}); ErrNotFound when the registry has no version of it.
func (c *Client) Model(ctx context.Context, model string) (*coordinator.ModelDetail, error) {
	var d coordinator.ModelDetail
	if err := c.getJSON(ctx, modelPath(model), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// PushParts are the parts of a push (the multipart body of POST
// /v1/models/{m}/versions/{v}, as `petrel model push` sends it).
type PushParts struct {
	// Model is the ONNX file. Required.
	Model []byte
	// Golden is the golden examples file (JSON), optional.
	Golden []byte
	// Labels of the version.
	Labels map[string]string
	// AllowBreaking accepts an incompatible signature.
	AllowBreaking bool
	// Pre and Post are the WebAssembly transforms, optional.
	Pre, Post []byte
	// PreGrants and PostGrants are their grants (clock, random).
	PreGrants, PostGrants []string
}

// labels encodes labels as the push's "labels" part: k=v,k=v, sorted.
func (p *PushParts) labels() string {
	keys := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + p.Labels[k]
	}
	return strings.Join(parts, ",")
}

// grants encodes the push's "grants" part: pre=a+b,post=c.
func (p *PushParts) grants() string {
	var parts []string
	if p.Pre != nil && len(p.PreGrants) > 0 {
		parts = append(parts, "pre="+strings.Join(p.PreGrants, "+"))
	}
	if p.Post != nil && len(p.PostGrants) > 0 {
		parts = append(parts, "post="+strings.Join(p.PostGrants, "+"))
	}
	return strings.Join(parts, ",")
}

// write writes the multipart body and closes mw.
func (p *PushParts) write(mw *multipart.Writer) error {
	file := func(name, fileName string, b []byte) error {
		w, err := mw.CreateFormFile(name, fileName)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	if err := file("model", "model.onnx", p.Model); err != nil {
		return err
	}
	if p.Golden != nil {
		if err := file("golden", "golden.json", p.Golden); err != nil {
			return err
		}
	}
	if l := p.labels(); l != "" {
		if err := mw.WriteField("labels", l); err != nil {
			return err
		}
	}
	if p.AllowBreaking {
		if err := mw.WriteField("allow_breaking", "true"); err != nil {
			return err
		}
	}
	if p.Pre != nil {
		if err := file("pre", "pre.wasm", p.Pre); err != nil {
			return err
		}
	}
	if p.Post != nil {
		if err := file("post", "post.wasm", p.Post); err != nil {
			return err
		}
	}
	if g := p.grants(); g != "" {
		if err := mw.WriteField("grants", g); err != nil {
			return err
		}
	}
	return mw.Close()
}

// Push pushes a version (POST /v1/models/{m}/versions/{v}). A version that
// exists is ErrConflict; one the validation gate rejects is an *APIError
// with status 422 whose message says why.
func (c *Client) Push(ctx context.Context, model, version string, p PushParts) (*coordinator.PushResult, error) {
	if len(p.Model) == 0 {
		return nil, errors.New("coordinator: push: the model file is empty")
	}
	// The body is streamed, so that a large model is not held twice.
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(p.write(mw))
	}()
	path := modelPath(model, "versions", version)
	b, err := c.do(ctx, c.pushTO, http.MethodPost, path, pr, mw.FormDataContentType())
	// Unblock the writer if the request ended before reading everything,
	// and wait for it: no goroutine outlives the push.
	pr.CloseWithError(errors.New("push request finished"))
	<-done
	if err != nil {
		return nil, err
	}
	var res coordinator.PushResult
	if err := decode(path, b, &res); err != nil {
		return nil, err
	}
	if res.Manifest == nil {
		return nil, fmt.Errorf("coordinator: %s accepted the push but sent no manifest", path)
	}
	return &res, nil
}

// Deploy makes a version serve all of a model's traffic, with a placement
// (nil keeps the current one): POST /v1/models/{m}/deploy.
func (c *Client) Deploy(ctx context.Context, model, version string, placement *bus.Placement) (*bus.Desired, error) {
	var d bus.Desired
	if err := c.postJSON(ctx, modelPath(model, "deploy"), coordinator.DeployRequest{Version: version, Placement: placement}, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// StartRollout starts a canary rollout: POST /v1/rollouts/{m}.
func (c *Client) StartRollout(ctx context.Context, model string, req coordinator.RolloutRequest) (*rollout.Rollout, error) {
	var r rollout.Rollout
	if err := c.postJSON(ctx, "/v1/rollouts/"+url.PathEscape(model), req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Rollout returns a model's latest rollout (GET /v1/rollouts/{m});
// ErrNotFound when it has none.
func (c *Client) Rollout(ctx context.Context, model string) (*rollout.Rollout, error) {
	var r rollout.Rollout
	if err := c.getJSON(ctx, "/v1/rollouts/"+url.PathEscape(model), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RolloutAction pauses, resumes, promotes or rolls back a model's rollout:
// POST /v1/rollouts/{m}/{action}.
func (c *Client) RolloutAction(ctx context.Context, model, action string) (*rollout.Rollout, error) {
	switch action {
	case "pause", "resume", "promote", "rollback":
	default:
		return nil, fmt.Errorf("coordinator: unknown rollout action %q (pause, resume, promote, rollback)", action)
	}
	var r rollout.Rollout
	if err := c.postJSON(ctx, "/v1/rollouts/"+url.PathEscape(model)+"/"+action, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Healthz checks that the coordinator answers GET /healthz.
func (c *Client) Healthz(ctx context.Context) error {
	var v map[string]string
	return c.getJSON(ctx, "/healthz", &v)
}
