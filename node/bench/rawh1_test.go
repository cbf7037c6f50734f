package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/node/client"
)

// connCounter counts the connections an httptest.Server accepted.
type connCounter struct{ n atomic.Int64 }

func (c *connCounter) hook(_ net.Conn, s http.ConnState) {
	if s == http.StateNew {
		c.n.Add(1)
	}
}

// newCountingServer starts an httptest.Server that counts connections.
func newCountingServer(t *testing.T, h http.Handler) (*httptest.Server, *connCounter) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	cc := &connCounter{}
	srv.Config.ConnState = cc.hook
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, cc
}

// testRawConn returns a raw connection to base that keeps bodies.
func testRawConn(t *testing.T, base string, timeout time.Duration) *rawConn {
	t.Helper()
	addr, _, _, ok := rawAddr(base)
	if !ok {
		t.Fatalf("rawAddr(%q) not ok", base)
	}
	c := newRawConn(context.Background(), addr, timeout)
	c.keepBody = true
	t.Cleanup(c.close)
	return c
}

func mustRawRequest(t *testing.T, base, method, path string, body []byte, headerLen int) *rawRequest {
	t.Helper()
	r, err := newRawRequest(base, method, path, body, headerLen)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRawRequestBytes(t *testing.T) {
	cases := []struct {
		method    string
		body      string
		headerLen int
		want      string
	}{
		{"GET", "ignored", -1, "GET /p?q=1 HTTP/1.1\r\nHost: h:81\r\nUser-Agent: petrel-bench\r\n\r\n"},
		{"HEAD", "", -1, "HEAD /p?q=1 HTTP/1.1\r\nHost: h:81\r\nUser-Agent: petrel-bench\r\n\r\n"},
		{"POST", `{"a":1}`, -1, "POST /p?q=1 HTTP/1.1\r\nHost: h:81\r\nUser-Agent: petrel-bench\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"},
		{"POST", "{}\x01\x02", 2, "POST /p?q=1 HTTP/1.1\r\nHost: h:81\r\nUser-Agent: petrel-bench\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: 2\r\nContent-Length: 4\r\n\r\n{}\x01\x02"},
		{"POST", "", -1, "POST /p?q=1 HTTP/1.1\r\nHost: h:81\r\nUser-Agent: petrel-bench\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"},
	}
	for _, c := range cases {
		r := mustRawRequest(t, "http://h:81", c.method, "/p?q=1", []byte(c.body), c.headerLen)
		if string(r.wire) != c.want {
			t.Errorf("%s %q: wire\n%q\nwant\n%q", c.method, c.body, r.wire, c.want)
		}
		if r.addr != "h:81" {
			t.Errorf("addr %q", r.addr)
		}
	}
	if r := mustRawRequest(t, "http://example.test", "GET", "/", nil, -1); r.addr != "example.test:80" || !bytes.Contains(r.wire, []byte("Host: example.test\r\n")) {
		t.Errorf("default port: addr %q wire %q", r.addr, r.wire)
	}
	if r := mustRawRequest(t, "http://[::1]:9/api/", "GET", "/v2/health/live", nil, -1); r.addr != "[::1]:9" || !bytes.HasPrefix(r.wire, []byte("GET /api/v2/health/live HTTP/1.1\r\nHost: [::1]:9\r\n")) {
		t.Errorf("prefix and IPv6: addr %q wire %q", r.addr, r.wire)
	}
	for _, bad := range []struct{ base, method, path string }{
		{"https://h:1", "GET", "/"},
		{"http://h:1/?q=1", "GET", "/"},
		{"http://u:p@h:1", "GET", "/"},
		{"h:1", "GET", "/"},
		{"http://h:1", "PUT", "/"},
		{"http://h:1", "GET", "rel"},
		{"http://h:1", "GET", "/a b"},
		{"http://h:1", "GET", "/a\r\nX: y"},
	} {
		if _, err := newRawRequest(bad.base, bad.method, bad.path, nil, -1); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := newRawRequest("http://h:1", "POST", "/", []byte("ab"), 3); err == nil {
		t.Error("header length beyond the body accepted")
	}
}

// TestRawConnResponses runs one connection through the response shapes a
// net/http server sends, checking status, body and connection reuse.
func TestRawConnResponses(t *testing.T) {
	big := strings.Repeat("0123456789", 10000) // past the read buffer
	var gotBody atomic.Value
	srv, conns := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBody.Store(r.Method + " " + r.Header.Get("Content-Type") + " " + r.Header.Get("Inference-Header-Content-Length") + " " + string(b))
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			io.WriteString(w, big)
		case "/chunked":
			io.WriteString(w, "chunk one,")
			w.(http.Flusher).Flush()
			io.WriteString(w, big)
			w.(http.Flusher).Flush()
			io.WriteString(w, "end")
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "abc")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Sum", "6")
		case "/missing":
			http.Error(w, "no such thing", http.StatusNotFound)
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/empty": // GET no-op: 200 with an empty body
		}
	}))
	c := testRawConn(t, srv.URL, 5*time.Second)
	cases := []struct {
		method, path string
		body         string
		headerLen    int
		status       int
		want         string
	}{
		{"GET", "/empty", "", -1, 200, ""},
		{"GET", "/length", "", -1, 200, "hello"},
		{"POST", "/length", `{"x":1}`, -1, 200, "hello"},
		{"GET", "/big", "", -1, 200, big},
		{"GET", "/chunked", "", -1, 200, "chunk one," + big + "end"},
		{"POST", "/chunked", "{}\x00\x01", 2, 200, "chunk one," + big + "end"},
		{"GET", "/trailer", "", -1, 200, "abc"},
		{"GET", "/missing", "", -1, 404, "no such thing\n"},
		{"GET", "/nocontent", "", -1, 204, ""},
		{"HEAD", "/length", "", -1, 200, ""},
		{"GET", "/empty", "", -1, 200, ""},
	}
	for round := range 2 {
		for _, tc := range cases {
			req := mustRawRequest(t, srv.URL, tc.method, tc.path, []byte(tc.body), tc.headerLen)
			status, err := c.do(req, time.Now())
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			if status != tc.status || string(c.body) != tc.want {
				t.Errorf("%s %s: status %d body %d bytes %.40q, want %d and %d bytes %.40q", tc.method, tc.path, status, len(c.body), c.body, tc.status, len(tc.want), tc.want)
			}
			if tc.method == "POST" {
				ct := "application/json"
				hl := ""
				if tc.headerLen >= 0 {
					ct, hl = "application/octet-stream", strconv.Itoa(tc.headerLen)
				}
				if want := "POST " + ct + " " + hl + " " + tc.body; gotBody.Load() != want {
					t.Errorf("server saw %q, want %q", gotBody.Load(), want)
				}
			}
		}
		if got := conns.n.Load(); got != 1 {
			t.Errorf("round %d: %d connections for %d requests, want one kept alive", round, got, (round+1)*len(cases))
		}
	}
}

