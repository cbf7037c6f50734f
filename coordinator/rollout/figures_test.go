package rollout

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/coordinator/bus"
)

// hist returns a latency histogram with count requests in the bucket whose
// upper bound is bound seconds (0 for the overflow bucket), merged with more
// pairs.
func hist(pairs ...float64) []uint64 {
	h := make([]uint64, len(bus.LatencyBounds)+1)
	for i := 0; i+1 < len(pairs); i += 2 {
		bound, count := pairs[i], uint64(pairs[i+1])
		idx := len(bus.LatencyBounds)
		for j, b := range bus.LatencyBounds {
			if b == bound {
				idx = j
			}
		}
		h[idx] += count
	}
	return h
}

func TestFiguresAdd(t *testing.T) {
	f := Figures{Requests: 1, Errors: 1, Latency: []uint64{1}}
	f.Add(Figures{Requests: 2, Errors: 0, Latency: []uint64{1, 2, 3}})
	want := Figures{Requests: 3, Errors: 1, Latency: []uint64{2, 2, 3}}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("Add: got %+v, want %+v", f, want)
	}
	f.Add(Figures{Latency: []uint64{1}})
	if !reflect.DeepEqual(f.Latency, []uint64{3, 2, 3}) {
		t.Fatalf("Add of a shorter histogram: got %v", f.Latency)
	}
	f = Figures{Requests: math.MaxUint64 - 1, Latency: []uint64{math.MaxUint64}}
	f.Add(Figures{Requests: 5, Latency: []uint64{1}})
	if f.Requests != math.MaxUint64 || f.Latency[0] != math.MaxUint64 {
		t.Fatalf("Add did not saturate: %+v", f)
	}
	// Add must not alias the argument's histogram.
	var g Figures
	src := Figures{Latency: []uint64{1, 2}}
	g.Add(src)
	g.Latency[0] = 99
	if src.Latency[0] != 1 {
		t.Fatal("Add aliased its argument's Latency")
	}
}

func TestFiguresErrorRate(t *testing.T) {
	tests := []struct {
		f    Figures
		want float64
	}{
		{Figures{}, 0},
		{Figures{Requests: 100, Errors: 0}, 0},
		{Figures{Requests: 100, Errors: 12}, 0.12},
		{Figures{Requests: 4, Errors: 4}, 1},
	}
	for _, tt := range tests {
		if got := tt.f.ErrorRate(); got != tt.want {
			t.Errorf("%+v.ErrorRate() = %g, want %g", tt.f, got, tt.want)
		}
	}
}

