package blobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultStallTimeout is how long a fetch waits for a source that sends
// nothing (no response headers, no body bytes) before abandoning it for
// the next source. It bounds the damage of a peer that hangs, not the
// length of a download: any progress resets it.
const DefaultStallTimeout = 30 * time.Second

// errorBodyLimit bounds how much of an error response the fetcher reads
// to explain a failure.
const errorBodyLimit = 1 << 10

// minRangePiece is the least a source must send in a clean 206 response
// that stops short of the end of the blob for the fetcher to ask it for
// the rest. Sources that serve ranges in pieces (some caches cap range
// responses) work down to this size; one that trickles out tiny pieces,
// which would take a request per few bytes, is abandoned.
const minRangePiece = 64 << 10

// errStalled is the cause of an attempt abandoned by its stall timeout.
var errStalled = errors.New("source stalled")

// Source is one place a Fetch can get a blob from: a Petrel peer, or an
// origin that stores blobs under some URL scheme.
type Source struct {
	// Name identifies the source in a FetchReport and in errors (e.g. a
	// node ID, or "origin"). Empty means URL.
	Name string
	// URL is either the base URL of a Petrel peer, "http://host:port",
	// whose blob URL is URL + "/v1/blobs/" + digest, or a template
	// containing "{digest}" (replaced by "sha256:<hex>") and/or "{hex}"
	// (replaced by the hex alone), for origins with their own layout,
	// e.g. "https://origin.example/artifacts/{hex}". The result must be
	// an absolute http or https URL. The source must answer GET with the
	// blob, and should honour "Range: bytes=N-" with a 206 and a
	// Content-Range (a 200 with the whole blob also works, at the cost of
	// resending the bytes already held).
	URL string
	// Client sends the requests; nil means http.DefaultClient. Its
	// Timeout, if any, bounds a whole attempt; prefer StallTimeout.
	Client *http.Client
	// StallTimeout abandons the source when it sends nothing for this
	// long. Zero means DefaultStallTimeout; negative disables the check.
	// It must exceed Wait.
	StallTimeout time.Duration
	// Wait, if positive, asks a Petrel peer that has not begun to write
	// the blob to wait up to this long for it to begin before answering
	// 404 (HeaderBlobWait; peers cap it at MaxBlobWait). Use it for a peer
	// expected to be fetching the blob at the same moment, such as the
	// designated seeder of a blob every node starts fetching at once.
	Wait time.Duration
}

// label returns the name used in reports.
func (src Source) label() string {
	if src.Name != "" {
		return src.Name
	}
	return src.URL
}

// BlobURL returns the URL of digest at this source, checking digest and
// the URL.
func (src Source) BlobURL(digest string) (string, error) {
	hex, err := ParseDigest(digest)
	if err != nil {
		return "", err
	}
	var raw string
	if strings.Contains(src.URL, "{digest}") || strings.Contains(src.URL, "{hex}") {
		raw = strings.NewReplacer("{digest}", digest, "{hex}", hex).Replace(src.URL)
	} else {
		raw = strings.TrimRight(src.URL, "/") + BlobPathPrefix + digest
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("source %s: invalid URL: %w", quoteShort(src.label()), err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("source %s: URL %s: want an absolute http or https URL", quoteShort(src.label()), quoteShort(raw))
	}
	return raw, nil
}

// FetchReport accounts for one Fetch: which sources were asked for what,
// and what each sent. Callers that shared a download (single-flight) get
// the same report, describing that download.
type FetchReport struct {
	Digest string
	// Present: the blob was already committed; nothing was downloaded.
	Present bool
	// Joined: this call joined a download another Fetch had started.
	Joined bool
	// Size of the blob, once committed.
	Size int64
	// Attempts in the order they were made.
	Attempts []Attempt
	// Restarts counts the times every byte held was discarded (the blob
	// did not verify) and the download started again from zero.
	Restarts int
}

// Attempt is one request to one source.
type Attempt struct {
	Source string // Source.Name, or its URL
	URL    string // the blob URL requested
	Offset int64  // first byte asked for (Range: bytes=Offset-); 0: no Range
	Status int    // HTTP status; 0 if no response arrived
	// Bytes is the body bytes received from the source: its egress for
	// this attempt, including bytes later discarded.
	Bytes int64
	// Discarded: the bytes kept from this attempt were thrown away
	// because the blob did not verify.
	Discarded bool
	// Err says why the attempt did not deliver what was asked for, or why
	// its bytes were discarded; nil for a clean attempt.
	Err error
}

// BytesFrom sums the bytes received from the named source (see
// Source.Name) over all attempts: that source's egress for this fetch.
func (r *FetchReport) BytesFrom(source string) int64 {
	var n int64
	for _, a := range r.Attempts {
		if a.Source == source {
			n += a.Bytes
		}
	}
	return n
}

// BytesReceived sums the bytes received from all sources.
func (r *FetchReport) BytesReceived() int64 {
	var n int64
	for _, a := range r.Attempts {
		n += a.Bytes
	}
	return n
}

// flight is the single-flight state of a Fetch download.
type flight struct {
	cancel  context.CancelFunc // stops the download
	waiters int                // Fetch calls waiting; guarded by Store.mu
	// done is closed when the download goroutine has finished: after the
	// commit's directory sync, or after a failure's cleanup.
	done chan struct{}
	// err is the download's outcome, set before done is closed. It can
	// be non-nil for a committed blob whose directory sync failed.
	err error

	mu     sync.Mutex
	report FetchReport
}

func (f *flight) addAttempt(a Attempt) {
	f.mu.Lock()
	f.report.Attempts = append(f.report.Attempts, a)
	f.mu.Unlock()
}

// snapshot copies the report, so that each caller owns its copy.
func (f *flight) snapshot() FetchReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.report
	r.Attempts = append([]Attempt(nil), r.Attempts...)
	return r
}

