package feedback

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func open(t *testing.T, cfg Config) *Log {
	t.Helper()
	l, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// crash abandons l as a killed process would: no final sync, no Close;
// the file descriptors (and the directory lock) are released.
func crash(l *Log) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.closeFiles()
}

func appendAll(t *testing.T, l *Log, recs []Record) {
	t.Helper()
	for i := range recs {
		if err := l.Append(recs[i]); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func readAll(t *testing.T, l *Log, model string) []Record {
	t.Helper()
	recs, err := l.Read(model, 0)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return recs
}

func sameRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("record %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir})
	var a, b []Record
	for i := range 60 {
		r := record("alpha", i, 4)
		if i%3 == 0 {
			r = record("beta", i, 2)
			b = append(b, r)
		} else {
			a = append(a, r)
		}
		appendAll(t, l, []Record{r})
	}
	check := func(l *Log) {
		t.Helper()
		sameRecords(t, readAll(t, l, "alpha"), a)
		sameRecords(t, readAll(t, l, "beta"), b)
		newest, err := l.Read("alpha", 5)
		if err != nil {
			t.Fatal(err)
		}
		sameRecords(t, newest, a[len(a)-5:])
		if n := l.Len("alpha"); n != len(a) {
			t.Errorf("Len(alpha) = %d, want %d", n, len(a))
		}
		if n := l.Len(""); n != 60 {
			t.Errorf("Len() = %d, want 60", n)
		}
		if n := l.Len("gamma"); n != 0 {
			t.Errorf("Len(gamma) = %d", n)
		}
		if recs, err := l.Read("gamma", 10); err != nil || len(recs) != 0 {
			t.Errorf("Read(gamma) = %d records, %v", len(recs), err)
		}
		if all := readAll(t, l, ""); len(all) != 60 || all[0].Model != "beta" || all[59].Model != "alpha" {
			t.Errorf("Read(\"\") gave %d records in the wrong order", len(all))
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	check(open(t, Config{Dir: dir}))
}

// TestCrashKeepsAcknowledged: every Append that returned survives a crash
// (no Close), under both policies.
func TestCrashKeepsAcknowledged(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncInterval} {
		t.Run(string(policy), func(t *testing.T) {
			dir := t.TempDir()
			l, err := Open(Config{Dir: dir, Fsync: policy, FsyncInterval: time.Hour, SegmentBytes: MinSegmentBytes})
			if err != nil {
				t.Fatal(err)
			}
			var want []Record
			for i := range 50 {
				want = append(want, record("m", i, 16))
			}
			appendAll(t, l, want)
			crash(l)
			sameRecords(t, readAll(t, open(t, Config{Dir: dir}), "m"), want)
		})
	}
}

// TestTornWrite cuts the last record at every byte: reopening drops that
// record only, and the log takes new records after the cut.
func TestTornWrite(t *testing.T) {
	var want []Record
	for i := range 5 {
		want = append(want, record("m", i, 3))
	}
	last := len(appendFrame(nil, &want[4]))
	for cut := 1; cut < last; cut++ {
		dir := t.TempDir()
		l, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		appendAll(t, l, want)
		crash(l)
		seg := segFiles(t, dir)[0]
		st, err := os.Stat(seg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(seg, st.Size()-int64(cut)); err != nil {
			t.Fatal(err)
		}
		l2, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatalf("cut %d: Open: %v", cut, err)
		}
		sameRecords(t, readAll(t, l2, "m"), want[:4])
		if rec := l2.Recovered(); rec.DroppedBytes != int64(last-cut) || len(rec.Segments) != 1 {
			t.Fatalf("cut %d: recovered %+v, want %d bytes dropped", cut, rec, last-cut)
		}
		extra := record("m", 99, 3)
		appendAll(t, l2, []Record{extra})
		l2.Close()
		sameRecords(t, readAll(t, open(t, Config{Dir: dir}), "m"), append(want[:4:4], extra))
	}
}

// TestDamagedTail: garbage after the last record, or a damaged byte
// inside it, costs that record only.
func TestDamagedTail(t *testing.T) {
	var want []Record
	for i := range 4 {
		want = append(want, record("m", i, 3))
	}
	cases := map[string]func(t *testing.T, seg string){
		"garbage appended": func(t *testing.T, seg string) {
			f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte{0x20, 0, 0, 0, 1, 2, 3})
			f.Close()
		},
		"zeros appended": func(t *testing.T, seg string) {
			f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(make([]byte, 4096))
			f.Close()
		},
		"last record damaged": func(t *testing.T, seg string) {
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-3] ^= 0x40
			os.WriteFile(seg, b, 0o600)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := Open(Config{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			appendAll(t, l, want)
			crash(l)
			damage(t, segFiles(t, dir)[0])
			got := readAll(t, open(t, Config{Dir: dir}), "m")
			keep := len(want)
			if name == "last record damaged" {
				keep--
			}
			sameRecords(t, got, want[:keep])
		})
	}
}

func TestTornSegmentHeader(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{record("m", 1, 2)}
	appendAll(t, l, want)
	crash(l)
	// A crash right after creating the next segment, before its header.
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x%s", 2, segSuffix)), []byte("PETR"), 0o600); err != nil {
		t.Fatal(err)
	}
	l2 := open(t, Config{Dir: dir})
	sameRecords(t, readAll(t, l2, "m"), want)
	appendAll(t, l2, []Record{record("m", 2, 2)})
	if n := l2.Len("m"); n != 2 {
		t.Fatalf("Len = %d", n)
	}
}

func TestNotASegment(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x%s", 1, segSuffix)), []byte("this is not a feedback segment file"), 0o600)
	if _, err := Open(Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "not a feedback segment") {
		t.Fatalf("Open: %v", err)
	}
}

// TestCrashSubprocess kills a process that appends as fast as it can:
// every record it acknowledged (printed after Append returned) is there.
func TestCrashSubprocess(t *testing.T) {
	if dir := os.Getenv("PETREL_FEEDBACK_CRASH_DIR"); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSubprocess$")
	cmd.Env = append(os.Environ(), "PETREL_FEEDBACK_CRASH_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	acked := -1
	for sc.Scan() {
		n, ok := strings.CutPrefix(sc.Text(), "acked ")
		if !ok {
			continue
		}
		if acked, err = strconv.Atoi(n); err != nil {
			t.Fatal(err)
		}
		if acked >= 300 {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if acked < 300 {
		t.Fatalf("the child acknowledged %d records before it stopped", acked+1)
	}
	got := readAll(t, open(t, Config{Dir: dir}), "m")
	if len(got) < acked+1 {
		t.Fatalf("%d records after the crash, the child acknowledged %d", len(got), acked+1)
	}
	for i := range acked + 1 {
		if want := record("m", i, 32); !reflect.DeepEqual(got[i], want) {
			t.Fatalf("record %d: got %+v, want %+v", i, got[i], want)
		}
	}
}

func crashChild(dir string) {
	l, err := Open(Config{Dir: dir, SegmentBytes: 64 << 10})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		r := record("m", i, 32)
		if err := l.Append(r); err != nil {
			fmt.Println("append:", err)
			os.Exit(1)
		}
		fmt.Printf("acked %d\n", i)
	}
}

func TestRotationAndMaxBytes(t *testing.T) {
	dir := t.TempDir()
	const seg, maxBytes = MinSegmentBytes, 4 * MinSegmentBytes
	l := open(t, Config{Dir: dir, SegmentBytes: seg, MaxBytes: maxBytes})
	var all []Record
	for i := range 400 {
		all = append(all, record("m", i, 24))
	}
	appendAll(t, l, all)
	if s := l.Size(); s > maxBytes {
		t.Errorf("Size %d > MaxBytes %d", s, maxBytes)
	}
	var onDisk int64
	files := segFiles(t, dir)
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		onDisk += st.Size()
	}
	if onDisk != l.Size() || onDisk > maxBytes {
		t.Errorf("%d bytes in %d segment files, Size says %d, bound %d", onDisk, len(files), l.Size(), maxBytes)
	}
	got := readAll(t, l, "m")
	if len(got) == 0 || len(got) >= len(all) {
		t.Fatalf("%d records kept of %d", len(got), len(all))
	}
	// What is kept is the newest, in order.
	sameRecords(t, got, all[len(all)-len(got):])
	if l.Len("m") != len(got) {
		t.Errorf("Len %d, Read %d", l.Len("m"), len(got))
	}
	l.Close()
	sameRecords(t, readAll(t, open(t, Config{Dir: dir, SegmentBytes: seg, MaxBytes: maxBytes}), "m"), got)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestMaxAge(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := open(t, Config{Dir: dir, MaxAge: time.Hour, Now: clock.Now})
	stamp := func(i int) Record {
		r := record("m", i, 2)
		r.Time = time.Time{} // Append stamps it with the clock
		return r
	}
	for i := range 10 {
		appendAll(t, l, []Record{stamp(i)})
		clock.Add(time.Minute)
	}
	if n := l.Len("m"); n != 10 {
		t.Fatalf("Len %d", n)
	}
	recs := readAll(t, l, "m")
	if !recs[0].Time.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("first record time %v", recs[0].Time)
	}
	clock.Add(55 * time.Minute) // records 0..4 are now older than an hour
	if n := l.Len("m"); n != 5 {
		t.Errorf("after 55 min: Len %d, want 5", n)
	}
	if recs := readAll(t, l, "m"); len(recs) != 5 || recs[0].Label != record("m", 5, 2).Label {
		t.Errorf("after 55 min: %d records", len(recs))
	}
	clock.Add(time.Hour)
	if err := l.Prune(); err != nil {
		t.Fatal(err)
	}
	if n := l.Len("m"); n != 0 {
		t.Errorf("after two hours: Len %d", n)
	}
	// The files of expired segments are gone; the active one is new.
	if s := l.Size(); s != segHeader {
		t.Errorf("after Prune: Size %d, want an empty segment", s)
	}
	if files := segFiles(t, dir); len(files) != 1 {
		t.Errorf("after Prune: %d segment files", len(files))
	}
	appendAll(t, l, []Record{stamp(20)})
	if n := l.Len("m"); n != 1 {
		t.Errorf("Len %d after a new record", n)
	}
}

func TestConcurrentAppends(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncInterval} {
		t.Run(string(policy), func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, Config{Dir: dir, Fsync: policy, FsyncInterval: time.Millisecond, SegmentBytes: MinSegmentBytes})
			const writers, each = 8, 40
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						r := record(fmt.Sprintf("m%d", w), i, 8)
						if err := l.Append(r, r); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Go(func() { // reads while writing
				for range 20 {
					if _, err := l.Read("", 50); err != nil {
						errs <- err
						return
					}
				}
			})
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			crash(l)
			l2 := open(t, Config{Dir: dir})
			for w := range writers {
				got := readAll(t, l2, fmt.Sprintf("m%d", w))
				if len(got) != 2*each {
					t.Fatalf("writer %d: %d records", w, len(got))
				}
				for i := range each { // each writer's records stay in its order
					want := record(fmt.Sprintf("m%d", w), i, 8)
					if !reflect.DeepEqual(got[2*i], want) || !reflect.DeepEqual(got[2*i+1], want) {
						t.Fatalf("writer %d record %d: %+v", w, i, got[2*i])
					}
				}
			}
		})
	}
}

