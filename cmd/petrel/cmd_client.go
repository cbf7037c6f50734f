package main

// The client side of the coordinator's management API: `petrel model
// push|list|show|rm|deploy|shadow`, `petrel rollout ...`, `petrel route`
// and `petrel audit`. Every command takes --coordinator and --token (or
// --token-file), sends one request (or polls, for `rollout status
// --watch`) and prints the answer for humans, or as the coordinator's JSON
// with --json.
//
// Exit codes: 0 on success, 1 when the coordinator answers with an error
// or cannot be reached (or a local file cannot be read), 2 on usage errors.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/operator"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/models"
)

// Defaults and limits of the management client.
const (
	// defaultCoordinatorURL is used when neither --coordinator nor
	// PETREL_COORDINATOR is set.
	defaultCoordinatorURL = "http://127.0.0.1:7070"
	// pushTimeout bounds a push: upload plus the coordinator's validation
	// gate (load, golden examples, timed runs).
	pushTimeout = 5 * time.Minute
	// requestTimeout bounds every other request.
	requestTimeout = 30 * time.Second
	// maxResponseBytes bounds what the client reads of an answer.
	maxResponseBytes = 32 << 20
	// maxGoldenBytes is the coordinator's limit on a push's "golden" part.
	maxGoldenBytes = 1 << 20
	// maxWatchErrors is how many polls in a row `rollout status --watch`
	// lets fail to reach the coordinator before it gives up.
	maxWatchErrors = 5
)

// watchInterval is how often `rollout status --watch` polls (a variable so
// that tests can shorten it).
var watchInterval = 2 * time.Second

// errUsage marks errors that are the caller's fault: the command prints
// its usage line and exits 2.
var errUsage = errors.New("usage error")

// usageErrorf returns an error wrapping errUsage.
func usageErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// mgmtFlags are the flags that every management command takes.
type mgmtFlags struct {
	coordinator string
	token       string
	tokenFile   string
}

// register adds --coordinator, --token and --token-file to fs, with
// defaults from PETREL_COORDINATOR and PETREL_TOKEN.
func (m *mgmtFlags) register(fs *flag.FlagSet, e *env) {
	def := defaultCoordinatorURL
	if v := strings.TrimSpace(e.getenv("PETREL_COORDINATOR")); v != "" {
		def = v
	}
	fs.StringVar(&m.coordinator, "coordinator", def, "coordinator base URL (env PETREL_COORDINATOR)")
	fs.StringVar(&m.token, "token", e.getenv("PETREL_TOKEN"), "management API bearer token (env PETREL_TOKEN)")
	fs.StringVar(&m.tokenFile, "token-file", "", "read the bearer token from this file")
}

// client builds the client the flags describe. Errors wrap errUsage when
// the flags are wrong.
func (m *mgmtFlags) client(fs *flag.FlagSet, timeout time.Duration) (*mgmtClient, error) {
	base, err := parseCoordinatorURL(m.coordinator)
	if err != nil {
		return nil, err
	}
	tokenSet := false
	fs.Visit(func(f *flag.Flag) { tokenSet = tokenSet || f.Name == "token" })
	tok := strings.TrimSpace(m.token)
	if m.tokenFile != "" {
		if tokenSet {
			return nil, usageErrorf("give --token or --token-file, not both")
		}
		if tok, err = readTokenFile(m.tokenFile); err != nil {
			return nil, err
		}
	}
	if strings.ContainsFunc(tok, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return nil, usageErrorf("the token contains spaces or control characters")
	}
	return &mgmtClient{base: base, token: tok, timeout: timeout, hc: &http.Client{}}, nil
}

// parseCoordinatorURL checks that s is an http(s) base URL without query
// or fragment. A path is kept, for a coordinator behind a proxy.
func parseCoordinatorURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, usageErrorf("--coordinator %q: want http(s)://host[:port]", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, usageErrorf("--coordinator %q: a base URL has no query or fragment", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// readTokenFile reads a token file: one line, surrounding white space
// ignored (the operator's reader, so every command reads them alike).
func readTokenFile(path string) (string, error) { return operator.ReadTokenFile(path) }

// mgmtClient talks to the coordinator's management API.
type mgmtClient struct {
	base    *url.URL
	token   string
	timeout time.Duration
	hc      *http.Client
}

// apiError is an answer with a status other than 2xx.
type apiError struct {
	// Status is the HTTP status code.
	Status int
	// Message is the coordinator's {"error": "..."}, or the start of the
	// body when it is not such JSON.
	Message string
	// Body is the whole answer, for callers that want more of it (a
	// rejected push's validation report).
	Body []byte
}

// Error reads "<code> <status text>: <message>".
func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// do sends one request to path (which may carry a query) and returns the
// body of a 2xx answer. Other answers are an *apiError; failures to reach
// the coordinator say so and name it. body may be nil.
func (c *mgmtClient) do(parent context.Context, method, path string, body io.Reader, contentType string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	target := c.base.String() + path
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("build request %s %s: %w", method, target, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "petrel/"+Version)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if perr := parent.Err(); perr != nil {
			return nil, fmt.Errorf("%s %s: %w", method, target, perr)
		}
		if ctx.Err() == context.DeadlineExceeded {
			return nil, fmt.Errorf("%s %s: no answer within %s", method, target, c.timeout)
		}
		return nil, fmt.Errorf("%s %s: %w (is the coordinator running there? set --coordinator or PETREL_COORDINATOR)", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, target, err)
	}
	if len(b) > maxResponseBytes {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, target, maxResponseBytes)
	}
	if resp.StatusCode/100 != 2 {
		ae := &apiError{Status: resp.StatusCode, Message: errorMessage(b), Body: b}
		if resp.StatusCode == http.StatusUnauthorized && c.token == "" {
			ae.Message += " (no token given: use --token, --token-file or PETREL_TOKEN)"
		}
		return nil, ae
	}
	return b, nil
}

// errorMessage extracts the message of an error answer.
func errorMessage(b []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return clean(e.Error)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(empty answer)"
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return clean(s)
}

// getJSON GETs path and decodes the answer into v; the raw body is
// returned too, for --json.
func (c *mgmtClient) getJSON(ctx context.Context, path string, v any) ([]byte, error) {
	b, err := c.do(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return nil, err
	}
	return b, decodeAnswer(b, v)
}

// sendJSON sends req (nil for no body) as JSON and decodes the answer into
// v (nil to skip).
func (c *mgmtClient) sendJSON(ctx context.Context, method, path string, req, v any) ([]byte, error) {
	var body io.Reader
	ct := ""
	if req != nil {
		rb, err := json.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body, ct = bytes.NewReader(rb), "application/json"
	}
	b, err := c.do(ctx, method, path, body, ct)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return b, nil
	}
	return b, decodeAnswer(b, v)
}

