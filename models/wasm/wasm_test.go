package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/wasm/wasmtest"
)

// cacheDir is shared by the tests' Runtimes so each module compiles once.
var cacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "petrel-wasm-cache-")
	if err != nil {
		panic(err)
	}
	cacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newRuntime(t testing.TB, opts Options) *Runtime {
	t.Helper()
	if opts.CacheDir == "" {
		opts.CacheDir = cacheDir
	}
	r, err := NewRuntime(context.Background(), opts)
	if err != nil {
		t.Fatalf("NewRuntime: %v", err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func compile(t testing.TB, r *Runtime, name string, g Grants) *Module {
	t.Helper()
	m, err := r.Compile(context.Background(), wasmtest.BuildExample(t, name), g)
	if err != nil {
		t.Fatalf("Compile %s: %v", name, err)
	}
	return m
}

func fp32(vs ...float32) []byte {
	b := make([]byte, 0, 4*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func TestFeaturesPre(t *testing.T) {
	r := newRuntime(t, Options{})
	m := compile(t, r, "features", Grants{})
	if !m.HasPre() || m.HasPost() {
		t.Fatalf("HasPre=%v HasPost=%v, want true false", m.HasPre(), m.HasPost())
	}
	tests := []struct {
		name, ct, body string
		shape          []int64
		data           []byte
		wantErr        error
	}{
		{"features object", "application/json", `{"features":{"petal_width":4,"sepal_length":1,"sepal_width":2,"petal_length":3}}`,
			[]int64{1, 4}, fp32(1, 2, 3, 4), nil},
		{"instances mixed", "application/json; charset=utf-8", `{"instances":[{"sepal_length":1,"sepal_width":2,"petal_length":3,"petal_width":4},[5,6,7,8.5]]}`,
			[]int64{2, 4}, fp32(1, 2, 3, 4, 5, 6, 7, 8.5), nil},
		{"no content type", "", `{"instances":[[0,0,0,0]]}`, []int64{1, 4}, fp32(0, 0, 0, 0), nil},
		{"bad json", "application/json", `{"features":`, nil, nil, ErrClientInput},
		{"missing feature", "application/json", `{"features":{"sepal_length":1}}`, nil, nil, ErrClientInput},
		{"unknown feature", "application/json", `{"features":{"sepal_length":1,"sepal_width":2,"petal_length":3,"petal_width":4,"x":1}}`, nil, nil, ErrClientInput},
		{"short row", "application/json", `{"instances":[[1,2]]}`, nil, nil, ErrClientInput},
		{"not json content type", "text/plain", `{}`, nil, nil, ErrClientInput},
		{"empty object", "application/json", `{}`, nil, nil, ErrClientInput},
		{"overflow fp32", "application/json", `{"instances":[[1e300,0,0,0]]}`, nil, nil, ErrClientInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := m.Pre(context.Background(), tc.ct, []byte(tc.body))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if HTTPStatus(err) != 400 {
					t.Errorf("HTTPStatus = %d, want 400", HTTPStatus(err))
				}
				return
			}
			if err != nil {
				t.Fatalf("Pre: %v", err)
			}
			if len(ts) != 1 || ts[0].Name != "input" || ts[0].DataType != models.FP32 ||
				!equalShape(ts[0].Shape, tc.shape) || !bytes.Equal(ts[0].Data, tc.data) {
				t.Fatalf("got %+v, want input FP32 %v %v", ts, tc.shape, tc.data)
			}
		})
	}
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type prediction struct {
	Label string  `json:"label"`
	Score float64 `json:"score"`
}

func TestTopKPost(t *testing.T) {
	r := newRuntime(t, Options{})
	m := compile(t, r, "topk", Grants{})
	probs := models.Tensor{Name: "probabilities", DataType: models.FP32, Shape: []int64{1, 10},
		Data: fp32(0.01, 0.02, 0.5, 0.03, 0.04, 0.05, 0.2, 0.1, 0.03, 0.02)}
	ct, body, err := m.Post(context.Background(), []models.Tensor{probs}, "application/json")
	if err != nil {
		t.Fatalf("Post: %v", err)
	}
	if ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	var one struct{ Predictions []prediction }
	if err := json.Unmarshal(body, &one); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	want := []string{"Pullover", "Shirt", "Sneaker"}
	if len(one.Predictions) != 3 {
		t.Fatalf("predictions %s, want 3", body)
	}
	for i, p := range one.Predictions {
		if p.Label != want[i] {
			t.Errorf("prediction %d = %q, want %q (body %s)", i, p.Label, want[i], body)
		}
	}
	if math.Abs(one.Predictions[0].Score-0.5) > 1e-6 {
		t.Errorf("top score %v, want 0.5", one.Predictions[0].Score)
	}

	batch := models.Tensor{Name: "probabilities", DataType: models.FP32, Shape: []int64{2, 10},
		Data: append(fp32(1, 0, 0, 0, 0, 0, 0, 0, 0, 0), fp32(0, 0, 0, 0, 0, 0, 0, 0, 0, 1)...)}
	_, body, err = m.Post(context.Background(), []models.Tensor{batch}, "")
	if err != nil {
		t.Fatalf("Post batch: %v", err)
	}
	var many struct{ Predictions [][]prediction }
	if err := json.Unmarshal(body, &many); err != nil || len(many.Predictions) != 2 ||
		many.Predictions[0][0].Label != "T-shirt/top" || many.Predictions[1][0].Label != "Ankle boot" {
		t.Fatalf("batch body %s (err %v)", body, err)
	}

	errCases := []struct {
		name    string
		outs    []models.Tensor
		accept  string
		wantErr error
	}{
		{"xml accept", []models.Tensor{probs}, "application/xml", ErrClientInput},
		{"missing tensor", []models.Tensor{{Name: "logits", DataType: models.FP32, Shape: []int64{1}, Data: fp32(1)}}, "", ErrTransformFailed},
		{"wrong dtype", []models.Tensor{{Name: "probabilities", DataType: models.Int32, Shape: []int64{1}, Data: fp32(1)}}, "", ErrTransformFailed},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := m.Post(context.Background(), tc.outs, tc.accept)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if _, err := m.Pre(context.Background(), "", nil); !errors.Is(err, ErrNotExported) {
		t.Errorf("Pre on a post-only module: %v, want ErrNotExported", err)
	}
	bad := models.Tensor{Name: "probabilities", DataType: models.FP32, Shape: []int64{1, 10}, Data: fp32(1)}
	if _, _, err := m.Post(context.Background(), []models.Tensor{bad}, ""); err == nil {
		t.Error("Post accepted a tensor whose data does not match its shape")
	}
}

// TestHostileGuests runs each hostile guest while another Module keeps
// serving: every hostile call fails with its error, every good call works.
func TestHostileGuests(t *testing.T) {
	r := newRuntime(t, Options{CallTimeout: time.Second, MaxOutputBytes: 1 << 20})
	good := compile(t, r, "features", Grants{})
	tests := []struct {
		guest, body string
		wantErr     error
		status      int
	}{
		{"loop", "", ErrTimeout, 504},
		{"membomb", "", ErrOutOfMemory, 500},
		{"trap", "panic", ErrTrap, 500},
		{"trap", "nil", ErrTrap, 500},
		{"hugeout", "lie", ErrTooLarge, 500},
		{"hugeout", "2000000", ErrTooLarge, 500},
		{"hugeout", "not a number", ErrClientInput, 400},
	}
	mods := map[string]*Module{}
	for _, tc := range tests {
		if mods[tc.guest] == nil {
			mods[tc.guest] = compile(t, r, tc.guest, Grants{})
		}
	}
	stop := make(chan struct{})
	var goodCalls, goodFails int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ts, err := good.Pre(context.Background(), "application/json", []byte(`{"instances":[[1,2,3,4]]}`))
			goodCalls++
			if err != nil || len(ts) != 1 {
				goodFails++
				t.Errorf("good module failed beside hostile guests: %v", err)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var hw sync.WaitGroup
	for _, tc := range tests {
		hw.Add(1)
		go func() {
			defer hw.Done()
			for range 2 { // the second call runs on a fresh instance
				_, err := mods[tc.guest].Pre(context.Background(), "", []byte(tc.body))
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("%s(%q): err = %v, want %v", tc.guest, tc.body, err, tc.wantErr)
				}
				if got := HTTPStatus(err); got != tc.status {
					t.Errorf("%s(%q): HTTPStatus = %d, want %d", tc.guest, tc.body, got, tc.status)
				}
			}
		}()
	}
	hw.Wait()
	close(stop)
	wg.Wait()
	if goodCalls == 0 || goodFails > 0 {
		t.Fatalf("good module: %d calls, %d failures", goodCalls, goodFails)
	}
	// And after all that, the good module still answers.
	if _, err := good.Pre(context.Background(), "", []byte(`{"instances":[[1,2,3,4]]}`)); err != nil {
		t.Fatalf("good module after hostile guests: %v", err)
	}
}

func TestTimeoutDiscardsInstance(t *testing.T) {
	r := newRuntime(t, Options{CallTimeout: 50 * time.Millisecond, PoolSize: 1})
	m := compile(t, r, "loop", Grants{})
	for i := range 3 {
		_, err := m.Pre(context.Background(), "", nil)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("call %d: %v, want ErrTimeout", i, err)
		}
	}
	// The caller's own, shorter deadline is honoured too.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := m.Pre(ctx, "", nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("caller deadline: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("call with a 10ms deadline took %v", d)
	}
}

func TestMemoryLimit(t *testing.T) {
	// 64 pages (4 MiB) is above what the Go runtime needs to start but far
	// below what membomb asks for.
	r := newRuntime(t, Options{MemoryLimitPages: 64, CallTimeout: 2 * time.Second})
	m := compile(t, r, "membomb", Grants{})
	if _, err := m.Pre(context.Background(), "", nil); !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("membomb: %v, want ErrOutOfMemory", err)
	}
	// A limit below what the module declares it needs is refused at compile.
	small := newRuntime(t, Options{MemoryLimitPages: 8})
	_, err := small.Compile(context.Background(), wasmtest.BuildExample(t, "features"), Grants{})
	if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), "pages") {
		t.Fatalf("features under an 8-page limit: %v, want ErrInvalidModule about pages", err)
	}
}