func TestRawConnReconnectsAfterConnectionClose(t *testing.T) {
	var n atomic.Int64
	srv, conns := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "ok")
	}))
	c := testRawConn(t, srv.URL, 5*time.Second)
	req := mustRawRequest(t, srv.URL, "GET", "/", nil, -1)
	for i := range 10 {
		status, err := c.do(req, time.Now())
		if err != nil || status != 200 || string(c.body) != "ok" {
			t.Fatalf("request %d: status %d body %q err %v", i, status, c.body, err)
		}
	}
	// Requests 2, 4, ... close: connections serve requests 1-2, 3-4, ...
	if got := conns.n.Load(); got != 5 {
		t.Errorf("%d connections, want 5", got)
	}
}

// scriptServer is a TCP server that reads each request (head, and body by
// Content-Length) and answers with serve, which may write anything and
// returns false to close the connection.
func scriptServer(t *testing.T, serve func(conn, req int, c net.Conn) bool) (base string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = &atomic.Int64{}
	var wg sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			k := int(conns.Add(1))
			wg.Go(func() {
				defer c.Close()
				go func() { <-done; c.Close() }()
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					n := -1
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if line == "\r\n" {
							break
						}
						if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
							n, _ = strconv.Atoi(strings.TrimSpace(v))
						}
					}
					if n > 0 {
						if _, err := br.Discard(n); err != nil {
							return
						}
					}
					if !serve(k, i, c) {
						return
					}
				}
			})
		}
	})
	return "http://" + ln.Addr().String(), conns
}

