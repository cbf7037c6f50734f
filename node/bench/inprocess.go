package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/petrel-mesh/petrel/models"
	petrelort "github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node"
	ort "github.com/yalue/onnxruntime_go"
)

// Runtimes measured in process.
const (
	// RuntimePetrel is models/ort with the options a node gives the model
	// (one intra-op thread, no spinning, arena on), through the
	// models.Session API, one run at a time.
	RuntimePetrel = "models/ort as the node runs it"
	// RuntimeParallel is RuntimePetrel with as many runs at once as a node
	// gives the model (node.AutoConcurrency), each on its own goroutine: a
	// node's throughput without HTTP.
	RuntimeParallel = "models/ort as the node runs it, runs in parallel"
	// RuntimeDefault is onnxruntime_go with ONNX Runtime's default session
	// options (an intra-op pool of one thread per physical core, spinning),
	// input tensor created once, outputs allocated by ONNX Runtime.
	RuntimeDefault = "onnxruntime_go defaults"
)

// InProcessResult is the cost of Session.Run in the calling process, with
// no HTTP in the way: the floor under any server's latency.
type InProcessResult struct {
	Runtime    string
	Batch      int
	Iterations int
	P50        time.Duration
	Mean       time.Duration
	RowsPerSec float64 // batch × runs per second, over all iterations
}

// InProcessReport holds one model and batch size measured with each
// runtime.
type InProcessReport struct {
	Petrel, Default InProcessResult
	// Parallel is RuntimeParallel; its P50 is that of single runs while
	// the others run, so only its RowsPerSec enters Best.
	Parallel InProcessResult
}

// Best returns the fastest: lower p50 for latency (of one run at a time),
// higher rows/s for throughput (of all three). The targets compare
// against the best, to be honest against ourselves.
func (r InProcessReport) Best() (latency, throughput InProcessResult) {
	latency, throughput = r.Petrel, r.Default
	if r.Default.P50 < r.Petrel.P50 {
		latency = r.Default
	}
	if r.Petrel.RowsPerSec > r.Default.RowsPerSec {
		throughput = r.Petrel
	}
	if r.Parallel.RowsPerSec > throughput.RowsPerSec {
		throughput = r.Parallel
	}
	return latency, throughput
}

// InProcess measures a single Run of modelFile at the given batch size,
// iterations times after a short warm-up, with both runtimes (alternating
// in halves, so that noise from the machine hits both alike), back to
// back. ONNX Runtime must be initialised with models/ort's Init. The model
// must have one FP32 input with a dynamic or matching first dimension.
func InProcess(modelFile string, batch, iterations int) (InProcessReport, error) {
	return InProcessGap(modelFile, batch, iterations, 0)
}

