package oip

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
)

func randF32(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// pythonJSONRequest spells a request the way tritonclient does from numpy
// float32 data: each value widened to a Python float and printed with
// repr, so most take 17 significant digits, the slow case for parsing.
func pythonJSONRequest(n int) []byte {
	b := []byte(`{"inputs": [{"name": "x", "shape": [1, ` + strconv.Itoa(n) + `], "datatype": "FP32", "data": [`)
	for i, f := range randF32(n, 7) {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendFloat(b, float64(f), 'g', -1, 64)
	}
	return append(b, `]}], "outputs": [{"name": "y", "parameters": {"binary_data": false}}]}`...)
}

func binaryRequest(n int) ([]byte, int) {
	req := &Request{
		Inputs:  []models.Tensor{mk("x", models.FP32, []int64{1, int64(n)}, randF32(n, 7))},
		Outputs: []RequestedOutput{{Name: "y", Binary: true}},
	}
	body, jl, err := AppendRequest(nil, req, true)
	if err != nil {
		panic(err)
	}
	return body, jl
}

func benchDecode(b *testing.B, body []byte, hl int) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := DecodeRequest(body, hl, Limits{})
		if err != nil || len(r.Inputs) != 1 {
			b.Fatal(err)
		}
	}
}

func benchEncode(b *testing.B, n int, binary bool) {
	resp := &Response{ModelName: "model", ModelVersion: "1", ID: "req-42",
		Outputs: []models.Tensor{mk("y", models.FP32, []int64{1, int64(n)}, randF32(n, 9))}}
	flags := []bool{binary}
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	var size int
	for b.Loop() {
		body, _, err := AppendResponse(buf[:0], resp, flags)
		if err != nil {
			b.Fatal(err)
		}
		size = len(body)
	}
	b.SetBytes(int64(size))
}

func BenchmarkDecodeJSON64(b *testing.B)   { benchDecode(b, pythonJSONRequest(64), -1) }
func BenchmarkDecodeJSON1024(b *testing.B) { benchDecode(b, pythonJSONRequest(1024), -1) }
func BenchmarkDecodeBinary64(b *testing.B) { body, hl := binaryRequest(64); benchDecode(b, body, hl) }
func BenchmarkDecodeBinary1024(b *testing.B) {
	body, hl := binaryRequest(1024)
	benchDecode(b, body, hl)
}
func BenchmarkEncodeJSON16(b *testing.B)     { benchEncode(b, 16, false) }
func BenchmarkEncodeJSON1024(b *testing.B)   { benchEncode(b, 1024, false) }
func BenchmarkEncodeBinary16(b *testing.B)   { benchEncode(b, 16, true) }
func BenchmarkEncodeBinary1024(b *testing.B) { benchEncode(b, 1024, true) }

// BenchmarkServerJSON64to16 is the codec's whole share of one JSON request:
// decode a 64-float request, encode a 16-float response into a fresh
// buffer.
func BenchmarkServerJSON64to16(b *testing.B) {
	body := pythonJSONRequest(64)
	out := []models.Tensor{mk("y", models.FP32, []int64{1, 16}, randF32(16, 9))}
	b.ReportAllocs()
	for b.Loop() {
		r, err := DecodeRequest(body, -1, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := AppendResponse(nil, &Response{ModelName: "m", ID: r.ID, Outputs: out}, r.BinaryFlags(nil, out)); err != nil {
			b.Fatal(err)
		}
	}
}

// Adversarial bodies of about 1 MiB, to compare with BenchmarkDecodeJSON1024
// per byte: long numbers that defeat every fast path, and a shape that the
// data cannot fill (counted without allocating for the shape).
func BenchmarkDecodeWorstLongNumbers1MB(b *testing.B) {
	num := "1.00048828125" + strings.Repeat("0", 50) + "1"
	n := 1 << 20 / (len(num) + 1)
	body := `{"inputs":[{"name":"h","datatype":"FP16","shape":[` + strconv.Itoa(n) + `],"data":[` +
		strings.TrimSuffix(strings.Repeat(num+",", n), ",") + `]}]}`
	benchDecode(b, []byte(body), -1)
}

func BenchmarkDecodeWorstShapeMismatch1MB(b *testing.B) {
	body := []byte(`{"inputs":[{"name":"f","datatype":"FP32","shape":[1048576],"data":[` +
		strings.TrimSuffix(strings.Repeat("[1],", 1<<18), ",") + `]}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest(body, -1, Limits{}); err == nil {
			b.Fatal("decoded")
		}
	}
}

// BenchmarkStdlibJSON64 decodes the body of BenchmarkDecodeJSON64 with
// encoding/json into a mirror struct: a yardstick for comparing numbers
// taken on different machines.
func BenchmarkStdlibJSON64(b *testing.B) {
	body := pythonJSONRequest(64)
	type tensor struct {
		Name     string    `json:"name"`
		Shape    []int64   `json:"shape"`
		Datatype string    `json:"datatype"`
		Data     []float32 `json:"data"`
	}
	var req struct {
		Inputs  []tensor `json:"inputs"`
		Outputs []struct {
			Name       string         `json:"name"`
			Parameters map[string]any `json:"parameters"`
		} `json:"outputs"`
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req.Inputs, req.Outputs = nil, nil
		if err := json.Unmarshal(body, &req); err != nil || len(req.Inputs[0].Data) != 64 {
			b.Fatal(err)
		}
	}
}

// shortJSONRequest is a request with one FP32 input of n normally
// distributed values spelled as AppendRequest spells them: the shortest
// decimal that reads back as the same float32.
func shortJSONRequest(n int) []byte {
	req := &Request{Inputs: []models.Tensor{mk("x", models.FP32, []int64{1, int64(n)}, randF32(n, 7))}}
	body, _, err := AppendRequest(nil, req, false)
	if err != nil {
		panic(err)
	}
	return body
}

func BenchmarkDecodeJSON1024Short(b *testing.B) { benchDecode(b, shortJSONRequest(1024), -1) }
