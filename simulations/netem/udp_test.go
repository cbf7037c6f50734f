package netem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newUDPRelayT(t *testing.T, target string, cfg LinkConfig) *UDPRelay {
	t.Helper()
	r, err := NewUDPRelay("127.0.0.1:0", target, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func dialUDP(t *testing.T, addr net.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, addr.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// udpRoundTrip sends msg on c and waits for the same bytes back,
// returning the elapsed time.
func udpRoundTrip(t *testing.T, c *net.UDPConn, msg string) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no echo for %q: %v", msg, err)
	}
	if got := string(buf[:n]); got != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
	return time.Since(start)
}

func TestLinkConfigValidate(t *testing.T) {
	good := []LinkConfig{{}, {Delay: time.Millisecond, Jitter: time.Millisecond, Loss: 1, Seed: 9}, {Delay: MaxDelay, Jitter: MaxDelay}}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := []LinkConfig{
		{Delay: -1}, {Delay: MaxDelay + 1}, {Jitter: -1}, {Jitter: MaxDelay + 1},
		{Loss: -0.1}, {Loss: 1.01}, {Loss: nanLoss()},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: accepted", c)
		}
		if _, err := NewUDPRelay("127.0.0.1:0", "127.0.0.1:9", c); err == nil {
			t.Errorf("NewUDPRelay(%+v): accepted", c)
		}
	}
}

func nanLoss() float64 {
	zero := 0.0
	return zero / zero
}

func TestNewUDPRelayBadAddresses(t *testing.T) {
	for _, tc := range []struct{ listen, target string }{
		{"127.0.0.1:0", "no-port"},
		{"127.0.0.1:0", "127.0.0.1:0"},
		{"127.0.0.1:0", ":53"},
		{"bad listen", "127.0.0.1:9"},
	} {
		if r, err := NewUDPRelay(tc.listen, tc.target, LinkConfig{}); err == nil {
			_ = r.Close()
			t.Errorf("NewUDPRelay(%q, %q) succeeded", tc.listen, tc.target)
		}
	}
}

func TestUDPRelayRoundTripIsTwiceTheDelay(t *testing.T) {
	const delay = 20 * time.Millisecond
	echo := newUDPEcho(t)
	r := newUDPRelayT(t, echo.addr(), LinkConfig{Delay: delay})
	c := dialUDP(t, r.Addr())
	for i := range 5 {
		rtt := udpRoundTrip(t, c, fmt.Sprintf("ping %d", i))
		if rtt < 2*delay {
			t.Errorf("round trip %d took %v, below 2×delay = %v", i, rtt, 2*delay)
		}
		if rtt > 2*delay+2*time.Second {
			t.Errorf("round trip %d took %v, far above 2×delay", i, rtt)
		}
	}
	// The relay counts a datagram after its send returns, which may be
	// after the client already read it.
	waitStats(t, r.Stats, func(s Stats) bool { return s.Forwarded == 10 && s.Flows == 1 && s.Lost == 0 }, "10 forwarded on 1 flow")
}