func TestInputTooLarge(t *testing.T) {
	r := newRuntime(t, Options{MaxInputBytes: 1024})
	m := compile(t, r, "features", Grants{})
	_, err := m.Pre(context.Background(), "", make([]byte, 2048))
	if !errors.Is(err, ErrInputTooLarge) || HTTPStatus(err) != 413 {
		t.Fatalf("err = %v (status %d), want ErrInputTooLarge 413", err, HTTPStatus(err))
	}
}

// wasmModule assembles a module from raw sections.
func wasmModule(sections ...[]byte) []byte {
	b := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	for _, s := range sections {
		b = append(b, s...)
	}
	return b
}

var (
	memMax1000   = []byte{5, 5, 1, 1, 1, 0xe8, 0x07} // memory: min 1, max 1000
	memMax1      = []byte{5, 4, 1, 1, 1, 1}          // memory: min 1, max 1
	exportMemory = []byte{7, 10, 1, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0}
)

func TestCompileRejects(t *testing.T) {
	r := newRuntime(t, Options{})
	tests := []struct {
		name, want string
		wasm       []byte
	}{
		{"empty", "empty module", nil},
		{"garbage", "does not compile", []byte("this is not webassembly at all")},
		{"truncated", "does not compile", wasmtest.BuildExample(t, "features")[:1000]},
		{"no memory", `does not export "memory"`, wasmModule()},
		{"memory max too high", "maximum of 1000 pages", wasmModule(memMax1000, exportMemory)},
		{"no abi exports", "does not export petrel_abi_version", wasmModule(memMax1, exportMemory)},
		{"non-WASI import", "imports env.petrel_evil", wasmtest.BuildExample(t, "badimport")},
		{"wrong ABI version", "ABI version 2", wasmtest.BuildExample(t, "badversion")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := r.Compile(context.Background(), tc.wasm, Grants{})
			if err == nil {
				_ = m.Close(context.Background())
				t.Fatal("Compile accepted the module")
			}
			if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidModule saying %q", err, tc.want)
			}
		})
	}
}

