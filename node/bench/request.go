package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/node/client"
)

// Encodings of a request body.
const (
	EncodingJSON   = "json"
	EncodingBinary = "binary"
)

// TensorMeta is one input or output of model metadata.
type TensorMeta struct {
	Name     string          `json:"name"`
	DataType models.DataType `json:"datatype"`
	Shape    []int64         `json:"shape"`
}

// ModelMeta is the model metadata answer of GET /v2/models/{model}.
type ModelMeta struct {
	Name     string       `json:"name"`
	Versions []string     `json:"versions,omitempty"`
	Platform string       `json:"platform,omitempty"`
	Inputs   []TensorMeta `json:"inputs"`
	Outputs  []TensorMeta `json:"outputs"`
}

// FetchModel asks the server for a model's metadata.
func FetchModel(ctx context.Context, c *client.Client, model string) (ModelMeta, error) {
	var meta ModelMeta
	res, err := c.Get(ctx, "/v2/models/"+url.PathEscape(model))
	if err != nil {
		return meta, fmt.Errorf("model %q metadata: %w", model, err)
	}
	if res.Status != http.StatusOK {
		return meta, fmt.Errorf("model %q metadata: status %d: %s", model, res.Status, trim(res.Body))
	}
	if err := json.Unmarshal(res.Body, &meta); err != nil {
		return meta, fmt.Errorf("model %q metadata: %w", model, err)
	}
	if len(meta.Inputs) == 0 {
		return meta, fmt.Errorf("model %q metadata lists no inputs", model)
	}
	return meta, nil
}

func trim(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// RequestShape returns the shape to send for an input spec at a batch
// size: the first dynamic (-1) dimension becomes batch, any later dynamic
// dimension 1, fixed dimensions stay. An input without a shape (unknown
// rank) gets [batch].
func RequestShape(spec []int64, batch int) []int64 {
	if spec == nil {
		return []int64{int64(batch)}
	}
	out := make([]int64, len(spec))
	first := true
	for i, d := range spec {
		switch {
		case d >= 0:
			out[i] = d
		case first:
			out[i], first = int64(batch), false
		default:
			out[i] = 1
		}
	}
	return out
}

// RandomRequest builds a request with every input of the model filled with
// random values (seeded: the same seed gives the same request) at the
// given batch size (see RequestShape). binaryOutput asks for the outputs
// as binary tensors.
func RandomRequest(meta ModelMeta, batch int, seed uint64, binaryOutput bool) (*oip.Request, error) {
	if batch < 1 {
		return nil, fmt.Errorf("batch %d: want at least 1", batch)
	}
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	req := &oip.Request{BinaryOutput: binaryOutput}
	for _, in := range meta.Inputs {
		shape := RequestShape(in.Shape, batch)
		n, err := models.NumElements(shape)
		if err != nil || n > 1<<26 {
			return nil, fmt.Errorf("input %q: shape %v is too large", in.Name, shape)
		}
		data, err := randomData(rng, in.DataType, int(n))
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", in.Name, err)
		}
		req.Inputs = append(req.Inputs, models.Tensor{Name: in.Name, DataType: in.DataType, Shape: shape, Data: data})
	}
	return req, nil
}

// FP16 values used for random FP16 inputs: 0, ±0.5, ±1, ±0.25.
var halfValues = []uint16{0x0000, 0x3800, 0xb800, 0x3c00, 0xbc00, 0x3400, 0xb400}

// randomData returns n random elements of dt in the tensor layout of
// models.Tensor: floats in [-1, 1), small integers, 0/1 booleans, short
// strings.
func randomData(rng *rand.Rand, dt models.DataType, n int) ([]byte, error) {
	if dt == models.Bytes {
		var b []byte
		for range n {
			s := fmt.Sprintf("s%d", rng.IntN(1000))
			b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
			b = append(b, s...)
		}
		return b, nil
	}
	size := dt.Size()
	if size == 0 {
		return nil, fmt.Errorf("%w %q", models.ErrUnsupportedDataType, dt)
	}
	b := make([]byte, n*size)
	for i := range n {
		e := b[i*size : (i+1)*size]
		switch dt {
		case models.FP32:
			binary.LittleEndian.PutUint32(e, math.Float32bits(rng.Float32()*2-1))
		case models.FP64:
			binary.LittleEndian.PutUint64(e, math.Float64bits(rng.Float64()*2-1))
		case models.FP16:
			binary.LittleEndian.PutUint16(e, halfValues[rng.IntN(len(halfValues))])
		case models.BF16:
			binary.LittleEndian.PutUint16(e, uint16(math.Float32bits(rng.Float32()*2-1)>>16))
		case models.Bool:
			e[0] = byte(rng.IntN(2))
		default: // integers: 0..9 fits every width and sign
			e[0] = byte(rng.IntN(10))
		}
	}
	return b, nil
}

