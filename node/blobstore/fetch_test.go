package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve starts an HTTP server on 127.0.0.1 for h.
func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// checkBlob asserts the store holds exactly data under digest.
func checkBlob(t *testing.T, s *Store, digest string, data []byte) {
	t.Helper()
	got, err := s.ReadAll(digest)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob: %d bytes, %v", len(got), err)
	}
	if tf := tempFiles(t, s); len(tf) != 0 {
		t.Fatalf("temp files left: %v", tf)
	}
}

func TestFetchFromPeer(t *testing.T) {
	data, digest := blobOf(300, 700_000)
	peer := newStore(t, 0)
	put(t, peer, data)
	psrv := serve(t, peer.Handler())

	s := newStore(t, 0)
	rep, err := s.Fetch(context.Background(), digest, int64(len(data)), []Source{{Name: "peer", URL: psrv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, digest, data)
	if rep.Present || rep.Joined || rep.Size != int64(len(data)) || len(rep.Attempts) != 1 || rep.Restarts != 0 {
		t.Fatalf("report %+v", rep)
	}
	a := rep.Attempts[0]
	if a.Source != "peer" || a.Status != 200 || a.Bytes != int64(len(data)) || a.Offset != 0 || a.Err != nil ||
		a.URL != psrv.URL+"/v1/blobs/"+digest {
		t.Fatalf("attempt %+v", a)
	}
	// Present now: no request at all.
	rep, err = s.Fetch(context.Background(), digest, -1, []Source{{URL: "http://127.0.0.1:1"}})
	if err != nil || !rep.Present || len(rep.Attempts) != 0 || rep.Size != int64(len(data)) {
		t.Fatalf("second fetch: %+v, %v", rep, err)
	}
}

func TestFetchUnknownSizeAndTemplate(t *testing.T) {
	data, digest := blobOf(301, 100_000)
	o := newOrigin(data)
	var paths []string
	var mu sync.Mutex
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		o.ServeHTTP(w, r)
	}))
	s := newStore(t, 0)
	rep, err := s.Fetch(context.Background(), digest, -1, []Source{{Name: "origin", URL: srv.URL + "/artifacts/{hex}.onnx"}})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, digest, data)
	if rep.BytesFrom("origin") != int64(len(data)) {
		t.Fatalf("report %+v", rep)
	}
	hex := strings.TrimPrefix(digest, DigestPrefix)
	if len(paths) != 1 || paths[0] != "/artifacts/"+hex+".onnx" {
		t.Fatalf("paths %v", paths)
	}
}

