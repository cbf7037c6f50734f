// Package wasm runs a model's pre- and post-processing transforms: small
// WebAssembly (WASI preview 1) modules shipped in the model artifact, run in
// a sandbox on the node with wazero.
//
// # ABI version 1
//
// A transform is a WASI "reactor" module (for Go: GOOS=wasip1 GOARCH=wasm
// go build -buildmode=c-shared). It must export:
//
//	memory                                   its linear memory
//	petrel_abi_version() -> i32              returns 1
//	petrel_alloc(size i32) -> i32            a buffer of size bytes, 0 if it cannot
//	petrel_pre(ctPtr, ctLen, bodyPtr, bodyLen i32) -> i64     (optional)
//	petrel_post(framePtr, frameLen, acceptPtr, acceptLen i32) -> i64 (optional)
//
// and at least one of petrel_pre and petrel_post. It may export
// _initialize (run once when an instance is created); a module that exports
// _start but not _initialize is a command, not a reactor, and is rejected.
// It may import functions from wasi_snapshot_preview1 only.
//
// A call goes: the host calls petrel_alloc once for all inputs of the call,
// writes them into that buffer, and calls petrel_pre or petrel_post with
// (pointer, length) pairs into it. The result is packed into an i64: the
// output's address in the high 32 bits, a status in bits 30-31 and the
// output's length in bits 0-29. Status 0 means success, 1 means the client's
// input is bad (the output is a UTF-8 message; the host answers 400), 2
// means the transform failed (a message; the host answers 500). The guest
// owns every buffer: those of a call stay valid until the host's next call
// into the instance (petrel_alloc or a transform), and the host copies the
// output out of guest memory before it calls the guest again.
//
// petrel_pre gets the request's content type and body and returns a tensor
// frame. petrel_post gets a tensor frame of the model's outputs and the
// request's Accept header and returns u32 contentTypeLen, contentType,
// body. A tensor frame is, all integers little-endian:
//
//	u32 count
//	count × { u16 nameLen, name, u8 dtypeLen, dtype (OIP name, e.g. "FP32"),
//	          u8 rank, rank × i64 dim, u32 dataLen, data }
//
// where data is laid out as models.Tensor.Data (row-major, little-endian,
// BYTES elements each prefixed by a u32 length). At most 1024 tensors of
// rank at most 16. Package guest implements this for Go guests.
//
// # Sandbox
//
// An instance sees no files (no preopened directories), no network, no
// arguments or environment, an empty stdin; stdout is discarded and the
// first 4 KiB of stderr are kept for error messages. Unless Grants.Clock is
// set, clocks are wazero's fake clocks: the wall clock reads midnight UTC
// 2022-01-01 plus 1 ms per reading, the monotonic clock starts at 0 and
// advances 1 ms per reading, and sleeping returns at once. Unless
// Grants.Random is set, random_get fills buffers with zero bytes. Memory
// is limited to Options.MemoryLimitPages, each call to Options.CallTimeout
// (the instance is closed by wazero when it runs past it), outputs to
// Options.MaxOutputBytes. An instance whose call trapped, exited, timed out
// or ran out of memory is discarded, never reused.
//
// # Errors and HTTP status
//
// Compile wraps ErrInvalidModule with the reason a module is refused (what
// the push-time gate reports). Pre and Post return ErrClientInput (400),
// ErrInputTooLarge (413), ErrTimeout (504: the transform, not the client,
// ran out of time), and ErrTrap, ErrOutOfMemory, ErrTooLarge,
// ErrTransformFailed, ErrInvalidOutput (500). HTTPStatus maps an error to
// its status.
package wasm

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"time"
)

// ABIVersion is the only transform ABI version this package runs.
const ABIVersion = 1

// Names of the ABI's exports.
const (
	ExportABIVersion = "petrel_abi_version"
	ExportAlloc      = "petrel_alloc"
	ExportPre        = "petrel_pre"
	ExportPost       = "petrel_post"
	ExportMemory     = "memory"
	wasiModule       = "wasi_snapshot_preview1"
)

