package modelcache

import (
	"errors"
	"slices"
	"testing"
)

func TestVictimsLRUByBytes(t *testing.T) {
	items := []Item{
		{Key: "a", Bytes: 40, LastUsed: 30, Evictable: true},
		{Key: "pinned", Bytes: 50, LastUsed: 1, Evictable: false},
		{Key: "b", Bytes: 30, LastUsed: 10, Evictable: true},
		{Key: "c", Bytes: 20, LastUsed: 20, Evictable: true},
		{Key: "new", Bytes: 10, LastUsed: 40, Evictable: false},
	}
	// Total 150; to reach 100 evict b (oldest evictable, -30 → 120) then
	// c (-20 → 100).
	if got, want := Victims(items, 100), []int{2, 3}; !slices.Equal(got, want) {
		t.Fatalf("Victims = %v, want %v", got, want)
	}
	if got := Victims(items, 150); got != nil {
		t.Fatalf("fits already: %v", got)
	}
	if got := Victims(items, 0); got != nil {
		t.Fatalf("no limit: %v", got)
	}
	// Cannot fit: every evictable one goes, pinned ones stay.
	if got, want := Victims(items, 10), []int{2, 3, 0}; !slices.Equal(got, want) {
		t.Fatalf("over-pinned: %v, want %v", got, want)
	}
	// Ties on LastUsed go by key.
	tie := []Item{{Key: "z", Bytes: 5, Evictable: true}, {Key: "y", Bytes: 5, Evictable: true}}
	if got := Victims(tie, 5); !slices.Equal(got, []int{1}) {
		t.Fatalf("tie: %v", got)
	}
}

// TestVictimsWithinGPU: the GPU is bounded as well as host memory, and a
// version is only evicted when it frees memory that is short.
func TestVictimsWithinGPU(t *testing.T) {
	items := []Item{
		{Key: "cpu-old", Bytes: 30, LastUsed: 1, Evictable: true},
		{Key: "gpu-a", Bytes: 10, GPUBytes: 400, LastUsed: 2, Evictable: true},
		{Key: "gpu-pinned", Bytes: 10, GPUBytes: 300, LastUsed: 0},
		{Key: "gpu-b", Bytes: 10, GPUBytes: 200, LastUsed: 3, Evictable: true},
		{Key: "gpu-new", Bytes: 10, GPUBytes: 200, LastUsed: 9},
	}
	// GPU total 1100 over 800: the least recently used GPU version goes
	// (gpu-a, -400 → 700); the older CPU version stays, host has room.
	if got, want := VictimsWithin(items, Limits{Host: 1000, GPU: 800}), []int{1}; !slices.Equal(got, want) {
		t.Fatalf("GPU short: %v, want %v", got, want)
	}
	// Both short: host 70 over 50 and GPU over 600. cpu-old frees host
	// (→ 40, fits), then GPU versions go until 600 fits: gpu-a (→ 700),
	// gpu-b (→ 500).
	if got, want := VictimsWithin(items, Limits{Host: 50, GPU: 600}), []int{0, 1, 3}; !slices.Equal(got, want) {
		t.Fatalf("both short: %v, want %v", got, want)
	}
	// No GPU limit: the GPU bytes do not count.
	if got := VictimsWithin(items, Limits{Host: 1000}); got != nil {
		t.Fatalf("no limits exceeded: %v", got)
	}
	// Pinned and new versions alone exceed the GPU: all evictable GPU
	// versions go, and that is all that can be done.
	if got, want := VictimsWithin(items, Limits{GPU: 100}), []int{1, 3}; !slices.Equal(got, want) {
		t.Fatalf("over-pinned GPU: %v, want %v", got, want)
	}
	// Victims is the host-only case.
	if got, want := Victims(items, 20), []int{0, 1, 3}; !slices.Equal(got, want) {
		t.Fatalf("Victims host only: %v, want %v", got, want)
	}
}

func TestDoorkeeper(t *testing.T) {
	d, err := NewDoorkeeper(DoorkeeperConfig{Window: 100})
	if err != nil {
		t.Fatal(err)
	}
	if d.Admit("m", 0) {
		t.Fatal("first miss admitted")
	}
	if !d.Admit("m", 50) {
		t.Fatal("second miss in the window not admitted")
	}
	// Counting starts again after an admission.
	if d.Admit("m", 60) {
		t.Fatal("admitted again at once")
	}
	// A second miss outside the window starts a new count.
	if d.Admit("x", 0) || d.Admit("x", 200) {
		t.Fatal("misses 200 apart admitted with a 100 window")
	}
	if !d.Admit("x", 250) {
		t.Fatal("two misses within the window not admitted")
	}
	// Bounded memory: a full doorkeeper forgets.
	small, _ := NewDoorkeeper(DoorkeeperConfig{Window: 100, MaxKeys: 2})
	small.Admit("a", 0)
	small.Admit("b", 0)
	small.Admit("c", 0) // forgets a and b
	if small.Admit("a", 1) {
		t.Fatal("forgotten key admitted on its first remembered miss")
	}
	if len(small.seen) > 2 {
		t.Fatalf("remembers %d keys, max 2", len(small.seen))
	}
	one, _ := NewDoorkeeper(DoorkeeperConfig{Threshold: 1, Window: 1})
	if !one.Admit("k", 0) {
		t.Fatal("threshold 1 must admit at once")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []DoorkeeperConfig{{Window: 0}, {Window: 1, Threshold: -1}, {Window: 1, MaxKeys: -1}} {
		if _, err := NewDoorkeeper(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
	if _, err := NewCache(0, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("zero limit: %v", err)
	}
}

func TestCache(t *testing.T) {
	c, err := NewCache(100, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Add("p", 30, 0, true)
	c.Add("a", 30, 1, false)
	c.Add("b", 30, 2, false)
	if !c.Touch("p", 0) || c.Touch("zz", 0) {
		t.Fatal("Touch wrong")
	}
	if !c.Get("a", 3) || c.Get("zz", 3) {
		t.Fatal("Get wrong")
	}
	ev, ok := c.Add("c", 30, 4, false) // 120 > 100: evict b (LRU; a was used at 3)
	if !ok || !slices.Equal(ev, []string{"b"}) {
		t.Fatalf("evicted %v, want [b]", ev)
	}
	if c.Bytes() != 90 || c.Len() != 3 || c.Contains("b") || !c.Contains("p") {
		t.Fatalf("state: %d bytes, %d items, keys %v", c.Bytes(), c.Len(), c.Keys())
	}
	if _, ok := c.Add("huge", 101, 5, false); ok {
		t.Fatal("item over the limit added")
	}
	// A big newcomer evicts several, never the pinned one or itself.
	ev, _ = c.Add("d", 70, 6, false)
	if !slices.Equal(ev, []string{"a", "c"}) || !c.Contains("p") || !c.Contains("d") {
		t.Fatalf("evicted %v, keys %v", ev, c.Keys())
	}
	c.Remove("d")
	if c.Bytes() != 30 {
		t.Fatalf("bytes after Remove %d", c.Bytes())
	}
	st := c.Stats()
	if st.Hits != 1 || st.Misses != 1 || st.Evictions != 3 || st.EvictedBytes != 90 {
		t.Fatalf("stats %+v", st)
	}
	dk, _ := NewDoorkeeper(DoorkeeperConfig{Window: 10})
	c2, _ := NewCache(10, dk)
	if c2.Admit("m", 0) || !c2.Admit("m", 1) || c2.Stats().Admitted != 1 || c2.Stats().Rejected != 1 {
		t.Fatalf("Admit through the cache: %+v", c2.Stats())
	}
}