func decodeAnswer(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("the coordinator's answer is not what this client expects (version mismatch?): %w", err)
	}
	return nil
}

// modelPath is /v1/models/{name} followed by more path elements, each
// escaped.
func modelPath(name string, more ...string) string {
	p := "/v1/models/" + url.PathEscape(name)
	for _, m := range more {
		p += "/" + url.PathEscape(m)
	}
	return p
}

// cmdCtx carries what a subcommand needs to report.
type cmdCtx struct {
	e    *env
	name string // "petrel model push"
	use  string // the usage line, without "usage: "
	mf   mgmtFlags
}

// mgmtCommand starts a management command: its context and a flag set
// with --coordinator, --token and --token-file registered.
func mgmtCommand(e *env, name, use string) (*cmdCtx, *flag.FlagSet) {
	c := &cmdCtx{e: e, name: name, use: use}
	fs := c.newFlagSet()
	c.mf.register(fs, e)
	return c, fs
}

// parseModel parses the command line of a command that takes one model
// name and nothing to check before it talks to the coordinator, and
// builds its client. When ok is false, code is the exit code.
func (c *cmdCtx) parseModel(fs *flag.FlagSet, args []string) (model string, cl *mgmtClient, code int, ok bool) {
	pos, code, ok := c.parse(fs, args, 1, 1)
	if !ok {
		return "", nil, code, false
	}
	if err := checkModel(pos[0]); err != nil {
		return "", nil, c.fail(err), false
	}
	cl, err := c.mf.client(fs, requestTimeout)
	if err != nil {
		return "", nil, c.fail(err), false
	}
	return pos[0], cl, 0, true
}

// fail prints err the way its kind asks for and returns the exit code:
// usage errors print the usage line and return 2, others return 1.
func (c *cmdCtx) fail(err error) int {
	if errors.Is(err, errUsage) {
		msg := strings.TrimPrefix(err.Error(), errUsage.Error()+": ")
		fmt.Fprintf(c.e.stderr, "%s: %s\nusage: %s\n", c.name, msg, c.use)
		return 2
	}
	fmt.Fprintf(c.e.stderr, "%s: %v\n", c.name, err)
	return 1
}

// newFlagSet returns a flag set for the command whose -h prints the usage
// line and the flags.
func (c *cmdCtx) newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(c.e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.e.stderr, "usage: %s\n\nflags:\n", c.use)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, letting flags and positional arguments mix ("push
// FILE --name N"), and checks the number of positional arguments. It
// returns the positional arguments and, when ok is false, the exit code:
// 0 for -h, 2 for anything wrong.
func (c *cmdCtx) parse(fs *flag.FlagSet, args []string, minPos, maxPos int) (pos []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			// The flag package has printed the error and the usage.
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, false
			}
			return nil, 2, false
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < minPos || len(pos) > maxPos {
		if len(pos) < minPos {
			return nil, c.fail(usageErrorf("missing arguments")), false
		}
		return nil, c.fail(usageErrorf("unexpected arguments %q", pos[maxPos:])), false
	}
	return pos, 0, true
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// checkModel validates a model name given on the command line.
func checkModel(name string) error {
	if !models.ValidName(name) {
		return usageErrorf("model name %q: want 1-128 letters, digits, '_', '.', '-', starting with a letter or digit", name)
	}
	return nil
}

// checkVersion validates a version given on the command line.
func checkVersion(ver string) error {
	if ver == "" {
		return usageErrorf("--version is required")
	}
	if !models.ValidVersion(ver) {
		return usageErrorf("version %q: want 1-64 letters, digits, '_', '.', '-', starting with a letter or digit", ver)
	}
	return nil
}

// printRaw writes a JSON answer as it came, ending in a newline.
func printRaw(w io.Writer, b []byte) {
	b = bytes.TrimRight(b, "\n")
	w.Write(append(b, '\n'))
}

// clean makes text from the coordinator safe to print on a terminal:
// control characters (escape sequences, newlines, tabs that would break a
// table) become spaces.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// orDash returns s cleaned, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return clean(s)
}

// pctString formats a percentage without trailing zeros: "5%", "0.5%".
func pctString(w float64) string {
	return strconv.FormatFloat(w, 'f', -1, 64) + "%"
}

// timeString formats a time in UTC to the second; "-" for the zero time.
func timeString(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// msString formats milliseconds as a duration ("1.5ms", "2s").
func msString(ms float64) string {
	if ms <= 0 || math.IsNaN(ms) || math.IsInf(ms, 0) {
		return "-"
	}
	return time.Duration(ms * float64(time.Millisecond)).Round(time.Microsecond).String()
}

// latency formats a rollout figure's quantile, spelling out the overflow
// bucket.
func latency(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	if d == rollout.OverflowLatency() && len(bus.LatencyBounds) > 0 {
		return "over " + time.Duration(bus.LatencyBounds[len(bus.LatencyBounds)-1]*float64(time.Second)).String()
	}
	return d.String()
}

// shortDigest shortens "sha256:<64 hex>" to its first 12 hex digits.
func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return orDash(d)
}

