// Package feedback is a node's durable, append-only log of labelled
// examples: the inputs of a request (or of an example a client sends) and
// the class it should have had. Federated rounds and online learning read
// their training data from it.
//
// # Files
//
// The log is a directory of segment files, <seq>.seg with seq a 16-digit
// hex number that grows with each new segment, and a LOCK file that one
// process holds (flock) while the log is open. A segment starts with a
// 16-byte header ("PETRELFB", format version 1, reserved) followed by
// frames: the payload length and a CRC-32C (Castagnoli) of the length and
// payload, both little-endian uint32, then the payload (see appendFrame).
// New records go to the newest (active) segment; when it would grow past
// Config.SegmentBytes it is synced, closed and a new one started.
//
// # Durability
//
// With FsyncAlways (the default) Append returns only after the records
// and everything before them are on stable storage (fdatasync of the
// segment; the directory is synced when a segment is created). Appends
// that run at the same time share one sync (group commit). A record whose
// Append returned nil survives a crash of the process or of the machine.
//
// With FsyncInterval Append returns once the records are written to the
// operating system, and a background goroutine syncs every
// Config.FsyncInterval. An acknowledged record survives a crash of the
// process, but a crash of the machine (power loss, kernel panic) loses
// the records of up to the last interval.
//
// A failed sync or a write that cannot be undone makes the log fail: every
// later Append returns an error wrapping ErrFailed, since after a failed
// fsync the kernel may have dropped the pages and nothing written since
// can be trusted. Reopening the log (restarting the node) recovers it.
//
// # Recovery
//
// Open reads every segment and checks each frame's checksum. The first
// frame that is cut short or damaged ends its segment: the file is
// truncated there, so one torn write at the tail (a crash in the middle of
// an Append, which therefore was never acknowledged) drops exactly that
// write and nothing before it. Recovered reports what was dropped.
//
// # Retention
//
// The log holds at most Config.MaxBytes (whole segments, oldest first, are
// deleted to make room; the active segment never is) and drops a segment
// once its newest record is older than Config.MaxAge. Read and Len skip
// records older than MaxAge even before their segment goes, so an expired
// example is never used. The active segment is sealed once its oldest
// record is MaxAge/4 old, so expired bytes linger at most that long after
// an Append or Prune.
package feedback

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FsyncPolicy says when Append acknowledges a write.
type FsyncPolicy string

// The policies; see the package documentation for what each guarantees.
const (
	FsyncAlways   FsyncPolicy = "always"
	FsyncInterval FsyncPolicy = "interval"
)

// Defaults of Config.
const (
	DefaultFsyncInterval = 50 * time.Millisecond
	DefaultSegmentBytes  = 16 << 20
	// MinSegmentBytes is the smallest segment size Config accepts.
	MinSegmentBytes = 4 << 10
)

// Errors callers check.
var (
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("feedback log is closed")
	// ErrFailed is wrapped by Append after a sync or write failure left
	// the log in a state it cannot vouch for.
	ErrFailed = errors.New("feedback log failed")
	// ErrLocked is returned by Open when another process (or another Log
	// in this one) holds the directory.
	ErrLocked = errors.New("feedback log directory is in use")
)

// Config configures a Log. The zero value of every field but Dir takes the
// default noted.
type Config struct {
	// Dir is the log's directory, created if missing. Required.
	Dir string
	// Fsync is when Append acknowledges: FsyncAlways (default) or
	// FsyncInterval.
	Fsync FsyncPolicy
	// FsyncInterval is how often the FsyncInterval policy syncs. Default
	// 50 ms.
	FsyncInterval time.Duration
	// MaxBytes bounds the files of the log; 0 means no bound.
	MaxBytes int64
	// MaxAge drops records older than this; 0 keeps them until MaxBytes
	// pushes them out.
	MaxAge time.Duration
	// SegmentBytes is the size at which a new segment starts. Default
	// 16 MiB, or MaxBytes/8 when that is smaller (at least 4 KiB).
	SegmentBytes int64
	// Now is the clock, for record times and MaxAge; nil means time.Now.
	Now func() time.Time
}

