package oip

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
)

// in builds a one-input request body with the given input fields.
func in(fields string) string { return `{"inputs":[{` + fields + `}]}` }

// x is an FP32 input named "x" of the given shape and data.
func x(shape, data string) string {
	return in(`"name":"x","datatype":"FP32","shape":` + shape + `,"data":` + data)
}

func binBody(hdr string, bin ...byte) ([]byte, int) {
	return append([]byte(hdr), bin...), len(hdr)
}

func TestDecodeRequestErrors(t *testing.T) {
	f63 := "[" + strings.Repeat("1,", 62) + "1]"
	type tc struct {
		name    string
		body    string
		hl      int // header length; -1 none; -2 means len(hdr) of a binBody
		bin     []byte
		lim     Limits
		want    string
		tooMany bool // wraps ErrTooLarge
	}
	cases := []tc{
		// Malformed JSON.
		{name: "empty", body: "", hl: -1, want: "must be a JSON object, found end of input"},
		{name: "not object", body: "[]", hl: -1, want: "must be a JSON object, found an array"},
		{name: "truncated", body: `{"inputs":[`, hl: -1, want: "unexpected end of input"},
		{name: "missing comma", body: `{"inputs":[] "id":"a"}`, hl: -1, want: `expected ',' or '}', found a string`},
		{name: "trailing comma", body: `{"inputs":[],}`, hl: -1, want: `expected a string key, found character '}'`},
		{name: "bad literal", body: `{"id":tru,"inputs":[]}`, hl: -1, want: "expected a string, found \"tru\""},
		{name: "control char", body: "{\"id\":\"a\x01\",\"inputs\":[]}", hl: -1, want: "control character 0x01 in string"},
		{name: "bad escape", body: `{"id":"a\q","inputs":[]}`, hl: -1, want: `invalid escape "\\q"`},
		{name: "bad unicode escape", body: `{"id":"\u12G4","inputs":[]}`, hl: -1, want: `invalid \u escape`},
		{name: "unterminated string", body: `{"id":"abc`, hl: -1, want: "unterminated string"},
		{name: "bad number", body: x("[1]", "[01]"), hl: -1, want: `expected ',' or ']', found "1"`},
		{name: "bad number 2", body: x("[1]", "[1.]"), hl: -1, want: "expected a digit after the decimal point"},
		{name: "bad exponent", body: x("[1]", "[1e]"), hl: -1, want: "expected a digit in the exponent"},
		{name: "trailing garbage", body: `{"inputs":[]} x`, hl: -1, want: "unexpected data after the JSON object at offset 14 (binary tensors need the Inference-Header-Content-Length header)"},
		{name: "deep parameters", body: `{"inputs":[],"parameters":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}}`, hl: -1, want: "nesting deeper than 32 levels"},
		{name: "id not string", body: `{"id":5,"inputs":[]}`, hl: -1, want: `expected a string, found "5"`},

		// Structure.
		{name: "unknown field", body: `{"inputs":[],"foo":1}`, hl: -1, want: `unknown field "foo" in the inference request`},
		{name: "duplicate field", body: `{"inputs":[],"inputs":[]}`, hl: -1, want: `duplicate field "inputs"`},
		{name: "missing inputs", body: `{"id":"a"}`, hl: -1, want: `the inference request has no "inputs"`},
		{name: "inputs not array", body: `{"inputs":{}}`, hl: -1, want: `"inputs" must be an array, found an object`},
		{name: "input not object", body: `{"inputs":[1]}`, hl: -1, want: `input 0 must be an object, found "1"`},
		{name: "unknown input field", body: in(`"name":"x","datatype":"FP32","shape":[1],"data":[1],"dims":[1]`), hl: -1, want: `input "x": unknown field "dims"`},
		{name: "duplicate input field", body: in(`"name":"x","datatype":"FP32","datatype":"FP32"`), hl: -1, want: `input "x": duplicate field "datatype"`},
		{name: "missing name", body: in(`"datatype":"FP32","shape":[1],"data":[1]`), hl: -1, want: `input 0: missing "name"`},
		{name: "empty name", body: in(`"name":"","datatype":"FP32","shape":[1],"data":[1]`), hl: -1, want: `input 0: empty name`},
		{name: "missing datatype", body: in(`"name":"x","shape":[1],"data":[1]`), hl: -1, want: `input "x": missing "datatype"`},
		{name: "missing shape", body: in(`"name":"x","datatype":"FP32","data":[1]`), hl: -1, want: `input "x": missing "shape"`},
		{name: "unknown datatype", body: in(`"name":"x","datatype":"FP8","shape":[1],"data":[1]`), hl: -1, want: `input "x": unsupported datatype "FP8"`},
		{name: "lowercase datatype", body: in(`"name":"x","datatype":"fp32","shape":[1],"data":[1]`), hl: -1, want: `unsupported datatype "fp32"`},
		{name: "duplicate input", body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]},{"name":"x","datatype":"FP32","shape":[1],"data":[2]}]}`, hl: -1, want: `duplicate input "x"`},
		{name: "both data and binary", body: in(`"name":"x","datatype":"FP32","shape":[1],"data":[1],"parameters":{"binary_data_size":4}`), hl: -1, want: `input "x": has both "data" and parameters.binary_data_size`},
		{name: "neither data nor binary", body: in(`"name":"x","datatype":"FP32","shape":[1]`), hl: -1, want: `input "x": has neither "data" nor parameters.binary_data_size`},
		{name: "null data", body: in(`"name":"x","datatype":"FP32","shape":[1],"data":null`), hl: -1, want: `has neither "data" nor`},
		{name: "data not array", body: x("[1]", "5"), hl: -1, want: `input "x": "data" must be an array, found "5"`},
		{name: "shared memory", body: in(`"name":"x","datatype":"FP32","shape":[1],"parameters":{"shared_memory_region":"r"}`), hl: -1, want: `input "x": parameter "shared_memory_region": the shared memory extension is not supported`},
		{name: "binary size negative", body: in(`"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":-4}`), hl: -1, want: `input "x": binary_data_size must be a non-negative integer, found "-4"`},
		{name: "binary size float", body: in(`"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4.0}`), hl: -1, want: `binary_data_size must be a non-negative integer, found "4.0"`},

		// Shapes and limits.
		{name: "negative dim", body: x("[-1,2]", "[]"), hl: -1, want: `input "x": negative dimension -1 in shape`},
		{name: "fractional dim", body: x("[1.5]", "[1]"), hl: -1, want: `input "x": shape dimension 1.5 is not an integer`},
		{name: "string dim", body: x(`["2"]`, "[1]"), hl: -1, want: `input "x": shape dimension must be an integer, found a string`},
		{name: "huge dim", body: x("[99999999999999999999]", "[1]"), hl: -1, want: `shape dimension 99999999999999999999 is too large`, tooMany: true},
		{name: "overflowing shape", body: x("[4294967296,4294967296]", "[1]"), hl: -1, want: `shape [4294967296 4294967296] is too large`, tooMany: true},
		{name: "too many elements", body: x("[100000,100000]", "[1]"), hl: -1, want: `input "x": shape [100000 100000] has 10000000000 elements; 67108864 more are allowed in this request (limit 67108864)`, tooMany: true},
		{name: "elements across inputs", body: `{"inputs":[{"name":"a","datatype":"FP32","shape":[3],"data":[1,2,3]},{"name":"b","datatype":"FP32","shape":[3],"data":[1,2,3]}]}`, hl: -1, lim: Limits{MaxElements: 5}, want: `input "b": shape [3] has 3 elements; 2 more are allowed in this request (limit 5)`, tooMany: true},
		{name: "rank limit", body: x("[1,1,1,1]", "[1]"), hl: -1, lim: Limits{MaxRank: 3}, want: `input "x": shape has more than 3 dimensions`, tooMany: true},
		{name: "tensor limit", body: `{"inputs":[{"name":"a","datatype":"FP32","shape":[1],"data":[1]},{"name":"b","datatype":"FP32","shape":[1],"data":[1]}]}`, hl: -1, lim: Limits{MaxTensors: 1}, want: `more than 1 inputs`, tooMany: true},
		{name: "body limit", body: x("[1]", "[1]"), hl: -1, lim: Limits{MaxBodyBytes: 10}, want: `body of 66 bytes exceeds the limit of 10`, tooMany: true},
		{name: "output limit", body: `{"inputs":[],"outputs":[{"name":"a"},{"name":"b"}]}`, hl: -1, lim: Limits{MaxTensors: 1}, want: `more than 1 requested outputs`, tooMany: true},

		// Data count and nesting.
		{name: "too few values", body: x("[1,64]", f63), hl: -1, want: `input "x": expected 64 FP32 values for shape [1 64], got 63`},
		{name: "too many values", body: x("[2]", "[1,2,3]"), hl: -1, want: `input "x": expected 2 FP32 values for shape [2], got 3`},
		{name: "scalar needs one", body: x("[]", "[]"), hl: -1, want: `input "x": expected 1 FP32 values for shape [], got 0`},
		{name: "bare scalar", body: x("[]", "5"), hl: -1, want: `"data" must be an array, found "5"`},
		{name: "shape far beyond data", body: x("[1000000]", "[1,2]"), hl: -1, want: `input "x": expected 1000000 FP32 values for shape [1000000], got 2`},
		{name: "nested short row", body: x("[2,3]", "[[1,2,3],[4,5]]"), hl: -1, want: `input "x": nested data does not match shape [2 3]: an array for dimension 1 has 2 elements, expected 3`},
		{name: "nested long row", body: x("[2,3]", "[[1,2,3],[4,5,6,7]]"), hl: -1, want: `an array for dimension 1 has 4 elements, expected 3`},
		{name: "nested wrong rows", body: x("[2,3]", "[[1,2,3],[4,5,6],[7,8,9]]"), hl: -1, want: `an array for dimension 0 has 3 elements, expected 2`},
		{name: "nested transposed", body: x("[2,3]", "[[1,2],[3,4],[5,6]]"), hl: -1, want: `an array for dimension 1 has 2 elements, expected 3`},
		{name: "nested too deep", body: x("[2,1]", "[[[1]],[[2]]]"), hl: -1, want: `input "x": data is nested deeper than shape [2 1]`},
		{name: "nested rank 1", body: x("[2]", "[[1],[2]]"), hl: -1, want: `input "x": element 0 is an array: data must be flat, or nested exactly as shape [2]`},
		{name: "mixed nesting", body: x("[2,2]", "[[1,2],3,4]"), hl: -1, want: `nested data does not match shape [2 2]: expected an array for dimension 1, found "3"`},
		{name: "half flattened", body: x("[2,2,2]", "[[1,2,3,4],[5,6,7,8]]"), hl: -1, want: `expected an array for dimension 2, found "1"`},

		// Values.
		{name: "int fraction", body: in(`"name":"i","datatype":"INT32","shape":[2],"data":[1,1.5]`), hl: -1, want: `input "i": element 1: INT32 needs an integer, found 1.5`},
		{name: "uint8 range", body: in(`"name":"u","datatype":"UINT8","shape":[1],"data":[300]`), hl: -1, want: `input "u": element 0: 300 is out of range for UINT8`},
		{name: "uint negative", body: in(`"name":"u","datatype":"UINT32","shape":[1],"data":[-1]`), hl: -1, want: `element 0: -1 is out of range for UINT32`},
		{name: "uint64 range", body: in(`"name":"u","datatype":"UINT64","shape":[1],"data":[18446744073709551616]`), hl: -1, want: `18446744073709551616 is out of range for UINT64`},
		{name: "int8 range", body: in(`"name":"i","datatype":"INT8","shape":[1],"data":[-129]`), hl: -1, want: `-129 is out of range for INT8`},
		{name: "int64 range", body: in(`"name":"i","datatype":"INT64","shape":[1],"data":[9223372036854775808]`), hl: -1, want: `9223372036854775808 is out of range for INT64`},
		{name: "uint8 exponent range", body: in(`"name":"u","datatype":"UINT8","shape":[1],"data":[1e3]`), hl: -1, want: `1e3 is out of range for UINT8`},
		{name: "int NaN", body: in(`"name":"i","datatype":"INT16","shape":[1],"data":[NaN]`), hl: -1, want: `element 0: INT16 needs an integer, found "NaN"`},
		{name: "int -Infinity", body: in(`"name":"i","datatype":"INT16","shape":[1],"data":[-Infinity]`), hl: -1, want: `element 0: INT16 needs an integer, found "-Infinity"`},
		{name: "int string", body: in(`"name":"i","datatype":"INT16","shape":[1],"data":["1"]`), hl: -1, want: `element 0: INT16 needs an integer, found a string`},
		{name: "fp32 range", body: x("[2]", "[1, 1e39]"), hl: -1, want: `input "x": element 1: 1e39 is out of range for FP32`},
		{name: "fp64 range", body: in(`"name":"d","datatype":"FP64","shape":[1],"data":[-1e309]`), hl: -1, want: `-1e309 is out of range for FP64`},
		{name: "fp16 range", body: in(`"name":"h","datatype":"FP16","shape":[1],"data":[70000]`), hl: -1, want: `input "h": element 0: 70000 is out of range for FP16`},
		{name: "bf16 range", body: in(`"name":"h","datatype":"BF16","shape":[1],"data":[3.4e38]`), hl: -1, want: `is out of range for BF16`},
		{name: "fp32 string", body: x("[1]", `["1.5"]`), hl: -1, want: `element 0: FP32 needs a number, found a string`},
		{name: "fp32 bool", body: x("[1]", `[true]`), hl: -1, want: `element 0: FP32 needs a number, found "true"`},
		{name: "fp32 null", body: x("[1]", `[null]`), hl: -1, want: `element 0: FP32 needs a number, found "null"`},
		{name: "bool number", body: in(`"name":"b","datatype":"BOOL","shape":[2],"data":[true,1]`), hl: -1, want: `input "b": element 1: BOOL needs true or false, found "1"`},
		{name: "bytes number", body: in(`"name":"s","datatype":"BYTES","shape":[1],"data":[5]`), hl: -1, want: `input "s": element 0: BYTES needs a string, found "5"`},

		// Request parameters and outputs.
		{name: "binary_data_output type", body: `{"inputs":[],"parameters":{"binary_data_output":"yes"}}`, hl: -1, want: `parameter "binary_data_output" must be true or false, found a string`},
		{name: "timeout negative", body: `{"inputs":[],"parameters":{"timeout":-5}}`, hl: -1, want: `parameter "timeout" must be a non-negative integer (microseconds), found "-5"`},
		{name: "timeout huge", body: `{"inputs":[],"parameters":{"timeout":9223372036854775807}}`, hl: -1, want: `parameter "timeout" of 9223372036854775807 microseconds is too large`},
		{name: "duplicate parameter", body: `{"inputs":[],"parameters":{"a":1,"a":2}}`, hl: -1, want: `duplicate parameter "a"`},
		{name: "parameters not object", body: `{"inputs":[],"parameters":[]}`, hl: -1, want: `"parameters" must be an object, found an array`},
		{name: "classification", body: `{"inputs":[],"outputs":[{"name":"y","parameters":{"classification":3}}]}`, hl: -1, want: `output "y": the classification extension is not supported`},
		{name: "output unknown field", body: `{"inputs":[],"outputs":[{"name":"y","binary":true}]}`, hl: -1, want: `output "y": unknown field "binary"`},
		{name: "output missing name", body: `{"inputs":[],"outputs":[{"parameters":{}}]}`, hl: -1, want: `output 0: missing "name"`},
		{name: "duplicate output", body: `{"inputs":[],"outputs":[{"name":"y"},{"name":"y"}]}`, hl: -1, want: `duplicate output "y" in "outputs"`},
		{name: "binary_data type", body: `{"inputs":[],"outputs":[{"name":"y","parameters":{"binary_data":1}}]}`, hl: -1, want: `output "y": parameter "binary_data" must be true or false, found "1"`},

		// Binary framing.
		{name: "header negative", body: x("[1]", "[1]"), hl: -5, want: `Inference-Header-Content-Length -5 is negative`},
		{name: "header beyond body", body: "0123456789", hl: 900, want: `Inference-Header-Content-Length 900 exceeds body length 10`},
		{name: "binary without header", body: in(`"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}`), hl: -1, want: `input "x" has binary_data_size but the body has no Inference-Header-Content-Length header`},
		{name: "binary size vs shape", body: in(`"name":"x","datatype":"FP32","shape":[2,2],"parameters":{"binary_data_size":12}`), hl: -2, bin: make([]byte, 12), want: `input "x": binary_data_size 12 does not match shape [2 2] of FP32 (16 bytes)`},
		{name: "binary truncated", body: in(`"name":"x","datatype":"FP32","shape":[3],"parameters":{"binary_data_size":12}`), hl: -2, bin: make([]byte, 8), want: `binary_data_size 12 for input "x" exceeds remaining 8 bytes`},
		{name: "binary trailing", body: in(`"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}`), hl: -2, bin: make([]byte, 7), want: `3 trailing bytes after the last binary tensor`},
		{name: "binary unclaimed", body: x("[1]", "[1]"), hl: -2, bin: make([]byte, 3), want: `3 bytes follow the JSON header but no input has binary_data_size`},
		{name: "header cuts json", body: x("[1]", "[1]"), hl: 20, want: `invalid JSON at offset 20: unterminated string`},
		{name: "header too short for data", body: `{"inputs":[]}  `, hl: 13, bin: nil, want: `2 bytes follow the JSON header but no input has binary_data_size`},
		{name: "binary bool byte", body: in(`"name":"b","datatype":"BOOL","shape":[3],"parameters":{"binary_data_size":3}`), hl: -2, bin: []byte{1, 0, 2}, want: `input "b": BOOL element 2 is byte 2, not 0 or 1`},
		{name: "binary bytes framing", body: in(`"name":"s","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":6}`), hl: -2, bin: []byte{9, 0, 0, 0, 'a', 'b'}, want: `input "s": BYTES element 0: length 9 exceeds remaining 2 bytes`},
		{name: "binary bytes prefix", body: in(`"name":"s","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":2}`), hl: -2, bin: []byte{9, 0}, want: `BYTES element 0: truncated length prefix`},
		{name: "binary bytes count", body: in(`"name":"s","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":5}`), hl: -2, bin: []byte{1, 0, 0, 0, 'a'}, want: `input "s": binary data holds 1 BYTES elements, shape [2] needs 2`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := []byte(c.body)
			hl := c.hl
			if hl == -2 {
				body, hl = binBody(c.body, c.bin...)
			} else if c.bin != nil {
				body = append(body, c.bin...)
			}
			r, err := DecodeRequest(body, hl, c.lim)
			if err == nil {
				t.Fatalf("no error; decoded %+v", r)
			}
			if !errors.Is(err, ErrBadRequest) {
				t.Errorf("%v does not wrap ErrBadRequest", err)
			}
			if errors.Is(err, ErrTooLarge) != c.tooMany {
				t.Errorf("%v: wraps ErrTooLarge = %v, want %v", err, !c.tooMany, c.tooMany)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\nwant it to contain %q", err, c.want)
			}
		})
	}
}

