package ort

import (
	"sync"

	"github.com/petrel-mesh/petrel/models"
	onnx "github.com/yalue/onnxruntime_go"
)

// valueCache keeps ONNX Runtime tensors of recently used shapes, each
// backed by its own Go buffer, so that a run copies its inputs into (and
// its outputs out of) a ready value instead of creating and releasing
// values through cgo every time: four cgo calls fewer per run of a
// one-input, one-output model, which is most of the wrapper's cost for
// small models. Copying is cheap next to that for the sizes it keeps.
//
// A value is used by one run at a time: get takes it off the free list,
// put returns it. The cache is bounded in bytes; values beyond it are
// destroyed at once.
type valueCache struct {
	mu       sync.Mutex
	free     map[valueKey][]*onnx.CustomDataTensor
	bytes    int64 // held on the free lists
	maxBytes int64
}

// maxCachedRank and maxCachedValueBytes bound what is cached.
const (
	maxCachedRank       = 4
	maxCachedValueBytes = 1 << 20
	maxFreePerShape     = 4
)

type valueKey struct {
	dt   onnx.TensorElementDataType
	rank int
	dims [maxCachedRank]int64
}

func newValueCache(maxBytes int64) *valueCache {
	return &valueCache{free: map[valueKey][]*onnx.CustomDataTensor{}, maxBytes: maxBytes}
}

// cacheKey returns the key for a fixed-size tensor of this shape, and
// false when such a tensor is not cached (scalars, BYTES, empty or large
// tensors, high ranks).
func cacheKey(dt models.DataType, ort onnx.TensorElementDataType, shape []int64) (valueKey, int, bool) {
	if dt == models.Bytes || len(shape) == 0 || len(shape) > maxCachedRank {
		return valueKey{}, 0, false
	}
	n, err := models.ByteSize(dt, shape)
	if err != nil || n == 0 || n > maxCachedValueBytes {
		return valueKey{}, 0, false
	}
	k := valueKey{dt: ort, rank: len(shape)}
	copy(k.dims[:], shape)
	return k, int(n), true
}

// get returns a value of this key and size, from the free list or new.
func (c *valueCache) get(k valueKey, n int) (*onnx.CustomDataTensor, error) {
	c.mu.Lock()
	if l := c.free[k]; len(l) > 0 {
		v := l[len(l)-1]
		c.free[k] = l[:len(l)-1]
		c.bytes -= int64(n)
		c.mu.Unlock()
		return v, nil
	}
	c.mu.Unlock()
	shape := make(onnx.Shape, k.rank)
	copy(shape, k.dims[:k.rank])
	return onnx.NewCustomDataTensor(shape, alignedBytes(n), k.dt)
}

// put returns v to its free list, or destroys it when the cache is full.
func (c *valueCache) put(k valueKey, v *onnx.CustomDataTensor) {
	n := int64(len(v.GetData()))
	c.mu.Lock()
	if c.free != nil && len(c.free[k]) < maxFreePerShape && c.bytes+n <= c.maxBytes {
		c.free[k] = append(c.free[k], v)
		c.bytes += n
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	v.Destroy()
}

// close destroys every cached value; later puts destroy theirs.
func (c *valueCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.free {
		for _, v := range l {
			v.Destroy()
		}
	}
	c.free = nil
	c.bytes = 0
}
