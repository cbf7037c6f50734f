package blobstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// get sends a request with headers to srv and returns the response with
// its body read.
func get(t *testing.T, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp, body
}

func TestHandlerRanges(t *testing.T) {
	const n = 1000
	data, digest := blobOf(200, n)
	etag := `"` + digest + `"`
	type want struct {
		status       int
		contentRange string // "" means absent
		first, last  int    // body = data[first:last+1] for 200/206
	}
	full := want{status: 200, first: 0, last: n - 1}
	unsat := want{status: 416, contentRange: "bytes */1000"}
	cases := []struct {
		name   string
		method string
		hdr    map[string]string
		want   want
	}{
		{"no range", "GET", nil, full},
		{"first-last", "GET", map[string]string{"Range": "bytes=0-9"}, want{206, "bytes 0-9/1000", 0, 9}},
		{"first-", "GET", map[string]string{"Range": "bytes=990-"}, want{206, "bytes 990-999/1000", 990, 999}},
		{"suffix", "GET", map[string]string{"Range": "bytes=-10"}, want{206, "bytes 990-999/1000", 990, 999}},
		{"suffix longer than blob", "GET", map[string]string{"Range": "bytes=-5000"}, want{206, "bytes 0-999/1000", 0, 999}},
		{"last clamped", "GET", map[string]string{"Range": "bytes=500-99999"}, want{206, "bytes 500-999/1000", 500, 999}},
		{"one byte", "GET", map[string]string{"Range": "bytes=999-999"}, want{206, "bytes 999-999/1000", 999, 999}},
		{"unit case-insensitive, spaces", "GET", map[string]string{"Range": "Bytes=1 - 2"}, want{206, "bytes 1-2/1000", 1, 2}},
		{"first at end", "GET", map[string]string{"Range": "bytes=1000-"}, unsat},
		{"first past end", "GET", map[string]string{"Range": "bytes=5000-6000"}, unsat},
		{"zero suffix", "GET", map[string]string{"Range": "bytes=-0"}, unsat},
		{"last before first", "GET", map[string]string{"Range": "bytes=5-2"}, unsat},
		{"not a number", "GET", map[string]string{"Range": "bytes=abc"}, unsat},
		{"two dashes", "GET", map[string]string{"Range": "bytes=1-2-3"}, unsat},
		{"signed", "GET", map[string]string{"Range": "bytes=+1-2"}, unsat},
		{"empty set", "GET", map[string]string{"Range": "bytes="}, unsat},
		{"bare dash", "GET", map[string]string{"Range": "bytes=-"}, unsat},
		{"overflow", "GET", map[string]string{"Range": "bytes=99999999999999999999-"}, unsat},
		{"other unit ignored", "GET", map[string]string{"Range": "items=0-5"}, full},
		{"multiple ranges ignored", "GET", map[string]string{"Range": "bytes=0-1,5-6"}, full},
		{"HEAD", "HEAD", nil, full},
		{"HEAD range", "HEAD", map[string]string{"Range": "bytes=10-19"}, want{206, "bytes 10-19/1000", 10, 19}},
		{"HEAD unsatisfiable", "HEAD", map[string]string{"Range": "bytes=2000-"}, unsat},
		{"If-Range matches", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": etag}, want{206, "bytes 0-9/1000", 0, 9}},
		{"If-Range differs", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": `"sha256:other"`}, full},
		{"If-Range date", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": "Mon, 02 Jan 2006 15:04:05 GMT"}, full},
		{"If-None-Match", "GET", map[string]string{"If-None-Match": etag}, want{status: 304}},
		{"If-None-Match weak, in list", "GET", map[string]string{"If-None-Match": `"x", W/` + etag}, want{status: 304}},
		{"If-None-Match star", "HEAD", map[string]string{"If-None-Match": "*"}, want{status: 304}},
		{"If-None-Match other", "GET", map[string]string{"If-None-Match": `"sha256:other"`}, full},
	}

	// The same table, against a committed blob and against the same blob
	// while it is still being written (all bytes there, not committed).
	for _, state := range []string{"committed", "in progress"} {
		t.Run(state, func(t *testing.T) {
			s := newStore(t, 0)
			if state == "committed" {
				put(t, s, data)
			} else {
				pr, pw := io.Pipe()
				done := make(chan error, 1)
				go func() { done <- s.Put(context.Background(), digest, pr, n) }()
				pw.Write(data)
				t.Cleanup(func() {
					pw.Close()
					if err := <-done; err != nil {
						t.Error(err)
					}
				})
				waitFor(t, "bytes written", func() bool { return s.written(digest) == n })
			}
			srv := httptest.NewServer(s.Handler())
			defer srv.Close()
			url := srv.URL + BlobPathPrefix + digest
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					resp, body := get(t, c.method, url, c.hdr)
					h := resp.Header
					if resp.StatusCode != c.want.status {
						t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, c.want.status, body)
					}
					if got := h.Get("Etag"); got != etag {
						t.Errorf("ETag %q", got)
					}
					if got := h.Get("Content-Range"); got != c.want.contentRange {
						t.Errorf("Content-Range %q, want %q", got, c.want.contentRange)
					}
					switch c.want.status {
					case 200, 206:
						wantBody := data[c.want.first : c.want.last+1]
						if got := h.Get("Content-Length"); got != strconv.Itoa(len(wantBody)) {
							t.Errorf("Content-Length %q, want %d", got, len(wantBody))
						}
						if got := h.Get("Content-Type"); got != "application/octet-stream" {
							t.Errorf("Content-Type %q", got)
						}
						if got := h.Get("Accept-Ranges"); got != "bytes" {
							t.Errorf("Accept-Ranges %q", got)
						}
						if c.method == "HEAD" {
							wantBody = nil
						}
						if !bytes.Equal(body, wantBody) {
							t.Errorf("body: %d bytes, want %d (data[%d:%d])", len(body), len(wantBody), c.want.first, c.want.last+1)
						}
					case 416:
						if c.method == "GET" {
							errorMessage(t, body)
						}
						if got := h.Get("Content-Type"); got != "application/json" {
							t.Errorf("Content-Type %q", got)
						}
					case 304:
						if len(body) != 0 {
							t.Errorf("304 with a body: %q", body)
						}
					}
				})
			}
		})
	}
}

