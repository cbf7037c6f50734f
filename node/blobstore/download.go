package blobstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
)

// dlState is where a download is in its life.
type dlState int

const (
	dlWriting   dlState = iota
	dlCommitted         // renamed into place and indexed
	dlFailed            // temp file deleted; err says why
)

// errRestarted tells a reader of an in-progress blob that the writer
// discarded the bytes it had (a digest mismatch) and started again from
// zero, so bytes the reader already passed on may be wrong.
var errRestarted = errors.New("in-progress blob was discarded and restarted after a digest mismatch")

// download is a blob being written (by Put or by a Fetch), readable while
// it grows. One goroutine writes it; any number follow it.
//
// Readers wait on the changed channel, which the writer closes and
// replaces on every change (bytes written, size learnt, restart, commit,
// failure): a broadcast that, unlike sync.Cond, composes with a context in
// a select.
type download struct {
	hex      string
	path     string // temp file, next to the blobs
	expected int64  // size given by the caller, -1 if unknown

	// Owned by the writing goroutine.
	file *os.File
	hash hash.Hash

	// Guarded by Store.mu.
	reservedBytes int64   // counted in Store.reserved
	flight        *flight // non-nil for Fetch downloads; set before publication

	mu      sync.Mutex
	size    int64 // expected size; -1 until known
	written int64 // bytes written in this generation
	gen     int   // bumped by restart
	state   dlState
	err     error         // why it failed
	changed chan struct{} // closed and replaced on every change
	done    chan struct{} // closed on commit or failure
}

// notifyLocked wakes everyone waiting on a change. Caller holds d.mu.
func (d *download) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// result returns the outcome of a finished download: nil once committed.
func (d *download) result() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == dlFailed {
		return d.err
	}
	return nil
}

// begin starts a download of hex with the given expected size, or finds
// what is already there: (nil, nil) when the blob is committed, (nil,
// other) when other is writing it. With fl non-nil the new download
// belongs to a Fetch; and if other belongs to a Fetch too, the caller
// joins it (its waiter count is raised under the same lock).
func (s *Store) begin(hex string, size int64, fl *flight) (d, other *download, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.blobs[hex]; b != nil {
		s.touchLocked(b)
		return nil, nil, nil
	}
	if o := s.downloads[hex]; o != nil {
		if fl != nil && o.flight != nil {
			o.flight.waiters++
		}
		return nil, o, nil
	}
	if s.maxBytes > 0 && size > s.maxBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes, the store holds at most %d", ErrTooLarge, size, s.maxBytes)
	}
	f, err := os.CreateTemp(s.dir, tmpPrefix+hex+"-*")
	if err != nil {
		return nil, nil, err
	}
	d = &download{
		hex:      hex,
		path:     f.Name(),
		expected: size,
		file:     f,
		hash:     sha256.New(),
		flight:   fl,
		size:     size,
		changed:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	if fl != nil {
		fl.waiters = 1
	}
	s.downloads[hex] = d
	close(s.begun) // wake handlers waiting for this blob to appear
	s.begun = make(chan struct{})
	s.reserveLocked(d, size)
	return d, nil, nil
}

// reserveLocked counts a download's size against the budget (once),
// evicting to make room.
func (s *Store) reserveLocked(d *download, size int64) {
	if size <= 0 || d.reservedBytes > 0 {
		return
	}
	d.reservedBytes = size
	s.reserved += size
	s.evictLocked("")
}

// unreserveLocked returns a download's reservation.
func (s *Store) unreserveLocked(d *download) {
	s.reserved -= d.reservedBytes
	d.reservedBytes = 0
}

// write appends p to the download (writer only).
func (s *Store) write(d *download, p []byte) error {
	// d.written and d.size change only in this goroutine: no lock to read.
	next := d.written + int64(len(p))
	if d.size >= 0 && next > d.size {
		return fmt.Errorf("%w: more than the expected %d bytes", ErrDigestMismatch, d.size)
	}
	if s.maxBytes > 0 && next > s.maxBytes {
		return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, s.maxBytes)
	}
	if _, err := d.file.Write(p); err != nil {
		return fmt.Errorf("write temp file: %w", err)
	}
	d.hash.Write(p)
	d.mu.Lock()
	d.written = next
	d.notifyLocked()
	d.mu.Unlock()
	return nil
}

// setSize records the size learnt from a source (writer only).
func (s *Store) setSize(d *download, size int64) error {
	if s.maxBytes > 0 && size > s.maxBytes {
		return fmt.Errorf("%w: %d bytes, the store holds at most %d", ErrTooLarge, size, s.maxBytes)
	}
	s.mu.Lock()
	s.reserveLocked(d, size)
	s.mu.Unlock()
	d.mu.Lock()
	d.size = size
	d.notifyLocked()
	d.mu.Unlock()
	return nil
}

// restart discards everything written and starts again from zero with
// the caller's expected size (writer only). Readers following the
// download fail with errRestarted: the bytes they saw may be wrong.
func (s *Store) restart(d *download) error {
	// Bump the generation before truncating: a reader that sees the old
	// generation after its read knows that the read preceded the
	// truncation (see follower.readAt).
	d.mu.Lock()
	d.gen++
	d.written = 0
	d.size = d.expected
	d.notifyLocked()
	d.mu.Unlock()
	if d.expected < 0 {
		s.mu.Lock()
		s.unreserveLocked(d)
		s.mu.Unlock()
	}
	d.hash.Reset()
	if err := d.file.Truncate(0); err != nil {
		return fmt.Errorf("truncate temp file: %w", err)
	}
	if _, err := d.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind temp file: %w", err)
	}
	return nil
}

