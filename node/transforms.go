package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/models/wasm"
	"github.com/petrel-mesh/petrel/node/sched"
)

// Transform stages, as metrics and errors name them.
const (
	stagePre  = "pre"
	stagePost = "post"
)

// Repository file names of a version's transforms.
const (
	preWasmFile  = "pre.wasm"
	postWasmFile = "post.wasm"
)

// transformSet is a version's compiled WebAssembly transforms. Either
// module may be nil: without pre the version has no /predict; without
// post /predict answers with the OIP JSON of the outputs.
type transformSet struct {
	spec      models.Transforms
	pre, post *wasm.Module
}

func (t *transformSet) close(ctx context.Context) {
	if t == nil {
		return
	}
	for _, m := range []*wasm.Module{t.pre, t.post} {
		if m != nil {
			_ = m.Close(ctx)
		}
	}
}

// transformCacheDir is where compiled modules are cached (see
// Config.TransformCacheDir).
func (n *Node) transformCacheDir() string {
	if d := n.cfg.TransformCacheDir; d != "" {
		return d
	}
	if n.cfg.Mesh.Enabled && n.cfg.Mesh.BlobDir != "" {
		return filepath.Join(n.cfg.Mesh.BlobDir, "wasm-cache")
	}
	return filepath.Join(os.TempDir(), "petrel-"+n.cfg.ID+"-wasm")
}

// transformRuntime returns the node's WebAssembly runtime, creating it on
// first use: a node whose models carry no transforms never pays for one.
// It is closed by closeTransformRuntime at shutdown.
func (n *Node) transformRuntime(ctx context.Context) (*wasm.Runtime, error) {
	n.wasmMu.Lock()
	defer n.wasmMu.Unlock()
	if n.wasmRT != nil {
		return n.wasmRT, nil
	}
	if n.wasmClosed {
		return nil, errors.New("transform runtime: the node is shutting down")
	}
	dir := n.transformCacheDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("transform compilation cache %s: %w", dir, err)
	}
	rt, err := wasm.NewRuntime(ctx, wasm.Options{CacheDir: dir, CallTimeout: n.cfg.TransformTimeout})
	if err != nil {
		return nil, fmt.Errorf("transform runtime: %w", err)
	}
	n.wasmRT = rt
	return rt, nil
}

// closeTransformRuntime releases the runtime after every version (and so
// every module) is closed.
func (n *Node) closeTransformRuntime(ctx context.Context) {
	n.wasmMu.Lock()
	defer n.wasmMu.Unlock()
	n.wasmClosed = true
	if n.wasmRT != nil {
		if err := n.wasmRT.Close(ctx); err != nil {
			n.log.Warn("transform runtime close", "err", err)
		}
		n.wasmRT = nil
	}
}

