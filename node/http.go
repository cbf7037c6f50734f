package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node/meshtls"
	"github.com/petrel-mesh/petrel/node/respcache"
	"github.com/petrel-mesh/petrel/node/sched"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Headers of the Petrel extensions.
const (
	// HeaderTimeout carries a request deadline: a Go duration ("250ms") or
	// an integer number of milliseconds.
	HeaderTimeout = "Petrel-Timeout"
	// HeaderServedBy names the node that produced the response.
	HeaderServedBy = "Petrel-Served-By"
	// HeaderCache is "hit" when the response came from the response cache.
	HeaderCache = "Petrel-Cache"
)

// Header values set on every response. They are shared, read-only slices
// (net/http only reads them), so setting them allocates nothing; a handler
// that wants another value assigns a new slice.
var (
	hdrJSON   = []string{"application/json"}
	hdrBinary = []string{"application/octet-stream"}
	hdrHit    = []string{"hit"}
)

// Extensions advertised by GET /v2.
var extensions = []string{"binary_tensor_data", "model_repository", "statistics", "petrel_timeout"}

func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2", n.handleServerMeta)
	mux.HandleFunc("GET /v1/blobs/{digest}", n.serveBlobs)
	mux.HandleFunc("GET /v1/mesh/peers", n.handlePeers)
	mux.HandleFunc("HEAD /v1/blobs/{digest}", n.serveBlobs)
	mux.HandleFunc("GET /v2/health/live", n.handleLive)
	mux.HandleFunc("GET /v2/health/ready", n.handleReady)
	mux.HandleFunc("GET /v2/models/{model}", n.handleModelMeta)
	mux.HandleFunc("GET /v2/models/{model}/versions/{version}", n.handleModelMeta)
	mux.HandleFunc("GET /v2/models/{model}/ready", n.handleModelReady)
	mux.HandleFunc("GET /v2/models/{model}/versions/{version}/ready", n.handleModelReady)
	mux.HandleFunc("POST /v2/models/{model}/infer", n.handleInfer)
	mux.HandleFunc("POST /v2/models/{model}/versions/{version}/infer", n.handleInfer)
	mux.HandleFunc(MethodForward+" /v2/models/{model}/infer", n.handleInfer)
	mux.HandleFunc(MethodForward+" /v2/models/{model}/versions/{version}/infer", n.handleInfer)
	mux.HandleFunc("POST /v2/models/{model}/predict", n.handlePredict)
	mux.HandleFunc("POST /v2/models/{model}/versions/{version}/predict", n.handlePredict)
	mux.HandleFunc(MethodForward+" /v2/models/{model}/predict", n.handlePredict)
	mux.HandleFunc(MethodForward+" /v2/models/{model}/versions/{version}/predict", n.handlePredict)
	mux.HandleFunc("POST /v2/models/{model}/feedback", n.handleFeedback)
	mux.HandleFunc("POST /v2/models/{model}/versions/{version}/feedback", n.handleFeedback)
	mux.HandleFunc("GET /v2/models/stats", n.handleStats)
	mux.HandleFunc("GET /v2/models/{model}/stats", n.handleStats)
	mux.HandleFunc("GET /v2/models/{model}/versions/{version}/stats", n.handleStats)
	mux.HandleFunc("GET /v2/repository/index", n.handleIndex)
	mux.HandleFunc("POST /v2/repository/index", n.handleIndex)
	mux.HandleFunc("POST /v2/repository/models/{model}/load", n.handleLoad)
	mux.HandleFunc("POST /v2/repository/models/{model}/unload", n.handleUnload)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Petrel-Served-By"] = n.servedByHdr
		if n.altSvc != "" && r.ProtoMajor < 3 {
			h["Alt-Svc"] = n.altSvcHdr
		}
		// 0-RTT data can be replayed by an attacker: only requests that are
		// safe to replay are served from it (RFC 8470).
		if r.TLS != nil && !r.TLS.HandshakeComplete && r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusTooEarly, "request sent in 0-RTT early data is not replay-safe; retry after the handshake")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode response: "+err.Error())
		return
	}
	w.Header()["Content-Type"] = []string{"application/json"}
	w.WriteHeader(status)
	w.Write(b)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header()["Content-Type"] = []string{"application/json"}
	w.WriteHeader(status)
	w.Write(oip.EncodeError(msg))
}

func (n *Node) handleServerMeta(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"name": "petrel", "version": Version, "extensions": extensions})
}