func TestFetchFallsThroughNotFound(t *testing.T) {
	data, digest := blobOf(302, 300_000)
	missing := newOrigin(data)
	missing.notFound = true
	good := newOrigin(data)
	msrv, gsrv := serve(t, missing), serve(t, good)
	s := newStore(t, 0)
	rep, err := s.Fetch(context.Background(), digest, int64(len(data)), []Source{
		{Name: "missing", URL: msrv.URL}, {Name: "good", URL: gsrv.URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, digest, data)
	if len(rep.Attempts) != 2 {
		t.Fatalf("attempts %+v", rep.Attempts)
	}
	a0, a1 := rep.Attempts[0], rep.Attempts[1]
	if a0.Source != "missing" || a0.Status != 404 || a0.Bytes != 0 || a0.Err == nil || !strings.Contains(a0.Err.Error(), "no such blob") {
		t.Fatalf("404 attempt %+v", a0)
	}
	if a1.Source != "good" || a1.Status != 200 || a1.Bytes != int64(len(data)) || a1.Err != nil {
		t.Fatalf("good attempt %+v", a1)
	}
	if got := good.log(); len(got) != 1 || got[0] != "" {
		t.Fatalf("good source's Range log %q", got)
	}
}

func TestFetchAbandonsCorruptSource(t *testing.T) {
	data, digest := blobOf(303, 300_000)
	bad := newOrigin(data)
	bad.corruptAt = 123_456
	good := newOrigin(data)
	bsrv, gsrv := serve(t, bad), serve(t, good)
	s := newStore(t, 0)
	rep, err := s.Fetch(context.Background(), digest, int64(len(data)), []Source{
		{Name: "bad", URL: bsrv.URL}, {Name: "good", URL: gsrv.URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, digest, data)
	if rep.Restarts != 1 || len(rep.Attempts) != 2 {
		t.Fatalf("report %+v", rep)
	}
	a0, a1 := rep.Attempts[0], rep.Attempts[1]
	if !a0.Discarded || !errors.Is(a0.Err, ErrDigestMismatch) || !strings.Contains(a0.Err.Error(), "bad sent the wrong bytes") {
		t.Fatalf("corrupt attempt %+v", a0)
	}
	// The good source starts from zero: no Range.
	if a1.Offset != 0 || a1.Discarded || a1.Bytes != int64(len(data)) {
		t.Fatalf("good attempt %+v", a1)
	}
	if got := good.log(); len(got) != 1 || got[0] != "" {
		t.Fatalf("good source's Range log %q", got)
	}
}

func TestFetchResumesAfterTruncation(t *testing.T) {
	const cut = 100_000
	data, digest := blobOf(304, 300_000)
	trunc := newOrigin(data)
	trunc.truncateAt = cut
	good := newOrigin(data)
	tsrv, gsrv := serve(t, trunc), serve(t, good)
	s := newStore(t, 0)
	rep, err := s.Fetch(context.Background(), digest, int64(len(data)), []Source{
		{Name: "trunc", URL: tsrv.URL}, {Name: "good", URL: gsrv.URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, digest, data)
	if got := good.log(); len(got) != 1 || got[0] != fmt.Sprintf("bytes=%d-", cut) {
		t.Fatalf("good source's Range log %q, want [bytes=%d-]", got, cut)
	}
	if rep.BytesFrom("trunc") != cut || rep.BytesFrom("good") != int64(len(data))-cut || rep.Restarts != 0 {
		t.Fatalf("report %+v", rep)
	}
	a0, a1 := rep.Attempts[0], rep.Attempts[1]
	if a0.Err == nil || a0.Discarded || a1.Offset != cut || a1.Status != 206 || a1.Err != nil {
		t.Fatalf("attempts %+v", rep.Attempts)
	}
	if good.served() != int64(len(data))-cut {
		t.Fatalf("good served %d", good.served())
	}
}

// Listing a source twice allows a retry, which resumes too.
func TestFetchRetrySameSourceResumes(t *testing.T) {
	data, digest := blobOf(305, 300_000)
	o := newOrigin(data)
	o.truncateAt, o.truncateN = 64_000, 1 // only the first response is cut
	srv := serve(t, o)
	src := Source{Name: "origin", URL: srv.URL}
	s := newStore(t, 0)
	rep, err := s.Fetch(context.Background(), digest, -1, []Source{src, src})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, digest, data)
	if got := o.log(); !slices.Equal(got, []string{"", "bytes=64000-"}) {
		t.Fatalf("Range log %q", got)
	}
	if o.served() != int64(len(data)) || rep.BytesFrom("origin") != int64(len(data)) {
		t.Fatalf("served %d, report %+v", o.served(), rep)
	}
}

// Bytes from two sources that do not verify cannot be attributed: all are
// discarded and the next source starts from zero.
func TestFetchUnattributableMismatchRestartsFromZero(t *testing.T) {
	const cut = 50_000
	data, digest := blobOf(306, 200_000)
	trunc := newOrigin(data)
	trunc.truncateAt = cut
	bad := newOrigin(data)
	bad.corruptAt = 150_000 // in the part it will send
	good := newOrigin(data)
	tsrv, bsrv, gsrv := serve(t, trunc), serve(t, bad), serve(t, good)
	s := newStore(t, 0)
	rep, err := s.Fetch(context.Background(), digest, int64(len(data)), []Source{
		{Name: "trunc", URL: tsrv.URL}, {Name: "bad", URL: bsrv.URL}, {Name: "good", URL: gsrv.URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, digest, data)
	if got := bad.log(); !slices.Equal(got, []string{fmt.Sprintf("bytes=%d-", cut)}) {
		t.Fatalf("bad's Range log %q", got)
	}
	if got := good.log(); !slices.Equal(got, []string{""}) {
		t.Fatalf("good's Range log %q (want a restart from zero)", got)
	}
	if rep.Restarts != 1 || !rep.Attempts[0].Discarded || !rep.Attempts[1].Discarded || rep.Attempts[2].Discarded {
		t.Fatalf("report %+v", rep)
	}
	if e := rep.Attempts[1].Err; !errors.Is(e, ErrDigestMismatch) || !strings.Contains(e.Error(), "cannot be told") {
		t.Fatalf("mismatch error %v", e)
	}
}

func TestFetchAllSourcesFail(t *testing.T) {
	data, digest := blobOf(307, 100_000)
	missing := newOrigin(data)
	missing.notFound = true
	bad := newOrigin(data)
	bad.corruptAt = 5
	trunc := newOrigin(data)
	trunc.truncateAt = 10_000
	s := newStore(t, 0)
	rep, err := s.Fetch(context.Background(), digest, int64(len(data)), []Source{
		{Name: "missing", URL: serve(t, missing).URL},
		{Name: "bad", URL: serve(t, bad).URL},
		{Name: "trunc", URL: serve(t, trunc).URL},
		{Name: "closed", URL: "http://127.0.0.1:1"},
	})
	if !errors.Is(err, ErrFetchFailed) {
		t.Fatalf("err = %v, want ErrFetchFailed", err)
	}
	for _, want := range []string{"missing", "bad sent the wrong bytes", "trunc", "closed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if s.Has(digest) || len(tempFiles(t, s)) != 0 || s.Stats().Reserved != 0 || s.Stats().InProgress != 0 {
		t.Fatal("failed fetch left something behind")
	}
	if len(rep.Attempts) != 4 || rep.Restarts != 1 {
		t.Fatalf("report %+v", rep)
	}
}

// A source that claims another size, or answers a range with the wrong
// one, is abandoned without its bytes being used.
func TestFetchRejectsInconsistentResponses(t *testing.T) {
	data, digest := blobOf(308, 50_000)
	good := newOrigin(data)
	gsrv := serve(t, good)
	wrongSize := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "40000")
		w.Write(data[:40_000])
	}))
	wrongRange := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-49999/50000")
		w.WriteHeader(206)
		w.Write(data)
	}))
	s := newStore(t, 0)
	rep, err := s.Fetch(context.Background(), digest, int64(len(data)), []Source{
		{Name: "trunc", URL: serve(t, func() http.Handler { o := newOrigin(data); o.truncateAt = 1000; return o }()).URL},
		{Name: "wrong-size", URL: wrongSize.URL},
		{Name: "wrong-range", URL: wrongRange.URL},
		{Name: "good", URL: gsrv.URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, digest, data)
	if e := rep.Attempts[1].Err; e == nil || !strings.Contains(e.Error(), "40000 bytes, expected 50000") {
		t.Fatalf("wrong-size attempt %+v", rep.Attempts[1])
	}
	if e := rep.Attempts[2].Err; e == nil || !strings.Contains(e.Error(), "asked for bytes from 1000, got a range from 0") {
		t.Fatalf("wrong-range attempt %+v", rep.Attempts[2])
	}
	if got := good.log(); !slices.Equal(got, []string{"bytes=1000-"}) {
		t.Fatalf("good's Range log %q", got)
	}
}

// A source that ignores Range and answers 200 with the whole blob: the
// bytes already held are skipped.
func TestFetchSourceIgnoringRange(t *testing.T) {
	data, digest := blobOf(309, 80_000)
	trunc := newOrigin(data)
	trunc.truncateAt = 30_000
	noRange := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }))
	s := newStore(t, 0)
	rep, err := s.Fetch(context.Background(), digest, -1, []Source{
		{Name: "trunc", URL: serve(t, trunc).URL}, {Name: "norange", URL: noRange.URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, digest, data)
	if a := rep.Attempts[1]; a.Status != 200 || a.Bytes != int64(len(data)) || a.Offset != 30_000 {
		t.Fatalf("attempt %+v", a)
	}
}

func TestFetchStalledSource(t *testing.T) {
	data, digest := blobOf(310, 200_000)
	stall := newOrigin(data)
	stall.stallAt = 70_000
	defer close(stall.release)
	good := newOrigin(data)
	s := newStore(t, 0)
	rep, err := s.Fetch(context.Background(), digest, int64(len(data)), []Source{
		{Name: "stall", URL: serve(t, stall).URL, StallTimeout: 100 * time.Millisecond},
		{Name: "good", URL: serve(t, good).URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, digest, data)
	if a := rep.Attempts[0]; !errors.Is(a.Err, errStalled) || a.Bytes != 70_000 {
		t.Fatalf("stalled attempt %+v", a)
	}
	if got := good.log(); !slices.Equal(got, []string{"bytes=70000-"}) {
		t.Fatalf("good's Range log %q", got)
	}
}

func TestFetchBadArguments(t *testing.T) {
	s := newStore(t, 0)
	_, digest := blobOf(311, 10)
	ctx := context.Background()
	for _, c := range []struct {
		size    int64
		sources []Source
		want    string
	}{
		{-2, []Source{{URL: "http://127.0.0.1:1"}}, "invalid size"},
		{-1, nil, "no sources"},
		{-1, []Source{{URL: "ftp://127.0.0.1/x"}}, "http or https"},
		{-1, []Source{{URL: "/relative/{digest}"}}, "http or https"},
		{-1, []Source{{URL: "http://127.0.0.1:1"}, {URL: "http://[::1"}}, "invalid URL"},
	} {
		_, err := s.Fetch(ctx, digest, c.size, c.sources)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Fetch(size %d, %v) = %v, want %q", c.size, c.sources, err, c.want)
		}
	}
	if len(tempFiles(t, s)) != 0 || s.Stats().InProgress != 0 {
		t.Fatal("leftovers")
	}
	// A size that the digest cannot have (0 for a non-empty blob).
	data, digest := blobOf(312, 10)
	_, err := s.Fetch(ctx, digest, 0, []Source{{URL: serve(t, newOrigin(data)).URL}})
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("size 0: %v", err)
	}
}

// Twenty concurrent Fetch calls for one digest: one download.
func TestFetchSingleFlight(t *testing.T) {
	data, digest := blobOf(313, 2<<20)
	o := newOrigin(data)
	o.chunk, o.pause = 256<<10, 2*time.Millisecond // keep it in flight a while
	srv := serve(t, o)
	s := newStore(t, 0)
	const callers = 20
	reps := make([]FetchReport, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-start
			reps[i], errs[i] = s.Fetch(context.Background(), digest, int64(len(data)), []Source{{Name: "origin", URL: srv.URL}})
		})
	}
	close(start)
	wg.Wait()
	downloaded, other := 0, 0
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		switch {
		case reps[i].Present:
			other++ // arrived after the commit
		case !reps[i].Joined:
			downloaded++
			fallthrough
		default:
			if reps[i].BytesFrom("origin") != int64(len(data)) {
				t.Fatalf("report %d: %+v", i, reps[i])
			}
		}
	}
	if downloaded != 1 {
		t.Fatalf("%d callers started a download, want 1 (%d found it present)", downloaded, other)
	}
	if got := o.log(); len(got) != 1 || o.served() != int64(len(data)) {
		t.Fatalf("origin: %d requests, %d bytes", len(got), o.served())
	}
	checkBlob(t, s, digest, data)
}

