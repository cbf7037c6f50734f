package netem

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"
)

func newTCPRelayT(t testing.TB, target string, cfg LinkConfig) *TCPRelay {
	t.Helper()
	r, err := NewTCPRelay("127.0.0.1:0", target, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func dialTCP(t testing.TB, addr net.Addr) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	return c.(*net.TCPConn)
}

func TestNewTCPRelayValidation(t *testing.T) {
	echo := tcpEcho(t)
	if _, err := NewTCPRelay("127.0.0.1:0", echo, LinkConfig{Loss: 0.1}); err == nil {
		t.Error("TCP relay accepted a loss rate")
	}
	if _, err := NewTCPRelay("127.0.0.1:0", echo, LinkConfig{Delay: -time.Second}); err == nil {
		t.Error("TCP relay accepted a negative delay")
	}
	for _, target := range []string{"nope", "127.0.0.1:0", ":80"} {
		if r, err := NewTCPRelay("127.0.0.1:0", target, LinkConfig{}); err == nil {
			_ = r.Close()
			t.Errorf("TCP relay accepted target %q", target)
		}
	}
	r := newTCPRelayT(t, echo, LinkConfig{})
	if err := r.SetConfig(LinkConfig{Loss: 0.5}); err == nil {
		t.Error("SetConfig accepted a loss rate on a TCP relay")
	}
}

func TestTCPRelayRoundTripIsTwiceTheDelay(t *testing.T) {
	const delay = 20 * time.Millisecond
	r := newTCPRelayT(t, tcpEcho(t), LinkConfig{Delay: delay})
	c := dialTCP(t, r.Addr())
	buf := make([]byte, 1)
	for i := range 5 {
		start := time.Now()
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil || buf[0] != byte(i) {
			t.Fatalf("echo %d: %v, %v", i, buf, err)
		}
		rtt := time.Since(start)
		if rtt < 2*delay || rtt > 2*delay+2*time.Second {
			t.Errorf("round trip %d took %v, want about 2×%v", i, rtt, delay)
		}
	}
	if err := r.SetConfig(LinkConfig{Delay: 2 * delay}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Write([]byte{9}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < 4*delay {
		t.Errorf("round trip after SetConfig took %v, below 2×%v", rtt, 2*delay)
	}
}

func TestTCPRelayStreamIntegrityAndHalfClose(t *testing.T) {
	// Jitter larger than the time between chunks: a relay that did not
	// keep chunks in order would corrupt the stream.
	r := newTCPRelayT(t, tcpEcho(t), LinkConfig{Delay: time.Millisecond, Jitter: time.Millisecond, Seed: 1})
	c := dialTCP(t, r.Addr())
	data := make([]byte, 8<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	writeErr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		writeErr <- err
	}()
	got, err := io.ReadAll(c) // until the echo server's FIN comes through
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echoed %d bytes differ from the %d sent", len(got), len(data))
	}
	_ = c.Close()
	// Both directions finished: the relay drops the connection.
	deadline := time.Now().Add(testTimeout)
	for r.Stats().Flows != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: finished connection still open", r.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTCPRelayTargetRefused(t *testing.T) {
	r := newTCPRelayT(t, freeAddr(t, "tcp"), LinkConfig{Delay: time.Millisecond})
	// The relay resets the client's connection; depending on timing the
	// reset reaches the client's connect or its first read.
	c, err := net.DialTimeout("tcp", r.Addr().String(), testTimeout)
	if err == nil {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("read from a relay whose target refused succeeded")
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("relay kept the connection open although its target refused")
		}
	}
	deadline := time.Now().Add(testTimeout)
	for r.Stats().SendErrors != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: refused dial not counted", r.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTCPRelayCloseLeavesNoGoroutines(t *testing.T) {
	echo := tcpEcho(t)
	r, err := NewTCPRelay("127.0.0.1:0", echo, LinkConfig{Delay: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*net.TCPConn, 3)
	for i := range conns {
		conns[i] = dialTCP(t, r.Addr())
		if _, err := conns[i].Write([]byte("held for 30 seconds")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(testTimeout)
	for r.Stats().Flows != len(conns) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want %d connections", r.Stats(), len(conns))
		}
		time.Sleep(time.Millisecond)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	checkNoRelayGoroutines(t)
	for _, c := range conns {
		if n, err := c.Read(make([]byte, 64)); err == nil {
			t.Errorf("client read %d bytes after the relay closed", n)
		}
	}
	if _, err := net.DialTimeout("tcp", r.Addr().String(), time.Second); err == nil {
		t.Error("relay still accepts after Close")
	}
}

// BenchmarkTCPRelayThroughput measures bulk throughput through a relay
// with a 1 ms delay into a discarding server; compare with
// BenchmarkTCPDirectThroughput.
func BenchmarkTCPRelayThroughput(b *testing.B) {
	benchmarkThroughput(b, true)
}

// BenchmarkTCPDirectThroughput is the loopback baseline without a relay.
func BenchmarkTCPDirectThroughput(b *testing.B) {
	benchmarkThroughput(b, false)
}

func benchmarkThroughput(b *testing.B, relay bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	received := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		received <- n
	}()
	var addr net.Addr = ln.Addr()
	if relay {
		addr = newTCPRelayT(b, ln.Addr().String(), LinkConfig{Delay: time.Millisecond}).Addr()
	}
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if n := <-received; n != int64(b.N*len(chunk)) {
		b.Fatalf("server received %d bytes, want %d", n, b.N*len(chunk))
	}
}
