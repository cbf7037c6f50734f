package oip

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/petrel-mesh/petrel/models"
)

var (
	nanValue = math.NaN()
	posInf   = math.Inf(1)
	negInf   = math.Inf(-1)
)

// responseLimits bound DecodeResponse. Allocation stays bounded by the body
// size whatever these say; they only stop absurd shapes early.
var responseLimits = Limits{
	MaxBodyBytes: math.MaxInt64,
	MaxTensors:   1 << 16,
	MaxElements:  math.MaxInt64,
	MaxRank:      64,
}

// decoder holds the state of one DecodeRequest or DecodeResponse call.
type decoder struct {
	s      scanner
	lim    Limits
	strict bool   // reject unknown fields (requests); responses skip them
	what   string // "input" or "output"
	elems  int64  // elements declared by the shapes read so far
	dims   []int64
}

// tensorState is one tensor object being decoded.
type tensorState struct {
	t       models.Tensor
	index   int
	k       kind
	n       int64 // elements, from the shape
	seen    uint8 // tensor fields seen (fName, ...)
	hasData bool  // a non-null "data" was given
	dataAt  int   // offset of a "data" value that came before shape or datatype; -1 if none
	binSize int64 // parameters.binary_data_size; -1 if absent
}

// Bits for fields seen in one object.
const (
	fName uint8 = 1 << iota
	fType
	fShape
	fParams
	fData
	fID
	fInputs
	fOutputs
)

// Bits for top-level fields that have no tensor counterpart.
const (
	fModelName    = fName
	fModelVersion = fType
	fError        = fShape
	fTopParams    = fParams
)

func (d *decoder) label(ts *tensorState) string {
	if ts.t.Name != "" {
		return fmt.Sprintf("%s %q", d.what, ts.t.Name)
	}
	return fmt.Sprintf("%s %d", d.what, ts.index)
}

// tfail returns an error about one tensor.
func (d *decoder) tfail(ts *tensorState, format string, a ...any) error {
	return d.s.fail("%s: %s", d.label(ts), fmt.Sprintf(format, a...))
}

func (d *decoder) tooLarge(format string, a ...any) error {
	return fmt.Errorf("%w: %w: %s", d.s.sentinel, ErrTooLarge, fmt.Sprintf(format, a...))
}

// skipDepth is the starting depth for skipping a "data" value, so that data
// nested as deep as the largest allowed rank can be skipped.
func (d *decoder) skipDepth() int { return min(0, maxValueDepth-d.lim.MaxRank-2) }