// withDefaults fills the defaults in and validates.
func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		return c, errors.New("feedback log: no directory")
	}
	switch c.Fsync {
	case "":
		c.Fsync = FsyncAlways
	case FsyncAlways, FsyncInterval:
	default:
		return c, fmt.Errorf("feedback log: fsync policy %q: want %q or %q", c.Fsync, FsyncAlways, FsyncInterval)
	}
	if c.FsyncInterval < 0 || c.MaxBytes < 0 || c.MaxAge < 0 || c.SegmentBytes < 0 {
		return c, errors.New("feedback log: fsync interval, max bytes, max age and segment bytes must not be negative")
	}
	if c.FsyncInterval == 0 {
		c.FsyncInterval = DefaultFsyncInterval
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
		if c.MaxBytes > 0 {
			c.SegmentBytes = max(min(c.SegmentBytes, c.MaxBytes/8), MinSegmentBytes)
		}
	}
	if c.SegmentBytes < MinSegmentBytes {
		return c, fmt.Errorf("feedback log: segment bytes %d: want at least %d", c.SegmentBytes, MinSegmentBytes)
	}
	if c.MaxBytes > 0 && c.MaxBytes < 2*c.SegmentBytes {
		return c, fmt.Errorf("feedback log: max bytes %d: want at least two segments (%d bytes)", c.MaxBytes, 2*c.SegmentBytes)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Segment header.
var segMagic = [8]byte{'P', 'E', 'T', 'R', 'E', 'L', 'F', 'B'}

const (
	segHeader  = 16
	segVersion = 1
	segSuffix  = ".seg"
	lockName   = "LOCK"
)

// ref locates one record in a segment.
type ref struct {
	off   int64
	t     int64 // Unix nanoseconds
	size  uint32
	model uint32 // index into Log.names
}

// segment is one file of the log.
type segment struct {
	seq    uint64
	path   string
	size   int64
	refs   []ref
	counts map[uint32]int
	oldest int64 // Unix nanoseconds; 0 when empty
	newest int64
}

func (s *segment) add(r ref) {
	s.refs = append(s.refs, r)
	s.counts[r.model]++
	if len(s.refs) == 1 || r.t < s.oldest {
		s.oldest = r.t
	}
	if len(s.refs) == 1 || r.t > s.newest {
		s.newest = r.t
	}
}

// Recovery is what Open dropped to make the log readable.
type Recovery struct {
	// DroppedBytes counts bytes truncated from segment tails: torn or
	// damaged frames and everything after them in their segment.
	DroppedBytes int64
	// Segments names the files that were truncated, with the offset.
	Segments []string
}

// Log is a durable append-only log of labelled examples. Its methods are
// safe for concurrent use.
type Log struct {
	cfg  Config
	lock *os.File

	mu        sync.Mutex
	cond      *sync.Cond // signalled when a sync ends
	sealed    []*segment // oldest first
	active    *segment
	f         *os.File // the active segment, opened for writing
	names     []string
	nameIdx   map[string]uint32
	written   uint64 // Appends written so far
	synced    uint64 // of which durable
	syncing   bool
	dirty     bool // written since the last sync
	failed    error
	closed    bool
	recovered Recovery

	stop chan struct{}
	wg   sync.WaitGroup
}

// Open opens (or creates) the log in cfg.Dir and recovers it: see the
// package documentation. It fails with ErrLocked when the directory is in
// use.
func Open(cfg Config) (*Log, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("feedback log: %w", err)
	}
	lock, err := lockDir(filepath.Join(cfg.Dir, lockName))
	if err != nil {
		return nil, err
	}
	l := &Log{cfg: cfg, lock: lock, nameIdx: map[string]uint32{}, stop: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, err
	}
	if cfg.Fsync == FsyncInterval {
		l.wg.Go(l.syncLoop)
	}
	return l, nil
}

// segPath is the file of segment seq.
func (l *Log) segPath(seq uint64) string {
	return filepath.Join(l.cfg.Dir, fmt.Sprintf("%016x%s", seq, segSuffix))
}

// recover scans the directory, reads every segment and opens the active
// one (creating it if there is none).
func (l *Log) recover() error {
	entries, err := os.ReadDir(l.cfg.Dir)
	if err != nil {
		return fmt.Errorf("feedback log: %w", err)
	}
	var seqs []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || !e.Type().IsRegular() || len(name) != 16 {
			continue
		}
		seq, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for i, seq := range seqs {
		last := i == len(seqs)-1
		s, err := l.scan(seq, last)
		if err != nil {
			return err
		}
		if s == nil { // an empty last segment with a torn header: removed
			continue
		}
		if last {
			l.active = s
		} else {
			l.sealed = append(l.sealed, s)
		}
	}
	if l.active == nil {
		next := uint64(1)
		if len(l.sealed) > 0 {
			next = l.sealed[len(l.sealed)-1].seq + 1
		}
		return l.create(next)
	}
	f, err := os.OpenFile(l.active.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("feedback log: %w", err)
	}
	l.f = f
	return nil
}

