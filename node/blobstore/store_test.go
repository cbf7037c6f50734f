package blobstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models"
)

func TestPutReadBack(t *testing.T) {
	s := newStore(t, 0)
	data, digest := blobOf(1, 300_000)
	if s.Has(digest) {
		t.Fatal("Has before Put")
	}
	if err := s.Put(context.Background(), digest, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if !s.Has(digest) {
		t.Fatal("Has false after Put")
	}
	if n, ok := s.Size(digest); !ok || n != int64(len(data)) {
		t.Fatalf("Size = %d, %v; want %d", n, ok, len(data))
	}
	got, err := s.ReadAll(digest)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
	}
	r, err := s.Open(digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Open+ReadAll: %d bytes, %v", len(got), err)
	}
	onDisk, err := os.ReadFile(filepath.Join(s.Dir(), strings.TrimPrefix(digest, DigestPrefix)))
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Fatalf("file at dir/sha256/<hex>: %v", err)
	}
	if l := s.List(); len(l) != 1 || l[0].Digest != digest || l[0].Size != int64(len(data)) {
		t.Fatalf("List = %+v", l)
	}
	if tf := tempFiles(t, s); len(tf) != 0 {
		t.Fatalf("temp files left: %v", tf)
	}
	// Present: Put does not read the reader again.
	if err := s.Put(context.Background(), digest, iotestErrReader{}, -1); err != nil {
		t.Fatalf("Put of a present blob: %v", err)
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("must not be read") }

func TestPutEmptyAndUnknownSize(t *testing.T) {
	s := newStore(t, 0)
	empty := models.DigestBytes(nil)
	if err := s.Put(context.Background(), empty, strings.NewReader(""), 0); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadAll(empty); err != nil || len(got) != 0 {
		t.Fatalf("empty blob: %q, %v", got, err)
	}
	data, digest := blobOf(2, 1000)
	if err := s.Put(context.Background(), digest, bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Size(digest); n != 1000 {
		t.Fatalf("size %d", n)
	}
}

func TestPutMismatchDeletesTemp(t *testing.T) {
	data, digest := blobOf(3, 5000)
	other := models.DigestBytes([]byte("something else"))
	cases := []struct {
		name   string
		digest string
		body   []byte
		size   int64
	}{
		{"wrong digest", other, data, int64(len(data))},
		{"wrong digest, unknown size", other, data, -1},
		{"size too small", digest, data, int64(len(data)) - 1},
		{"size too large", digest, data, int64(len(data)) + 1},
		{"flipped byte", digest, append(append([]byte(nil), data[:100]...), append([]byte{data[100] ^ 1}, data[101:]...)...), int64(len(data))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t, 0)
			err := s.Put(context.Background(), c.digest, bytes.NewReader(c.body), c.size)
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("err = %v, want ErrDigestMismatch", err)
			}
			if s.Has(c.digest) || len(s.List()) != 0 {
				t.Fatal("mismatched blob committed")
			}
			if tf := tempFiles(t, s); len(tf) != 0 {
				t.Fatalf("temp files left: %v", tf)
			}
			if st := s.Stats(); st.Reserved != 0 || st.InProgress != 0 || st.Bytes != 0 {
				t.Fatalf("accounting after failure: %+v", st)
			}
		})
	}
}

type failingReader struct {
	r     io.Reader
	after int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk on fire")
	}
	p = p[:min(len(p), f.after)]
	n, err := f.r.Read(p)
	f.after -= n
	return n, err
}

func TestPutReaderErrorAndCancel(t *testing.T) {
	s := newStore(t, 0)
	data, digest := blobOf(4, 10_000)
	err := s.Put(context.Background(), digest, &failingReader{r: bytes.NewReader(data), after: 4000}, -1)
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, digest, bytes.NewReader(data), -1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Put: %v", err)
	}
	if s.Has(digest) || len(tempFiles(t, s)) != 0 {
		t.Fatal("failed Put left something behind")
	}
}