// A caller leaving does not stop a download others wait for; the last one
// leaving does.
func TestFetchCancellation(t *testing.T) {
	data, digest := blobOf(314, 1<<20)
	o := newOrigin(data)
	o.chunk, o.pause = 64<<10, 5*time.Millisecond // about 80 ms in all
	srv := serve(t, o)
	src := []Source{{Name: "origin", URL: srv.URL}}

	t.Run("others keep it going", func(t *testing.T) {
		s := newStore(t, 0)
		ctx1, cancel1 := context.WithCancel(context.Background())
		err1 := make(chan error, 1)
		go func() { _, err := s.Fetch(ctx1, digest, -1, src); err1 <- err }()
		waitFor(t, "download start", func() bool { return s.written(digest) > 0 })
		err2 := make(chan error, 1)
		go func() { _, err := s.Fetch(context.Background(), digest, -1, src); err2 <- err }()
		waitFor(t, "second caller", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			d := s.downloads[strings.TrimPrefix(digest, DigestPrefix)]
			return d != nil && d.flight.waiters == 2
		})
		cancel1()
		if err := <-err1; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled caller: %v", err)
		}
		if err := <-err2; err != nil {
			t.Fatalf("remaining caller: %v", err)
		}
		checkBlob(t, s, digest, data)
	})
	t.Run("last one stops it", func(t *testing.T) {
		s := newStore(t, 0)
		before := len(o.log())
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { _, err := s.Fetch(ctx, digest, -1, src); errc <- err }()
		waitFor(t, "download start", func() bool { return s.written(digest) > 0 })
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
		// The download winds down: temp file gone, nothing committed, and
		// no other source tried.
		waitFor(t, "cleanup", func() bool { return len(tempFiles(t, s)) == 0 })
		if s.Has(digest) || s.Stats().Reserved != 0 || len(o.log()) != before+1 {
			t.Fatalf("after cancel: has %v, stats %+v, requests %d", s.Has(digest), s.Stats(), len(o.log())-before)
		}
		// A new Fetch starts afresh and succeeds.
		if _, err := s.Fetch(context.Background(), digest, -1, src); err != nil {
			t.Fatal(err)
		}
		checkBlob(t, s, digest, data)
	})
}