// scan reads one segment, truncating it at the first bad frame.
func (l *Log) scan(seq uint64, last bool) (*segment, error) {
	path := l.segPath(seq)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("feedback log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("feedback log: %w", err)
	}
	var hdr [segHeader]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || !bytes.Equal(hdr[:8], segMagic[:]) || binary.LittleEndian.Uint32(hdr[8:]) != segVersion {
		if st.Size() < segHeader && last {
			// Created, and the crash came before its header was
			// synced: it never held a record.
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("feedback log: remove torn segment: %w", err)
			}
			l.recovered.DroppedBytes += st.Size()
			l.recovered.Segments = append(l.recovered.Segments, filepath.Base(path)+"@0")
			return nil, nil
		}
		return nil, fmt.Errorf("feedback log: %s is not a feedback segment (format %d)", path, segVersion)
	}
	s := &segment{seq: seq, path: path, size: segHeader, counts: map[uint32]int{}}
	br := bufio.NewReaderSize(f, 256<<10)
	var h [frameHeader]byte
	var payload []byte
	for {
		off := s.size
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if err == io.EOF {
				break // a clean end
			}
			return s, l.truncate(s, f, off, st.Size())
		}
		n, _, err := frameLen(h[:])
		if err != nil || int64(n) > st.Size()-off-frameHeader {
			return s, l.truncate(s, f, off, st.Size())
		}
		if cap(payload) < frameHeader+n {
			payload = make([]byte, frameHeader+n)
		}
		payload = payload[:frameHeader+n]
		copy(payload, h[:])
		if _, err := io.ReadFull(br, payload[frameHeader:]); err != nil {
			return s, l.truncate(s, f, off, st.Size())
		}
		r, err := decodeFrame(payload)
		if err != nil {
			return s, l.truncate(s, f, off, st.Size())
		}
		s.add(ref{off: off, t: r.Time.UnixNano(), size: uint32(frameHeader + n), model: l.intern(r.Model)})
		s.size += int64(frameHeader + n)
	}
	return s, nil
}

// truncate cuts segment s at off (its first bad frame) and syncs it.
func (l *Log) truncate(s *segment, f *os.File, off, size int64) error {
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("feedback log: truncate %s at %d: %w", s.path, off, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("feedback log: sync %s: %w", s.path, err)
	}
	s.size = off
	l.recovered.DroppedBytes += size - off
	l.recovered.Segments = append(l.recovered.Segments, fmt.Sprintf("%s@%d", filepath.Base(s.path), off))
	return nil
}

// create starts segment seq as the active one: header written and synced,
// directory synced.
func (l *Log) create(seq uint64) error {
	path := l.segPath(seq)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("feedback log: create segment: %w", err)
	}
	var hdr [segHeader]byte
	copy(hdr[:], segMagic[:])
	binary.LittleEndian.PutUint32(hdr[8:], segVersion)
	_, err = f.Write(hdr[:])
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(l.cfg.Dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("feedback log: create segment %s: %w", path, err)
	}
	l.active = &segment{seq: seq, path: path, size: segHeader, counts: map[uint32]int{}}
	l.f = f
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (l *Log) intern(name string) uint32 {
	if i, ok := l.nameIdx[name]; ok {
		return i
	}
	i := uint32(len(l.names))
	l.names = append(l.names, name)
	l.nameIdx[name] = i
	return i
}

