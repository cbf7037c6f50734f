package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseRange checks parseRange's invariants and compares it with
// net/http's ServeContent on the headers where both follow the same rules
// (the differences are deliberate: see parseRange).
func FuzzParseRange(f *testing.F) {
	for _, h := range []string{"", "bytes=0-9", "bytes=5-", "bytes=-3", "bytes=-0", "bytes=9-1",
		"bytes=0-1,2-3", "items=1-2", "bytes= 1 - 2 ", "bytes=+1-2", "bytes=99999999999999999999-"} {
		f.Add(h, int64(10))
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		if size < 0 {
			size = -size
		}
		if size < 0 { // MinInt64
			size = 0
		}
		start, end, res := parseRange(header, size)
		switch res {
		case rangeSatisfiable:
			if start < 0 || start > end || end >= size {
				t.Fatalf("parseRange(%q, %d) = [%d, %d]: out of bounds", header, size, start, end)
			}
		case rangeIgnored, rangeUnsatisfiable, rangeMalformed:
			if start != 0 || end != 0 {
				t.Fatalf("parseRange(%q, %d) = %d, %d with result %d", header, size, start, end, res)
			}
		default:
			t.Fatalf("parseRange(%q, %d): result %d", header, size, res)
		}
		st, length, status, _ := rangeRequest(header, size)
		switch status {
		case http.StatusOK:
			if st != 0 || length != size {
				t.Fatalf("200 with [%d, +%d)", st, length)
			}
		case http.StatusPartialContent:
			if length <= 0 || st+length > size {
				t.Fatalf("206 with [%d, +%d) of %d", st, length, size)
			}
		}

		// Differential check against net/http, on a small blob.
		if size > 1<<16 || !comparableWithNetHTTP(header, size) {
			return
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Range", header)
		http.ServeContent(rec, req, "", time.Time{}, bytes.NewReader(make([]byte, size)))
		switch {
		case res == rangeSatisfiable:
			want := fmt.Sprintf("bytes %d-%d/%d", start, end, size)
			if rec.Code != 206 || rec.Header().Get("Content-Range") != want {
				t.Fatalf("Range %q, size %d: we send %s, net/http %d %q", header, size, want, rec.Code, rec.Header().Get("Content-Range"))
			}
		case res == rangeIgnored:
			if rec.Code != 200 {
				t.Fatalf("Range %q, size %d: we ignore it, net/http answers %d", header, size, rec.Code)
			}
		default:
			if rec.Code != 416 {
				t.Fatalf("Range %q, size %d: we answer 416, net/http %d", header, size, rec.Code)
			}
		}
	})
}

// comparableWithNetHTTP reports whether parseRange and net/http follow the
// same rules for this header. Where they differ, parseRange follows RFC
// 9110: other units are ignored rather than rejected, a zero suffix is
// unsatisfiable, signs are not digits; and it ignores multiple ranges
// rather than answering multipart, and treats an empty range set as
// malformed. net/http also accepts a header whose "bytes=" prefix has
// other case or spacing only as malformed.
func comparableWithNetHTTP(header string, size int64) bool {
	set, ok := strings.CutPrefix(header, "bytes=")
	if !ok || size == 0 || strings.ContainsAny(set, ",+") || strings.TrimSpace(set) == "" {
		return false
	}
	// A zero suffix: "-0", "- 00", ...
	if first, last, ok := strings.Cut(strings.Trim(set, " \t\r\n"), "-"); ok && strings.Trim(first, " \t\r\n") == "" {
		if n, err := strconv.ParseInt(strings.Trim(last, " \t\r\n"), 10, 64); err == nil && n == 0 {
			return false
		}
	}
	return true
}

// FuzzParseContentRange checks the response-header parser: accepted
// values are consistent and survive formatting and parsing again.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 1-2/*", "bytes */10", "bytes 9-1/10", "BYTES 0-0/1", "bytes 0-9/9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first, last, complete, err := parseContentRange(s)
		if err != nil {
			if len(err.Error()) > 600 { // quoteShort: at most 100 input bytes, 4 bytes each quoted
				t.Fatalf("error message of %d bytes", len(err.Error()))
			}
			return
		}
		if first < 0 || last < first || (complete >= 0 && last >= complete) || complete < -1 {
			t.Fatalf("parseContentRange(%q) = %d, %d, %d", s, first, last, complete)
		}
		again := fmt.Sprintf("bytes %d-%d/%d", first, last, complete)
		if complete < 0 {
			again = fmt.Sprintf("bytes %d-%d/*", first, last)
		}
		f2, l2, c2, err := parseContentRange(again)
		if err != nil || f2 != first || l2 != last || c2 != complete {
			t.Fatalf("round trip of %q via %q: %d %d %d %v", s, again, f2, l2, c2, err)
		}
	})
}

