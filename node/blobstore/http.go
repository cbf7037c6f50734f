package blobstore

import (
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/models/oip"
)

// BlobPathPrefix is the path under which Handler serves blobs:
// BlobPathPrefix + digest.
const BlobPathPrefix = "/v1/blobs/"

// HeaderBlobWait asks the handler, for a blob it neither has nor is
// writing, to wait up to this long for a write of it to begin before
// answering 404: a Go duration ("500ms") or an integer number of
// milliseconds, capped at MaxBlobWait. It closes the race of a swarm in
// which every node starts fetching at once and asks the seeder before
// the seeder has begun its own download (see Source.Wait).
const HeaderBlobWait = "Petrel-Blob-Wait"

// MaxBlobWait caps HeaderBlobWait, so that a request cannot hold a
// handler longer than a few seconds for a blob that never comes.
const MaxBlobWait = 5 * time.Second

// Handler returns the HTTP handler peers fetch blobs from:
//
//	GET|HEAD /v1/blobs/{digest}
//
// It serves committed blobs and blobs still being written alike (the
// latter as their bytes arrive, once their size is known), with a strong
// ETag (the quoted digest), If-None-Match, If-Range, and single byte
// ranges (see parseRange). Errors are JSON {"error": "..."}: 400 for a
// malformed digest, 404 for an absent blob, 405 for other methods, 416
// for an unsatisfiable or malformed range. If a blob being streamed fails
// or is restarted mid-response, the response is aborted (the client sees
// a truncated body and its fetcher moves on).
//
// The handler reads the full request path, so mount it at
// BlobPathPrefix on a mux that does not strip prefixes.
func (s *Store) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Store) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use GET or HEAD")
		return
	}
	digest, ok := strings.CutPrefix(r.URL.Path, BlobPathPrefix)
	if !ok {
		writeError(w, http.StatusNotFound, "no such endpoint: "+quoteShort(r.URL.Path))
		return
	}
	hex, err := ParseDigest(digest)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	wait, err := parseBlobWait(r.Header.Get(HeaderBlobWait))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	c, err := s.openContent(r, hex, wait)
	if err != nil {
		switch {
		case errors.Is(err, ErrNotFound):
			writeError(w, http.StatusNotFound, "blob "+digest+": "+err.Error())
		case errors.Is(err, ErrCorrupt):
			writeError(w, http.StatusNotFound, "blob "+digest+" was corrupt on disk and has been removed")
		case r.Context().Err() != nil:
			// The client is gone; nobody reads the status.
			writeError(w, http.StatusServiceUnavailable, err.Error())
		default:
			writeError(w, http.StatusInternalServerError, err.Error())
		}
		return
	}
	defer c.close()

	h := w.Header()
	etag := `"` + digest + `"`
	h.Set("Etag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagListMatch(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Accept-Ranges", "bytes")
	rng := r.Header.Get("Range")
	if ir := r.Header.Get("If-Range"); rng != "" && ir != "" && textproto.TrimString(ir) != etag {
		rng = "" // the client's copy is not this one: send it all
	}
	start, length, status, msg := rangeRequest(rng, c.size)
	if status == http.StatusRequestedRangeNotSatisfiable {
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(c.size, 10))
		writeError(w, status, msg)
		return
	}
	if status == http.StatusPartialContent {
		h.Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(start+length-1, 10)+"/"+strconv.FormatInt(c.size, 10))
	}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead || length == 0 {
		return
	}
	if err := c.copy(r, w, start, length); err != nil {
		// Headers are out: all that is left is to make sure the client
		// sees a broken response rather than a short one that may look
		// complete (net/http closes the connection or resets the stream).
		panic(http.ErrAbortHandler)
	}
}

// content is a blob opened for serving: committed (f) or in progress (fl).
type content struct {
	s    *Store
	hex  string
	size int64
	f    *os.File  // committed blob
	fl   *follower // in-progress blob
}

