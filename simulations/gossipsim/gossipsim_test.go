package gossipsim

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/petrel-mesh/petrel/routing"
)

func TestConfigValidate(t *testing.T) {
	var zero Config
	if err := zero.Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	bad := []Config{
		{Members: 2},
		{Members: MaxMembers + 1},
		{Profile: "galaxy"},
		{TimeScale: -1},
		{TimeScale: 1000},
		{CatalogModels: -1},
		{JoinTimeout: -time.Second},
		{BandwidthWindow: -time.Second},
		{JoinParallel: -1},
		{Network: Network{Regions: []Region{{Name: "", Weight: 1}}, KmPerMs: 200, RouteInflation: 1.5}},
		{Network: Network{Regions: []Region{{Name: "a", Weight: 0}}, KmPerMs: 200, RouteInflation: 1.5}},
		{Network: Network{Regions: []Region{{Name: "a", Weight: 1}, {Name: "a", Weight: 1}}, KmPerMs: 200, RouteInflation: 1.5}},
		{Network: Network{Regions: []Region{{Name: "a", Loc: routing.Location{Lat: 91}, Weight: 1}}, KmPerMs: 200, RouteInflation: 1.5}},
		{Network: Network{Regions: []Region{{Name: "a", Weight: 1}}, KmPerMs: 0, RouteInflation: 1.5}},
		{Network: Network{Regions: []Region{{Name: "a", Weight: 1}}, KmPerMs: 200, RouteInflation: 0.5}},
		{Network: Network{Regions: []Region{{Name: "a", Weight: 1}}, KmPerMs: 200, RouteInflation: 1, Loss: 0.9}},
		{Network: Network{Regions: []Region{{Name: "a", Weight: 1}}, KmPerMs: 200, RouteInflation: 1, LastMileMin: 2, LastMileMax: 1}},
	}
	for i, c := range bad {
		err := c.Validate()
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("case %d (%+v): got %v, want ErrInvalidConfig", i, c, err)
		}
		if _, rerr := Run(context.Background(), c); !errors.Is(rerr, ErrInvalidConfig) {
			t.Errorf("case %d: Run returned %v, want ErrInvalidConfig", i, rerr)
		}
	}
	// Every problem is reported at once.
	err := (&Config{Members: 1, Profile: "x", TimeScale: -2}).Validate()
	if n := strings.Count(err.Error(), "invalid config"); n != 3 {
		t.Errorf("got %d errors, want 3: %v", n, err)
	}
	for _, n := range []Network{DefaultNetwork(), WorldNetwork()} {
		if err := n.Validate(); err != nil {
			t.Errorf("preset network: %v", err)
		}
	}
}

func TestApportion(t *testing.T) {
	regions := []Region{{Name: "a", Weight: 5}, {Name: "b", Weight: 3}, {Name: "c", Weight: 2}}
	got := apportion(regions, 11)
	counts := make([]int, 3)
	for _, r := range got {
		counts[r]++
	}
	// 5.5, 3.3, 2.2: floors 5, 3, 2 and the spare to the largest remainder.
	if counts[0] != 6 || counts[1] != 3 || counts[2] != 2 {
		t.Errorf("counts = %v, want [6 3 2]", counts)
	}
}