// DecodeRequest decodes an inference request body. headerLen is the value
// of the Inference-Header-Content-Length header, or -1 when the request had
// none (then the whole body is JSON). The returned Request aliases body;
// see Request. Every error wraps ErrBadRequest, and those for requests
// beyond lim also wrap ErrTooLarge. A zero Limits means DefaultLimits.
func DecodeRequest(body []byte, headerLen int, lim Limits) (*Request, error) {
	lim = lim.withDefaults()
	if int64(len(body)) > lim.MaxBodyBytes {
		return nil, fmt.Errorf("%w: %w: body of %d bytes exceeds the limit of %d", ErrBadRequest, ErrTooLarge, len(body), lim.MaxBodyBytes)
	}
	hdr, bin, err := splitBody(body, headerLen, ErrBadRequest)
	if err != nil {
		return nil, err
	}
	// One allocation for the request and room for its usual contents.
	a := &struct {
		r    Request
		in   [1]models.Tensor
		out  [1]RequestedOutput
		dims [8]int64
	}{}
	r := &a.r
	d := decoder{
		s:      scanner{b: hdr, sentinel: ErrBadRequest},
		lim:    lim,
		strict: true,
		what:   "input",
		dims:   a.dims[:0],
	}
	s := &d.s
	if s.peek() != '{' {
		return nil, s.fail("the inference request must be a JSON object, found %s", s.describe())
	}
	s.i++
	var (
		seen     uint8
		binBuf   [4]int64
		bins     = binBuf[:0]
		flagsBuf [4]int8
		flags    = flagsBuf[:0]
		inputs   []models.Tensor
	)
	for first := true; ; first = false {
		more, err := s.next('}', first)
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		key, err := s.key()
		if err != nil {
			return nil, err
		}
		var bit uint8
		switch string(key) {
		case "id":
			bit = fID
		case "model_name":
			bit = fModelName
		case "model_version":
			bit = fModelVersion
		case "parameters":
			bit = fTopParams
		case "inputs":
			bit = fInputs
		case "outputs":
			bit = fOutputs
		default:
			return nil, s.fail("unknown field %q in the inference request", key)
		}
		if seen&bit != 0 {
			return nil, s.fail("duplicate field %q in the inference request", key)
		}
		seen |= bit
		switch bit {
		case fID:
			if !s.isNull() {
				b, err := s.str()
				if err != nil {
					return nil, err
				}
				r.ID = string(b)
			}
		case fModelName, fModelVersion:
			// Triton's examples repeat the model in the body; the URL
			// decides.
			if !s.isNull() {
				if _, err := s.str(); err != nil {
					return nil, err
				}
			}
		case fTopParams:
			err = d.requestParams(r)
		case fInputs:
			inputs, bins, err = d.tensors(a.in[:0], bins)
		case fOutputs:
			r.Outputs, flags, err = d.outputs(a.out[:0], flags)
		}
		if err != nil {
			return nil, err
		}
	}
	s.ws()
	if s.i != len(hdr) {
		if headerLen < 0 {
			return nil, s.fail("unexpected data after the JSON object at offset %d (binary tensors need the %s header)", s.i, HeaderContentLength)
		}
		return nil, s.fail("unexpected data after the JSON object at offset %d of the %d-byte JSON header", s.i, len(hdr))
	}
	if seen&fInputs == 0 {
		return nil, s.fail(`the inference request has no "inputs"`)
	}
	for i, f := range flags {
		r.Outputs[i].Binary = f > 0 || f < 0 && r.BinaryOutput
	}
	if len(r.Outputs) == 0 {
		r.Outputs = nil // "outputs": [] asks for all outputs, like no "outputs"
	}
	if err := d.assignBinary(inputs, bins, bin, headerLen); err != nil {
		return nil, err
	}
	r.Inputs = inputs
	return r, nil
}

// DecodeResponse decodes an inference response body (for clients). headerLen
// is the value of the Inference-Header-Content-Length header, or -1 when
// the response had none. The returned Response aliases body. An error body
// {"error": "..."} comes back as a *ServerError; a malformed body as an
// error wrapping ErrBadResponse.
func DecodeResponse(body []byte, headerLen int) (*Response, error) {
	hdr, bin, err := splitBody(body, headerLen, ErrBadResponse)
	if err != nil {
		return nil, err
	}
	a := &struct {
		r    Response
		out  [1]models.Tensor
		dims [8]int64
	}{}
	r := &a.r
	d := decoder{
		s:    scanner{b: hdr, sentinel: ErrBadResponse},
		lim:  responseLimits,
		what: "output",
		dims: a.dims[:0],
	}
	s := &d.s
	if s.peek() != '{' {
		return nil, s.fail("the inference response must be a JSON object, found %s", s.describe())
	}
	s.i++
	var (
		seen    uint8
		binBuf  [4]int64
		bins    = binBuf[:0]
		outputs []models.Tensor
		errMsg  string
	)
	for first := true; ; first = false {
		more, err := s.next('}', first)
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		key, err := s.key()
		if err != nil {
			return nil, err
		}
		var bit uint8
		switch string(key) {
		case "model_name":
			bit = fModelName
		case "model_version":
			bit = fModelVersion
		case "id":
			bit = fID
		case "parameters":
			bit = fTopParams
		case "outputs":
			bit = fOutputs
		case "error":
			bit = fError
		default:
			if err := s.skip(0); err != nil {
				return nil, err
			}
			continue
		}
		if seen&bit != 0 {
			return nil, s.fail("duplicate field %q in the inference response", key)
		}
		seen |= bit
		switch bit {
		case fModelName, fModelVersion, fID, fError:
			if s.isNull() {
				continue
			}
			b, err := s.str()
			if err != nil {
				return nil, err
			}
			switch bit {
			case fModelName:
				r.ModelName = string(b)
			case fModelVersion:
				r.ModelVersion = string(b)
			case fID:
				r.ID = string(b)
			default:
				errMsg = string(b)
			}
		case fTopParams:
			if s.isNull() {
				continue
			}
			if s.peek() != '{' {
				return nil, s.fail(`"parameters" must be an object, found %s`, s.describe())
			}
			v, err := s.value(0)
			if err != nil {
				return nil, err
			}
			if m := v.(map[string]any); len(m) > 0 {
				r.Parameters = m
			}
		case fOutputs:
			outputs, bins, err = d.tensors(a.out[:0], bins)
			if err != nil {
				return nil, err
			}
		}
	}
	s.ws()
	if s.i != len(hdr) {
		return nil, s.fail("unexpected data after the JSON object at offset %d", s.i)
	}
	if seen&fError != 0 {
		return nil, &ServerError{Message: errMsg}
	}
	if err := d.assignBinary(outputs, bins, bin, headerLen); err != nil {
		return nil, err
	}
	r.Outputs = outputs
	return r, nil
}

