// Package client is a small Open Inference Protocol client for Petrel
// nodes (and any KServe v2 / Triton server) over HTTP/1.1, HTTP/2 or
// HTTP/3, with JSON or binary tensors. The CLI's `petrel infer` and
// `petrel bench` use it.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Protocols.
const (
	HTTP1 = "h1"
	HTTP2 = "h2"
	HTTP3 = "h3"
)

// Config configures a Client.
type Config struct {
	// BaseURL is "http://host:port" or "https://host:port". HTTP/3 always
	// uses TLS, whatever the scheme says.
	BaseURL string
	// Protocol is h1, h2 or h3. Default h1.
	Protocol string
	// CAFile is a PEM bundle to trust (e.g. a node's development
	// certificate); Insecure skips verification (development only).
	CAFile   string
	Insecure bool
	// MaxConnsPerHost bounds TCP connections (h1); 0 = unlimited.
	MaxConnsPerHost int
	// Timeout bounds each request; 0 = none.
	Timeout time.Duration
}

// Client sends inference requests.
type Client struct {
	base   string
	proto  string
	hc     *http.Client
	closer io.Closer
}

// New builds a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("base URL %q: want http://host:port or https://host:port", cfg.BaseURL)
	}
	// The session cache lets TLS and QUIC resume, and QUIC send replay-safe
	// requests in 0-RTT.
	tlsConf := &tls.Config{InsecureSkipVerify: cfg.Insecure, ClientSessionCache: tls.NewLRUClientSessionCache(64)} //nolint:gosec // development option, off by default
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates", cfg.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	c := &Client{base: strings.TrimRight(u.String(), "/"), proto: cfg.Protocol}
	switch cfg.Protocol {
	case "", HTTP1:
		c.proto = HTTP1
		tr := &http.Transport{
			TLSClientConfig:     tlsConf,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			MaxConnsPerHost:     cfg.MaxConnsPerHost,
			IdleConnTimeout:     90 * time.Second,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		}
		var p http.Protocols
		p.SetHTTP1(true)
		tr.Protocols = &p
		c.hc = &http.Client{Transport: tr, Timeout: cfg.Timeout}
		c.closer = closerFunc(func() error { tr.CloseIdleConnections(); return nil })
	case HTTP2:
		tr := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true, IdleConnTimeout: 90 * time.Second}
		var p http.Protocols
		if u.Scheme == "http" {
			p.SetUnencryptedHTTP2(true)
		} else {
			p.SetHTTP2(true)
		}
		tr.Protocols = &p
		c.hc = &http.Client{Transport: tr, Timeout: cfg.Timeout}
		c.closer = closerFunc(func() error { tr.CloseIdleConnections(); return nil })
	case HTTP3:
		u.Scheme = "https"
		c.base = strings.TrimRight(u.String(), "/")
		tr := &http3.Transport{TLSClientConfig: tlsConf, QUICConfig: &quic.Config{MaxIdleTimeout: 90 * time.Second}}
		c.hc = &http.Client{Transport: tr, Timeout: cfg.Timeout}
		c.closer = tr
	default:
		return nil, fmt.Errorf("protocol %q: want h1, h2 or h3", cfg.Protocol)
	}
	return c, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// Close releases idle connections.
func (c *Client) Close() error { return c.closer.Close() }

// Protocol is the protocol in use.
func (c *Client) Protocol() string { return c.proto }

// InferPath returns the request path for a model and optional version.
func InferPath(model, version string) string {
	p := "/v2/models/" + url.PathEscape(model)
	if version != "" {
		p += "/versions/" + url.PathEscape(version)
	}
	return p + "/infer"
}

// EncodeInfer encodes a request body once, for callers that send it many
// times (bench). It returns the body and the header length to send in
// Inference-Header-Content-Length (-1 when the body is all JSON).
func EncodeInfer(req *oip.Request, binaryInputs bool) ([]byte, int, error) {
	body, jsonLen, err := oip.AppendRequest(nil, req, binaryInputs)
	if err != nil {
		return nil, 0, err
	}
	if jsonLen == len(body) {
		jsonLen = -1
	}
	return body, jsonLen, nil
}

// Result is a raw response.
type Result struct {
	Status    int
	Body      []byte
	HeaderLen int // Inference-Header-Content-Length, -1 if absent
	ServedBy  string
	Proto     string
	Header    http.Header
}

// Post sends a pre-encoded inference body to path.
func (c *Client) Post(ctx context.Context, path string, body []byte, headerLen int, hdr http.Header) (*Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if headerLen >= 0 {
		req.Header.Set(oip.HeaderContentLength, strconv.Itoa(headerLen))
		req.Header.Set("Content-Type", oip.ContentTypeBinary)
	} else {
		req.Header.Set("Content-Type", oip.ContentTypeJSON)
	}
	return c.do(req)
}

// Get sends a GET to path.
func (c *Client) Get(ctx context.Context, path string) (*Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	return c.do(req)
}

func (c *Client) do(req *http.Request) (*Result, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	r := &Result{Status: resp.StatusCode, Body: b, HeaderLen: -1, ServedBy: resp.Header.Get("Petrel-Served-By"), Proto: resp.Proto, Header: resp.Header}
	if h := resp.Header.Get(oip.HeaderContentLength); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n < 0 || n > len(b) {
			return r, fmt.Errorf("response header %s %q is invalid", oip.HeaderContentLength, h)
		}
		r.HeaderLen = n
	}
	return r, nil
}

// Infer sends req to model (version "" = default) and decodes the answer.
// A non-200 answer becomes an *oip.ServerError carrying the server's
// message, wrapped with the status.
func (c *Client) Infer(ctx context.Context, model, version string, req *oip.Request, binary bool) (*oip.Response, *Result, error) {
	body, hl, err := EncodeInfer(req, binary)
	if err != nil {
		return nil, nil, err
	}
	res, err := c.Post(ctx, InferPath(model, version), body, hl, nil)
	if err != nil {
		return nil, nil, err
	}
	if res.Status != http.StatusOK {
		return nil, res, fmt.Errorf("status %d: %w", res.Status, serverError(res.Body))
	}
	resp, err := oip.DecodeResponse(res.Body, res.HeaderLen)
	return resp, res, err
}

func serverError(body []byte) error {
	if _, err := oip.DecodeResponse(body, -1); err != nil {
		var se *oip.ServerError
		if errors.As(err, &se) {
			return se
		}
	}
	return &oip.ServerError{Message: strings.TrimSpace(string(body))}
}
