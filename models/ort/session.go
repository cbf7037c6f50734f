package ort

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/petrel-mesh/petrel/models"
	onnx "github.com/yalue/onnxruntime_go"
)

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("ort: session closed")

var _ models.Session = (*Session)(nil)

// Session is a model loaded into ONNX Runtime. Run is safe for concurrent
// use; Close waits for runs in flight.
type Session struct {
	mu   sync.RWMutex // Run holds it shared, Close exclusively
	sess *onnx.DynamicAdvancedSession

	in, out       []ioSpec // signature order
	inIdx, outIdx map[string]int
	inList        string // "a, b" for error messages
	outList       string // likewise
	// sessOut maps the session's output positions to indices in out:
	// outputs of declared rank come first, so that when onnxruntime_go
	// fails to convert one of undeclared rank (and leaks the values after
	// it) only others of undeclared rank are affected.
	sessOut []int
	allOut  []int // 0..len(out)-1
	// shapes holds, per output, the shape to preallocate: the declared one
	// when it is fully known (and the datatype is not BYTES), nil otherwise.
	shapes [][]int64
	// resolve holds, per FP16/BF16 output with dynamic dimensions, where
	// each dimension comes from; nil for the other outputs.
	resolve    [][]dimSrc
	hasResolve bool
	sig        models.Signature
	provider   string
	note       string
	// runOpts is a free list of RunOptions, so that a cancellable run does
	// not create and destroy one through cgo each time.
	runOpts chan *onnx.RunOptions
	// vals recycles input and output values of recently seen shapes.
	vals *valueCache
}

// dimSrc is where a dimension of an output comes from: a fixed value
// (input < 0) or dimension dim of input number input.
type dimSrc struct {
	input, dim int
	value      int64
}

