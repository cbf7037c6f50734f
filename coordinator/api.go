package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/georoute"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/coordinator/validate"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/golden"
	"github.com/petrel-mesh/petrel/routing"
)

// The management API (docs/coordinator.md). Every route needs a bearer
// token; the scope each needs is in the table.
func (c *Coordinator) routes() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern, scope string, f func(w http.ResponseWriter, r *http.Request, tok *Token)) {
		mux.HandleFunc(pattern, c.auth(scope, f))
	}
	h("GET /v1/models", ScopeRead, c.handleModels)
	h("GET /v1/models/{model}", ScopeRead, c.handleModel)
	h("GET /v1/models/{model}/versions/{version}", ScopeRead, c.handleVersion)
	h("POST /v1/models/{model}/versions/{version}", ScopePush, c.handlePush)
	h("POST /v1/models/{model}/versions/{version}/pipeline", ScopePush, c.handlePushPipeline)
	h("DELETE /v1/models/{model}", ScopeAdmin, c.handleRemove)
	h("DELETE /v1/models/{model}/versions/{version}", ScopeAdmin, c.handleRemove)
	h("POST /v1/models/{model}/deploy", ScopePush, c.handleDeploy)
	h("POST /v1/models/{model}/shadow", ScopePush, c.handleShadow)
	h("GET /v1/models/{model}/shadow", ScopeRead, c.handleShadowReport)
	h("GET /v1/rollouts/{model}", ScopeRead, c.handleRolloutGet)
	h("POST /v1/rollouts/{model}", ScopePush, c.handleRolloutStart)
	h("POST /v1/rollouts/{model}/{action}", ScopePush, c.handleRolloutAction)
	h("GET /v1/nodes", ScopeRead, func(w http.ResponseWriter, r *http.Request, _ *Token) { writeJSON(w, 200, c.Nodes()) })
	h("GET /v1/route", ScopeRead, c.handleRoute)
	h("GET /v1/audit", ScopeRead, c.handleAudit)
	h("GET /v1/signing-key", ScopeRead, c.handleSigningKey)
	h("POST /v1/rounds", ScopePush, c.handleRoundStart)
	h("GET /v1/rounds", ScopeRead, c.handleRounds)
	h("GET /v1/rounds/{id}", ScopeRead, c.handleRound)
	h("POST /v1/enrol", ScopeJoin, c.handleEnrol)
	h("GET /v1/ingest", ScopeRead, func(w http.ResponseWriter, r *http.Request, _ *Token) { writeJSON(w, 200, c.IngestStats()) })
	// The redirect form of routing, for clients that cannot choose: any
	// inference path, answered with 307 to the best node. It needs no
	// token (it reveals only a node URL, as the node's own API does).
	mux.HandleFunc("/v2/models/{model}/{rest...}", c.handleRedirect)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = 500, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeErr(w http.ResponseWriter, err error) {
	st := statusOf(err)
	writeJSON(w, st, map[string]string{"error": err.Error()})
}

func (c *Coordinator) auth(scope string, f func(http.ResponseWriter, *http.Request, *Token)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		secret, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || secret == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="petrel"`)
			writeErr(w, errf(http.StatusUnauthorized, "missing bearer token (Authorization: Bearer <token>)"))
			return
		}
		tok, ok := c.cfg.Tokens.Lookup(strings.TrimSpace(secret))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="petrel", error="invalid_token"`)
			writeErr(w, errf(http.StatusUnauthorized, "invalid token"))
			return
		}
		if !tok.Allows(scope) {
			writeErr(w, errf(http.StatusForbidden, "token %q lacks the %q scope", tok.Name, scope))
			return
		}
		f(w, r, tok)
	}
}

