package node_test

import (
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/node/client"
)

// BenchmarkPipeline compares a pipeline of two MLPs (256-512-128 then
// 128-256-10) with a client calling the two models back to back over
// HTTP/1.1 (binary tensors), one request of 32 rows at a time; it
// reports rows/s.
//
//	go test ./node/ -run '^$' -bench BenchmarkPipeline -benchtime 2s
func BenchmarkPipeline(b *testing.B) {
	const rows = 32
	r := newRepo(b)
	r.mlp("extractor", "1", []int{256, 512, 128}, 1)
	r.mlp("head", "1", []int{128, 256, 10}, 2)
	r.config("pipe", `{"pipeline": {"steps": [{"model": "extractor"}, {"model": "head"}]}}`)
	tn := startNode(b, testConfig(b, r.dir))
	rc := tn.raw(b, client.HTTP1)
	x := randomRows(rand.New(rand.NewPCG(1, 2)), rows, 256)
	in := &oip.Request{Inputs: []models.Tensor{f32("input", []int64{rows, 256}, x)}, BinaryOutput: true}
	body, hl := encode(b, in, true)

	b.Run("pipeline", func(b *testing.B) {
		for range b.N {
			decodeReply(b, rc.do(b, http.MethodPost, "/v2/models/pipe/infer", body, inferHeaders(hl)))
		}
		b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("two-calls", func(b *testing.B) {
		for range b.N {
			mid := decodeReply(b, rc.do(b, http.MethodPost, "/v2/models/extractor/infer", body, inferHeaders(hl)))
			t := mid.Outputs[0]
			t.Name = "input"
			body2, hl2 := encode(b, &oip.Request{Inputs: []models.Tensor{t}, BinaryOutput: true}, true)
			decodeReply(b, rc.do(b, http.MethodPost, "/v2/models/head/infer", body2, inferHeaders(hl2)))
		}
		b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
	})
}