func TestCorruptBlobDetectedOnLoad(t *testing.T) {
	data, _ := blobOf(5, 64<<10)
	corruptions := map[string]func(path string) error{
		"flipped byte": func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 0x40
			return os.WriteFile(p, b, 0o644)
		},
		"truncated": func(p string) error { return os.Truncate(p, int64(len(data)-1)) },
		"extended": func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			f.Write([]byte{0})
			return f.Close()
		},
	}
	loads := map[string]func(s *Store, d string) error{
		"ReadAll": func(s *Store, d string) error { _, err := s.ReadAll(d); return err },
		"Open": func(s *Store, d string) error {
			r, err := s.Open(d)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(io.Discard, r)
			return err
		},
	}
	for cname, corrupt := range corruptions {
		for lname, load := range loads {
			t.Run(cname+"/"+lname, func(t *testing.T) {
				s := newStore(t, 0)
				digest := put(t, s, data)
				path := filepath.Join(s.Dir(), strings.TrimPrefix(digest, DigestPrefix))
				if err := corrupt(path); err != nil {
					t.Fatal(err)
				}
				if err := load(s, digest); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("load of corrupt blob: %v, want ErrCorrupt", err)
				}
				if s.Has(digest) {
					t.Fatal("corrupt blob still indexed")
				}
				if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("corrupt file not removed: %v", err)
				}
				if st := s.Stats(); st.Bytes != 0 || st.Blobs != 0 {
					t.Fatalf("accounting: %+v", st)
				}
				// The blob can be stored again.
				put(t, s, data)
				if _, err := s.ReadAll(digest); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestBadDigestsRejected(t *testing.T) {
	base := t.TempDir()
	s, err := Open(filepath.Join(base, "store"), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, good := blobOf(6, 10)
	hex := strings.TrimPrefix(good, DigestPrefix)
	bad := []string{
		"",
		"sha256:",
		hex,
		"sha256:" + hex[:63],
		"sha256:" + hex + "0",
		"sha256:" + strings.ToUpper(hex),
		"SHA256:" + hex,
		"sha512:" + hex,
		"sha256:../../../../etc/passwd",
		"sha256:" + hex[:60] + "/../",
		"sha256:../" + hex[3:],
		"../sha256/" + hex,
		"sha256:" + hex[:63] + "\x00",
		"sha256:" + hex[:62] + "%2",
		"sha256:" + hex[:63] + "g",
		" sha256:" + hex,
	}
	ctx := context.Background()
	for _, d := range bad {
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, ErrBadDigest) {
				t.Errorf("%s(%q) = %v, want ErrBadDigest", op, d, err)
			}
		}
		check("Put", s.Put(ctx, d, strings.NewReader("x"), 1))
		_, err := s.ReadAll(d)
		check("ReadAll", err)
		_, err = s.Open(d)
		check("Open", err)
		check("Remove", s.Remove(d))
		check("Pin", s.Pin(d))
		check("Unpin", s.Unpin(d))
		_, err = s.Fetch(ctx, d, -1, []Source{{URL: "http://127.0.0.1:1"}})
		check("Fetch", err)
		_, err = ParseDigest(d)
		check("ParseDigest", err)
		if s.Has(d) || ValidDigest(d) {
			t.Errorf("Has/ValidDigest(%q) true", d)
		}
		if _, ok := s.Size(d); ok {
			t.Errorf("Size(%q) ok", d)
		}
	}
	// Nothing was created anywhere: only the store's own directories.
	var files []string
	filepath.WalkDir(base, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Fatalf("files created: %v", files)
	}
}

func TestReopenRebuildsIndex(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	var digests []string
	for i := range 3 {
		data, _ := blobOf(uint64(10+i), 1000*(i+1))
		digests = append(digests, put(t, s, data))
	}
	blobDir := filepath.Join(dir, blobSubdir)
	stray := filepath.Join(blobDir, tmpPrefix+"abc-123")
	other := filepath.Join(blobDir, "README")
	for _, p := range []string{stray, other} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(blobDir, strings.Repeat("a", 64)), 0o755); err != nil {
		t.Fatal(err) // a directory with a blob's name: ignored
	}

	s2, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stray temp file not deleted: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("unrelated file deleted: %v", err)
	}
	l := s2.List()
	if len(l) != 3 {
		t.Fatalf("List after reopen: %+v", l)
	}
	for i, d := range digests {
		if n, ok := s2.Size(d); !ok || n != int64(1000*(i+1)) {
			t.Fatalf("Size(%s) = %d, %v", d, n, ok)
		}
		if _, err := s2.ReadAll(d); err != nil {
			t.Fatal(err)
		}
	}
	if st := s2.Stats(); st.Bytes != 6000 {
		t.Fatalf("Bytes = %d", st.Bytes)
	}
}