// Load creates a session from ONNX model bytes. Init must have succeeded.
// The signature comes from the graph's declared inputs (less those fed by
// initializers) and outputs: datatypes in OIP spelling, -1 for symbolic or
// unknown dimensions, and a nil Shape when the model does not declare a
// rank (Run then accepts any rank there).
//
// Load fails with ErrInvalidModel for bytes ONNX Runtime cannot load, and
// with models.ErrUnsupportedDataType for what onnxruntime_go cannot carry:
// non-tensor inputs or outputs, element types outside the OIP table
// (complex, float8, int4), rank-0 FP16/BF16 tensors and rank-0 BYTES
// inputs, and FP16/BF16 outputs whose shape is not known before a run
// (every dimension must be fixed or share its symbolic name with an input
// dimension).
func Load(model []byte, opts Options) (*Session, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if !initialized() {
		return nil, ErrNotInitialized
	}
	in, out, err := parseSignature(model)
	if err != nil {
		return nil, err
	}
	s := &Session{
		in:      in,
		out:     out,
		inIdx:   make(map[string]int, len(in)),
		outIdx:  make(map[string]int, len(out)),
		allOut:  make([]int, len(out)),
		shapes:  make([][]int64, len(out)),
		resolve: make([][]dimSrc, len(out)),
		sig:     signatureOf(in, out),
		runOpts: make(chan *onnx.RunOptions, 16),
		vals:    newValueCache(valueCacheBytes),
	}
	inNames := make([]string, len(in))
	params := map[string]dimSrc{}
	for i, sp := range in {
		if sp.Shape != nil && len(sp.Shape) == 0 && (isHalf(sp.DataType) || sp.DataType == models.Bytes) {
			return nil, fmt.Errorf("ort: input %q: rank-0 %s tensors: %w", sp.Name, sp.DataType, models.ErrUnsupportedDataType)
		}
		inNames[i] = sp.Name
		s.inIdx[sp.Name] = i
		for d, p := range sp.params {
			if _, seen := params[p]; p != "" && !seen {
				params[p] = dimSrc{input: i, dim: d}
			}
		}
	}
	outNames := make([]string, 0, len(out))
	for i, sp := range out {
		if sp.Shape != nil && len(sp.Shape) == 0 && isHalf(sp.DataType) {
			return nil, fmt.Errorf("ort: output %q: rank-0 %s tensors: %w", sp.Name, sp.DataType, models.ErrUnsupportedDataType)
		}
		s.outIdx[sp.Name] = i
		s.allOut[i] = i
		if sp.Shape != nil {
			s.sessOut = append(s.sessOut, i)
			outNames = append(outNames, sp.Name)
		}
		switch {
		case sp.static && sp.DataType != models.Bytes:
			s.shapes[i] = sp.Shape
		case !sp.static && isHalf(sp.DataType):
			if s.resolve[i], err = resolveDims(sp, params); err != nil {
				return nil, err
			}
			s.hasResolve = true
		case !sp.static && sp.DataType != models.Bytes && sp.Shape != nil && len(sp.Shape) > 0:
			// Preallocating saves the library's copy of the output (a
			// batched output is the common case: [batch, k] with batch an
			// input dimension). If the graph's real output shape differs
			// from the declared one, ONNX Runtime refuses the run with a
			// shape error rather than writing past the buffer.
			if r, err := resolveDims(sp, params); err == nil {
				s.resolve[i] = r
				s.hasResolve = true
			}
		}
	}
	for i, sp := range out {
		if sp.Shape == nil {
			s.sessOut = append(s.sessOut, i)
			outNames = append(outNames, sp.Name)
		}
	}
	s.inList = strings.Join(inNames, ", ")
	names := make([]string, len(out))
	for i, sp := range out {
		names[i] = sp.Name
	}
	s.outList = strings.Join(names, ", ")
	s.sess, s.provider, s.note, err = newSession(model, inNames, outNames, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// resolveDims works out where each dimension of a dynamically shaped
// FP16/BF16 output will come from. onnxruntime_go cannot return such
// outputs when it allocates them (it copies one byte per element), so they
// are preallocated, which needs the shape before the run.
func resolveDims(sp ioSpec, params map[string]dimSrc) ([]dimSrc, error) {
	fail := func(why string) error {
		return fmt.Errorf("ort: output %q: %s %s: %w (onnxruntime_go returns %s outputs correctly only when their shape is known before the run: fixed dimensions, or symbolic ones named like an input's)",
			sp.Name, sp.DataType, why, models.ErrUnsupportedDataType, sp.DataType)
	}
	if sp.Shape == nil {
		return nil, fail("of undeclared shape")
	}
	srcs := make([]dimSrc, len(sp.Shape))
	for d, v := range sp.Shape {
		if v >= 0 {
			srcs[d] = dimSrc{input: -1, value: v}
			continue
		}
		src, ok := params[sp.params[d]]
		if sp.params[d] == "" || !ok {
			return nil, fail(fmt.Sprintf("dimension %d (%q) is not an input dimension", d, sp.params[d]))
		}
		srcs[d] = src
	}
	return srcs, nil
}

// newSession creates the ONNX Runtime session, with the CUDA provider when
// asked for and available, falling back to the CPU unless opts require it.
func newSession(model []byte, inNames, outNames []string, opts Options) (sess *onnx.DynamicAdvancedSession, provider, note string, err error) {
	create := func(cuda bool) (*onnx.DynamicAdvancedSession, error) {
		so, err := opts.sessionOptions()
		if err != nil {
			return nil, err
		}
		defer so.Destroy()
		if cuda {
			if err := opts.appendCUDA(so); err != nil {
				return nil, fmt.Errorf("%w: cuda: %w", ErrProviderUnavailable, err)
			}
		}
		sess, err := onnx.NewDynamicAdvancedSessionWithONNXData(model, inNames, outNames, so)
		if err != nil {
			if cuda {
				// The CUDA provider is created with the session (a missing
				// device, a driver or memory problem shows here); whether the
				// model itself is at fault is told by the CPU attempt below.
				return nil, fmt.Errorf("%w: cuda: %w", ErrProviderUnavailable, err)
			}
			return nil, fmt.Errorf("%w: %w", ErrInvalidModel, err)
		}
		return sess, nil
	}
	if opts.provider() == ProviderCUDA {
		sess, cudaErr := create(true)
		if cudaErr == nil {
			return sess, ProviderCUDA, "", nil
		}
		// Tell a model the CPU cannot load either from a CUDA problem.
		sess, err := create(false)
		if err != nil {
			return nil, "", "", err
		}
		if opts.RequireProvider {
			sess.Destroy()
			if !errors.Is(cudaErr, ErrProviderUnavailable) {
				// The CPU loads the model, so it is not invalid.
				cudaErr = fmt.Errorf("%w: cuda: %v", ErrProviderUnavailable, cudaErr)
			}
			return nil, "", "", cudaErr
		}
		return sess, ProviderCPU, fmt.Sprintf("cuda requested but unavailable, running on cpu: %v", cudaErr), nil
	}
	sess, err = create(false)
	return sess, ProviderCPU, "", err
}

// LoadFile reads an ONNX model file and loads it.
func LoadFile(path string, opts Options) (*Session, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ort: %w", err)
	}
	s, err := Load(b, opts)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return s, nil
}

// Inspect returns the signature Load would give the model, after checking
// that ONNX Runtime can load it, without keeping a session. Init must have
// succeeded.
func Inspect(model []byte) (models.Signature, error) {
	s, err := Load(model, Options{GraphOptimization: OptimizeDisable})
	if err != nil {
		return models.Signature{}, err
	}
	defer s.Close()
	return s.sig, nil
}

// Signature returns a copy of the model's inputs and outputs.
func (s *Session) Signature() models.Signature {
	return signatureOf(s.in, s.out)
}

// Provider returns the execution provider in use: "cpu" or "cuda".
func (s *Session) Provider() string { return s.provider }

// ProviderNote says why the session runs on another provider than the one
// asked for, or "" when it does not.
func (s *Session) ProviderNote() string { return s.note }

// Close releases the session. It waits for runs in flight, and is
// idempotent.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return nil
	}
	s.vals.close()
	err := s.sess.Destroy()
	s.sess = nil
	for {
		select {
		case ro := <-s.runOpts:
			ro.Destroy()
			continue
		default:
		}
		break
	}
	if err != nil {
		return fmt.Errorf("ort: close session: %w", err)
	}
	return nil
}

