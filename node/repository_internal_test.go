package node

import (
	"runtime"
	"testing"

	"github.com/petrel-mesh/petrel/models/ort"
)

func TestRuntimeOptionsAutoThreads(t *testing.T) {
	base := ort.DefaultOptions()
	base.IntraOpThreads = 0 // auto
	var none ModelConfig
	if got := none.runtimeOptions(base, 1<<10).IntraOpThreads; got != 1 {
		t.Errorf("small model: %d threads, want 1", got)
	}
	want := max(1, min(runtime.NumCPU(), maxAutoThreads))
	if got := none.runtimeOptions(base, 32<<20).IntraOpThreads; got != want {
		t.Errorf("large model: %d threads, want %d", got, want)
	}
	three := 3
	pinned := ModelConfig{Runtime: &RuntimeOverrides{IntraOpThreads: &three}}
	if got := pinned.runtimeOptions(base, 32<<20).IntraOpThreads; got != 3 {
		t.Errorf("config override: %d threads, want 3", got)
	}
	base.IntraOpThreads = 2
	if got := none.runtimeOptions(base, 1<<10).IntraOpThreads; got != 2 {
		t.Errorf("node flag: %d threads, want 2", got)
	}
}
