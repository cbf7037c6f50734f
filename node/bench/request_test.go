package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
)

func TestRequestShape(t *testing.T) {
	cases := []struct {
		spec []int64
		want []int64
	}{
		{[]int64{-1, 64}, []int64{8, 64}},
		{[]int64{1, 64}, []int64{1, 64}},
		{[]int64{-1, -1, 3}, []int64{8, 1, 3}},
		{[]int64{3, -1}, []int64{3, 8}},
		{[]int64{}, []int64{}},
		{nil, []int64{8}},
	}
	for _, c := range cases {
		if got := RequestShape(c.spec, 8); !slices.Equal(got, c.want) {
			t.Errorf("RequestShape(%v, 8) = %v, want %v", c.spec, got, c.want)
		}
	}
}

var testMeta = ModelMeta{
	Name: "m",
	Inputs: []TensorMeta{
		{Name: "x", DataType: models.FP32, Shape: []int64{-1, 4}},
		{Name: "ids", DataType: models.Int64, Shape: []int64{-1, -1, 2}},
		{Name: "mask", DataType: models.Bool, Shape: []int64{-1}},
		{Name: "half", DataType: models.FP16, Shape: []int64{-1, 3}},
		{Name: "bf", DataType: models.BF16, Shape: []int64{-1, 3}},
		{Name: "words", DataType: models.Bytes, Shape: []int64{-1}},
	},
	Outputs: []TensorMeta{{Name: "y", DataType: models.FP32, Shape: []int64{-1, 2}}},
}

func TestRandomRequest(t *testing.T) {
	req, err := RandomRequest(testMeta, 3, 42, true)
	if err != nil {
		t.Fatal(err)
	}
	if !req.BinaryOutput || len(req.Inputs) != len(testMeta.Inputs) {
		t.Fatalf("binary output %v, %d inputs", req.BinaryOutput, len(req.Inputs))
	}
	for i, in := range req.Inputs {
		spec := testMeta.Inputs[i]
		if in.Name != spec.Name || in.DataType != spec.DataType || in.Shape[0] != 3 {
			t.Errorf("input %d: %s %s %v for spec %+v", i, in.Name, in.DataType, in.Shape, spec)
		}
		if err := in.Validate(); err != nil {
			t.Errorf("input %s: %v", in.Name, err)
		}
	}
	x, _ := req.Inputs[0].Float64s()
	for _, v := range x {
		if v < -1 || v >= 1 {
			t.Errorf("FP32 value %v outside [-1, 1)", v)
		}
	}
	again, _ := RandomRequest(testMeta, 3, 42, true)
	other, _ := RandomRequest(testMeta, 3, 43, true)
	if !bytes.Equal(again.Inputs[0].Data, req.Inputs[0].Data) {
		t.Error("the same seed gave different data")
	}
	if bytes.Equal(other.Inputs[0].Data, req.Inputs[0].Data) {
		t.Error("different seeds gave the same data")
	}
	if _, err := RandomRequest(testMeta, 0, 1, false); err == nil {
		t.Error("batch 0 accepted")
	}
	bad := ModelMeta{Inputs: []TensorMeta{{Name: "z", DataType: "FP8", Shape: []int64{1}}}}
	if _, err := RandomRequest(bad, 1, 1, false); err == nil {
		t.Error("unknown datatype accepted")
	}
}