// Run runs the model. inputs must hold every model input exactly once, in
// any order; outputs names the outputs to return, in that order (nil means
// all, in signature order). Every input is checked against the signature
// (datatype, rank, fixed dimensions, data length) before ONNX Runtime sees
// it; those errors, and unknown output names, wrap ErrInvalidInput.
//
// Input data is handed to ONNX Runtime in place (copied only when it is not
// aligned to its element size), and must not change until Run returns.
// Outputs whose shape is known before the run are written by ONNX Runtime
// straight into the returned Data; the others are copied once. All outputs
// are computed whichever are asked for.
//
// When ctx is done before Run starts, Run returns ctx.Err(); when it is
// done during the run, ONNX Runtime is told to stop and Run returns an
// error wrapping ctx.Err().
func (s *Session) Run(ctx context.Context, inputs []models.Tensor, outputs []string) ([]models.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	want, err := s.outputIndices(outputs)
	if err != nil {
		return nil, err
	}
	order, err := s.checkInputs(inputs)
	if err != nil {
		return nil, err
	}
	shapes := s.shapes
	if s.hasResolve {
		shapes = append([][]int64{}, shapes...)
		for i, srcs := range s.resolve {
			if srcs == nil {
				continue
			}
			sh := make([]int64, len(srcs))
			for d, src := range srcs {
				if src.input < 0 {
					sh[d] = src.value
				} else {
					sh[d] = inputs[order[src.input]].Shape[src.dim]
				}
			}
			shapes[i] = sh
		}
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.sess == nil {
		return nil, ErrClosed
	}
	vals := make([]onnx.Value, len(s.in))
	defer destroyAll(vals)
	for i, j := range order {
		t := &inputs[j]
		if k, n, ok := cacheKey(t.DataType, s.in[i].ortType, t.Shape); ok {
			v, err := s.vals.get(k, n)
			if err != nil {
				return nil, fmt.Errorf("ort: input %q: %w", t.Name, err)
			}
			copy(v.GetData(), t.Data)
			vals[i] = v
			defer func() {
				vals[i] = nil // not for destroyAll
				s.vals.put(k, v)
			}()
			continue
		}
		if vals[i], err = newInputValue(t, &s.in[i]); err != nil {
			return nil, err
		}
	}
	res, err := s.run(ctx, vals, shapes, want)
	runtime.KeepAlive(inputs)
	return res, err
}

// run runs the session once and returns the outputs listed in want (the
// others are computed anyway, and dropped). shapes gives the outputs to
// preallocate.
func (s *Session) run(ctx context.Context, in []onnx.Value, shapes [][]int64, want []int) ([]models.Tensor, error) {
	outVals := make([]onnx.Value, len(s.out)) // by session position
	defer destroyAll(outVals)
	var recycled []recycledVal
	// Runs before destroyAll (deferred later): recycled values go back to
	// the cache instead of being destroyed.
	defer func() {
		for _, r := range recycled {
			outVals[r.pos] = nil
			s.vals.put(r.k, r.v)
		}
	}()
	prealloc := make([][]byte, len(s.out)) // by output index
	for pos, i := range s.sessOut {
		sh := shapes[i]
		if sh == nil {
			continue
		}
		sp := &s.out[i]
		var (
			v   onnx.Value
			err error
		)
		switch n, _ := models.ByteSize(sp.DataType, sh); {
		case len(sh) == 0:
			v, err = newEmptyScalar(sp.DataType)
		case n == 0:
			prealloc[i] = []byte{}
			v, err = onnx.NewCustomDataTensor(onnx.Shape(sh), dummy, sp.ortType)
		default:
			if k, nb, ok := cacheKey(sp.DataType, sp.ortType, sh); ok {
				cv, cerr := s.vals.get(k, nb)
				if cerr == nil {
					// Its data is copied out after the run, and the value
					// goes back to the cache (see the deferred put below).
					prealloc[i] = cv.GetData()
					recycled = append(recycled, recycledVal{pos, k, cv})
				}
				v, err = cv, cerr
				break
			}
			prealloc[i] = alignedBytes(int(n))
			v, err = onnx.NewCustomDataTensor(onnx.Shape(sh), prealloc[i], sp.ortType)
		}
		if err != nil {
			return nil, fmt.Errorf("ort: output %q: preallocate %v: %w", sp.Name, sh, err)
		}
		outVals[pos] = v
	}

	var ro *onnx.RunOptions
	if ctx.Done() != nil {
		var err error
		if ro, err = s.getRunOptions(); err != nil {
			return nil, fmt.Errorf("ort: run options: %w", err)
		}
		stopped := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(stopped)
			ro.Terminate()
		})
		defer func() {
			if stop() {
				s.putRunOptions(ro) // never terminated: reusable as is
				return
			}
			<-stopped // Terminate ran; this one is spent
			ro.Destroy()
		}()
	}
	if err := s.sess.RunWithOptions(in, outVals, ro); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ort: run cancelled: %w", ctx.Err())
		}
		if errors.Is(err, onnx.ZeroShapeLengthError) {
			return nil, fmt.Errorf("ort: run: an output of undeclared rank came back as a scalar, which onnxruntime_go cannot convert (declare the output's shape in the model): %w: %w", models.ErrUnsupportedDataType, err)
		}
		return nil, fmt.Errorf("ort: run: %w", err)
	}

	all := make([]models.Tensor, len(s.out))
	wanted := make([]bool, len(s.out))
	for _, i := range want {
		wanted[i] = true
	}
	for pos, i := range s.sessOut {
		if !wanted[i] {
			continue // destroyed by the deferred destroyAll
		}
		sp := &s.out[i]
		v := outVals[pos]
		outVals[pos] = nil // each branch below destroys v
		sh := shapes[i]
		switch {
		case sh != nil && len(sh) == 0:
			b, err := fromScalar(v)
			if err != nil {
				return nil, fmt.Errorf("ort: output %q: %w", sp.Name, err)
			}
			all[i] = models.Tensor{Name: sp.Name, DataType: sp.DataType, Shape: []int64{}, Data: b}
		case sh != nil:
			data := prealloc[i]
			if isRecycled(recycled, pos) {
				data = append(alignedBytes(len(data))[:0], data...)
			} else {
				v.Destroy()
			}
			all[i] = models.Tensor{Name: sp.Name, DataType: sp.DataType, Shape: append([]int64{}, sh...), Data: data}
		default:
			t, err := fromValue(v, sp)
			if err != nil {
				return nil, err
			}
			all[i] = t
		}
	}
	res := make([]models.Tensor, len(want))
	for k, i := range want {
		res[k] = all[i]
	}
	return res, nil
}