// Fetch makes sure the blob is in the store, downloading it from sources
// if needed. size is the expected size, or -1 if unknown (then the first
// source's headers tell it). It returns when the blob is committed, the
// download failed, or ctx ends.
//
// Sources are tried in order, each once (list one twice to allow a
// retry). Each attempt asks for the bytes from the offset already held
// (Range: bytes=N-), so a source that fails mid-way (an error, a
// truncated body, a stall) is abandoned but its bytes are kept, and the
// next source resumes where it stopped. When the blob is complete it is
// hashed; if it does not match, every byte is discarded and the download
// restarts from zero with the next source, whether the bytes came from
// the last source alone (which is then known to be bad) or from several
// (which cannot be told apart, since a digest covers only the whole
// blob). Responses that contradict the request (a wrong Content-Range, a
// size other than expected) are attributed to their source at once. A
// blob that does not verify is never committed.
//
// Single-flight: concurrent Fetch calls for one digest share one
// download, started by the first with its sources (later callers' sources
// are not used). Each caller returns when the download ends or when its
// own ctx ends; the download goes on while at least one caller waits, and
// is cancelled when the last one leaves. While it runs, Handler serves
// the blob as it grows, so peers can fetch it from here at the same time.
// If the blob is already present Fetch returns at once with
// FetchReport.Present; if a Put is writing it, Fetch waits for that.
func (s *Store) Fetch(ctx context.Context, digest string, size int64, sources []Source) (FetchReport, error) {
	rep := FetchReport{Digest: digest}
	hex, err := ParseDigest(digest)
	if err != nil {
		return rep, err
	}
	if size < -1 {
		return rep, fmt.Errorf("fetch %s: invalid size %d", digest, size)
	}
	for {
		if size, ok := s.Size(digest); ok {
			rep.Present, rep.Size = true, size
			return rep, nil
		}
		if len(sources) == 0 {
			return rep, fmt.Errorf("fetch %s: %w: no sources", digest, ErrFetchFailed)
		}
		for _, src := range sources {
			if _, err := src.BlobURL(digest); err != nil {
				return rep, fmt.Errorf("fetch %s: %w", digest, err)
			}
		}
		// The download outlives the caller's cancellation (it may be
		// shared), but keeps its values.
		dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		fl := &flight{cancel: cancel, done: make(chan struct{}), report: FetchReport{Digest: digest}}
		d, other, err := s.begin(hex, size, fl)
		if d == nil {
			cancel()
		}
		switch {
		case err != nil:
			return rep, fmt.Errorf("fetch %s: %w", digest, err)
		case other != nil && other.flight != nil:
			return s.await(ctx, other, true)
		case other != nil: // a Put is writing it
			select {
			case <-other.done:
				continue
			case <-ctx.Done():
				return rep, fmt.Errorf("fetch %s: %w", digest, ctx.Err())
			}
		case d == nil:
			continue // committed meanwhile
		}
		go s.runFetch(dctx, d, append([]Source(nil), sources...))
		return s.await(ctx, d, false)
	}
}

// await waits for a Fetch download on behalf of one caller.
func (s *Store) await(ctx context.Context, d *download, joined bool) (FetchReport, error) {
	select {
	case <-d.flight.done:
	case <-ctx.Done():
		if s.leave(d) {
			rep := d.flight.snapshot()
			rep.Joined = joined
			return rep, fmt.Errorf("fetch %s%s: %w", DigestPrefix, d.hex, ctx.Err())
		}
		<-d.flight.done // it finished as we gave up: report the outcome
	}
	rep := d.flight.snapshot()
	rep.Joined = joined
	if d.result() == nil {
		d.mu.Lock()
		rep.Size = d.size
		d.mu.Unlock()
	}
	return rep, d.flight.err
}