func TestFiguresQuantile(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		lat  []uint64
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"all zero", hist(), 0.99, 0},
		{"first bucket", hist(0.0005, 10), 0.99, 500 * time.Microsecond},
		{"p99 exactly at rank 99", hist(0.002, 99, 1, 1), 0.99, 2 * ms},
		{"p99 one rank further", hist(0.002, 98, 1, 2), 0.99, time.Second},
		{"overflow", hist(0.002, 98, 0, 2), 0.99, 10 * time.Second},
		{"median", hist(0.01, 50, 0.1, 50), 0.5, 10 * ms},
		{"median just past", hist(0.01, 49, 0.1, 51), 0.5, 100 * ms},
		{"q 1 is the slowest", hist(0.01, 999, 0.5, 1), 1, 500 * ms},
		{"q above 1 clamps", hist(0.01, 999, 0.5, 1), 7, 500 * ms},
		{"q 0 is the fastest", hist(0.001, 1, 0.5, 10), 0, ms},
		{"negative q clamps", hist(0.001, 1, 0.5, 10), -1, ms},
		{"NaN q", hist(0.001, 1), math.NaN(), 0},
		{"extra buckets count as overflow", append(make([]uint64, len(bus.LatencyBounds)+1), 5), 0.5, 10 * time.Second},
		{"short histogram", []uint64{0, 3}, 0.99, ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (Figures{Latency: tt.lat}).Quantile(tt.q); got != tt.want {
				t.Fatalf("Quantile(%g) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
	if got := OverflowLatency(); got != 10*time.Second {
		t.Fatalf("OverflowLatency() = %v, want 10s", got)
	}
}

func TestDiff(t *testing.T) {
	vs := func(req, errs uint64, lat ...uint64) bus.VersionStats {
		return bus.VersionStats{Model: "m", Version: "v", Requests: req, Errors: errs, Latency: lat}
	}
	tests := []struct {
		name      string
		prev, cur bus.VersionStats
		want      Figures
		restarted bool
	}{
		{"first report", vs(0, 0), vs(10, 1, 4, 6), Figures{10, 1, []uint64{4, 6}}, false},
		{"growth", vs(10, 1, 4, 6), vs(25, 3, 10, 15), Figures{15, 2, []uint64{6, 9}}, false},
		{"no change", vs(10, 1, 4, 6), vs(10, 1, 4, 6), Figures{0, 0, []uint64{0, 0}}, false},
		{"requests decrease", vs(100, 5, 50, 50), vs(7, 0, 7, 0), Figures{7, 0, []uint64{7, 0}}, true},
		{"errors decrease", vs(100, 5, 50, 50), vs(120, 1, 60, 60), Figures{120, 1, []uint64{60, 60}}, true},
		{"bucket decreases", vs(100, 5, 50, 50), vs(120, 6, 40, 80), Figures{120, 6, []uint64{40, 80}}, true},
		{"bucket vanishes", vs(100, 5, 50, 50), vs(120, 6, 120), Figures{120, 6, []uint64{120}}, true},
		{"empty bucket vanishes", vs(100, 5, 100, 0), vs(120, 6, 120), Figures{20, 1, []uint64{20}}, false},
		{"bucket appears", vs(10, 0, 10), vs(12, 0, 11, 1), Figures{2, 0, []uint64{1, 1}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, restarted := Diff(tt.prev, tt.cur)
			if restarted != tt.restarted || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Diff = %+v, %v; want %+v, %v", got, restarted, tt.want, tt.restarted)
			}
			if len(tt.cur.Latency) > 0 {
				got.Latency[0]++
				if got.Latency[0] == tt.cur.Latency[0] {
					t.Fatal("Diff aliased cur.Latency")
				}
			}
		})
	}
}

func TestTracker(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	stats := func(started time.Time, vs ...bus.VersionStats) bus.NodeStats {
		return bus.NodeStats{Node: "n1", Started: started, Versions: vs}
	}
	v := func(version string, req, errs uint64) bus.VersionStats {
		return bus.VersionStats{Model: "m", Version: version, Requests: req, Errors: errs}
	}
	tr := NewTracker()

	// First report: baseline only.
	d, err := tr.Update(stats(t0, v("v1", 1000, 10)))
	if err != nil || len(d) != 0 {
		t.Fatalf("first report: %v, %v; want no deltas", d, err)
	}
	// Growth; an unchanged version is left out; a new version counts fully.
	d, err = tr.Update(stats(t0, v("v1", 1100, 12), v("v2", 5, 1)))
	want := []Delta{
		{Node: "n1", Model: "m", Version: "v1", Figures: Figures{Requests: 100, Errors: 2}},
		{Node: "n1", Model: "m", Version: "v2", Figures: Figures{Requests: 5, Errors: 1}},
	}
	if err != nil || !reflect.DeepEqual(d, want) {
		t.Fatalf("second report: %+v, %v; want %+v", d, err, want)
	}
	d, _ = tr.Update(stats(t0, v("v1", 1100, 12), v("v2", 8, 1)))
	if len(d) != 1 || d[0].Version != "v2" || d[0].Figures.Requests != 3 {
		t.Fatalf("third report: %+v, want only v2 with 3 requests", d)
	}
	// A restart (new Started) counts everything, even if counters grew.
	d, _ = tr.Update(stats(t0.Add(time.Hour), v("v1", 2000, 0)))
	if len(d) != 1 || !d[0].Restarted || d[0].Figures.Requests != 2000 {
		t.Fatalf("after restart: %+v, want v1 with 2000 requests, restarted", d)
	}
	// A decrease without a new Started also means a restart.
	d, _ = tr.Update(stats(t0.Add(time.Hour), v("v1", 3, 0)))
	if len(d) != 1 || !d[0].Restarted || d[0].Figures.Requests != 3 {
		t.Fatalf("after decrease: %+v, want v1 with 3 requests, restarted", d)
	}
	// Bad reports change nothing.
	if _, err := tr.Update(bus.NodeStats{}); !errors.Is(err, ErrBadStats) {
		t.Fatalf("no node name: err = %v", err)
	}
	if _, err := tr.Update(stats(t0, v("v1", 1, 0), v("v1", 2, 0))); !errors.Is(err, ErrBadStats) {
		t.Fatalf("duplicate version: err = %v", err)
	}
	d, _ = tr.Update(stats(t0.Add(time.Hour), v("v1", 10, 0)))
	if len(d) != 1 || d[0].Restarted || d[0].Figures.Requests != 7 {
		t.Fatalf("after rejected reports: %+v, want 7 requests", d)
	}
	// Forget makes the next report a baseline again.
	tr.Forget("n1")
	if d, _ := tr.Update(stats(t0.Add(time.Hour), v("v1", 50, 0))); len(d) != 0 {
		t.Fatalf("after Forget: %+v, want a baseline", d)
	}
}