// compileTransforms verifies each module against its digest and size in
// spec and compiles it with its grants. pre and post must be given
// exactly when spec names them.
func (n *Node) compileTransforms(ctx context.Context, spec *models.Transforms, pre, post []byte) (*transformSet, error) {
	if spec == nil {
		return nil, nil
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	rt, err := n.transformRuntime(ctx)
	if err != nil {
		return nil, err
	}
	ts := &transformSet{spec: *spec}
	for _, s := range []struct {
		stage string
		t     *models.Transform
		b     []byte
		dst   **wasm.Module
	}{{stagePre, spec.Pre, pre, &ts.pre}, {stagePost, spec.Post, post, &ts.post}} {
		if s.t == nil {
			continue
		}
		if int64(len(s.b)) != s.t.Size {
			ts.close(ctx)
			return nil, fmt.Errorf("%s transform: %d bytes, manifest says %d", s.stage, len(s.b), s.t.Size)
		}
		if got := models.DigestBytes(s.b); got != s.t.Digest {
			ts.close(ctx)
			return nil, fmt.Errorf("%s transform: digest %s does not match the manifest's %s", s.stage, got, s.t.Digest)
		}
		mod, err := rt.Compile(ctx, s.b, wasm.Grants{Clock: s.t.Has(models.GrantClock), Random: s.t.Has(models.GrantRandom)})
		if err != nil {
			ts.close(ctx)
			return nil, fmt.Errorf("%s transform: %w", s.stage, err)
		}
		*s.dst = mod
	}
	return ts, nil
}

// readRepoTransforms reads <version dir>/pre.wasm and post.wasm, if
// present, and describes them with the grants of the model's config. It
// returns a nil spec when the version has neither.
func readRepoTransforms(rm *repoModel, rv repoVersion) (*models.Transforms, []byte, []byte, error) {
	if rv.Path == "" {
		return nil, nil, nil, nil
	}
	dir := filepath.Dir(rv.Path)
	var grants map[string][]string
	if rm.Config.Transforms != nil {
		grants = rm.Config.Transforms.Grants
	}
	spec := &models.Transforms{}
	var bodies [2][]byte
	for i, f := range []struct {
		stage, file string
		dst         **models.Transform
	}{{stagePre, preWasmFile, &spec.Pre}, {stagePost, postWasmFile, &spec.Post}} {
		p := filepath.Join(dir, f.file)
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		where := filepath.Join(rm.Name, rv.Version, f.file) // never the absolute path in API answers
		if err != nil {
			return nil, nil, nil, fmt.Errorf("model %q version %s: %s: %w", rm.Name, rv.Version, where, unwrapPath(err))
		}
		if !st.Mode().IsRegular() {
			return nil, nil, nil, fmt.Errorf("model %q version %s: %s is not a regular file", rm.Name, rv.Version, where)
		}
		if st.Size() > models.MaxTransformBytes {
			return nil, nil, nil, fmt.Errorf("model %q version %s: %s is %d bytes, the limit is %d", rm.Name, rv.Version, where, st.Size(), models.MaxTransformBytes)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("model %q version %s: read %s: %w", rm.Name, rv.Version, where, unwrapPath(err))
		}
		bodies[i] = b
		*f.dst = &models.Transform{Digest: models.DigestBytes(b), Size: int64(len(b)), Grants: grants[f.stage]}
	}
	if spec.Pre == nil && spec.Post == nil {
		return nil, nil, nil, nil
	}
	return spec, bodies[0], bodies[1], nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// attachRepoTransforms compiles a repository version's transforms, if it
// has any, and attaches them to v (manifest included).
func (m *manager) attachRepoTransforms(ctx context.Context, rm *repoModel, rv repoVersion, v *version) error {
	spec, pre, post, err := readRepoTransforms(rm, rv)
	if err != nil || spec == nil {
		return err
	}
	ts, err := m.n.compileTransforms(ctx, spec, pre, post)
	if err != nil {
		return fmt.Errorf("model %q version %s: %w", rm.Name, rv.Version, err)
	}
	v.transforms = ts
	v.manifest.Transforms = &ts.spec
	return nil
}

// handlePredict serves POST /v2/models/{model}[/versions/{version}]/predict:
// the raw body goes through the version's pre transform, the model and
// its post transform. Traffic splits apply as for /infer. A mesh node that
// does not serve the model forwards the request as it came to a peer that
// does, or to the fallback tier (it does not acquire the model: a version
// fetched from a peer carries no transforms). Requests are not mirrored to
// a shadow version.
func (n *Node) handlePredict(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name, ver := r.PathValue("model"), r.PathValue("version")
	hop, ok := n.meshHopOf(w, r)
	if !ok {
		return
	}
	v, err := n.lookupFor(r, name, ver)
	if err != nil && n.fwd != nil {
		body, rerr := readBody(r, nil, n.cfg.MaxBodyBytes)
		if rerr != nil {
			writeError(w, bodyErrStatus(rerr), rerr.Error())
			return
		}
		done, ferr := n.fwd.forwardPredict(w, r, name, ver, body, hop)
		if ferr != nil && !done {
			writeError(w, http.StatusBadRequest, ferr.Error())
			return
		}
		if done {
			return
		}
	}
	if err != nil {
		n.lookupError(w, err)
		return
	}
	n.serveVersion(w, v, start, func() (int, error) { return n.predict(w, r, v) })
}

// errNoPre answers /predict for a version without a pre transform.
var errNoPre = errors.New("has no pre-processing transform, so it has no /predict; send OIP tensors to /infer")

func (n *Node) predict(w http.ResponseWriter, r *http.Request, v *version) (int, error) {
	ts := v.transforms
	if ts == nil || ts.pre == nil {
		return http.StatusNotFound, fmt.Errorf("model %q version %s %w", v.manifest.Name, v.manifest.Version, errNoPre)
	}
	body, err := readBody(r, nil, n.cfg.MaxBodyBytes)
	if err != nil {
		return bodyErrStatus(err), err
	}
	timeout, err := requestTimeout(r, 0)
	if err != nil {
		return http.StatusBadRequest, err
	}
	ctx := r.Context()
	if timeout == 0 && v.schedCfg.DefaultTimeout > 0 {
		timeout = v.schedCfg.DefaultTimeout // the whole request, transforms included
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	name := v.manifest.Name

	t0 := time.Now()
	ins, err := ts.pre.Pre(ctx, r.Header.Get("Content-Type"), body)
	n.metrics.transformLat.WithLabelValues(name, stagePre).Observe(time.Since(t0).Seconds())
	if err != nil {
		return n.transformError(ctx, name, stagePre, err)
	}
	if err := checkInputs(&v.manifest.Signature, ins); err != nil {
		n.metrics.transformErrs.WithLabelValues(name, stagePre, "unfit").Inc()
		return http.StatusBadRequest, fmt.Errorf("pre-processing produced inputs that do not fit the model: %w", err)
	}
	outs, err := v.sched.Submit(ctx, &sched.Request{Inputs: ins})
	if err != nil {
		return n.submitError(w, v, err)
	}
	if ts.post == nil { // documented: the outputs as OIP JSON
		resp := oip.Response{ModelName: name, ModelVersion: v.manifest.Version, Outputs: outs}
		out, _, err := oip.AppendResponse(nil, &resp, make([]bool, len(outs)))
		if err != nil {
			return http.StatusInternalServerError, fmt.Errorf("encode response: %w", err)
		}
		writeBody(w, "application/json", out)
		return 0, nil
	}
	t1 := time.Now()
	ct, out, err := ts.post.Post(ctx, outs, r.Header.Get("Accept"))
	n.metrics.transformLat.WithLabelValues(name, stagePost).Observe(time.Since(t1).Seconds())
	if err != nil {
		return n.transformError(ctx, name, stagePost, err)
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	writeBody(w, ct, out)
	return 0, nil
}

func writeBody(w http.ResponseWriter, contentType string, b []byte) {
	h := w.Header()
	h["Content-Type"] = []string{contentType}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// transformError maps a transform's failure to a status (wasm.HTTPStatus),
// counts it and says which stage failed. A guest that refuses its input
// is the client's 400 with the guest's message; a body too large for the
// sandbox is a 413; a guest that runs out of time is a 504; one that
// traps, exhausts its memory or produces too much is a 500. None of them
// affects the node or other requests.
func (n *Node) transformError(ctx context.Context, model, stage string, err error) (int, error) {
	status := wasm.HTTPStatus(err)
	kind := "other"
	msg := fmt.Errorf("%s transform failed: %w", stage, err)
	switch {
	case errors.Is(err, wasm.ErrClientInput):
		kind = "client"
		msg = fmt.Errorf("%s transform refused the request: %w", stage, err)
	case errors.Is(err, wasm.ErrInputTooLarge):
		kind = "input_too_large"
		msg = fmt.Errorf("%s transform: %w", stage, err)
	case errors.Is(err, wasm.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		kind, status = "timeout", http.StatusGatewayTimeout
		msg = fmt.Errorf("%s transform did not finish in time: %w", stage, err)
	case errors.Is(ctx.Err(), context.Canceled):
		kind, status = "canceled", 499 // the client went away; nobody reads this
	case errors.Is(err, wasm.ErrClosed):
		kind = "closed"
	case errors.Is(err, wasm.ErrTrap):
		kind = "trap"
	case errors.Is(err, wasm.ErrOutOfMemory):
		kind = "oom"
	case errors.Is(err, wasm.ErrTooLarge):
		kind = "too_large"
	}
	n.metrics.transformErrs.WithLabelValues(model, stage, kind).Inc()
	if status >= 500 {
		n.log.Warn("transform failed", "model", model, "stage", stage, "kind", kind, "err", err)
	}
	return status, msg
}
