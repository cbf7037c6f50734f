package sched

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models"
)

// fakeExec is the in-memory twin of a session for a model with input "x"
// (FP32, [-1, k]) and outputs "y" = 2*x (same shape) and "z" = the sum of
// each row of x ([-1, 1]). It records every call, and can hold given calls
// until released, fail, or answer with a wrong dim 0.
type fakeExec struct {
	mu        sync.Mutex
	calls     []call
	gates     map[int]chan struct{} // call index -> released when closed
	started   chan call             // every call, as it starts (see overflow)
	overflow  bool                  // started was full: a call was not reported
	err       error                 // returned by every call when set
	badDim    bool                  // y's dim 0 is one more than x's
	ignoreCtx bool                  // gated calls ignore ctx (keep running)
	panicMsg  string
}

type call struct {
	rows    int64
	shape   []int64
	outputs []string
	xs      []float32
	data    []byte // the x Data slice as received
}

func newFake() *fakeExec {
	return &fakeExec{gates: map[int]chan struct{}{}, started: make(chan call, 1000)}
}

// hold makes call number n (0-based) wait until the returned func is called.
func (f *fakeExec) hold(n int) (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	f.gates[n] = ch
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

func (f *fakeExec) Run(ctx context.Context, inputs []models.Tensor, outputs []string) ([]models.Tensor, error) {
	x := findInput(inputs, "x")
	c := call{rows: x.Shape[0], shape: x.Shape, outputs: outputs, xs: decode(x.Data), data: x.Data}
	f.mu.Lock()
	idx := len(f.calls)
	f.calls = append(f.calls, c)
	gate := f.gates[idx]
	err, badDim, ignoreCtx, panicMsg := f.err, f.badDim, f.ignoreCtx, f.panicMsg
	f.mu.Unlock()
	// Never block the executor on the report: a stress test makes more
	// calls than started holds and reads none of them (blocking here once
	// hung TestStress whenever load made its batches small). Tests that
	// read the reports fail if one was lost.
	select {
	case f.started <- c:
	default:
		f.mu.Lock()
		f.overflow = true
		f.mu.Unlock()
	}
	if gate != nil {
		if ignoreCtx {
			<-gate
		} else {
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	if panicMsg != "" {
		panic(panicMsg)
	}
	if err != nil {
		return nil, err
	}
	if outputs == nil {
		outputs = []string{"y", "z"}
	}
	rows := x.Shape[0]
	width := int64(1)
	for _, d := range x.Shape[1:] {
		width *= d
	}
	xs := decode(x.Data)
	var out []models.Tensor
	for _, name := range outputs {
		switch name {
		case "y":
			ys := make([]float32, len(xs))
			for i, v := range xs {
				ys[i] = 2 * v
			}
			shape := append([]int64(nil), x.Shape...)
			if badDim {
				shape[0]++
				ys = append(ys, make([]float32, width)...)
			}
			out = append(out, models.Tensor{Name: "y", DataType: models.FP32, Shape: shape, Data: encode(ys)})
		case "z":
			zs := make([]float32, rows)
			for r := range rows {
				for _, v := range xs[r*width : (r+1)*width] {
					zs[r] += v
				}
			}
			out = append(out, models.Tensor{Name: "z", DataType: models.FP32, Shape: []int64{rows, 1}, Data: encode(zs)})
		default:
			return nil, fmt.Errorf("fake: no output %q", name)
		}
	}
	return out, nil
}

func (f *fakeExec) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// waitStarted returns the next started call, or fails the test.
func (f *fakeExec) waitStarted(t *testing.T) call {
	t.Helper()
	f.mu.Lock()
	lost := f.overflow
	f.mu.Unlock()
	if lost {
		t.Fatal("fake executor: a start report was lost (started is full)")
	}
	select {
	case c := <-f.started:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no execution started")
		return call{}
	}
}

func encode(fs []float32) []byte {
	b := make([]byte, 4*len(fs))
	for i, f := range fs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func decode(b []byte) []float32 {
	fs := make([]float32, len(b)/4)
	for i := range fs {
		fs[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return fs
}

// batchSig is the fake's signature: batchable, x of width 2.
func batchSig() models.Signature {
	return models.Signature{
		Inputs: []models.TensorSpec{{Name: "x", DataType: models.FP32, Shape: []int64{-1, 2}}},
		Outputs: []models.TensorSpec{
			{Name: "y", DataType: models.FP32, Shape: []int64{-1, 2}},
			{Name: "z", DataType: models.FP32, Shape: []int64{-1, 1}},
		},
	}
}

// req makes a request of rows rows of width 2 whose values start at base
// and count up, so every row is unique across a test.
func req(rows int, base float32, outputs ...string) *Request {
	xs := make([]float32, 2*rows)
	for i := range xs {
		xs[i] = base + float32(i)
	}
	return &Request{
		Inputs:  []models.Tensor{{Name: "x", DataType: models.FP32, Shape: []int64{int64(rows), 2}, Data: encode(xs)}},
		Outputs: outputs,
	}
}

// checkOutputs verifies out is what the fake computes for r, in r's order.
func checkOutputs(t *testing.T, r *Request, out []models.Tensor) {
	t.Helper()
	if err := verify(r, out); err != nil {
		t.Error(err)
	}
}

func verify(r *Request, out []models.Tensor) error {
	x := r.Inputs[0]
	xs := decode(x.Data)
	rows := x.Shape[0]
	names := r.Outputs
	if names == nil {
		names = []string{"y", "z"}
	}
	if len(out) != len(names) {
		return fmt.Errorf("got %d outputs, want %d (%v)", len(out), len(names), names)
	}
	for i, name := range names {
		o := out[i]
		if o.Name != name {
			return fmt.Errorf("output %d is %q, want %q", i, o.Name, name)
		}
		got := decode(o.Data)
		switch name {
		case "y":
			if o.Shape[0] != rows || len(got) != len(xs) {
				return fmt.Errorf("y shape %v, want [%d 2]", o.Shape, rows)
			}
			for j := range xs {
				if got[j] != 2*xs[j] {
					return fmt.Errorf("y[%d] = %v, want %v (x %v, y %v)", j, got[j], 2*xs[j], xs, got)
				}
			}
			if cap(o.Data) != len(o.Data) {
				return fmt.Errorf("y data has spare capacity %d > %d: appends would overwrite a neighbour", cap(o.Data), len(o.Data))
			}
		case "z":
			if o.Shape[0] != rows || len(got) != int(rows) {
				return fmt.Errorf("z shape %v, want [%d 1]", o.Shape, rows)
			}
			for j := range got {
				if want := xs[2*j] + xs[2*j+1]; got[j] != want {
					return fmt.Errorf("z[%d] = %v, want %v", j, got[j], want)
				}
			}
		}
	}
	return nil
}

// waitFor polls cond until it holds, or fails the test after 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkGoroutines fails if the goroutine count does not come back to
// base (allowing test goroutines a moment to exit).
func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d, want <= %d\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(time.Millisecond)
	}
}

// async runs Submit in a goroutine; the result comes on the channel.
type outcome struct {
	out []models.Tensor
	err error
}

func async(ctx context.Context, s *Scheduler, r *Request) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		out, err := s.Submit(ctx, r)
		ch <- outcome{out, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(5 * time.Second):
		t.Fatal("Submit did not return")
		return outcome{}
	}
}

func mustNew(t *testing.T, cfg Config, exec Executor, sig models.Signature, obs Observer) *Scheduler {
	t.Helper()
	s, err := New(cfg, exec, sig, obs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("cleanup Close: %v", err)
		}
	})
	return s
}

// countingObserver records what the scheduler reports.
type countingObserver struct {
	mu       sync.Mutex
	queued   int
	runs     int
	rows     int
	maxBatch int
}

func (o *countingObserver) QueueTime(time.Duration) { o.mu.Lock(); o.queued++; o.mu.Unlock() }
func (o *countingObserver) ComputeTime(time.Duration) {
	o.mu.Lock()
	o.runs++
	o.mu.Unlock()
}
func (o *countingObserver) BatchSize(rows int) {
	o.mu.Lock()
	o.rows += rows
	o.maxBatch = max(o.maxBatch, rows)
	o.mu.Unlock()
}