// leave removes a waiter from a Fetch download, cancelling the download
// when none is left. It reports false if the download already finished.
// A cancelled download is detached from the store at once, so that a new
// Fetch starts afresh instead of joining one that is stopping.
func (s *Store) leave(d *download) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d.mu.Lock()
	finished := d.state != dlWriting
	d.mu.Unlock()
	if finished {
		return false
	}
	d.flight.waiters--
	if d.flight.waiters == 0 {
		d.flight.cancel()
		if s.downloads[d.hex] == d {
			delete(s.downloads, d.hex)
		}
	}
	return true
}

// runFetch is the goroutine of a Fetch download.
func (s *Store) runFetch(ctx context.Context, d *download, sources []Source) {
	defer close(d.flight.done)
	defer d.flight.cancel()
	err := s.fetchInto(ctx, d, sources)
	if err != nil {
		s.fail(d, err)
	}
	d.flight.err = err
}

// outcome is how an attempt ended.
type outcome int

const (
	outFailed   outcome = iota // abandon the source; keep its bytes
	outMore                    // clean partial response: ask the same source again
	outComplete                // the source sent everything up to the end
	outFatal                   // stop the fetch (local error or cancellation)
)

// fetchInto runs the download loop described at Fetch, committing on
// success.
func (s *Store) fetchInto(ctx context.Context, d *download, sources []Source) error {
	digest := DigestPrefix + d.hex
	var errs []error
	since := 0 // first attempt since the last restart
	i := 0
	for {
		if d.size >= 0 && d.written == d.size {
			err := s.commit(d)
			if err == nil {
				return nil
			}
			if !errors.Is(err, ErrDigestMismatch) {
				return err
			}
			errs = append(errs, s.discard(d, since, err))
			since = len(d.flight.snapshot().Attempts)
			if err := s.restart(d); err != nil {
				return err
			}
			if d.size == 0 {
				return fmt.Errorf("%s: %w: expected size 0, which cannot have this digest", digest, ErrDigestMismatch)
			}
		}
		if i >= len(sources) {
			return fmt.Errorf("%w: %s: no source left: %w", ErrFetchFailed, digest, errors.Join(errs...))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		out, err := s.attempt(ctx, d, digest, sources[i])
		switch out {
		case outFatal:
			return err
		case outFailed:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs = append(errs, fmt.Errorf("%s: %w", sources[i].label(), err))
			i++
		case outComplete:
			i++
		case outMore:
		}
	}
}

// discard marks the attempts since the last restart as discarded after a
// digest mismatch, attributing it if one source sent all the bytes, and
// returns the error to report.
func (s *Store) discard(d *download, since int, mismatch error) error {
	f := d.flight
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for i := since; i < len(f.report.Attempts); i++ {
		a := &f.report.Attempts[i]
		a.Discarded = true
		if a.Bytes > 0 && !contains(names, a.Source) {
			names = append(names, a.Source)
		}
	}
	var err error
	if len(names) == 1 {
		err = fmt.Errorf("%s sent the wrong bytes: %w", names[0], mismatch)
	} else {
		err = fmt.Errorf("bytes from %s do not verify, and which source was wrong cannot be told: %w", strings.Join(names, ", "), mismatch)
	}
	if n := len(f.report.Attempts); n > since {
		last := &f.report.Attempts[n-1]
		last.Err = errors.Join(last.Err, err)
	}
	f.report.Restarts++
	return err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// attempt makes one request to src for the bytes from d.written on and
// writes what arrives. The Attempt is recorded in the flight's report.
func (s *Store) attempt(ctx context.Context, d *download, digest string, src Source) (out outcome, err error) {
	u, _ := src.BlobURL(digest) // checked by Fetch
	a := Attempt{Source: src.label(), URL: u, Offset: d.written}
	defer func() {
		if out != outComplete && out != outMore {
			a.Err = err
		}
		d.flight.addAttempt(a)
	}()

	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := src.StallTimeout
	if stall == 0 {
		stall = DefaultStallTimeout
	}
	progress := func() {}
	if stall > 0 {
		t := time.AfterFunc(stall, func() { cancel(errStalled) })
		defer t.Stop()
		progress = func() { t.Reset(stall) }
	}
	// Turn a cancelled-attempt error into its cause (the stall).
	failed := func(err error) (outcome, error) {
		if c := context.Cause(actx); errors.Is(c, errStalled) {
			return outFailed, fmt.Errorf("%w (nothing for %v): %w", errStalled, stall, err)
		}
		return outFailed, err
	}

	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return outFailed, err
	}
	// No transparent compression: Content-Length and ranges must count
	// the blob's own bytes.
	req.Header.Set("Accept-Encoding", "identity")
	if src.Wait > 0 {
		req.Header.Set(HeaderBlobWait, strconv.FormatInt(max(1, src.Wait.Milliseconds()), 10))
	}
	off := d.written
	if off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
	}
	client := src.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return failed(err)
	}
	defer resp.Body.Close()
	progress()
	a.Status = resp.StatusCode

	// What does this response hold? total: the blob's size per the
	// source (-1 unknown); skip: bytes before off to drop (a 200 to a
	// range request).
	total, skip := int64(-1), int64(0)
	switch resp.StatusCode {
	case http.StatusOK:
		total, skip = resp.ContentLength, off
	case http.StatusPartialContent:
		first, last, complete, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return outFailed, err
		}
		if first != off {
			return outFailed, fmt.Errorf("asked for bytes from %d, got a range from %d", off, first)
		}
		if complete < 0 {
			return outFailed, errors.New("Content-Range without the blob's size is not supported")
		}
		if resp.ContentLength >= 0 && resp.ContentLength != last-first+1 {
			return outFailed, fmt.Errorf("Content-Length %d does not match Content-Range %d-%d", resp.ContentLength, first, last)
		}
		total = complete
	default:
		return outFailed, statusError(resp)
	}
	if total >= 0 {
		switch {
		case d.size >= 0 && total != d.size:
			return outFailed, fmt.Errorf("%w: the source has %d bytes, expected %d", ErrDigestMismatch, total, d.size)
		case d.size < 0:
			if err := s.setSize(d, total); err != nil {
				return outFatal, err
			}
		}
	}

	buf := make([]byte, copyBufSize)
	for skip > 0 {
		n, rerr := resp.Body.Read(buf[:min(skip, int64(len(buf)))])
		a.Bytes += int64(n)
		skip -= int64(n)
		if n > 0 {
			progress()
		}
		if rerr == io.EOF && skip > 0 {
			return failed(fmt.Errorf("body ended before offset %d: %w", off, io.ErrUnexpectedEOF))
		}
		if rerr != nil && rerr != io.EOF {
			return failed(rerr)
		}
	}
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			progress()
			a.Bytes += int64(n)
			p := buf[:n]
			long := d.size >= 0 && d.written+int64(n) > d.size
			if long {
				p = p[:d.size-d.written]
			}
			if err := s.write(d, p); err != nil {
				return outFatal, err
			}
			if long {
				return outFailed, fmt.Errorf("%w: the source sent more than the blob's %d bytes", ErrDigestMismatch, d.size)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return outFatal, ctx.Err()
			}
			return failed(fmt.Errorf("body cut at byte %d: %w", d.written, rerr))
		}
	}
	switch {
	case d.size >= 0 && d.written == d.size:
		return outComplete, nil
	case d.size < 0:
		// A body of unknown length ended cleanly (HTTP framing tells a
		// clean end from a cut): that was the blob.
		if err := s.setSize(d, d.written); err != nil {
			return outFatal, err
		}
		return outComplete, nil
	case resp.StatusCode == http.StatusPartialContent && d.written-off >= minRangePiece:
		return outMore, nil // a source that sends ranges in pieces
	case resp.StatusCode == http.StatusPartialContent:
		return outFailed, fmt.Errorf("a range response of %d bytes, stopping short of the end: pieces under %d bytes are not worth a request each", d.written-off, minRangePiece)
	}
	return outFailed, fmt.Errorf("body ended at byte %d of %d: %w", d.written, d.size, io.ErrUnexpectedEOF)
}