// TestRawConnStrict feeds malformed and unusual answers: the malformed
// ones are errors that drop the connection, never a hang.
func TestRawConnStrict(t *testing.T) {
	cases := []struct {
		name   string
		resp   string
		status int    // 0: want an error
		body   string // for successes
		closes bool   // the client must drop the connection
	}{
		{"content length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 200, "abc", false},
		{"lower-case headers", "HTTP/1.1 200 OK\r\ncontent-length:3\r\nconnection: keep-alive\r\n\r\nabc", 200, "abc", false},
		{"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 200, "", false},
		{"same length twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", 200, "ab", false},
		{"chunked with extension and trailer", "HTTP/1.1 201 Created\r\nTransfer-Encoding: Chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", 201, "abc0123456789", false},
		{"connection close", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive, Close\r\n\r\nx", 200, "x", true},
		{"body to EOF", "HTTP/1.1 200 OK\r\n\r\nuntil the end", 200, "until the end", true},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, "x", true},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx", 200, "x", false},
		{"interim 100", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, "x", false},
		{"503", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy", 503, "busy", false},

		{"bad status line", "HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", 0, "", true},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", 0, "", true},
		{"HTTP/2 status line", "HTTP/2 200\r\n\r\n", 0, "", true},
		{"status without space", "HTTP/1.1 200OK\r\n\r\n", 0, "", true},
		{"status 099", "HTTP/1.1 099 X\r\n\r\n", 0, "", true},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", 0, "", true},
		{"space in header name", "HTTP/1.1 200 OK\r\nContent Length: 0\r\n\r\n", 0, "", true},
		{"folded header", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", 0, "", true},
		{"no colon", "HTTP/1.1 200 OK\r\nContent-Length 0\r\n\r\n", 0, "", true},
		{"negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, "", true},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 0, "", true},
		{"length list", "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\na", 0, "", true},
		{"chunked and length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, "", true},
		{"gzip transfer encoding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 0, "", true},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\nabc\r\n0\r\n\r\n", 0, "", true},
		{"chunk longer than size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", 0, "", true},
		{"huge chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 0, "", true},
		{"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", 0, "", true},
		{"cut in headers", "HTTP/1.1 200 OK\r\nContent-Le", 0, "", true},
		{"cut in body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, "", true},
		{"cut in chunks", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", 0, "", true},
		{"header line too long", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", rawReadBuffer) + "\r\n\r\n", 0, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base, conns := scriptServer(t, func(conn, req int, c net.Conn) bool {
				if conn == 1 && req == 0 {
					io.WriteString(c, tc.resp)
					return !tc.closes // a body to EOF and a cut answer need the close
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
				return true
			})
			c := testRawConn(t, base, 2*time.Second)
			req := mustRawRequest(t, base, "POST", "/", []byte("{}"), -1)
			start := time.Now()
			status, err := c.do(req, start)
			if took := time.Since(start); took > time.Second {
				t.Errorf("took %v", took)
			}
			if tc.status == 0 {
				if err == nil {
					t.Fatalf("status %d body %q: want an error", status, c.body)
				}
				if status != 0 {
					t.Errorf("status %d with error %v", status, err)
				}
			} else if err != nil || status != tc.status || string(c.body) != tc.body {
				t.Fatalf("status %d body %q err %v, want %d %q", status, c.body, err, tc.status, tc.body)
			}
			if dropped := c.conn == nil; dropped != tc.closes {
				t.Errorf("connection dropped %v, want %v (err %v)", dropped, tc.closes, err)
			}
			// The next request works, on a new connection when dropped.
			status, err = c.do(req, time.Now())
			if err != nil || status != 200 || string(c.body) != "next" {
				t.Fatalf("next request: status %d body %q err %v", status, c.body, err)
			}
			want := int64(1)
			if tc.closes {
				want = 2
			}
			if got := conns.Load(); got != want {
				t.Errorf("%d connections, want %d", got, want)
			}
		})
	}
}

func TestRawConnServerGoesAway(t *testing.T) {
	t.Run("closes mid-response", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, bw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
			bw.Flush()
			conn.Close()
		}))
		defer srv.Close()
		c := testRawConn(t, srv.URL, 5*time.Second)
		start := time.Now()
		_, err := c.do(mustRawRequest(t, srv.URL, "GET", "/", nil, -1), start)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("err = %v, want unexpected EOF", err)
		}
		if time.Since(start) > 2*time.Second || c.conn != nil {
			t.Errorf("took %v, connection kept %v", time.Since(start), c.conn != nil)
		}
	})
	t.Run("stalls mid-response", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		base, _ := scriptServer(t, func(_, _ int, c net.Conn) bool {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
			<-release
			return false
		})
		c := testRawConn(t, base, 100*time.Millisecond)
		start := time.Now()
		_, err := c.do(mustRawRequest(t, base, "GET", "/", nil, -1), start)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("err = %v, want a deadline error", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("took %v with a 100ms timeout", took)
		}
	})
	t.Run("closes idle keep-alive connection", func(t *testing.T) {
		// One answer per connection, without saying so: the second request
		// on a connection meets a closed one and is sent again.
		base, conns := scriptServer(t, func(_, _ int, c net.Conn) bool {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return false
		})
		c := testRawConn(t, base, 2*time.Second)
		req := mustRawRequest(t, base, "POST", "/", []byte("{}"), -1)
		for i := range 4 {
			if status, err := c.do(req, time.Now()); err != nil || status != 200 {
				t.Fatalf("request %d: status %d err %v", i, status, err)
			}
			time.Sleep(5 * time.Millisecond) // lets the close arrive
		}
		if got := conns.Load(); got != 4 {
			t.Errorf("%d connections, want 4", got)
		}
	})
	t.Run("refused", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		base := "http://" + ln.Addr().String()
		ln.Close()
		c := testRawConn(t, base, time.Second)
		if _, err := c.do(mustRawRequest(t, base, "GET", "/", nil, -1), time.Now()); err == nil {
			t.Error("no error from a closed port")
		}
	})
}

