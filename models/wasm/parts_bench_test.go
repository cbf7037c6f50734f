package wasm

import (
	"context"
	"testing"

	"github.com/petrel-mesh/petrel/models"
)

// BenchmarkTransformParts breaks BenchmarkTransforms down: each transform
// alone, their client-error paths, and the bare cost of an ABI call
// (petrel_abi_version) into a pooled instance.
func BenchmarkTransformParts(b *testing.B) {
	r := newRuntime(b, Options{})
	pre := compile(b, r, "features", Grants{})
	post := compile(b, r, "topk", Grants{})
	ctx := context.Background()
	body := []byte(`{"features":{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}}`)
	probs := []models.Tensor{{Name: "probabilities", DataType: models.FP32, Shape: []int64{1, 10},
		Data: fp32(0.01, 0.02, 0.5, 0.03, 0.04, 0.05, 0.2, 0.1, 0.03, 0.02)}}
	b.Run("pre", func(b *testing.B) {
		for b.Loop() {
			if _, err := pre.Pre(ctx, "application/json", body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("post", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := post.Post(ctx, probs, "application/json"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("post-reject", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := post.Post(ctx, probs, "application/xml"); err == nil {
				b.Fatal("xml accepted")
			}
		}
	})
	b.Run("pre-reject", func(b *testing.B) {
		for b.Loop() {
			if _, err := pre.Pre(ctx, "text/plain", body); err == nil {
				b.Fatal("text/plain accepted")
			}
		}
	})
	b.Run("version", func(b *testing.B) {
		inst, err := pre.get(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := inst.version.Call(ctx); err != nil {
				b.Fatal(err)
			}
		}
		pre.put(inst)
	})
}