// Payload is a pre-encoded inference request, ready for Config.
type Payload struct {
	Path      string
	Body      []byte
	HeaderLen int // -1 for an all-JSON body
	Rows      int
}

// Apply copies the payload into a run config.
func (p Payload) Apply(cfg *Config) {
	cfg.Method, cfg.Path, cfg.Body, cfg.HeaderLen, cfg.Rows = http.MethodPost, p.Path, p.Body, p.HeaderLen, p.Rows
}

// Target returns the payload as a target of a mixed run, sent with c.
func (p Payload) Target(c *client.Client) Target {
	return Target{Name: p.Path, Client: c, Method: http.MethodPost, Path: p.Path, Body: p.Body, HeaderLen: p.HeaderLen, Rows: p.Rows}
}

// EncodeRequest encodes req for model (version "" = default) in the
// encoding given ("json" or "binary" tensors).
func EncodeRequest(model, version string, req *oip.Request, encoding string) (Payload, error) {
	var bin bool
	switch encoding {
	case "", EncodingJSON:
	case EncodingBinary:
		bin = true
	default:
		return Payload{}, fmt.Errorf("encoding %q: want json or binary", encoding)
	}
	body, hl, err := client.EncodeInfer(req, bin)
	if err != nil {
		return Payload{}, fmt.Errorf("encode request: %w", err)
	}
	rows := 1
	if len(req.Inputs) > 0 && len(req.Inputs[0].Shape) > 0 {
		rows = int(req.Inputs[0].Shape[0])
	}
	return Payload{Path: client.InferPath(model, version), Body: body, HeaderLen: hl, Rows: rows}, nil
}

// BuildPayload fetches the model's metadata and encodes a random request
// for it: the usual first step of a benchmark.
func BuildPayload(ctx context.Context, c *client.Client, model string, batch int, encoding string, seed uint64) (Payload, error) {
	meta, err := FetchModel(ctx, c, model)
	if err != nil {
		return Payload{}, err
	}
	req, err := RandomRequest(meta, batch, seed, encoding == EncodingBinary)
	if err != nil {
		return Payload{}, fmt.Errorf("model %q: %w", model, err)
	}
	return EncodeRequest(model, "", req, encoding)
}

// Probe sends a payload once and checks that the answer is a well-formed
// 200 inference response with outputs whose first dimension is the batch,
// so that a benchmark never measures error answers.
func Probe(ctx context.Context, c *client.Client, p Payload) error {
	res, err := c.Post(ctx, p.Path, p.Body, p.HeaderLen, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", p.Path, err)
	}
	if res.Status != http.StatusOK {
		return fmt.Errorf("probe %s: status %d: %s", p.Path, res.Status, trim(res.Body))
	}
	resp, err := oip.DecodeResponse(res.Body, res.HeaderLen)
	if err != nil {
		return fmt.Errorf("probe %s: %w", p.Path, err)
	}
	if len(resp.Outputs) == 0 {
		return fmt.Errorf("probe %s: response has no outputs", p.Path)
	}
	for _, o := range resp.Outputs {
		if len(o.Shape) == 0 || o.Shape[0] != int64(p.Rows) {
			return fmt.Errorf("probe %s: output %q has shape %v, want %d rows", p.Path, o.Name, o.Shape, p.Rows)
		}
		if err := o.Validate(); err != nil {
			return fmt.Errorf("probe %s: %w", p.Path, err)
		}
	}
	return nil
}
