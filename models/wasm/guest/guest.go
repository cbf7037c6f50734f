// Package guest is the guest side of the Petrel transform ABI v1 for
// transforms written in Go (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared).
//
// It holds the tensor-frame and body codecs, the result packing and a
// buffer pin table that keeps memory handed to the host alive until the next
// call. A transform's main package declares the exports itself, as thin
// wrappers (//go:wasmexport may only be used in a wasip1 build):
//
//	//go:wasmexport petrel_abi_version
//	func abiVersion() uint32 { return guest.ABIVersion }
//
//	//go:wasmexport petrel_alloc
//	func alloc(n uint32) uint32 { return guest.Alloc(n) }
//
//	//go:wasmexport petrel_pre
//	func pre(ctPtr, ctLen, bodyPtr, bodyLen uint32) uint64 {
//		defer guest.EndCall()
//		ct, body := guest.Bytes(ctPtr, ctLen), guest.Bytes(bodyPtr, bodyLen)
//		...
//		return guest.Ok(guest.EncodeFrame(tensors))
//	}
//
// The codecs are plain Go and build for any GOOS, so a transform's logic can
// be unit tested natively. See docs/transforms.md for the ABI itself.
package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unsafe"
)

// ABIVersion is the ABI version this package implements; petrel_abi_version
// must return it.
const ABIVersion = 1

// Status values carried in the top two bits of the length half of a packed
// result.
const (
	StatusOK          = 0 // the buffer holds the output
	StatusClientError = 1 // the buffer holds a message: the client's input is bad
	StatusFailure     = 2 // the buffer holds a message: the transform failed
)

// MaxLen is the largest buffer a packed result can describe (1 GiB - 1).
const MaxLen = 1<<30 - 1

// Limits the frame decoder enforces on both sides of the boundary.
const (
	MaxTensors = 1024
	MaxRank    = 16
	MaxNameLen = 1024
)

// pinned holds every buffer handed to the host since the last EndCall that
// is not part of the arena, so the garbage collector keeps it while the host
// reads or writes it. The Go wasm collector does not move objects, so
// addresses stay valid.
//
// arena is reused for the input buffers of every call: allocating a fresh
// buffer per call costs far more in a wasm guest (allocation, zeroing and
// the garbage collection it triggers) than the transform itself. arenaOff is
// the first free byte of the arena in the current call.
var (
	pinned   [][]byte
	callEnd  bool
	arena    []byte
	arenaOff int
)

// MaxArena is the largest input arena Alloc keeps between calls; larger
// requests get a buffer of their own that is released after the call.
const MaxArena = 1 << 20

// Alloc returns the address of a zeroed buffer of n bytes that stays valid
// until the call that follows it has ended, or 0 if n is too large. Buffers
// from an earlier call are released (and the arena reused) by the first
// Alloc after it, so a transform must not keep references to its inputs
// across calls.
func Alloc(n uint32) uint32 {
	if callEnd {
		clear(pinned)
		pinned, callEnd, arenaOff = pinned[:0], false, 0
	}
	if n > MaxLen {
		return 0
	}
	size := int(max(n, 1))
	if arenaOff == 0 && size > len(arena) && size <= MaxArena {
		// Nothing in the arena is in use: replace it with a bigger one.
		arena = make([]byte, min(max(size, 2*len(arena), 4096), MaxArena))
	}
	if size <= len(arena)-arenaOff {
		b := arena[arenaOff : arenaOff+size : arenaOff+size]
		arenaOff += size
		clear(b)
		return addr(b)
	}
	b := make([]byte, size)
	pinned = append(pinned, b)
	return addr(b)
}

// EndCall marks the end of a transform call: the buffers pinned so far
// (inputs and the output) are released on the next Alloc. Defer it first
// thing in every exported transform function.
func EndCall() { callEnd = true }

// Bytes returns the guest memory at [ptr, ptr+n) as a slice. It is only
// meaningful inside a wasm guest, for pointers the host got from Alloc.
func Bytes(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), ptr)), n)
}

// String is Bytes as a string that aliases guest memory, without a copy:
// valid only until the call ends, so a transform must copy what it keeps.
func String(ptr, n uint32) string {
	if n == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(nil), ptr)), n)
}

