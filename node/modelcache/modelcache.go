// Package modelcache holds the model-cache decisions of a node: which
// loaded model versions to evict when memory is short (least recently
// used first, by host and GPU bytes) and whether to admit a model that was missed
// (a TinyLFU-like doorkeeper). The node's manager (node/acquire.go) and
// the edge simulator (simulations/edgesim) both call it, so the
// simulations measure the policy the node runs.
//
// Victims and Admission are pure decisions without I/O or clocks: time is
// passed in as a number the caller chooses (nanoseconds of a wall or a
// simulated clock). Cache combines them into a byte-bounded cache for
// callers that do not keep their own bookkeeping.
package modelcache

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Item is one loaded model version as eviction sees it.
type Item struct {
	// Key names the version (for example "model@version").
	Key string
	// Bytes is the host memory the version takes.
	Bytes int64
	// GPUBytes is the GPU memory the version may take (for a session on
	// the CUDA provider, its arena limit); zero for a CPU session.
	GPUBytes int64
	// LastUsed is when it last served a request (any monotone clock).
	LastUsed int64
	// Evictable is false for pinned versions (loaded from the node's own
	// repository) and for the version being installed.
	Evictable bool
}

// Victims returns the indices into items of the versions to evict so that
// the total Bytes of all items drops to limit or below: evictable items,
// least recently used first (ties by Key, then index), until the total
// fits or no evictable item is left. A limit of zero or less means no
// limit (nothing is evicted). items is not modified.
func Victims(items []Item, limit int64) []int {
	return VictimsWithin(items, Limits{Host: limit})
}

// Limits bounds the loaded versions in host memory (Item.Bytes) and in
// GPU memory (Item.GPUBytes); zero or less means no limit for that one.
type Limits struct {
	Host, GPU int64
}

// VictimsWithin returns the indices into items of the versions to evict
// so that both totals fit their limits: evictable items, least recently
// used first (ties by Key, then index), skipping an item that frees
// nothing of a total still over its limit (a CPU model is not evicted to
// make room on the GPU), until both fit or no candidate is left. items is
// not modified.
func VictimsWithin(items []Item, lim Limits) []int {
	var host, gpu int64
	cands := make([]int, 0, len(items))
	for i, it := range items {
		host += it.Bytes
		gpu += it.GPUBytes
		if it.Evictable {
			cands = append(cands, i)
		}
	}
	hostOver := func() bool { return lim.Host > 0 && host > lim.Host }
	gpuOver := func() bool { return lim.GPU > 0 && gpu > lim.GPU }
	if !hostOver() && !gpuOver() {
		return nil
	}
	slices.SortFunc(cands, func(a, b int) int {
		return cmp.Or(
			cmp.Compare(items[a].LastUsed, items[b].LastUsed),
			cmp.Compare(items[a].Key, items[b].Key),
			cmp.Compare(a, b),
		)
	})
	var out []int
	for _, i := range cands {
		h, g := hostOver(), gpuOver()
		if !h && !g {
			break
		}
		if (h && items[i].Bytes > 0) || (g && items[i].GPUBytes > 0) {
			host -= items[i].Bytes
			gpu -= items[i].GPUBytes
			out = append(out, i)
		}
	}
	return out
}

// Admission decides whether a model that was just missed should be loaded
// into the cache.
type Admission interface {
	// Admit records a miss of key at time now and reports whether the
	// model should be loaded.
	Admit(key string, now int64) bool
}

// AlwaysAdmit admits every miss: the node's LazyLoad behaviour.
type AlwaysAdmit struct{}

// Admit implements Admission.
func (AlwaysAdmit) Admit(string, int64) bool { return true }

var (
	_ Admission = AlwaysAdmit{}
	_ Admission = (*Doorkeeper)(nil)
)

// Doorkeeper admits a key once it has been missed Threshold times within
// Window: a one-hit wonder does not push a useful model out, as in
// TinyLFU's doorkeeper. It remembers at most MaxKeys keys; when full it
// forgets everything (the "reset" of TinyLFU), which only delays
// admissions. Not safe for concurrent use.
type Doorkeeper struct {
	threshold int
	window    int64
	maxKeys   int
	seen      map[string]*doorEntry
}

type doorEntry struct {
	count int
	first int64
}

// DoorkeeperConfig configures NewDoorkeeper.
type DoorkeeperConfig struct {
	// Threshold is the number of misses within Window that admits a key;
	// at least 1 (1 admits every miss). Zero means 2.
	Threshold int
	// Window is the time, in the caller's clock units, over which misses
	// are counted; must be positive.
	Window int64
	// MaxKeys bounds the keys remembered; zero means 65536.
	MaxKeys int
}

// ErrInvalidConfig is wrapped by configuration errors.
var ErrInvalidConfig = errors.New("modelcache: invalid config")