// recycledVal is an output value borrowed from the value cache for a run.
type recycledVal struct {
	pos int
	k   valueKey
	v   *onnx.CustomDataTensor
}

func isRecycled(r []recycledVal, pos int) bool {
	for _, x := range r {
		if x.pos == pos {
			return true
		}
	}
	return false
}

// valueCacheBytes bounds each session's value cache.
const valueCacheBytes = 4 << 20

func (s *Session) getRunOptions() (*onnx.RunOptions, error) {
	select {
	case ro := <-s.runOpts:
		return ro, nil
	default:
		return onnx.NewRunOptions()
	}
}

// putRunOptions keeps ro for reuse, or destroys it when the free list is
// full. Called under s.mu (shared), so Close cannot run concurrently.
func (s *Session) putRunOptions(ro *onnx.RunOptions) {
	select {
	case s.runOpts <- ro:
	default:
		ro.Destroy()
	}
}

// outputIndices maps requested output names to indices; nil means all.
func (s *Session) outputIndices(names []string) ([]int, error) {
	if names == nil {
		return s.allOut, nil // read-only
	}
	idx := make([]int, len(names))
	for k, name := range names {
		i, ok := s.outIdx[name]
		if !ok {
			return nil, fmt.Errorf("%w: unknown output %q (model outputs: %s)", ErrInvalidInput, name, s.outList)
		}
		for _, prev := range idx[:k] {
			if prev == i {
				return nil, fmt.Errorf("%w: output %q requested twice", ErrInvalidInput, name)
			}
		}
		idx[k] = i
	}
	return idx, nil
}