// verify checks the bytes written against the digest and size (writer
// only). Errors wrap ErrDigestMismatch.
func (d *download) verify() error {
	if d.size >= 0 && d.written != d.size {
		return fmt.Errorf("%w: got %d bytes, expected %d", ErrDigestMismatch, d.written, d.size)
	}
	if got := hexSum(d.hash.Sum(nil)); got != d.hex {
		return fmt.Errorf("%w: content hashes to %s%s", ErrDigestMismatch, DigestPrefix, got)
	}
	return nil
}

// commit verifies the download and makes it a blob: fsync the file,
// rename it into place, index it, fsync the directory (writer only). A
// verification failure wraps ErrDigestMismatch and leaves the download
// writing, for the caller to restart or fail.
func (s *Store) commit(d *download) error {
	if err := d.verify(); err != nil {
		return err
	}
	if err := d.file.Sync(); err != nil {
		return fmt.Errorf("sync temp file: %w", err)
	}
	if err := d.file.Close(); err != nil {
		d.file = nil
		return fmt.Errorf("close temp file: %w", err)
	}
	d.file = nil

	s.mu.Lock()
	d.mu.Lock()
	if err := os.Rename(d.path, s.path(d.hex)); err != nil {
		d.mu.Unlock()
		s.mu.Unlock()
		return fmt.Errorf("commit: %w", err)
	}
	b := s.blobs[d.hex]
	if b == nil {
		b = &blob{hex: d.hex, size: d.written}
		b.elem = s.lru.PushFront(b)
		s.blobs[d.hex] = b
		s.used += b.size
	}
	b.verified = true
	s.touchLocked(b)
	s.unreserveLocked(d)
	if s.downloads[d.hex] == d {
		delete(s.downloads, d.hex)
	}
	d.size = d.written
	d.state = dlCommitted
	close(d.done)
	d.notifyLocked()
	d.mu.Unlock()
	// The new blob is not evicted to make room for others in this pass,
	// or the caller could be told it was stored when it no longer is.
	s.evictLocked(d.hex)
	s.mu.Unlock()

	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("blob committed, but syncing its directory failed: %w", err)
	}
	return nil
}

// fail ends a download that did not commit: readers get err, the temp
// file is deleted. It does nothing to a download already finished.
func (s *Store) fail(d *download, err error) {
	s.mu.Lock()
	d.mu.Lock()
	if d.state != dlWriting {
		d.mu.Unlock()
		s.mu.Unlock()
		return
	}
	d.state = dlFailed
	d.err = err
	close(d.done)
	d.notifyLocked()
	d.mu.Unlock()
	s.unreserveLocked(d)
	if s.downloads[d.hex] == d {
		delete(s.downloads, d.hex)
	}
	s.evictLocked("")
	s.mu.Unlock()
	if d.file != nil {
		d.file.Close()
		d.file = nil
	}
	os.Remove(d.path)
}

// syncDir fsyncs a directory, making a rename in it durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// follower reads an in-progress download through its own file handle,
// blocking for bytes not yet written. The handle stays valid across the
// commit (a rename) and the failure (an unlink) of the download.
type follower struct {
	d   *download
	f   *os.File
	gen int
}

// errCommitted: the download was committed before it could be followed;
// read the blob instead.
var errCommitted = errors.New("download already committed")

// follow opens d for reading.
func (d *download) follow() (*follower, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.state {
	case dlCommitted:
		return nil, errCommitted
	case dlFailed:
		return nil, fmt.Errorf("%w: its download failed: %w", ErrNotFound, d.err)
	}
	// The temp file exists while the state is dlWriting: commit renames
	// and fail sets the state under d.mu before unlinking.
	f, err := os.Open(d.path)
	if err != nil {
		return nil, err
	}
	return &follower{d: d, f: f, gen: d.gen}, nil
}

// close releases the follower's file handle.
func (fl *follower) close() error { return fl.f.Close() }

// checkLocked returns why the follower cannot go on, if it cannot.
func (fl *follower) checkLocked() error {
	if fl.d.gen != fl.gen {
		return errRestarted
	}
	if fl.d.state == dlFailed {
		return fmt.Errorf("%w: its download failed: %w", ErrNotFound, fl.d.err)
	}
	return nil
}

// waitSize blocks until the size of the blob is known: from the caller of
// Put or Fetch, from a source's headers, or at the latest at the commit.
func (fl *follower) waitSize(ctx context.Context) (int64, error) {
	d := fl.d
	for {
		d.mu.Lock()
		err, size, ch := fl.checkLocked(), d.size, d.changed
		d.mu.Unlock()
		if err != nil {
			return 0, err
		}
		if size >= 0 {
			return size, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// readAt reads up to len(p) bytes at off, blocking until at least one is
// available, the download ends (io.EOF past its end), it fails or
// restarts, or ctx ends.
func (fl *follower) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	d := fl.d
	for {
		d.mu.Lock()
		err, avail, state, ch := fl.checkLocked(), d.written, d.state, d.changed
		d.mu.Unlock()
		if err != nil {
			return 0, err
		}
		if off < avail {
			want := min(int64(len(p)), avail-off)
			n, err := fl.f.ReadAt(p[:want], off)
			// Bytes below d.written do not change within a generation; if
			// the generation is still ours, the read preceded any restart.
			d.mu.Lock()
			gen := d.gen
			d.mu.Unlock()
			if gen != fl.gen {
				return 0, errRestarted
			}
			if err == io.EOF && int64(n) == want {
				err = nil
			}
			return n, err
		}
		if state == dlCommitted {
			return 0, io.EOF
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}