// InProcessGap is InProcess with the thread left idle for gap before each
// run (time.Sleep, not timed), as a server's runtime is between requests
// at low load: on machines where an idle CPU loses its caches (virtual
// machines above all), this is what a Run costs there.
func InProcessGap(modelFile string, batch, iterations int, gap time.Duration) (InProcessReport, error) {
	var rep InProcessReport
	if batch < 1 || iterations < 2 || gap < 0 {
		return rep, errors.New("in-process: want batch >= 1, iterations >= 2 and gap >= 0")
	}
	b, err := os.ReadFile(modelFile)
	if err != nil {
		return rep, fmt.Errorf("in-process: %w", err)
	}
	// The session options a node gives this model: Petrel's defaults with
	// the automatic intra-op thread count.
	opts := petrelort.DefaultOptions()
	opts.IntraOpThreads = node.AutoIntraOpThreads
	ps, err := petrelort.Load(b, opts)
	if err != nil {
		return rep, fmt.Errorf("in-process: %s: %w", modelFile, err)
	}
	defer ps.Close()
	sig := ps.Signature()
	if len(sig.Inputs) != 1 || sig.Inputs[0].DataType != models.FP32 {
		return rep, fmt.Errorf("in-process: %s: want one FP32 input", modelFile)
	}
	shape := RequestShape(sig.Inputs[0].Shape, batch)
	n, err := models.NumElements(shape)
	if err != nil {
		return rep, err
	}
	rng := rand.New(rand.NewPCG(uint64(batch), 7))
	data, _ := randomData(rng, models.FP32, int(n))
	in := []models.Tensor{{Name: sig.Inputs[0].Name, DataType: models.FP32, Shape: shape, Data: data}}
	ctx := context.Background()
	petrelRun := func() error { _, err := ps.Run(ctx, in, nil); return err }

	outNames := make([]string, len(sig.Outputs))
	for i, o := range sig.Outputs {
		outNames[i] = o.Name
	}
	ds, err := ort.NewDynamicAdvancedSession(modelFile, []string{sig.Inputs[0].Name}, outNames, nil)
	if err != nil {
		return rep, fmt.Errorf("in-process: %s: %w", modelFile, err)
	}
	defer ds.Destroy()
	floats := make([]float32, n)
	for i := range floats {
		floats[i] = math.Float32frombits(uint32(data[4*i]) | uint32(data[4*i+1])<<8 | uint32(data[4*i+2])<<16 | uint32(data[4*i+3])<<24)
	}
	input, err := ort.NewTensor(ort.NewShape(shape...), floats)
	if err != nil {
		return rep, fmt.Errorf("in-process: input tensor: %w", err)
	}
	defer input.Destroy()
	outs := make([]ort.Value, len(outNames))
	defaultRun := func() error {
		clear(outs)
		if err := ds.Run([]ort.Value{input}, outs); err != nil {
			return err
		}
		for _, v := range outs {
			v.Destroy()
		}
		return nil
	}

	warm := max(iterations/10, 3)
	pl := make([]time.Duration, 0, iterations)
	dl := make([]time.Duration, 0, iterations)
	for _, half := range []int{iterations / 2, iterations - iterations/2} {
		for _, r := range []struct {
			run func() error
			lat *[]time.Duration
		}{{petrelRun, &pl}, {defaultRun, &dl}} {
			if err := timeRuns(r.run, warm, half, gap, r.lat); err != nil {
				return rep, fmt.Errorf("in-process: %s: %w", modelFile, err)
			}
		}
	}
	rep.Petrel = summarize(RuntimePetrel, batch, pl)
	rep.Default = summarize(RuntimeDefault, batch, dl)
	if gap == 0 {
		rep.Parallel, err = parallelRuns(petrelRun, node.AutoConcurrency(opts.IntraOpThreads), batch, warm, iterations)
		if err != nil {
			return rep, fmt.Errorf("in-process: %s: %w", modelFile, err)
		}
	}
	return rep, nil
}

// parallelRuns runs run on p goroutines at once, iterations runs in all
// after warm untimed ones each, and reports rows/s over the wall time of
// the timed runs (p50 is that of single runs).
func parallelRuns(run func() error, p, batch, warm, iterations int) (InProcessResult, error) {
	per := max(iterations/p, 1)
	lats := make([][]time.Duration, p)
	errs := make([]error, p)
	var ready, done sync.WaitGroup
	startCh := make(chan struct{})
	ready.Add(p)
	done.Add(p)
	for g := range p {
		go func() {
			defer done.Done()
			for range warm {
				if err := run(); err != nil {
					errs[g] = err
					break
				}
			}
			ready.Done()
			<-startCh
			if errs[g] != nil {
				return
			}
			lats[g] = make([]time.Duration, 0, per)
			errs[g] = timeRuns(run, 0, per, 0, &lats[g])
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(startCh)
	done.Wait()
	wall := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return InProcessResult{}, err
	}
	all := slices.Concat(lats...)
	r := summarize(RuntimeParallel, batch, all)
	r.RowsPerSec = float64(batch) * float64(len(all)) / wall.Seconds()
	return r, nil
}

// timeRuns runs run warm times unrecorded, then n times, appending each
// duration to lat; with a gap, it sleeps that long before each timed run.
func timeRuns(run func() error, warm, n int, gap time.Duration, lat *[]time.Duration) error {
	for range warm {
		if err := run(); err != nil {
			return err
		}
	}
	for range n {
		if gap > 0 {
			time.Sleep(gap)
		}
		t0 := time.Now()
		if err := run(); err != nil {
			return err
		}
		*lat = append(*lat, time.Since(t0))
	}
	return nil
}

func summarize(runtime string, batch int, lat []time.Duration) InProcessResult {
	r := InProcessResult{Runtime: runtime, Batch: batch, Iterations: len(lat)}
	if len(lat) == 0 {
		return r
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	r.P50 = Percentile(s, 50)
	r.Mean = sum / time.Duration(len(lat))
	if sum > 0 {
		r.RowsPerSec = float64(batch) * float64(len(lat)) / sum.Seconds()
	}
	return r
}