func addr(b []byte) uint32 {
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// Pack builds a packed result: the buffer address in the high 32 bits, the
// status in bits 30-31 and the length in bits 0-29.
func Pack(ptr, n uint32, status uint32) uint64 {
	return uint64(ptr)<<32 | uint64(status&3)<<30 | uint64(n&MaxLen)
}

// Unpack splits a packed result.
func Unpack(r uint64) (ptr, n, status uint32) {
	return uint32(r >> 32), uint32(r) & MaxLen, uint32(r) >> 30
}

func result(b []byte, status uint32) uint64 {
	if len(b) > MaxLen {
		b = []byte("output exceeds the 1 GiB ABI limit")
		status = StatusFailure
	}
	if len(b) == 0 {
		return Pack(0, 0, status)
	}
	pinned = append(pinned, b)
	return Pack(addr(b), uint32(len(b)), status)
}

// Ok returns b as the successful output of the call.
func Ok(b []byte) uint64 { return result(b, StatusOK) }

// ClientError reports that the request is bad (the host answers 400 with
// msg).
func ClientError(msg string) uint64 { return result([]byte(msg), StatusClientError) }

// Failure reports that the transform failed (the host answers 500).
func Failure(msg string) uint64 { return result([]byte(msg), StatusFailure) }

// Tensor is the guest-side view of a tensor: the same fields as the host's
// models.Tensor, with the datatype as its OIP name.
type Tensor struct {
	Name     string
	DataType string
	Shape    []int64
	Data     []byte
}

// ErrFrame is returned for a malformed tensor frame or body.
var ErrFrame = errors.New("malformed frame")

// EncodeFrame encodes tensors as a tensor frame (see AppendFrame for the
// layout) in a new buffer.
func EncodeFrame(ts []Tensor) ([]byte, error) {
	if err := checkFrame(ts); err != nil {
		return nil, err
	}
	return AppendFrame(make([]byte, 0, frameSize(ts)), ts)
}

func checkFrame(ts []Tensor) error {
	if len(ts) > MaxTensors {
		return fmt.Errorf("%w: %d tensors, at most %d", ErrFrame, len(ts), MaxTensors)
	}
	for _, t := range ts {
		if len(t.Name) > MaxNameLen || len(t.DataType) > 255 || len(t.Shape) > MaxRank || len(t.Data) > MaxLen {
			return fmt.Errorf("%w: tensor %q exceeds a frame limit", ErrFrame, t.Name)
		}
	}
	return nil
}

func frameSize(ts []Tensor) int {
	n := 4
	for _, t := range ts {
		n += 2 + len(t.Name) + 1 + len(t.DataType) + 1 + 8*len(t.Shape) + 4 + len(t.Data)
	}
	return n
}

// AppendFrame appends tensors encoded as a tensor frame to dst:
//
//	u32 count
//	count × { u16 nameLen, name, u8 dtypeLen, dtype, u8 rank,
//	          rank × i64 dim, u32 dataLen, data }
//
// all integers little-endian. A guest that reuses dst across calls (the
// host copies the output before the next call) allocates nothing once dst
// is large enough. On error dst is returned unchanged.
func AppendFrame(dst []byte, ts []Tensor) ([]byte, error) {
	if err := checkFrame(ts); err != nil {
		return dst, err
	}
	b := slices.Grow(dst, frameSize(ts))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ts)))
	for _, t := range ts {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(t.Name)))
		b = append(b, t.Name...)
		b = append(b, byte(len(t.DataType)))
		b = append(b, t.DataType...)
		b = append(b, byte(len(t.Shape)))
		for _, d := range t.Shape {
			b = binary.LittleEndian.AppendUint64(b, uint64(d))
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Data)))
		b = append(b, t.Data...)
	}
	return b, nil
}

// DecodeFrame decodes a tensor frame. Data slices alias b. It checks the
// framing only; what the tensors mean is the caller's business.
func DecodeFrame(b []byte) ([]Tensor, error) {
	r := reader{b: b}
	count := r.u32()
	if r.err == nil && count > MaxTensors {
		return nil, fmt.Errorf("%w: %d tensors, at most %d", ErrFrame, count, MaxTensors)
	}
	ts := make([]Tensor, 0, min(count, MaxTensors))
	for i := uint32(0); i < count && r.err == nil; i++ {
		var t Tensor
		t.Name = string(r.bytes(int(r.u16())))
		t.DataType = string(r.bytes(int(r.u8())))
		rank := int(r.u8())
		if rank > MaxRank {
			return nil, fmt.Errorf("%w: tensor %q has rank %d, at most %d", ErrFrame, t.Name, rank, MaxRank)
		}
		t.Shape = make([]int64, 0, rank)
		for j := 0; j < rank && r.err == nil; j++ {
			t.Shape = append(t.Shape, int64(r.u64()))
		}
		t.Data = r.bytes(int(r.u32()))
		ts = append(ts, t)
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrFrame, len(r.b))
	}
	return ts, nil
}