func (c *Coordinator) handleModels(w http.ResponseWriter, r *http.Request, _ *Token) {
	ms, err := c.Models(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	if ms == nil {
		ms = []ModelSummary{}
	}
	writeJSON(w, 200, ms)
}

// ModelDetail is `petrel model show`.
type ModelDetail struct {
	Name     string            `json:"name"`
	Versions []models.Manifest `json:"versions"`
	Desired  *bus.Desired      `json:"desired,omitempty"`
	Rollout  *rollout.Rollout  `json:"rollout,omitempty"`
	Stats    []VersionTotals   `json:"stats"`
	Nodes    []NodeModelState  `json:"nodes"`
	// Replicas counts, per region, the nodes serving every weighted
	// version; Warnings say where placement's minimum is not met.
	Replicas map[string]int `json:"replicas,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
}

// NodeModelState is one node's state of one of the model's versions.
type NodeModelState struct {
	Node    string `json:"node"`
	Region  string `json:"region,omitempty"`
	Version string `json:"version"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
}

func (c *Coordinator) handleModel(w http.ResponseWriter, r *http.Request, _ *Token) {
	name := r.PathValue("model")
	vs, err := c.Versions(r.Context(), name)
	if err != nil {
		writeErr(w, err)
		return
	}
	if len(vs) == 0 {
		writeErr(w, notFound("model %q is not in the registry", name))
		return
	}
	d, _, err := c.desired(r.Context(), name)
	if err != nil {
		writeErr(w, err)
		return
	}
	det := ModelDetail{Name: name, Versions: vs, Desired: d, Rollout: c.ro.get(name), Stats: c.Totals(name), Nodes: []NodeModelState{}}
	nodes := c.Nodes()
	for _, n := range nodes {
		for _, m := range n.Models {
			if m.Model == name {
				det.Nodes = append(det.Nodes, NodeModelState{Node: n.Node, Region: n.Region, Version: m.Version, State: m.State, Reason: m.Reason})
			}
		}
	}
	det.Replicas, det.Warnings = replicas(d, nodes)
	writeJSON(w, 200, det)
}

// replicas counts the healthy nodes per region that have every weighted
// version of d ready, and checks the placement's minimum per region.
func replicas(d *bus.Desired, nodes []NodeView) (map[string]int, []string) {
	if d == nil {
		return nil, nil
	}
	var want []string
	for _, v := range d.Versions {
		if v.Weight > 0 {
			want = append(want, v.Version)
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	counts := map[string]int{}
	for _, r := range d.Placement.Regions {
		counts[r] = 0
	}
	for _, n := range nodes {
		if !n.Healthy {
			continue
		}
		ready := 0
		for _, m := range n.Models {
			if m.Model == d.Model && m.State == "READY" && slices.Contains(want, m.Version) {
				ready++
			}
		}
		if ready == len(want) {
			counts[n.Region]++
		}
	}
	var warns []string
	if min := d.Placement.MinReplicasPerRegion; min > 0 {
		regions := make([]string, 0, len(counts))
		for r := range counts {
			regions = append(regions, r)
		}
		slices.Sort(regions)
		for _, r := range regions {
			if counts[r] < min {
				warns = append(warns, fmt.Sprintf("region %q has %d of the %d replicas placement asks for", r, counts[r], min))
			}
		}
	}
	return counts, warns
}

func (c *Coordinator) handleVersion(w http.ResponseWriter, r *http.Request, _ *Token) {
	m, _, err := c.manifest(r.Context(), r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, m)
}

// handlePush takes multipart/form-data: "model" (the ONNX file), optional
// "golden" (JSON, with an optional "predict" array), "labels" (k=v,k=v),
// "allow_breaking" (true), "pre" and "post" (WebAssembly transforms) and
// "grants" ("pre=clock,post=random+clock"; see ParseGrants).
func (c *Coordinator) handlePush(w http.ResponseWriter, r *http.Request, tok *Token) {
	req, err := c.parsePush(w, r)
	if err != nil {
		writeErr(w, err)
		return
	}
	req.Actor = tok.Name
	res, err := c.Push(r.Context(), *req)
	if err != nil {
		if res != nil && res.Report != nil {
			writeJSON(w, statusOf(err), map[string]any{"error": err.Error(), "report": res.Report})
			return
		}
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

func (c *Coordinator) parsePush(w http.ResponseWriter, r *http.Request) (*PushRequest, error) {
	req := &PushRequest{Name: r.PathValue("model"), Version: r.PathValue("version")}
	var grants map[string][]string
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, badRequest("want a multipart/form-data body with a \"model\" file part")
	}
	limit := c.cfg.MaxModelBytes + 16<<20
	mr := multipart.NewReader(http.MaxBytesReader(w, r.Body, limit), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, errf(http.StatusRequestEntityTooLarge, "push body exceeds %d bytes", limit)
			}
			return nil, badRequest("multipart body: %v", err)
		}
		var lim int64 = 1 << 20
		switch p.FormName() {
		case "model":
			lim = c.cfg.MaxModelBytes
		case "pre", "post":
			lim = models.MaxTransformBytes
		}
		b, err := io.ReadAll(io.LimitReader(p, lim+1))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, errf(http.StatusRequestEntityTooLarge, "push body exceeds %d bytes", limit)
			}
			return nil, badRequest("read part %q: %v", p.FormName(), err)
		}
		if int64(len(b)) > lim {
			return nil, errf(http.StatusRequestEntityTooLarge, "part %q exceeds %d bytes", p.FormName(), lim)
		}
		switch p.FormName() {
		case "model":
			req.Model = b
		case "golden":
			pe, err := validate.ParsePredictExamples(b)
			if err != nil {
				return nil, badRequest("%v", err)
			}
			req.Predict = pe
			if len(pe) > 0 && !hasGoldenField(b) {
				break // a file of predict examples only
			}
			g, err := golden.ParseGoldenFile(b)
			if err != nil {
				return nil, badRequest("golden file: %v", err)
			}
			req.Golden = g
		case "pre", "post":
			if len(b) == 0 {
				return nil, badRequest("part %q is empty", p.FormName())
			}
			if p.FormName() == "pre" {
				req.Pre = &validate.TransformModule{Wasm: b}
			} else {
				req.Post = &validate.TransformModule{Wasm: b}
			}
		case "grants":
			g, err := ParseGrants(string(b))
			if err != nil {
				return nil, badRequest("%v", err)
			}
			grants = g
		case "labels":
			l, err := ParseLabels(string(b))
			if err != nil {
				return nil, badRequest("%v", err)
			}
			req.Labels = l
		case "allow_breaking":
			req.AllowBreaking = strings.TrimSpace(string(b)) == "true"
		default:
			return nil, badRequest("unknown part %q (model, golden, labels, allow_breaking, pre, post, grants)", p.FormName())
		}
	}
	if req.Model == nil {
		return nil, badRequest("the push has no \"model\" part")
	}
	for stage, gs := range grants {
		t := req.Pre
		if stage == "post" {
			t = req.Post
		}
		if t == nil {
			if len(gs) > 0 {
				return nil, badRequest("grants for %q, but the push has no %q part", stage, stage)
			}
			continue
		}
		t.Grants = gs
	}
	return req, nil
}