func TestRawConnStop(t *testing.T) {
	base, _ := scriptServer(t, func(_, _ int, c net.Conn) bool {
		time.Sleep(time.Second)
		return false
	})
	c := testRawConn(t, base, time.Minute)
	go func() { time.Sleep(20 * time.Millisecond); c.stop() }()
	start := time.Now()
	if _, err := c.do(mustRawRequest(t, base, "GET", "/", nil, -1), start); err == nil {
		t.Error("no error after stop")
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("stop took %v to end the request", took)
	}
	if _, err := c.do(mustRawRequest(t, base, "GET", "/", nil, -1), time.Now()); err == nil {
		t.Error("a stopped connection sent a request")
	}
}

func TestParseHelpers(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "a": 10, "FF": 255, "10;ext=1": 16, "1 ; x": 1, "fffffffffffffff": 1<<60 - 1} {
		if v, ok := parseChunkSize([]byte(in)); !ok || v != want {
			t.Errorf("parseChunkSize(%q) = %d, %v", in, v, ok)
		}
	}
	for _, in := range []string{"", ";x", "-1", "0x1", "1 2", "1000000000000000"} {
		if _, ok := parseChunkSize([]byte(in)); ok {
			t.Errorf("parseChunkSize(%q) accepted", in)
		}
	}
	for _, in := range []string{"", "+1", "1.0", " 1", "1234567890123456789"} {
		if _, ok := parseDecimal([]byte(in)); ok {
			t.Errorf("parseDecimal(%q) accepted", in)
		}
	}
	var toks []string
	for tok := range tokens([]byte(" a, ,B ,c")) {
		toks = append(toks, string(tok))
	}
	if fmt.Sprint(toks) != "[a B c]" {
		t.Errorf("tokens = %q", toks)
	}
	if !asciiEqualFold([]byte("Content-LENGTH"), "content-length") || asciiEqualFold([]byte("Content-Lengtx"), "content-length") {
		t.Error("asciiEqualFold")
	}
}

