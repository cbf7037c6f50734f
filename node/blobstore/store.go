package blobstore

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Layout and sizing constants.
const (
	// blobSubdir holds the blobs, one file per digest named by its hex.
	blobSubdir = "sha256"
	// tmpPrefix starts the names of files being written. They live next
	// to the blobs so that the commit is a rename within one directory;
	// the startup scan deletes any it finds (left by a crash).
	tmpPrefix = ".tmp-"
	// copyBufSize is the buffer of the copy loops (Put, fetch, serving an
	// in-progress blob): big enough to keep syscalls and wake-ups of
	// waiting readers rare, small enough to be cheap per transfer.
	copyBufSize = 256 << 10
)

// Store is a content-addressed disk store of blobs (model artifacts)
// under one directory, bounded by bytes with LRU eviction. It is safe for
// concurrent use.
//
// Blobs are written through a temp file and committed by rename once
// their digest checks, so a blob file under dir/sha256/ only ever holds
// the bytes of its name, barring disk faults, which reads detect.
type Store struct {
	dir      string // dir/sha256
	maxBytes int64  // <= 0: unbounded

	mu        sync.Mutex
	blobs     map[string]*blob     // committed blobs by hex
	lru       list.List            // of *blob; front = most recently used
	used      int64                // bytes of committed blobs
	reserved  int64                // bytes held for downloads of known size
	downloads map[string]*download // blobs being written, by hex
	pins      map[string]int       // pin counts by hex, present or not
	inUse     map[string]int       // open readers by hex
	begun     chan struct{}        // closed and replaced when a write begins
	evictions uint64
}

// blob is the index entry of a committed blob. Guarded by Store.mu.
type blob struct {
	hex      string
	size     int64
	lastUsed time.Time
	elem     *list.Element
	// verified: this process hashed the file (it wrote it, or checked it
	// before serving it). The handler serves unverified blobs only after
	// checking them once; loads (ReadAll, Open) verify every time.
	verified bool
}

// Info describes one committed blob, as List returns it.
type Info struct {
	Digest   string    // "sha256:<hex>"
	Size     int64     // bytes
	LastUsed time.Time // last commit or read; at startup, the file's mtime
	Pinned   bool      // protected from eviction
}

// Stats is a snapshot of the store's accounting.
type Stats struct {
	Blobs      int    // committed blobs
	Bytes      int64  // bytes of committed blobs
	Reserved   int64  // bytes held for in-progress writes of known size
	MaxBytes   int64  // the budget; <= 0 means unbounded
	InProgress int    // blobs being written
	Evictions  uint64 // blobs evicted since Open
}

// Open opens (creating it if needed) the store in dir and rebuilds its
// index from the files in dir/sha256: files named by 64 lowercase hex
// digits are blobs (their contents are verified when read, not here, so
// that startup stays cheap), stray temp files from an interrupted write
// are deleted, and anything else is ignored and left alone. maxBytes
// bounds the bytes of blobs kept; <= 0 means unbounded. If the blobs found
// exceed maxBytes, the least recently modified are evicted.
func Open(dir string, maxBytes int64) (*Store, error) {
	if dir == "" {
		return nil, errors.New("blobstore: empty directory")
	}
	s := &Store{
		dir:       filepath.Join(dir, blobSubdir),
		maxBytes:  maxBytes,
		blobs:     make(map[string]*blob),
		downloads: make(map[string]*download),
		pins:      make(map[string]int),
		inUse:     make(map[string]int),
		begun:     make(chan struct{}),
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("blobstore: scan: %w", err)
	}
	var found []*blob
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("blobstore: remove stray temp file: %w", err)
			}
		case validHex(name) && e.Type().IsRegular():
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("blobstore: scan: %w", err)
			}
			found = append(found, &blob{hex: name, size: fi.Size(), lastUsed: fi.ModTime()})
		}
	}
	// Oldest first, so that pushing each to the front leaves the newest
	// at the front. Ties broken by name for a deterministic order.
	slices.SortFunc(found, func(a, b *blob) int {
		if c := a.lastUsed.Compare(b.lastUsed); c != 0 {
			return c
		}
		return strings.Compare(a.hex, b.hex)
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range found {
		b.elem = s.lru.PushFront(b)
		s.blobs[b.hex] = b
		s.used += b.size
	}
	s.evictLocked("")
	return s, nil
}

// Dir returns the directory holding the blob files (dir/sha256).
func (s *Store) Dir() string { return s.dir }

// path returns the file of a blob. hex must have passed validHex.
func (s *Store) path(hex string) string { return filepath.Join(s.dir, hex) }

// Has reports whether the blob is committed in the store (a blob being
// written is not). It does not count as a use for eviction.
func (s *Store) Has(digest string) bool {
	_, ok := s.Size(digest)
	return ok
}

// Size returns the size of a committed blob.
func (s *Store) Size(digest string) (int64, bool) {
	hex, err := ParseDigest(digest)
	if err != nil {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.blobs[hex]; b != nil {
		return b.size, true
	}
	return 0, false
}

// List returns the committed blobs, sorted by digest.
func (s *Store) List() []Info {
	s.mu.Lock()
	out := make([]Info, 0, len(s.blobs))
	for _, b := range s.blobs {
		out = append(out, Info{Digest: DigestPrefix + b.hex, Size: b.size, LastUsed: b.lastUsed, Pinned: s.pins[b.hex] > 0})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Digest, b.Digest) })
	return out
}

