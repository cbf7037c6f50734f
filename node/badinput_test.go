package node_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/models/ort/onnxtest"
	"github.com/petrel-mesh/petrel/node/client"
)

// values returns n comma-separated JSON numbers.
func values(n int) string {
	return strings.TrimSuffix(strings.Repeat("0.25,", n), ",")
}

// mlpInput is an all-JSON request body with one input.
func mlpInput(name, dt, shape string, n int) string {
	return fmt.Sprintf(`{"inputs":[{"name":%q,"datatype":%q,"shape":%s,"data":[%s]}]}`, name, dt, shape, values(n))
}

// manyInputs is a request body with n distinct one-element inputs.
func manyInputs(n int) string {
	ins := make([]string, n)
	for i := range ins {
		ins[i] = fmt.Sprintf(`{"name":"in%d","datatype":"FP32","shape":[1],"data":[1]}`, i)
	}
	return `{"inputs":[` + strings.Join(ins, ",") + `]}`
}

// topkBody is a TopK request body with the given k.
const topkX = `{"name":"x","datatype":"FP32","shape":[3,4],"data":[0,1,2,3,4,5,6,7,8,9,10,11]}`

func topkBody(k string) string {
	return `{"inputs":[` + topkX + `,{"name":"k","datatype":"INT64","shape":[1],"data":[` + k + `]}]}`
}

type badCase struct {
	name    string
	path    string // default /v2/models/mlp/infer
	method  string // default POST
	body    []byte
	hdr     map[string]string
	chunked bool // send the body without a Content-Length
	status  int
	words   []string // the error message mentions each
	h3      bool     // also run over HTTP/3
}

