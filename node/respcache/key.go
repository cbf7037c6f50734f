package respcache

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
	"github.com/petrel-mesh/petrel/models"
)

// Key identifies one response: two independent xxhash64 sums of the
// request's canonical encoding (see KeyFor) and the encoding's length.
//
// Collision tradeoff: the cache trusts Key equality and does not keep the
// request bytes, to stay small and fast. Two seeds plus the length make
// an accidental collision about as likely as one of a 128-bit hash
// (negligible at any realistic cache size). xxhash is not a cryptographic
// hash, though: a client able to choose inputs could in principle craft a
// colliding request to poison another's response. Where requests of
// mutually untrusted tenants share a cache, fold the tenant into
// modelDigest, or key the cache with a keyed cryptographic hash instead.
type Key struct {
	Sum   uint64 // xxhash64 of the encoding, seed 0
	Check uint64 // xxhash64 of the encoding, seed checkSeed
	Len   uint64 // bytes in the encoding
}

// checkSeed seeds the second sum; any fixed value other than 0 will do.
const checkSeed = 0x9e3779b97f4a7c15

// domain starts every encoding, so a format change changes every key.
const domain = "petrel/respcache/v1"

// KeyFor returns the key of a request for the model with the given
// digest. The canonical encoding is the domain tag, then, each
// length-prefixed (8-byte little-endian): the model digest; the number of
// inputs and, sorted by name (stable), each input's name, datatype, rank,
// dimensions and data; the number of requested outputs and each name, in
// the order asked (that order is the response's order; none means all).
// So the key does not depend on the order of inputs, and does depend on
// every byte of data, every dimension, datatype and name, the digest and
// the outputs. It does not allocate for up to 8 inputs.
func KeyFor(modelDigest string, inputs []models.Tensor, outputs []string) Key {
	var w keyWriter
	w.a.Reset()
	w.b.ResetWithSeed(checkSeed)
	w.raw([]byte(domain))
	w.str(modelDigest)

	var orderBuf [8]int
	order := orderBuf[:0]
	for i := range inputs {
		order = append(order, i)
	}
	// Insertion sort: stable, allocation-free, and inputs are few.
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && inputs[order[j]].Name < inputs[order[j-1]].Name; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	w.u64(uint64(len(inputs)))
	for _, i := range order {
		t := &inputs[i]
		w.str(t.Name)
		w.str(string(t.DataType))
		w.u64(uint64(len(t.Shape)))
		for _, d := range t.Shape {
			w.u64(uint64(d))
		}
		w.u64(uint64(len(t.Data)))
		w.raw(t.Data)
	}
	w.u64(uint64(len(outputs)))
	for _, name := range outputs {
		w.str(name)
	}
	return w.sums()
}

// keyWriter gathers the encoding's small fields in buf and feeds both
// digests in few large writes: xxhash's per-Write cost dominates for
// length prefixes. Data that does not fit buf goes straight through.
type keyWriter struct {
	a, b xxhash.Digest
	n    uint64 // bytes written, including those still in buf
	used int    // bytes of buf in use
	buf  [512]byte
}

func (w *keyWriter) flush() {
	if w.used > 0 {
		w.a.Write(w.buf[:w.used])
		w.b.Write(w.buf[:w.used])
		w.used = 0
	}
}

func (w *keyWriter) raw(p []byte) {
	w.n += uint64(len(p))
	if len(p) <= len(w.buf)-w.used {
		w.used += copy(w.buf[w.used:], p)
		return
	}
	w.flush()
	if len(p) <= len(w.buf)/2 {
		w.used = copy(w.buf[:], p)
		return
	}
	w.a.Write(p)
	w.b.Write(p)
}

func (w *keyWriter) u64(x uint64) {
	if len(w.buf)-w.used < 8 {
		w.flush()
	}
	binary.LittleEndian.PutUint64(w.buf[w.used:], x)
	w.used += 8
	w.n += 8
}

func (w *keyWriter) str(s string) {
	w.u64(uint64(len(s)))
	w.n += uint64(len(s))
	if len(s) <= len(w.buf)-w.used {
		w.used += copy(w.buf[w.used:], s)
		return
	}
	w.flush()
	w.a.WriteString(s)
	w.b.WriteString(s)
}

// sums flushes and returns the key.
func (w *keyWriter) sums() Key {
	w.flush()
	return Key{Sum: w.a.Sum64(), Check: w.b.Sum64(), Len: w.n}
}
