package blobstore

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models"
)

// blobOf returns n seeded pseudo-random bytes and their digest.
func blobOf(seed uint64, n int) ([]byte, string) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b, models.DigestBytes(b)
}

// newStore opens a store in a fresh temp directory.
func newStore(t testing.TB, maxBytes int64) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// put stores b under its digest.
func put(t testing.TB, s *Store, b []byte) string {
	t.Helper()
	d := models.DigestBytes(b)
	if err := s.Put(context.Background(), d, strings.NewReader(string(b)), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	return d
}

// tempFiles lists the temp files in the store's directory.
func tempFiles(t testing.TB, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// waitFor polls cond until it holds, failing the test after a generous
// limit (a hang, not a performance bound).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// written returns the bytes written so far of an in-progress blob, or -1.
func (s *Store) written(digest string) int64 {
	hex, err := ParseDigest(digest)
	if err != nil {
		return -1
	}
	s.mu.Lock()
	d := s.downloads[hex]
	s.mu.Unlock()
	if d == nil {
		return -1
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.written
}

// errorMessage decodes {"error": "..."}, failing if the body is not that.
func errorMessage(t testing.TB, body []byte) string {
	t.Helper()
	var e struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		t.Fatalf("body %q is not an error object", body)
	}
	return *e.Error
}

// origin is a test HTTP server holding one blob, with misbehaviours on
// demand, logging the Range header of every request and counting the
// body bytes it writes.
type origin struct {
	data []byte

	mu       sync.Mutex
	ranges   []string // Range header of each GET ("" when absent)
	bytesOut int64

	// Misbehaviours, set before use.
	notFound   bool
	corruptAt  int           // >= 0: flip the byte at this offset of the blob
	truncateAt int64         // > 0: abort every response after this many body bytes
	truncateN  int           // > 0: truncate only the first truncateN responses
	stallAt    int64         // > 0: stop sending (without closing) after this many bytes
	chunk      int           // > 0: send the body in chunks of this size...
	pause      time.Duration // ...pausing this long after each
	release    chan struct{} // stalled responses end when this closes
}

func newOrigin(data []byte) *origin {
	return &origin{data: data, corruptAt: -1, release: make(chan struct{})}
}

func (o *origin) log() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.ranges...)
}

func (o *origin) served() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bytesOut
}

// countingWriter counts body bytes into the origin.
type countingWriter struct {
	http.ResponseWriter
	o     *origin
	limit int64 // abort after this many bytes; 0: none
	stall int64 // stall after this many bytes; 0: none
	n     int64
	chunk int
	pause time.Duration
}

func (w *countingWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		q := p
		if w.chunk > 0 {
			q = q[:min(len(q), w.chunk-int(w.n%int64(w.chunk)))]
		}
		if w.limit > 0 && w.n+int64(len(q)) > w.limit {
			q = q[:w.limit-w.n]
		}
		if w.stall > 0 && w.n+int64(len(q)) > w.stall {
			q = q[:w.stall-w.n]
		}
		n, err := w.ResponseWriter.Write(q)
		w.n += int64(n)
		written += n
		w.o.mu.Lock()
		w.o.bytesOut += int64(n)
		w.o.mu.Unlock()
		if err != nil {
			return written, err
		}
		p = p[n:]
		if w.limit > 0 && w.n == w.limit {
			http.NewResponseController(w.ResponseWriter).Flush()
			panic(http.ErrAbortHandler)
		}
		if w.stall > 0 && w.n == w.stall {
			http.NewResponseController(w.ResponseWriter).Flush()
			<-w.o.release
			panic(http.ErrAbortHandler)
		}
		if w.chunk > 0 && w.n%int64(w.chunk) == 0 {
			// A chunk is complete: send it, then pause.
			http.NewResponseController(w.ResponseWriter).Flush()
			time.Sleep(w.pause)
		}
	}
	return written, nil
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.ranges = append(o.ranges, r.Header.Get("Range"))
	n := len(o.ranges)
	o.mu.Unlock()
	if o.notFound {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"no such blob"}`)
		return
	}
	data := o.data
	if o.corruptAt >= 0 {
		data = append([]byte(nil), data...)
		data[o.corruptAt] ^= 0xff
	}
	cw := &countingWriter{ResponseWriter: w, o: o, stall: o.stallAt, chunk: o.chunk, pause: o.pause}
	if o.truncateAt > 0 && (o.truncateN == 0 || n <= o.truncateN) {
		cw.limit = o.truncateAt
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(cw, r, "", time.Time{}, strings.NewReader(string(data)))
}