// openContent finds and opens the blob for serving, waiting for the size
// of an in-progress blob of unknown size, and up to wait for an absent
// blob to begin. The blob is in use until close.
func (s *Store) openContent(r *http.Request, hex string, wait time.Duration) (*content, error) {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		s.mu.Lock()
		b, d, begun := s.blobs[hex], s.downloads[hex], s.begun
		var verified bool
		if b != nil {
			verified = b.verified
		}
		if b != nil || d != nil {
			s.inUse[hex]++
		}
		s.mu.Unlock()
		switch {
		case b != nil:
			c, err := s.openBlobForServe(hex, verified)
			if err != nil {
				s.release(hex)
				return nil, err
			}
			return c, nil
		case d != nil:
			fl, err := d.follow()
			if errors.Is(err, errCommitted) {
				s.release(hex)
				continue // look again: it is a blob now
			}
			if err != nil {
				s.release(hex)
				return nil, err
			}
			size, err := fl.waitSize(r.Context())
			if err != nil {
				fl.close()
				s.release(hex)
				return nil, err
			}
			return &content{s: s, hex: hex, size: size, fl: fl}, nil
		case timeout == nil:
			return nil, ErrNotFound
		}
		select {
		case <-begun:
		case <-timeout:
			return nil, ErrNotFound
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
}

// parseBlobWait parses a HeaderBlobWait value ("" means no wait).
func parseBlobWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	var d time.Duration
	if ms, err := strconv.ParseUint(v, 10, 63); err == nil {
		d = time.Duration(min(ms, uint64(MaxBlobWait/time.Millisecond))) * time.Millisecond
	} else if pd, err := time.ParseDuration(v); err == nil && pd >= 0 {
		d = pd
	} else {
		return 0, errors.New("header " + HeaderBlobWait + " " + quoteShort(v) + ": want a duration such as 500ms, or milliseconds")
	}
	return min(d, MaxBlobWait), nil
}