// requestParams reads the request-level "parameters".
func (d *decoder) requestParams(r *Request) error {
	s := &d.s
	if s.isNull() {
		return nil
	}
	if s.peek() != '{' {
		return s.fail(`"parameters" must be an object, found %s`, s.describe())
	}
	s.i++
	var seenBinary, seenTimeout bool
	for first := true; ; first = false {
		more, err := s.next('}', first)
		if err != nil || !more {
			return err
		}
		key, err := s.key()
		if err != nil {
			return err
		}
		switch string(key) {
		case "binary_data_output":
			if seenBinary {
				return s.fail("duplicate parameter %q", key)
			}
			seenBinary = true
			v, ok := s.boolean()
			if !ok {
				return s.fail(`parameter "binary_data_output" must be true or false, found %s`, s.describe())
			}
			r.BinaryOutput = v
		case "timeout":
			if seenTimeout {
				return s.fail("duplicate parameter %q", key)
			}
			seenTimeout = true
			us, ok := d.nonNegInt()
			if !ok {
				return s.fail(`parameter "timeout" must be a non-negative integer (microseconds), found %s`, s.describe())
			}
			if us > math.MaxInt64/uint64(time.Microsecond) {
				return s.fail(`parameter "timeout" of %d microseconds is too large`, us)
			}
			r.Timeout = time.Duration(us) * time.Microsecond
		default:
			v, err := s.value(1)
			if err != nil {
				return err
			}
			if r.Parameters == nil {
				r.Parameters = make(map[string]any, 2)
			}
			if _, dup := r.Parameters[string(key)]; dup {
				return s.fail("duplicate parameter %q", key)
			}
			r.Parameters[string(key)] = v
		}
	}
}

// nonNegInt reads a non-negative JSON integer that fits in int64. When it
// fails, the position is left at the offending value for describe.
func (d *decoder) nonNegInt() (uint64, bool) {
	s := &d.s
	if c := s.peek(); c < '0' || c > '9' {
		return 0, false
	}
	at := s.i
	tok, isInt, err := s.num()
	if err != nil || !isInt {
		s.i = at
		return 0, false
	}
	neg, mag, ok := parseIntTok(tok)
	if neg || !ok || mag > math.MaxInt64 {
		s.i = at
		return 0, false
	}
	return mag, true
}

// parseIntTok parses a token that num reported as an integer.
func parseIntTok(tok []byte) (neg bool, mag uint64, ok bool) {
	if len(tok) > 0 && tok[0] == '-' {
		neg = true
		tok = tok[1:]
	}
	if len(tok) <= 19 {
		for _, c := range tok {
			mag = mag*10 + uint64(c-'0')
		}
		return neg, mag, true
	}
	v, err := strconv.ParseUint(string(tok), 10, 64)
	return neg, v, err == nil
}

// outputs reads a request's "outputs". flags records each output's
// binary_data parameter: -1 absent, 0 false, 1 true.
func (d *decoder) outputs(list []RequestedOutput, flags []int8) ([]RequestedOutput, []int8, error) {
	s := &d.s
	if s.isNull() {
		return nil, flags, nil
	}
	if s.peek() != '[' {
		return nil, nil, s.fail(`"outputs" must be an array, found %s`, s.describe())
	}
	s.i++
	for first := true; ; first = false {
		more, err := s.next(']', first)
		if err != nil {
			return nil, nil, err
		}
		if !more {
			return list, flags, nil
		}
		if len(list) >= d.lim.MaxTensors {
			return nil, nil, d.tooLarge("more than %d requested outputs", d.lim.MaxTensors)
		}
		o, flag, err := d.output(len(list))
		if err != nil {
			return nil, nil, err
		}
		for j := range list {
			if list[j].Name == o.Name {
				return nil, nil, s.fail("duplicate output %q in \"outputs\"", o.Name)
			}
		}
		list = append(list, o)
		flags = append(flags, flag)
	}
}

