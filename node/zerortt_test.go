package node_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/node"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Test0RTT resumes a QUIC session and sends a GET in 0-RTT early data
// (quic-go's client does that only for http3.MethodGet0RTT and
// MethodHead0RTT): the node serves it. A POST on the resumed connection
// waits for the handshake and is served too.
func Test0RTT(t *testing.T) {
	r := newRepo(t)
	m := r.smallMLP("mlp", 1, "")
	tn := startNode(t, testConfig(t, r.dir))
	tc := tn.tlsConfig(t)
	cache := &recordingCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	tc.ClientSessionCache = cache
	var (
		mu    sync.Mutex
		conns []*quic.Conn
	)
	transport := func() *http3.Transport {
		tr := &http3.Transport{
			TLSClientConfig: tc,
			Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
				c, err := quic.DialAddrEarly(ctx, addr, tlsCfg, cfg)
				if err == nil {
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
				return c, err
			},
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	get := func(tr *http3.Transport, method, path string) reply {
		t.Helper()
		rc := &raw{hc: &http.Client{Transport: tr, Timeout: requestTimeout}, base: "https://" + tn.Addr()}
		return rc.do(t, method, path, nil, nil)
	}

	// A full handshake; the session ticket (allowing early data) comes
	// after it.
	first := transport()
	if rep := get(first, http.MethodGet, "/v2/health/live"); rep.status != http.StatusOK {
		t.Fatalf("first connection: %d", rep.status)
	}
	if !eventually(10*time.Second, func() bool { return cache.puts.Load() > 0 }) {
		t.Fatal("no session ticket from the node")
	}
	first.Close()

	second := transport()
	rep := get(second, http3.MethodGet0RTT, "/v2/models/mlp/ready")
	if rep.status != http.StatusOK || !strings.Contains(string(rep.body), `"ready":true`) {
		t.Fatalf("GET in 0-RTT: %d %s", rep.status, rep.body)
	}
	if rep.proto != "HTTP/3.0" {
		t.Errorf("proto %s", rep.proto)
	}
	mu.Lock()
	if len(conns) != 2 {
		mu.Unlock()
		t.Fatalf("%d QUIC connections, want 2", len(conns))
	}
	resumed := conns[1]
	mu.Unlock()
	<-resumed.HandshakeComplete()
	if st := resumed.ConnectionState(); !st.TLS.DidResume || !st.Used0RTT {
		t.Errorf("second connection: resumed %v, 0-RTT %v; want both", st.TLS.DidResume, st.Used0RTT)
	}
	if rep := get(second, http3.MethodHead0RTT, "/v2/health/ready"); rep.status != http.StatusOK {
		t.Errorf("HEAD in 0-RTT: %d", rep.status)
	}

	// A POST on the resumed connection, after the handshake: served.
	x := make([]float32, 64)
	body, hl := encode(t, &oip.Request{Inputs: []models.Tensor{f32("input", []int64{1, 64}, x)}}, false)
	rc := &raw{hc: &http.Client{Transport: second, Timeout: requestTimeout}, base: "https://" + tn.Addr()}
	checkMLP(t, m, x, decodeReply(t, rc.do(t, http.MethodPost, "/v2/models/mlp/infer", body, inferHeaders(hl))).Outputs)
}

// recordingCache counts the session tickets stored.
type recordingCache struct {
	tls.ClientSessionCache
	puts atomic.Int64
}

func (c *recordingCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.puts.Add(1)
	}
	c.ClientSessionCache.Put(key, cs)
}

// TestTooEarly: a request that arrived in 0-RTT early data (the TLS
// handshake not complete yet) is served only when it is replay-safe (GET,
// HEAD); anything else gets 425 Too Early (RFC 8470).
func TestTooEarly(t *testing.T) {
	requireORT(t)
	r := newRepo(t)
	r.smallMLP("mlp", 1, "")
	n, err := node.New(testConfig(t, r.dir)) // not started: the handler alone
	if err != nil {
		t.Fatal(err)
	}
	h := n.Handler()
	const (
		cleartext = iota // no TLS: nothing is early data
		early            // TLS, handshake not complete: 0-RTT
		complete         // TLS, handshake complete
	)
	for _, tc := range []struct {
		method, path string
		conn         int
		want         int
	}{
		{http.MethodPost, "/v2/models/mlp/infer", early, http.StatusTooEarly},
		{http.MethodPost, "/v2/repository/models/mlp/unload", early, http.StatusTooEarly},
		{http.MethodPost, "/v2/repository/models/mlp/load", early, http.StatusTooEarly},
		{http.MethodPost, "/v2/repository/index", early, http.StatusTooEarly},
		{http.MethodPut, "/v2/nope", early, http.StatusTooEarly},
		{http.MethodGet, "/v2/health/live", early, http.StatusOK},
		{http.MethodHead, "/v2/health/live", early, http.StatusOK},
		{http.MethodGet, "/v2", early, http.StatusOK},
		{http.MethodGet, "/v2/repository/index", early, http.StatusOK},
		// After the handshake a POST reaches its handler (the node is not
		// started, so no model is loaded: 404).
		{http.MethodPost, "/v2/models/mlp/infer", complete, http.StatusNotFound},
		{http.MethodPost, "/v2/repository/index", complete, http.StatusOK},
		{http.MethodPost, "/v2/repository/index", cleartext, http.StatusOK},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		req.TLS = nil
		if tc.conn != cleartext {
			req.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: tc.conn == complete}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tc.want {
			t.Errorf("%s %s (connection %d): %d %s, want %d", tc.method, tc.path, tc.conn, w.Code, w.Body, tc.want)
			continue
		}
		if tc.want == http.StatusTooEarly {
			wantError(t, reply{status: w.Code, body: w.Body.Bytes()}, http.StatusTooEarly, "0-RTT", "retry")
		}
		if w.Header().Get("Petrel-Served-By") == "" {
			t.Errorf("%s %s: no Petrel-Served-By", tc.method, tc.path)
		}
	}
}