func TestHandlerErrors(t *testing.T) {
	s := newStore(t, 0)
	data, digest := blobOf(201, 100)
	put(t, s, data)
	_, absent := blobOf(202, 100)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	hex := strings.TrimPrefix(digest, DigestPrefix)
	cases := []struct {
		method, path string
		status       int
	}{
		{"GET", BlobPathPrefix + absent, 404},
		{"HEAD", BlobPathPrefix + absent, 404},
		{"GET", BlobPathPrefix + hex, 400},
		{"GET", BlobPathPrefix + "sha256:" + strings.ToUpper(hex), 400},
		{"GET", BlobPathPrefix + "sha256:" + hex + "/x", 400},
		{"GET", BlobPathPrefix, 400},
		{"GET", BlobPathPrefix + "sha256:..%2F..%2F..%2Fetc%2Fpasswd", 400},
		{"GET", "/v1/blob/" + digest, 404},
		{"POST", BlobPathPrefix + digest, 405},
		{"PUT", BlobPathPrefix + digest, 405},
		{"DELETE", BlobPathPrefix + digest, 405},
	}
	for _, c := range cases {
		resp, body := get(t, c.method, srv.URL+c.path, nil)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, resp.StatusCode, c.status)
			continue
		}
		if resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Content-Type %q", c.method, c.path, resp.Header.Get("Content-Type"))
		}
		if c.method != "HEAD" {
			if msg := errorMessage(t, body); msg == "" {
				t.Errorf("%s %s: empty error", c.method, c.path)
			}
		}
		if c.status == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("Allow %q", resp.Header.Get("Allow"))
		}
	}
	if !s.Has(digest) {
		t.Fatal("DELETE removed the blob")
	}
}