func outputLabel(name string, index int) string {
	if name != "" {
		return fmt.Sprintf("output %q", name)
	}
	return fmt.Sprintf("output %d", index)
}

// output reads one requested output object.
func (d *decoder) output(index int) (o RequestedOutput, flag int8, err error) {
	s := &d.s
	flag = -1
	if s.peek() != '{' {
		return o, flag, s.fail("output %d must be an object, found %s", index, s.describe())
	}
	s.i++
	var seen uint8
	for first := true; ; first = false {
		more, err := s.next('}', first)
		if err != nil {
			return o, flag, err
		}
		if !more {
			break
		}
		key, err := s.key()
		if err != nil {
			return o, flag, err
		}
		var bit uint8
		switch string(key) {
		case "name":
			bit = fName
		case "parameters":
			bit = fParams
		default:
			return o, flag, s.fail("%s: unknown field %q", outputLabel(o.Name, index), key)
		}
		if seen&bit != 0 {
			return o, flag, s.fail("%s: duplicate field %q", outputLabel(o.Name, index), key)
		}
		seen |= bit
		if bit == fName {
			b, err := s.str()
			if err != nil {
				return o, flag, err
			}
			if len(b) == 0 {
				return o, flag, s.fail("output %d: empty name", index)
			}
			o.Name = string(b)
			continue
		}
		if s.isNull() {
			continue
		}
		if s.peek() != '{' {
			return o, flag, s.fail(`%s: "parameters" must be an object, found %s`, outputLabel(o.Name, index), s.describe())
		}
		s.i++
		for first := true; ; first = false {
			more, err := s.next('}', first)
			if err != nil {
				return o, flag, err
			}
			if !more {
				break
			}
			key, err := s.key()
			if err != nil {
				return o, flag, err
			}
			switch string(key) {
			case "binary_data":
				if flag >= 0 {
					return o, flag, s.fail("%s: duplicate parameter %q", outputLabel(o.Name, index), key)
				}
				v, ok := s.boolean()
				if !ok {
					return o, flag, s.fail(`%s: parameter "binary_data" must be true or false, found %s`, outputLabel(o.Name, index), s.describe())
				}
				flag = 0
				if v {
					flag = 1
				}
			case "classification":
				return o, flag, s.fail("%s: the classification extension is not supported", outputLabel(o.Name, index))
			case "shared_memory_region", "shared_memory_byte_size", "shared_memory_offset":
				return o, flag, s.fail("%s: parameter %q: the shared memory extension is not supported", outputLabel(o.Name, index), key)
			default:
				v, err := s.value(1)
				if err != nil {
					return o, flag, err
				}
				if o.Parameters == nil {
					o.Parameters = make(map[string]any, 1)
				}
				if _, dup := o.Parameters[string(key)]; dup {
					return o, flag, s.fail("%s: duplicate parameter %q", outputLabel(o.Name, index), key)
				}
				o.Parameters[string(key)] = v
			}
		}
	}
	if o.Name == "" {
		return o, flag, s.fail(`output %d: missing "name"`, index)
	}
	return o, flag, nil
}

// tensors reads an array of tensor objects ("inputs" of a request or
// "outputs" of a response), appending to list, and each one's
// binary_data_size (-1 for none) to bins.
func (d *decoder) tensors(list []models.Tensor, bins []int64) ([]models.Tensor, []int64, error) {
	s := &d.s
	if !d.strict && s.isNull() {
		return list, bins, nil
	}
	if s.peek() != '[' {
		return nil, nil, s.fail(`"%ss" must be an array, found %s`, d.what, s.describe())
	}
	s.i++
	for first := true; ; first = false {
		more, err := s.next(']', first)
		if err != nil {
			return nil, nil, err
		}
		if !more {
			return list, bins, nil
		}
		if len(list) >= d.lim.MaxTensors {
			return nil, nil, d.tooLarge("more than %d %ss", d.lim.MaxTensors, d.what)
		}
		ts := tensorState{index: len(list), dataAt: -1, binSize: -1}
		if err := d.tensor(&ts); err != nil {
			return nil, nil, err
		}
		if d.strict {
			for j := range list {
				if list[j].Name == ts.t.Name {
					return nil, nil, s.fail("duplicate %s %q", d.what, ts.t.Name)
				}
			}
		}
		list = append(list, ts.t)
		bins = append(bins, ts.binSize)
	}
}