// FuzzHandler sends arbitrary paths and headers to the handler of a store
// holding one blob, and checks every response against the blob.
func FuzzHandler(f *testing.F) {
	data, digest := blobOf(400, 1000)
	s := newStore(f, 0)
	put(f, s, data)
	h := s.Handler()
	etag := `"` + digest + `"`
	_, absent := blobOf(402, 10)
	f.Add("GET", BlobPathPrefix+digest, "", "", "", "")
	f.Add("HEAD", BlobPathPrefix+digest, "bytes=1-5", "", "", "")
	f.Add("GET", BlobPathPrefix+digest, "bytes=-7", etag, "", "")
	f.Add("GET", BlobPathPrefix+digest, "bytes=7-", `"x"`, "", "")
	f.Add("GET", BlobPathPrefix+digest, "", "", "W/"+etag, "")
	f.Add("GET", BlobPathPrefix+"sha256:../../etc/passwd", "", "", "", "")
	f.Add("POST", BlobPathPrefix+digest, "", "", "", "")
	f.Add("GET", "/elsewhere", "", "", "", "")
	f.Add("GET", BlobPathPrefix+absent, "", "", "", "5")
	f.Add("GET", BlobPathPrefix+digest, "", "", "", "1x")
	f.Fuzz(func(t *testing.T, method, path, rng, ifRange, ifNoneMatch, wait string) {
		// A wait for an absent blob ends with the request's context.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, "GET", "/", nil)
		req.Method = method
		req.URL.Path = path
		for k, v := range map[string]string{"Range": rng, "If-Range": ifRange, "If-None-Match": ifNoneMatch, HeaderBlobWait: wait} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		hdr := rec.Header()
		head := method == "HEAD"
		switch rec.Code {
		case 200, 206:
			if method != "GET" && method != "HEAD" || path != BlobPathPrefix+digest {
				t.Fatalf("%s %q: %d", method, path, rec.Code)
			}
			first, last := int64(0), int64(len(data)-1)
			if rec.Code == 206 {
				var total int64
				if _, err := fmt.Sscanf(hdr.Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &total); err != nil || total != int64(len(data)) {
					t.Fatalf("Content-Range %q", hdr.Get("Content-Range"))
				}
			}
			if first < 0 || last >= int64(len(data)) || first > last {
				t.Fatalf("range [%d, %d]", first, last)
			}
			want := data[first : last+1]
			if hdr.Get("Content-Length") != strconv.Itoa(len(want)) {
				t.Fatalf("Content-Length %q, want %d", hdr.Get("Content-Length"), len(want))
			}
			if head {
				want = nil
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("body of %d bytes, want %d", len(body), len(want))
			}
		case 304:
			if len(body) != 0 || ifNoneMatch == "" {
				t.Fatalf("304 with body %q / no If-None-Match", body)
			}
		case 400, 404, 405, 416, 503:
			if rec.Code == 503 && ctx.Err() == nil {
				t.Fatal("503 while the client is still there")
			}
			if hdr.Get("Content-Type") != "application/json" {
				t.Fatalf("%d with Content-Type %q", rec.Code, hdr.Get("Content-Type"))
			}
			if !head {
				errorMessage(t, body)
			}
		default:
			t.Fatalf("%s %q: status %d", method, path, rec.Code)
		}
		if !s.Has(digest) {
			t.Fatal("blob gone")
		}
	})
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzFetchResponse feeds the fetcher arbitrary responses from a first
// source (status, Content-Range, Content-Length, body), with a correct
// second source behind it. A blob is committed only with the right bytes,
// and nothing is left behind either way.
func FuzzFetchResponse(f *testing.F) {
	data, digest := blobOf(401, 300)
	good := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		http.ServeContent(rec, r, "", time.Time{}, bytes.NewReader(data))
		return rec.Result(), nil
	})}
	f.Add(200, "", "300", data, false)
	f.Add(206, "bytes 0-99/300", "100", data[:100], false)
	f.Add(206, "bytes 0-99/*", "", data[:100], true)
	f.Add(200, "", "", append(append([]byte(nil), data...), 1, 2, 3), false)
	f.Add(200, "", "", data[:150], true)
	f.Add(404, "", "", []byte(`{"error":"nope"}`), false)
	f.Add(206, "bytes 0-299/300", "300", bytes.Repeat([]byte{7}, 300), false)
	f.Fuzz(func(t *testing.T, status int, contentRange, contentLength string, body []byte, knownSize bool) {
		if status < 100 || status > 599 {
			return
		}
		bad := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			h := http.Header{}
			if contentRange != "" {
				h.Set("Content-Range", contentRange)
			}
			cl := int64(-1)
			if n, err := strconv.ParseInt(contentLength, 10, 64); err == nil && n >= 0 {
				// A transport enforces Content-Length: cut or mark short.
				cl = n
			}
			var rd io.Reader = bytes.NewReader(body)
			if cl >= 0 && cl < int64(len(body)) {
				rd = io.LimitReader(rd, cl)
			} else if cl > int64(len(body)) {
				rd = io.MultiReader(rd, errReader{io.ErrUnexpectedEOF})
			}
			return &http.Response{StatusCode: status, Header: h, ContentLength: cl, Body: io.NopCloser(rd), Request: r}, nil
		})}
		s := newStore(t, 0)
		size := int64(-1)
		if knownSize {
			size = int64(len(data))
		}
		_, err := s.Fetch(context.Background(), digest, size, []Source{
			{Name: "fuzzed", URL: "http://127.0.0.1:1", Client: bad},
			{Name: "good", URL: "http://127.0.0.1:2", Client: good},
		})
		if err == nil {
			got, rerr := s.ReadAll(digest)
			if rerr != nil || !bytes.Equal(got, data) {
				t.Fatalf("committed wrong bytes: %v", rerr)
			}
		} else {
			if !errors.Is(err, ErrFetchFailed) {
				t.Fatalf("error not wrapping ErrFetchFailed: %v", err)
			}
			if s.Has(digest) {
				t.Fatal("failed fetch committed the blob")
			}
		}
		if tf := tempFiles(t, s); len(tf) != 0 {
			t.Fatalf("temp files left: %v", tf)
		}
		if st := s.Stats(); st.Reserved != 0 || st.InProgress != 0 {
			t.Fatalf("accounting %+v", st)
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