// servingString describes a desired state's split: "v1 95%, v2 5%", with
// shadows as "v3 shadow 10%"; "-" when nothing serves.
func servingString(d *bus.Desired) string {
	if d == nil {
		return "-"
	}
	var parts []string
	for _, v := range d.Versions {
		if v.Weight > 0 {
			parts = append(parts, clean(v.Version)+" "+pctString(v.Weight))
		}
	}
	for _, v := range d.Versions {
		if v.Shadow > 0 {
			parts = append(parts, clean(v.Version)+" shadow "+pctString(v.Shadow))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// placementString describes a placement; "every node" when it is empty.
func placementString(p bus.Placement) string {
	var parts []string
	if len(p.Regions) > 0 {
		parts = append(parts, "regions "+clean(strings.Join(p.Regions, ",")))
	}
	if len(p.Labels) > 0 {
		parts = append(parts, "labels "+labelsString(p.Labels))
	}
	if p.MinReplicasPerRegion > 0 {
		parts = append(parts, fmt.Sprintf("min %d replicas per region", p.MinReplicasPerRegion))
	}
	if len(parts) == 0 {
		return "every node"
	}
	return strings.Join(parts, "; ")
}

// labelsString formats labels as k=v,k=v in key order.
func labelsString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = clean(k + "=" + l[k])
	}
	return strings.Join(parts, ",")
}

// commaList splits "a,b" into its non-empty trimmed elements.
func commaList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// --- petrel model push|list|show|rm|deploy|shadow ---

const (
	usagePush   = "petrel model push FILE --name NAME --version V [--golden FILE] [--labels k=v,k=v] [--allow-breaking] [--pre FILE.wasm] [--post FILE.wasm] [--grants pre=clock,post=random] [--json]"
	usageList   = "petrel model list [--json]"
	usageShow   = "petrel model show NAME [--json]"
	usageRm     = "petrel model rm NAME [--version V]"
	usageDeploy = "petrel model deploy NAME --version V [--regions a,b] [--labels k=v,k=v] [--min-replicas N] [--json]"
	usageShadow = "petrel model shadow NAME --version V --share PCT | petrel model shadow NAME --report [--json]"
)

// runModelPush pushes a model file to the registry.
func runModelPush(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel model push", usagePush)
	name := fs.String("name", "", "model name (required)")
	ver := fs.String("version", "", "version to create (required; versions are immutable)")
	golden := fs.String("golden", "", "golden examples file (JSON) the version must reproduce")
	labels := fs.String("labels", "", "labels of the version, k=v,k=v")
	allowBreaking := fs.Bool("allow-breaking", false, "accept a signature incompatible with the previous version's")
	preFile := fs.String("pre", "", "pre-processing WebAssembly transform (request body to input tensors)")
	postFile := fs.String("post", "", "post-processing WebAssembly transform (output tensors to response body)")
	grants := fs.String("grants", "", "capabilities of the transforms: pre=GRANTS,post=GRANTS with GRANTS clock and random joined by '+'")
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	pos, code, ok := c.parse(fs, args, 1, 1)
	if !ok {
		return code
	}
	if *name == "" {
		return c.fail(usageErrorf("--name is required"))
	}
	if err := checkModel(*name); err != nil {
		return c.fail(err)
	}
	if err := checkVersion(*ver); err != nil {
		return c.fail(err)
	}
	if _, err := coordinator.ParseLabels(*labels); err != nil {
		return c.fail(usageErrorf("--labels: %v", err))
	}
	if _, err := coordinator.ParseGrants(*grants); err != nil {
		return c.fail(usageErrorf("--grants: %v", err))
	}
	xf := pushTransforms{grants: strings.TrimSpace(*grants)}
	for _, t := range []struct {
		flag, file string
		dst        *[]byte
	}{{"--pre", *preFile, &xf.pre}, {"--post", *postFile, &xf.post}} {
		if t.file == "" {
			continue
		}
		b, err := readTransform(t.file)
		if err != nil {
			return c.fail(fmt.Errorf("%s: %w", t.flag, err))
		}
		*t.dst = b
	}
	cl, err := c.mf.client(fs, pushTimeout)
	if err != nil {
		return c.fail(err)
	}
	path := pos[0]
	st, err := os.Stat(path)
	if err != nil {
		return c.fail(fmt.Errorf("model file: %w", err))
	}
	if !st.Mode().IsRegular() {
		return c.fail(fmt.Errorf("model file %s is not a regular file", path))
	}
	if st.Size() == 0 {
		return c.fail(fmt.Errorf("model file %s is empty", path))
	}
	var goldenBytes []byte
	if *golden != "" {
		if goldenBytes, err = readGolden(*golden); err != nil {
			return c.fail(err)
		}
	}
	b, err := cl.push(ctx, *name, *ver, path, goldenBytes, strings.TrimSpace(*labels), *allowBreaking, xf)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && *asJSON && json.Valid(ae.Body) {
			printRaw(e.stdout, ae.Body)
		}
		code := c.fail(err)
		if errors.As(err, &ae) && !*asJSON {
			printRejection(e, ae)
		}
		return code
	}
	if *asJSON {
		printRaw(e.stdout, b)
		return 0
	}
	var res coordinator.PushResult
	if err := decodeAnswer(b, &res); err != nil {
		return c.fail(err)
	}
	if res.Manifest == nil {
		return c.fail(errors.New("the coordinator accepted the push but sent no manifest"))
	}
	m := res.Manifest
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "pushed\t%s version %s\n", clean(m.Name), clean(m.Version))
	fmt.Fprintf(w, "digest\t%s\n", orDash(m.Digest))
	if r := res.Report; r != nil {
		fmt.Fprintf(w, "compatibility\t%s\n", orDash(r.Compatibility))
		fmt.Fprintf(w, "golden\t%s\n", orDash(r.Golden))
		lat := "-"
		if r.LatencyP50 > 0 {
			lat = r.LatencyP50.String()
			if r.LatencyP99 > 0 {
				lat += " (p99 " + r.LatencyP99.String() + ")"
			}
		}
		fmt.Fprintf(w, "latency p50\t%s\n", lat)
	}
	parent := "-"
	if m.Lineage != nil && m.Lineage.Parent != "" {
		parent = clean(m.Lineage.Parent)
	}
	fmt.Fprintf(w, "parent\t%s\n", parent)
	if len(m.Labels) > 0 {
		fmt.Fprintf(w, "labels\t%s\n", labelsString(m.Labels))
	}
	w.Flush()
	return 0
}

// readGolden reads a golden examples file, checking it is JSON of at most
// what the coordinator takes (it parses the examples itself).
func readGolden(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("golden file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxGoldenBytes+1))
	if err != nil {
		return nil, fmt.Errorf("golden file %s: %w", path, err)
	}
	if len(b) > maxGoldenBytes {
		return nil, fmt.Errorf("golden file %s is larger than the coordinator's limit of %d bytes", path, maxGoldenBytes)
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("golden file %s is not valid JSON", path)
	}
	return b, nil
}

// pushTransforms are the optional WebAssembly transforms of a push.
type pushTransforms struct {
	pre, post []byte
	grants    string
}

// readTransform reads a transform module, bounded by the coordinator's
// limit.
func readTransform(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, models.MaxTransformBytes+1))
	if err != nil {
		return nil, err
	}
	switch {
	case len(b) == 0:
		return nil, fmt.Errorf("%s is empty", path)
	case len(b) > models.MaxTransformBytes:
		return nil, fmt.Errorf("%s exceeds %d bytes", path, models.MaxTransformBytes)
	}
	return b, nil
}