// A FrameDecoder decodes tensor frames into storage it reuses from one call
// to the next, so that a guest decoding a frame per call allocates nothing
// once its buffers have grown. The tensors it returns alias the frame: names,
// datatypes and data point into b, and shapes into the decoder. They are
// valid until the next Decode and until the memory of b is reused (in a
// guest: until the call ends). The zero value is ready to use.
type FrameDecoder struct {
	ts    []Tensor
	shape []int64
	ranks []uint8
}

// Decode decodes a tensor frame, checking the same limits as DecodeFrame.
// It is written as one loop with few calls: in a wasm guest run with
// interruption checks every call and loop iteration has a fixed cost.
func (d *FrameDecoder) Decode(b []byte) ([]Tensor, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: truncated (need 4 bytes, have %d)", ErrFrame, len(b))
	}
	count := binary.LittleEndian.Uint32(b)
	if count > MaxTensors {
		return nil, fmt.Errorf("%w: %d tensors, at most %d", ErrFrame, count, MaxTensors)
	}
	// Shapes go into one backing array, sliced once it can no longer move.
	ts, shape, ranks := d.ts[:0], d.shape[:0], d.ranks[:0]
	p := 4
	for i := uint32(0); i < count; i++ {
		var t Tensor
		if len(b)-p < 2 {
			return nil, truncated(2, len(b)-p)
		}
		n := int(binary.LittleEndian.Uint16(b[p:]))
		p += 2
		if len(b)-p < n+1 {
			return nil, truncated(n+1, len(b)-p)
		}
		t.Name = unsafe.String(unsafe.SliceData(b[p:]), n)
		p += n
		n = int(b[p])
		p++
		if len(b)-p < n+1 {
			return nil, truncated(n+1, len(b)-p)
		}
		t.DataType = unsafe.String(unsafe.SliceData(b[p:]), n)
		p += n
		rank := int(b[p])
		p++
		if rank > MaxRank {
			return nil, fmt.Errorf("%w: tensor %q has rank %d, at most %d", ErrFrame, t.Name, rank, MaxRank)
		}
		if len(b)-p < 8*rank+4 {
			return nil, truncated(8*rank+4, len(b)-p)
		}
		for j := 0; j < rank; j++ {
			shape = append(shape, int64(binary.LittleEndian.Uint64(b[p:])))
			p += 8
		}
		ranks = append(ranks, uint8(rank))
		n = int(binary.LittleEndian.Uint32(b[p:]))
		p += 4
		if n < 0 || len(b)-p < n {
			return nil, truncated(n, len(b)-p)
		}
		t.Data = b[p : p+n : p+n]
		p += n
		ts = append(ts, t)
	}
	if p != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrFrame, len(b)-p)
	}
	off := 0
	for i := range ts {
		r := int(ranks[i])
		ts[i].Shape = shape[off : off+r : off+r]
		off += r
	}
	d.ts, d.shape, d.ranks = ts, shape, ranks
	return ts, nil
}

func truncated(need, have int) error {
	return fmt.Errorf("%w: truncated (need %d bytes, have %d)", ErrFrame, need, have)
}

// EncodeBody encodes a post output: u32 contentTypeLen, contentType, body.
func EncodeBody(contentType string, body []byte) []byte {
	return AppendBody(make([]byte, 0, 4+len(contentType)+len(body)), contentType, body)
}

// AppendBody appends a post output (as EncodeBody) to dst.
func AppendBody(dst []byte, contentType string, body []byte) []byte {
	b := slices.Grow(dst, 4+len(contentType)+len(body))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(contentType)))
	b = append(b, contentType...)
	return append(b, body...)
}

// DecodeBody splits a post output into content type and body (aliasing b).
func DecodeBody(b []byte) (contentType string, body []byte, err error) {
	r := reader{b: b}
	ct := r.bytes(int(r.u32()))
	if r.err != nil {
		return "", nil, r.err
	}
	return string(ct), r.b, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("%w: truncated (need %d bytes, have %d)", ErrFrame, n, len(r.b))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.bytes(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}