// tensor reads one tensor object.
func (d *decoder) tensor(ts *tensorState) error {
	s := &d.s
	if s.peek() != '{' {
		return s.fail("%s %d must be an object, found %s", d.what, ts.index, s.describe())
	}
	s.i++
	for first := true; ; first = false {
		more, err := s.next('}', first)
		if err != nil {
			return err
		}
		if !more {
			break
		}
		key, err := s.key()
		if err != nil {
			return err
		}
		var bit uint8
		switch string(key) {
		case "name":
			bit = fName
		case "datatype":
			bit = fType
		case "shape":
			bit = fShape
		case "parameters":
			bit = fParams
		case "data":
			bit = fData
		default:
			if d.strict {
				return d.tfail(ts, "unknown field %q", key)
			}
			if err := s.skip(d.skipDepth()); err != nil {
				return err
			}
			continue
		}
		if ts.seen&bit != 0 {
			return d.tfail(ts, "duplicate field %q", key)
		}
		ts.seen |= bit
		switch bit {
		case fName:
			b, err := s.str()
			if err != nil {
				return err
			}
			if len(b) == 0 {
				return d.tfail(ts, "empty name")
			}
			ts.t.Name = string(b)
		case fType:
			b, err := s.str()
			if err != nil {
				return err
			}
			if ts.k = parseKind(b); ts.k == kInvalid {
				return fmt.Errorf("%w: %s: %w %q", s.sentinel, d.label(ts), models.ErrUnsupportedDataType, b)
			}
			ts.t.DataType = kindType[ts.k]
		case fShape:
			err = d.shape(ts)
		case fParams:
			err = d.tensorParams(ts)
		case fData:
			if s.isNull() {
				continue
			}
			ts.hasData = true
			if ts.seen&(fType|fShape) == fType|fShape {
				err = d.data(ts)
			} else {
				ts.dataAt = s.i
				err = s.skip(d.skipDepth())
			}
		}
		if err != nil {
			return err
		}
	}
	switch {
	case ts.seen&fName == 0:
		return d.tfail(ts, `missing "name"`)
	case ts.seen&fType == 0:
		return d.tfail(ts, `missing "datatype"`)
	case ts.seen&fShape == 0:
		return d.tfail(ts, `missing "shape"`)
	case ts.hasData && ts.binSize >= 0:
		return d.tfail(ts, `has both "data" and parameters.binary_data_size`)
	case !ts.hasData && ts.binSize < 0:
		return d.tfail(ts, `has neither "data" nor parameters.binary_data_size`)
	}
	if ts.dataAt >= 0 {
		end := s.i
		s.i = ts.dataAt
		if err := d.data(ts); err != nil {
			return err
		}
		s.i = end
	}
	return nil
}

// shape reads a shape array, checks it against the limits and records the
// element count.
func (d *decoder) shape(ts *tensorState) error {
	s := &d.s
	if s.peek() != '[' {
		return d.tfail(ts, `"shape" must be an array, found %s`, s.describe())
	}
	s.i++
	start := len(d.dims)
	for first := true; ; first = false {
		more, err := s.next(']', first)
		if err != nil {
			return err
		}
		if !more {
			break
		}
		if len(d.dims)-start >= d.lim.MaxRank {
			return d.tooLarge("%s: shape has more than %d dimensions", d.label(ts), d.lim.MaxRank)
		}
		if c := s.peek(); c != '-' && (c < '0' || c > '9') {
			return d.tfail(ts, "shape dimension must be an integer, found %s", s.describe())
		}
		tok, isInt, err := s.num()
		if err != nil {
			return err
		}
		if !isInt {
			return d.tfail(ts, "shape dimension %s is not an integer", tok)
		}
		neg, mag, ok := parseIntTok(tok)
		if neg && mag != 0 {
			return d.tfail(ts, "negative dimension %s in shape", tok)
		}
		if !ok || mag > math.MaxInt64 {
			return d.tooLarge("%s: shape dimension %s is too large", d.label(ts), tok)
		}
		d.dims = append(d.dims, int64(mag))
	}
	end := len(d.dims)
	ts.t.Shape = d.dims[start:end:end]
	n, err := models.NumElements(ts.t.Shape)
	if err != nil {
		return d.tooLarge("%s: %v", d.label(ts), err)
	}
	if n > d.lim.MaxElements-d.elems {
		return d.tooLarge("%s: shape %v has %d elements; %d more are allowed in this request (limit %d)",
			d.label(ts), ts.t.Shape, n, d.lim.MaxElements-d.elems, d.lim.MaxElements)
	}
	d.elems += n
	ts.n = n
	return nil
}