// Path traversal attempts sent raw (no client-side cleaning) get a 400.
func TestHandlerRawTraversal(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "store"), 0)
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("do not serve"), 0o600)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, path := range []string{
		"/v1/blobs/../../secret",
		"/v1/blobs/sha256:../../../secret",
		"/v1/blobs/..%2f..%2fsecret",
		"/v1/blobs/sha256%3a..%2f..%2f..%2fsecret",
		"/v1/blobs/%2e%2e/%2e%2e/secret",
	} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != http.StatusBadRequest || bytes.Contains(body, []byte("do not serve")) {
			t.Errorf("GET %s: %d %q", path, resp.StatusCode, body)
		}
	}
}

// A range in the part of an in-progress blob not yet written is answered
// as the bytes arrive; a full GET gets the first bytes before the rest
// exist.
func TestHandlerStreamsInProgress(t *testing.T) {
	s := newStore(t, 0)
	const n = 1 << 20
	data, digest := blobOf(203, n)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.Put(context.Background(), digest, pr, n) }()
	pw.Write(data[:n/4])
	waitFor(t, "first quarter", func() bool { return s.written(digest) == n/4 })
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	url := srv.URL + BlobPathPrefix + digest

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != n {
		t.Fatalf("status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	head := make([]byte, n/4)
	if _, err := io.ReadFull(resp.Body, head); err != nil || !bytes.Equal(head, data[:n/4]) {
		t.Fatalf("first quarter while in progress: %v", err)
	}

	ranged := make(chan []byte, 1)
	go func() {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Range", "bytes=800000-800099")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ranged <- nil
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != "bytes 800000-800099/1048576" {
			b = nil
		}
		ranged <- b
	}()
	select {
	case <-ranged:
		t.Fatal("range beyond the written bytes answered before they were written")
	case <-time.After(50 * time.Millisecond):
	}
	pw.Write(data[n/4:])
	if b := <-ranged; !bytes.Equal(b, data[800000:800100]) {
		t.Fatalf("ranged response: %d bytes", len(b))
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(rest, data[n/4:]) {
		t.Fatalf("rest: %d bytes, %v", len(rest), err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A blob of unknown size is served once its size is known (here: at its
// commit), rather than answered 404.
func TestHandlerInProgressUnknownSize(t *testing.T) {
	s := newStore(t, 0)
	data, digest := blobOf(204, 5000)
	pr, pw := io.Pipe()
	go s.Put(context.Background(), digest, pr, -1)
	pw.Write(data[:100])
	waitFor(t, "first bytes", func() bool { return s.written(digest) == 100 })
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	got := make(chan []byte, 1)
	go func() {
		resp, err := http.Get(srv.URL + BlobPathPrefix + digest)
		if err != nil {
			got <- nil
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- b
	}()
	pw.Write(data[100:])
	pw.Close()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("got %d bytes", len(b))
	}
}

// A blob whose write fails mid-response: the client sees a broken body,
// never a short one that looks complete.
func TestHandlerInProgressFailureAbortsResponse(t *testing.T) {
	s := newStore(t, 0)
	data, digest := blobOf(205, 10000)
	pr, pw := io.Pipe()
	go s.Put(context.Background(), digest, pr, 10000)
	pw.Write(data[:4000])
	waitFor(t, "bytes", func() bool { return s.written(digest) == 4000 })
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + BlobPathPrefix + digest)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, 4000)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	pw.CloseWithError(errors.New("upstream died"))
	rest, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("body ended cleanly after %d more bytes", len(rest))
	}
	// And the blob is gone: 404.
	waitFor(t, "failure", func() bool { return s.written(digest) < 0 })
	if r, _ := get(t, "GET", srv.URL+BlobPathPrefix+digest, nil); r.StatusCode != 404 {
		t.Fatalf("status after failure %d", r.StatusCode)
	}
}

// A blob corrupted on disk while the node was down is checked before it
// is first served, and removed.
func TestHandlerVerifiesScannedBlobs(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := blobOf(206, 3000)
	bad, _ := blobOf(207, 3000)
	dgood, dbad := put(t, s, good), put(t, s, bad)
	p := filepath.Join(s.Dir(), strings.TrimPrefix(dbad, DigestPrefix))
	b, _ := os.ReadFile(p)
	b[7] ^= 1
	os.WriteFile(p, b, 0o644)

	s2, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(BlobPathPrefix, s2.Handler()) // mounted on a mux
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if r, body := get(t, "GET", srv.URL+BlobPathPrefix+dgood, nil); r.StatusCode != 200 || !bytes.Equal(body, good) {
		t.Fatalf("good blob: %d", r.StatusCode)
	}
	r, body := get(t, "GET", srv.URL+BlobPathPrefix+dbad, nil)
	if r.StatusCode != 404 || !strings.Contains(errorMessage(t, body), "corrupt") {
		t.Fatalf("corrupt blob: %d %q", r.StatusCode, body)
	}
	if s2.Has(dbad) {
		t.Fatal("corrupt blob still indexed")
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("corrupt file not removed")
	}
}

func TestParseContentRange(t *testing.T) {
	cases := []struct {
		in                    string
		first, last, complete int64
		ok                    bool
	}{
		{"bytes 0-9/10", 0, 9, 10, true},
		{"bytes 5-5/6", 5, 5, 6, true},
		{"BYTES 1-2/*", 1, 2, -1, true},
		{"bytes 0-10/10", 0, 0, 0, false},
		{"bytes 9-1/10", 0, 0, 0, false},
		{"bytes */10", 0, 0, 0, false},
		{"bytes 0-9", 0, 0, 0, false},
		{"bytes -1-9/10", 0, 0, 0, false},
		{"bytes +1-9/10", 0, 0, 0, false},
		{"items 0-9/10", 0, 0, 0, false},
		{"bytes 0-9/x", 0, 0, 0, false},
		{"bytes 0-99999999999999999999/10", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	}
	for _, c := range cases {
		f, l, n, err := parseContentRange(c.in)
		if (err == nil) != c.ok || (c.ok && (f != c.first || l != c.last || n != c.complete)) {
			t.Errorf("parseContentRange(%q) = %d %d %d %v", c.in, f, l, n, err)
		}
	}
}

// HeaderBlobWait: an absent blob is waited for, up to the given time.
func TestHandlerBlobWait(t *testing.T) {
	s := newStore(t, 0)
	data, digest := blobOf(208, 10_000)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	url := srv.URL + BlobPathPrefix + digest

	got := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set(HeaderBlobWait, "10s") // capped at MaxBlobWait
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		got <- resp
	}()
	select {
	case resp := <-got:
		t.Fatalf("answered %v before the blob began", resp)
	case <-time.After(50 * time.Millisecond):
	}
	go s.Put(context.Background(), digest, bytes.NewReader(data), int64(len(data)))
	resp := <-got
	if resp == nil {
		t.FailNow()
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil || !bytes.Equal(body, data) {
		t.Fatalf("status %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}

	// A blob that never comes: 404 once the wait is over.
	_, absent := blobOf(209, 10)
	start := time.Now()
	r, _ := get(t, "GET", srv.URL+BlobPathPrefix+absent, map[string]string{HeaderBlobWait: "30"})
	if r.StatusCode != 404 || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("status %d after %v", r.StatusCode, time.Since(start))
	}
	for _, bad := range []string{"soon", "-5s", "-1", "1.5"} {
		if r, _ := get(t, "GET", srv.URL+BlobPathPrefix+absent, map[string]string{HeaderBlobWait: bad}); r.StatusCode != 400 {
			t.Errorf("%s %q: status %d", HeaderBlobWait, bad, r.StatusCode)
		}
	}
	for in, want := range map[string]time.Duration{"": 0, "0": 0, "250": 250 * time.Millisecond, "2s": 2 * time.Second,
		"1h": MaxBlobWait, "99999999999999999": MaxBlobWait} {
		if d, err := parseBlobWait(in); err != nil || d != want {
			t.Errorf("parseBlobWait(%q) = %v, %v; want %v", in, d, err, want)
		}
	}
}