func TestAppendRejectsInvalidBatch(t *testing.T) {
	l := open(t, Config{Dir: t.TempDir()})
	bad := record("m", 1, 2)
	bad.Label = -3
	err := l.Append(record("m", 0, 2), bad)
	if !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), "record 1") {
		t.Fatalf("Append: %v", err)
	}
	if n := l.Len(""); n != 0 {
		t.Fatalf("a rejected batch left %d records", n)
	}
}

func TestLockAndClose(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: dir}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(record("m", 1, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, err := l.Read("m", 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if err := l.Prune(); !errors.Is(err, ErrClosed) {
		t.Errorf("Prune after Close: %v", err)
	}
	open(t, Config{Dir: dir}) // the lock is free again
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no directory"},
		{Config{Dir: dir, Fsync: "sometimes"}, "fsync policy"},
		{Config{Dir: dir, MaxAge: -1}, "negative"},
		{Config{Dir: dir, SegmentBytes: 100}, "segment bytes"},
		{Config{Dir: dir, MaxBytes: 5 << 10, SegmentBytes: 4 << 10}, "two segments"},
	}
	for _, c := range cases {
		if _, err := Open(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	got, err := Config{Dir: dir, MaxBytes: 1 << 20}.withDefaults()
	if err != nil || got.SegmentBytes != 128<<10 || got.Fsync != FsyncAlways || got.FsyncInterval != DefaultFsyncInterval {
		t.Errorf("defaults: %+v, %v", got, err)
	}
}