// Append writes the records as one batch and returns once the policy
// considers them durable (see the package documentation): all of them or,
// on error, none. A record with a zero Time gets the current time.
func (l *Log) Append(recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	now := l.cfg.Now()
	var buf []byte
	offs := make([]int, len(recs))
	times := make([]int64, len(recs))
	for i := range recs {
		r := recs[i]
		if r.Time.IsZero() {
			r.Time = now
		}
		if err := r.Validate(); err != nil {
			return fmt.Errorf("feedback log: record %d: %w", i, err)
		}
		offs[i], times[i] = len(buf), r.Time.UnixNano()
		buf = appendFrame(buf, &r)
	}
	if l.cfg.MaxBytes > 0 && int64(len(buf)) > l.cfg.MaxBytes/2 {
		return fmt.Errorf("feedback log: a batch of %d bytes is more than half the log's bound of %d bytes", len(buf), l.cfg.MaxBytes)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if l.active.size+int64(len(buf)) > l.cfg.SegmentBytes && len(l.active.refs) > 0 {
		if err := l.rotateLocked(); err != nil {
			return err
		}
		if err := l.usable(); err != nil { // rotation may have waited on a sync
			return err
		}
	}
	s := l.active
	if _, err := l.f.WriteAt(buf, s.size); err != nil {
		// Undo the partial write, or the next record would follow
		// garbage that recovery stops at.
		if terr := l.f.Truncate(s.size); terr != nil {
			l.failed = fmt.Errorf("%w: write %s: %v; truncate after it: %v", ErrFailed, s.path, err, terr)
			return l.failed
		}
		return fmt.Errorf("feedback log: write %s: %w", s.path, err)
	}
	for i := range recs {
		end := len(buf)
		if i+1 < len(recs) {
			end = offs[i+1]
		}
		s.add(ref{off: s.size + int64(offs[i]), t: times[i], size: uint32(end - offs[i]), model: l.intern(recs[i].Model)})
	}
	s.size += int64(len(buf))
	l.written++
	l.dirty = true
	seq := l.written
	// A segment that cannot be deleted now is retried on the next Append
	// or Prune; it does not fail this one (a failed rotation does, through
	// l.failed below).
	_ = l.pruneLocked(now)
	if l.cfg.Fsync == FsyncAlways {
		return l.syncToLocked(seq)
	}
	return l.failed
}

func (l *Log) usable() error {
	if l.closed {
		return ErrClosed
	}
	return l.failed
}

// syncToLocked returns once Append number seq is synced, syncing itself or
// waiting for a sync in progress that will cover it. l.mu is held.
func (l *Log) syncToLocked(seq uint64) error {
	for l.synced < seq {
		if err := l.usable(); err != nil {
			return err
		}
		if l.syncing {
			l.cond.Wait()
			continue
		}
		l.syncOnceLocked()
	}
	return nil
}

// syncOnceLocked syncs the active segment with l.mu released during the
// sync, so that Appends keep writing (and will share the next sync).
func (l *Log) syncOnceLocked() {
	l.syncing = true
	f, target := l.f, l.written
	l.dirty = false
	l.mu.Unlock()
	err := f.Sync()
	l.mu.Lock()
	l.syncing = false
	if err != nil {
		l.failed = fmt.Errorf("%w: sync %s: %v", ErrFailed, f.Name(), err)
	} else if target > l.synced {
		l.synced = target
	}
	l.cond.Broadcast()
}

// rotateLocked seals the active segment (synced, closed) and starts the
// next one.
func (l *Log) rotateLocked() error {
	for l.syncing {
		l.cond.Wait()
	}
	if err := l.usable(); err != nil { // Close may have run while we waited
		return err
	}
	if err := l.f.Sync(); err != nil {
		l.failed = fmt.Errorf("%w: sync %s: %v", ErrFailed, l.active.path, err)
		return l.failed
	}
	l.synced, l.dirty = l.written, false
	if err := l.f.Close(); err != nil {
		l.failed = fmt.Errorf("%w: close %s: %v", ErrFailed, l.active.path, err)
		return l.failed
	}
	l.sealed = append(l.sealed, l.active)
	if err := l.create(l.active.seq + 1); err != nil {
		l.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		return l.failed
	}
	return nil
}

// pruneLocked applies retention: seals an active segment that holds only
// expired records or is MaxAge/4 old, and deletes the oldest sealed
// segments while the log is over MaxBytes or their records expired.
func (l *Log) pruneLocked(now time.Time) error {
	var cutoff int64 = math.MinInt64
	if l.cfg.MaxAge > 0 {
		cutoff = now.Add(-l.cfg.MaxAge).UnixNano()
		a := l.active
		if len(a.refs) > 0 && (a.newest < cutoff || a.oldest < now.Add(-l.cfg.MaxAge/4).UnixNano()) {
			if err := l.rotateLocked(); err != nil {
				return err
			}
		}
	}
	total := l.active.size
	for _, s := range l.sealed {
		total += s.size
	}
	var err error
	for len(l.sealed) > 0 {
		s := l.sealed[0]
		if !(s.newest < cutoff || (l.cfg.MaxBytes > 0 && total > l.cfg.MaxBytes)) {
			break
		}
		if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("feedback log: drop %s: %w", s.path, rerr)
			break
		}
		total -= s.size
		l.sealed = l.sealed[1:]
	}
	return err
}

// Prune applies retention now; Append does it as it goes, so a node calls
// Prune only to expire records when no feedback arrives.
func (l *Log) Prune() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	return l.pruneLocked(l.cfg.Now())
}