// Fetch waits for a Put of the same blob rather than downloading it.
func TestFetchWaitsForPut(t *testing.T) {
	data, digest := blobOf(315, 10_000)
	o := newOrigin(data)
	srv := serve(t, o)
	s := newStore(t, 0)
	pr, pw := io.Pipe()
	go s.Put(context.Background(), digest, pr, -1)
	waitFor(t, "put start", func() bool { return s.written(digest) >= 0 })
	done := make(chan FetchReport, 1)
	go func() {
		rep, err := s.Fetch(context.Background(), digest, -1, []Source{{URL: srv.URL}})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	pw.Write(data)
	pw.Close()
	rep := <-done
	if !rep.Present || len(o.log()) != 0 {
		t.Fatalf("report %+v, origin requests %d", rep, len(o.log()))
	}
	checkBlob(t, s, digest, data)
}

// The chain: A fetches a 16 MiB blob from a slow origin; B fetches it from
// A while A is still downloading, and finishes shortly after A. The
// origin serves the bytes once.
func TestFetchChainWhileDownloading(t *testing.T) {
	const size = 16 << 20
	data, digest := blobOf(316, size)
	o := newOrigin(data)
	o.chunk, o.pause = 256<<10, 5*time.Millisecond // 64 chunks: ≥ 320 ms
	osrv := serve(t, o)
	a, b := newStore(t, 0), newStore(t, 0)
	asrv := serve(t, a.Handler())
	originSrc := Source{Name: "origin", URL: osrv.URL}

	type result struct {
		rep FetchReport
		err error
		at  time.Time
	}
	ares := make(chan result, 1)
	var bAtA int64   // B's bytes in progress when A finished (-1: none)
	var bHasAtA bool // B done when A finished
	go func() {
		rep, err := a.Fetch(context.Background(), digest, size, []Source{originSrc})
		at := time.Now()
		bAtA, bHasAtA = b.written(digest), b.Has(digest)
		ares <- result{rep, err, at}
	}()
	waitFor(t, "A's first bytes", func() bool { return a.written(digest) > 0 })
	if a.Has(digest) {
		t.Fatal("A finished before B started: the origin is too fast for this test")
	}
	bres := make(chan result, 1)
	go func() {
		rep, err := b.Fetch(context.Background(), digest, size, []Source{{Name: "A", URL: asrv.URL}, originSrc})
		bres <- result{rep, err, time.Now()}
	}()
	ra, rb := <-ares, <-bres
	if ra.err != nil || rb.err != nil {
		t.Fatalf("A: %v, B: %v", ra.err, rb.err)
	}
	checkBlob(t, a, digest, data)
	checkBlob(t, b, digest, data)
	if rb.rep.BytesFrom("A") != size || rb.rep.BytesFrom("origin") != 0 {
		t.Fatalf("B's report %+v", rb.rep)
	}
	if got := o.log(); len(got) != 1 || o.served() != size {
		t.Fatalf("origin: %d requests, %d bytes; want 1, %d", len(got), o.served(), size)
	}
	// B streamed behind A: it had bytes before A was done, and ends
	// shortly after A (a generous bound: a hang, not a speed test).
	if bAtA <= 0 && !bHasAtA {
		t.Fatalf("B had %d bytes when A finished", bAtA)
	}
	if lag := rb.at.Sub(ra.at); lag > 5*time.Second {
		t.Fatalf("B finished %v after A", lag)
	}
}

// piecewise answers every request with a 206 of at most piece bytes from
// the requested offset, logging the Range headers.
func piecewise(data []byte, piece int, log *[]string, mu *sync.Mutex) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rng := r.Header.Get("Range")
		mu.Lock()
		*log = append(*log, rng)
		mu.Unlock()
		var off int
		if rng != "" {
			fmt.Sscanf(rng, "bytes=%d-", &off)
		}
		end := min(off+piece, len(data))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end-1, len(data)))
		w.Header().Set("Content-Length", fmt.Sprint(end-off))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[off:end])
	})
}

