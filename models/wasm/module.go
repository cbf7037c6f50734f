package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/wasm/guest"
)

// Module is a validated transform with a pool of instances. It is safe for
// concurrent use; each call takes an instance for itself.
type Module struct {
	r                        *Runtime
	compiled                 wazero.CompiledModule
	grants                   Grants
	hasPre, hasPost, hasInit bool

	// slots holds one token per live instance (at most PoolSize); idle
	// holds the instances not in use.
	slots chan struct{}
	idle  chan *instance

	mu     sync.Mutex
	closed bool
}

// instance is one sandboxed instantiation; used by one call at a time.
type instance struct {
	mod                       api.Module
	mem                       api.Memory
	version, alloc, pre, post api.Function
	stderr                    *headBuffer
	stack                     []uint64
}

func (r *Runtime) newModule(c wazero.CompiledModule, g Grants) (*Module, error) {
	hasPre, hasPost, hasInit, err := r.validate(c)
	if err != nil {
		return nil, err
	}
	return &Module{
		r: r, compiled: c, grants: g,
		hasPre: hasPre, hasPost: hasPost, hasInit: hasInit,
		slots: make(chan struct{}, r.opts.PoolSize),
		idle:  make(chan *instance, r.opts.PoolSize),
	}, nil
}

// HasPre reports whether the module exports petrel_pre.
func (m *Module) HasPre() bool { return m.hasPre }

// HasPost reports whether the module exports petrel_post.
func (m *Module) HasPost() bool { return m.hasPost }

// Grants returns the grants the module runs with.
func (m *Module) Grants() Grants { return m.grants }

// Close closes the idle instances and the compiled code; instances in use
// are closed when their call returns. Later calls fail with ErrClosed. It
// is safe to call more than once.
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.r.forget(m)
	for {
		select {
		case inst := <-m.idle:
			_ = inst.mod.Close(ctx)
		default:
			return m.compiled.Close(ctx)
		}
	}
}

func (m *Module) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// instantiate creates an instance within InitTimeout.
func (m *Module) instantiate(ctx context.Context) (*instance, error) {
	if m.isClosed() {
		return nil, ErrClosed
	}
	ictx, cancel := context.WithTimeout(ctx, m.r.opts.InitTimeout)
	defer cancel()
	stderr := &headBuffer{max: 4096}
	mod, err := m.r.rt.InstantiateModule(ictx, m.compiled, moduleConfig(m.grants, m.hasInit, stderr))
	if err != nil {
		if mod != nil {
			_ = mod.Close(ctx)
		}
		return nil, classify(ictx, err, stderr, nil, m.r.opts.MemoryLimitPages)
	}
	inst := &instance{
		mod:     mod,
		mem:     mod.ExportedMemory(ExportMemory),
		version: mod.ExportedFunction(ExportABIVersion),
		alloc:   mod.ExportedFunction(ExportAlloc),
		pre:     mod.ExportedFunction(ExportPre),
		post:    mod.ExportedFunction(ExportPost),
		stderr:  stderr,
		stack:   make([]uint64, 4),
	}
	if inst.mem == nil || inst.version == nil || inst.alloc == nil {
		_ = mod.Close(ctx)
		return nil, fmt.Errorf("%w: instance lacks the ABI exports", ErrInvalidModule)
	}
	return inst, nil
}

// get takes an idle instance or creates one, waiting for a free slot while
// PoolSize instances are busy.
func (m *Module) get(ctx context.Context) (*instance, error) {
	select {
	case m.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for a free instance: %v", ErrTimeout, ctx.Err())
	}
	select {
	case inst := <-m.idle:
		return inst, nil
	default:
	}
	inst, err := m.instantiate(ctx)
	if err != nil {
		<-m.slots
		return nil, err
	}
	return inst, nil
}

// put returns a healthy instance to the pool and frees its slot.
func (m *Module) put(inst *instance) {
	m.mu.Lock()
	closed := m.closed
	if !closed {
		m.idle <- inst // never blocks: at most PoolSize instances exist
	}
	m.mu.Unlock()
	if closed {
		_ = inst.mod.Close(context.Background())
	}
	<-m.slots
}

// discard closes an instance that must not run again and frees its slot.
func (m *Module) discard(inst *instance) {
	_ = inst.mod.Close(context.Background())
	<-m.slots
}

// Pre runs petrel_pre on a request body and returns the tensors it made.
func (m *Module) Pre(ctx context.Context, contentType string, body []byte) ([]models.Tensor, error) {
	if !m.hasPre {
		return nil, fmt.Errorf("%w: %s", ErrNotExported, ExportPre)
	}
	out, err := m.call(ctx, ExportPre, []byte(contentType), body)
	if err != nil {
		return nil, err
	}
	return decodeTensors(out)
}

// Post runs petrel_post on a model's outputs and the request's Accept
// header and returns the response's content type and body.
func (m *Module) Post(ctx context.Context, outs []models.Tensor, accept string) (contentType string, body []byte, err error) {
	if !m.hasPost {
		return "", nil, fmt.Errorf("%w: %s", ErrNotExported, ExportPost)
	}
	frame, err := EncodeFrame(outs)
	if err != nil {
		return "", nil, fmt.Errorf("transform post: %w", err)
	}
	out, err := m.call(ctx, ExportPost, frame, []byte(accept))
	if err != nil {
		return "", nil, err
	}
	ct, b, err := guest.DecodeBody(out)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrInvalidOutput, err)
	}
	if ct == "" {
		ct = "application/octet-stream"
	} else if _, _, perr := mime.ParseMediaType(ct); perr != nil || len(ct) > 256 {
		return "", nil, fmt.Errorf("%w: content type %q is not a media type", ErrInvalidOutput, truncate(ct, 64))
	}
	return ct, b, nil
}