// tensorParams reads a tensor's "parameters".
func (d *decoder) tensorParams(ts *tensorState) error {
	s := &d.s
	if s.isNull() {
		return nil
	}
	if s.peek() != '{' {
		return d.tfail(ts, `"parameters" must be an object, found %s`, s.describe())
	}
	s.i++
	for first := true; ; first = false {
		more, err := s.next('}', first)
		if err != nil || !more {
			return err
		}
		key, err := s.key()
		if err != nil {
			return err
		}
		switch string(key) {
		case "binary_data_size":
			if ts.binSize >= 0 {
				return d.tfail(ts, "duplicate parameter %q", key)
			}
			n, ok := d.nonNegInt()
			if !ok {
				return d.tfail(ts, "binary_data_size must be a non-negative integer, found %s", s.describe())
			}
			ts.binSize = int64(n)
		case "shared_memory_region", "shared_memory_byte_size", "shared_memory_offset":
			if d.strict {
				return d.tfail(ts, "parameter %q: the shared memory extension is not supported", key)
			}
			fallthrough
		default:
			// Other tensor parameters carry nothing Petrel uses.
			if err := s.skip(1); err != nil {
				return err
			}
		}
	}
}

// data reads a "data" array into ts.t.Data.
func (d *decoder) data(ts *tensorState) error {
	s := &d.s
	if s.peek() != '[' {
		return d.tfail(ts, `"data" must be an array, found %s`, s.describe())
	}
	n := ts.n
	// Every value takes at least one byte and a separator: refuse to
	// allocate for a shape that the bytes present cannot fill.
	if room := int64(len(s.b) - s.i); n > room/2+1 {
		got, err := d.countLeaves(0)
		if err != nil {
			return err
		}
		return d.tfail(ts, "expected %d %s values for shape %v, got %d", n, ts.k, ts.t.Shape, got)
	}
	var buf []byte
	if ts.k == kBytes {
		buf = make([]byte, 0, 8*n)
	} else {
		buf = make([]byte, n*kindSize[ts.k])
	}
	start := s.i
	s.i++
	isNested := len(ts.t.Shape) >= 2 && s.peek() == '['
	s.i = start
	var err error
	if isNested {
		var idx int64
		buf, err = d.nested(ts, buf, 0, &idx)
	} else {
		buf, err = d.flat(ts, buf)
	}
	if err != nil {
		return err
	}
	ts.t.Data = buf
	return nil
}

// flat reads a flat data array.
func (d *decoder) flat(ts *tensorState, buf []byte) ([]byte, error) {
	s := &d.s
	s.i++ // '['
	var count int64
	first := true
	if ts.k == kF32 && !noFlatF32 {
		count = d.flatF32(ts, buf)
		first = count == 0
	}
	for ; ; first = false {
		more, err := s.next(']', first)
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		if count < ts.n {
			if s.b[s.i] == '[' {
				return nil, d.tfail(ts, "element %d is an array: data must be flat, or nested exactly as shape %v", count, ts.t.Shape)
			}
			if buf, err = d.elem(ts, buf, count); err != nil {
				return nil, err
			}
		} else if err := s.skip(d.skipDepth()); err != nil {
			return nil, err
		}
		count++
	}
	if count != ts.n {
		return nil, d.tfail(ts, "expected %d %s values for shape %v, got %d", ts.n, ts.k, ts.t.Shape, count)
	}
	return buf, nil
}

// nested reads data nested as the shape, from dimension level on.
func (d *decoder) nested(ts *tensorState, buf []byte, level int, idx *int64) ([]byte, error) {
	s := &d.s
	s.i++ // '['
	shape := ts.t.Shape
	want := shape[level]
	last := level == len(shape)-1
	var count int64
	for first := true; ; first = false {
		more, err := s.next(']', first)
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		c := s.b[s.i]
		switch {
		case count >= want:
			err = s.skip(d.skipDepth())
		case last:
			if c == '[' {
				return nil, d.tfail(ts, "data is nested deeper than shape %v", shape)
			}
			buf, err = d.elem(ts, buf, *idx)
			*idx++
		default:
			if c != '[' {
				return nil, d.tfail(ts, "nested data does not match shape %v: expected an array for dimension %d, found %s", shape, level+1, s.describe())
			}
			buf, err = d.nested(ts, buf, level+1, idx)
		}
		if err != nil {
			return nil, err
		}
		count++
	}
	if count != want {
		return nil, d.tfail(ts, "nested data does not match shape %v: an array for dimension %d has %d elements, expected %d", shape, level, count, want)
	}
	return buf, nil
}

