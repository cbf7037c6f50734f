package respcache

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"sync"
	"testing"

	"github.com/petrel-mesh/petrel/models"
)

const digest = "sha256:0000000000000000000000000000000000000000000000000000000000000001"

func floats(fs ...float32) []byte {
	b := make([]byte, 4*len(fs))
	for i, f := range fs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func inputs() []models.Tensor {
	return []models.Tensor{
		{Name: "a", DataType: models.FP32, Shape: []int64{1, 2}, Data: floats(1, 2)},
		{Name: "b", DataType: models.Int64, Shape: []int64{1}, Data: make([]byte, 8)},
		{Name: "c", DataType: models.Uint8, Shape: []int64{3}, Data: []byte{1, 2, 3}},
	}
}

func TestKeyForCanonical(t *testing.T) {
	base := KeyFor(digest, inputs(), []string{"y"})
	if base != KeyFor(digest, inputs(), []string{"y"}) {
		t.Fatal("KeyFor is not deterministic")
	}
	in := inputs()
	reordered := []models.Tensor{in[2], in[0], in[1]}
	if got := KeyFor(digest, reordered, []string{"y"}); got != base {
		t.Error("key depends on the order of inputs")
	}

	changes := map[string]func() Key{
		"data byte": func() Key {
			in := inputs()
			in[0].Data[3] ^= 1
			return KeyFor(digest, in, []string{"y"})
		},
		"shape": func() Key {
			in := inputs()
			in[0].Shape = []int64{2, 1}
			return KeyFor(digest, in, []string{"y"})
		},
		"rank": func() Key {
			in := inputs()
			in[0].Shape = []int64{1, 2, 1}
			return KeyFor(digest, in, []string{"y"})
		},
		"datatype": func() Key {
			in := inputs()
			in[0].DataType = models.Int32
			return KeyFor(digest, in, []string{"y"})
		},
		"name": func() Key {
			in := inputs()
			in[2].Name = "d"
			return KeyFor(digest, in, []string{"y"})
		},
		"digest": func() Key {
			return KeyFor("sha256:0000000000000000000000000000000000000000000000000000000000000002", inputs(), []string{"y"})
		},
		"outputs": func() Key { return KeyFor(digest, inputs(), []string{"z"}) },
		"all outputs": func() Key {
			return KeyFor(digest, inputs(), nil)
		},
		"output order": func() Key { return KeyFor(digest, inputs(), []string{"z", "y"}) },
		"more outputs": func() Key { return KeyFor(digest, inputs(), []string{"y", "z"}) },
		"input dropped": func() Key {
			return KeyFor(digest, inputs()[:2], []string{"y"})
		},
		// Moving a byte from one field to the next must not collide:
		// every field is length-prefixed.
		"data boundary": func() Key {
			in := inputs()
			in[0].Data = append(in[0].Data, 'b')
			in[1].Name = ""
			return KeyFor(digest, in, []string{"y"})
		},
		"digest boundary": func() Key {
			return KeyFor(digest+"a", []models.Tensor{{Name: "", DataType: "FP32", Shape: []int64{}, Data: nil}}, []string{"y"})
		},
	}
	seen := map[Key]string{base: "base"}
	for name, f := range changes {
		k := f()
		if k == base {
			t.Errorf("%s: key unchanged", name)
		}
		if prev, ok := seen[k]; ok {
			t.Errorf("%s: same key as %s", name, prev)
		}
		seen[k] = name
	}
	if k := KeyFor(digest, reordered, []string{"y"}); k.Sum == k.Check {
		t.Error("the two sums agree: seeds not applied")
	}
}

func TestKeyForNoAllocs(t *testing.T) {
	in := inputs()
	outs := []string{"y", "z"}
	if n := testing.AllocsPerRun(100, func() { KeyFor(digest, in, outs) }); n != 0 {
		t.Errorf("KeyFor allocates %v times", n)
	}
}

func val(name string, dataBytes int) []models.Tensor {
	return []models.Tensor{{Name: name, DataType: models.Uint8, Shape: []int64{int64(dataBytes)}, Data: make([]byte, dataBytes)}}
}

func key(i int) Key {
	return KeyFor(digest, []models.Tensor{{Name: "i", DataType: models.Int64, Shape: []int64{}, Data: binary.LittleEndian.AppendUint64(nil, uint64(i))}}, nil)
}

func TestSize(t *testing.T) {
	v := []models.Tensor{
		{Name: "y", DataType: models.FP32, Shape: []int64{2, 2}, Data: make([]byte, 16)},
		{Name: "zz", DataType: models.Uint8, Shape: []int64{3}, Data: make([]byte, 3)},
	}
	want := int64(EntryOverhead + (TensorOverhead + 1 + 4 + 16 + 16) + (TensorOverhead + 2 + 5 + 8 + 3))
	if got := Size(v); got != want {
		t.Errorf("Size = %d, want %d", got, want)
	}
}

func TestLRUOrderAndByteBound(t *testing.T) {
	one := Size(val("y", 100))
	c := New(3 * one)
	for i := range 3 {
		c.Put(key(i), val("y", 100))
	}
	if c.Len() != 3 || c.Bytes() != 3*one {
		t.Fatalf("Len %d Bytes %d, want 3 %d", c.Len(), c.Bytes(), 3*one)
	}
	// Touch 0, so 1 is the least recently used.
	if _, ok := c.Get(key(0)); !ok {
		t.Fatal("0 missing")
	}
	c.Put(key(3), val("y", 100))
	if _, ok := c.Get(key(1)); ok {
		t.Error("1 survived, though least recently used")
	}
	for _, i := range []int{0, 2, 3} {
		if _, ok := c.Get(key(i)); !ok {
			t.Errorf("%d evicted", i)
		}
	}
	// A value of two slots evicts the two least recently used (0 and 2).
	c.Put(key(4), val("y", 100+int(one)))
	if c.Bytes() > 3*one {
		t.Errorf("Bytes %d above the bound %d", c.Bytes(), 3*one)
	}
	for i, want := range map[int]bool{0: false, 2: false, 3: true, 4: true} {
		if _, ok := c.Get(key(i)); ok != want {
			t.Errorf("after the big Put, %d present = %v, want %v", i, ok, want)
		}
	}
	st := c.Stats()
	if st.Evictions != 3 {
		t.Errorf("Evictions = %d, want 3", st.Evictions)
	}
	if st.Hits != 6 || st.Misses != 3 {
		t.Errorf("Hits %d Misses %d, want 6 3", st.Hits, st.Misses)
	}
}

func TestReplaceAndOversize(t *testing.T) {
	c := New(1000)
	c.Put(key(1), val("y", 10))
	c.Put(key(1), val("y", 20))
	if c.Len() != 1 || c.Bytes() != Size(val("y", 20)) {
		t.Fatalf("after replace: Len %d Bytes %d", c.Len(), c.Bytes())
	}
	got, _ := c.Get(key(1))
	if len(got[0].Data) != 20 {
		t.Error("replace kept the old value")
	}
	c.Put(key(2), val("y", 2000))
	if _, ok := c.Get(key(2)); ok {
		t.Error("stored a value larger than maxBytes")
	}
	c.Put(key(1), val("y", 2000))
	if _, ok := c.Get(key(1)); ok || c.Len() != 0 || c.Bytes() != 0 {
		t.Errorf("an oversized replacement left the old value: Len %d Bytes %d", c.Len(), c.Bytes())
	}
	if st := c.Stats(); st.Rejected != 2 || st.Evictions != 0 {
		t.Errorf("Rejected %d Evictions %d, want 2 0", st.Rejected, st.Evictions)
	}
	// The stored value is a deep copy: the caller may reuse its buffers.
	v := []models.Tensor{
		{Name: "y", DataType: models.Uint8, Shape: []int64{2}, Data: []byte{1, 2}},
		{Name: "s", DataType: models.Uint8, Shape: []int64{}, Data: []byte{3}},
	}
	c.Put(key(3), v)
	v[0].Name, v[0].Shape[0], v[0].Data[0], v[1].Data[0] = "renamed", 9, 9, 9
	got, _ = c.Get(key(3))
	if got[0].Name != "y" || got[0].Shape[0] != 2 || got[0].Data[0] != 1 || got[1].Data[0] != 3 {
		t.Errorf("Put kept the caller's buffers: %+v", got)
	}
	if got[1].Shape == nil || len(got[1].Shape) != 0 {
		t.Errorf("scalar shape became %#v, want empty and non-nil", got[1].Shape)
	}
	if cap(got[0].Data) != 2 {
		t.Errorf("copied data has capacity %d: appends would overwrite the next tensor", cap(got[0].Data))
	}
}

func TestDisabled(t *testing.T) {
	c := New(0)
	c.Put(key(1), val("y", 1))
	if _, ok := c.Get(key(1)); ok || c.Len() != 0 {
		t.Error("a zero-byte cache stored something")
	}
}

func TestConcurrent(t *testing.T) {
	c := New(50 * Size(val("y", 64)))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewSource(int64(g)))
			for range 5000 {
				i := rng.Intn(100)
				if v, ok := c.Get(key(i)); ok {
					if want := fmt.Sprint(i); v[0].Name != want {
						t.Errorf("key %d holds %q", i, v[0].Name)
						return
					}
				} else {
					c.Put(key(i), val(fmt.Sprint(i), 64))
				}
			}
		})
	}
	wg.Wait()
	if c.Bytes() > 50*Size(val("y", 64)) || c.Len() > 50 {
		t.Errorf("over the bound: Len %d Bytes %d", c.Len(), c.Bytes())
	}
	st := c.Stats()
	if st.Hits+st.Misses != 8*5000 {
		t.Errorf("hits+misses = %d, want %d", st.Hits+st.Misses, 8*5000)
	}
	// The list and the map agree.
	n, bytes := 0, int64(0)
	for e := c.lru.next; e != &c.lru; e = e.next {
		n++
		bytes += e.size
	}
	if n != c.Len() || bytes != c.Bytes() {
		t.Errorf("list holds %d entries of %d bytes; map %d, Bytes %d", n, bytes, c.Len(), c.Bytes())
	}
}

func BenchmarkKeyFor64Floats(b *testing.B) {
	fs := make([]float32, 64)
	for i := range fs {
		fs[i] = float32(i)
	}
	in := []models.Tensor{{Name: "input", DataType: models.FP32, Shape: []int64{1, 64}, Data: floats(fs...)}}
	b.SetBytes(int64(len(in[0].Data)))
	b.ReportAllocs()
	for b.Loop() {
		KeyFor(digest, in, nil)
	}
}

func BenchmarkGetHit(b *testing.B) {
	c := New(1 << 20)
	k := key(1)
	c.Put(k, val("y", 256))
	b.ReportAllocs()
	for b.Loop() {
		c.Get(k)
	}
}