// Stats returns the store's accounting.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Blobs:      len(s.blobs),
		Bytes:      s.used,
		Reserved:   s.reserved,
		MaxBytes:   s.maxBytes,
		InProgress: len(s.downloads),
		Evictions:  s.evictions,
	}
}

// Pin protects a blob from eviction until a matching Unpin. Pins are
// counted, and may be taken before the blob arrives (pin, then fetch, and
// the blob is never evicted between its commit and its use). Remove still
// removes a pinned blob.
func (s *Store) Pin(digest string) error {
	hex, err := ParseDigest(digest)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.pins[hex]++
	s.mu.Unlock()
	return nil
}

// Unpin releases one Pin. Unpinning a digest that is not pinned does
// nothing. Once a blob has no pins left, eviction may take it.
func (s *Store) Unpin(digest string) error {
	hex, err := ParseDigest(digest)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch n := s.pins[hex]; {
	case n > 1:
		s.pins[hex] = n - 1
	case n == 1:
		delete(s.pins, hex)
		s.evictLocked("")
	}
	return nil
}

// Remove deletes a committed blob. Readers that already opened it keep
// reading the old file (POSIX semantics); new ones get ErrNotFound. A
// blob being written cannot be removed (ErrInProgress); an absent one
// gives ErrNotFound.
func (s *Store) Remove(digest string) error {
	hex, err := ParseDigest(digest)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.downloads[hex] != nil {
		return fmt.Errorf("remove %s: %w", digest, ErrInProgress)
	}
	b := s.blobs[hex]
	if b == nil {
		return fmt.Errorf("remove %s: %w", digest, ErrNotFound)
	}
	if err := os.Remove(s.path(hex)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", digest, err)
	}
	s.dropLocked(b)
	return nil
}

// Put stores the blob read from r under digest. size is the expected
// size, or -1 when unknown. The bytes stream to a temp file while being
// hashed; only if they hash to digest (and have the given size) is the
// file synced and renamed into place, and the directory synced, before
// Put returns. Otherwise the temp file is deleted and the error wraps
// ErrDigestMismatch.
//
// If the blob is already present, Put returns nil without reading r. If
// it is being written by someone else, Put waits for that write: if it
// commits, Put returns nil; if it fails, Put writes the blob itself.
// While Put runs, the blob is readable as in progress through Handler.
// ctx is checked between reads; a Read blocked in r is not interrupted.
func (s *Store) Put(ctx context.Context, digest string, r io.Reader, size int64) error {
	hex, err := ParseDigest(digest)
	if err != nil {
		return err
	}
	if size < -1 {
		return fmt.Errorf("put %s: invalid size %d", digest, size)
	}
	var d *download
	for d == nil {
		var other *download
		d, other, err = s.begin(hex, size, nil)
		switch {
		case err != nil:
			return fmt.Errorf("put %s: %w", digest, err)
		case other != nil:
			select {
			case <-other.done:
			case <-ctx.Done():
				return fmt.Errorf("put %s: %w", digest, ctx.Err())
			}
		case d == nil:
			return nil // present
		}
	}
	err = s.fill(ctx, d, r)
	if err == nil {
		err = s.commit(d)
	}
	if err != nil {
		s.fail(d, err)
		return fmt.Errorf("put %s: %w", digest, err)
	}
	return nil
}

// fill copies r into the download until EOF.
func (s *Store) fill(ctx context.Context, d *download, r io.Reader) error {
	buf := make([]byte, copyBufSize)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := s.write(d, buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read: %w", rerr)
		}
	}
}

// ReadAll returns the contents of a committed blob, verified: it is
// re-hashed, and if it does not match its digest the file is removed and
// the error wraps ErrCorrupt. An absent blob gives ErrNotFound, one being
// written ErrInProgress (Fetch waits for it).
func (s *Store) ReadAll(digest string) ([]byte, error) {
	r, err := s.Open(digest)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := make([]byte, 0, r.Size()+1) // +1: room to see EOF without growing
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096) // the file grew; Read reports it
		}
	}
}

// Open opens a committed blob for reading. The Reader verifies as it
// goes: at the end of the blob, it returns io.EOF only if the bytes read
// hash to the digest, and otherwise an error wrapping ErrCorrupt (the file
// having been removed). Consumers must read to EOF and check for that
// error before trusting the bytes. The blob counts as in use, and is not
// evicted, until the Reader is closed. An absent blob gives ErrNotFound,
// one being written ErrInProgress.
func (s *Store) Open(digest string) (*Reader, error) {
	hex, err := ParseDigest(digest)
	if err != nil {
		return nil, err
	}
	f, size, err := s.openCommitted(hex)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", digest, err)
	}
	return &Reader{s: s, hex: hex, f: f, size: size, h: sha256.New()}, nil
}