// testNet returns a seeded two-region network of n members.
func testNet(t *testing.T, n int, loss float64) *network {
	t.Helper()
	c := Config{Members: 3, Seed: 7, Network: Network{
		Regions: []Region{
			{Name: "london", Loc: routing.Location{Lat: 51.507, Lon: -0.128}, Weight: 1},
			{Name: "madrid", Loc: routing.Location{Lat: 40.417, Lon: -3.704}, Weight: 1},
		},
		KmPerMs: 200, RouteInflation: 1.5, LastMileMin: time.Millisecond, LastMileMax: 2 * time.Millisecond,
		Jitter: time.Millisecond, Loss: loss,
	}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c = c.withDefaults()
	nw := newNetwork(c, n, rand.New(rand.NewPCG(7, 8)))
	nw.start()
	t.Cleanup(nw.stop)
	return nw
}

func TestPacketsDelayLossAndCounts(t *testing.T) {
	const sent, loss, size = 4000, 0.1, 100
	nw := testNet(t, 2, loss)
	a, b := nw.members[0], nw.members[1]
	if a.region == b.region {
		t.Fatalf("members share a region; the test wants one in each")
	}
	minDelay := nw.propagation(a, b)
	// London–Madrid is about 1,260 km: 9.5 ms at 200 km/ms with 1.5x
	// inflation, plus two last miles of 1-2 ms.
	if minDelay < 11*time.Millisecond || minDelay > 14*time.Millisecond {
		t.Fatalf("one-way propagation %v, want 11-14 ms", minDelay)
	}
	buf := make([]byte, size)
	var first time.Time
	for i := range sent {
		ts, err := a.WriteToAddress(buf, memberlist.Address{Addr: b.addr})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = ts
		}
	}
	var got int
	deadline := time.After(5 * time.Second)
recv:
	for {
		select {
		case p := <-b.PacketCh():
			if got == 0 {
				if d := p.Timestamp.Sub(first); d < minDelay {
					t.Errorf("first packet after %v, before the one-way delay %v", d, minDelay)
				}
			}
			if p.From.String() != a.addr || len(p.Buf) != size {
				t.Fatalf("packet from %v of %d bytes", p.From, len(p.Buf))
			}
			got++
		case <-deadline:
			break recv
		case <-time.After(200 * time.Millisecond):
			break recv
		}
	}
	ca, cb := a.stats.snapshot(), b.stats.snapshot()
	if ca.PacketsSent != sent || ca.PacketBytesSent != sent*size {
		t.Errorf("sender counted %d packets, %d bytes; want %d, %d", ca.PacketsSent, ca.PacketBytesSent, sent, sent*size)
	}
	// Binomial(4000, 0.1): mean 400, sd 19; the seeded draw must land
	// well inside 5 sd.
	if ca.PacketsLost < 300 || ca.PacketsLost > 500 {
		t.Errorf("lost %d of %d, want about %d", ca.PacketsLost, sent, int(loss*sent))
	}
	if uint64(got) != sent-ca.PacketsLost || cb.PacketsRecv != uint64(got) || cb.PacketBytesRecv != uint64(got*size) {
		t.Errorf("delivered %d, receiver counted %d packets %d bytes, sent-lost = %d", got, cb.PacketsRecv, cb.PacketBytesRecv, sent-ca.PacketsLost)
	}
}

func TestStreams(t *testing.T) {
	nw := testNet(t, 2, 0.5) // streams are never lost
	a, b := nw.members[0], nw.members[1]
	rtt := nw.propagation(a, b) + nw.propagation(b, a)
	t0 := time.Now()
	c, err := a.DialAddressTimeout(memberlist.Address{Addr: b.addr}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < rtt {
		t.Errorf("dial took %v, less than a round trip %v", d, rtt)
	}
	s := <-b.StreamCh()
	msg := []byte(strings.Repeat("push/pull state ", 1000))
	t1 := time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t1); d < nw.propagation(a, b) {
		t.Errorf("data arrived after %v, before the one-way delay", d)
	}
	if string(got) != string(msg) {
		t.Fatalf("read %d bytes, want %d", len(got), len(msg))
	}
	if ca, cb := a.stats.snapshot(), b.stats.snapshot(); ca.StreamBytesSent != uint64(len(msg)) || cb.StreamBytesRecv != uint64(len(msg)) || ca.StreamsOpened != 1 {
		t.Errorf("stream counters: sender %+v receiver %+v", ca, cb)
	}
	// A read deadline fails a read with nothing to read.
	c2, err := b.DialAddressTimeout(memberlist.Address{Addr: a.addr}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past deadline: %v", err)
	}
}

func TestKilledMember(t *testing.T) {
	nw := testNet(t, 3, 0)
	a, b := nw.members[0], nw.members[1]
	nw.kill(1)
	if _, err := a.WriteToAddress([]byte("ping"), memberlist.Address{Addr: b.addr}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := a.DialAddressTimeout(memberlist.Address{Addr: b.addr}, 50*time.Millisecond); err == nil {
		t.Fatal("dial to a killed member succeeded")
	} else if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		t.Errorf("dial error %v is not a timeout", err)
	}
	if d := time.Since(t0); d < 50*time.Millisecond {
		t.Errorf("dial failed after %v, before its timeout", d)
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case p := <-b.PacketCh():
		t.Fatalf("killed member received %q", p.Buf)
	default:
	}
	if st := a.stats.snapshot(); st.PacketsDropped != 1 {
		t.Errorf("dropped %d packets, want 1", st.PacketsDropped)
	}
	if _, err := a.DialAddressTimeout(memberlist.Address{Addr: "10.9.9.9:7946"}, time.Second); err == nil {
		t.Error("dial to an unknown address succeeded")
	}
}