// statusError describes an unexpected response, with the message of a
// JSON error body if there is one.
func statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if msg == "" {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, quoteShort(msg))
}

// parseContentRange parses a Content-Range response header for a byte
// range, "bytes first-last/complete" (RFC 9110 §14.4), with complete -1
// for "*". The unit is case-insensitive; numbers are decimal digits only.
// An unsatisfied-range ("bytes */N") is an error: it comes with a 416,
// not with content.
func parseContentRange(s string) (first, last, complete int64, err error) {
	bad := func(why string) (int64, int64, int64, error) {
		return 0, 0, 0, fmt.Errorf("bad Content-Range %s: %s", quoteShort(s), why)
	}
	unit, rest, ok := strings.Cut(textproto.TrimString(s), " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return bad(`want "bytes first-last/size"`)
	}
	rng, size, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no size")
	}
	f, l, ok := strings.Cut(rng, "-")
	if !ok {
		return bad("no range")
	}
	if first, ok = parseDecimal(f); !ok {
		return bad("first byte is not a number")
	}
	if last, ok = parseDecimal(l); !ok {
		return bad("last byte is not a number")
	}
	if last < first {
		return bad("last byte before first")
	}
	if size == "*" {
		return first, last, -1, nil
	}
	if complete, ok = parseDecimal(size); !ok {
		return bad("size is not a number")
	}
	if last >= complete {
		return bad("range beyond the size")
	}
	return first, last, complete, nil
}
