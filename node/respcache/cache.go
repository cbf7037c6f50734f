// Package respcache is a node's response cache: inference outputs keyed
// by the model digest and the canonical bytes of the request (KeyFor),
// kept in one LRU list bounded by bytes.
//
// Only deterministic models belong in it; the caller decides which. Keys
// carry the model digest, so a new model version never sees an old
// version's responses; those simply age out.
//
// Ownership: Put copies the value into one allocation the cache owns, so
// the byte bound is the memory actually held (a batched response would
// otherwise pin its whole batch's output buffer) and the caller may reuse
// its buffers. Get returns the cached value itself, without copying, so
// callers must treat it as read-only: neither the slice nor its tensors'
// Shape or Data may be modified.
package respcache

import (
	"sync"

	"github.com/petrel-mesh/petrel/models"
)

// Overheads counted in an entry's size on top of its names, shapes and
// data, approximating the memory the cache spends per entry and tensor.
const (
	EntryOverhead  = 128 // map slot, list links, key, slice header
	TensorOverhead = 80  // one models.Tensor header
)

// Stats counts cache traffic since New.
type Stats struct {
	Hits      uint64
	Misses    uint64
	Evictions uint64 // entries dropped to stay within maxBytes
	Rejected  uint64 // Puts of values larger than maxBytes, not stored
}

// Cache is an LRU of responses bounded by bytes. It is safe for
// concurrent use; one mutex guards it (Get moves entries, so reads lock
// too).
type Cache struct {
	maxBytes int64

	mu    sync.Mutex
	bytes int64
	items map[Key]*entry
	lru   entry // sentinel: lru.next is the most recently used
	stats Stats
}

type entry struct {
	key        Key
	val        []models.Tensor
	size       int64
	prev, next *entry
}

// New returns a cache holding at most maxBytes, as counted by Size.
// maxBytes <= 0 gives a cache that stores nothing.
func New(maxBytes int64) *Cache {
	c := &Cache{maxBytes: maxBytes, items: make(map[Key]*entry)}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

// Size is what a value counts against maxBytes: EntryOverhead plus, per
// tensor, TensorOverhead and the bytes of its name, datatype, shape (8 per
// dimension) and data.
func Size(v []models.Tensor) int64 {
	n := int64(EntryOverhead)
	for i := range v {
		t := &v[i]
		n += TensorOverhead + int64(len(t.Name)+len(t.DataType)+8*len(t.Shape)+len(t.Data))
	}
	return n
}

// Get returns the cached value for k and marks it most recently used.
// The value is shared: do not modify it.
func (c *Cache) Get(k Key) ([]models.Tensor, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		c.stats.Misses++
		return nil, false
	}
	c.stats.Hits++
	c.unlink(e)
	c.pushFront(e)
	return e.val, true
}

// Put stores v under k as the most recently used entry, replacing any
// value k had, and evicts least recently used entries until the cache
// fits maxBytes. A value whose Size exceeds maxBytes is not stored (and
// k's old value, if any, is dropped). Put copies v; the copy is made
// outside the lock.
func (c *Cache) Put(k Key, v []models.Tensor) {
	size := Size(v)
	var val []models.Tensor
	if size <= c.maxBytes {
		val = clone(v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.items[k]; ok {
		c.remove(old)
	}
	if size > c.maxBytes {
		c.stats.Rejected++
		return
	}
	e := &entry{key: k, val: val, size: size}
	c.items[k] = e
	c.pushFront(e)
	c.bytes += size
	for c.bytes > c.maxBytes {
		c.remove(c.lru.prev)
		c.stats.Evictions++
	}
}

// Len is the number of entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// Bytes is the sum of the entries' Size.
func (c *Cache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// clone deep-copies v: all data in one buffer, all shapes in another.
func clone(v []models.Tensor) []models.Tensor {
	nData, nDims := 0, 0
	for i := range v {
		nData += len(v[i].Data)
		nDims += len(v[i].Shape)
	}
	data := make([]byte, nData)
	dims := make([]int64, nDims)
	out := make([]models.Tensor, len(v))
	for i := range v {
		t := &v[i]
		d := data[:len(t.Data):len(t.Data)]
		data = data[len(t.Data):]
		copy(d, t.Data)
		s := dims[:len(t.Shape):len(t.Shape)]
		dims = dims[len(t.Shape):]
		copy(s, t.Shape)
		out[i] = models.Tensor{Name: t.Name, DataType: t.DataType, Shape: s, Data: d}
	}
	return out
}

func (c *Cache) remove(e *entry) {
	c.unlink(e)
	delete(c.items, e.key)
	c.bytes -= e.size
}

func (c *Cache) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *Cache) pushFront(e *entry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}