// A source that serves ranges in pieces is asked for the rest, piece by
// piece; one whose pieces are too small to be worth a request each is
// abandoned, and the next source resumes.
func TestFetchRangePieces(t *testing.T) {
	data, digest := blobOf(317, 300_000)
	var mu sync.Mutex
	var bigLog, tinyLog []string
	big := serve(t, piecewise(data, 100_000, &bigLog, &mu))
	s := newStore(t, 0)
	if _, err := s.Fetch(context.Background(), digest, -1, []Source{{URL: big.URL}}); err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, digest, data)
	if !slices.Equal(bigLog, []string{"", "bytes=100000-", "bytes=200000-"}) {
		t.Fatalf("Range log %q", bigLog)
	}

	tiny := serve(t, piecewise(data, 1000, &tinyLog, &mu))
	good := newOrigin(data)
	s = newStore(t, 0)
	rep, err := s.Fetch(context.Background(), digest, -1, []Source{{Name: "tiny", URL: tiny.URL}, {Name: "good", URL: serve(t, good).URL}})
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, digest, data)
	if len(tinyLog) != 1 || !slices.Equal(good.log(), []string{"bytes=1000-"}) || rep.Attempts[0].Err == nil {
		t.Fatalf("tiny log %q, good log %q, report %+v", tinyLog, good.log(), rep)
	}
}