func cacheListing(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	files := map[string]time.Time{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files[p] = info.ModTime()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestCompilationCacheReused(t *testing.T) {
	dir := t.TempDir()
	wasm := wasmtest.BuildExample(t, "topk")
	ctx := context.Background()
	timeCompile := func() time.Duration {
		r, err := NewRuntime(ctx, Options{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close(ctx)
		start := time.Now()
		if _, err := r.Compile(ctx, wasm, Grants{}); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	first := timeCompile()
	after1 := cacheListing(t, dir)
	if len(after1) == 0 {
		t.Fatal("the cache directory is empty after a compile")
	}
	second := timeCompile()
	after2 := cacheListing(t, dir)
	if len(after2) != len(after1) {
		t.Fatalf("second Runtime wrote new cache files: %d then %d", len(after1), len(after2))
	}
	for p, mt := range after1 {
		if !after2[p].Equal(mt) {
			t.Errorf("cache file %s was rewritten by the second Runtime", p)
		}
	}
	t.Logf("compile with a cold cache %v, warm %v", first, second)
}

func TestSandboxAndGrants(t *testing.T) {
	r := newRuntime(t, Options{})
	type report struct {
		FileError  string `json:"file_error"`
		DirEntries *int   `json:"dir_entries"`
		UnixNano   int64  `json:"unix_nano"`
		Random     string `json:"random"`
	}
	run := func(g Grants) report {
		m := compile(t, r, "sandbox", g)
		ts, err := m.Pre(context.Background(), "", nil)
		if err != nil {
			t.Fatalf("sandbox %+v: %v", g, err)
		}
		var rep report
		if err := json.Unmarshal(ts[0].Data[4:], &rep); err != nil {
			t.Fatalf("report %q: %v", ts[0].Data, err)
		}
		return rep
	}
	none := run(Grants{})
	if none.FileError == "" || none.DirEntries != nil {
		t.Errorf("guest could read files: %+v", none)
	}
	if none.UnixNano != time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() {
		t.Errorf("guest without Clock sees %v, want the fake 2022-01-01", time.Unix(0, none.UnixNano).UTC())
	}
	if none.Random != "0000000000000000" {
		t.Errorf("guest without Random got %s, want zeros", none.Random)
	}
	all := run(Grants{Clock: true, Random: true})
	if d := time.Since(time.Unix(0, all.UnixNano)); d < -time.Hour || d > time.Hour {
		t.Errorf("guest with Clock sees %v", time.Unix(0, all.UnixNano))
	}
	if all.Random == "0000000000000000" {
		t.Error("guest with Random got zeros")
	}
	if all.FileError == "" {
		t.Error("grants opened the file system")
	}
}

func TestConcurrentCallsSharePool(t *testing.T) {
	r := newRuntime(t, Options{PoolSize: 2})
	m := compile(t, r, "features", Grants{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				body := []byte(`{"instances":[[` + strings.Repeat("1,", 3) + string(rune('0'+g)) + `]]}`)
				ts, err := m.Pre(context.Background(), "", body)
				if err != nil {
					errs <- err
					return
				}
				if got := math.Float32frombits(binary.LittleEndian.Uint32(ts[0].Data[12:])); got != float32(g) {
					errs <- errors.New("call " + string(rune('0'+i)) + " got another call's data")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(m.idle); n > 2 {
		t.Errorf("%d idle instances, pool size is 2", n)
	}
}

func TestClose(t *testing.T) {
	r := newRuntime(t, Options{})
	m := compile(t, r, "features", Grants{})
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := m.Pre(context.Background(), "", []byte(`{}`)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pre after Close: %v, want ErrClosed", err)
	}
	m2 := compile(t, r, "features", Grants{})
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Pre(context.Background(), "", []byte(`{}`)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pre after Runtime.Close: %v, want ErrClosed", err)
	}
	if _, err := r.Compile(context.Background(), []byte{1}, Grants{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Compile after Close: %v, want ErrClosed", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"zero", Options{}, true},
		{"too many pages", Options{MemoryLimitPages: 65537}, false},
		{"negative timeout", Options{CallTimeout: -1}, false},
		{"negative init", Options{InitTimeout: -1}, false},
		{"negative pool", Options{PoolSize: -1}, false},
		{"output too big", Options{MaxOutputBytes: 1 << 30}, false},
		{"negative input", Options{MaxInputBytes: -1}, false},
	}
	for _, tc := range tests {
		if err := tc.o.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if _, err := NewRuntime(context.Background(), Options{PoolSize: -1}); err == nil {
		t.Error("NewRuntime accepted bad options")
	}
}

func TestFrameRoundTrip(t *testing.T) {
	in := []models.Tensor{
		{Name: "a", DataType: models.FP32, Shape: []int64{2, 2}, Data: fp32(1, 2, 3, 4)},
		{Name: "s", DataType: models.Bytes, Shape: []int64{1}, Data: []byte{2, 0, 0, 0, 'h', 'i'}},
		{Name: "scalar", DataType: models.Int64, Shape: []int64{}, Data: make([]byte, 8)},
	}
	b, err := EncodeFrame(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("got %d tensors", len(out))
	}
	for i := range in {
		if out[i].Name != in[i].Name || out[i].DataType != in[i].DataType || !equalShape(out[i].Shape, in[i].Shape) || !bytes.Equal(out[i].Data, in[i].Data) {
			t.Errorf("tensor %d: got %+v, want %+v", i, out[i], in[i])
		}
	}
	for n := 0; n < len(b); n++ {
		if _, err := DecodeFrame(b[:n]); err == nil {
			t.Fatalf("truncated frame of %d/%d bytes decoded", n, len(b))
		}
	}
	if _, err := DecodeFrame(append(b, 0)); err == nil {
		t.Error("frame with a trailing byte decoded")
	}
	dup, _ := EncodeFrame([]models.Tensor{in[0], in[0]})
	if _, err := DecodeFrame(dup); err == nil {
		t.Error("frame with a duplicate name decoded")
	}
	if _, err := EncodeFrame([]models.Tensor{{Name: "x", DataType: models.FP32, Shape: []int64{3}, Data: fp32(1)}}); err == nil {
		t.Error("EncodeFrame accepted a tensor whose data does not match its shape")
	}
}

func TestHTTPStatus(t *testing.T) {
	tests := map[error]int{
		nil: 200, ErrClientInput: 400, ErrInputTooLarge: 413, ErrTimeout: 504, ErrClosed: 503,
		ErrTrap: 500, ErrOutOfMemory: 500, ErrTooLarge: 500, ErrTransformFailed: 500, ErrInvalidOutput: 500,
	}
	for err, want := range tests {
		if got := HTTPStatus(err); got != want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", err, got, want)
		}
	}
}
