package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/petrel-mesh/petrel/models/oip"
)

// The raw HTTP/1.1 client.
//
// A load generator on the same machine as the server takes CPU from it,
// and net/http's client takes a lot per request: two goroutines per
// connection (persistConn's read and write loops) that hand each request
// and response over channels, and some thirty allocations per round trip.
// At concurrency 64 on two cores that shows up as lost server throughput,
// and at concurrency 1 as added latency, in the same way for every server
// measured. perf_analyzer and wrk are lean C/C++ clients; this is the
// equivalent for plain-HTTP/1.1 runs:
//
//   - one TCP connection per worker and server (TCP_NODELAY, Go's
//     default), opened on first use and again after an error or a
//     "Connection: close", used only by the worker's goroutine;
//   - every request's bytes (request line, Host, Content-Type,
//     Content-Length, Inference-Header-Content-Length for binary bodies,
//     and the body) built once per target, and sent with one Write;
//   - the response parsed from a reusable bufio.Reader: status line,
//     headers (Content-Length, Transfer-Encoding: chunked, Connection),
//     and the body discarded (or kept in a reusable buffer, for tests),
//     strictly: anything malformed is a transport error and the
//     connection is dropped;
//   - no allocation per request once the connection is open.
//
// Deadlines bound every request (connect and I/O), so a server that stops
// answering costs an error, never a hang.

// Transports: the client that carries plain-HTTP/1.1 requests.
const (
	// TransportRawH1 is the lean raw client of this file (the default).
	TransportRawH1 = "raw-h1"
	// TransportNetHTTP sends every request through node/client (net/http).
	TransportNetHTTP = "nethttp"
)

// Transports lists the accepted Config.Transport values.
var Transports = []string{TransportRawH1, TransportNetHTTP}

// DefaultRawTimeout bounds each request of the raw client when
// Config.Timeout is zero.
const DefaultRawTimeout = time.Minute

// Limits of what the raw client accepts from a server.
const (
	rawReadBuffer = 32 << 10 // also the longest status or header line
	rawMaxHeaders = 128
	rawMaxBody    = 1 << 30
)

// errRaw wraps every protocol error of the raw client.
var errRaw = errors.New("raw-h1")

func rawErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errRaw, fmt.Sprintf(format, a...))
}

// rawRequest is a request prebuilt once and sent unchanged, read-only, by
// any number of workers.
type rawRequest struct {
	addr string // host:port to dial
	wire []byte // request line, headers, blank line and body
	head bool   // HEAD: the response has no body, whatever it says
}

// rawAddr returns the dial address, Host header and path prefix of a base
// URL, or ok false when the raw client cannot serve it: not plain
// http:// (it speaks no TLS), or with user information, a query or a
// fragment. The prefix is the URL's path without its trailing slash,
// which goes before every request path, as node/client does.
func rawAddr(base string) (addr, host, prefix string, ok bool) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", "", "", false
	}
	host, addr = u.Host, u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return addr, host, strings.TrimRight(u.EscapedPath(), "/"), true
}

// newRawRequest prebuilds a request of method (GET, HEAD or POST) for
// path on the server at base ("http://host:port"). GET and HEAD carry no
// body. headerLen is as in Config: the length of the JSON header of a
// binary body, or negative for an all-JSON body.
func newRawRequest(base, method, path string, body []byte, headerLen int) (*rawRequest, error) {
	addr, host, prefix, ok := rawAddr(base)
	if !ok {
		return nil, fmt.Errorf("%w: base URL %q: want http://host:port", errRaw, base)
	}
	if path == "" || path[0] != '/' {
		return nil, fmt.Errorf("%w: path %q: want an absolute path", errRaw, path)
	}
	path = prefix + path
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c == 0x7f {
			return nil, fmt.Errorf("%w: path %q: control character or space; escape it", errRaw, path)
		}
	}
	var b []byte
	switch method {
	case "GET", "HEAD":
		b = make([]byte, 0, 64+len(path)+len(host))
		b = append(b, method...)
		b = append(b, ' ')
		b = append(b, path...)
		b = append(b, " HTTP/1.1\r\nHost: "...)
		b = append(b, host...)
		b = append(b, "\r\nUser-Agent: petrel-bench\r\n\r\n"...)
	case "POST":
		if headerLen > len(body) {
			return nil, fmt.Errorf("%w: header length %d exceeds the %d-byte body", errRaw, headerLen, len(body))
		}
		b = make([]byte, 0, 192+len(path)+len(host)+len(body))
		b = append(b, "POST "...)
		b = append(b, path...)
		b = append(b, " HTTP/1.1\r\nHost: "...)
		b = append(b, host...)
		b = append(b, "\r\nUser-Agent: petrel-bench\r\nContent-Type: "...)
		if headerLen >= 0 {
			b = append(b, oip.ContentTypeBinary...)
			b = append(b, "\r\n"+oip.HeaderContentLength+": "...)
			b = strconv.AppendInt(b, int64(headerLen), 10)
		} else {
			b = append(b, oip.ContentTypeJSON...)
		}
		b = append(b, "\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n\r\n"...)
		b = append(b, body...)
	default:
		return nil, fmt.Errorf("%w: method %q: want GET, HEAD or POST", errRaw, method)
	}
	return &rawRequest{addr: addr, wire: b, head: method == "HEAD"}, nil
}