// push streams a multipart/form-data push: "model" (the file), optional
// "golden", "labels", "allow_breaking", "pre", "post" and "grants".
func (c *mgmtClient) push(ctx context.Context, name, ver, file string, golden []byte, labels string, allowBreaking bool, xf pushTransforms) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("model file: %w", err)
	}
	defer f.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writePushParts(mw, f, filepath.Base(file), golden, labels, allowBreaking, xf))
	}()
	b, err := c.do(ctx, http.MethodPost, modelPath(name, "versions", ver), pr, mw.FormDataContentType())
	// Unblock the writer if the request ended before it read everything,
	// then wait for it: no goroutine outlives the push.
	pr.CloseWithError(errors.New("push request finished"))
	<-done
	return b, err
}

// writePushParts writes the parts of a push and closes the multipart
// writer.
func writePushParts(mw *multipart.Writer, model io.Reader, fileName string, golden []byte, labels string, allowBreaking bool, xf pushTransforms) error {
	p, err := mw.CreateFormFile("model", fileName)
	if err != nil {
		return err
	}
	if _, err := io.Copy(p, model); err != nil {
		return fmt.Errorf("read model file: %w", err)
	}
	if golden != nil {
		gp, err := mw.CreateFormFile("golden", "golden.json")
		if err != nil {
			return err
		}
		if _, err := gp.Write(golden); err != nil {
			return err
		}
	}
	if labels != "" {
		if err := mw.WriteField("labels", labels); err != nil {
			return err
		}
	}
	if allowBreaking {
		if err := mw.WriteField("allow_breaking", "true"); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		part string
		b    []byte
	}{{"pre", xf.pre}, {"post", xf.post}} {
		if t.b == nil {
			continue
		}
		tp, err := mw.CreateFormFile(t.part, t.part+".wasm")
		if err != nil {
			return err
		}
		if _, err := tp.Write(t.b); err != nil {
			return err
		}
	}
	if xf.grants != "" {
		if err := mw.WriteField("grants", xf.grants); err != nil {
			return err
		}
	}
	return mw.Close()
}

// printRejection prints the validation report of a rejected push (a 422
// with {"error", "report"}) to stderr: its reason and each failed check.
func printRejection(e *env, ae *apiError) {
	var body struct {
		Report *struct {
			Reason        string `json:"reason"`
			Compatibility string `json:"compatibility"`
			Checks        []struct {
				Name    string `json:"name"`
				OK      bool   `json:"ok"`
				Skipped bool   `json:"skipped"`
				Detail  string `json:"detail"`
			} `json:"checks"`
		} `json:"report"`
	}
	if json.Unmarshal(ae.Body, &body) != nil || body.Report == nil {
		return
	}
	r := body.Report
	// The error message normally quotes the reason already.
	if r.Reason != "" && !strings.Contains(ae.Message, clean(r.Reason)) {
		fmt.Fprintf(e.stderr, "  validation failed: %s\n", clean(r.Reason))
	}
	for _, ch := range r.Checks {
		if !ch.OK && !ch.Skipped {
			fmt.Fprintf(e.stderr, "  FAILED %s: %s\n", clean(ch.Name), orDash(ch.Detail))
		}
	}
}

// runModelList lists the registry's models.
func runModelList(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel model list", usageList)
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	if _, code, ok := c.parse(fs, args, 0, 0); !ok {
		return code
	}
	cl, err := c.mf.client(fs, requestTimeout)
	if err != nil {
		return c.fail(err)
	}
	var list []coordinator.ModelSummary
	b, err := cl.getJSON(ctx, "/v1/models", &list)
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		printRaw(e.stdout, b)
		return 0
	}
	if len(list) == 0 {
		fmt.Fprintln(e.stdout, "no models in the registry")
		return 0
	}
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tVERSIONS\tLATEST\tSERVING")
	for _, m := range list {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", clean(m.Name), orDash(strings.Join(m.Versions, ",")), orDash(m.Latest), servingString(m.Desired))
	}
	w.Flush()
	return 0
}

// runModelShow prints one model: versions, desired split, rollout,
// figures and nodes.
func runModelShow(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel model show", usageShow)
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	model, cl, code, ok := c.parseModel(fs, args)
	if !ok {
		return code
	}
	var d coordinator.ModelDetail
	b, err := cl.getJSON(ctx, modelPath(model), &d)
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		printRaw(e.stdout, b)
		return 0
	}
	out := e.stdout
	fmt.Fprintf(out, "model %s\n\n", clean(d.Name))
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tDIGEST\tCREATED\tSOURCE\tPARENT\tPUSHED BY")
	for _, v := range d.Versions {
		src, parent, by := "-", "-", "-"
		if l := v.Lineage; l != nil {
			src, parent, by = orDash(l.Source), orDash(l.Parent), orDash(l.PushedBy)
			if l.Round != "" {
				src += " (round " + clean(l.Round) + ")"
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", clean(v.Version), shortDigest(v.Digest), timeString(v.CreatedAt), src, parent, by)
	}
	w.Flush()
	fmt.Fprintln(out)
	if d.Desired != nil {
		fmt.Fprintf(out, "serving:   %s\n", servingString(d.Desired))
		fmt.Fprintf(out, "placement: %s\n", placementString(d.Desired.Placement))
		if d.Desired.Rollout != "" {
			fmt.Fprintf(out, "set by:    rollout %s\n", clean(d.Desired.Rollout))
		}
	} else {
		fmt.Fprintln(out, "serving:   - (not deployed)")
	}
	if r := d.Rollout; r != nil {
		fmt.Fprintf(out, "rollout:   %s %s at step %s\n", clean(r.ID), clean(string(r.State)), stepString(r))
		if r.Reason != "" {
			fmt.Fprintf(out, "           %s\n", clean(r.Reason))
		}
	}
	if len(d.Stats) > 0 {
		fmt.Fprintln(out)
		w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "VERSION\tREQUESTS\tERRORS\tP50\tP99\tNODES")
		for _, s := range d.Stats {
			fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\t%d\n", clean(s.Version), s.Requests, s.Errors, msString(s.P50Ms), msString(s.P99Ms), s.Nodes)
		}
		w.Flush()
	}
	fmt.Fprintln(out)
	if len(d.Nodes) == 0 {
		fmt.Fprintln(out, "no node reports this model")
		return 0
	}
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tREGION\tVERSION\tSTATE\tREASON")
	for _, n := range d.Nodes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", clean(n.Node), orDash(n.Region), clean(n.Version), clean(n.State), orDash(n.Reason))
	}
	w.Flush()
	return 0
}

