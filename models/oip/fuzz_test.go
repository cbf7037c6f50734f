package oip

import (
	"errors"
	"reflect"
	"testing"
)

// The fuzz targets assert that decoding never panics, that failures wrap
// the right sentinel, that what decodes is valid, and that it re-encodes
// (as JSON and as binary) to bodies that decode to the same thing.
// Seeds live in testdata/fuzz/<FuzzName>/ (see corpus_test.go).

func FuzzDecodeRequestJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		checkRequest(t, body, -1)
	})
}

func FuzzDecodeRequestBinary(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, headerLen int) {
		checkRequest(t, body, headerLen)
	})
}

func FuzzDecodeResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, headerLen int) {
		checkResponse(t, body, headerLen)
	})
}

// fuzzLimits keep the fuzzer from spending its time on huge allocations
// that the limits exist to allow.
var fuzzLimits = Limits{MaxElements: 1 << 16}

func checkRequest(t *testing.T, body []byte, hl int) {
	t.Helper()
	orig := string(body)
	r, err := DecodeRequest(body, hl, fuzzLimits)
	if string(body) != orig {
		t.Fatal("DecodeRequest modified the body")
	}
	if err != nil {
		if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("error does not wrap ErrBadRequest: %v", err)
		}
		if r != nil {
			t.Fatal("non-nil request with an error")
		}
		return
	}
	for i := range r.Inputs {
		if err := r.Inputs[i].Validate(); err != nil {
			t.Fatalf("decoded an invalid input: %v", err)
		}
		if r.Inputs[i].Shape == nil {
			t.Fatalf("input %q has a nil shape", r.Inputs[i].Name)
		}
	}
	for _, bin := range []bool{false, true} {
		enc, jl, err := AppendRequest(nil, r, bin)
		if err != nil {
			t.Fatalf("re-encoding (binary %v) failed: %v", bin, err)
		}
		hl2 := -1
		if bin {
			hl2 = jl
		}
		r2, err := DecodeRequest(enc, hl2, fuzzLimits)
		if err != nil {
			t.Fatalf("re-encoded request (binary %v) does not decode: %v\n%q", bin, err, enc)
		}
		if d := sameTensors(r2.Inputs, r.Inputs); d != "" {
			t.Fatalf("binary %v: %s\nfirst  %q\nsecond %q", bin, d, body, enc)
		}
		if r2.ID != r.ID || r2.BinaryOutput != r.BinaryOutput || r2.Timeout != r.Timeout {
			t.Fatalf("binary %v: id/binary_data_output/timeout changed: %+v vs %+v", bin, r2, r)
		}
		if !reflect.DeepEqual(r2.Parameters, r.Parameters) {
			t.Fatalf("binary %v: parameters %#v, want %#v", bin, r2.Parameters, r.Parameters)
		}
		if !reflect.DeepEqual(r2.Outputs, r.Outputs) {
			t.Fatalf("binary %v: outputs %#v, want %#v", bin, r2.Outputs, r.Outputs)
		}
	}
}

func checkResponse(t *testing.T, body []byte, hl int) {
	t.Helper()
	r, err := DecodeResponse(body, hl)
	if err != nil {
		var se *ServerError
		if !errors.Is(err, ErrBadResponse) && !errors.As(err, &se) {
			t.Fatalf("error is neither a bad response nor a server error: %v", err)
		}
		return
	}
	for i := range r.Outputs {
		if err := r.Outputs[i].Validate(); err != nil {
			t.Fatalf("decoded an invalid output: %v", err)
		}
	}
	allBinary := make([]bool, len(r.Outputs))
	for i := range allBinary {
		allBinary[i] = true
	}
	for _, flags := range [][]bool{nil, allBinary} {
		enc, jl, err := AppendResponse(nil, r, flags)
		if err != nil {
			t.Fatalf("re-encoding failed: %v", err)
		}
		hl2 := -1
		if flags != nil {
			hl2 = jl
		}
		r2, err := DecodeResponse(enc, hl2)
		if err != nil {
			t.Fatalf("re-encoded response does not decode: %v\n%q", err, enc)
		}
		if d := sameTensors(r2.Outputs, r.Outputs); d != "" {
			t.Fatalf("%s\nfirst  %q\nsecond %q", d, body, enc)
		}
		if r2.ModelName != r.ModelName || r2.ModelVersion != r.ModelVersion || r2.ID != r.ID || !reflect.DeepEqual(r2.Parameters, r.Parameters) {
			t.Fatalf("metadata changed: %+v vs %+v", r2, r)
		}
	}
}

// TestFuzzCheckersOnExamples runs the fuzz checks on the round-trip
// examples, so that they are exercised without the corpus too.
func TestFuzzCheckersOnExamples(t *testing.T) {
	req := &Request{ID: "x", Inputs: typeCases(), Outputs: []RequestedOutput{{Name: "o", Binary: true}}, Parameters: map[string]any{"a": []any{1.5, "s"}}}
	for _, bin := range []bool{false, true} {
		body, jl, err := AppendRequest(nil, req, bin)
		if err != nil {
			t.Fatal(err)
		}
		hl := -1
		if bin {
			hl = jl
		}
		checkRequest(t, body, hl)
	}
	resp := &Response{ModelName: "m", Outputs: typeCases()}
	body, _, err := AppendResponse(nil, resp, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkResponse(t, body, -1)
}