func badCases(t *testing.T) []badCase {
	mlpOK := mlpInput("input", "FP32", "[1,64]", 64)
	big := mlpInput("input", "FP32", "[512,64]", 512*64) // > MaxBodyBytes

	// A binary request: JSON header then the raw bytes.
	bin := func(hdr string, data []byte) []byte { return append([]byte(hdr), data...) }
	binHeader := `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"parameters":{"binary_data_size":256}}]}`
	hl := strconv.Itoa(len(binHeader))
	zeros := make([]byte, 256)
	where := nodeTest(t, "test_where_example")
	whereBody, whereHL, err := client.EncodeInfer(&oip.Request{Inputs: where.Inputs}, true)
	if err != nil {
		t.Fatal(err)
	}
	if where.Inputs[0].Name != "condition" {
		t.Fatalf("test_where_example input 0 is %q", where.Inputs[0].Name)
	}
	whereBody[whereHL+1] = 2 // the second condition element: not a BOOL
	gatherBody, _, err := client.EncodeInfer(&oip.Request{Inputs: []models.Tensor{
		nodeTest(t, "test_gather_0").Inputs[0],
		onnxtest.Tensor("indices", models.Int64, []int64{3}, int64(0), 7, 1),
	}}, false)
	if err != nil {
		t.Fatal(err)
	}
	binHdr := func(v string) map[string]string {
		return map[string]string{oip.HeaderContentLength: v, "Content-Type": oip.ContentTypeBinary}
	}
	s := func(v string) []byte { return []byte(v) }

	return []badCase{
		{name: "malformed JSON", body: s(`{"inputs":[{"name":"input",`), status: 400, words: []string{"JSON"}, h3: true},
		{name: "not an object", body: s(`[1,2,3]`), status: 400, words: []string{"JSON object"}},
		{name: "empty body", body: s(``), status: 400},
		{name: "trailing garbage", body: s(mlpOK + `}`), status: 400, words: []string{"after the JSON"}},
		{name: "unknown field", body: s(`{"inputs":[],"input":1}`), status: 400, words: []string{`"input"`}},
		{name: "no inputs", body: s(`{"id":"x"}`), status: 400, words: []string{"inputs"}},
		{name: "wrong datatype", body: s(mlpInput("input", "FP64", "[1,64]", 64)), status: 400, words: []string{"datatype", "FP64", "FP32"}, h3: true},
		{name: "unknown datatype", body: s(mlpInput("input", "FP31", "[1,64]", 64)), status: 400, words: []string{"FP31"}},
		{name: "data shorter than shape", body: s(mlpInput("input", "FP32", "[1,64]", 63)), status: 400, words: []string{"64"}},
		{name: "data longer than shape", body: s(mlpInput("input", "FP32", "[1,64]", 65)), status: 400, words: []string{"64"}},
		{name: "negative dimension", body: s(mlpInput("input", "FP32", "[-1,64]", 64)), status: 400, words: []string{"-1"}},
		{name: "unknown input", body: s(mlpInput("inputs", "FP32", "[1,64]", 64)), status: 400, words: []string{"unknown input", `"inputs"`, `"input"`}, h3: true},
		{name: "missing input", path: "/v2/models/topk/infer", body: s(`{"inputs":[` + topkX + `]}`), status: 400, words: []string{"missing input", `"k"`}},
		{name: "duplicate input", path: "/v2/models/topk/infer", body: s(`{"inputs":[` + topkX + `,` + topkX + `]}`), status: 400, words: []string{`"x"`}},
		{name: "wrong rank", body: s(mlpInput("input", "FP32", "[64]", 64)), status: 400, words: []string{"rank"}},
		{name: "wrong fixed dimension", body: s(mlpInput("input", "FP32", "[1,63]", 63)), status: 400, words: []string{"[1 63]", "[-1 64]"}},
		{name: "integer not integral", path: "/v2/models/topk/infer", body: s(topkBody("1.5")), status: 400, words: []string{"1.5"}},
		{name: "BOOL not 0 or 1", path: "/v2/models/where/infer", body: whereBody, hdr: binHdr(strconv.Itoa(whereHL)), status: 400, words: []string{"BOOL"}},
		{name: "unknown output", body: s(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":[` + values(64) + `]}],"outputs":[{"name":"logits"}]}`),
			status: 400, words: []string{"unknown output", "logits", "probabilities"}, h3: true},
		{name: "duplicate output", body: s(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":[` + values(64) + `]}],"outputs":[{"name":"probabilities"},{"name":"probabilities"}]}`),
			status: 400, words: []string{"probabilities"}},
		{name: "oversize body", body: s(big), status: 413, words: []string{"limit"}, h3: true},
		{name: "oversize chunked body", body: s(big), chunked: true, status: 413, words: []string{"limit"}, h3: true},
		{name: "oversize body, megabytes", body: bytes.Repeat([]byte("0.25,"), 1<<20), status: 413, words: []string{"limit"}, h3: true},
		{name: "oversize chunked body, megabytes", body: bytes.Repeat([]byte("0.25,"), 1<<20), chunked: true, status: 413, words: []string{"limit"}, h3: true},
		{name: "too many inputs", body: s(manyInputs(129)), status: 413, words: []string{"128"}},
		{name: "unknown model", path: "/v2/models/nope/infer", body: s(mlpOK), status: 404, words: []string{"nope"}, h3: true},
		{name: "unknown version", path: "/v2/models/mlp/versions/7/infer", body: s(mlpOK), status: 404, words: []string{"version", "7"}, h3: true},
		{name: "invalid model name", path: "/v2/models/..%2F..%2Fetc/infer", body: s(mlpOK), status: 404},
		{name: "truncated binary payload", body: bin(binHeader, zeros[:100]), hdr: binHdr(hl), status: 400, words: []string{"256"}, h3: true},
		{name: "binary payload too long", body: bin(binHeader, make([]byte, 300)), hdr: binHdr(hl), status: 400},
		{name: "binary without header length", body: bin(binHeader, zeros), status: 400, words: []string{oip.HeaderContentLength}},
		{name: "header length beyond body", body: bin(binHeader, zeros), hdr: binHdr(strconv.Itoa(len(binHeader) + 257)), status: 400, words: []string{"exceeds"}},
		{name: "header length inside the JSON", body: bin(binHeader, zeros), hdr: binHdr("10"), status: 400},
		{name: "negative header length", body: bin(binHeader, zeros), hdr: binHdr("-5"), status: 400, words: []string{oip.HeaderContentLength}},
		{name: "minus one header length", body: bin(binHeader, zeros), hdr: binHdr("-1"), status: 400, words: []string{oip.HeaderContentLength}},
		{name: "garbage header length", body: bin(binHeader, zeros), hdr: binHdr("twelve"), status: 400, words: []string{oip.HeaderContentLength}, h3: true},
		{name: "Petrel-Timeout garbage", body: s(mlpOK), hdr: map[string]string{"Petrel-Timeout": "soon"}, status: 400, words: []string{"Petrel-Timeout", "soon"}, h3: true},
		{name: "Petrel-Timeout zero", body: s(mlpOK), hdr: map[string]string{"Petrel-Timeout": "0"}, status: 400, words: []string{"Petrel-Timeout", "positive"}},
		{name: "Petrel-Timeout negative", body: s(mlpOK), hdr: map[string]string{"Petrel-Timeout": "-5ms"}, status: 400, words: []string{"Petrel-Timeout"}},
		{name: "Petrel-Timeout overflowing", body: s(mlpOK), hdr: map[string]string{"Petrel-Timeout": "9223372036854775"}, status: 400, words: []string{"Petrel-Timeout"}},
		// 18446744073710 ms in nanoseconds wraps around to 448384 ns: not a
		// deadline of half a millisecond.
		{name: "Petrel-Timeout wrapping", body: s(mlpOK), hdr: map[string]string{"Petrel-Timeout": "18446744073710"}, status: 400, words: []string{"Petrel-Timeout", "too large"}},
		{name: "Petrel-Timeout duration overflowing", body: s(mlpOK), hdr: map[string]string{"Petrel-Timeout": "9999999999h"}, status: 400, words: []string{"Petrel-Timeout"}},
		{name: "timeout parameter not a number", body: s(`{"parameters":{"timeout":"1s"},"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":[` + values(64) + `]}]}`), status: 400, words: []string{"timeout"}},
		{name: "runtime rejects k beyond the axis", path: "/v2/models/topk/infer", body: s(topkBody("10")), status: 422, words: []string{"model rejected"}, h3: true},
		{name: "runtime rejects an index out of range", path: "/v2/models/gather/infer", body: gatherBody, status: 422, words: []string{"model rejected"}, h3: true},
		{name: "unknown endpoint", method: http.MethodGet, path: "/v2/nope", status: 404, words: []string{"no such endpoint", "/v2/nope"}, h3: true},
		{name: "unknown API version", method: http.MethodGet, path: "/v3/models/mlp", status: 404, words: []string{"no such endpoint"}},
		{name: "infer with GET", method: http.MethodGet, path: "/v2/models/mlp/infer", status: 404, words: []string{"GET"}},
		{name: "metadata with DELETE", method: http.MethodDelete, path: "/v2/models/mlp", status: 404, words: []string{"DELETE"}},
	}
}

// TestBadInput: every malformed or mismatched request is a 4xx whose
// message names the problem, never a 500 and never a hang; the node keeps
// serving afterwards.
func TestBadInput(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("mlp", 1, "")
	r.published("topk", "test_top_k")
	r.published("gather", "test_gather_0")
	r.published("where", "test_where_example")
	cfg := testConfig(t, r.dir)
	cfg.MaxBodyBytes = 16 << 10
	tn := startNode(t, cfg)
	cases := badCases(t)
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			rc := tn.raw(t, proto)
			for _, tc := range cases {
				if proto == client.HTTP3 && !tc.h3 {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					method, path := tc.method, tc.path
					if method == "" {
						method = http.MethodPost
					}
					if path == "" {
						path = "/v2/models/mlp/infer"
					}
					var body io.Reader
					if tc.body != nil {
						body = bytes.NewReader(tc.body)
						if tc.chunked {
							body = io.MultiReader(body) // hides the length
						}
					}
					rep, err := rc.send(method, path, body, tc.hdr)
					if err != nil {
						t.Fatalf("%s %s: %v", method, path, err)
					}
					wantError(t, rep, tc.status, tc.words...)
					if ct := rep.header.Get("Content-Type"); ct != "application/json" {
						t.Errorf("Content-Type %q", ct)
					}
					if rep.header.Get("Petrel-Served-By") != tn.cfg.ID {
						t.Error("error response without Petrel-Served-By")
					}
					if testing.Verbose() {
						t.Logf("%d %s", rep.status, rep.body)
					}
				})
			}
			// Still serving, on the same connections.
			x := make([]float32, 64)
			body, hl := encode(t, &oip.Request{Inputs: []models.Tensor{f32("input", []int64{1, 64}, x)}}, true)
			resp := decodeReply(t, rc.do(t, http.MethodPost, "/v2/models/mlp/infer", body, inferHeaders(hl)))
			checkMLP(t, m, x, resp.Outputs)
		})
	}
}
