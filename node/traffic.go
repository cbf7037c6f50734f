package node

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/node/sched"
	"github.com/petrel-mesh/petrel/routing"
)

// Traffic split and shadow mirroring for models the coordinator manages.
//
// A model's desired state names the versions to serve with weights; a
// request that names no version goes to one of them, chosen by hashing
// the request key header (sticky: the same key gets the same version
// while the weights stay, and keeps the candidate as its weight grows) or
// at random without a key. A shadow version gets a copy of a share of the
// requests; its answers are compared with the served ones and discarded.

// DefaultRequestKeyHeader carries the key that pins a client to a version.
const DefaultRequestKeyHeader = "Petrel-Request-Key"

// traffic is a model's split, set by the control loop.
type traffic struct {
	split   *routing.Split
	weights map[string]float64
	shadows []shadowTarget
}

type shadowTarget struct {
	version string
	share   float64
}

// latencyHist is a version's cumulative latency histogram over
// bus.LatencyBounds, for the coordinator's rollout decisions.
type latencyHist struct {
	counts [14]atomic.Uint64
}

func init() {
	if len(bus.LatencyBounds)+1 != len(latencyHist{}.counts) {
		panic("node: latencyHist does not match bus.LatencyBounds")
	}
}

func (h *latencyHist) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(bus.LatencyBounds) && s > bus.LatencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
}

func (h *latencyHist) snapshot() []uint64 {
	out := make([]uint64, len(h.counts))
	for i := range h.counts {
		out[i] = h.counts[i].Load()
	}
	return out
}

// shadowAgg accumulates a shadow version's comparison figures.
type shadowAgg struct {
	mu sync.Mutex
	s  bus.ShadowStats
}

// setTraffic installs a model's split (nil clears it).
func (m *manager) setTraffic(name string, t *traffic) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t == nil {
		delete(m.traffic, name)
	} else {
		m.traffic[name] = t
	}
	shadowed := 0
	for _, t := range m.traffic {
		if len(t.shadows) > 0 {
			shadowed++
		}
	}
	m.splits.Store(int32(len(m.traffic)))
	m.shadowed.Store(int32(shadowed))
}

// lookupKeyed returns the version a request for name without a version
// goes to: by the model's split when it has one, else the latest.
func (m *manager) lookupKeyed(name, key string) (*version, error) {
	if m.splits.Load() == 0 { // no coordinator split anywhere: the plain path
		return m.lookup(name, "")
	}
	m.mu.RLock()
	t := m.traffic[name]
	e := m.models[name]
	var v *version
	if t != nil && t.split != nil && e != nil && e.state == StateReady {
		var pick string
		if key != "" {
			pick = t.split.Pick(key)
		} else {
			pick = t.split.PickRandom(rand.Uint64())
		}
		v = e.versions[pick]
		if v == nil {
			// The chosen version is not loaded (yet): the heaviest loaded
			// one takes the request.
			best := -1.0
			for ver, w := range t.weights {
				if lv := e.versions[ver]; lv != nil && w > best {
					v, best = lv, w
				}
			}
		}
	}
	m.mu.RUnlock()
	if v != nil {
		return v, nil
	}
	return m.lookup(name, "")
}

// shadowOf returns the shadow that should get a copy of this request.
func (m *manager) shadowOf(v *version, key string) *version {
	if m.shadowed.Load() == 0 { // the common case costs no lock
		return nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.traffic[v.manifest.Name]
	if t == nil || len(t.shadows) == 0 {
		return nil
	}
	e := m.models[v.manifest.Name]
	if e == nil {
		return nil
	}
	for _, s := range t.shadows {
		if s.version == v.manifest.Version {
			continue
		}
		if routing.ShouldMirror(key, s.share, rand.Uint64()) {
			return e.versions[s.version]
		}
	}
	return nil
}

// mirror runs a copy of a served request on a shadow version in the
// background and records how far its outputs are from the served ones.
func (n *Node) mirror(shadow, served *version, inputs []models.Tensor, outNames []string, outs []models.Tensor) {
	ins := cloneTensors(inputs)
	want := cloneTensors(outs)
	n.shadowWG.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		agg := shadow.shadowAgg()
		got, err := shadow.sched.Submit(ctx, &sched.Request{Inputs: ins, Outputs: outNames})
		agg.mu.Lock()
		defer agg.mu.Unlock()
		agg.s.Against = served.manifest.Version
		agg.s.Mirrored++
		if err != nil || len(got) != len(want) {
			agg.s.Failed++
			return
		}
		for i := range want {
			a, err1 := want[i].Float64s()
			b, err2 := got[i].Float64s()
			if err1 != nil || err2 != nil || len(a) != len(b) {
				agg.s.Failed++
				return
			}
			sa, sb := toF32(a), toF32(b)
			sum, mx, sq, cnt, differs, err := routing.CompareOutputs(sa, sb)
			if err != nil {
				agg.s.Failed++
				return
			}
			agg.s.Compared += uint64(cnt)
			agg.s.SumAbsDiff += sum
			agg.s.SumSquaredD += sq
			// A NaN against a number is an infinite difference; JSON has
			// no infinity, so it is reported as the largest float.
			agg.s.MaxAbsDiff = max(agg.s.MaxAbsDiff, min(mx, math.MaxFloat64))
			if differs {
				agg.s.Mismatched++
			}
		}
	})
}

func toF32(a []float64) []float32 {
	out := make([]float32, len(a))
	for i, x := range a {
		out[i] = float32(x)
	}
	return out
}

func cloneTensors(ts []models.Tensor) []models.Tensor {
	out := make([]models.Tensor, len(ts))
	for i, t := range ts {
		out[i] = t
		out[i].Shape = append([]int64(nil), t.Shape...)
		out[i].Data = append([]byte(nil), t.Data...)
	}
	return out
}

func (v *version) shadowAgg() *shadowAgg {
	if a := v.shadow.Load(); a != nil {
		return a
	}
	v.shadow.CompareAndSwap(nil, &shadowAgg{})
	return v.shadow.Load()
}