func TestReopenEvictsOverBudget(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	var digests []string
	for i := range 4 {
		data, _ := blobOf(uint64(20+i), 100)
		d := put(t, s, data)
		digests = append(digests, d)
		// Distinct mtimes, oldest first.
		mt := time.Unix(1_700_000_000+int64(i)*60, 0)
		os.Chtimes(filepath.Join(s.Dir(), strings.TrimPrefix(d, DigestPrefix)), mt, mt)
	}
	s2, err := Open(dir, 250)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range digests {
		if want := i >= 2; s2.Has(d) != want {
			t.Errorf("blob %d (mtime order) present = %v, want %v", i, !want, want)
		}
	}
}

func TestEvictionLRU(t *testing.T) {
	s := newStore(t, 300)
	var ds []string
	for i := range 3 {
		data, _ := blobOf(uint64(30+i), 100)
		ds = append(ds, put(t, s, data))
	}
	if _, err := s.ReadAll(ds[0]); err != nil { // ds[1] is now the LRU
		t.Fatal(err)
	}
	data, _ := blobOf(33, 100)
	d3 := put(t, s, data)
	want := map[string]bool{ds[0]: true, ds[1]: false, ds[2]: true, d3: true}
	for d, w := range want {
		if s.Has(d) != w {
			t.Errorf("Has(%s) = %v, want %v", d[:15], !w, w)
		}
	}
	if st := s.Stats(); st.Bytes != 300 || st.Evictions != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEvictionRespectsPins(t *testing.T) {
	s := newStore(t, 200)
	a, _ := blobOf(40, 100)
	b, _ := blobOf(41, 100)
	c, _ := blobOf(42, 100)
	da := models.DigestBytes(a)
	if err := s.Pin(da); err != nil { // pinned before it exists
		t.Fatal(err)
	}
	put(t, s, a)
	db := put(t, s, b)
	dc := put(t, s, c) // over budget: b goes, a is pinned
	if !s.Has(da) || s.Has(db) || !s.Has(dc) {
		t.Fatalf("after eviction: a %v b %v c %v", s.Has(da), s.Has(db), s.Has(dc))
	}
	d, _ := blobOf(43, 100)
	dd := put(t, s, d) // c is the only candidate
	if !s.Has(da) || s.Has(dc) || !s.Has(dd) {
		t.Fatalf("after second eviction: a %v c %v d %v", s.Has(da), s.Has(dc), s.Has(dd))
	}
	var pinned int
	for _, i := range s.List() {
		if i.Pinned {
			pinned++
		}
	}
	if pinned != 1 {
		t.Fatalf("pinned in List: %d", pinned)
	}
	// Two pins need two unpins.
	s.Pin(da)
	s.Unpin(da)
	e, _ := blobOf(44, 100)
	put(t, s, e)
	if !s.Has(da) {
		t.Fatal("a evicted with one pin left")
	}
	s.Unpin(da)
	f, _ := blobOf(45, 100)
	put(t, s, f)
	if s.Has(da) {
		t.Fatal("a not evicted after its last Unpin")
	}
}

func TestEvictionRespectsReaders(t *testing.T) {
	s := newStore(t, 200)
	a, _ := blobOf(50, 100)
	da := put(t, s, a)
	r, err := s.Open(da)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := blobOf(51, 100)
	c, _ := blobOf(52, 150)
	db := put(t, s, b)
	dc := put(t, s, c) // a is the LRU but open: b goes, and the store stays over
	if !s.Has(da) || s.Has(db) || !s.Has(dc) {
		t.Fatalf("a (open) %v, b %v, c %v", s.Has(da), s.Has(db), s.Has(dc))
	}
	if st := s.Stats(); st.Bytes != 250 {
		t.Fatalf("bytes %d, want 250 (over budget while a is open)", st.Bytes)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, a) {
		t.Fatalf("read of open blob: %v", err)
	}
	r.Close() // the release evicts a
	if s.Has(da) || !s.Has(dc) || s.Stats().Bytes != 150 {
		t.Fatalf("after Close: a %v, c %v, bytes %d", s.Has(da), s.Has(dc), s.Stats().Bytes)
	}
	if err := r.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
}

func TestEvictionMakesRoomForInProgressAndSkipsIt(t *testing.T) {
	s := newStore(t, 300)
	var old []string
	for i := range 3 {
		data, _ := blobOf(uint64(60+i), 100)
		old = append(old, put(t, s, data))
	}
	big, dbig := blobOf(63, 200)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.Put(context.Background(), dbig, pr, 200) }()
	// Starting the write reserves 200 bytes: the two LRU blobs go.
	waitFor(t, "reservation", func() bool { return s.Stats().Reserved == 200 })
	if s.Has(old[0]) || s.Has(old[1]) || !s.Has(old[2]) {
		t.Fatalf("eviction for the reservation: %v %v %v", s.Has(old[0]), s.Has(old[1]), s.Has(old[2]))
	}
	pw.Write(big[:150])
	// Another blob arriving now evicts the last old one, not the write.
	x, _ := blobOf(64, 100)
	dx := put(t, s, x)
	if s.Has(old[2]) || !s.Has(dx) {
		t.Fatal("second eviction")
	}
	pw.Write(big[150:])
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !s.Has(dbig) {
		t.Fatal("in-progress blob lost")
	}
	if st := s.Stats(); st.Reserved != 0 || st.Bytes != 300 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTooLarge(t *testing.T) {
	s := newStore(t, 1000)
	data, digest := blobOf(70, 1001)
	if err := s.Put(context.Background(), digest, bytes.NewReader(data), 1001); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("known size: %v", err)
	}
	if err := s.Put(context.Background(), digest, bytes.NewReader(data), -1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("unknown size: %v", err)
	}
	if len(tempFiles(t, s)) != 0 || s.Stats().Reserved != 0 {
		t.Fatal("leftovers")
	}
}