// openBlobForServe opens a committed blob, touching it, and verifies it
// first if this process has not hashed it yet (a blob found by the
// startup scan): bit rot is caught once here rather than by every peer.
func (s *Store) openBlobForServe(hex string, verified bool) (*content, error) {
	s.mu.Lock()
	b := s.blobs[hex]
	if b == nil {
		s.mu.Unlock()
		return nil, ErrNotFound
	}
	s.touchLocked(b)
	size := b.size
	f, err := os.Open(s.path(hex))
	if errors.Is(err, os.ErrNotExist) {
		s.dropLocked(b)
		err = ErrNotFound
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if !verified {
		if err := verifyFile(f, hex, size); err != nil {
			if errors.Is(err, ErrCorrupt) {
				s.dropCorrupt(hex, f)
			}
			f.Close()
			return nil, err
		}
		s.mu.Lock()
		if b := s.blobs[hex]; b != nil {
			b.verified = true
		}
		s.mu.Unlock()
	}
	return &content{s: s, hex: hex, size: size, f: f}, nil
}

func (c *content) close() {
	if c.f != nil {
		c.f.Close()
	} else {
		c.fl.close()
	}
	c.s.release(c.hex)
}

// copy writes length bytes from start to w.
func (c *content) copy(r *http.Request, w http.ResponseWriter, start, length int64) error {
	if c.f != nil {
		// io.CopyN over the file lets net/http use sendfile.
		if _, err := c.f.Seek(start, io.SeekStart); err != nil {
			return err
		}
		_, err := io.CopyN(w, c.f, length)
		return err
	}
	rc := http.NewResponseController(w)
	buf := make([]byte, min(length, copyBufSize))
	for off, end := start, start+length; off < end; {
		n, err := c.fl.readAt(r.Context(), buf[:min(int64(len(buf)), end-off)], off)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			// Pass bytes on as they arrive rather than when a buffer fills:
			// a downstream peer streams from us while we stream.
			rc.Flush()
			off += int64(n)
		}
		if err == io.EOF && off < end {
			return io.ErrUnexpectedEOF // committed shorter than announced
		}
		if err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

// writeError writes {"error": msg} with status, like the rest of the node.
func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(oip.EncodeError(msg))
}

// rangeRequest decides the response to a Range header value (empty when
// absent or voided by If-Range) for a blob of size bytes: the status (200,
// 206 or 416), the bytes to send, and for a 416 the reason.
func rangeRequest(header string, size int64) (start, length int64, status int, msg string) {
	start, end, res := parseRange(header, size)
	switch res {
	case rangeSatisfiable:
		return start, end - start + 1, http.StatusPartialContent, ""
	case rangeUnsatisfiable:
		return 0, 0, http.StatusRequestedRangeNotSatisfiable, "range " + quoteShort(header) + " not satisfiable for " + strconv.FormatInt(size, 10) + " bytes"
	case rangeMalformed:
		return 0, 0, http.StatusRequestedRangeNotSatisfiable, "malformed range " + quoteShort(header) + `: want bytes=first-last, bytes=first- or bytes=-suffix`
	}
	return 0, size, http.StatusOK, ""
}

// rangeResult classifies a Range header.
type rangeResult int

const (
	rangeIgnored       rangeResult = iota // send the whole blob
	rangeSatisfiable                      // send [start, end]
	rangeUnsatisfiable                    // 416
	rangeMalformed                        // 416
)

// parseRange interprets a Range request header for a representation of
// size bytes (RFC 9110 §14.1.2), returning the inclusive byte range to
// send. It supports single byte ranges only:
//
//   - "" (no header), another range unit, or a byte range set with more
//     than one range (a comma): ignored, the whole blob is sent. RFC 9110
//     lets a server ignore Range; the fetcher never asks for more than one
//     range, and this keeps multipart responses out of the node.
//   - "bytes=first-last", "bytes=first-": first must be < size (else
//     unsatisfiable); last is clamped to size-1; last < first is
//     malformed.
//   - "bytes=-n": the last n bytes (all of them if n > size); n = 0 is
//     unsatisfiable.
//   - Anything else after "bytes=" is malformed. Numbers are decimal
//     digits only (no sign), without overflow; whitespace around the
//     range and around its numbers is tolerated, as net/http does.
//   - A syntactically valid range on an empty blob is ignored (200 with
//     no body), as net/http does for clients that always send Range.
//
// The unit is matched case-insensitively, as RFC 9110 requires.
func parseRange(header string, size int64) (start, end int64, res rangeResult) {
	if header == "" {
		return 0, 0, rangeIgnored
	}
	unit, set, ok := strings.Cut(header, "=")
	if !ok || !strings.EqualFold(textproto.TrimString(unit), "bytes") {
		return 0, 0, rangeIgnored
	}
	if strings.Contains(set, ",") {
		return 0, 0, rangeIgnored
	}
	first, last, ok := strings.Cut(textproto.TrimString(set), "-")
	if !ok {
		return 0, 0, rangeMalformed
	}
	first, last = textproto.TrimString(first), textproto.TrimString(last)
	if first == "" {
		n, ok := parseDecimal(last)
		if !ok {
			return 0, 0, rangeMalformed
		}
		switch {
		case size == 0:
			return 0, 0, rangeIgnored
		case n == 0:
			return 0, 0, rangeUnsatisfiable
		}
		return size - min(n, size), size - 1, rangeSatisfiable
	}
	start, ok = parseDecimal(first)
	if !ok {
		return 0, 0, rangeMalformed
	}
	end = size - 1
	if last != "" {
		if end, ok = parseDecimal(last); !ok || end < start {
			return 0, 0, rangeMalformed
		}
		end = min(end, size-1)
	}
	switch {
	case size == 0:
		return 0, 0, rangeIgnored
	case start >= size:
		return 0, 0, rangeUnsatisfiable
	}
	return start, end, rangeSatisfiable
}

// parseDecimal parses 1*DIGIT into a non-negative int64, rejecting signs,
// other characters and overflow.
func parseDecimal(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// etagListMatch reports whether an If-None-Match value ("*" or a list of
// entity tags) matches etag, by the weak comparison RFC 9110 §13.1.2
// prescribes for If-None-Match.
func etagListMatch(list, etag string) bool {
	if textproto.TrimString(list) == "*" {
		return true
	}
	for t := range strings.SplitSeq(list, ",") {
		t = textproto.TrimString(t)
		t = strings.TrimPrefix(t, "W/")
		if t == etag {
			return true
		}
	}
	return false
}