// rawConn is one worker's keep-alive connection to one server. Only its
// worker calls do; stop may be called from any goroutine.
type rawConn struct {
	addr    string
	timeout time.Duration
	ctx     context.Context // for dialling

	conn     net.Conn // nil: not connected
	br       *bufio.Reader
	reused   bool      // conn has carried a whole exchange
	deadline time.Time // conn's read and write deadline

	// keepBody keeps each response body in body (valid until the next
	// request); otherwise bodies are discarded.
	keepBody bool
	body     []byte

	mu      sync.Mutex // guards conn against stop, and stopped
	stopped bool
}

func newRawConn(ctx context.Context, addr string, timeout time.Duration) *rawConn {
	if timeout <= 0 {
		timeout = DefaultRawTimeout
	}
	return &rawConn{addr: addr, timeout: timeout, ctx: ctx}
}

// stop makes the request in flight fail at once and every later one fail:
// the run is over.
func (c *rawConn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.conn != nil {
		c.conn.SetDeadline(time.Unix(1, 0))
	}
}

// close drops the connection.
func (c *rawConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

var errRawStopped = errors.New("raw-h1: run stopped")

// dial opens the connection; now is the time the request started.
func (c *rawConn) dial(now time.Time) error {
	d := net.Dialer{Timeout: c.timeout}
	conn, err := d.DialContext(c.ctx, "tcp", c.addr)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		conn.Close()
		return errRawStopped
	}
	c.deadline = now.Add(2 * c.timeout)
	if err := conn.SetDeadline(c.deadline); err != nil {
		conn.Close()
		return err
	}
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, rawReadBuffer)
	} else {
		c.br.Reset(conn)
	}
	c.conn, c.reused = conn, false
	return nil
}

// refreshDeadline keeps at least timeout ahead of now. Setting a deadline
// for every request costs a timer update each; moving it by 2×timeout
// once it is less than timeout away costs one per timeout.
func (c *rawConn) refreshDeadline(now time.Time) error {
	if c.deadline.Sub(now) >= c.timeout {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errRawStopped
	}
	c.deadline = now.Add(2 * c.timeout)
	return c.conn.SetDeadline(c.deadline)
}

// do sends req and reads the whole response; now is the time the request
// started (the caller reads the clock anyway). It returns the status, or
// 0 and an error when there was no well-formed answer. After an error,
// the connection is closed and the next call opens a new one.
//
// A request on a reused connection that fails before a single byte of
// the response arrived, by an orderly close or a reset, is sent once more
// on a new connection: the server closed the idle connection as the
// request went out, which is no answer about the request (net/http
// retries such requests too).
func (c *rawConn) do(req *rawRequest, now time.Time) (int, error) {
	for attempt := 0; ; attempt++ {
		if c.conn == nil {
			if err := c.dial(now); err != nil {
				return 0, err
			}
		}
		reused := c.reused
		status, retryable, err := c.roundTrip(req, now)
		if err == nil {
			return status, nil
		}
		c.close()
		if !reused || !retryable || attempt > 0 || c.ctx.Err() != nil {
			return 0, err
		}
	}
}