// syncLoop is the FsyncInterval policy's syncer.
func (l *Log) syncLoop() {
	t := time.NewTicker(l.cfg.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		if l.dirty && !l.syncing && l.failed == nil && !l.closed {
			l.syncOnceLocked()
		}
		l.mu.Unlock()
	}
}

// Read returns the newest max records of model (every model when model is
// ""; every record when max <= 0), oldest first, leaving out records older
// than MaxAge.
func (l *Log) Read(model string, max int) ([]Record, error) {
	type want struct {
		path string
		refs []ref // newest first
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	idx, known := l.nameIdx[model]
	cutoff := l.cutoff()
	var plan []want
	total := 0
	segs := append(slices.Clone(l.sealed), l.active)
	for i := len(segs) - 1; i >= 0 && (max <= 0 || total < max) && (known || model == ""); i-- {
		s := segs[i]
		w := want{path: s.path}
		for j := len(s.refs) - 1; j >= 0 && (max <= 0 || total < max); j-- {
			r := s.refs[j]
			if (model == "" || r.model == idx) && r.t >= cutoff {
				w.refs = append(w.refs, r)
				total++
			}
		}
		if len(w.refs) > 0 {
			plan = append(plan, w)
		}
	}
	l.mu.Unlock()

	out := make([]Record, 0, total)
	for _, w := range plan {
		recs, err := readRefs(w.path, w.refs)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	slices.Reverse(out)
	return out, nil
}

// cutoff is the oldest record time (Unix ns) retention keeps. l.mu held.
func (l *Log) cutoff() int64 {
	if l.cfg.MaxAge <= 0 {
		return math.MinInt64
	}
	return l.cfg.Now().Add(-l.cfg.MaxAge).UnixNano()
}

// readRefs reads records of one segment. A segment deleted by retention
// since the plan was made reads as empty.
func readRefs(path string, refs []ref) ([]Record, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("feedback log: %w", err)
	}
	defer f.Close()
	out := make([]Record, 0, len(refs))
	var buf []byte
	for _, r := range refs {
		if cap(buf) < int(r.size) {
			buf = make([]byte, r.size)
		}
		buf = buf[:r.size]
		if _, err := f.ReadAt(buf, r.off); err != nil {
			return nil, fmt.Errorf("feedback log: read %s at %d: %w", path, r.off, err)
		}
		rec, err := decodeFrame(buf)
		if err != nil {
			return nil, fmt.Errorf("feedback log: %s at %d: %w", path, r.off, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

// Len is the number of records of model (of every model when model is "")
// that Read would return, not counting those older than MaxAge.
func (l *Log) Len(model string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	idx, known := l.nameIdx[model]
	if !known && model != "" {
		return 0
	}
	cutoff := l.cutoff()
	n := 0
	for _, s := range append(slices.Clone(l.sealed), l.active) {
		if s.oldest >= cutoff { // nothing expired: use the counts
			if model == "" {
				n += len(s.refs)
			} else {
				n += s.counts[idx]
			}
			continue
		}
		for _, r := range s.refs {
			if (model == "" || r.model == idx) && r.t >= cutoff {
				n++
			}
		}
	}
	return n
}

// Size is the total size of the segment files in bytes.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.active.size
	for _, s := range l.sealed {
		n += s.size
	}
	return n
}

// Recovered reports what Open dropped.
func (l *Log) Recovered() Recovery {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.recovered
	r.Segments = slices.Clone(r.Segments)
	return r
}

// Close syncs what was written, closes the files and releases the
// directory. Safe to call more than once; later calls return nil.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	l.wg.Wait()

	l.mu.Lock()
	defer l.mu.Unlock()
	for l.syncing {
		l.cond.Wait()
	}
	var err error
	if l.dirty && l.failed == nil {
		if err = l.f.Sync(); err != nil {
			err = fmt.Errorf("feedback log: sync %s: %w", l.active.path, err)
			l.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		} else {
			l.synced, l.dirty = l.written, false
		}
	}
	err = errors.Join(err, l.closeFiles())
	l.cond.Broadcast() // Appends waiting for a sync see synced, or ErrClosed
	return err
}

// closeFiles closes the active segment and releases the lock.
func (l *Log) closeFiles() error {
	var errs []error
	if l.f != nil {
		errs = append(errs, l.f.Close())
		l.f = nil
	}
	if l.lock != nil {
		errs = append(errs, unlockDir(l.lock))
		l.lock = nil
	}
	return errors.Join(errs...)
}