func TestUDPRelayPreservesOrderUnderJitter(t *testing.T) {
	const n = 150
	echo := newUDPEcho(t)
	// Jitter far larger than the send interval would reorder a naive
	// per-packet timer.
	r := newUDPRelayT(t, echo.addr(), LinkConfig{Delay: 5 * time.Millisecond, Jitter: 5 * time.Millisecond, Seed: 3})
	c := dialUDP(t, r.Addr())
	_ = c.SetReadBuffer(1 << 20) // best effort; 150 tiny datagrams fit the default too

	got := make(chan []uint32, 1)
	go func() {
		var seqs []uint32
		buf := make([]byte, 64)
		_ = c.SetReadDeadline(time.Now().Add(testTimeout))
		for len(seqs) < n {
			k, err := c.Read(buf)
			if err != nil || k != 4 {
				break
			}
			seqs = append(seqs, binary.BigEndian.Uint32(buf[:4]))
		}
		got <- seqs
	}()
	for i := range uint32(n) {
		if _, err := c.Write(binary.BigEndian.AppendUint32(nil, i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Microsecond)
	}
	seqs := <-got
	if len(seqs) != n {
		t.Fatalf("received %d of %d datagrams (stats %+v)", len(seqs), n, r.Stats())
	}
	for i, s := range seqs {
		if s != uint32(i) {
			t.Fatalf("datagram %d carries sequence number %d: order not preserved", i, s)
		}
	}
}

// sendCounted sends n numbered datagrams through a relay with cfg to a
// sink, pacing them so that no datagram can be lost in a socket buffer,
// and returns the sequence numbers the sink received and the relay's
// stats.
func sendCounted(t *testing.T, cfg LinkConfig, n int) (received map[uint32]bool, stats Stats) {
	t.Helper()
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	r, err := NewUDPRelay("127.0.0.1:0", sink.LocalAddr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := dialUDP(t, r.Addr())

	// The sink reads concurrently and the sender waits for it after each
	// burst, so that no socket buffer can overflow even when the test
	// goroutines are starved of CPU.
	var arrived atomic.Uint64
	arrivals := make(chan uint32, n)
	go func() {
		buf := make([]byte, 64)
		for {
			k, err := sink.Read(buf)
			if err != nil {
				return // sink closed
			}
			if k == 4 {
				arrivals <- binary.BigEndian.Uint32(buf)
			}
			arrived.Add(1)
		}
	}()
	const burst = 50
	deadline := time.Now().Add(testTimeout)
	for i := 0; i < n; {
		for end := min(i+burst, n); i < end; i++ {
			if _, err := c.Write(binary.BigEndian.AppendUint32(nil, uint32(i))); err != nil {
				t.Fatal(err)
			}
		}
		for {
			s := r.Stats()
			if s.Forwarded+s.Lost+s.Overflow == uint64(i) && arrived.Load() == s.Forwarded {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %d datagrams: relay stats %+v, sink received %d", i, s, arrived.Load())
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	stats = r.Stats()
	// The sink queued every datagram before counting it, so arrivals
	// now holds all of them.
	received = map[uint32]bool{}
	for len(arrivals) > 0 {
		received[<-arrivals] = true
	}
	return received, stats
}

func TestUDPRelayLossIsSeededAndWithinBounds(t *testing.T) {
	const n, loss = 2000, 0.3
	got, stats := sendCounted(t, LinkConfig{Loss: loss, Seed: 42}, n)
	// Binomial(2000, 0.3): mean 600, standard deviation 20.5; allow 5σ.
	if stats.Lost < 498 || stats.Lost > 702 {
		t.Errorf("lost %d of %d datagrams at loss %.1f, want 600±102", stats.Lost, n, loss)
	}
	if stats.Overflow != 0 || stats.SendErrors != 0 {
		t.Errorf("stats %+v: unexpected overflow or send errors", stats)
	}
	if uint64(len(got)) != stats.Forwarded || len(got)+int(stats.Lost) != n {
		t.Errorf("sink received %d, relay forwarded %d and lost %d of %d", len(got), stats.Forwarded, stats.Lost, n)
	}

	again, _ := sendCounted(t, LinkConfig{Loss: loss, Seed: 42}, n)
	if !sameSet(got, again) {
		t.Error("two runs with the same seed dropped different datagrams")
	}
	other, _ := sendCounted(t, LinkConfig{Loss: loss, Seed: 43}, n)
	if sameSet(got, other) {
		t.Error("runs with different seeds dropped the same datagrams")
	}

	if all, s := sendCounted(t, LinkConfig{Loss: 1}, 50); len(all) != 0 || s.Lost != 50 {
		t.Errorf("loss 1: %d datagrams arrived, %d lost", len(all), s.Lost)
	}
}

func sameSet(a, b map[uint32]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func TestUDPRelayKeepsAFlowPerClient(t *testing.T) {
	echo := newUDPEcho(t)
	r := newUDPRelayT(t, echo.addr(), LinkConfig{Delay: 2 * time.Millisecond})
	a, b := dialUDP(t, r.Addr()), dialUDP(t, r.Addr())
	for i := range 20 {
		// Both clients send before either reads, so replies for both
		// are in flight at once.
		ma, mb := fmt.Sprintf("a-%d", i), fmt.Sprintf("b-%d", i)
		if _, err := a.Write([]byte(ma)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write([]byte(mb)); err != nil {
			t.Fatal(err)
		}
		for c, want := range map[*net.UDPConn]string{a: ma, b: mb} {
			buf := make([]byte, 64)
			_ = c.SetReadDeadline(time.Now().Add(testTimeout))
			n, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:n]); got != want {
				t.Fatalf("client expecting %q got %q: replies crossed flows", want, got)
			}
		}
	}
	if s := r.Stats(); s.Flows != 2 {
		t.Errorf("%d flows, want 2", s.Flows)
	}
	if n := echo.sources(); n != 2 {
		t.Errorf("target saw %d source addresses, want one per client (2)", n)
	}
}

func TestUDPRelaySetConfig(t *testing.T) {
	const delay = 25 * time.Millisecond
	echo := newUDPEcho(t)
	r := newUDPRelayT(t, echo.addr(), LinkConfig{})
	c := dialUDP(t, r.Addr())
	udpRoundTrip(t, c, "warm")
	if err := r.SetConfig(LinkConfig{Delay: delay, Loss: 2}); err == nil {
		t.Fatal("SetConfig accepted loss 2")
	}
	if got := r.Config(); got != (LinkConfig{}) {
		t.Fatalf("rejected SetConfig changed the config to %+v", got)
	}
	if err := r.SetConfig(LinkConfig{Delay: delay}); err != nil {
		t.Fatal(err)
	}
	if rtt := udpRoundTrip(t, c, "slow"); rtt < 2*delay {
		t.Errorf("round trip after SetConfig took %v, below 2×%v", rtt, delay)
	}
	if err := r.SetConfig(LinkConfig{}); err != nil {
		t.Fatal(err)
	}
	udpRoundTrip(t, c, "fast again")
}

func TestUDPRelayExpiresIdleFlows(t *testing.T) {
	echo := newUDPEcho(t)
	r, err := newUDPRelay("127.0.0.1:0", echo.addr(), LinkConfig{}, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := dialUDP(t, r.Addr())
	udpRoundTrip(t, c, "one")
	deadline := time.Now().Add(testTimeout)
	for r.Stats().Flows != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle flow was never expired")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The client is still served: a new flow opens.
	udpRoundTrip(t, c, "two")
	if n := echo.sources(); n != 2 {
		t.Errorf("target saw %d source addresses, want 2 (a new upstream socket after expiry)", n)
	}
}

func TestUDPRelayTargetNotListening(t *testing.T) {
	r := newUDPRelayT(t, freeAddr(t, "udp"), LinkConfig{})
	c := dialUDP(t, r.Addr())
	for range 3 {
		if _, err := c.Write([]byte("anyone?")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(testTimeout)
	for r.Stats().Forwarded+r.Stats().SendErrors < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: datagrams to a closed port not accounted for", r.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// ICMP port unreachable must not tear the flow down.
	if s := r.Stats(); s.Flows != 1 {
		t.Errorf("stats %+v, want the flow kept", s)
	}
}

func TestUDPRelayCloseLeavesNoGoroutines(t *testing.T) {
	echo := newUDPEcho(t)
	r, err := NewUDPRelay("127.0.0.1:0", echo.addr(), LinkConfig{Delay: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Several flows with datagrams queued for longer than the test runs.
	for range 4 {
		c := dialUDP(t, r.Addr())
		for range 10 {
			if _, err := c.Write([]byte("queued")); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(testTimeout)
	for r.Stats().Flows != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want 4 flows", r.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if len(relayGoroutines()) == 0 {
		t.Fatal("goroutine check sees no relay goroutines while the relay runs")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	checkNoRelayGoroutines(t)
	if s := r.Stats(); s.Forwarded != 0 || s.Flows != 0 {
		t.Errorf("stats after Close %+v: queued datagrams were sent or flows kept", s)
	}
	_, err = dialUDP(t, r.Addr()).Write([]byte("late"))
	var oe *net.OpError
	if err != nil && !errors.As(err, &oe) {
		t.Errorf("write to a closed relay: %v", err)
	}
	if !strings.HasPrefix(r.Addr().String(), "127.0.0.1:") {
		t.Errorf("Addr after Close = %v", r.Addr())
	}
}