// Errors. Each error returned by this package wraps one of them.
var (
	// ErrInvalidModule: the module cannot be run as a transform.
	ErrInvalidModule = errors.New("invalid transform module")
	// ErrClientInput: the guest rejected the request body (400).
	ErrClientInput = errors.New("transform rejected the input")
	// ErrInputTooLarge: the request is larger than Options.MaxInputBytes (413).
	ErrInputTooLarge = errors.New("transform input too large")
	// ErrTimeout: the call ran past Options.CallTimeout or the caller's
	// deadline (504).
	ErrTimeout = errors.New("transform timed out")
	// ErrTrap: the guest trapped, panicked or exited (500).
	ErrTrap = errors.New("transform trapped")
	// ErrOutOfMemory: the guest hit the memory limit (500).
	ErrOutOfMemory = errors.New("transform ran out of memory")
	// ErrTooLarge: the guest's output exceeds Options.MaxOutputBytes (500).
	ErrTooLarge = errors.New("transform output too large")
	// ErrTransformFailed: the guest reported a failure of its own (500).
	ErrTransformFailed = errors.New("transform failed")
	// ErrInvalidOutput: the guest's output does not follow the ABI (500).
	ErrInvalidOutput = errors.New("transform output is invalid")
	// ErrNotExported: the module has no petrel_pre (or petrel_post) to call.
	ErrNotExported = errors.New("transform function not exported")
	// ErrClosed: the Module or Runtime is closed.
	ErrClosed = errors.New("transform runtime closed")
)

// HTTPStatus is the status a request failed by err should get.
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrClientInput):
		return http.StatusBadRequest
	case errors.Is(err, ErrInputTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrTimeout):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// Grants are what a module may see beyond the default sandbox; they come
// from the artifact manifest.
type Grants struct {
	Clock  bool // real wall and monotonic clocks, and real sleep
	Random bool // random_get from crypto/rand
}

// Defaults of Options.
const (
	DefaultMemoryLimitPages = 256 // 16 MiB
	DefaultCallTimeout      = 100 * time.Millisecond
	DefaultInitTimeout      = 5 * time.Second
	DefaultMaxOutputBytes   = 8 << 20
	DefaultMaxInputBytes    = 4 << 20
	MaxModuleBytes          = 64 << 20 // the largest module Compile accepts
)

// Options configure a Runtime. The zero value of a field means its default.
type Options struct {
	// CacheDir is where compiled code is cached across processes; empty
	// keeps the cache in memory only.
	CacheDir string
	// MemoryLimitPages bounds each instance's memory in 64 KiB pages
	// (default 256 = 16 MiB, at most 65536).
	MemoryLimitPages uint32
	// CallTimeout bounds each petrel_pre/petrel_post call (default 100 ms).
	CallTimeout time.Duration
	// InitTimeout bounds creating an instance, _initialize included
	// (default 5 s).
	InitTimeout time.Duration
	// MaxInputBytes bounds the bytes written into guest memory for one call
	// (default 4 MiB).
	MaxInputBytes int
	// MaxOutputBytes bounds the output read back from one call (default 8 MiB).
	MaxOutputBytes int
	// PoolSize bounds the live instances per Module (default GOMAXPROCS*2).
	PoolSize int
}

// Validate reports a field that is out of range.
func (o Options) Validate() error {
	switch {
	case o.MemoryLimitPages > 65536:
		return fmt.Errorf("wasm options: MemoryLimitPages %d exceeds 65536", o.MemoryLimitPages)
	case o.CallTimeout < 0:
		return fmt.Errorf("wasm options: CallTimeout %v is negative", o.CallTimeout)
	case o.InitTimeout < 0:
		return fmt.Errorf("wasm options: InitTimeout %v is negative", o.InitTimeout)
	case o.MaxInputBytes < 0 || o.MaxInputBytes > 1<<30-1:
		return fmt.Errorf("wasm options: MaxInputBytes %d is out of range [0, 1 GiB)", o.MaxInputBytes)
	case o.MaxOutputBytes < 0 || o.MaxOutputBytes > 1<<30-1:
		return fmt.Errorf("wasm options: MaxOutputBytes %d is out of range [0, 1 GiB)", o.MaxOutputBytes)
	case o.PoolSize < 0:
		return fmt.Errorf("wasm options: PoolSize %d is negative", o.PoolSize)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.MemoryLimitPages == 0 {
		o.MemoryLimitPages = DefaultMemoryLimitPages
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.InitTimeout == 0 {
		o.InitTimeout = DefaultInitTimeout
	}
	if o.MaxInputBytes == 0 {
		o.MaxInputBytes = DefaultMaxInputBytes
	}
	if o.MaxOutputBytes == 0 {
		o.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if o.PoolSize == 0 {
		o.PoolSize = 2 * runtime.GOMAXPROCS(0)
	}
	return o
}
