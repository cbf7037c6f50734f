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
	if got := none.runtimeOptions(base).IntraOpThreads; got != AutoIntraOpThreads {
		t.Errorf("auto: %d threads, want %d", got, AutoIntraOpThreads)
	}
	three := 3
	pinned := ModelConfig{Runtime: &RuntimeOverrides{IntraOpThreads: &three}}
	if got := pinned.runtimeOptions(base).IntraOpThreads; got != 3 {
		t.Errorf("config override: %d threads, want 3", got)
	}
	base.IntraOpThreads = 2
	if got := none.runtimeOptions(base).IntraOpThreads; got != 2 {
		t.Errorf("node flag: %d threads, want 2", got)
	}
}

func TestAutoConcurrency(t *testing.T) {
	cores := min(runtime.NumCPU(), maxAutoConcurrency)
	for _, c := range []struct{ threads, want int }{
		{1, cores},
		{0, cores},
		{cores, 1},
		{2 * cores, 1},
	} {
		if got := AutoConcurrency(c.threads); got != c.want {
			t.Errorf("AutoConcurrency(%d) = %d, want %d", c.threads, got, c.want)
		}
	}
}