// hasGoldenField reports whether a golden file is an array or an object
// with a "golden" field (rather than predict examples only).
func hasGoldenField(b []byte) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal(b, &obj) != nil {
		return true // let the golden parser say what is wrong
	}
	_, ok := obj["golden"]
	return ok
}

// ParseGrants parses the "grants" part of a push: comma-separated
// stage=grants, the grants of one stage joined by '+', e.g.
// "pre=clock,post=clock+random" or "pre=" (none). Stages are pre and
// post; grants are clock and random.
func ParseGrants(s string) (map[string][]string, error) {
	s = strings.TrimSpace(s)
	out := map[string][]string{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		stage, list, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || (stage != "pre" && stage != "post") {
			return nil, fmt.Errorf("grants %q: want pre=GRANTS or post=GRANTS, GRANTS being clock and random joined by '+'", kv)
		}
		if _, dup := out[stage]; dup {
			return nil, fmt.Errorf("grants for %q given twice", stage)
		}
		gs := []string{}
		for g := range strings.SplitSeq(list, "+") {
			if g = strings.TrimSpace(g); g == "" {
				continue
			}
			if !models.ValidGrant(g) {
				return nil, fmt.Errorf("grants for %q: unknown grant %q (clock, random)", stage, g)
			}
			if slices.Contains(gs, g) {
				return nil, fmt.Errorf("grants for %q: %q given twice", stage, g)
			}
			gs = append(gs, g)
		}
		out[stage] = gs
	}
	return out, nil
}

// ParseLabels parses "k=v,k=v".
func ParseLabels(s string) (map[string]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want key=value", kv)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("label %q given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	return nil
}

func (c *Coordinator) handleRemove(w http.ResponseWriter, r *http.Request, tok *Token) {
	if err := c.Remove(r.Context(), r.PathValue("model"), r.PathValue("version"), tok.Name); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]string{"removed": strings.TrimSuffix(r.PathValue("model")+"/"+r.PathValue("version"), "/")})
}

// DeployRequest is the body of POST /v1/models/{m}/deploy.
type DeployRequest struct {
	Version   string         `json:"version"`
	Placement *bus.Placement `json:"placement,omitempty"`
}

func (c *Coordinator) handleDeploy(w http.ResponseWriter, r *http.Request, tok *Token) {
	var req DeployRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	d, err := c.Deploy(r.Context(), r.PathValue("model"), req.Version, req.Placement, tok.Name)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, d)
}

// ShadowRequest is the body of POST /v1/models/{m}/shadow.
type ShadowRequest struct {
	Version string  `json:"version"`
	Share   float64 `json:"share"`
}

func (c *Coordinator) handleShadow(w http.ResponseWriter, r *http.Request, tok *Token) {
	var req ShadowRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	d, err := c.SetShadow(r.Context(), r.PathValue("model"), req.Version, req.Share, tok.Name)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, d)
}

