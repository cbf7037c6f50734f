package sched

import (
	"context"
	"testing"

	"github.com/petrel-mesh/petrel/models"
)

type nopExec struct{}

func (nopExec) Run(context.Context, []models.Tensor, []string) ([]models.Tensor, error) {
	return nil, nil
}

// BenchmarkSubmitIdle is the latency the scheduler adds to one request on
// an idle scheduler: Concurrency 1, MaxQueueDelay 0, no-op executor.
func BenchmarkSubmitIdle(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"unbatched", Config{}},
		{"batching", Config{MaxBatchSize: 8}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(bc.cfg, nopExec{}, batchSig(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(context.Background())
			r := req(1, 0)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Submit(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSubmitParallel is throughput with many callers and batching.
func BenchmarkSubmitParallel(b *testing.B) {
	s, err := New(Config{MaxBatchSize: 32, Concurrency: 2}, nopBatchExec{}, batchSig(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := req(1, 0, "z")
		for pb.Next() {
			if _, err := s.Submit(context.Background(), r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// nopBatchExec answers "z" with zeros of the right shape.
type nopBatchExec struct{}

func (nopBatchExec) Run(_ context.Context, in []models.Tensor, _ []string) ([]models.Tensor, error) {
	rows := in[0].Shape[0]
	return []models.Tensor{{Name: "z", DataType: models.FP32, Shape: []int64{rows, 1}, Data: make([]byte, 4*rows)}}, nil
}
