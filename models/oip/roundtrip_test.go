package oip

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/petrel-mesh/petrel/models"
)

// typeCases has one tensor per datatype with edge values, plus shapes of
// every rank the codec must handle.
func typeCases() []models.Tensor {
	nan32 := float32(math.NaN())
	return []models.Tensor{
		mk("bool", models.Bool, []int64{3}, []bool{true, false, true}),
		mk("u8", models.Uint8, []int64{3}, []uint8{0, 255, 7}),
		mk("u16", models.Uint16, []int64{2}, []uint16{0, math.MaxUint16}),
		mk("u32", models.Uint32, []int64{2}, []uint32{0, math.MaxUint32}),
		mk("u64", models.Uint64, []int64{3}, []uint64{0, math.MaxUint64, 1<<53 + 1}),
		mk("i8", models.Int8, []int64{3}, []int8{math.MinInt8, math.MaxInt8, -1}),
		mk("i16", models.Int16, []int64{2}, []int16{math.MinInt16, math.MaxInt16}),
		mk("i32", models.Int32, []int64{3}, []int32{math.MinInt32, math.MaxInt32, 0}),
		mk("i64", models.Int64, []int64{4}, []int64{math.MinInt64, math.MaxInt64, -1, 1<<53 + 1}),
		// 1, -2, 65504 (max), smallest subnormal, -0, +Inf, -Inf, 1/3, NaN
		mk("f16", models.FP16, []int64{9}, []uint16{0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00, 0xfc00, 0x3555, 0x7e00}),
		// 1, max, smallest subnormal, -Inf, pi, NaN
		mk("bf16", models.BF16, []int64{6}, []uint16{0x3f80, 0x7f7f, 0x0001, 0xff80, 0x4049, 0x7fc0}),
		mk("f32", models.FP32, []int64{2, 5}, []float32{0, float32(math.Copysign(0, -1)), 1.5, math.MaxFloat32, math.SmallestNonzeroFloat32,
			0.1, -3.4028235e38, float32(math.Inf(1)), float32(math.Inf(-1)), nan32}),
		mk("f64", models.FP64, []int64{2, 2, 2}, []float64{0, math.MaxFloat64, math.SmallestNonzeroFloat64, 0.1, -1e-300, math.Inf(1), math.NaN(), 1e21}),
		mk("bytes", models.Bytes, []int64{6}, []string{"", "hello", "quote\" back\\ nl\n tab\t nul\x00 ctl\x1f", "ünïcødé ☃ 𝄞", "\xff\xfe not utf8", strings.Repeat("x", 300)}),
		mk("scalar", models.FP32, []int64{}, []float32{42.25}),
		mk("scalar_bytes", models.Bytes, []int64{}, []string{"one"}),
		mk("empty", models.FP32, []int64{0}, []float32{}),
		mk("empty2", models.Int64, []int64{2, 0, 3}, []int64{}),
		mk("rank4", models.Int16, []int64{1, 2, 1, 2}, []int16{1, 2, 3, 4}),
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, tc := range typeCases() {
		for _, bin := range []bool{false, true} {
			name := tc.Name + map[bool]string{false: "/json", true: "/binary"}[bin]
			t.Run(name, func(t *testing.T) {
				req := &Request{ID: "r-" + tc.Name, Inputs: []models.Tensor{tc}}
				body, jl, err := AppendRequest(nil, req, bin)
				if err != nil {
					t.Fatal(err)
				}
				hl := -1
				if bin {
					hl = jl
					if jl != len(body)-len(tc.Data) {
						t.Fatalf("jsonLen %d, body %d, data %d", jl, len(body), len(tc.Data))
					}
				} else if jl != len(body) {
					t.Fatalf("jsonLen %d != body %d without binary", jl, len(body))
				}
				if utf8.Valid(tc.Data) && !hasNonFinite(tc) && !json.Valid(body[:jl]) {
					t.Fatalf("encoded header is not valid JSON: %s", body[:jl])
				}
				got := mustDecodeRequest(t, body, hl)
				if d := sameTensors(got.Inputs, req.Inputs); d != "" {
					t.Fatalf("%s\nbody %q", d, body)
				}
				if got.ID != req.ID {
					t.Fatalf("id %q", got.ID)
				}
				// Binary inputs alias the body; JSON ones do not.
				if bin && len(tc.Data) > 0 && &got.Inputs[0].Data[0] != &body[jl] {
					t.Fatal("binary input does not alias the body")
				}
				if c := cap(got.Inputs[0].Data); bin && c != len(got.Inputs[0].Data) {
					t.Fatalf("binary input capacity %d not clipped to %d", c, len(got.Inputs[0].Data))
				}
			})
		}
	}
}

func hasNonFinite(t models.Tensor) bool {
	k := kindOf(t.DataType)
	switch k {
	case kF16, kBF16, kF32, kF64:
		for j := 0; j < len(t.Data); j += int(kindSize[k]) {
			if f := floatAt(k, t.Data[j:]); math.IsNaN(f) || math.IsInf(f, 0) {
				return true
			}
		}
	}
	return false
}

func TestRequestAllTypesTogether(t *testing.T) {
	req := &Request{
		ID:           "all",
		Parameters:   map[string]any{"priority": int64(3), "tag": "x", "ratio": 0.5, "whole": 2.0, "nested": map[string]any{"a": []any{true, nil, "s"}}},
		Inputs:       typeCases(),
		Outputs:      []RequestedOutput{{Name: "a", Binary: true}, {Name: "b", Parameters: map[string]any{"k": "v"}}, {Name: "c"}},
		BinaryOutput: true,
		Timeout:      1500 * time.Microsecond,
	}
	for _, bin := range []bool{false, true} {
		body, jl, err := AppendRequest(nil, req, bin)
		if err != nil {
			t.Fatal(err)
		}
		hl := -1
		if bin {
			hl = jl
		}
		got := mustDecodeRequest(t, body, hl)
		if d := sameTensors(got.Inputs, req.Inputs); d != "" {
			t.Fatal(d)
		}
		if !reflect.DeepEqual(got.Parameters, req.Parameters) {
			t.Fatalf("parameters %#v, want %#v", got.Parameters, req.Parameters)
		}
		if !reflect.DeepEqual(got.Outputs, req.Outputs) {
			t.Fatalf("outputs %#v, want %#v", got.Outputs, req.Outputs)
		}
		if got.ID != req.ID || got.BinaryOutput != req.BinaryOutput || got.Timeout != req.Timeout {
			t.Fatalf("got %+v", got)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	outs := typeCases()
	for _, mode := range []string{"json", "binary", "mixed"} {
		t.Run(mode, func(t *testing.T) {
			resp := &Response{ModelName: "m", ModelVersion: "3", ID: "id-1", Parameters: map[string]any{"sequence_end": true}, Outputs: outs}
			var flags []bool
			nbin := 0
			switch mode {
			case "binary":
				flags = make([]bool, len(outs))
				for i := range flags {
					flags[i] = true
					nbin += len(outs[i].Data)
				}
			case "mixed":
				flags = make([]bool, len(outs))
				for i := range flags {
					if flags[i] = i%2 == 0; flags[i] {
						nbin += len(outs[i].Data)
					}
				}
			}
			prefix := []byte("prefix")
			body, jl, err := AppendResponse(prefix, resp, flags)
			if err != nil {
				t.Fatal(err)
			}
			if string(body[:6]) != "prefix" {
				t.Fatal("prefix lost")
			}
			body = body[6:]
			if jl+nbin != len(body) {
				t.Fatalf("jsonLen %d + binary %d != body %d", jl, nbin, len(body))
			}
			hl := -1
			if nbin > 0 || mode != "json" {
				hl = jl
			}
			got, err := DecodeResponse(body, hl)
			if err != nil {
				t.Fatalf("%v\n%s", err, body[:jl])
			}
			if d := sameTensors(got.Outputs, outs); d != "" {
				t.Fatal(d)
			}
			if got.ModelName != "m" || got.ModelVersion != "3" || got.ID != "id-1" || got.Parameters["sequence_end"] != true {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

// TestResponseIsStandardJSON checks the encoder against encoding/json.
func TestResponseIsStandardJSON(t *testing.T) {
	vals := seqF32(64)
	vals[3] = 1e-7
	vals[4] = 3e38
	vals[5] = -0.0001
	resp := &Response{ModelName: "m\"q", Outputs: []models.Tensor{
		mk("y", models.FP32, []int64{8, 8}, vals),
		mk("s", models.Bytes, []int64{2}, []string{"a\"b\\c\n\x01", "☃"}),
		mk("i", models.Int64, []int64{2}, []int64{math.MinInt64, math.MaxInt64}),
	}}
	body, _, err := AppendResponse(nil, resp, nil)
	if err != nil {
		t.Fatal(err)
	}
	var std struct {
		ModelName string `json:"model_name"`
		Outputs   []struct {
			Name     string
			Datatype string
			Shape    []int64
			Data     json.RawMessage
		}
	}
	if err := json.Unmarshal(body, &std); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if std.ModelName != "m\"q" || len(std.Outputs) != 3 {
		t.Fatalf("%+v", std)
	}
	var fs []float32
	if err := json.Unmarshal(std.Outputs[0].Data, &fs); err != nil {
		t.Fatal(err)
	}
	for i := range fs {
		if fs[i] != vals[i] {
			t.Fatalf("element %d: %v, want %v", i, fs[i], vals[i])
		}
	}
	var ss []string
	if err := json.Unmarshal(std.Outputs[1].Data, &ss); err != nil || ss[0] != "a\"b\\c\n\x01" || ss[1] != "☃" {
		t.Fatalf("%q %v", ss, err)
	}
	var is []int64
	if err := json.Unmarshal(std.Outputs[2].Data, &is); err != nil || is[0] != math.MinInt64 || is[1] != math.MaxInt64 {
		t.Fatalf("%v %v", is, err)
	}
}

func TestNestedData(t *testing.T) {
	cases := []struct {
		shape, data string
		dt          models.DataType
		want        models.Tensor
	}{
		{"[2,3]", "[[1,2,3],[4,5,6]]", models.FP32, mk("x", models.FP32, []int64{2, 3}, []float32{1, 2, 3, 4, 5, 6})},
		{"[2,3]", "[1,2,3,4,5,6]", models.FP32, mk("x", models.FP32, []int64{2, 3}, []float32{1, 2, 3, 4, 5, 6})},
		{"[2,2,2]", "[[[1,2],[3,4]],[[5,6],[7,8]]]", models.Int32, mk("x", models.Int32, []int64{2, 2, 2}, []int32{1, 2, 3, 4, 5, 6, 7, 8})},
		{"[1,3]", `[["a","b\u00e9","c"]]`, models.Bytes, mk("x", models.Bytes, []int64{1, 3}, []string{"a", "bé", "c"})},
		{"[2,1]", "[[true],[false]]", models.Bool, mk("x", models.Bool, []int64{2, 1}, []bool{true, false})},
		{"[2,0]", "[[],[]]", models.FP32, mk("x", models.FP32, []int64{2, 0}, []float32{})},
		{"[0,2]", "[]", models.FP32, mk("x", models.FP32, []int64{0, 2}, []float32{})},
		{"[]", "[7]", models.Int64, mk("x", models.Int64, []int64{}, []int64{7})},
		{"[1]", "[ 5 ]", models.Uint8, mk("x", models.Uint8, []int64{1}, []uint8{5})},
		{"[3]", "[1e2, 2.0, -0]", models.Uint8, mk("x", models.Uint8, []int64{3}, []uint8{100, 2, 0})},
		{"[2]", "[65519, -65519]", models.FP16, mk("x", models.FP16, []int64{2}, []uint16{0x7bff, 0xfbff})},
		{"[2]", "[NaN, -Inf]", models.FP64, mk("x", models.FP64, []int64{2}, []float64{math.NaN(), math.Inf(-1)})},
	}
	for _, c := range cases {
		body := `{"inputs":[{"name":"x","shape":` + c.shape + `,"datatype":"` + string(c.dt) + `","data":` + c.data + `}]}`
		r := mustDecodeRequest(t, []byte(body), -1)
		if d := sameTensors(r.Inputs, []models.Tensor{c.want}); d != "" {
			t.Errorf("%s: %s", body, d)
		}
	}
}

func TestFieldOrderAndNulls(t *testing.T) {
	// data before shape and datatype; nulls for optional fields; spaces.
	body := ` { "outputs" : null , "inputs" : [ { "data" : [ [1, 2], [3, 4] ] , "parameters": null, "name" : "x" , "shape" : [ 2 , 2 ] , "datatype" : "INT8" } ] ,
	  "id": null, "parameters": {"custom": [1, {"a": "b"}]}, "model_name": "m", "model_version": null } `
	r := mustDecodeRequest(t, []byte(body), -1)
	if d := sameTensors(r.Inputs, []models.Tensor{mk("x", models.Int8, []int64{2, 2}, []int8{1, 2, 3, 4})}); d != "" {
		t.Fatal(d)
	}
	want := map[string]any{"custom": []any{int64(1), map[string]any{"a": "b"}}}
	if !reflect.DeepEqual(r.Parameters, want) || r.Outputs != nil || r.ID != "" {
		t.Fatalf("%+v", r)
	}
}

func TestOutputsSelection(t *testing.T) {
	body := `{"inputs":[],"parameters":{"binary_data_output":true,"timeout":2500},
		"outputs":[{"name":"a"},{"name":"b","parameters":{"binary_data":false}},{"name":"c","parameters":{"binary_data":true,"top_k":3}}]}`
	r := mustDecodeRequest(t, []byte(body), -1)
	want := []RequestedOutput{{Name: "a", Binary: true}, {Name: "b"}, {Name: "c", Binary: true, Parameters: map[string]any{"top_k": int64(3)}}}
	if !reflect.DeepEqual(r.Outputs, want) {
		t.Fatalf("outputs %#v", r.Outputs)
	}
	if !r.BinaryOutput || r.Timeout != 2500*time.Microsecond || r.Parameters != nil {
		t.Fatalf("%+v", r)
	}
	if !r.WantsBinary("a") || r.WantsBinary("b") || !r.WantsBinary("c") || !r.WantsBinary("unlisted") {
		t.Fatal("WantsBinary")
	}
	if got := r.OutputNames(); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatal(got)
	}
	flags := r.BinaryFlags(nil, []models.Tensor{{Name: "b"}, {Name: "a"}})
	if !reflect.DeepEqual(flags, []bool{false, true}) {
		t.Fatal(flags)
	}

	// Without binary_data_output only explicit outputs go binary.
	r = mustDecodeRequest(t, []byte(`{"inputs":[],"outputs":[{"name":"a","parameters":{"binary_data":true}},{"name":"b"}]}`), -1)
	if !r.WantsBinary("a") || r.WantsBinary("b") || r.WantsBinary("x") || r.BinaryOutput {
		t.Fatalf("%+v", r.Outputs)
	}
	if (&Request{}).OutputNames() != nil {
		t.Fatal("OutputNames of no outputs should be nil")
	}
}

// TestTritonExample decodes the example of Triton's binary data extension
// document byte for byte.
func TestTritonExample(t *testing.T) {
	hdr := `{
  "model_name" : "mymodel",
  "inputs" : [
    {
      "name" : "input0",
      "shape" : [ 2, 2 ],
      "datatype" : "UINT32",
      "parameters" : {
        "binary_data_size" : 16
      }
    },
    {
      "name" : "input1",
      "shape" : [ 3 ],
      "datatype" : "BOOL",
      "parameters" : {
        "binary_data_size" : 3
      }
    }
  ],
  "outputs" : [
    {
      "name" : "output0",
      "parameters" : {
        "binary_data" : true
      }
    }
  ]
}`
	in0 := mk("input0", models.Uint32, []int64{2, 2}, []uint32{1, 2, 3, 0xdeadbeef})
	in1 := mk("input1", models.Bool, []int64{3}, []bool{true, false, true})
	body := append(append([]byte(hdr), in0.Data...), in1.Data...)
	r := mustDecodeRequest(t, body, len(hdr))
	if d := sameTensors(r.Inputs, []models.Tensor{in0, in1}); d != "" {
		t.Fatal(d)
	}
	if !r.WantsBinary("output0") {
		t.Fatal("output0 should be binary")
	}
	out := mk("output0", models.FP32, []int64{3, 2}, []float32{1, 2, 3, 4, 5, 6})
	resp, jl, err := AppendResponse(nil, &Response{ModelName: "mymodel", Outputs: []models.Tensor{out}}, r.BinaryFlags(nil, []models.Tensor{out}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model_name":"mymodel","outputs":[{"name":"output0","datatype":"FP32","shape":[3,2],"parameters":{"binary_data_size":24}}]}`
	if string(resp[:jl]) != want || len(resp) != jl+24 {
		t.Fatalf("response header %s (%d of %d bytes)", resp[:jl], jl, len(resp))
	}
}

func TestEncodeJSONShape(t *testing.T) {
	resp := &Response{ModelName: "m", Outputs: []models.Tensor{mk("y", models.FP32, []int64{1, 3}, []float32{0.5, -2, 1e6})}}
	body, jl, err := AppendResponse(nil, resp, []bool{false})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model_name":"m","outputs":[{"name":"y","datatype":"FP32","shape":[1,3],"data":[0.5,-2,1e+06]}]}`
	if string(body) != want || jl != len(body) {
		t.Fatalf("got  %s\nwant %s", body, want)
	}
	if got := string(EncodeError("bad \"x\"\n")); got != `{"error":"bad \"x\"\n"}` {
		t.Fatal(got)
	}
}

func TestServerError(t *testing.T) {
	_, err := DecodeResponse([]byte(`{"error":"model \"m\" not found"}`), -1)
	var se *ServerError
	if !errorsAs(err, &se) || se.Message != `model "m" not found` {
		t.Fatalf("%v", err)
	}
}

func TestParseHeaderLength(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		ok   bool
	}{{"", -1, true}, {"0", 0, true}, {"123", 123, true}, {"-1", 0, false}, {"x", 0, false}, {"99999999999999", 0, false}, {" 1", 0, false}} {
		got, err := ParseHeaderLength(c.in)
		if (err == nil) != c.ok || c.ok && got != c.want {
			t.Errorf("ParseHeaderLength(%q) = %d, %v", c.in, got, err)
		}
		if err != nil && !errorsIs(err, ErrBadRequest) {
			t.Errorf("ParseHeaderLength(%q): %v does not wrap ErrBadRequest", c.in, err)
		}
	}
}

func TestHalfConversions(t *testing.T) {
	// Every FP16 and BF16 value survives widening and rounding back.
	for h := range 1 << 16 {
		for _, p := range []struct {
			to   func(float64) (uint16, bool)
			from func(uint16) float64
			nan  uint16
		}{{f64ToFP16, fp16ToF64, 0x7e00}, {f64ToBF16, bf16ToF64, 0x7fc0}} {
			f := p.from(uint16(h))
			got, ok := p.to(f)
			if math.IsNaN(f) {
				if got != p.nan {
					t.Fatalf("NaN %#04x -> %#04x", h, got)
				}
				continue
			}
			if !ok || got != uint16(h) {
				t.Fatalf("%#04x -> %v -> %#04x %v", h, f, got, ok)
			}
			// The float32 spelling the encoder writes reads back too.
			s := appendFloat(nil, f, 32)
			g, err := parseFloatBytes(s)
			if err != nil {
				t.Fatal(err)
			}
			if back, _ := p.to(g); back != uint16(h) {
				t.Fatalf("%#04x -> %s -> %#04x", h, s, back)
			}
		}
	}
	// Rounding: ties to even, overflow, underflow.
	for _, c := range []struct {
		f    float64
		want uint16
		ok   bool
	}{
		{1 + 1.0/2048, 0x3c00, true},             // tie, rounds to even (1)
		{1 + 3.0/2048, 0x3c02, true},             // tie, rounds to even (1+2/1024)
		{65504, 0x7bff, true},                    // max
		{65519.99, 0x7bff, true},                 // just below the rounding boundary
		{65520, 0, false},                        // rounds to Inf
		{1e-8, 0x0000, true},                     // below half the smallest subnormal
		{3e-8, 0x0001, true},                     // above half of it
		{-6.103515625e-05, 0x8400, true},         // -smallest normal
		{math.Ldexp(1023.5, -24), 0x0400, true},  // tie above the largest subnormal rounds to the smallest normal
		{math.Ldexp(1022.5, -24), 0x03fe, true},  // tie rounds to even subnormal
		{math.Copysign(0, -1), 0x8000, true},     // -0
		{math.MaxFloat64, 0, false},              // overflow
		{5e-324, 0, true},                        // float64 subnormal
		{float64(math.MaxFloat32) * 2, 0, false}, // beyond BF16 too
	} {
		got, ok := f64ToFP16(c.f)
		if got != c.want || ok != c.ok {
			t.Errorf("f64ToFP16(%v) = %#04x %v, want %#04x %v", c.f, got, ok, c.want, c.ok)
		}
	}
	if h, ok := f64ToBF16(3.39e38); !ok || h != 0x7f7f {
		t.Errorf("3.39e38 rounds to BF16's largest finite value, got %#04x %v", h, ok)
	}
	if _, ok := f64ToBF16(3.40282357e38); ok {
		t.Error("max float32 rounds beyond BF16's largest finite value")
	}
}
