package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/petrel-mesh/petrel/models"
)

// Batch profiling: when a model's config names no preferred batch sizes,
// the node times the model as each version loads, at batch sizes 1, 2, 4,
// … max_batch_size, and prefers the sizes whose cost per row is within
// profileSlack of the cheapest. The scheduler then dispatches a busy
// model's batch as soon as it reaches one of them instead of growing it
// further.
//
// Why: a runtime's cost per row is not monotonic in the batch size. The
// 1024→4096→1024 MLP of the benchmark costs, per row, 850 µs at batch 1,
// 100 µs at 16, 120 µs at 32 and 110 µs at 64 on the development machine
// (one intra-op thread): batches of 16 beat the 30-row batches a loaded
// node formed by itself by about 30% in rows/s. Which sizes are cheap
// depends on the model, the CPU and its caches, so it is measured where
// the model runs rather than guessed. Triton leaves this to an offline
// tool (Model Analyzer); a node that loads models pushed to it at any
// time has to do it itself, within a small time budget.

// profileSlack is how much dearer per row than the cheapest size a
// preferred size may be.
const profileSlack = 1.10

// profileBudget bounds the time profiling adds to a version's load; the
// sizes it did not reach are left out.
const profileBudget = 400 * time.Millisecond

// profileRuns is how many timed runs each size gets (the fastest counts,
// which is the one least disturbed by other work on the machine).
const profileRuns = 3

// BatchCost is one profiled batch size.
type BatchCost struct {
	Batch     int     `json:"batch"`
	RunMicros float64 `json:"run_us"`
	RowMicros float64 `json:"row_us"`
}

// BatchProfile is what profiling a version found.
type BatchProfile struct {
	Costs     []BatchCost `json:"costs"`
	Preferred []int       `json:"preferred"`
}

// profileBatches times s at growing batch sizes up to maxBatch within
// budget. It returns ok=false, with no error, when the signature cannot be
// profiled: an input or output with a static first dimension (the model
// cannot batch), an input with another dynamic dimension, or variable-length (BYTES) data, so that the node has no
// shape to make up. A run that fails is an error: the model accepted its
// signature's shape and then rejected it.
func profileBatches(ctx context.Context, s models.Session, sig models.Signature, maxBatch int, budget time.Duration) (BatchProfile, bool, error) {
	var p BatchProfile
	if maxBatch < 2 || len(sig.Inputs) == 0 {
		return p, false, nil
	}
	for _, out := range sig.Outputs {
		if len(out.Shape) == 0 || out.Shape[0] != -1 {
			return p, false, nil
		}
	}
	for _, in := range sig.Inputs {
		if len(in.Shape) == 0 || in.Shape[0] != -1 || in.DataType.Size() == 0 {
			return p, false, nil
		}
		for _, d := range in.Shape[1:] {
			if d < 0 {
				return p, false, nil
			}
		}
	}
	start := time.Now()
	for b := 1; ; b = min(2*b, maxBatch) {
		if n := len(p.Costs); n > 0 {
			// The next size costs about twice the last one, per run.
			next := time.Duration(p.Costs[n-1].RunMicros*2*(profileRuns+1)) * time.Microsecond
			if time.Since(start)+next > budget {
				break
			}
		}
		in, err := profileInputs(sig, b)
		if err != nil {
			return p, false, err
		}
		best := time.Duration(math.MaxInt64)
		for i := range profileRuns + 1 { // the first run warms up
			t0 := time.Now()
			if _, err := s.Run(ctx, in, nil); err != nil {
				return p, false, fmt.Errorf("batch profile: batch %d: %w", b, err)
			}
			if d := time.Since(t0); i > 0 {
				best = min(best, d)
			}
		}
		us := float64(best) / float64(time.Microsecond)
		p.Costs = append(p.Costs, BatchCost{Batch: b, RunMicros: us, RowMicros: us / float64(b)})
		if b == maxBatch {
			break
		}
	}
	p.Preferred = choosePreferred(p.Costs)
	return p, true, nil
}

// rowCosts is the profile for a log line: "batch:µs per row …".
func (p *BatchProfile) rowCosts() string {
	var b []byte
	for i, c := range p.Costs {
		if i > 0 {
			b = append(b, ' ')
		}
		b = fmt.Appendf(b, "%d:%.1f", c.Batch, c.RowMicros)
	}
	return string(b)
}

// choosePreferred returns the batch sizes whose cost per row is within
// profileSlack of the cheapest, ascending.
func choosePreferred(costs []BatchCost) []int {
	if len(costs) == 0 {
		return nil
	}
	cheapest := math.Inf(1)
	for _, c := range costs {
		cheapest = min(cheapest, c.RowMicros)
	}
	var pref []int
	for _, c := range costs {
		if c.RowMicros <= cheapest*profileSlack {
			pref = append(pref, c.Batch)
		}
	}
	slices.Sort(pref)
	return pref
}

// profileInputs makes a batch of rows inputs for sig: floating-point data
// small and varied (zeros can take shortcuts in some kernels), integers
// and booleans zero (an integer input may be an index, and zero is always
// in range).
func profileInputs(sig models.Signature, rows int) ([]models.Tensor, error) {
	ins := make([]models.Tensor, len(sig.Inputs))
	for i, spec := range sig.Inputs {
		shape := slices.Clone(spec.Shape)
		shape[0] = int64(rows)
		n, err := models.ByteSize(spec.DataType, shape)
		if err != nil {
			return nil, fmt.Errorf("batch profile: input %q: %w", spec.Name, err)
		}
		data := make([]byte, n)
		switch spec.DataType {
		case models.FP32:
			for j := 0; j+4 <= len(data); j += 4 {
				binary.LittleEndian.PutUint32(data[j:], math.Float32bits(float32(j%17)/32-0.25))
			}
		case models.FP64:
			for j := 0; j+8 <= len(data); j += 8 {
				binary.LittleEndian.PutUint64(data[j:], math.Float64bits(float64(j%17)/32-0.25))
			}
		}
		ins[i] = models.Tensor{Name: spec.Name, DataType: spec.DataType, Shape: shape, Data: data}
	}
	return ins, nil
}