// The empty blob: served with a 200 of length 0 (a Range is ignored, as
// net/http does), fetched with or without a known size.
func TestEmptyBlob(t *testing.T) {
	empty := DigestPrefix + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	peer := newStore(t, 0)
	put(t, peer, nil)
	if !peer.Has(empty) {
		t.Fatal("empty blob not stored under the digest of nothing")
	}
	psrv := serve(t, peer.Handler())
	for _, rng := range []string{"", "bytes=0-", "bytes=-1"} {
		resp, body := get(t, "GET", psrv.URL+BlobPathPrefix+empty, map[string]string{"Range": rng})
		if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != "0" || len(body) != 0 {
			t.Fatalf("Range %q: %d, Content-Length %q, %d bytes", rng, resp.StatusCode, resp.Header.Get("Content-Length"), len(body))
		}
	}
	o := newOrigin(nil)
	for _, size := range []int64{-1, 0} {
		s := newStore(t, 0)
		rep, err := s.Fetch(context.Background(), empty, size, []Source{{Name: "peer", URL: psrv.URL}, {URL: serve(t, o).URL}})
		if err != nil || !s.Has(empty) || rep.Size != 0 {
			t.Fatalf("size %d: %+v, %v", size, rep, err)
		}
		if wantAttempts := map[int64]int{-1: 1, 0: 0}[size]; len(rep.Attempts) != wantAttempts {
			t.Fatalf("size %d: %d attempts, want %d", size, len(rep.Attempts), wantAttempts)
		}
	}
	if len(o.log()) != 0 {
		t.Fatal("origin asked")
	}
}
