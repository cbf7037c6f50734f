package node_test

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/petrel-mesh/petrel/models/oip"
)

// BenchmarkInferHandler measures the node's handler for one small-MLP
// inference, without sockets: what the node itself spends per request
// (decode, scheduler, runtime, encode, metrics) and how much it allocates.
func BenchmarkInferHandler(b *testing.B) {
	for _, enc := range []string{"json", "binary"} {
		b.Run(enc, func(b *testing.B) {
			r := newRepo(b)
			m := r.smallMLP("mlp", 1, "")
			tn := startNode(b, testConfig(b, r.dir))
			req, _ := mlpRequest(m, rand.New(rand.NewPCG(1, 2)), 1)
			body, hl := encode(b, req, enc == "binary")
			h := tn.Handler()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				hr := httptest.NewRequest(http.MethodPost, "/v2/models/mlp/infer", bytes.NewReader(body))
				if hl >= 0 {
					hr.Header.Set(oip.HeaderContentLength, strconv.Itoa(hl))
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, hr)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