// call runs one transform function with inputs a and b and returns a copy
// of its output.
func (m *Module) call(ctx context.Context, fn string, a, b []byte) ([]byte, error) {
	opts := &m.r.opts
	if len(a)+len(b) > opts.MaxInputBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrInputTooLarge, len(a)+len(b), opts.MaxInputBytes)
	}
	if m.isClosed() {
		return nil, ErrClosed
	}
	inst, err := m.get(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, opts.CallTimeout)
	defer cancel()
	inst.stderr.Reset()

	st := inst.stack
	st[0] = uint64(len(a) + len(b))
	if err := inst.alloc.CallWithStack(cctx, st); err != nil {
		m.discard(inst)
		return nil, fmt.Errorf("%s: %w", ExportAlloc, classify(cctx, err, inst.stderr, inst.mem, opts.MemoryLimitPages))
	}
	ptr := uint32(st[0])
	if ptr == 0 {
		m.discard(inst)
		return nil, fmt.Errorf("%w: %s could not provide %d bytes", ErrOutOfMemory, ExportAlloc, len(a)+len(b))
	}
	if !inst.mem.Write(ptr, a) || !inst.mem.Write(ptr+uint32(len(a)), b) {
		m.discard(inst)
		return nil, fmt.Errorf("%w: %s returned %#x, outside guest memory for %d bytes", ErrInvalidOutput, ExportAlloc, ptr, len(a)+len(b))
	}
	f := inst.pre
	if fn == ExportPost {
		f = inst.post
	}
	st[0], st[1], st[2], st[3] = uint64(ptr), uint64(len(a)), uint64(ptr+uint32(len(a))), uint64(len(b))
	if err := f.CallWithStack(cctx, st); err != nil {
		m.discard(inst)
		return nil, fmt.Errorf("%s: %w", fn, classify(cctx, err, inst.stderr, inst.mem, opts.MemoryLimitPages))
	}
	optr, n, status := guest.Unpack(st[0])
	if int(n) > opts.MaxOutputBytes {
		m.put(inst)
		return nil, fmt.Errorf("%s: %w: %d bytes, at most %d", fn, ErrTooLarge, n, opts.MaxOutputBytes)
	}
	view, ok := inst.mem.Read(optr, n)
	if !ok || status > guest.StatusFailure {
		m.discard(inst)
		return nil, fmt.Errorf("%s: %w: result %#x points outside guest memory or has status %d", fn, ErrInvalidOutput, st[0], status)
	}
	out := bytes.Clone(view) // copy before the guest can run again
	m.put(inst)
	switch status {
	case guest.StatusClientError:
		return nil, fmt.Errorf("%w: %s", ErrClientInput, message(out))
	case guest.StatusFailure:
		return nil, fmt.Errorf("%s: %w: %s", fn, ErrTransformFailed, message(out))
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// classify turns an error from a guest call into one of the package's
// errors.
func classify(ctx context.Context, err error, stderr *headBuffer, mem api.Memory, limitPages uint32) error {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return fmt.Errorf("%w: %v", ErrTimeout, context.DeadlineExceeded)
		case sys.ExitCodeContextCanceled:
			return fmt.Errorf("%w: %w", ErrTimeout, context.Canceled)
		}
		if oom(stderr, mem, limitPages) {
			return fmt.Errorf("%w (limit %d KiB)%s", ErrOutOfMemory, uint64(limitPages)*64, stderrSuffix(stderr))
		}
		return fmt.Errorf("%w: guest exited with code %d%s", ErrTrap, exit.ExitCode(), stderrSuffix(stderr))
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %v", ErrTimeout, ctx.Err())
	}
	if oom(stderr, mem, limitPages) {
		return fmt.Errorf("%w (limit %d KiB): %v", ErrOutOfMemory, uint64(limitPages)*64, firstLine(err.Error()))
	}
	return fmt.Errorf("%w: %v%s", ErrTrap, firstLine(err.Error()), stderrSuffix(stderr))
}

// oom reports whether a failed guest ran out of memory: the Go runtime
// says so on stderr, or memory is within 1/16 of the limit.
func oom(stderr *headBuffer, mem api.Memory, limitPages uint32) bool {
	if bytes.Contains(stderr.Bytes(), []byte("out of memory")) {
		return true
	}
	if mem == nil {
		return false
	}
	limit := uint64(limitPages) * 65536
	return uint64(mem.Size()) >= limit-limit/16
}

func stderrSuffix(stderr *headBuffer) string {
	s := strings.TrimSpace(string(stderr.Bytes()))
	if s == "" {
		return ""
	}
	return " (stderr: " + truncate(firstLine(s), 300) + ")"
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// message renders a guest's error message for an error string.
func message(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	if s == "" {
		return "(no message)"
	}
	return truncate(s, 1024)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (h *headBuffer) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if room := h.max - len(h.b); room > 0 {
		h.b = append(h.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (h *headBuffer) Bytes() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return bytes.Clone(h.b)
}

func (h *headBuffer) Reset() {
	h.mu.Lock()
	h.b = h.b[:0]
	h.mu.Unlock()
}
