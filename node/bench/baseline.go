package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

// The baseline is the simplest alternative a Go developer would write to
// serve an ONNX model: net/http's ServeMux, onnxruntime_go with default
// session options, encoding/json into a struct with Data []float32, and one
// session Run per request. It is written here on purpose without any of
// Petrel's machinery (no pooling, no batching, no custom codec), and only
// handles models with one FP32 input and FP32 outputs, which is all the
// benchmark MLPs need. Keep it that way: it is the yardstick.

// baselineInput and baselineRequest are the OIP request shape, as a
// developer would declare it for encoding/json.
type baselineInput struct {
	Name     string    `json:"name"`
	Shape    []int64   `json:"shape"`
	Datatype string    `json:"datatype"`
	Data     []float32 `json:"data"`
}

type baselineRequest struct {
	ID     string          `json:"id,omitempty"`
	Inputs []baselineInput `json:"inputs"`
}

type baselineOutput struct {
	Name     string    `json:"name"`
	Shape    []int64   `json:"shape"`
	Datatype string    `json:"datatype"`
	Data     []float32 `json:"data"`
}

type baselineResponse struct {
	ModelName    string           `json:"model_name"`
	ModelVersion string           `json:"model_version"`
	ID           string           `json:"id,omitempty"`
	Outputs      []baselineOutput `json:"outputs"`
}

// Baseline serves one ONNX model the simple way. Create it with
// NewBaseline; it is an http.Handler.
type Baseline struct {
	name     string
	session  *ort.DynamicAdvancedSession
	inputs   []ort.InputOutputInfo
	outputs  []ort.InputOutputInfo
	mux      *http.ServeMux
	closeMu  sync.Once
	closeErr error
}

// initBaselineORT initialises onnxruntime_go the way its README says, once
// per process, unless someone (models/ort) already did.
var baselineInit struct {
	once sync.Once
	err  error
}

func initORT(library string) error {
	baselineInit.once.Do(func() {
		if ort.IsInitialized() {
			return
		}
		ort.SetSharedLibraryPath(library)
		baselineInit.err = ort.InitializeEnvironment()
	})
	return baselineInit.err
}

// NewBaseline loads modelFile with default session options (nil), using
// the ONNX Runtime shared library at library (see ort.FindLibrary in
// models/ort for how callers resolve it). name is the model name in URLs.
func NewBaseline(library, modelFile, name string) (*Baseline, error) {
	if err := initORT(library); err != nil {
		return nil, fmt.Errorf("baseline: init onnxruntime: %w", err)
	}
	ins, outs, err := ort.GetInputOutputInfo(modelFile)
	if err != nil {
		return nil, fmt.Errorf("baseline: %s: %w", modelFile, err)
	}
	if len(ins) != 1 {
		return nil, fmt.Errorf("baseline: %s has %d inputs; the baseline serves models with one FP32 input", modelFile, len(ins))
	}
	for _, io := range append(append([]ort.InputOutputInfo{}, ins...), outs...) {
		if io.OrtValueType != ort.ONNXTypeTensor || io.DataType != ort.TensorElementDataTypeFloat {
			return nil, fmt.Errorf("baseline: %s: %q is not an FP32 tensor", modelFile, io.Name)
		}
	}
	var inNames, outNames []string
	for _, i := range ins {
		inNames = append(inNames, i.Name)
	}
	for _, o := range outs {
		outNames = append(outNames, o.Name)
	}
	sess, err := ort.NewDynamicAdvancedSession(modelFile, inNames, outNames, nil)
	if err != nil {
		return nil, fmt.Errorf("baseline: %s: %w", modelFile, err)
	}
	b := &Baseline{name: name, session: sess, inputs: ins, outputs: outs, mux: http.NewServeMux()}
	b.mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, r *http.Request) {})
	b.mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {})
	b.mux.HandleFunc("GET /v2/models/{model}", b.handleMeta)
	b.mux.HandleFunc("POST /v2/models/{model}/infer", b.handleInfer)
	return b, nil
}

// ServeHTTP implements http.Handler.
func (b *Baseline) ServeHTTP(w http.ResponseWriter, r *http.Request) { b.mux.ServeHTTP(w, r) }

// Close destroys the session; safe to call more than once.
func (b *Baseline) Close() error {
	b.closeMu.Do(func() { b.closeErr = b.session.Destroy() })
	return b.closeErr
}

func (b *Baseline) handleMeta(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("model") != b.name {
		http.Error(w, `{"error":"model not found"}`, http.StatusNotFound)
		return
	}
	meta := ModelMeta{Name: b.name, Versions: []string{"1"}, Platform: "onnxruntime_onnx"}
	for _, i := range b.inputs {
		meta.Inputs = append(meta.Inputs, TensorMeta{Name: i.Name, DataType: "FP32", Shape: i.Dimensions})
	}
	for _, o := range b.outputs {
		meta.Outputs = append(meta.Outputs, TensorMeta{Name: o.Name, DataType: "FP32", Shape: o.Dimensions})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(meta)
}

func (b *Baseline) handleInfer(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("model") != b.name {
		http.Error(w, `{"error":"model not found"}`, http.StatusNotFound)
		return
	}
	var req baselineRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf(`{"error":%q}`, err.Error()), http.StatusBadRequest)
		return
	}
	if len(req.Inputs) != 1 {
		http.Error(w, `{"error":"want exactly one input"}`, http.StatusBadRequest)
		return
	}
	in := req.Inputs[0]
	input, err := ort.NewTensor(ort.NewShape(in.Shape...), in.Data)
	if err != nil {
		http.Error(w, fmt.Sprintf(`{"error":%q}`, err.Error()), http.StatusBadRequest)
		return
	}
	defer input.Destroy()
	outputs := make([]ort.Value, len(b.outputs)) // nil: allocated by ONNX Runtime
	if err := b.session.Run([]ort.Value{input}, outputs); err != nil {
		http.Error(w, fmt.Sprintf(`{"error":%q}`, err.Error()), http.StatusInternalServerError)
		return
	}
	resp := baselineResponse{ModelName: b.name, ModelVersion: "1", ID: req.ID}
	for i, v := range outputs {
		defer v.Destroy()
		t, ok := v.(*ort.Tensor[float32])
		if !ok {
			http.Error(w, `{"error":"output is not an FP32 tensor"}`, http.StatusInternalServerError)
			return
		}
		resp.Outputs = append(resp.Outputs, baselineOutput{
			Name: b.outputs[i].Name, Shape: t.GetShape(), Datatype: "FP32", Data: t.GetData(),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// ServeBaseline serves b on addr (plain HTTP/1.1) until ctx ends, then
// shuts down. ready, if not nil, is called with the bound address once
// listening.
func ServeBaseline(ctx context.Context, b *Baseline, addr string, ready func(addr string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("baseline: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("baseline: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