// runModelRm removes a model or one of its versions.
func runModelRm(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel model rm", usageRm)
	ver := fs.String("version", "", "remove only this version (default: the whole model)")
	pos, code, ok := c.parse(fs, args, 1, 1)
	if !ok {
		return code
	}
	if err := checkModel(pos[0]); err != nil {
		return c.fail(err)
	}
	path := modelPath(pos[0])
	if *ver != "" || isSet(fs, "version") {
		if err := checkVersion(*ver); err != nil {
			return c.fail(err)
		}
		path = modelPath(pos[0], "versions", *ver)
	}
	cl, err := c.mf.client(fs, requestTimeout)
	if err != nil {
		return c.fail(err)
	}
	var res struct {
		Removed string `json:"removed"`
	}
	if _, err := cl.sendJSON(ctx, http.MethodDelete, path, nil, &res); err != nil {
		return c.fail(err)
	}
	what := res.Removed
	if what == "" {
		what = strings.TrimSuffix(pos[0]+"/"+*ver, "/")
	}
	fmt.Fprintf(e.stdout, "removed %s\n", clean(what))
	return 0
}

// runModelDeploy makes one version serve all of a model's traffic.
func runModelDeploy(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel model deploy", usageDeploy)
	ver := fs.String("version", "", "version to serve (required)")
	regions := fs.String("regions", "", "placement: only nodes in these regions, a,b")
	labels := fs.String("labels", "", "placement: only nodes with these labels, k=v,k=v")
	minReplicas := fs.Int("min-replicas", 0, "placement: replicas per region the coordinator checks for")
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	pos, code, ok := c.parse(fs, args, 1, 1)
	if !ok {
		return code
	}
	if err := checkModel(pos[0]); err != nil {
		return c.fail(err)
	}
	if err := checkVersion(*ver); err != nil {
		return c.fail(err)
	}
	req := coordinator.DeployRequest{Version: *ver}
	if isSet(fs, "regions") || isSet(fs, "labels") || isSet(fs, "min-replicas") {
		p := &bus.Placement{Regions: commaList(*regions), MinReplicasPerRegion: *minReplicas}
		l, err := coordinator.ParseLabels(*labels)
		if err != nil {
			return c.fail(usageErrorf("--labels: %v", err))
		}
		p.Labels = l
		if *minReplicas < 0 {
			return c.fail(usageErrorf("--min-replicas %d is negative", *minReplicas))
		}
		req.Placement = p
	}
	cl, err := c.mf.client(fs, requestTimeout)
	if err != nil {
		return c.fail(err)
	}
	var d bus.Desired
	b, err := cl.sendJSON(ctx, http.MethodPost, modelPath(pos[0], "deploy"), req, &d)
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		printRaw(e.stdout, b)
		return 0
	}
	fmt.Fprintf(e.stdout, "deployed %s version %s\nserving:   %s\nplacement: %s\n", clean(pos[0]), clean(*ver), servingString(&d), placementString(d.Placement))
	return 0
}

// runModelShadow mirrors traffic to a version, or prints the shadow
// comparison report.
func runModelShadow(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel model shadow", usageShadow)
	ver := fs.String("version", "", "version to mirror traffic to")
	share := fs.Float64("share", 0, "percent of the model's traffic to mirror (0 stops mirroring)")
	report := fs.Bool("report", false, "print how the shadow versions compare with the serving one")
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	pos, code, ok := c.parse(fs, args, 1, 1)
	if !ok {
		return code
	}
	model := pos[0]
	if err := checkModel(model); err != nil {
		return c.fail(err)
	}
	if *report {
		if isSet(fs, "version") || isSet(fs, "share") {
			return c.fail(usageErrorf("--report takes no --version or --share"))
		}
	} else {
		if err := checkVersion(*ver); err != nil {
			return c.fail(err)
		}
		if !isSet(fs, "share") {
			return c.fail(usageErrorf("--share is required (0 stops mirroring)"))
		}
		if math.IsNaN(*share) || *share < 0 || *share > 100 {
			return c.fail(usageErrorf("--share %v: want a percentage in [0, 100]", *share))
		}
	}
	cl, err := c.mf.client(fs, requestTimeout)
	if err != nil {
		return c.fail(err)
	}
	if *report {
		var list []coordinator.VersionTotals
		b, err := cl.getJSON(ctx, modelPath(model, "shadow"), &list)
		if err != nil {
			return c.fail(err)
		}
		if *asJSON {
			printRaw(e.stdout, b)
			return 0
		}
		printShadowReport(e, model, list)
		return 0
	}
	var d bus.Desired
	b, err := cl.sendJSON(ctx, http.MethodPost, modelPath(model, "shadow"), coordinator.ShadowRequest{Version: *ver, Share: *share}, &d)
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		printRaw(e.stdout, b)
		return 0
	}
	if *share == 0 {
		fmt.Fprintf(e.stdout, "stopped mirroring %s traffic to version %s\n", clean(model), clean(*ver))
	} else {
		fmt.Fprintf(e.stdout, "mirroring %s of %s traffic to version %s\n", pctString(*share), clean(model), clean(*ver))
	}
	fmt.Fprintf(e.stdout, "serving: %s\n", servingString(&d))
	return 0
}

func printShadowReport(e *env, model string, list []coordinator.VersionTotals) {
	if len(list) == 0 {
		fmt.Fprintf(e.stdout, "no shadow figures for model %s (no version is shadowing, or nodes have not reported yet)\n", clean(model))
		return
	}
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tAGAINST\tMIRRORED\tFAILED\tMEAN_ABS_DIFF\tMAX_ABS_DIFF\tMISMATCHED")
	for _, t := range list {
		if t.Shadow == nil {
			continue
		}
		s := t.Shadow
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%.6g\t%.6g\t%d\n", clean(t.Version), orDash(s.Against), s.Mirrored, s.Failed, t.MeanAbsDiff, s.MaxAbsDiff, s.Mismatched)
	}
	w.Flush()
}

// --- petrel rollout ---

const (
	usageRollout       = "petrel rollout start|status|pause|resume|promote|rollback MODEL [flags]"
	usageRolloutStart  = "petrel rollout start MODEL --version V [--steps 1,5,10,50,100] [--interval 30s] [--max-error-rate 0.01] [--max-p99 200ms] [--min-requests N] [--json]"
	usageRolloutStatus = "petrel rollout status MODEL [--json] [--watch]"
	usageRolloutAction = "petrel rollout %s MODEL [--json]"
	usageRollback      = "petrel rollout rollback MODEL [--version V] [--reason R] [--json]"
)

// runRollout dispatches the rollout subcommands.
func runRollout(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "usage: %s\n", usageRollout)
		return 2
	}
	switch args[0] {
	case "start":
		return runRolloutStart(ctx, e, args[1:])
	case "status":
		return runRolloutStatus(ctx, e, args[1:])
	case "pause", "resume", "promote", "rollback":
		return runRolloutAction(ctx, e, args[0], args[1:])
	case "-h", "--help", "help":
		fmt.Fprintf(e.stdout, "usage: %s\n", usageRollout)
		return 0
	}
	fmt.Fprintf(e.stderr, "petrel rollout: unknown subcommand %q (start, status, pause, resume, promote, rollback)\n", args[0])
	return 2
}