// NewDoorkeeper returns a doorkeeper.
func NewDoorkeeper(cfg DoorkeeperConfig) (*Doorkeeper, error) {
	if cfg.Threshold == 0 {
		cfg.Threshold = 2
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 1 << 16
	}
	switch {
	case cfg.Threshold < 1:
		return nil, fmt.Errorf("%w: doorkeeper Threshold %d < 1", ErrInvalidConfig, cfg.Threshold)
	case cfg.Window <= 0:
		return nil, fmt.Errorf("%w: doorkeeper Window %d must be positive", ErrInvalidConfig, cfg.Window)
	case cfg.MaxKeys < 1:
		return nil, fmt.Errorf("%w: doorkeeper MaxKeys %d < 1", ErrInvalidConfig, cfg.MaxKeys)
	}
	return &Doorkeeper{threshold: cfg.Threshold, window: cfg.Window, maxKeys: cfg.MaxKeys, seen: map[string]*doorEntry{}}, nil
}

// Admit implements Admission: it counts the miss and admits the key when
// the count within the window reaches the threshold (the count then
// starts again, so a key evicted later needs Threshold new misses).
func (d *Doorkeeper) Admit(key string, now int64) bool {
	e, ok := d.seen[key]
	if !ok || now-e.first > d.window {
		if !ok && len(d.seen) >= d.maxKeys {
			clear(d.seen)
		}
		if !ok {
			e = &doorEntry{}
			d.seen[key] = e
		}
		e.count, e.first = 0, now
	}
	e.count++
	if e.count >= d.threshold {
		delete(d.seen, key)
		return true
	}
	return false
}

// Cache is a byte-bounded model cache: Victims for eviction and an
// Admission for misses. Not safe for concurrent use.
type Cache struct {
	limit int64
	admit Admission
	items []Item
	index map[string]int
	bytes int64
	stats Stats
}

// Stats counts a Cache's activity.
type Stats struct {
	Hits, Misses, Admitted, Rejected, Evictions uint64
	EvictedBytes                                int64
}

// NewCache returns a cache holding at most limit bytes of evictable and
// pinned items; admit nil means AlwaysAdmit. limit must be positive.
func NewCache(limit int64, admit Admission) (*Cache, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: cache limit %d must be positive", ErrInvalidConfig, limit)
	}
	if admit == nil {
		admit = AlwaysAdmit{}
	}
	return &Cache{limit: limit, admit: admit, index: map[string]int{}}, nil
}

// Limit returns the byte limit.
func (c *Cache) Limit() int64 { return c.limit }

// Bytes returns the bytes held.
func (c *Cache) Bytes() int64 { return c.bytes }

// Len returns the number of items held.
func (c *Cache) Len() int { return len(c.items) }

// Stats returns the counters.
func (c *Cache) Stats() Stats { return c.stats }

// Contains reports whether key is held, without touching it.
func (c *Cache) Contains(key string) bool { _, ok := c.index[key]; return ok }

// Get reports whether key is held and, if so, marks it used at now; it
// counts a hit or a miss.
func (c *Cache) Get(key string, now int64) bool {
	i, ok := c.index[key]
	if !ok {
		c.stats.Misses++
		return false
	}
	c.stats.Hits++
	c.items[i].LastUsed = now
	return true
}

// Touch marks key used at now, as serving a request does, without
// counting a hit or a miss; it reports whether key is held.
func (c *Cache) Touch(key string, now int64) bool {
	i, ok := c.index[key]
	if ok {
		c.items[i].LastUsed = now
	}
	return ok
}

// Admit asks the admission policy whether a missed key should be loaded;
// it counts the decision.
func (c *Cache) Admit(key string, now int64) bool {
	if c.admit.Admit(key, now) {
		c.stats.Admitted++
		return true
	}
	c.stats.Rejected++
	return false
}

// Add inserts key (used at now) and evicts by Victims until the cache
// fits; the new item is never evicted by its own insertion. pinned items
// are never evicted. It returns the evicted keys. Adding a key already
// held only touches it. An item larger than the limit is not added and
// Add returns false.
func (c *Cache) Add(key string, bytes int64, now int64, pinned bool) (evicted []string, added bool) {
	if i, ok := c.index[key]; ok {
		c.items[i].LastUsed = now
		return nil, true
	}
	if bytes > c.limit || bytes < 0 {
		return nil, false
	}
	c.items = append(c.items, Item{Key: key, Bytes: bytes, LastUsed: now, Evictable: false})
	c.index[key] = len(c.items) - 1
	c.bytes += bytes
	if c.bytes > c.limit {
		victims := Victims(c.items, c.limit)
		for _, v := range victims {
			evicted = append(evicted, c.items[v].Key)
		}
		for _, k := range evicted {
			c.stats.Evictions++
			c.stats.EvictedBytes += c.items[c.index[k]].Bytes
			c.remove(k)
		}
	}
	c.items[c.index[key]].Evictable = !pinned
	return evicted, true
}

// Remove drops key if held.
func (c *Cache) Remove(key string) { c.remove(key) }

func (c *Cache) remove(key string) {
	i, ok := c.index[key]
	if !ok {
		return
	}
	c.bytes -= c.items[i].Bytes
	last := len(c.items) - 1
	if i != last {
		c.items[i] = c.items[last]
		c.index[c.items[i].Key] = i
	}
	c.items = c.items[:last]
	delete(c.index, key)
}

// Keys returns the keys held, in no particular but deterministic order
// (insertion order perturbed by removals).
func (c *Cache) Keys() []string {
	out := make([]string, len(c.items))
	for i, it := range c.items {
		out[i] = it.Key
	}
	return out
}
