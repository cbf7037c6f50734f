// Package oip encodes and decodes Open Inference Protocol (KServe v2,
// Triton) inference requests and responses: the JSON bodies and the
// binary_tensor_data extension.
//
// # Wire format
//
// A request body is a JSON object:
//
//	{
//	  "id": "r1",                                  // optional
//	  "parameters": {"binary_data_output": true,   // optional
//	                 "timeout": 250000},           //   microseconds
//	  "inputs": [
//	    {"name": "x", "datatype": "FP32", "shape": [1, 4],
//	     "data": [1, 2, 3, 4]},                     // flat, or nested as the shape
//	    {"name": "y", "datatype": "UINT8", "shape": [3],
//	     "parameters": {"binary_data_size": 3}}     // binary, after the JSON
//	  ],
//	  "outputs": [                                  // optional: which outputs
//	    {"name": "z", "parameters": {"binary_data": true}}
//	  ]
//	}
//
// JSON data: BOOL as true/false, BYTES as strings, every other datatype as
// numbers. Integers must be integral and within the datatype's range (1.5
// and 300 are refused for INT32 and UINT8); FP32 and FP64 values are
// correctly rounded and refused beyond range; FP16 and BF16 values are
// read as float64, rounded to nearest even (as numpy does) and refused
// when they overflow. Non-finite floats are spelled NaN,
// Infinity and -Infinity (also Inf and -Inf on input), as Triton does. A
// rank-0 tensor has shape [] and one value, [v].
//
// Binary data (the binary_tensor_data extension): when an input has the
// parameter binary_data_size instead of "data", its bytes follow the JSON
// object in the body, and the HTTP header Inference-Header-Content-Length
// gives the JSON object's length. Binary tensors follow in the order of
// the inputs that have binary_data_size, back to back with no padding,
// each little-endian and row-major; BOOL is one byte (0 or 1) and BYTES
// is each element as a 4-byte little-endian length and the bytes. The body
// must end exactly after the last one. Tensor.Data uses the same layout,
// so binary tensors are taken without conversion.
//
// Responses mirror requests: {"model_name", "model_version", "id",
// "parameters", "outputs": [{"name", "datatype", "shape", "data"}]}. An
// output goes as binary when the request's output entry says
// "binary_data": true, or when the request parameter "binary_data_output"
// is true and the entry does not say false; it then carries
// "parameters": {"binary_data_size": n} and its bytes follow the JSON.
// Such a body is sent as application/octet-stream with
// Inference-Header-Content-Length; an all-JSON body as application/json.
// Errors are {"error": "message"} (EncodeError).
//
// # Serving a request
//
//  1. hl, err := ParseHeaderLength(h.Get(HeaderContentLength))
//  2. req, err := DecodeRequest(body, hl, limits); a failure wraps
//     ErrBadRequest (400), and ErrTooLarge (413) when beyond limits.
//  3. Run the model with req.Inputs and req.OutputNames().
//  4. body, jsonLen, err := AppendResponse(buf[:0], resp,
//     req.BinaryFlags(nil, resp.Outputs)); when jsonLen < len(body) set
//     the content type to ContentTypeBinary and HeaderContentLength to
//     jsonLen, else ContentTypeJSON.
//
// # Aliasing
//
// DecodeRequest and DecodeResponse do not copy binary tensors: their Data
// are sub-slices of the body, with capacity clipped so that appending to
// one never writes over the next. Keep the body unchanged and alive while
// the decoded value is in use; data decoded from JSON is freshly
// allocated. The encoders copy what they append and keep no reference.
//
// # Strictness and limits
//
// DecodeRequest refuses anything it does not understand: unknown fields,
// duplicate fields and names, data with the wrong number of values,
// binary sizes that do not match the shape, trailing bytes, and the
// classification and shared-memory extensions, which Petrel does not
// implement. Unknown tensor parameters are ignored; other request and
// output parameters are kept in Parameters maps. Every size the client
// declares is checked against the bytes actually present and against
// Limits before anything is allocated, so the memory a request can make
// the decoder allocate is a small multiple of its body. DecodeResponse,
// used by clients, skips unknown fields instead.
//
// JSON strings are taken byte for byte: bytes that are not valid UTF-8
// pass through unchanged in both directions (send such BYTES as binary
// data to stay within strict JSON).
package oip