func TestUnsupportedDatatypeWrapsModelsError(t *testing.T) {
	_, err := DecodeRequest([]byte(in(`"name":"x","datatype":"STRING","shape":[1],"data":["a"]`)), -1, Limits{})
	if !errors.Is(err, models.ErrUnsupportedDataType) || !errors.Is(err, ErrBadRequest) {
		t.Fatal(err)
	}
}

// TestDeclaredSizesDoNotAllocate checks that shapes and binary sizes the
// body cannot back are refused before the decoder allocates for them.
func TestDeclaredSizesDoNotAllocate(t *testing.T) {
	bodies := []struct {
		body []byte
		hl   int
	}{
		{[]byte(x("[60000000]", "[1,2,3]")), -1},
		{[]byte(in(`"name":"s","datatype":"BYTES","shape":[60000000],"data":["a"]`)), -1},
		{[]byte(in(`"name":"x","datatype":"FP64","shape":[60000000],"parameters":{"binary_data_size":480000000}`)), -1},
	}
	bodies = append(bodies, struct {
		body []byte
		hl   int
	}{append([]byte(in(`"name":"x","datatype":"FP64","shape":[60000000],"parameters":{"binary_data_size":480000000}`)), 1, 2, 3), 101})
	for _, b := range bodies {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := DecodeRequest(b.body, b.hl, Limits{})
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatalf("%s: no error", b.body)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
			t.Errorf("%s: allocated %d bytes for a %d-byte body (%v)", b.body, d, len(b.body), err)
		}
	}
}