func (n *Node) handleLive(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
}

func (n *Node) handleReady(w http.ResponseWriter, r *http.Request) {
	if n.draining.Load() {
		writeError(w, http.StatusServiceUnavailable, "node is shutting down")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// lookupError maps a manager error to a status and writes it.
func (n *Node) lookupError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrModelNotFound), errors.Is(err, ErrVersionNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrModelNotReady):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

type tensorMeta struct {
	Name     string          `json:"name"`
	DataType models.DataType `json:"datatype"`
	Shape    []int64         `json:"shape"`
}

func (n *Node) handleModelMeta(w http.ResponseWriter, r *http.Request) {
	name, ver := r.PathValue("model"), r.PathValue("version")
	v, err := n.models.lookup(name, ver)
	if err != nil {
		n.lookupError(w, err)
		return
	}
	n.models.mu.RLock()
	var versions []string
	if e := n.models.models[name]; e != nil {
		for vv := range e.versions {
			versions = append(versions, vv)
		}
	}
	n.models.mu.RUnlock()
	sortVersions(versions)
	meta := func(specs []models.TensorSpec) []tensorMeta {
		out := make([]tensorMeta, len(specs))
		for i, s := range specs {
			out[i] = tensorMeta{s.Name, s.DataType, s.Shape}
		}
		return out
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":     name,
		"versions": versions,
		"platform": "onnxruntime_onnx",
		"inputs":   meta(v.manifest.Signature.Inputs),
		"outputs":  meta(v.manifest.Signature.Outputs),
		"parameters": map[string]any{
			"digest":               v.manifest.Digest,
			"execution_provider":   v.session.Provider(),
			"provider_note":        providerNote(v.session),
			"gpu_memory_bytes":     v.gpuBytes,
			"max_batch_size":       maxBatch(v),
			"intra_op_threads":     v.config.runtimeOptions(n.cfg.Runtime).IntraOpThreads,
			"concurrency":          v.schedCfg.Concurrency,
			"preferred_batch_size": v.schedCfg.PreferredBatchSizes,
			"batch_profile":        v.profile,
			"labels":               v.manifest.Labels,
		},
	})
}

// maxBatch is the batch size the node will form for v, 0 when the model
// cannot be batched (as Triton reports it).
func maxBatch(v *version) int {
	if !v.sched.Batching() {
		return 0
	}
	return v.schedCfg.MaxBatchSize
}

func sortVersions(vs []string) {
	for i := 1; i < len(vs); i++ {
		for j := i; j > 0 && versionLess(vs[j], vs[j-1]); j-- {
			vs[j], vs[j-1] = vs[j-1], vs[j]
		}
	}
}

func (n *Node) handleModelReady(w http.ResponseWriter, r *http.Request) {
	name, ver := r.PathValue("model"), r.PathValue("version")
	if _, err := n.models.lookup(name, ver); err != nil {
		n.lookupError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "ready": true})
}

// bufPool recycles request and response buffers on the inference path.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

const maxPooledBuf = 1 << 20

// maxPrealloc bounds the body buffer allocated up front from Content-Length.
const maxPrealloc = 4 << 20

func putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuf {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// readBody reads the whole body up to limit into buf.
func readBody(r *http.Request, buf []byte, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return buf, errTooLarge(r.ContentLength, limit)
	}
	// Preallocate for a declared length only up to a bound, so a client
	// that declares 64 MiB and then sends slowly cannot pin that memory.
	if r.ContentLength > 0 && r.ContentLength <= maxPrealloc {
		if int64(cap(buf)) < r.ContentLength {
			buf = make([]byte, 0, r.ContentLength)
		}
		buf = buf[:r.ContentLength]
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return buf, fmt.Errorf("%w: reading body: %v", oip.ErrBadRequest, err)
		}
		return buf, nil
	}
	lr := io.LimitReader(r.Body, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		k, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if int64(len(buf)) > limit {
			return buf, errTooLarge(-1, limit)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, fmt.Errorf("%w: reading body: %v", oip.ErrBadRequest, err)
		}
	}
}

type tooLargeError struct{ size, limit int64 }

func (e *tooLargeError) Error() string {
	if e.size < 0 {
		return fmt.Sprintf("request body exceeds the limit of %d bytes", e.limit)
	}
	return fmt.Sprintf("request body of %d bytes exceeds the limit of %d bytes", e.size, e.limit)
}