func TestRemove(t *testing.T) {
	s := newStore(t, 0)
	data, _ := blobOf(80, 100)
	d := put(t, s, data)
	s.Pin(d)
	if err := s.Remove(d); err != nil {
		t.Fatal(err)
	}
	if s.Has(d) || s.Stats().Bytes != 0 {
		t.Fatal("still there")
	}
	if err := s.Remove(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: %v", err)
	}
	if _, err := s.ReadAll(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadAll after Remove: %v", err)
	}
	pr, pw := io.Pipe()
	go s.Put(context.Background(), d, pr, 100)
	waitFor(t, "write start", func() bool { return s.written(d) >= 0 })
	if err := s.Remove(d); !errors.Is(err, ErrInProgress) {
		t.Fatalf("Remove while writing: %v", err)
	}
	if _, err := s.Open(d); !errors.Is(err, ErrInProgress) {
		t.Fatalf("Open while writing: %v", err)
	}
	pw.CloseWithError(errors.New("stop"))
}

func TestConcurrentPutsOfOneBlob(t *testing.T) {
	s := newStore(t, 0)
	data, digest := blobOf(90, 1<<20)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = s.Put(context.Background(), digest, bytes.NewReader(data), int64(len(data)))
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Blobs != 1 || st.Bytes != 1<<20 || st.Reserved != 0 {
		t.Fatalf("stats %+v", st)
	}
	if len(tempFiles(t, s)) != 0 {
		t.Fatal("temp files left")
	}
}

// A Put that fails while another waits for it: the waiter writes it.
func TestPutTakesOverFailedWrite(t *testing.T) {
	s := newStore(t, 0)
	data, digest := blobOf(91, 1000)
	pr, pw := io.Pipe()
	first := make(chan error, 1)
	go func() { first <- s.Put(context.Background(), digest, pr, 1000) }()
	waitFor(t, "first write", func() bool { return s.written(digest) >= 0 })
	second := make(chan error, 1)
	go func() { second <- s.Put(context.Background(), digest, bytes.NewReader(data), 1000) }()
	pw.Write(data[:10])
	pw.CloseWithError(errors.New("upstream gone"))
	if err := <-first; err == nil {
		t.Fatal("first Put succeeded")
	}
	if err := <-second; err != nil {
		t.Fatalf("second Put: %v", err)
	}
	if got, err := s.ReadAll(digest); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll: %v", err)
	}
}

