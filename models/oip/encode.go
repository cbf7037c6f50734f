package oip

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/petrel-mesh/petrel/models"
)

// AppendResponse appends the encoding of r to dst. binary[i] says whether
// output i goes as binary data (nil: all JSON; see Request.BinaryFlags).
// It returns the extended slice and jsonLen, the length of the JSON header
// it appended: when jsonLen is shorter than what was appended, the body
// has binary data and must be sent with Content-Type
// application/octet-stream and Inference-Header-Content-Length: jsonLen;
// otherwise it is plain application/json.
//
// Outputs are checked first (name, datatype, data length against shape,
// BOOL bytes, BYTES framing), so an error leaves dst's contents unchanged.
// Non-finite floats go into JSON as NaN, Infinity and -Infinity, as Triton
// writes them.
func AppendResponse(dst []byte, r *Response, binary []bool) (body []byte, jsonLen int, err error) {
	if len(binary) != 0 && len(binary) != len(r.Outputs) {
		return dst, 0, fmt.Errorf("oip: %d binary flags for %d outputs", len(binary), len(r.Outputs))
	}
	isBin := func(i int) bool { return len(binary) != 0 && binary[i] }
	est := 64 + len(r.ModelName) + len(r.ModelVersion) + len(r.ID)
	for i := range r.Outputs {
		t := &r.Outputs[i]
		k, err := checkTensor(t, "output", i)
		if err != nil {
			return dst, 0, err
		}
		est += 96 + len(t.Name) + 21*len(t.Shape)
		if isBin(i) {
			est += len(t.Data)
		} else {
			est += jsonSize(k, len(t.Data))
		}
	}
	dst = slices.Grow(dst, est)
	start := len(dst)
	dst = append(dst, `{"model_name":`...)
	dst = appendQuoted(dst, r.ModelName)
	if r.ModelVersion != "" {
		dst = append(dst, `,"model_version":`...)
		dst = appendQuoted(dst, r.ModelVersion)
	}
	if r.ID != "" {
		dst = append(dst, `,"id":`...)
		dst = appendQuoted(dst, r.ID)
	}
	if len(r.Parameters) > 0 {
		dst = append(dst, `,"parameters":{`...)
		if dst, err = appendMembers(dst, r.Parameters, false, 0); err != nil {
			return dst[:start], 0, err
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"outputs":[`...)
	for i := range r.Outputs {
		t := &r.Outputs[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendTensorHead(dst, t)
		if isBin(i) {
			dst = append(dst, `,"parameters":{"binary_data_size":`...)
			dst = strconv.AppendInt(dst, int64(len(t.Data)), 10)
			dst = append(dst, "}}"...)
		} else {
			dst = append(dst, `,"data":`...)
			dst = appendData(dst, t.Data, kindOf(t.DataType))
			dst = append(dst, '}')
		}
	}
	dst = append(dst, "]}"...)
	jsonLen = len(dst) - start
	for i := range r.Outputs {
		if isBin(i) {
			dst = append(dst, r.Outputs[i].Data...)
		}
	}
	return dst, jsonLen, nil
}

// AppendRequest appends the encoding of r to dst, for clients and for
// forwarding to peers. With binaryInputs every input goes as binary data
// after the JSON header. It returns the extended slice and the length of
// the JSON header it appended (see AppendResponse). Timeout is sent in
// whole microseconds, rounded up. Keys of r.Parameters that name fields of
// Request (binary_data_output, timeout) are left out: the fields win. The
// same holds for "binary_data" in RequestedOutput.Parameters.
func AppendRequest(dst []byte, r *Request, binaryInputs bool) (body []byte, jsonLen int, err error) {
	est := 64 + len(r.ID)
	for i := range r.Inputs {
		t := &r.Inputs[i]
		k, err := checkTensor(t, "input", i)
		if err != nil {
			return dst, 0, err
		}
		for j := range i {
			if r.Inputs[j].Name == t.Name {
				return dst, 0, fmt.Errorf("oip: duplicate input %q", t.Name)
			}
		}
		est += 96 + len(t.Name) + 21*len(t.Shape)
		if binaryInputs {
			est += len(t.Data)
		} else {
			est += jsonSize(k, len(t.Data))
		}
	}
	for i := range r.Outputs {
		o := &r.Outputs[i]
		if o.Name == "" {
			return dst, 0, fmt.Errorf("oip: requested output %d has no name", i)
		}
		for j := range i {
			if r.Outputs[j].Name == o.Name {
				return dst, 0, fmt.Errorf("oip: duplicate requested output %q", o.Name)
			}
		}
		est += 64 + len(o.Name)
	}
	dst = slices.Grow(dst, est)
	start := len(dst)
	fail := func(err error) ([]byte, int, error) { return dst[:start], 0, err }

	dst = append(dst, '{')
	if r.ID != "" {
		dst = append(dst, `"id":`...)
		dst = appendQuoted(dst, r.ID)
		dst = append(dst, ',')
	}
	if r.BinaryOutput || r.Timeout > 0 || len(r.Parameters) > 0 {
		dst = append(dst, `"parameters":{`...)
		comma := false
		if r.BinaryOutput {
			dst = append(dst, `"binary_data_output":true`...)
			comma = true
		}
		if r.Timeout > 0 {
			if comma {
				dst = append(dst, ',')
			}
			us := (r.Timeout + time.Microsecond - 1) / time.Microsecond
			dst = append(dst, `"timeout":`...)
			dst = strconv.AppendInt(dst, int64(us), 10)
			comma = true
		}
		if dst, err = appendMembers(dst, r.Parameters, comma, 0, "binary_data_output", "timeout"); err != nil {
			return fail(err)
		}
		dst = append(dst, "},"...)
	}
	dst = append(dst, `"inputs":[`...)
	for i := range r.Inputs {
		t := &r.Inputs[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendTensorHead(dst, t)
		if binaryInputs {
			dst = append(dst, `,"parameters":{"binary_data_size":`...)
			dst = strconv.AppendInt(dst, int64(len(t.Data)), 10)
			dst = append(dst, "}}"...)
		} else {
			dst = append(dst, `,"data":`...)
			dst = appendData(dst, t.Data, kindOf(t.DataType))
			dst = append(dst, '}')
		}
	}
	dst = append(dst, ']')
	if len(r.Outputs) > 0 {
		dst = append(dst, `,"outputs":[`...)
		for i := range r.Outputs {
			o := &r.Outputs[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"name":`...)
			dst = appendQuoted(dst, o.Name)
			// binary_data is written when it says something
			// binary_data_output does not.
			explicit := o.Binary || r.BinaryOutput
			if explicit || hasOtherKeys(o.Parameters, "binary_data") {
				dst = append(dst, `,"parameters":{`...)
				if explicit {
					dst = append(dst, `"binary_data":`...)
					dst = strconv.AppendBool(dst, o.Binary)
				}
				if dst, err = appendMembers(dst, o.Parameters, explicit, 0, "binary_data"); err != nil {
					return fail(err)
				}
				dst = append(dst, '}')
			}
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	dst = append(dst, '}')
	jsonLen = len(dst) - start
	if binaryInputs {
		for i := range r.Inputs {
			dst = append(dst, r.Inputs[i].Data...)
		}
	}
	return dst, jsonLen, nil
}

// checkTensor checks that a tensor can be encoded and returns its kind.
func checkTensor(t *models.Tensor, what string, index int) (kind, error) {
	if t.Name == "" {
		return kInvalid, fmt.Errorf("oip: %s %d has no name", what, index)
	}
	k := kindOf(t.DataType)
	if k == kInvalid {
		return k, fmt.Errorf("oip: %s %q: %w %q", what, t.Name, models.ErrUnsupportedDataType, t.DataType)
	}
	n, err := models.NumElements(t.Shape)
	if err != nil {
		return k, fmt.Errorf("oip: %s %q: %w", what, t.Name, err)
	}
	switch k {
	case kBytes:
		count, err := models.CountBytesElements(t.Data)
		if err != nil {
			return k, fmt.Errorf("oip: %s %q: %w", what, t.Name, err)
		}
		if count != n {
			return k, fmt.Errorf("oip: %s %q: shape %v needs %d BYTES elements, data holds %d", what, t.Name, t.Shape, n, count)
		}
	default:
		if n > math.MaxInt64/kindSize[k] || int64(len(t.Data)) != n*kindSize[k] {
			return k, fmt.Errorf("oip: %s %q: shape %v of %s needs %d bytes, data has %d", what, t.Name, t.Shape, t.DataType, n*kindSize[k], len(t.Data))
		}
		if k == kBool {
			for i, b := range t.Data {
				if b > 1 {
					return k, fmt.Errorf("oip: %s %q: BOOL element %d is byte %d, not 0 or 1", what, t.Name, i, b)
				}
			}
		}
	}
	return k, nil
}

// jsonSize estimates the JSON size of data of the given kind.
func jsonSize(k kind, n int) int {
	switch k {
	case kBytes:
		return n + n/4 + 2
	case kBool:
		return 6*n + 2
	case kF32, kF64, kF16, kBF16:
		return n/int(kindSize[k])*16 + 2
	default:
		return n/int(kindSize[k])*(3*int(kindSize[k])+2) + 2
	}
}

// appendTensorHead appends {"name":..,"datatype":..,"shape":[..] without
// closing the object.
func appendTensorHead(dst []byte, t *models.Tensor) []byte {
	dst = append(dst, `{"name":`...)
	dst = appendQuoted(dst, t.Name)
	dst = append(dst, `,"datatype":"`...)
	dst = append(dst, t.DataType...)
	dst = append(dst, `","shape":[`...)
	for i, d := range t.Shape {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, d, 10)
	}
	return append(dst, ']')
}

// appendData appends a flat JSON array of the elements in data, which
// checkTensor has found well formed.
func appendData(dst, data []byte, k kind) []byte {
	dst = append(dst, '[')
	le := binary.LittleEndian
	switch k {
	case kF32:
		for i := 0; i+4 <= len(data); i += 4 {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendFloat(dst, float64(math.Float32frombits(le.Uint32(data[i:]))), 32)
		}
	case kF64:
		for i := 0; i+8 <= len(data); i += 8 {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendFloat(dst, math.Float64frombits(le.Uint64(data[i:])), 64)
		}
	case kF16, kBF16:
		conv := fp16ToF64
		if k == kBF16 {
			conv = bf16ToF64
		}
		for i := 0; i+2 <= len(data); i += 2 {
			if i > 0 {
				dst = append(dst, ',')
			}
			// Every 16-bit float is a float32; its shortest float32
			// spelling reads back to the same 16-bit value.
			dst = appendFloat(dst, conv(le.Uint16(data[i:])), 32)
		}
	case kBool:
		for i, b := range data {
			if i > 0 {
				dst = append(dst, ',')
			}
			if b != 0 {
				dst = append(dst, "true"...)
			} else {
				dst = append(dst, "false"...)
			}
		}
	case kBytes:
		for i := 0; len(data) >= 4; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			l := int(le.Uint32(data))
			dst = appendQuoted(dst, data[4:4+l])
			data = data[4+l:]
		}
	default:
		size := int(kindSize[k])
		for i := 0; i+size <= len(data); i += size {
			if i > 0 {
				dst = append(dst, ',')
			}
			switch k {
			case kU8:
				dst = strconv.AppendUint(dst, uint64(data[i]), 10)
			case kU16:
				dst = strconv.AppendUint(dst, uint64(le.Uint16(data[i:])), 10)
			case kU32:
				dst = strconv.AppendUint(dst, uint64(le.Uint32(data[i:])), 10)
			case kU64:
				dst = strconv.AppendUint(dst, le.Uint64(data[i:]), 10)
			case kI8:
				dst = strconv.AppendInt(dst, int64(int8(data[i])), 10)
			case kI16:
				dst = strconv.AppendInt(dst, int64(int16(le.Uint16(data[i:]))), 10)
			case kI32:
				dst = strconv.AppendInt(dst, int64(int32(le.Uint32(data[i:]))), 10)
			case kI64:
				dst = strconv.AppendInt(dst, int64(le.Uint64(data[i:])), 10)
			}
		}
	}
	return append(dst, ']')
}

// appendFloat appends f, spelling non-finite values as Triton does. With
// bits 32, f must be a float32 value; appendFloat32 writes it.
func appendFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case f != f:
		return append(dst, "NaN"...)
	case f > math.MaxFloat64:
		return append(dst, "Infinity"...)
	case f < -math.MaxFloat64:
		return append(dst, "-Infinity"...)
	}
	if bits == 32 {
		return appendFloat32(dst, float32(f))
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

const hexDigits = "0123456789abcdef"

// appendQuoted appends s as a JSON string. Bytes that are not valid UTF-8
// are copied as they are, and the decoder reads them back unchanged.
func appendQuoted[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func hasOtherKeys(m map[string]any, skip string) bool {
	for k := range m {
		if k != skip {
			return true
		}
	}
	return false
}

// appendMembers appends the members of m in key order, leaving out the
// keys in skip. comma says whether a member was already written.
func appendMembers(dst []byte, m map[string]any, comma bool, depth int, skip ...string) ([]byte, error) {
	if len(m) == 0 {
		return dst, nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if !slices.Contains(skip, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var err error
	for _, k := range keys {
		if comma {
			dst = append(dst, ',')
		}
		comma = true
		dst = appendQuoted(dst, k)
		dst = append(dst, ':')
		if dst, err = appendValue(dst, m[k], depth+1); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// appendValue appends a parameter value. Floats that happen to be integral
// keep a ".0" so that they decode as float64 again.
func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxValueDepth {
		return dst, fmt.Errorf("oip: parameter value nested deeper than %d levels", maxValueDepth)
	}
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case string:
		return appendQuoted(dst, v), nil
	case int:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int8:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int16:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int32:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(dst, v, 10), nil
	case uint:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint8:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint16:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint32:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint64:
		return strconv.AppendUint(dst, v, 10), nil
	case float32:
		return appendParamFloat(dst, float64(v), 32)
	case float64:
		return appendParamFloat(dst, v, 64)
	case json.Number:
		s := scanner{b: []byte(v)}
		if _, _, err := s.num(); err != nil || s.i != len(v) {
			return dst, fmt.Errorf("oip: parameter value %q is not a JSON number", string(v))
		}
		return append(dst, v...), nil
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case map[string]any:
		dst = append(dst, '{')
		dst, err := appendMembers(dst, v, false, depth)
		if err != nil {
			return dst, err
		}
		return append(dst, '}'), nil
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return dst, fmt.Errorf("oip: parameter value: %w", err)
		}
		return append(dst, b...), nil
	}
}

func appendParamFloat(dst []byte, f float64, bits int) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, fmt.Errorf("oip: parameter value %v cannot be written as JSON", f)
	}
	n := len(dst)
	if bits == 32 {
		dst = appendFloat32(dst, float32(f))
	} else {
		dst = strconv.AppendFloat(dst, f, 'g', -1, bits)
	}
	for _, c := range dst[n:] {
		if c == '.' || c == 'e' {
			return dst, nil
		}
	}
	return append(dst, '.', '0'), nil
}
