package wasm

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models"
)

// BenchmarkTransforms measures the transform overhead of one request: the
// features pre transform and the topk post transform on warm pools. It
// reports ns/op and, from a separate timed loop, p50 and p99 in µs.
func BenchmarkTransforms(b *testing.B) {
	r := newRuntime(b, Options{})
	pre := compile(b, r, "features", Grants{})
	post := compile(b, r, "topk", Grants{})
	ctx := context.Background()
	body := []byte(`{"features":{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}}`)
	probs := []models.Tensor{{Name: "probabilities", DataType: models.FP32, Shape: []int64{1, 10},
		Data: fp32(0.01, 0.02, 0.5, 0.03, 0.04, 0.05, 0.2, 0.1, 0.03, 0.02)}}
	one := func() {
		if _, err := pre.Pre(ctx, "application/json", body); err != nil {
			b.Fatal(err)
		}
		if _, _, err := post.Post(ctx, probs, "application/json"); err != nil {
			b.Fatal(err)
		}
	}
	for range 200 { // warm the instances and the guests' heaps
		one()
	}
	lat := make([]time.Duration, 2000)
	for i := range lat {
		start := time.Now()
		one()
		lat[i] = time.Since(start)
	}
	slices.Sort(lat)
	b.ResetTimer()
	for b.Loop() {
		one()
	}
	b.StopTimer()
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