// roundTrip is one exchange on the open connection. retryable reports an
// error that came before any byte of the response, from a connection the
// server closed.
func (c *rawConn) roundTrip(req *rawRequest, now time.Time) (status int, retryable bool, err error) {
	if err := c.refreshDeadline(now); err != nil {
		return 0, false, err
	}
	if _, err := c.conn.Write(req.wire); err != nil {
		return 0, isNoData(err), err
	}
	// The status line, read here to tell an answer that never began.
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, len(line) == 0 && isNoData(err), lineError(line, err)
	}
	for {
		status, closeAfter, bodyKind, n, err := c.readHead(line)
		if err != nil {
			return 0, false, err
		}
		if status >= 100 && status < 200 {
			if status == 101 {
				return 0, false, rawErrorf("unexpected 101 Switching Protocols")
			}
			// An interim response: the final one follows.
			if line, err = c.br.ReadSlice('\n'); err != nil {
				return 0, false, noEOF(lineError(line, err))
			}
			continue
		}
		if req.head || status == 204 || status == 304 {
			bodyKind = bodyNone
		}
		if err := c.readBody(bodyKind, n); err != nil {
			return 0, false, err
		}
		if closeAfter || bodyKind == bodyToEOF {
			c.close()
		} else {
			c.reused = true
		}
		return status, false, nil
	}
}

// Kinds of response body framing.
const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyToEOF
)

// readLine returns the next line without its CRLF (valid until the next
// read), strictly: the line must end in CRLF and fit the buffer. An EOF
// is unexpected: readLine reads inside a response.
func (c *rawConn) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return nil, noEOF(lineError(line, err))
	}
	return crlf(line)
}

// lineError describes a failed ReadSlice that returned line.
func lineError(line []byte, err error) error {
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return rawErrorf("line longer than %d bytes", rawReadBuffer)
	case err == io.EOF && len(line) > 0:
		return io.ErrUnexpectedEOF
	}
	return err
}

// crlf strips the CRLF that must end line.
func crlf(line []byte) ([]byte, error) {
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, rawErrorf("line %q does not end in CRLF", line)
	}
	return line[:len(line)-2], nil
}

// readHead parses the status line (as ReadSlice returned it) and reads
// the headers. n is the Content-Length for bodyLength.
func (c *rawConn) readHead(statusLine []byte) (status int, closeAfter bool, kind int, n int64, err error) {
	line, err := crlf(statusLine)
	if err != nil {
		return 0, false, 0, 0, err
	}
	// "HTTP/1.x SSS[ reason]"
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return 0, false, 0, 0, rawErrorf("malformed status line %q", line)
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return 0, false, 0, 0, rawErrorf("malformed status line %q", line)
		}
		status = status*10 + int(d-'0')
	}
	if status < 100 {
		return 0, false, 0, 0, rawErrorf("malformed status line %q", line)
	}
	http10 := line[7] == '0'
	keepAlive := false
	n = -1
	chunked := false
	for i := 0; ; i++ {
		if i > rawMaxHeaders {
			return 0, false, 0, 0, rawErrorf("more than %d header lines", rawMaxHeaders)
		}
		line, err := c.readLine()
		if err != nil {
			return 0, false, 0, 0, err
		}
		if len(line) == 0 {
			break
		}
		colon := -1
		for j, b := range line {
			if b == ':' {
				colon = j
				break
			}
			if !isTokenChar(b) {
				return 0, false, 0, 0, rawErrorf("malformed header line %q", line)
			}
		}
		if colon <= 0 {
			return 0, false, 0, 0, rawErrorf("malformed header line %q", line)
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		switch {
		case asciiEqualFold(name, "Content-Length"):
			v, ok := parseDecimal(value)
			if !ok || (n >= 0 && v != n) {
				return 0, false, 0, 0, rawErrorf("invalid Content-Length %q", value)
			}
			n = v
		case asciiEqualFold(name, "Transfer-Encoding"):
			if chunked || !asciiEqualFold(value, "chunked") {
				return 0, false, 0, 0, rawErrorf("unsupported Transfer-Encoding %q", value)
			}
			chunked = true
		case asciiEqualFold(name, "Connection"):
			for tok := range tokens(value) {
				switch {
				case asciiEqualFold(tok, "close"):
					closeAfter = true
				case asciiEqualFold(tok, "keep-alive"):
					keepAlive = true
				}
			}
		}
	}
	if http10 && !keepAlive {
		closeAfter = true
	}
	switch {
	case chunked && n >= 0:
		return 0, false, 0, 0, rawErrorf("both Transfer-Encoding and Content-Length")
	case chunked:
		kind = bodyChunked
	case n >= 0:
		kind = bodyLength
	default:
		kind = bodyToEOF
	}
	return status, closeAfter, kind, n, nil
}