func TestDecodeResponseErrors(t *testing.T) {
	cases := []struct {
		body string
		hl   int
		want string
	}{
		{`{"outputs":[{"name":"y","datatype":"FP32","shape":[2],"data":[1]}]}`, -1, `output "y": expected 2 FP32 values for shape [2], got 1`},
		{`{"outputs":[{"name":"y","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]}`, -1, `output "y" has binary_data_size but the body has no Inference-Header-Content-Length header`},
		{`{"outputs":[{"name":"y","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]}`, 92, `binary_data_size 4 for output "y" exceeds remaining 0 bytes`},
		{`{"outputs":5}`, -1, `"outputs" must be an array, found "5"`},
		{`{"outputs":[],"outputs":[]}`, -1, `duplicate field "outputs" in the inference response`},
		{`nope`, -1, `the inference response must be a JSON object`},
		{`{}`, 5, `Inference-Header-Content-Length 5 exceeds body length 2`},
	}
	for _, c := range cases {
		_, err := DecodeResponse([]byte(c.body), c.hl)
		if err == nil || !errors.Is(err, ErrBadResponse) || errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("DecodeResponse(%s): %v\nwant a bad response error containing %q", c.body, err, c.want)
		}
	}
	// Responses tolerate fields a newer server may add.
	r, err := DecodeResponse([]byte(`{"model_name":"m","extra":{"a":[1,2]},"outputs":[{"name":"y","datatype":"INT8","shape":[1],"data":[1],"future":true,"parameters":{"note":"x"}}]}`), -1)
	if err != nil || len(r.Outputs) != 1 || r.Outputs[0].Data[0] != 1 {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestEncodeErrors(t *testing.T) {
	good := mk("y", models.FP32, []int64{2}, []float32{1, 2})
	cases := []struct {
		name string
		out  models.Tensor
		bin  []bool
		want string
	}{
		{"no name", models.Tensor{DataType: models.FP32, Shape: []int64{0}}, nil, "output 0 has no name"},
		{"bad datatype", models.Tensor{Name: "y", DataType: "FP8", Shape: []int64{1}, Data: []byte{0}}, nil, `output "y": unsupported datatype "FP8"`},
		{"short data", models.Tensor{Name: "y", DataType: models.FP32, Shape: []int64{2}, Data: make([]byte, 7)}, nil, `output "y": shape [2] of FP32 needs 8 bytes, data has 7`},
		{"negative dim", models.Tensor{Name: "y", DataType: models.FP32, Shape: []int64{-1}}, nil, `negative dimension -1`},
		{"bool byte", models.Tensor{Name: "y", DataType: models.Bool, Shape: []int64{1}, Data: []byte{2}}, nil, `BOOL element 0 is byte 2`},
		{"bytes framing", models.Tensor{Name: "y", DataType: models.Bytes, Shape: []int64{1}, Data: []byte{5, 0, 0, 0}}, nil, `length 5 exceeds remaining 0 bytes`},
		{"bytes count", mk("y", models.Bytes, []int64{3}, []string{"a"}), nil, `shape [3] needs 3 BYTES elements, data holds 1`},
		{"flags", good, []bool{true, false}, "2 binary flags for 1 outputs"},
	}
	for _, c := range cases {
		dst := []byte("keep")
		got, _, err := AppendResponse(dst, &Response{Outputs: []models.Tensor{c.out}}, c.bin)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if string(got) != "keep" {
			t.Errorf("%s: dst changed to %q", c.name, got)
		}
	}
	if _, _, err := AppendRequest(nil, &Request{Inputs: []models.Tensor{good, good}}, false); err == nil || !strings.Contains(err.Error(), `duplicate input "y"`) {
		t.Errorf("duplicate inputs: %v", err)
	}
	if _, _, err := AppendRequest(nil, &Request{Outputs: []RequestedOutput{{Name: ""}}}, false); err == nil {
		t.Error("unnamed requested output accepted")
	}
	if _, _, err := AppendResponse(nil, &Response{Parameters: map[string]any{"x": func() {}}}, nil); err == nil {
		t.Error("unencodable parameter accepted")
	}
	if _, _, err := AppendResponse(nil, &Response{Parameters: map[string]any{"x": mathNaN()}}, nil); err == nil {
		t.Error("NaN parameter accepted")
	}
}

func TestLimitsValidate(t *testing.T) {
	if err := (Limits{}).Validate(); err != nil {
		t.Fatal(err)
	}
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, l := range []Limits{{MaxBodyBytes: -1}, {MaxTensors: -1}, {MaxElements: -1}, {MaxRank: -1}} {
		if l.Validate() == nil {
			t.Errorf("%+v accepted", l)
		}
	}
}