// runRolloutStart starts a canary rollout.
func runRolloutStart(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel rollout start", usageRolloutStart)
	ver := fs.String("version", "", "version to roll out (required)")
	stepsS := fs.String("steps", "1,5,10,50,100", "traffic percent of the new version at each step; increasing, the last 100")
	interval := fs.Duration("interval", 30*time.Second, "least time at each step")
	maxErr := fs.Float64("max-error-rate", 0.01, "roll back when the new version's error rate at a step exceeds this (0-1)")
	maxP99 := fs.Duration("max-p99", 0, "roll back when the new version's p99 latency exceeds this (0: no latency check)")
	minReq := fs.Uint64("min-requests", 0, "requests the new version must serve at a step before it is judged (0: the coordinator's default)")
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	pos, code, ok := c.parse(fs, args, 1, 1)
	if !ok {
		return code
	}
	if err := checkModel(pos[0]); err != nil {
		return c.fail(err)
	}
	if err := checkVersion(*ver); err != nil {
		return c.fail(err)
	}
	steps, err := rollout.ParseSteps(*stepsS)
	if err != nil {
		return c.fail(usageErrorf("--steps %q: %s", *stepsS, strings.TrimPrefix(err.Error(), rollout.ErrInvalidSpec.Error()+": ")))
	}
	switch {
	case *interval < rollout.MinInterval:
		return c.fail(usageErrorf("--interval %v is shorter than %v", *interval, rollout.MinInterval))
	case math.IsNaN(*maxErr) || *maxErr < 0 || *maxErr > 1:
		return c.fail(usageErrorf("--max-error-rate %v: want a fraction in [0, 1], e.g. 0.01 for 1%%", *maxErr))
	case *maxP99 < 0:
		return c.fail(usageErrorf("--max-p99 %v is negative", *maxP99))
	}
	req := coordinator.RolloutRequest{Version: *ver, Steps: steps, Interval: interval.String(), MaxErrorRate: *maxErr, MinRequests: *minReq}
	if *maxP99 > 0 {
		req.MaxP99 = maxP99.String()
	}
	cl, err := c.mf.client(fs, requestTimeout)
	if err != nil {
		return c.fail(err)
	}
	var r rollout.Rollout
	b, err := cl.sendJSON(ctx, http.MethodPost, "/v1/rollouts/"+url.PathEscape(pos[0]), req, &r)
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		printRaw(e.stdout, b)
		return 0
	}
	fmt.Fprintf(e.stdout, "started rollout %s\n", clean(r.ID))
	printRollout(e.stdout, &r)
	return 0
}

// runRolloutStatus prints a model's rollout, once or until it ends.
func runRolloutStatus(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel rollout status", usageRolloutStatus)
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	watch := fs.Bool("watch", false, "poll every 2s and print changes until the rollout ends; exit 0 if promoted, 1 if rolled back or aborted")
	model, cl, code, ok := c.parseModel(fs, args)
	if !ok {
		return code
	}
	path := "/v1/rollouts/" + url.PathEscape(model)
	get := func() (*rollout.Rollout, []byte, error) {
		var r rollout.Rollout
		b, err := cl.getJSON(ctx, path, &r)
		return &r, b, err
	}
	show := func(r *rollout.Rollout, b []byte) {
		if *asJSON {
			printRaw(e.stdout, b)
			return
		}
		printRollout(e.stdout, r)
	}
	r, b, err := get()
	if err != nil {
		return c.fail(err)
	}
	show(r, b)
	if !*watch {
		return 0
	}
	last, failures := b, 0
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for !r.Terminal() {
		select {
		case <-ctx.Done():
			fmt.Fprintf(e.stderr, "%s: stopped watching: %v\n", c.name, ctx.Err())
			return 1
		case <-t.C:
		}
		nr, nb, err := get()
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintf(e.stderr, "%s: stopped watching: %v\n", c.name, ctx.Err())
				return 1
			}
			var ae *apiError
			if errors.As(err, &ae) {
				return c.fail(err)
			}
			if failures++; failures >= maxWatchErrors {
				return c.fail(fmt.Errorf("giving up after %d failed polls: %w", failures, err))
			}
			fmt.Fprintf(e.stderr, "%s: %v (retrying)\n", c.name, err)
			continue
		}
		failures = 0
		if bytes.Equal(nb, last) {
			continue
		}
		r, last = nr, nb
		if !*asJSON {
			fmt.Fprintln(e.stdout)
		}
		show(r, nb)
	}
	if r.State != rollout.StatePromoted {
		fmt.Fprintf(e.stderr, "%s: rollout %s ended %s: %s\n", c.name, clean(r.ID), r.State, orDash(r.Reason))
		return 1
	}
	return 0
}

// runRolloutAction pauses, resumes, promotes or rolls back a rollout.
func runRolloutAction(ctx context.Context, e *env, action string, args []string) int {
	use := fmt.Sprintf(usageRolloutAction, action)
	if action == "rollback" {
		use = usageRollback
	}
	c, fs := mgmtCommand(e, "petrel rollout "+action, use)
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	var ver, reason *string
	if action == "rollback" {
		ver = fs.String("version", "", "serve this version instead of the rollout's previous one (also works with no rollout running)")
		reason = fs.String("reason", "", "why, for the audit trail")
	}
	pos, code, ok := c.parse(fs, args, 1, 1)
	if !ok {
		return code
	}
	model := pos[0]
	if err := checkModel(model); err != nil {
		return c.fail(err)
	}
	var body any
	toVersion := ""
	if action == "rollback" {
		if isSet(fs, "version") {
			if err := checkVersion(*ver); err != nil {
				return c.fail(err)
			}
			toVersion = *ver
		}
		if len(*reason) > 1024 {
			return c.fail(usageErrorf("--reason is %d bytes long; keep it under 1024", len(*reason)))
		}
		if toVersion != "" || *reason != "" {
			body = struct {
				Version string `json:"version,omitempty"`
				Reason  string `json:"reason,omitempty"`
			}{toVersion, *reason}
		}
	}
	cl, err := c.mf.client(fs, requestTimeout)
	if err != nil {
		return c.fail(err)
	}
	b, err := cl.sendJSON(ctx, http.MethodPost, "/v1/rollouts/"+url.PathEscape(model)+"/"+action, body, nil)
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		printRaw(e.stdout, b)
		return 0
	}
	if toVersion != "" {
		// Rolling back to a named version answers with the desired state.
		var d bus.Desired
		if err := decodeAnswer(b, &d); err != nil {
			return c.fail(err)
		}
		fmt.Fprintf(e.stdout, "rolled %s back to version %s\nserving: %s\n", clean(model), clean(toVersion), servingString(&d))
		return 0
	}
	var r rollout.Rollout
	if err := decodeAnswer(b, &r); err != nil {
		return c.fail(err)
	}
	printRollout(e.stdout, &r)
	return 0
}