// TestSmallCluster runs the whole simulation on 32 members with LAN
// timing at twice real speed and 5 % loss, and bounds what memberlist as node/mesh
// configures it must achieve: Serf's model puts 99 % of a LAN cluster
// aware of a join within about a second, and the suspicion timeout for 32
// members is 4·log10(32)·1 s ≈ 6 s.
func TestSmallCluster(t *testing.T) {
	cfg := Config{
		Members:         32,
		Seed:            42,
		TimeScale:       0.5,
		CatalogModels:   5,
		BandwidthWindow: 8 * time.Second,
		JoinTimeout:     10 * time.Second,
		FailTimeout:     40 * time.Second,
		SettleTimeout:   2 * time.Minute,
	}
	cfg.Network = DefaultNetwork()
	cfg.Network.Loss = 0.05
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + res.Summary())
	if res.Join.Observers != 32 || res.Failure.Observers != 32 {
		t.Errorf("observers join %d failure %d, want 32 each", res.Join.Observers, res.Failure.Observers)
	}
	if p99, ok := res.Join.At(0.99); !ok || p99 > 3*time.Second {
		t.Errorf("join: 99%% after %v (reached %v), want within 3 s", p99, ok)
	}
	if all, ok := res.Join.At(1); !ok || all > 5*time.Second {
		t.Errorf("join: all after %v (reached %v), want within 5 s", all, ok)
	}
	// Detection cannot beat the suspicion timeout's minimum and must not
	// need memberlist's maximum (6x).
	if p99, ok := res.Failure.At(0.99); !ok || p99 < 3*time.Second || p99 > 36*time.Second {
		t.Errorf("failure: 99%% after %v (reached %v), want 3-36 s", p99, ok)
	}
	if res.FalseFailures > 2 {
		t.Errorf("%d members falsely declared dead", res.FalseFailures)
	}
	// The oracles cover the same observers and are lower bounds of what
	// the protocol achieved, at every quantile.
	for _, c := range []struct {
		name            string
		measured, bound *Convergence
	}{{"join", &res.Join, &res.JoinOracle}, {"failure", &res.Failure, &res.FailureOracle}} {
		if c.bound.Observers != c.measured.Observers || len(c.bound.Times) != c.bound.Observers {
			t.Errorf("%s oracle: %d times over %d observers, measured over %d", c.name, len(c.bound.Times), c.bound.Observers, c.measured.Observers)
			continue
		}
		for _, q := range []float64{0.5, 0.99, 1} {
			m, ok := c.measured.At(q)
			b, _ := c.bound.At(q)
			if b <= 0 || (ok && m < b) {
				t.Errorf("%s at %.0f%%: measured %v, oracle %v", c.name, 100*q, m, b)
			}
		}
	}
	m := res.Measured
	if m.PacketsSent < 1000 {
		t.Fatalf("only %d packets sent", m.PacketsSent)
	}
	if r := float64(m.PacketsLost) / float64(m.PacketsSent); r < 0.03 || r > 0.07 {
		t.Errorf("measured loss %.3f, configured 0.05", r)
	}
	bw := res.Bandwidth
	if bw.Members != 32 || len(bw.PerMember) != 32 {
		t.Fatalf("bandwidth over %d members", bw.Members)
	}
	// Steady state: a probe and an ack per second (~100-200 B each with
	// the coordinate payload and encryption) plus push/pull.
	if bw.Sent.Mean < 100 || bw.Sent.Mean > 20000 || bw.Recv.Mean < 100 || bw.Recv.Mean > 20000 {
		t.Errorf("bandwidth sent %.0f recv %.0f B/s per member, want 100-20000", bw.Sent.Mean, bw.Recv.Mean)
	}
	if bw.PacketsPerSecMean < 1 || bw.PacketsPerSecMean > 10 {
		t.Errorf("%.2f packets/s per member, want 1-10 (a probe and an ack per second)", bw.PacketsPerSecMean)
	}
	if bw.PushPullStateBytes < 500 || bw.PushPullStateBytes > 200_000 {
		t.Errorf("push/pull state of %d bytes for 32 members, want 500-200000", bw.PushPullStateBytes)
	}
	if bw.PushPullPeriod != 30*time.Second || bw.SteadySentMean <= bw.PacketSentMean {
		t.Errorf("push/pull period %v, steady sent %.0f vs packets %.0f", bw.PushPullPeriod, bw.SteadySentMean, bw.PacketSentMean)
	}
	if bw.Sent.P99 < bw.Sent.P50 || bw.Sent.Max < bw.Sent.P99 {
		t.Errorf("bandwidth quantiles out of order: %+v", bw.Sent)
	}

	dir := t.TempDir()
	if err := res.WriteCSV(dir); err != nil {
		t.Fatal(err)
	}
	if err := res.WritePlot(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{JoinCSV, FailureCSV, BandwidthCSV, SummaryCSV, ConvergencePNG} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 20 {
			t.Errorf("%s has %d bytes", f, len(b))
		}
	}
	join, _ := os.ReadFile(filepath.Join(dir, JoinCSV))
	if lines := strings.Count(string(join), "\n"); lines != 1+len(res.Join.Times) {
		t.Errorf("%s has %d lines, want %d", JoinCSV, lines, 1+len(res.Join.Times))
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Run(ctx, Config{Members: 16, Seed: 1, TimeScale: 0.25})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
}