func (c *Coordinator) handleShadowReport(w http.ResponseWriter, r *http.Request, _ *Token) {
	out := []VersionTotals{}
	for _, t := range c.Totals(r.PathValue("model")) {
		if t.Shadow != nil {
			out = append(out, t)
		}
	}
	writeJSON(w, 200, out)
}

// RolloutRequest is the body of POST /v1/rollouts/{model}.
type RolloutRequest struct {
	Version      string    `json:"version"`
	Steps        []float64 `json:"steps"`
	Interval     string    `json:"interval"`
	MaxErrorRate float64   `json:"max_error_rate"`
	MaxP99       string    `json:"max_p99,omitempty"`
	MinRequests  uint64    `json:"min_requests,omitempty"`
}

func (c *Coordinator) handleRolloutStart(w http.ResponseWriter, r *http.Request, tok *Token) {
	var req RolloutRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	spec := rollout.Spec{Model: r.PathValue("model"), To: req.Version, Steps: req.Steps, MaxErrorRate: req.MaxErrorRate, MinRequests: req.MinRequests, Actor: tok.Name}
	var err error
	if spec.Interval, err = time.ParseDuration(req.Interval); err != nil {
		writeErr(w, badRequest("interval %q: %v", req.Interval, err))
		return
	}
	if req.MaxP99 != "" {
		if spec.MaxP99, err = time.ParseDuration(req.MaxP99); err != nil {
			writeErr(w, badRequest("max_p99 %q: %v", req.MaxP99, err))
			return
		}
	}
	ro, err := c.StartRollout(r.Context(), spec)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, ro)
}

func (c *Coordinator) handleRolloutAction(w http.ResponseWriter, r *http.Request, tok *Token) {
	model, action := r.PathValue("model"), r.PathValue("action")
	var body struct {
		Version string `json:"version,omitempty"`
		Reason  string `json:"reason,omitempty"`
	}
	if r.ContentLength != 0 {
		if err := decodeBody(r, &body); err != nil {
			writeErr(w, err)
			return
		}
	}
	if action == "rollback" && body.Version != "" {
		d, err := c.RollbackTo(r.Context(), model, body.Version, tok.Name)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, 200, d)
		return
	}
	ro, err := c.RolloutAction(r.Context(), model, action, tok.Name, body.Reason)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, ro)
}

func (c *Coordinator) handleRolloutGet(w http.ResponseWriter, r *http.Request, _ *Token) {
	ro, err := c.Rollout(r.PathValue("model"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, ro)
}

// RouteAnswer is GET /v1/route's answer.
type RouteAnswer struct {
	Model      string            `json:"model"`
	Client     RouteClient       `json:"client"`
	Candidates []RouteCandidate  `json:"candidates"`
	Unmatched  map[string]string `json:"unmatched,omitempty"`
}

// RouteClient is where the coordinator thinks the client is.
type RouteClient struct {
	Region string  `json:"region,omitempty"`
	Lat    float64 `json:"lat,omitempty"`
	Lon    float64 `json:"lon,omitempty"`
	HasLoc bool    `json:"has_location"`
	From   string  `json:"from"` // query | address | none
}

// RouteCandidate is one node to try, best first.
type RouteCandidate struct {
	Node       string  `json:"node"`
	URL        string  `json:"url"`
	Region     string  `json:"region,omitempty"`
	DistanceKm float64 `json:"distance_km"`
	Load       int     `json:"load"`
	Role       string  `json:"role"`
	Score      float64 `json:"score"`
	Why        string  `json:"why,omitempty"`
}

func (c *Coordinator) route(r *http.Request, model string) (*RouteAnswer, error) {
	if !models.ValidName(model) {
		return nil, badRequest("model %q: want ?model=<name>", model)
	}
	q := r.URL.Query()
	ans := &RouteAnswer{Model: model, Candidates: []RouteCandidate{}}
	gq := georoute.Query{Region: q.Get("region")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return nil, badRequest("limit %q: want 1-1000", s)
		}
		gq.Limit = n
	}
	lat, lon := q.Get("lat"), q.Get("lon")
	switch {
	case lat != "" || lon != "":
		la, err1 := strconv.ParseFloat(lat, 64)
		lo, err2 := strconv.ParseFloat(lon, 64)
		if err1 != nil || err2 != nil || math.IsNaN(la) || math.IsNaN(lo) || la < -90 || la > 90 || lo < -180 || lo > 180 {
			return nil, badRequest("lat=%q lon=%q: want both, in degrees (-90..90, -180..180)", lat, lon)
		}
		gq.Loc, gq.HasLoc = routing.Location{Lat: la, Lon: lo}, true
		ans.Client = RouteClient{Region: gq.Region, Lat: la, Lon: lo, HasLoc: true, From: "query"}
	case gq.Region != "":
		ans.Client = RouteClient{Region: gq.Region, From: "query"}
	default:
		ans.Client.From = "none"
		if c.cfg.CIDRs != nil {
			if ip, ok := clientIP(r); ok {
				if region, loc, hasLoc, ok := c.cfg.CIDRs.Lookup(ip); ok {
					gq.Region, gq.Loc, gq.HasLoc = region, loc, hasLoc
					ans.Client = RouteClient{Region: region, Lat: loc.Lat, Lon: loc.Lon, HasLoc: hasLoc, From: "address"}
				}
			}
		}
	}
	var nodes []georoute.Node
	for _, n := range c.Nodes() {
		ready := false
		for _, m := range n.Models {
			if m.Model == model && m.State == "READY" {
				ready = true
				break
			}
		}
		nodes = append(nodes, georoute.Node{ID: n.Node, Region: n.Region, URL: n.HTTPURL, Loc: routing.Location{Lat: n.Lat, Lon: n.Lon},
			HasLoc: n.HasLoc, Load: n.Load, Ready: ready, Healthy: n.Healthy, Role: n.Role})
	}
	for _, rk := range georoute.Rank(nodes, gq) {
		ans.Candidates = append(ans.Candidates, RouteCandidate{Node: rk.ID, URL: rk.URL, Region: rk.Region, DistanceKm: rk.DistanceKm,
			Load: rk.Load, Role: rk.Role, Score: rk.Score, Why: rk.Why})
	}
	return ans, nil
}

