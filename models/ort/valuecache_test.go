package ort_test

import (
	"context"
	"encoding/binary"
	"math"
	"sync"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort/onnxtest"
)

// TestRecycledValuesCarryEachRunsData runs the same shapes over and over,
// concurrently, with different data: values recycled by the session's
// value cache must never leak one run's data into another's result, for
// static and for batch-dimension (dynamic, preallocated) outputs.
func TestRecycledValuesCarryEachRunsData(t *testing.T) {
	g := onnxtest.Graph{
		Nodes: []onnxtest.Node{{Op: "Neg", Inputs: []string{"x"}, Outputs: []string{"y"}}},
		Inputs: []onnxtest.Value{{Name: "x", Type: models.FP32, Shape: []int64{-1, 3},
			Params: []string{"batch"}}},
		Outputs: []onnxtest.Value{{Name: "y", Type: models.FP32, Shape: []int64{-1, 3},
			Params: []string{"batch"}}},
	}
	s := load(t, g)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for w := range 4 {
		wg.Go(func() {
			for i := range 300 {
				rows := 1 + (i+w)%3
				data := make([]byte, rows*3*4)
				for k := range rows * 3 {
					binary.LittleEndian.PutUint32(data[4*k:], math.Float32bits(float32(w*100000+i*10+k)))
				}
				out, err := s.Run(context.Background(), []models.Tensor{{Name: "x", DataType: models.FP32, Shape: []int64{int64(rows), 3}, Data: data}}, nil)
				if err != nil {
					errs <- err.Error()
					return
				}
				got, _ := out[0].Float64s()
				if len(got) != rows*3 || out[0].Shape[0] != int64(rows) {
					errs <- "wrong shape"
					return
				}
				for k, v := range got {
					if want := -float64(w*100000 + i*10 + k); v != want {
						errs <- "recycled value leaked another run's data"
						return
					}
				}
				// The caller owns its result: scribbling on it must not
				// affect later runs.
				for k := range out[0].Data {
					out[0].Data[k] = 0xff
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