// The zero-allocation proof needs a server that allocates nothing in this
// process: testing.AllocsPerRun counts the whole process. So the
// httptest.Server runs in a child: this test binary again, in server mode.
const helperServerEnv = "PETREL_BENCH_HELPER_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(helperServerEnv) == "1" {
		helperServer()
		return
	}
	os.Exit(m.Run())
}

// helperServer serves the responses the allocation test asks for, prints
// the server's URL and runs until stdin closes.
func helperServer() {
	body := bytes.Repeat([]byte(`{"outputs":[]}`), 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/v2/health/live":
		case "/infer":
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		case "/chunked":
			w.Write(body)
			w.(http.Flusher).Flush()
			w.Write(body)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	fmt.Println(srv.URL)
	io.Copy(io.Discard, os.Stdin)
	srv.Close()
}

// startHelperServer starts helperServer in a child process.
func startHelperServer(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperServerEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper server: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestRawConnZeroAllocs(t *testing.T) {
	base := startHelperServer(t)
	nc := newTestClient(t, base)
	body := bytes.Repeat([]byte("x"), 4000)
	for _, tc := range []struct {
		name, method, path string
		body               []byte
	}{
		{"GET no-op", "GET", "/v2/health/live", nil},
		{"POST, Content-Length answer", "POST", "/infer", body},
		{"POST, chunked answer", "POST", "/chunked", body},
	} {
		req := mustRawRequest(t, base, tc.method, tc.path, tc.body, -1)
		for _, keep := range []bool{false, true} {
			c := testRawConn(t, base, time.Minute)
			c.keepBody = keep
			var failed error
			allocs := testing.AllocsPerRun(2000, func() {
				if status, err := c.do(req, time.Now()); err != nil || status != 200 {
					failed = fmt.Errorf("status %d err %v", status, err)
				}
			})
			if failed != nil {
				t.Fatalf("%s: %v", tc.name, failed)
			}
			if allocs != 0 {
				t.Errorf("%s (keep body %v): %.2f allocations per request, want 0", tc.name, keep, allocs)
			}
		}
		// For comparison: the same request over net/http.
		ctx := context.Background()
		allocs := testing.AllocsPerRun(500, func() {
			if tc.method == "GET" {
				nc.Get(ctx, tc.path)
			} else {
				nc.Post(ctx, tc.path, tc.body, -1, nil)
			}
		})
		t.Logf("%s: 0 allocations per request raw, %.0f over net/http (node/client)", tc.name, allocs)
	}
}

// TestRunTransportsAgree runs the same loads over both transports: the
// same counts, the same report shape, and the raw one on one connection
// per worker.
func TestRunTransportsAgree(t *testing.T) {
	cs := &countingServer{headers: map[string]int{}}
	srv, conns := newCountingServer(t, cs)
	c := newTestClient(t, srv.URL)
	var reps [2]Report
	for i, tr := range []string{TransportNetHTTP, TransportRawH1} {
		before := conns.n.Load()
		rep, err := Run(context.Background(), Config{
			Client: c, URL: srv.URL, Transport: tr, Path: "/infer", Body: []byte("payload"), HeaderLen: 3,
			Concurrency: 4, MaxRequests: 100, Rows: 2,
		})
		if err != nil {
			t.Fatal(err)
		}
		reps[i] = rep
		if tr == TransportRawH1 {
			if got := conns.n.Load() - before; got != 4 {
				t.Errorf("raw: %d connections for 4 workers", got)
			}
		}
	}
	if cs.n.Load() != 200 || cs.badBody != 0 || cs.headers["POST 3 application/octet-stream"] != 200 {
		t.Errorf("server saw %d requests, %d bad bodies, headers %v", cs.n.Load(), cs.badBody, cs.headers)
	}
	if reps[0].Client != "net/http h1" || reps[1].Client != TransportRawH1 {
		t.Errorf("clients %q and %q", reps[0].Client, reps[1].Client)
	}
	for _, rep := range reps {
		if rep.Requests != 100 || rep.Errors != 10 || rep.ErrorsByStatus[500] != 10 || rep.FirstError != "status 500" {
			t.Errorf("%s: requests %d errors %d %v first %q", rep.Client, rep.Requests, rep.Errors, rep.ErrorsByStatus, rep.FirstError)
		}
		if rep.Concurrency != 4 || rep.Throughput <= 0 || rep.RowsPerSec != 2*rep.Throughput || rep.Elapsed <= 0 {
			t.Errorf("%s: concurrency %d throughput %v rows/s %v elapsed %v", rep.Client, rep.Concurrency, rep.Throughput, rep.RowsPerSec, rep.Elapsed)
		}
		if !(rep.Min >= time.Millisecond && rep.Min <= rep.P50 && rep.P50 <= rep.P90 && rep.P90 <= rep.P99 && rep.P99 <= rep.Max && rep.Mean >= rep.Min) {
			t.Errorf("%s: min %v p50 %v p90 %v p99 %v max %v mean %v", rep.Client, rep.Min, rep.P50, rep.P90, rep.P99, rep.Max, rep.Mean)
		}
	}
}

func TestRunRawWithoutClient(t *testing.T) {
	srv, conns := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	rep, err := Run(context.Background(), Config{URL: srv.URL, Path: "/v2/health/live", MaxRequests: 50, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 50 || rep.Errors != 0 || rep.Client != TransportRawH1 || conns.n.Load() != 2 {
		t.Errorf("requests %d errors %d client %q connections %d", rep.Requests, rep.Errors, rep.Client, conns.n.Load())
	}
	// Without a client, only the raw transport can run.
	if _, err := Run(context.Background(), Config{URL: srv.URL, Transport: TransportNetHTTP, Path: "/", MaxRequests: 1}); err == nil {
		t.Error("nethttp without a client accepted")
	}
	if _, err := Run(context.Background(), Config{URL: srv.URL, Transport: "curl", Path: "/", MaxRequests: 1}); err == nil {
		t.Error("unknown transport accepted")
	}
	// An h2 client goes through net/http whatever the transport.
	h2, err := client.New(client.Config{BaseURL: srv.URL, Protocol: client.HTTP2})
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	h1 := newTestClient(t, srv.URL)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{URL: srv.URL}, TransportRawH1},
		{Config{Client: h1, URL: srv.URL}, TransportRawH1},
		{Config{Client: h1}, "net/http h1"},
		{Config{Client: h1, URL: srv.URL, Transport: TransportNetHTTP}, "net/http h1"},
		{Config{Client: h2, URL: srv.URL}, "net/http h2"},
	} {
		if got := ClientName(c.cfg); got != c.want {
			t.Errorf("ClientName(%+v) = %q, want %q", c.cfg, got, c.want)
		}
	}
	if !useRaw(TransportRawH1, nil, srv.URL) || useRaw(TransportRawH1, h2, srv.URL) || useRaw(TransportRawH1, nil, "https://x:1") || useRaw(TransportNetHTTP, nil, srv.URL) {
		t.Error("useRaw")
	}
}

// A base URL with a path prefix reaches the same paths over both
// transports.
func TestRunPathPrefix(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv, _ := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Host+r.URL.Path]++
		mu.Unlock()
	}))
	base := srv.URL + "/pre/"
	c := newTestClient(t, base)
	eachTransport(t, func(t *testing.T, tr string) {
		rep, err := Run(context.Background(), Config{Client: c, URL: base, Transport: tr, Path: "/x", MaxRequests: 3})
		if err != nil || rep.Errors != 0 || rep.Client != wantClient(tr) {
			t.Fatalf("err %v, %d errors, client %q", err, rep.Errors, rep.Client)
		}
	})
	if want := strings.TrimPrefix(srv.URL, "http://") + "/pre/x"; seen[want] != 6 || len(seen) != 1 {
		t.Errorf("server saw %v, want 6 × %s", seen, want)
	}
}