func clientIP(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

func (c *Coordinator) handleRoute(w http.ResponseWriter, r *http.Request, _ *Token) {
	model := r.URL.Query().Get("model")
	ans, err := c.route(r, model)
	if err != nil {
		writeErr(w, err)
		return
	}
	if r.URL.Query().Get("redirect") != "" {
		if len(ans.Candidates) == 0 {
			writeErr(w, errf(http.StatusServiceUnavailable, "no healthy node serves model %q", model))
			return
		}
		path := r.URL.Query().Get("path")
		if path == "" {
			path = "/v2/models/" + url.PathEscape(model) + "/infer"
		}
		if !strings.HasPrefix(path, "/v2/") {
			writeErr(w, badRequest("path %q: want an inference API path under /v2/", path))
			return
		}
		http.Redirect(w, r, strings.TrimSuffix(ans.Candidates[0].URL, "/")+path, http.StatusTemporaryRedirect)
		return
	}
	writeJSON(w, 200, ans)
}

// handleRedirect answers /v2/models/{model}/... with 307 to the best node
// for the client (by address, or ?lat=&lon= / ?region=), keeping the method
// and body.
func (c *Coordinator) handleRedirect(w http.ResponseWriter, r *http.Request) {
	model := r.PathValue("model")
	ans, err := c.route(r, model)
	if err != nil {
		writeErr(w, err)
		return
	}
	if len(ans.Candidates) == 0 {
		writeErr(w, errf(http.StatusServiceUnavailable, "no healthy node serves model %q", model))
		return
	}
	target := strings.TrimSuffix(ans.Candidates[0].URL, "/") + r.URL.EscapedPath()
	w.Header().Set("Petrel-Routed-To", ans.Candidates[0].Node)
	http.Redirect(w, r, target, http.StatusTemporaryRedirect)
}

func (c *Coordinator) handleAudit(w http.ResponseWriter, r *http.Request, _ *Token) {
	q := r.URL.Query()
	f := bus.AuditFilter{Kind: q.Get("kind"), Model: q.Get("model"), Actor: q.Get("actor"), Limit: 100}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			d, derr := time.ParseDuration(s)
			if derr != nil {
				writeErr(w, badRequest("since %q: want RFC 3339 time or a duration like 1h", s))
				return
			}
			t = time.Now().Add(-d)
		}
		f.Since = t
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			writeErr(w, badRequest("limit %q: want 1-10000", s))
			return
		}
		f.Limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	evs, err := bus.ReadAudit(ctx, c.b.JS, c.names, f)
	if err != nil {
		writeErr(w, err)
		return
	}
	if evs == nil {
		evs = []bus.AuditEvent{}
	}
	writeJSON(w, 200, evs)
}

func (c *Coordinator) handleSigningKey(w http.ResponseWriter, r *http.Request, _ *Token) {
	b, err := models.MarshalPublicKey(c.signer.PublicKey())
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(b)
}