// openCommitted opens a committed blob's file, marks it in use and
// touches it. The caller must call release(hex) when done.
func (s *Store) openCommitted(hex string) (*os.File, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.blobs[hex]
	if b == nil {
		if s.downloads[hex] != nil {
			return nil, 0, ErrInProgress
		}
		return nil, 0, ErrNotFound
	}
	f, err := os.Open(s.path(hex))
	if errors.Is(err, fs.ErrNotExist) {
		s.dropLocked(b) // deleted behind our back
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	s.inUse[hex]++
	s.touchLocked(b)
	return f, b.size, nil
}

// release ends one use of a blob begun by openCommitted or by serving.
func (s *Store) release(hex string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.inUse[hex]; n > 1 {
		s.inUse[hex] = n - 1
		return
	}
	delete(s.inUse, hex)
	s.evictLocked("")
}

// dropCorrupt removes a blob found corrupt through the open file f, unless
// the file at its path is no longer f (removed and written again since).
func (s *Store) dropCorrupt(hex string, f *os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	have, err1 := f.Stat()
	now, err2 := os.Stat(s.path(hex))
	if err1 != nil || err2 != nil || !os.SameFile(have, now) {
		return
	}
	if err := os.Remove(s.path(hex)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return // keep the entry: the next read will detect it again
	}
	if b := s.blobs[hex]; b != nil {
		s.dropLocked(b)
	}
}

// verifyFile hashes f from the start and reports whether it holds exactly
// the blob hex of the given size.
func verifyFile(f *os.File, hex string, size int64) error {
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(f, 0, size+1))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%w: %d bytes on disk, %d expected", ErrCorrupt, n, size)
	}
	if got := hexSum(h.Sum(nil)); got != hex {
		return fmt.Errorf("%w: content hashes to %s%s", ErrCorrupt, DigestPrefix, got)
	}
	return nil
}

func hexSum(sum []byte) string { return hex.EncodeToString(sum) }

// touchLocked records a use of b.
func (s *Store) touchLocked(b *blob) {
	b.lastUsed = time.Now()
	s.lru.MoveToFront(b.elem)
}

// dropLocked removes b from the index (not from the disk).
func (s *Store) dropLocked(b *blob) {
	if s.blobs[b.hex] != b {
		return
	}
	delete(s.blobs, b.hex)
	s.lru.Remove(b.elem)
	s.used -= b.size
}

// evictLocked removes least recently used blobs until the committed bytes
// plus the reservations of in-progress downloads fit in maxBytes. Pinned
// blobs and blobs in use are skipped; blobs being written are not in the
// index at all. If only such blobs remain, the store stays over budget
// until they are unpinned or released (each of which evicts again): the
// budget is soft against them, rather than failing their users.
//
// keep, if not empty, names a blob this pass must not evict (one just
// committed).
func (s *Store) evictLocked(keep string) {
	if s.maxBytes <= 0 {
		return
	}
	for e := s.lru.Back(); e != nil && s.used+s.reserved > s.maxBytes; {
		b := e.Value.(*blob)
		e = e.Prev()
		if b.hex == keep || s.pins[b.hex] > 0 || s.inUse[b.hex] > 0 {
			continue
		}
		if err := os.Remove(s.path(b.hex)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			continue // cannot delete it: keep accounting for it
		}
		s.dropLocked(b)
		s.evictions++
	}
}

// Reader reads a committed blob and verifies it at the end. See
// Store.Open. A Reader is not safe for concurrent use.
type Reader struct {
	s      *Store
	hex    string
	f      *os.File
	size   int64
	h      hash.Hash
	n      int64
	err    error // sticky
	closed bool
}

// Size returns the size of the blob as indexed.
func (r *Reader) Size() int64 { return r.size }

// Read reads the next bytes of the blob. At the end it returns io.EOF if
// the blob verified, or an error wrapping ErrCorrupt.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.closed {
		return 0, os.ErrClosed
	}
	n, err := r.f.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	switch {
	case r.n > r.size:
		r.err = fmt.Errorf("%w: %s%s is longer than its %d bytes", ErrCorrupt, DigestPrefix, r.hex, r.size)
	case err == io.EOF && r.n < r.size:
		r.err = fmt.Errorf("%w: %s%s has %d of its %d bytes", ErrCorrupt, DigestPrefix, r.hex, r.n, r.size)
	case err == io.EOF:
		if got := hexSum(r.h.Sum(nil)); got != r.hex {
			r.err = fmt.Errorf("%w: %s%s hashes to %s%s", ErrCorrupt, DigestPrefix, r.hex, DigestPrefix, got)
		} else {
			r.err = io.EOF
		}
	case err != nil:
		r.err = err
		return n, err
	default:
		return n, nil
	}
	if errors.Is(r.err, ErrCorrupt) {
		r.s.dropCorrupt(r.hex, r.f)
		return 0, r.err
	}
	return n, r.err
}

// Close releases the blob. It is safe to call more than once.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.f.Close()
	r.s.release(r.hex)
	return err
}