// echoServer serves model metadata and answers inference with the inputs
// decoded by the OIP codec, each cut to its first two columns (as a
// 2-column output "y" per input), so tests can check what arrived.
func echoServer(t *testing.T, meta ModelMeta) (*httptest.Server, func() *oip.Request) {
	t.Helper()
	var (
		mu  sync.Mutex
		got []*oip.Request
	)
	last := func() *oip.Request {
		mu.Lock()
		defer mu.Unlock()
		return got[len(got)-1]
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/models/{model}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("model") != meta.Name {
			http.Error(w, `{"error":"no such model"}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(meta)
	})
	mux.HandleFunc("POST /v2/models/{model}/infer", func(w http.ResponseWriter, r *http.Request) {
		body := new(bytes.Buffer)
		body.ReadFrom(r.Body)
		hl, err := oip.ParseHeaderLength(r.Header.Get(oip.HeaderContentLength))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, err := oip.DecodeRequest(bytes.Clone(body.Bytes()), hl, oip.Limits{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		rows := req.Inputs[0].Shape[0]
		out := models.Tensor{Name: "y", DataType: models.FP32, Shape: []int64{rows, 2}, Data: make([]byte, rows*8)}
		resp := &oip.Response{ModelName: meta.Name, Outputs: []models.Tensor{out}}
		b, jl, err := oip.AppendResponse(nil, resp, []bool{req.BinaryOutput})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if jl < len(b) {
			w.Header().Set(oip.HeaderContentLength, strconv.Itoa(jl))
		}
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, last
}

func TestBuildPayloadRoundTrip(t *testing.T) {
	meta := ModelMeta{Name: "m", Inputs: testMeta.Inputs[:5], Outputs: testMeta.Outputs}
	srv, last := echoServer(t, meta)
	c := newTestClient(t, srv.URL)
	ctx := context.Background()
	for _, enc := range []string{EncodingJSON, EncodingBinary} {
		p, err := BuildPayload(ctx, c, "m", 4, enc, 7)
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if p.Path != "/v2/models/m/infer" || p.Rows != 4 {
			t.Errorf("%s: path %q rows %d", enc, p.Path, p.Rows)
		}
		if (enc == EncodingJSON) != (p.HeaderLen == -1) {
			t.Errorf("%s: header length %d", enc, p.HeaderLen)
		}
		if err := Probe(ctx, c, p); err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		sent := last()
		want, _ := RandomRequest(meta, 4, 7, enc == EncodingBinary)
		if sent.BinaryOutput != want.BinaryOutput || len(sent.Inputs) != len(want.Inputs) {
			t.Fatalf("%s: server got binary output %v and %d inputs", enc, sent.BinaryOutput, len(sent.Inputs))
		}
		for i := range want.Inputs {
			a, b := sent.Inputs[i], want.Inputs[i]
			if a.Name != b.Name || a.DataType != b.DataType || !slices.Equal(a.Shape, b.Shape) {
				t.Errorf("%s: input %d arrived as %s %s %v, sent %s %s %v", enc, i, a.Name, a.DataType, a.Shape, b.Name, b.DataType, b.Shape)
			}
			av, _ := a.Float64s()
			bv, _ := b.Float64s()
			if !slices.Equal(av, bv) {
				t.Errorf("%s: input %s values changed on the way", enc, a.Name)
			}
		}
	}
	if _, err := BuildPayload(ctx, c, "nope", 1, EncodingJSON, 1); err == nil {
		t.Error("unknown model: no error")
	}
	if _, err := BuildPayload(ctx, c, "m", 1, "xml", 1); err == nil {
		t.Error("unknown encoding: no error")
	}
}

func TestProbeRejectsWrongRows(t *testing.T) {
	meta := ModelMeta{Name: "m", Inputs: testMeta.Inputs[:1], Outputs: testMeta.Outputs}
	srv, _ := echoServer(t, meta)
	c := newTestClient(t, srv.URL)
	p, err := BuildPayload(context.Background(), c, "m", 2, EncodingJSON, 1)
	if err != nil {
		t.Fatal(err)
	}
	p.Rows = 5
	if err := Probe(context.Background(), c, p); err == nil {
		t.Error("probe accepted outputs with the wrong number of rows")
	}
	p.Path = "/v2/models/m/versions/9/infer"
	if err := Probe(context.Background(), c, p); err == nil {
		t.Error("probe accepted a 404")
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tpetrel\nVmPeak:\t  900000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   70000 kB\nThreads:\t9\n"
	m, err := parseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS != 70000<<10 || m.Peak != 81234<<10 {
		t.Errorf("got %+v", m)
	}
	if _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Error("status without VmRSS: no error")
	}
	if _, err := parseStatus([]byte("VmRSS:\t12 MB\nVmHWM:\t1 kB\n")); err == nil {
		t.Error("odd unit: no error")
	}
}
