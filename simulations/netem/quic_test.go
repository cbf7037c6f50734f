package netem

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// quicDelay is the one-way delay of the QUIC tests: large against loopback
// and timer noise, small enough to keep the tests quick.
const quicDelay = 15 * time.Millisecond

func TestQUICThroughUDPRelay(t *testing.T) {
	serverTLS, pool := selfSigned(t, "netem-echo")
	ln, err := quic.ListenAddr("127.0.0.1:0", serverTLS, nil)
	if err != nil {
		t.Fatal(err)
	}
	serverDone := make(chan error, 1)
	go func() {
		serverDone <- func() error {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return err
			}
			str, err := conn.AcceptStream(context.Background())
			if err != nil {
				return err
			}
			// Echo until the client closes its side.
			if _, err := io.Copy(str, str); err != nil {
				return err
			}
			return str.Close()
		}()
	}()
	t.Cleanup(func() { _ = ln.Close() })

	r := newUDPRelayT(t, ln.Addr().String(), LinkConfig{Delay: quicDelay})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	start := time.Now()
	conn, err := quic.DialAddr(ctx, r.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{"netem-echo"}}, nil)
	if err != nil {
		t.Fatalf("dial through relay: %v", err)
	}
	defer conn.CloseWithError(0, "")
	if hs := time.Since(start); hs < 2*quicDelay {
		t.Errorf("QUIC handshake took %v, below one emulated RTT (%v)", hs, 2*quicDelay)
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	for i := range 3 {
		start := time.Now()
		if _, err := str.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(str, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo %d: %q, %v", i, buf, err)
		}
		if rtt := time.Since(start); rtt < 2*quicDelay || rtt > 2*quicDelay+2*time.Second {
			t.Errorf("stream round trip %d took %v, want about 2×%v", i, rtt, quicDelay)
		}
	}
	if err := str.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(str); err != nil {
		t.Fatal(err)
	}
	if err := <-serverDone; err != nil {
		t.Fatalf("server: %v", err)
	}
	// QUIC's own RTT estimate sees the emulated link: its minimum is a
	// raw sample, which cannot be below the time the relay held packets.
	if st := conn.ConnectionStats(); st.MinRTT < 2*quicDelay {
		t.Errorf("QUIC MinRTT = %v, below 2×%v", st.MinRTT, quicDelay)
	}
}

func TestHTTP3ThroughUDPRelay(t *testing.T) {
	serverTLS, pool := selfSigned(t, http3.NextProtoH3)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		TLSConfig: serverTLS,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "hello over "+r.Proto)
		}),
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(pc) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-serveDone; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
		_ = pc.Close()
	})

	r := newUDPRelayT(t, pc.LocalAddr().String(), LinkConfig{Delay: quicDelay})
	tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.Close()
	client := &http.Client{Transport: tr, Timeout: testTimeout}
	url := "https://" + r.Addr().String() + "/"

	get := func() time.Duration {
		t.Helper()
		start := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET through relay: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "hello over HTTP/3.0" {
			t.Fatalf("body %q, %v", body, err)
		}
		return time.Since(start)
	}
	// First request: one RTT of handshake, then one for the request
	// (no 0-RTT without an earlier session).
	if d := get(); d < 4*quicDelay || d > 4*quicDelay+2*time.Second {
		t.Errorf("first GET took %v, want at least 2 emulated RTTs (%v)", d, 4*quicDelay)
	}
	// Later requests reuse the connection: one RTT each.
	for range 2 {
		if d := get(); d < 2*quicDelay || d > 2*quicDelay+2*time.Second {
			t.Errorf("GET on an open connection took %v, want about one emulated RTT (%v)", d, 2*quicDelay)
		}
	}
	if s := r.Stats(); s.Flows != 1 || s.Lost != 0 {
		t.Errorf("stats %+v, want one flow and no loss", s)
	}
}