func errTooLarge(size, limit int64) error { return &tooLargeError{size, limit} }

// bodyErrStatus is the status for a readBody error: 413 for a body over
// the limit, 400 otherwise.
func bodyErrStatus(err error) int {
	var tl *tooLargeError
	if errors.As(err, &tl) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// requestTimeout reads the deadline from the Petrel-Timeout header and the
// OIP "timeout" parameter (microseconds, as Triton does), which the codec
// has already parsed into param (0 when absent or 0); the smaller wins.
func requestTimeout(r *http.Request, param time.Duration) (time.Duration, error) {
	var d time.Duration
	if h := r.Header.Get(HeaderTimeout); h != "" {
		if ms, err := strconv.ParseInt(h, 10, 64); err == nil {
			if ms > math.MaxInt64/int64(time.Millisecond) {
				return 0, fmt.Errorf("%w: header %s %q: too large", oip.ErrBadRequest, HeaderTimeout, h)
			}
			d = time.Duration(ms) * time.Millisecond
		} else if pd, err := time.ParseDuration(h); err == nil {
			d = pd
		} else {
			return 0, fmt.Errorf("%w: header %s %q: want a duration such as 250ms or milliseconds", oip.ErrBadRequest, HeaderTimeout, h)
		}
		if d <= 0 {
			return 0, fmt.Errorf("%w: header %s %q: must be positive", oip.ErrBadRequest, HeaderTimeout, h)
		}
	}
	if param > 0 && (d == 0 || param < d) {
		d = param
	}
	return d, nil
}

// meshHopOf checks a request's mesh framing (PETREL-FORWARD only from
// peers, hop headers only from peers and well formed) and returns its hop;
// false when it wrote the error.
func (n *Node) meshHopOf(w http.ResponseWriter, r *http.Request) (meshHop, bool) {
	var hop meshHop
	if r.Method == MethodForward {
		if _, ok := meshtls.PeerID(r.TLS); !ok {
			n.log.Warn("rejected a forwarded request from a non-peer", "remote", r.RemoteAddr)
			writeError(w, http.StatusForbidden, errForwardMethod.Error())
			return hop, false
		}
	}
	if n.fwd != nil || r.Header.Get(HeaderHops) != "" || r.Header.Get(HeaderVia) != "" {
		h, status, err := parseMeshHop(r, n.maxHops())
		if err != nil {
			n.log.Warn("rejected mesh headers", "remote", r.RemoteAddr, "err", err)
			writeError(w, status, err.Error())
			return hop, false
		}
		hop = h
	}
	return hop, true
}

// lookupFor finds the version a request for name (and ver) goes to: ver,
// or the one the traffic split gives the request's key.
func (n *Node) lookupFor(r *http.Request, name, ver string) (*version, error) {
	if ver == "" {
		return n.models.lookupKeyed(name, r.Header.Get(n.requestKeyHeader()))
	}
	return n.models.lookup(name, ver)
}

func (n *Node) handleInfer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name, ver := r.PathValue("model"), r.PathValue("version")
	hop, ok := n.meshHopOf(w, r)
	if !ok {
		return
	}
	v, err := n.lookupFor(r, name, ver)
	if err != nil && n.fwd != nil {
		if n.acq != nil && hop.hops == 0 {
			n.acq.start(name, ver) // serve it here from now on
		}
		done, body := n.forwardUnserved(w, r, name, ver, hop)
		if done {
			return
		}
		// Nobody could take it: wait for it to arrive here.
		if av, aerr := n.waitAcquired(r, name, ver); aerr == nil {
			v, err = av, nil
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
	}
	if err != nil {
		n.lookupError(w, err)
		return
	}
	n.serveVersion(w, v, start, func() (int, error) { return n.infer(w, r, v, hop) })
}

// serveVersion runs one request on version v (serve writes the success
// response and returns the status and error otherwise) and keeps the
// request figures: the in-flight gauges, the statistics endpoint's
// counters, the latency metrics and the rollout figures.
func (n *Node) serveVersion(w http.ResponseWriter, v *version, start time.Time, serve func() (int, error)) {
	n.metrics.inflight.Inc()
	n.inflight.Add(1)
	defer func() {
		n.metrics.inflight.Dec()
		n.inflight.Add(-1)
	}()
	status, err := serve()
	elapsed := time.Since(start)
	if err != nil {
		writeError(w, status, err.Error())
		v.stats.failCount.Add(1)
		v.stats.failNs.Add(int64(elapsed))
		v.failCount.Inc()
	} else {
		v.stats.successCount.Add(1)
		v.stats.successNs.Add(int64(elapsed))
		v.okCount.Inc()
	}
	v.stats.lastInference.Store(start.UnixMilli())
	v.reqLat.Observe(elapsed.Seconds())
	v.hist.observe(elapsed)
	v.requests.Add(1)
	if status >= 500 || status == http.StatusUnprocessableEntity {
		// The version's fault: it (or its transforms) failed, or it
		// refused a request that fits its signature. A 4xx for input that
		// does not fit is the client's.
		v.serverErrors.Add(1)
	}
}

// forwardUnserved forwards a request for a model this node does not
// serve. It returns false, having written nothing, and a copy of the body
// when the body is readable but nobody else can take it either; a body
// that cannot be read or decoded gets its 4xx here.
func (n *Node) forwardUnserved(w http.ResponseWriter, r *http.Request, name, ver string, hop meshHop) (bool, []byte) {
	bp := bufPool.Get().(*[]byte)
	defer putBuf(bp)
	body, err := readBody(r, (*bp)[:0], n.cfg.MaxBodyBytes)
	*bp = body[:0]
	if err != nil {
		writeError(w, bodyErrStatus(err), err.Error())
		return true, nil
	}
	req, status, err := decodeInfer(r, body, n.cfg.MaxBodyBytes)
	if err != nil {
		writeError(w, status, err.Error())
		return true, nil
	}
	done, err := n.fwd.forward(w, r, name, ver, req, hop)
	if err != nil && !done {
		writeError(w, http.StatusBadRequest, err.Error())
		return true, nil
	}
	if done {
		return true, nil
	}
	return false, bytes.Clone(body)
}

// decodeInfer decodes an inference body with its binary header length.
func decodeInfer(r *http.Request, body []byte, maxBody int64) (*oip.Request, int, error) {
	headerLen := -1
	if h := r.Header.Get("Inference-Header-Content-Length"); h != "" {
		var err error
		headerLen, err = strconv.Atoi(h)
		if err != nil || headerLen < 0 {
			return nil, http.StatusBadRequest, fmt.Errorf("Inference-Header-Content-Length %q: want a non-negative integer", h)
		}
	}
	req, err := oip.DecodeRequest(body, headerLen, oip.Limits{MaxBodyBytes: maxBody})
	if err != nil {
		if errors.Is(err, oip.ErrTooLarge) {
			return nil, http.StatusRequestEntityTooLarge, err
		}
		return nil, http.StatusBadRequest, err
	}
	return req, 0, nil
}

// infer serves one inference request. It returns the status and error to
// report, or (0, nil) once it has written a successful response.
func (n *Node) infer(w http.ResponseWriter, r *http.Request, v *version, hop meshHop) (int, error) {
	bp := bufPool.Get().(*[]byte)
	// Binary inputs alias the body. If Submit gives up early (deadline,
	// shutdown) the runtime may still be reading them, so the buffer then
	// goes to the garbage collector instead of back to the pool.
	recycle := true
	defer func() {
		if recycle {
			putBuf(bp)
		}
	}()
	body, err := readBody(r, (*bp)[:0], n.cfg.MaxBodyBytes)
	*bp = body[:0]
	if err != nil {
		return bodyErrStatus(err), err
	}
	req, status, err := decodeInfer(r, body, n.cfg.MaxBodyBytes)
	if err != nil {
		return status, err
	}
	sig := &v.manifest.Signature
	if err := checkInputs(sig, req.Inputs); err != nil {
		return http.StatusBadRequest, err
	}
	var outNames []string
	binary := make([]bool, 0, len(sig.Outputs))
	if len(req.Outputs) > 0 {
		outNames = make([]string, len(req.Outputs))
		for i, o := range req.Outputs {
			if _, ok := v.outIndex[o.Name]; !ok {
				return http.StatusBadRequest, fmt.Errorf("unknown output %q; model %q has outputs %s", o.Name, v.manifest.Name, specNames(sig.Outputs))
			}
			outNames[i] = o.Name
			// o.Binary is resolved already: the output's binary_data,
			// else the request's binary_data_output.
			binary = append(binary, o.Binary)
		}
	} else {
		for range sig.Outputs {
			binary = append(binary, req.BinaryOutput)
		}
	}
	timeout, err := requestTimeout(r, req.Timeout)
	if err != nil {
		return http.StatusBadRequest, err
	}
	ctx := r.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	var outs []models.Tensor
	var key respcache.Key
	useCache := n.cache != nil && v.config.ResponseCache
	cached := false
	if useCache {
		key = respcache.KeyFor(v.manifest.Digest, req.Inputs, outNames)
		lookup := time.Now()
		if outs, cached = n.cache.Get(key); cached {
			v.cacheHits.Inc()
			v.stats.cacheHitCount.Add(1)
			v.stats.cacheHitNs.Add(int64(time.Since(lookup)))
		} else {
			v.cacheMisses.Inc()
			v.stats.cacheMissCount.Add(1)
		}
	}
	if !cached {
		outs, err = v.sched.Submit(ctx, &sched.Request{Inputs: req.Inputs, Outputs: outNames})
		if err != nil {
			recycle = false
			if n.fwd != nil && (errors.Is(err, sched.ErrQueueFull) || errors.Is(err, sched.ErrClosed)) {
				// Busy or going away here: a peer may have room.
				if done, ferr := n.fwd.forward(w, r, v.manifest.Name, r.PathValue("version"), req, hop); done {
					return 0, ferr
				}
			}
			return n.submitError(w, v, err)
		}
		if useCache {
			n.cache.Put(key, outs)
		}
		if sv := n.models.shadowOf(v, r.Header.Get(n.requestKeyHeader())); sv != nil {
			n.mirror(sv, v, req.Inputs, outNames, outs)
		}
	}

	if n.fb != nil { // drift, and inputs kept for a label that may come later
		n.fb.afterInfer(v, req, outs)
	}
	// Not confident: the central model's answer instead (escalate.go).
	if v.config.Escalation != nil && n.escalate(ctx, w, r, v, req, outs, hop) {
		return 0, nil
	}

	resp := oip.Response{ModelName: v.manifest.Name, ModelVersion: v.manifest.Version, ID: req.ID, Outputs: outs}
	rp := bufPool.Get().(*[]byte)
	defer putBuf(rp)
	out, jsonLen, err := oip.AppendResponse((*rp)[:0], &resp, binary)
	*rp = out[:0]
	if err != nil {
		return http.StatusInternalServerError, fmt.Errorf("encode response: %w", err)
	}
	h := w.Header()
	if jsonLen < len(out) {
		h["Content-Type"] = hdrBinary
		h["Inference-Header-Content-Length"] = []string{strconv.Itoa(jsonLen)}
	} else {
		h["Content-Type"] = hdrJSON
	}
	if cached {
		h[HeaderCache] = hdrHit
	}
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	w.WriteHeader(http.StatusOK)
	w.Write(out)
	return 0, nil
}

func (n *Node) submitError(w http.ResponseWriter, v *version, err error) (int, error) {
	switch {
	case errors.Is(err, sched.ErrQueueFull):
		ra := v.sched.RetryAfter()
		secs := int(math.Ceil(ra.Seconds()))
		if secs < 1 {
			secs = 1
		}
		w.Header()["Retry-After"] = []string{strconv.Itoa(secs)}
		return http.StatusTooManyRequests, err
	case errors.Is(err, sched.ErrClosed):
		w.Header()["Retry-After"] = []string{"1"}
		return http.StatusServiceUnavailable, err
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, fmt.Errorf("request deadline exceeded: %w", err)
	case errors.Is(err, context.Canceled):
		return 499, err // client went away; nobody reads this
	case errors.Is(err, sched.ErrInvalidRequest), errors.Is(err, ort.ErrInvalidInput), errors.Is(err, models.ErrUnsupportedDataType):
		return http.StatusBadRequest, err
	case errors.Is(err, sched.ErrOutputMismatch), errors.Is(err, errPipelineMismatch):
		return http.StatusInternalServerError, err
	case errors.Is(err, ErrModelNotFound), errors.Is(err, ErrVersionNotFound), errors.Is(err, ErrModelNotReady):
		// A pipeline step is gone or not ready (pipeline.go).
		w.Header()["Retry-After"] = []string{"1"}
		return http.StatusServiceUnavailable, err
	default:
		// The runtime refused a request that matched the signature: most
		// often a dynamic shape the graph cannot take. That is the
		// client's input, so it is a 4xx with the runtime's reason.
		return http.StatusUnprocessableEntity, fmt.Errorf("model rejected the request: %w", err)
	}
}

// checkInputs validates request inputs against the signature: every input
// known and present once, datatype and shape accepted, data consistent.
func checkInputs(sig *models.Signature, ins []models.Tensor) error {
	if len(ins) != len(sig.Inputs) {
		for _, s := range sig.Inputs {
			found := false
			for _, in := range ins {
				if in.Name == s.Name {
					found = true
					break
				}
			}
			if !found {
				return fmt.Errorf("missing input %q; model inputs are %s", s.Name, specNames(sig.Inputs))
			}
		}
	}
	for i := range ins {
		in := &ins[i]
		spec, ok := sig.Input(in.Name)
		if !ok {
			return fmt.Errorf("unknown input %q; model inputs are %s", in.Name, specNames(sig.Inputs))
		}
		if err := spec.Accepts(in.DataType, in.Shape); err != nil {
			return err
		}
		for j := range i {
			if ins[j].Name == in.Name {
				return fmt.Errorf("input %q given twice", in.Name)
			}
		}
		if err := in.Validate(); err != nil {
			return err
		}
	}
	return nil
}

func specNames(s []models.TensorSpec) string {
	names := make([]string, len(s))
	for i, t := range s {
		names[i] = strconv.Quote(t.Name)
	}
	return "[" + strings.Join(names, ", ") + "]"
}

type statDuration struct {
	Count int64 `json:"count"`
	Ns    int64 `json:"ns"`
}

func (n *Node) handleStats(w http.ResponseWriter, r *http.Request) {
	name, ver := r.PathValue("model"), r.PathValue("version")
	n.models.mu.RLock()
	var rows []map[string]any
	for mname, e := range n.models.models {
		if name != "" && mname != name {
			continue
		}
		for vname, v := range e.versions {
			if ver != "" && vname != ver {
				continue
			}
			s := v.stats
			rows = append(rows, map[string]any{
				"name": mname, "version": vname,
				"last_inference":  s.lastInference.Load(),
				"inference_count": s.inferenceCount.Load(),
				"execution_count": s.executionCount.Load(),
				"inference_stats": map[string]statDuration{
					"success":       {s.successCount.Load(), s.successNs.Load()},
					"fail":          {s.failCount.Load(), s.failNs.Load()},
					"queue":         {s.queueCount.Load(), s.queueNs.Load()},
					"compute_infer": {s.computeCount.Load(), s.computeNs.Load()},
					"cache_hit":     {s.cacheHitCount.Load(), s.cacheHitNs.Load()},
					"cache_miss":    {s.cacheMissCount.Load(), 0},
				},
				"queue_length":       v.sched.QueueLen(),
				"in_flight":          v.sched.InFlight(),
				"execution_provider": v.session.Provider(),
			})
		}
	}
	n.models.mu.RUnlock()
	if name != "" && len(rows) == 0 {
		if _, err := n.models.lookup(name, ver); err != nil {
			n.lookupError(w, err)
			return
		}
	}
	if rows == nil {
		rows = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_stats": rows})
}

func (n *Node) handleIndex(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Ready bool `json:"ready"`
	}
	if r.Method == http.MethodPost {
		b, err := io.ReadAll(io.LimitReader(r.Body, 4096+1))
		if err != nil || len(b) > 4096 {
			writeError(w, http.StatusBadRequest, "repository index request body must be a small JSON object")
			return
		}
		if len(strings.TrimSpace(string(b))) > 0 {
			dec := json.NewDecoder(strings.NewReader(string(b)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil {
				writeError(w, http.StatusBadRequest, "repository index request: "+err.Error())
				return
			}
		}
	} else if r.URL.Query().Get("ready") == "true" {
		body.Ready = true
	}
	idx, err := n.models.index(body.Ready)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if idx == nil {
		idx = []IndexEntry{}
	}
	writeJSON(w, http.StatusOK, idx)
}

func (n *Node) handleLoad(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("model")
	if err := n.models.load(r.Context(), name); err != nil {
		if errors.Is(err, ErrModelNotFound) {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		// The model is in the repository but does not load: its files or
		// config are wrong, which is the caller's to fix.
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "state": StateReady})
}

func (n *Node) handleUnload(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("model")
	if err := n.models.unload(r.Context(), name); err != nil {
		n.lookupError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "state": StateUnavailable})
}