// stepString reads "2/5, 5% of traffic on v2".
func stepString(r *rollout.Rollout) string {
	_, w := r.Weights()
	return fmt.Sprintf("%d/%d, %s of traffic on %s", r.Step+1, len(r.Spec.Steps), pctString(w), clean(r.Spec.To))
}

// figuresString summarises a window's figures.
func figuresString(f rollout.Figures) string {
	s := fmt.Sprintf("%d requests, %d errors (%.2f%%)", f.Requests, f.Errors, 100*f.ErrorRate())
	if f.Requests > 0 {
		s += ", p99 " + latency(f.Quantile(0.99))
	}
	return s
}

// historyShown is how many of the last history events status prints.
const historyShown = 5

// printRollout prints a rollout for humans.
func printRollout(out io.Writer, r *rollout.Rollout) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	from := "nothing (first deploy)"
	if r.Spec.From != "" {
		from = clean(r.Spec.From)
	}
	fmt.Fprintf(w, "rollout\t%s (%s: %s -> %s)\n", clean(r.ID), clean(r.Spec.Model), from, clean(r.Spec.To))
	fmt.Fprintf(w, "state\t%s\n", clean(string(r.State)))
	fmt.Fprintf(w, "step\t%s, since %s\n", stepString(r), timeString(r.StepStarted))
	if r.Reason != "" {
		fmt.Fprintf(w, "reason\t%s\n", clean(r.Reason))
	}
	fmt.Fprintf(w, "window\t%s: %s\n", clean(r.Spec.To), figuresString(r.Window.To))
	if r.Spec.From != "" {
		fmt.Fprintf(w, "\t%s: %s\n", clean(r.Spec.From), figuresString(r.Window.From))
	}
	limits := fmt.Sprintf("max error rate %s, ", pctString(100*r.Spec.MaxErrorRate))
	if r.Spec.MaxP99 > 0 {
		limits += "max p99 " + r.Spec.MaxP99.String() + ", "
	}
	limits += fmt.Sprintf("min %d requests and %s per step", r.Spec.MinRequests, r.Spec.Interval)
	fmt.Fprintf(w, "limits\t%s\n", limits)
	fmt.Fprintf(w, "started\t%s by %s\n", timeString(r.Started), orDash(r.Spec.Actor))
	w.Flush()
	if len(r.History) == 0 {
		return
	}
	h := r.History
	if len(h) > historyShown {
		h = h[len(h)-historyShown:]
	}
	fmt.Fprintln(out, "history:")
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, ev := range h {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", timeString(ev.Time), clean(ev.What), pctString(ev.Weight), orDash(ev.Actor), clean(ev.Reason))
	}
	w.Flush()
}

// --- petrel route ---

const usageRoute = "petrel route MODEL [--lat X --lon Y] [--region R] [--limit N] [--json]"

// runRoute asks the coordinator which nodes a client should use.
func runRoute(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel route", usageRoute)
	lat := fs.Float64("lat", 0, "client latitude in degrees (with --lon)")
	lon := fs.Float64("lon", 0, "client longitude in degrees (with --lat)")
	region := fs.String("region", "", "client region")
	limit := fs.Int("limit", 0, "at most this many candidates (1-1000; default the coordinator's)")
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	pos, code, ok := c.parse(fs, args, 1, 1)
	if !ok {
		return code
	}
	model := pos[0]
	if err := checkModel(model); err != nil {
		return c.fail(err)
	}
	q := url.Values{"model": {model}}
	switch hasLat, hasLon := isSet(fs, "lat"), isSet(fs, "lon"); {
	case hasLat != hasLon:
		return c.fail(usageErrorf("give both --lat and --lon, or neither"))
	case hasLat:
		if math.IsNaN(*lat) || *lat < -90 || *lat > 90 || math.IsNaN(*lon) || *lon < -180 || *lon > 180 {
			return c.fail(usageErrorf("--lat %v --lon %v: want degrees in [-90, 90] and [-180, 180]", *lat, *lon))
		}
		q.Set("lat", strconv.FormatFloat(*lat, 'f', -1, 64))
		q.Set("lon", strconv.FormatFloat(*lon, 'f', -1, 64))
	}
	if *region != "" {
		q.Set("region", *region)
	}
	if isSet(fs, "limit") {
		if *limit < 1 || *limit > 1000 {
			return c.fail(usageErrorf("--limit %d: want 1-1000", *limit))
		}
		q.Set("limit", strconv.Itoa(*limit))
	}
	cl, err := c.mf.client(fs, requestTimeout)
	if err != nil {
		return c.fail(err)
	}
	var ans coordinator.RouteAnswer
	b, err := cl.getJSON(ctx, "/v1/route?"+q.Encode(), &ans)
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		printRaw(e.stdout, b)
		return 0
	}
	cli := "unknown location"
	switch {
	case ans.Client.HasLoc && ans.Client.Region != "":
		cli = fmt.Sprintf("region %s at %.4f, %.4f", clean(ans.Client.Region), ans.Client.Lat, ans.Client.Lon)
	case ans.Client.HasLoc:
		cli = fmt.Sprintf("%.4f, %.4f", ans.Client.Lat, ans.Client.Lon)
	case ans.Client.Region != "":
		cli = "region " + clean(ans.Client.Region)
	}
	fmt.Fprintf(e.stdout, "model %s, client %s (from %s)\n", clean(ans.Model), cli, orDash(ans.Client.From))
	if len(ans.Candidates) == 0 {
		fmt.Fprintf(e.stderr, "%s: no healthy node serves model %s\n", c.name, clean(model))
		printUnmatched(e, ans.Unmatched)
		return 1
	}
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tURL\tREGION\tDISTANCE_KM\tLOAD\tWHY")
	for _, cd := range ans.Candidates {
		dist := "-"
		if ans.Client.HasLoc {
			dist = strconv.FormatFloat(cd.DistanceKm, 'f', 0, 64)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", clean(cd.Node), orDash(cd.URL), orDash(cd.Region), dist, cd.Load, orDash(cd.Why))
	}
	w.Flush()
	printUnmatched(e, ans.Unmatched)
	return 0
}