// In-progress readers block until their bytes arrive, see the end at the
// commit, and get an error when the write fails or restarts.
func TestFollowInProgress(t *testing.T) {
	ctx := context.Background()
	t.Run("bytes arrive, then commit", func(t *testing.T) {
		s := newStore(t, 0)
		data, digest := blobOf(100, 1000)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() { done <- s.Put(ctx, digest, pr, -1) }()
		d := waitDownload(t, s, digest)
		fl, err := d.follow()
		if err != nil {
			t.Fatal(err)
		}
		defer fl.close()
		pw.Write(data[:300])
		buf := make([]byte, 1000)
		n, err := fl.readAt(ctx, buf, 0)
		if err != nil || n != 300 || !bytes.Equal(buf[:n], data[:300]) {
			t.Fatalf("readAt 0: %d, %v", n, err)
		}
		got := make(chan int, 1)
		go func() {
			n, _ := fl.readAt(ctx, buf[:100], 500) // beyond what is written
			got <- n
		}()
		select {
		case n := <-got:
			t.Fatalf("read past the written bytes returned %d", n)
		case <-time.After(50 * time.Millisecond):
		}
		pw.Write(data[300:])
		if n := <-got; n != 100 || !bytes.Equal(buf[:100], data[500:600]) {
			t.Fatalf("blocked read: %d", n)
		}
		pw.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n, err := fl.readAt(ctx, buf, 1000); n != 0 || err != io.EOF {
			t.Fatalf("read at the end after commit: %d, %v", n, err)
		}
		if n, err := fl.readAt(ctx, buf, 900); n != 100 || err != nil {
			t.Fatalf("read after commit: %d, %v", n, err)
		}
	})
	t.Run("failure wakes readers", func(t *testing.T) {
		s := newStore(t, 0)
		data, digest := blobOf(101, 1000)
		pr, pw := io.Pipe()
		go s.Put(ctx, digest, pr, 1000)
		d := waitDownload(t, s, digest)
		fl, err := d.follow()
		if err != nil {
			t.Fatal(err)
		}
		defer fl.close()
		pw.Write(data[:10])
		errc := make(chan error, 1)
		go func() {
			_, err := fl.readAt(ctx, make([]byte, 10), 500)
			errc <- err
		}()
		pw.CloseWithError(errors.New("gone"))
		if err := <-errc; err == nil || !strings.Contains(err.Error(), "gone") {
			t.Fatalf("reader error: %v", err)
		}
		if _, err := d.follow(); err == nil {
			t.Fatal("follow of a failed download succeeded")
		}
	})
	t.Run("context ends the wait", func(t *testing.T) {
		s := newStore(t, 0)
		_, digest := blobOf(102, 1000)
		pr, pw := io.Pipe()
		defer pw.Close()
		go s.Put(ctx, digest, pr, -1)
		d := waitDownload(t, s, digest)
		fl, err := d.follow()
		if err != nil {
			t.Fatal(err)
		}
		defer fl.close()
		cctx, cancel := context.WithCancel(ctx)
		go func() { time.Sleep(10 * time.Millisecond); cancel() }()
		if _, err := fl.waitSize(cctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("waitSize: %v", err)
		}
		if _, err := fl.readAt(cctx, make([]byte, 1), 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("readAt: %v", err)
		}
	})
	t.Run("restart invalidates readers", func(t *testing.T) {
		s := newStore(t, 0)
		data, digest := blobOf(103, 1000)
		hex, _ := ParseDigest(digest)
		d, _, err := s.begin(hex, 1000, nil)
		if err != nil {
			t.Fatal(err)
		}
		fl, err := d.follow()
		if err != nil {
			t.Fatal(err)
		}
		defer fl.close()
		s.write(d, data[:500])
		if err := s.restart(d); err != nil {
			t.Fatal(err)
		}
		s.write(d, data[:500])
		if _, err := fl.readAt(ctx, make([]byte, 10), 0); !errors.Is(err, errRestarted) {
			t.Fatalf("read after restart: %v", err)
		}
		s.write(d, data[500:])
		if err := s.commit(d); err != nil {
			t.Fatal(err)
		}
		if got, err := s.ReadAll(digest); err != nil || !bytes.Equal(got, data) {
			t.Fatal("blob after restart", err)
		}
	})
}

// waitDownload waits for an in-progress entry of digest and returns it.
func waitDownload(t *testing.T, s *Store, digest string) *download {
	t.Helper()
	hex, _ := ParseDigest(digest)
	var d *download
	waitFor(t, "download", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		d = s.downloads[hex]
		return d != nil
	})
	return d
}