// countLeaves counts the non-array values in the (possibly nested) array at
// the current position, for error messages.
func (d *decoder) countLeaves(depth int) (int64, error) {
	s := &d.s
	if s.peek() != '[' {
		return 1, s.skip(d.skipDepth())
	}
	if depth > d.lim.MaxRank {
		return 0, s.syntax("data nested deeper than %d levels", d.lim.MaxRank)
	}
	s.i++
	var total int64
	for first := true; ; first = false {
		more, err := s.next(']', first)
		if err != nil {
			return 0, err
		}
		if !more {
			return total, nil
		}
		n, err := d.countLeaves(depth + 1)
		if err != nil {
			return 0, err
		}
		total += n
	}
}

// elem reads one data value into element idx of buf (or, for BYTES,
// appends it).
func (d *decoder) elem(ts *tensorState, buf []byte, idx int64) ([]byte, error) {
	s := &d.s
	switch k := ts.k; k {
	case kF32:
		// The hot path: plain numbers without a detour.
		if c := s.b[s.i]; c >= '0' && c <= '9' || c == '-' && s.i+1 < len(s.b) && s.b[s.i+1] != 'I' {
			tok, dn, err := s.decimal()
			if err != nil {
				return nil, err
			}
			f, ok := dn.float32()
			if !ok {
				f64, err := strconv.ParseFloat(string(tok), 32)
				if err != nil {
					return nil, d.tfail(ts, "element %d: %s is out of range for FP32", idx, tok)
				}
				f = float32(f64)
			}
			binary.LittleEndian.PutUint32(buf[4*idx:], math.Float32bits(f))
			return buf, nil
		}
		f, ok := s.nonFinite()
		if !ok {
			return nil, d.tfail(ts, "element %d: FP32 needs a number, found %s", idx, s.describe())
		}
		binary.LittleEndian.PutUint32(buf[4*idx:], math.Float32bits(float32(f)))
	case kF64, kF16, kBF16:
		f, ok := s.nonFinite()
		var tok []byte
		if !ok {
			if c := s.b[s.i]; c != '-' && (c < '0' || c > '9') {
				return nil, d.tfail(ts, "element %d: %s needs a number, found %s", idx, k, s.describe())
			}
			var dn decNum
			var err error
			if tok, dn, err = s.decimal(); err != nil {
				return nil, err
			}
			if f, err = parseFloat(tok, &dn, 64); err != nil {
				return nil, d.tfail(ts, "element %d: %s is out of range for %s", idx, tok, k)
			}
		}
		if k == kF64 {
			binary.LittleEndian.PutUint64(buf[8*idx:], math.Float64bits(f))
			break
		}
		conv := f64ToFP16
		if k == kBF16 {
			conv = f64ToBF16
		}
		h, ok := conv(f)
		if !ok {
			return nil, d.tfail(ts, "element %d: %s is out of range for %s", idx, tok, k)
		}
		binary.LittleEndian.PutUint16(buf[2*idx:], h)
	case kBool:
		v, ok := s.boolean()
		if !ok {
			return nil, d.tfail(ts, "element %d: BOOL needs true or false, found %s", idx, s.describe())
		}
		buf[idx] = 0
		if v {
			buf[idx] = 1
		}
	case kBytes:
		if s.b[s.i] != '"' {
			return nil, d.tfail(ts, "element %d: BYTES needs a string, found %s", idx, s.describe())
		}
		off := len(buf)
		buf = append(buf, 0, 0, 0, 0)
		var err error
		if buf, err = s.appendStr(buf); err != nil {
			return nil, err
		}
		l := len(buf) - off - 4
		if uint64(l) > math.MaxUint32 {
			return nil, d.tfail(ts, "element %d: BYTES element of %d bytes is too long", idx, l)
		}
		binary.LittleEndian.PutUint32(buf[off:], uint32(l))
	default:
		v, err := d.integer(ts, idx)
		if err != nil {
			return nil, err
		}
		switch kindSize[k] {
		case 1:
			buf[idx] = byte(v)
		case 2:
			binary.LittleEndian.PutUint16(buf[2*idx:], uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(buf[4*idx:], uint32(v))
		default:
			binary.LittleEndian.PutUint64(buf[8*idx:], v)
		}
	}
	return buf, nil
}

// integer reads one integer value for an integer datatype and returns it
// as the bits of a two's-complement uint64.
func (d *decoder) integer(ts *tensorState, idx int64) (uint64, error) {
	s := &d.s
	k := ts.k
	if c := s.b[s.i]; c != '-' && (c < '0' || c > '9') || c == '-' && s.i+1 < len(s.b) && s.b[s.i+1] == 'I' {
		return 0, d.tfail(ts, "element %d: %s needs an integer, found %s", idx, k, s.describe())
	}
	tok, dn, err := s.decimal()
	if err != nil {
		return 0, err
	}
	if dn.isInt {
		neg, mag, ok := dn.neg, dn.mant, true
		if dn.exp != 0 || dn.trunc { // 20 digits or more
			neg, mag, ok = parseIntTok(tok)
		}
		if ok {
			switch {
			case k.signed() && !neg && mag <= kindMax[k]:
				return mag, nil
			case k.signed() && neg && mag <= kindMax[k]+1:
				return uint64(-int64(mag)), nil
			case k.unsigned() && (!neg || mag == 0) && mag <= kindMax[k]:
				return mag, nil
			}
		}
		return 0, d.tfail(ts, "element %d: %s is out of range for %s", idx, tok, k)
	}
	f, err := strconv.ParseFloat(string(tok), 64)
	if err == nil && f != math.Trunc(f) {
		return 0, d.tfail(ts, "element %d: %s needs an integer, found %s", idx, k, tok)
	}
	if err == nil {
		if k.signed() {
			if f >= -(1<<63) && f < 1<<63 {
				if v := int64(f); v >= kindMin[k] && v <= int64(kindMax[k]) {
					return uint64(v), nil
				}
			}
		} else if f >= 0 && f < 1<<64 {
			if v := uint64(f); v <= kindMax[k] {
				return v, nil
			}
		}
	}
	return 0, d.tfail(ts, "element %d: %s is out of range for %s", idx, tok, k)
}

// assignBinary points each binary tensor's Data at its bytes in bin, in
// order, and checks that bin holds exactly those bytes.
func (d *decoder) assignBinary(list []models.Tensor, bins []int64, bin []byte, headerLen int) error {
	s := &d.s
	var off int64
	rest := int64(len(bin))
	for i, sz := range bins {
		if sz < 0 {
			continue
		}
		t := &list[i]
		if headerLen < 0 {
			return s.fail("%s %q has binary_data_size but the body has no %s header", d.what, t.Name, HeaderContentLength)
		}
		k := kindOf(t.DataType)
		n, _ := models.NumElements(t.Shape)
		if k != kBytes {
			if n > math.MaxInt64/kindSize[k] {
				return d.tooLarge("%s %q: shape %v is too large", d.what, t.Name, t.Shape)
			}
			if want := n * kindSize[k]; sz != want {
				return s.fail("%s %q: binary_data_size %d does not match shape %v of %s (%d bytes)", d.what, t.Name, sz, t.Shape, t.DataType, want)
			}
		}
		if sz > rest-off {
			return s.fail("binary_data_size %d for %s %q exceeds remaining %d bytes", sz, d.what, t.Name, rest-off)
		}
		data := bin[off : off+sz : off+sz]
		switch k {
		case kBool:
			for j, b := range data {
				if b > 1 {
					return s.fail("%s %q: BOOL element %d is byte %d, not 0 or 1", d.what, t.Name, j, b)
				}
			}
		case kBytes:
			count, err := models.CountBytesElements(data)
			if err != nil {
				return s.fail("%s %q: %v", d.what, t.Name, err)
			}
			if count != n {
				return s.fail("%s %q: binary data holds %d BYTES elements, shape %v needs %d", d.what, t.Name, count, t.Shape, n)
			}
		}
		t.Data = data
		off += sz
	}
	if off < rest {
		if off == 0 {
			return s.fail("%d bytes follow the JSON header but no %s has binary_data_size", rest, d.what)
		}
		return s.fail("%d trailing bytes after the last binary tensor", rest-off)
	}
	return nil
}