// printUnmatched lists the nodes the route left out and why, by node.
func printUnmatched(e *env, un map[string]string) {
	if len(un) == 0 {
		return
	}
	nodes := make([]string, 0, len(un))
	for n := range un {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	fmt.Fprintln(e.stdout, "left out:")
	for _, n := range nodes {
		fmt.Fprintf(e.stdout, "  %s: %s\n", clean(n), orDash(un[n]))
	}
}

// --- petrel audit ---

const usageAudit = "petrel audit [--model M] [--kind K] [--actor A] [--since 1h|RFC3339] [--limit N] [--json]"

// runAudit prints the audit trail, one line per event.
func runAudit(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel audit", usageAudit)
	model := fs.String("model", "", "only events of this model")
	kind := fs.String("kind", "", "only events of this kind (push, validate, deploy, rollout.start, promote, rollback, rm, ...)")
	actor := fs.String("actor", "", "only events caused by this token name")
	since := fs.String("since", "", "only events since a time (RFC 3339) or for a duration back (1h)")
	limit := fs.Int("limit", 0, "at most this many events (1-10000; default the coordinator's, 100)")
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	if _, code, ok := c.parse(fs, args, 0, 0); !ok {
		return code
	}
	q := url.Values{}
	if *model != "" {
		if err := checkModel(*model); err != nil {
			return c.fail(err)
		}
		q.Set("model", *model)
	}
	if *kind != "" {
		if !bus.ValidKind(*kind) {
			return c.fail(usageErrorf("--kind %q: want dot-separated words such as push or rollout.start", *kind))
		}
		q.Set("kind", *kind)
	}
	if *actor != "" {
		q.Set("actor", *actor)
	}
	if *since != "" {
		if _, err := time.Parse(time.RFC3339, *since); err != nil {
			if d, derr := time.ParseDuration(*since); derr != nil || d <= 0 {
				return c.fail(usageErrorf("--since %q: want an RFC 3339 time or a positive duration such as 1h", *since))
			}
		}
		q.Set("since", *since)
	}
	if isSet(fs, "limit") {
		if *limit < 1 || *limit > 10000 {
			return c.fail(usageErrorf("--limit %d: want 1-10000", *limit))
		}
		q.Set("limit", strconv.Itoa(*limit))
	}
	cl, err := c.mf.client(fs, requestTimeout)
	if err != nil {
		return c.fail(err)
	}
	path := "/v1/audit"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var evs []bus.AuditEvent
	b, err := cl.getJSON(ctx, path, &evs)
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		printRaw(e.stdout, b)
		return 0
	}
	if len(evs) == 0 {
		fmt.Fprintln(e.stdout, "no audit events match")
		return 0
	}
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	for _, ev := range evs {
		mv := "-"
		if ev.Model != "" {
			mv = clean(ev.Model)
			if ev.Version != "" {
				mv += "/" + clean(ev.Version)
			}
		}
		ok := "ok"
		if !ev.OK {
			ok = "FAILED"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s", timeString(ev.Time), orDash(ev.Kind), orDash(ev.Actor), mv, ok)
		if ev.Detail != "" {
			fmt.Fprintf(w, "\t%s", clean(ev.Detail))
		}
		fmt.Fprintln(w)
	}
	w.Flush()
	return 0
}

// --- petrel model push-pipeline ---

const usagePushPipeline = "petrel model push-pipeline NAME --version V --steps model:version,model:version[,...] [--labels k=v,k=v] [--allow-breaking] [--json]"

// parsePipelineSteps parses "a:1,b:2" into pinned steps.
func parsePipelineSteps(s string) ([]coordinator.PipelineStepRef, error) {
	var out []coordinator.PipelineStepRef
	for _, p := range commaList(s) {
		model, ver, ok := strings.Cut(p, ":")
		if !ok || model == "" || ver == "" {
			return nil, fmt.Errorf("step %q: want model:version", p)
		}
		if err := checkModel(model); err != nil {
			return nil, fmt.Errorf("step %q: %w", p, err)
		}
		if err := checkVersion(ver); err != nil {
			return nil, fmt.Errorf("step %q: %w", p, err)
		}
		out = append(out, coordinator.PipelineStepRef{Model: model, Version: ver})
	}
	if len(out) < models.MinPipelineSteps || len(out) > models.MaxPipelineSteps {
		return nil, fmt.Errorf("%d steps, want %d to %d", len(out), models.MinPipelineSteps, models.MaxPipelineSteps)
	}
	return out, nil
}

// runModelPushPipeline declares a pipeline version over pinned versions
// of models in the registry; the coordinator checks the steps fit.
func runModelPushPipeline(ctx context.Context, e *env, args []string) int {
	c, fs := mgmtCommand(e, "petrel model push-pipeline", usagePushPipeline)
	ver := fs.String("version", "", "version of the pipeline (required)")
	stepsFlag := fs.String("steps", "", "the steps in order, model:version,model:version (required)")
	labels := fs.String("labels", "", "labels of the version, k=v,k=v")
	allowBreaking := fs.Bool("allow-breaking", false, "accept a signature incompatible with the previous version's")
	asJSON := fs.Bool("json", false, "print the coordinator's JSON answer")
	pos, code, ok := c.parse(fs, args, 1, 1)
	if !ok {
		return code
	}
	if err := checkModel(pos[0]); err != nil {
		return c.fail(err)
	}
	if err := checkVersion(*ver); err != nil {
		return c.fail(err)
	}
	steps, err := parsePipelineSteps(*stepsFlag)
	if err != nil {
		return c.fail(usageErrorf("--steps: %v", err))
	}
	l, err := coordinator.ParseLabels(*labels)
	if err != nil {
		return c.fail(usageErrorf("--labels: %v", err))
	}
	cl, err := c.mf.client(fs, requestTimeout)
	if err != nil {
		return c.fail(err)
	}
	req := coordinator.PipelineRequest{Steps: steps, Labels: l, AllowBreaking: *allowBreaking}
	var res struct {
		Manifest models.Manifest `json:"manifest"`
	}
	b, err := cl.sendJSON(ctx, http.MethodPost, modelPath(pos[0], "versions", *ver, "pipeline"), req, &res)
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		printRaw(e.stdout, b)
		return 0
	}
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = s.Model + ":" + s.Version
	}
	fmt.Fprintf(e.stdout, "pushed pipeline %s version %s: %s\ndigest: %s\n", clean(pos[0]), clean(*ver), clean(strings.Join(names, " -> ")), res.Manifest.ServingDigest())
	return 0
}