// readBody reads (and keeps or discards) a body of the given framing.
func (c *rawConn) readBody(kind int, n int64) error {
	c.body = c.body[:0]
	switch kind {
	case bodyNone:
		return nil
	case bodyLength:
		return c.take(n)
	case bodyToEOF:
		return c.takeToEOF()
	}
	// Chunked.
	var total int64
	for {
		line, err := c.readLine()
		if err != nil {
			return noEOF(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return rawErrorf("malformed chunk size line %q", line)
		}
		if size == 0 {
			break
		}
		if total += size; total > rawMaxBody {
			return rawErrorf("body over %d bytes", rawMaxBody)
		}
		if err := c.take(size); err != nil {
			return err
		}
		if line, err = c.readLine(); err != nil {
			return noEOF(err)
		}
		if len(line) != 0 {
			return rawErrorf("chunk data longer than its size")
		}
	}
	// Trailers, up to the blank line.
	for i := 0; ; i++ {
		if i > rawMaxHeaders {
			return rawErrorf("more than %d trailer lines", rawMaxHeaders)
		}
		line, err := c.readLine()
		if err != nil {
			return noEOF(err)
		}
		if len(line) == 0 {
			return nil
		}
	}
}

// take reads n bytes of body, keeping or discarding them.
func (c *rawConn) take(n int64) error {
	if n > rawMaxBody || int64(len(c.body))+n > rawMaxBody {
		return rawErrorf("body over %d bytes", rawMaxBody)
	}
	if !c.keepBody {
		_, err := c.br.Discard(int(n))
		return noEOF(err)
	}
	start := len(c.body)
	c.body = growLen(c.body, start+int(n))
	_, err := io.ReadFull(c.br, c.body[start:])
	return noEOF(err)
}

// takeToEOF reads a body that ends with the connection.
func (c *rawConn) takeToEOF() error {
	if !c.keepBody {
		_, err := c.br.Discard(rawMaxBody + 1)
		if err == io.EOF {
			return nil
		}
		if err == nil {
			return rawErrorf("body over %d bytes", rawMaxBody)
		}
		return err
	}
	for {
		if len(c.body) == cap(c.body) {
			if len(c.body) > rawMaxBody {
				return rawErrorf("body over %d bytes", rawMaxBody)
			}
			c.body = append(c.body, 0)[:len(c.body)]
		}
		k, err := c.br.Read(c.body[len(c.body):cap(c.body)])
		c.body = c.body[:len(c.body)+k]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// growLen returns b with length n, reusing its array when large enough.
func growLen(b []byte, n int) []byte {
	if n <= cap(b) {
		return b[:n]
	}
	nb := make([]byte, n, max(n, 2*cap(b)))
	copy(nb, b)
	return nb
}

// noEOF turns an EOF inside a response into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// isNoData reports the errors of a connection that the server closed: an
// orderly close, a reset, a broken pipe.
func isNoData(err error) bool {
	return err == io.EOF || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// isTokenChar reports whether b may appear in a header name (RFC 9110
// tchar).
func isTokenChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// trimOWS strips spaces and tabs at both ends.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// asciiEqualFold compares b and s case-insensitively in ASCII, without
// converting either.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// tokens yields the comma-separated elements of a header value, trimmed.
func tokens(v []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(v) > 0 {
			i := 0
			for i < len(v) && v[i] != ',' {
				i++
			}
			if tok := trimOWS(v[:i]); len(tok) > 0 && !yield(tok) {
				return
			}
			if i == len(v) {
				return
			}
			v = v[i+1:]
		}
	}
}

// parseDecimal parses a non-negative decimal of at most 18 digits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		v = v*10 + int64(d-'0')
	}
	return v, true
}

// parseChunkSize parses "HEX[;ext...]" with at most 15 hex digits.
func parseChunkSize(line []byte) (int64, bool) {
	var v int64
	i := 0
	for ; i < len(line); i++ {
		d := line[i]
		switch {
		case '0' <= d && d <= '9':
			d -= '0'
		case 'a' <= d && d <= 'f':
			d -= 'a' - 10
		case 'A' <= d && d <= 'F':
			d -= 'A' - 10
		default:
			goto end
		}
		if i >= 15 {
			return 0, false
		}
		v = v<<4 | int64(d)
	}
end:
	if i == 0 {
		return 0, false
	}
	rest := trimOWS(line[i:])
	if len(rest) > 0 && rest[0] != ';' {
		return 0, false
	}
	return v, true
}