func TestPushPullScale(t *testing.T) {
	for _, c := range []struct {
		n    int
		want time.Duration
	}{{32, 30 * time.Second}, {64, 60 * time.Second}, {500, 150 * time.Second}, {1000, 180 * time.Second}} {
		if got := pushPullScale(30*time.Second, c.n); got != c.want {
			t.Errorf("pushPullScale(30s, %d) = %v, want %v", c.n, got, c.want)
		}
	}
}

func TestConvergenceAt(t *testing.T) {
	c := Convergence{Observers: 4, Times: []time.Duration{1, 2, 3}}
	if d, ok := c.At(0.5); !ok || d != 2 {
		t.Errorf("At(0.5) = %v %v", d, ok)
	}
	if _, ok := c.At(1); ok {
		t.Error("At(1) reached with 3 of 4")
	}
	if f := c.Fraction(2); f != 0.5 {
		t.Errorf("Fraction(2) = %v", f)
	}
	if f := c.Fraction(0); f != 0 {
		t.Errorf("Fraction(0) = %v", f)
	}
}

// TestOracles checks the lower bounds on a hand-placed network: two
// members in London, two in Madrid, known last miles.
func TestOracles(t *testing.T) {
	nw := testNet(t, 4, 0)
	lm := []time.Duration{1 * time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond}
	for i, m := range nw.members {
		m.region = i / 2 // 0, 1: london; 2, 3: madrid
		m.lastMile = lm[i]
	}
	base, r := nw.model.Base, nw.region[0][1]
	if r < 9*time.Millisecond {
		t.Fatalf("london-madrid %v", r)
	}
	d := func(a, b int) time.Duration {
		if nw.members[a].region == nw.members[b].region {
			return base + lm[a] + lm[b]
		}
		return base + r + lm[a] + lm[b]
	}
	// Join of member 3: each observer hears it directly.
	j := nw.joinOracle(3, []int{0, 1, 2})
	want := []time.Duration{d(3, 2), d(3, 0), d(3, 1)} // sorted: same metro first
	if !slices.Equal(j.Times, want) || j.Observers != 3 {
		t.Errorf("join oracle %v, want %v", j.Times, want)
	}
	// Failure of member 0 (London). Member 1 notices after its own round
	// trip; the Madrid members learn sooner from member 1 than by probing
	// across the sea themselves.
	f := nw.failureOracle(0, []int{1, 2, 3})
	o1 := 2 * d(1, 0)
	o2 := min(2*d(2, 0), 2*d(1, 0)+d(1, 2), 2*d(3, 0)+d(3, 2))
	o3 := min(2*d(3, 0), 2*d(1, 0)+d(1, 3), 2*d(2, 0)+d(2, 3))
	if o2 != 2*d(1, 0)+d(1, 2) {
		t.Fatalf("test layout: member 2 should learn through member 1")
	}
	want = []time.Duration{o1, o2, o3}
	slices.Sort(want)
	if !slices.Equal(f.Times, want) {
		t.Errorf("failure oracle %v, want %v", f.Times, want)
	}
}
