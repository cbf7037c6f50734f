package meshtls

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/quic-go/quic-go/http3"
)

// serveHTTP3 runs an HTTP/3 server with cfg on a loopback UDP socket. Its
// handler answers with the caller's PeerID, or "anonymous".
func serveHTTP3(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		TLSConfig: cfg,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if id, ok := PeerID(r.TLS); ok {
				_, _ = io.WriteString(w, "peer "+id)
				return
			}
			_, _ = io.WriteString(w, "anonymous")
		}),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("http3 Serve: %v", err)
		}
		_ = conn.Close()
	})
	return conn.LocalAddr().String()
}

// get performs one HTTP/3 GET with a fresh transport using cfg.
func get(t *testing.T, addr string, cfg *tls.Config) (string, error) {
	t.Helper()
	tr := &http3.Transport{TLSClientConfig: cfg}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v2/health/live", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.ProtoMajor != 3 {
		t.Errorf("response protocol %s, want HTTP/3", resp.Proto)
	}
	return string(body), nil
}

func TestHTTP3MutualTLS(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	addr := serveHTTP3(t, mustServerConfig(t, ca, issue(t, ca, "server-node")))

	t.Run("mesh peer", func(t *testing.T) {
		body, err := get(t, addr, mustClientConfig(t, ca, issue(t, ca, "peer-1")))
		if err != nil {
			t.Fatal(err)
		}
		if body != "peer peer-1" {
			t.Fatalf("body = %q, want %q", body, "peer peer-1")
		}
	})
	t.Run("public client", func(t *testing.T) {
		body, err := get(t, addr, &tls.Config{RootCAs: caPool(ca)})
		if err != nil {
			t.Fatal(err)
		}
		if body != "anonymous" {
			t.Fatalf("body = %q, want anonymous", body)
		}
	})
	t.Run("foreign certificate", func(t *testing.T) {
		cfg := &tls.Config{RootCAs: caPool(ca), Certificates: []tls.Certificate{loadPair(t, issue(t, other, "intruder"))}}
		body, err := get(t, addr, cfg)
		if err == nil {
			t.Fatalf("request with a foreign certificate succeeded: %q", body)
		}
		if !strings.Contains(err.Error(), "unknown certificate authority") {
			t.Fatalf("request with a foreign certificate: %v, want a certificate error", err)
		}
	})
	t.Run("server not in mesh", func(t *testing.T) {
		rogue := serveHTTP3(t, &tls.Config{Certificates: []tls.Certificate{loadPair(t, issue(t, other, "rogue"))}})
		body, err := get(t, rogue, mustClientConfig(t, ca, issue(t, ca, "peer-2")))
		if err == nil {
			t.Fatalf("mesh client trusted a foreign server: %q", body)
		}
		if !strings.Contains(err.Error(), "unknown authority") {
			t.Fatalf("mesh client dialing a foreign server: %v, want unknown authority", err)
		}
	})
}
