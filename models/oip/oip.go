package oip

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/petrel-mesh/petrel/models"
)

// HTTP names used with the binary tensor data extension.
const (
	// HeaderContentLength carries the length of the JSON part of a body
	// that has binary tensors after it.
	HeaderContentLength = "Inference-Header-Content-Length"
	// ContentTypeJSON is the content type of an all-JSON body.
	ContentTypeJSON = "application/json"
	// ContentTypeBinary is the content type of a body with binary tensors.
	ContentTypeBinary = "application/octet-stream"
)

var (
	// ErrBadRequest is wrapped by every error DecodeRequest and
	// ParseHeaderLength return: the client sent something wrong, and the
	// message says what (answer 400).
	ErrBadRequest = errors.New("bad request")
	// ErrTooLarge is wrapped, together with ErrBadRequest, by errors for a
	// request beyond Limits (answer 413).
	ErrTooLarge = errors.New("request too large")
	// ErrBadResponse is wrapped by every error DecodeResponse returns for
	// a malformed response.
	ErrBadResponse = errors.New("bad response")
)

// ServerError is what DecodeResponse returns for an error body,
// {"error": "..."}.
type ServerError struct{ Message string }

func (e *ServerError) Error() string { return "server error: " + e.Message }

// Request is a decoded inference request.
//
// A Request returned by DecodeRequest aliases the body it was decoded
// from: the Data of inputs sent as binary tensors are sub-slices of the
// body (with their capacity clipped to their length). The caller must not
// modify or reuse the body while the Request is in use. Inputs sent as
// JSON own their Data.
type Request struct {
	// ID is the optional request id, echoed in the response.
	ID string
	// Parameters holds the request parameters other than the ones lifted
	// into fields below (binary_data_output, timeout); nil when there are
	// none. Values are string, bool, int64 (integral JSON numbers that fit),
	// float64 (other numbers), nil, []any and map[string]any.
	Parameters map[string]any
	// Inputs are the input tensors in request order.
	Inputs []models.Tensor
	// Outputs are the requested outputs in request order; empty means all
	// outputs of the model.
	Outputs []RequestedOutput
	// BinaryOutput is the request parameter "binary_data_output": return
	// every output as binary unless the output itself says otherwise.
	BinaryOutput bool
	// Timeout is the request parameter "timeout" (sent in microseconds);
	// zero when absent.
	Timeout time.Duration
}

// RequestedOutput is one entry of a request's "outputs".
type RequestedOutput struct {
	Name string
	// Binary is whether the output goes back as binary data: the output's
	// "binary_data" parameter when given, else the request's
	// "binary_data_output".
	Binary bool
	// Parameters holds the output parameters other than binary_data; nil
	// when there are none.
	Parameters map[string]any
}

// WantsBinary reports whether the named output should be returned as
// binary data.
func (r *Request) WantsBinary(output string) bool {
	for i := range r.Outputs {
		if r.Outputs[i].Name == output {
			return r.Outputs[i].Binary
		}
	}
	return r.BinaryOutput
}

// OutputNames returns the names of the requested outputs in order, or nil
// when the request asks for all outputs.
func (r *Request) OutputNames() []string {
	if len(r.Outputs) == 0 {
		return nil
	}
	names := make([]string, len(r.Outputs))
	for i := range r.Outputs {
		names[i] = r.Outputs[i].Name
	}
	return names
}

// BinaryFlags returns, for each output, whether it should be returned as
// binary data: the argument AppendResponse takes. dst is reused when it has
// the capacity.
func (r *Request) BinaryFlags(dst []bool, outputs []models.Tensor) []bool {
	dst = dst[:0]
	for i := range outputs {
		dst = append(dst, r.WantsBinary(outputs[i].Name))
	}
	return dst
}

// Response is an inference response.
//
// A Response returned by DecodeResponse aliases the body like a Request
// does: binary outputs are sub-slices of it.
type Response struct {
	ModelName    string
	ModelVersion string
	ID           string
	// Parameters are the response parameters; values as in
	// Request.Parameters.
	Parameters map[string]any
	Outputs    []models.Tensor
}

// Limits bound what DecodeRequest accepts. A zero field takes its default
// from DefaultLimits. Whatever the limits, the decoder never allocates much
// more than the body's size: declared shapes and binary sizes are checked
// against the bytes actually present before anything is allocated.
type Limits struct {
	// MaxBodyBytes is the largest body accepted.
	MaxBodyBytes int64
	// MaxTensors is the most inputs, and the most requested outputs, in one
	// request.
	MaxTensors int
	// MaxElements is the most elements in all inputs of one request
	// together.
	MaxElements int64
	// MaxRank is the most dimensions of one shape.
	MaxRank int
}

// DefaultLimits are the limits used for zero fields of Limits: 64 MiB
// bodies, 128 tensors, 64 Mi elements, rank 32.
func DefaultLimits() Limits {
	return Limits{
		MaxBodyBytes: 64 << 20,
		MaxTensors:   128,
		MaxElements:  64 << 20,
		MaxRank:      32,
	}
}

// Validate reports a negative limit.
func (l Limits) Validate() error {
	switch {
	case l.MaxBodyBytes < 0:
		return fmt.Errorf("oip limits: MaxBodyBytes %d is negative", l.MaxBodyBytes)
	case l.MaxTensors < 0:
		return fmt.Errorf("oip limits: MaxTensors %d is negative", l.MaxTensors)
	case l.MaxElements < 0:
		return fmt.Errorf("oip limits: MaxElements %d is negative", l.MaxElements)
	case l.MaxRank < 0:
		return fmt.Errorf("oip limits: MaxRank %d is negative", l.MaxRank)
	}
	return nil
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	if l.MaxTensors <= 0 {
		l.MaxTensors = d.MaxTensors
	}
	if l.MaxElements <= 0 {
		l.MaxElements = d.MaxElements
	}
	if l.MaxRank <= 0 {
		l.MaxRank = d.MaxRank
	}
	return l
}

// ParseHeaderLength parses the value of the Inference-Header-Content-Length
// header: -1 when v is empty (no header), else a non-negative integer.
func ParseHeaderLength(v string) (int, error) {
	if v == "" {
		return -1, nil
	}
	n, err := strconv.ParseUint(v, 10, 31)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not a valid length", ErrBadRequest, HeaderContentLength, v)
	}
	return int(n), nil
}

// EncodeError returns the error body {"error": msg}.
func EncodeError(msg string) []byte {
	b := make([]byte, 0, len(msg)+16)
	b = append(b, `{"error":`...)
	b = appendQuoted(b, msg)
	return append(b, '}')
}

// splitBody separates the JSON header from the binary part.
func splitBody(body []byte, headerLen int, sentinel error) (hdr, bin []byte, err error) {
	switch {
	case headerLen == -1:
		return body, nil, nil
	case headerLen < 0:
		return nil, nil, fmt.Errorf("%w: %s %d is negative", sentinel, HeaderContentLength, headerLen)
	case headerLen > len(body):
		return nil, nil, fmt.Errorf("%w: %s %d exceeds body length %d", sentinel, HeaderContentLength, headerLen, len(body))
	}
	return body[:headerLen], body[headerLen:], nil
}