// checkInputs validates the inputs against the signature and returns, for
// each model input in session order, the index of the tensor feeding it.
func (s *Session) checkInputs(inputs []models.Tensor) ([]int, error) {
	order := make([]int, len(s.in))
	for i := range order {
		order[i] = -1
	}
	for j := range inputs {
		t := &inputs[j]
		i, ok := s.inIdx[t.Name]
		if !ok {
			return nil, fmt.Errorf("%w: unknown input %q (model inputs: %s)", ErrInvalidInput, t.Name, s.inList)
		}
		if order[i] >= 0 {
			return nil, fmt.Errorf("%w: input %q given twice", ErrInvalidInput, t.Name)
		}
		order[i] = j
		sp := &s.in[i]
		if sp.Shape != nil {
			if err := sp.Accepts(t.DataType, t.Shape); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
			}
		} else if t.DataType != sp.DataType {
			return nil, fmt.Errorf("%w: input %q: datatype %s, model expects %s", ErrInvalidInput, t.Name, t.DataType, sp.DataType)
		}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
		}
		if len(t.Shape) == 0 && (isHalf(t.DataType) || t.DataType == models.Bytes) {
			return nil, fmt.Errorf("%w: input %q: rank-0 %s tensors: %w", ErrInvalidInput, t.Name, t.DataType, models.ErrUnsupportedDataType)
		}
	}
	if len(inputs) < len(s.in) {
		var missing []string
		for i, j := range order {
			if j < 0 {
				missing = append(missing, s.in[i].Name)
			}
		}
		return nil, fmt.Errorf("%w: missing input(s) %s", ErrInvalidInput, strings.Join(missing, ", "))
	}
	return order, nil
}
