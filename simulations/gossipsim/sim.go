package gossipsim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/petrel-mesh/petrel/node/mesh"
)

// eventBuffer is each member's mesh.Config.EventBuffer. The watchers drain
// the channels at once; a drop (mesh.DroppedEvents) makes the watcher
// resynchronise from Peers.
const eventBuffer = 512

// pollEvery is the real-time period of the loops that wait for the
// cluster to reach a state.
const pollEvery = 10 * time.Millisecond

// Timing is the memberlist timing the members ran with, in deployment
// time (before TimeScale), as node/mesh derives it from the profile.
type Timing struct {
	Profile          mesh.Profile
	ProbeInterval    time.Duration
	ProbeTimeout     time.Duration
	GossipInterval   time.Duration
	GossipNodes      int
	PushPullInterval time.Duration // before memberlist scales it with the cluster size
	SuspicionMult    int
	RetransmitMult   int
	Encrypted        bool
	Compression      bool
}

// Convergence is how a membership change spread: the time, from the
// change, at which each observer first listed it.
type Convergence struct {
	// Target is the member that joined or failed.
	Target string
	// Observers is the number of members that should see the change.
	Observers int
	// Times holds, sorted, the deployment time after the change at which
	// each observer that saw it within the timeout first did.
	Times []time.Duration
	// Timeout is the deployment time the simulation waited at most.
	Timeout time.Duration
}

// At returns the time by which a share frac (0-1] of the observers had
// seen the change, and false if that share was not reached in time.
func (c *Convergence) At(frac float64) (time.Duration, bool) {
	k := int(math.Ceil(frac*float64(c.Observers) - 1e-9))
	if k <= 0 {
		return 0, true
	}
	if k > len(c.Times) {
		return 0, false
	}
	return c.Times[k-1], true
}

// Fraction returns the share of observers that had seen the change by t.
func (c *Convergence) Fraction(t time.Duration) float64 {
	if c.Observers == 0 {
		return 0
	}
	n, _ := slices.BinarySearchFunc(c.Times, t, func(a, b time.Duration) int {
		if a <= b {
			return -1
		}
		return 1
	})
	return float64(n) / float64(c.Observers)
}

// Bandwidth is the steady-state traffic per member, in deployment bytes
// per second.
type Bandwidth struct {
	// Window is the deployment time over which traffic was counted.
	Window time.Duration
	// Members is the number of members counted.
	Members int
	// Sent and Recv summarise the members' total (packets and streams)
	// bytes per second.
	Sent, Recv Stats
	// PacketSentMean and StreamSentMean split the mean sent rate into
	// packets (probes, gossip) and streams (push/pull, TCP fallback).
	PacketSentMean, StreamSentMean float64
	// PacketsPerSecMean is the mean number of packets a member sent per
	// second.
	PacketsPerSecMean float64
	// PerMember is each member's rates, by member index.
	PerMember []MemberRate

	// memberlist's periodic push/pull runs every PushPullInterval scaled
	// by the cluster size (×(⌈log2 N − 5⌉ + 1) above 32 members: 150 s at
	// 500, 180 s at 1,000 on the LAN profile), and its timers start when
	// the members do, so all members of a freshly formed cluster run
	// their first exchange within the first PushPullInterval and the
	// window usually sees none. The steady-state push/pull rate is
	// therefore computed, not sampled: PushPullStateBytes is the size of
	// one full state (measured: what the joining member received from its
	// seed), and each member sends about one state as initiator and one
	// as partner per PushPullPeriod: PushPullBps = 2·StateBytes/Period,
	// sent and received alike. SteadySentMean is PacketSentMean plus
	// PushPullBps: the mean a member of a long-running cluster sends.
	PushPullStateBytes uint64
	PushPullPeriod     time.Duration
	PushPullBps        float64
	SteadySentMean     float64
}

// Stats summarises one rate over the members.
type Stats struct{ Mean, P50, P99, Max float64 }

// MemberRate is one member's steady-state traffic in deployment bytes
// (or packets) per second.
type MemberRate struct {
	ID, Region         string
	Sent, Recv         float64
	PacketSent         float64
	StreamSent         float64
	PacketsSentPerSec  float64
	PacketsRecvPerSec  float64
	PacketsLostPerSec  float64
	StreamsOpenedPerS  float64
	PacketBytesRecvPS  float64
	StreamBytesRecvPS  float64
	PacketsDroppedPerS float64
}

// Lag summarises how late the process's timers fired while measuring (real
// time, not scaled): a 10 ms ticker's lateness. Large values mean the
// machine did not keep up and the figures are pessimistic; raise
// Config.TimeScale.
type Lag struct{ P50, P99, Max time.Duration }

// Result is what Run measured. Durations are deployment time.
type Result struct {
	// Config is the configuration run, with defaults filled in.
	Config Config
	// Timing is the memberlist timing used.
	Timing Timing
	// Bootstrap is how long the cluster took to form (every member listing
	// every other) and Settled how long until its formation gossip had
	// drained; IsSettled is false if SettleTimeout passed first (the
	// measurements then run on a busier cluster).
	Bootstrap, Settled time.Duration
	IsSettled          bool
	// Bandwidth is the steady-state traffic, measured before the join.
	Bandwidth Bandwidth
	// JoinCall is how long the joining member's mesh.Join (a push/pull
	// with the seed) took.
	JoinCall time.Duration
	// JoinSeed is the member the new one joined through.
	JoinSeed string
	// Join is how the join spread to the Members existing members.
	Join Convergence
	// Failure is how the killed member's failure spread to the other
	// Members members (the joined one included). A member that already
	// listed it dead before the kill counts at time 0.
	Failure Convergence
	// JoinOracle and FailureOracle are the physical lower bounds of Join
	// and Failure on the same network and placement: the one-way delay
	// from the joiner to each observer, and for the failure the earliest
	// a live member can miss the victim's answer (one round trip) plus
	// its one-way delay to the observer. No protocol can beat them.
	JoinOracle, FailureOracle Convergence
	// FalseFailures counts members other than the killed one that some
	// member declared dead after the cluster settled.
	FalseFailures int
	// Measured is the traffic of all members from the start of the
	// bandwidth window to the end of the run, summed; its PacketsLost
	// over PacketsSent is the loss rate actually injected.
	Measured Counters
	// SchedulerLag is the timer lateness while measuring.
	SchedulerLag Lag
	// DroppedEvents counts mesh events lost to full subscriber buffers
	// while measuring (mesh.DroppedEvents); an observer whose event was
	// lost counts as not having seen the change. Zero in a healthy run.
	DroppedEvents uint64
}

// member is one simulated node.
type member struct {
	idx    int
	id     string
	region string
	m      *mesh.Mesh
	obs    *observer
	// dropped is mesh.DroppedEvents at the last resync (waitFormed only).
	dropped uint64
}

// observer follows one member's view through its mesh events.
type observer struct {
	mu     sync.Mutex
	states map[string]mesh.State
	alive  int
	joinAt time.Time // first time the joiner was listed
	deadAt time.Time // first time the victim was listed dead or left
}

// sim is one run's state.
type sim struct {
	cfg      Config
	log      *slog.Logger
	nw       *network
	members  []*member // Members existing ones, then the joiner
	joinerID string
	timing   Timing
	timingMu sync.Once

	pushPullState uint64 // bytes of the seed's push/pull state, from the join

	victimID  atomic.Pointer[string]
	killAt    atomic.Pointer[time.Time]
	settled   atomic.Bool
	falseDead sync.Map // id -> struct{}
	watchers  sync.WaitGroup
}

// Run builds a cluster of cfg.Members node/mesh members (the project's
// gossip layer on hashicorp/memberlist, with the profile's timing) over an
// in-memory network, lets it form and settle, then measures in order:
// steady-state bandwidth per member, the spread of a join through one seed,
// and the detection of a member killed without a leave. It needs roughly
// Settle + BandwidthWindow + join + failure detection of wall time times
// TimeScale; cancelling ctx stops it early with ctx's error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	rng := rand.New(rand.NewPCG(c.Seed, 0x9e3779b97f4a7c15))
	n := c.Members
	s := &sim{cfg: c, log: c.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.nw = newNetwork(c, n+1, rng)
	s.nw.start()
	defer s.nw.stop()

	var key []byte
	if !c.Plaintext {
		key = make([]byte, 32)
		for i := range key {
			key[i] = byte(rng.Uint32())
		}
	}
	catalogs := drawCatalogs(rng, n+1, c.CatalogModels)
	seedIdx := rng.IntN(n)
	victimIdx := rng.IntN(n - 1)
	if victimIdx >= seedIdx {
		victimIdx++
	}

	defer s.shutdownAll()
	for i := range n + 1 {
		mb, err := s.newMember(i, key, catalogs[i])
		if err != nil {
			return nil, err
		}
		s.members = append(s.members, mb)
	}
	s.joinerID = s.members[n].id

	// Form the cluster: every existing member joins through member 0.
	start := time.Now()
	if err := s.bootstrap(ctx); err != nil {
		return nil, err
	}
	s.log.Info("gossipsim: every member has joined through member 0", "wall", time.Since(start))
	res := &Result{Config: c}
	joinObs, failObs := make([]int, 0, n), make([]int, 0, n)
	for i := range n + 1 {
		if i < n {
			joinObs = append(joinObs, i)
		}
		if i != victimIdx {
			failObs = append(failObs, i)
		}
	}
	res.JoinOracle = s.nw.joinOracle(n, joinObs)
	res.JoinOracle.Target = s.joinerID
	res.FailureOracle = s.nw.failureOracle(victimIdx, failObs)
	res.FailureOracle.Target = s.members[victimIdx].id
	if err := s.waitFormed(ctx, start.Add(s.real(c.SettleTimeout))); err != nil {
		return nil, err
	}
	res.Bootstrap = s.deploy(time.Since(start))
	s.log.Info("gossipsim: cluster formed", "members", n, "deployment_time", res.Bootstrap, "wall", time.Since(start))
	settled, err := s.waitSettled(ctx, start.Add(s.real(c.SettleTimeout)))
	if err != nil {
		return nil, err
	}
	res.IsSettled = settled
	res.Settled = s.deploy(time.Since(start))
	s.settled.Store(true)
	s.log.Info("gossipsim: settled", "ok", settled, "deployment_time", res.Settled, "wall", time.Since(start))
	res.Timing = s.timing

	lag := startLagMonitor()
	before := s.counters(n + 1)
	droppedBefore := s.droppedEvents()

	// (3) Steady-state bandwidth.
	bw, err := s.measureBandwidth(ctx, n)
	if err != nil {
		lag.stop()
		return nil, err
	}
	res.Bandwidth = bw
	s.log.Info("gossipsim: bandwidth measured", "sent_Bps_mean", bw.Sent.Mean, "recv_Bps_mean", bw.Recv.Mean)

	// (1) Join through one seed.
	res.JoinSeed = s.members[seedIdx].id
	res.JoinCall, res.Join, err = s.measureJoin(ctx, seedIdx)
	if err != nil {
		lag.stop()
		return nil, err
	}

	s.log.Info("gossipsim: join measured", "seen", len(res.Join.Times), "observers", res.Join.Observers)
	bwp := &res.Bandwidth
	bwp.PushPullStateBytes = s.pushPullState
	bwp.PushPullPeriod = pushPullScale(s.timing.PushPullInterval, n)
	if bwp.PushPullPeriod > 0 {
		bwp.PushPullBps = 2 * float64(s.pushPullState) / bwp.PushPullPeriod.Seconds()
	}
	bwp.SteadySentMean = bwp.PacketSentMean + bwp.PushPullBps

	// (2) Failure of a member that stops answering.
	res.Failure, err = s.measureFailure(ctx, victimIdx)
	res.SchedulerLag = lag.stop()
	if err != nil {
		return nil, err
	}
	after := s.counters(n + 1)
	for i := range after {
		res.Measured = res.Measured.add(after[i].sub(before[i]))
	}
	s.falseDead.Range(func(any, any) bool { res.FalseFailures++; return true })
	res.DroppedEvents = s.droppedEvents() - droppedBefore
	return res, nil
}

// pushPullScale is memberlist's scaling of the push/pull interval with
// the cluster size (memberlist util.go, unexported there).
func pushPullScale(interval time.Duration, n int) time.Duration {
	const threshold = 32
	if n <= threshold {
		return interval
	}
	mult := math.Ceil(math.Log2(float64(n))-math.Log2(threshold)) + 1
	return time.Duration(mult) * interval
}

// droppedEvents sums mesh.DroppedEvents over the members.
func (s *sim) droppedEvents() uint64 {
	var d uint64
	for _, mb := range s.members {
		d += mb.m.DroppedEvents()
	}
	return d
}

// real converts a deployment duration to the wall time of the run.
func (s *sim) real(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.cfg.TimeScale)
}

// deploy converts a wall duration of the run to deployment time.
func (s *sim) deploy(d time.Duration) time.Duration {
	return time.Duration(float64(d) / s.cfg.TimeScale)
}

// newMember starts member i's mesh (not yet joined) and its watcher.
func (s *sim) newMember(i int, key []byte, cat mesh.Catalog) (*member, error) {
	t := s.nw.members[i]
	region := s.cfg.Network.Regions[t.region]
	host := t.udpAddr.IP.String()
	mc := mesh.Config{
		NodeID:         fmt.Sprintf("edge-%05d", i),
		Role:           mesh.RoleEdge,
		Region:         region.Name,
		Location:       region.Loc,
		HTTPAddr:       net.JoinHostPort(host, "8000"),
		QUICAddr:       net.JoinHostPort(host, "8443"),
		Profile:        s.cfg.Profile,
		DevMode:        key == nil,
		Logger:         slog.New(slog.DiscardHandler),
		UpdateInterval: s.real(mesh.DefaultUpdateInterval),
		EventBuffer:    eventBuffer,
		ReapTimeout:    s.real(mesh.DefaultReapTimeout),
		Tune:           func(mlc *memberlist.Config) { s.tune(mlc, t) },
	}
	if key != nil {
		mc.SecretKeys = [][]byte{key}
	}
	m, err := mesh.New(mc, mesh.SourceFuncs{CatalogFunc: func() mesh.Catalog { return cat }})
	if err != nil {
		return nil, fmt.Errorf("gossipsim: member %d: %w", i, err)
	}
	mb := &member{idx: i, id: mc.NodeID, region: region.Name, m: m, obs: &observer{states: make(map[string]mesh.State)}}
	ch, _ := m.Subscribe() // closed by Shutdown
	s.watchers.Add(1)
	go s.watch(mb, ch)
	return mb, nil
}

// tune is the mesh.Config.Tune hook: it records the profile's timing,
// scales every interval and timeout by TimeScale and installs the
// in-memory transport. node/mesh sets everything else (identity, keyring,
// delegates) after it, as in production.
func (s *sim) tune(c *memberlist.Config, t *transport) {
	s.timingMu.Do(func() {
		s.timing = Timing{
			Profile: s.cfg.Profile, ProbeInterval: c.ProbeInterval, ProbeTimeout: c.ProbeTimeout,
			GossipInterval: c.GossipInterval, GossipNodes: c.GossipNodes, PushPullInterval: c.PushPullInterval,
			SuspicionMult: c.SuspicionMult, RetransmitMult: c.RetransmitMult,
			Encrypted: !s.cfg.Plaintext, Compression: c.EnableCompression,
		}
	})
	for _, d := range []*time.Duration{
		&c.TCPTimeout, &c.PushPullInterval, &c.ProbeTimeout, &c.ProbeInterval,
		&c.GossipInterval, &c.GossipToTheDeadTime, &c.QueueCheckInterval, &c.DeadNodeReclaimTime,
	} {
		*d = s.real(*d)
	}
	c.Transport = t
}

// watch applies member mb's events to its observer until the channel
// closes.
func (s *sim) watch(mb *member, ch <-chan mesh.Event) {
	defer s.watchers.Done()
	o := mb.obs
	for ev := range ch {
		id := ev.Peer.ID
		alive := ev.Peer.State == mesh.StateAlive || ev.Peer.State == mesh.StateSuspect
		o.mu.Lock()
		o.set(id, ev.Peer.State)
		if alive && id == s.joinerID && o.joinAt.IsZero() {
			o.joinAt = ev.Time
		}
		victim := s.victimID.Load()
		o.mu.Unlock()
		if !alive && ev.Type == mesh.EventLeave {
			if victim != nil && id == *victim {
				if k := s.killAt.Load(); k != nil {
					o.mu.Lock()
					if o.deadAt.IsZero() {
						o.deadAt = ev.Time
					}
					o.mu.Unlock()
				}
			} else if s.settled.Load() {
				s.falseDead.Store(id, struct{}{})
			}
		}
	}
}

// set records a peer's state and keeps the alive count. Caller holds mu.
func (o *observer) set(id string, st mesh.State) {
	isAlive := func(s mesh.State) bool { return s == mesh.StateAlive || s == mesh.StateSuspect }
	old, ok := o.states[id]
	if ok && isAlive(old) {
		o.alive--
	}
	o.states[id] = st
	if isAlive(st) {
		o.alive++
	}
}

// resync rebuilds an observer's states from the mesh after dropped
// events.
func (s *sim) resync(mb *member) {
	peers := mb.m.Peers()
	o := mb.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.states)
	o.alive = 0
	for _, p := range peers {
		o.set(p.ID, p.State)
	}
}

// bootstrap joins members 1..Members-1 through member 0, JoinParallel at
// a time.
func (s *sim) bootstrap(ctx context.Context) error {
	n := s.cfg.Members
	seed := s.members[0].m.Addr()
	next := atomic.Int64{}
	next.Store(1)
	errc := make(chan error, s.cfg.JoinParallel)
	for range s.cfg.JoinParallel {
		go func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					errc <- ctx.Err()
					return
				}
				var err error
				for range 3 {
					if _, err = s.members[i].m.Join([]string{seed}); err == nil {
						break
					}
				}
				if err != nil {
					next.Store(int64(n))
					errc <- fmt.Errorf("gossipsim: bootstrap: member %d: %w", i, err)
					return
				}
			}
		}()
	}
	var first error
	for range s.cfg.JoinParallel {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// waitFormed waits until every existing member lists all the others.
// Gossip alone can leave a member unaware of a few others until
// memberlist's periodic push/pull repairs it (minutes at 1,000 members),
// so when the members' views have stopped growing for five probe
// intervals, the members still missing peers run mesh.Join with member 0
// again, a push/pull with a member that knows everyone. That only
// shortens the bootstrap, which is not measured.
func (s *sim) waitFormed(ctx context.Context, deadline time.Time) error {
	n := s.cfg.Members
	stallAfter := s.real(5 * s.timing.ProbeInterval)
	lastGrowth, lastSum := time.Now(), -1
	lastLog := time.Now()
	for {
		var lagging []*member
		sum := 0
		for _, mb := range s.members[:n] {
			if d := mb.m.DroppedEvents(); d != mb.dropped {
				mb.dropped = d
				s.resync(mb)
			}
			mb.obs.mu.Lock()
			if mb.obs.alive < n-1 {
				lagging = append(lagging, mb)
			}
			sum += mb.obs.alive
			mb.obs.mu.Unlock()
		}
		if len(lagging) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gossipsim: the cluster did not form within SettleTimeout %v: %d of %d members list all others", s.cfg.SettleTimeout, n-len(lagging), n)
		}
		if time.Since(lastLog) >= 10*time.Second {
			s.log.Debug("gossipsim: forming", "complete", n-len(lagging), "members", n, "listed", float64(sum)/float64(n*(n-1)))
			lastLog = time.Now()
		}
		if sum != lastSum {
			lastGrowth, lastSum = time.Now(), sum
		} else if time.Since(lastGrowth) >= stallAfter {
			s.log.Debug("gossipsim: forming stalled: push/pull with member 0 for the members still missing peers", "complete", n-len(lagging), "members", n)
			s.rejoin(lagging)
			lastGrowth = time.Now()
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// rejoin makes each member push/pull with member 0, JoinParallel at a
// time. Failures are ignored: waitFormed checks the outcome.
func (s *sim) rejoin(members []*member) {
	seed := s.members[0].m.Addr()
	var wg sync.WaitGroup
	sem := make(chan struct{}, s.cfg.JoinParallel)
	for _, mb := range members {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, _ = mb.m.Join([]string{seed})
		}()
	}
	wg.Wait()
}

// waitSettled waits until the formation's broadcasts have drained: two
// consecutive windows of two probe intervals in which the members sent at
// most 4 packets each per probe interval (a settled member sends about 2:
// its probe and one ack; a member still gossiping sends GossipNodes per
// gossip interval, 15 per probe interval at LAN timing). It reports false
// if the deadline passes first.
func (s *sim) waitSettled(ctx context.Context, deadline time.Time) (bool, error) {
	n := s.cfg.Members
	win := s.real(2 * s.timing.ProbeInterval)
	quiet := 0
	prev := sumPackets(s.counters(n))
	for time.Now().Before(deadline) {
		if err := sleep(ctx, win); err != nil {
			return false, err
		}
		cur := sumPackets(s.counters(n))
		perMemberPerProbe := float64(cur-prev) / float64(n) / 2
		prev = cur
		s.log.Debug("gossipsim: settling", "packets_per_member_per_probe", perMemberPerProbe)
		if perMemberPerProbe <= 4 {
			quiet++
			if quiet == 2 {
				return true, nil
			}
		} else {
			quiet = 0
		}
	}
	return false, nil
}

func sumPackets(cs []Counters) uint64 {
	var t uint64
	for _, c := range cs {
		t += c.PacketsSent
	}
	return t
}

// counters snapshots the first k members' counters.
func (s *sim) counters(k int) []Counters {
	out := make([]Counters, k)
	for i := range k {
		out[i] = s.nw.members[i].stats.snapshot()
	}
	return out
}

// measureBandwidth counts the first n members' traffic over the window.
func (s *sim) measureBandwidth(ctx context.Context, n int) (Bandwidth, error) {
	c0 := s.counters(n)
	t0 := time.Now()
	if err := sleep(ctx, s.real(s.cfg.BandwidthWindow)); err != nil {
		return Bandwidth{}, err
	}
	c1 := s.counters(n)
	secs := s.deploy(time.Since(t0)).Seconds()
	bw := Bandwidth{Window: s.deploy(time.Since(t0)), Members: n, PerMember: make([]MemberRate, n)}
	sent, recv := make([]float64, n), make([]float64, n)
	for i := range n {
		d := c1[i].sub(c0[i])
		r := MemberRate{
			ID: s.members[i].id, Region: s.members[i].region,
			Sent: float64(d.BytesSent()) / secs, Recv: float64(d.BytesRecv()) / secs,
			PacketSent: float64(d.PacketBytesSent) / secs, StreamSent: float64(d.StreamBytesSent) / secs,
			PacketsSentPerSec: float64(d.PacketsSent) / secs, PacketsRecvPerSec: float64(d.PacketsRecv) / secs,
			PacketsLostPerSec: float64(d.PacketsLost) / secs, StreamsOpenedPerS: float64(d.StreamsOpened) / secs,
			PacketBytesRecvPS: float64(d.PacketBytesRecv) / secs, StreamBytesRecvPS: float64(d.StreamBytesRecv) / secs,
			PacketsDroppedPerS: float64(d.PacketsDropped) / secs,
		}
		bw.PerMember[i] = r
		sent[i], recv[i] = r.Sent, r.Recv
		bw.PacketSentMean += r.PacketSent / float64(n)
		bw.StreamSentMean += r.StreamSent / float64(n)
		bw.PacketsPerSecMean += r.PacketsSentPerSec / float64(n)
	}
	bw.Sent, bw.Recv = summarise(sent), summarise(recv)
	return bw, nil
}

// summarise returns the mean, median, 99th percentile (nearest rank) and
// maximum of v.
func summarise(v []float64) Stats {
	if len(v) == 0 {
		return Stats{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	mean := 0.0
	for _, x := range s {
		mean += x
	}
	rank := func(q float64) float64 { return s[max(0, int(math.Ceil(q*float64(len(s))))-1)] }
	return Stats{Mean: mean / float64(len(s)), P50: rank(0.5), P99: rank(0.99), Max: s[len(s)-1]}
}

// measureJoin joins the new member through the seed and waits until
// every existing member lists it, or JoinTimeout.
func (s *sim) measureJoin(ctx context.Context, seedIdx int) (time.Duration, Convergence, error) {
	n := s.cfg.Members
	joiner := s.members[n]
	c0 := s.nw.members[n].stats.snapshot()
	t0 := time.Now()
	if _, err := joiner.m.Join([]string{s.members[seedIdx].m.Addr()}); err != nil {
		return 0, Convergence{}, fmt.Errorf("gossipsim: join: %w", err)
	}
	call := s.deploy(time.Since(t0))
	s.pushPullState = s.nw.members[n].stats.snapshot().StreamBytesRecv - c0.StreamBytesRecv
	obs := s.members[:n]
	conv, err := s.waitSpread(ctx, t0, s.cfg.JoinTimeout, joiner.id, obs, func(o *observer) time.Time { return o.joinAt })
	return call, conv, err
}

// measureFailure kills the victim (its transport becomes a black hole and
// its mesh shuts down without a leave) and waits until every other member
// lists it dead, or FailTimeout.
func (s *sim) measureFailure(ctx context.Context, victimIdx int) (Convergence, error) {
	victim := s.members[victimIdx]
	s.victimID.Store(&victim.id)
	t0 := time.Now()
	s.killAt.Store(&t0)
	s.nw.kill(victimIdx)
	go func() { _ = victim.m.Shutdown() }()
	var obs []*member
	for _, mb := range s.members {
		if mb.idx == victimIdx {
			continue
		}
		mb.obs.mu.Lock()
		if st, ok := mb.obs.states[victim.id]; ok && st != mesh.StateAlive && st != mesh.StateSuspect && mb.obs.deadAt.IsZero() {
			mb.obs.deadAt = t0 // already listed dead before the kill
		}
		mb.obs.mu.Unlock()
		obs = append(obs, mb)
	}
	return s.waitSpread(ctx, t0, s.cfg.FailTimeout, victim.id, obs, func(o *observer) time.Time { return o.deadAt })
}

// waitSpread waits until every observer has a time from at, or the
// timeout, and returns the convergence.
func (s *sim) waitSpread(ctx context.Context, t0 time.Time, timeout time.Duration, target string, obs []*member, at func(*observer) time.Time) (Convergence, error) {
	deadline := t0.Add(s.real(timeout))
	conv := Convergence{Target: target, Observers: len(obs), Timeout: timeout}
	for {
		conv.Times = conv.Times[:0]
		for _, mb := range obs {
			mb.obs.mu.Lock()
			t := at(mb.obs)
			mb.obs.mu.Unlock()
			if !t.IsZero() {
				conv.Times = append(conv.Times, s.deploy(max(0, t.Sub(t0))))
			}
		}
		if len(conv.Times) == len(obs) || time.Now().After(deadline) {
			slices.Sort(conv.Times)
			return conv, nil
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return conv, err
		}
	}
}

// shutdownAll stops every member and waits for the watchers.
func (s *sim) shutdownAll() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, mb := range s.members {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_ = mb.m.Shutdown()
		}()
	}
	wg.Wait()
	s.watchers.Wait()
}

// drawCatalogs returns k catalog entries per member, drawn without
// replacement from DefaultCatalogPool models.
func drawCatalogs(rng *rand.Rand, members, k int) []mesh.Catalog {
	pool := make([]mesh.CatalogEntry, DefaultCatalogPool)
	for i := range pool {
		name := fmt.Sprintf("model-%03d", i)
		sum := sha256.Sum256([]byte(name))
		pool[i] = mesh.CatalogEntry{Name: name, Version: "v1", Digest: "sha256:" + hex.EncodeToString(sum[:]), Ready: true, Bytes: int64(1+i%50) << 20}
	}
	out := make([]mesh.Catalog, members)
	for i := range out {
		out[i].Generation = 1
		for _, j := range rng.Perm(len(pool))[:k] {
			out[i].Models = append(out[i].Models, pool[j])
		}
	}
	return out
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// lagMonitor measures how late a 10 ms ticker fires.
type lagMonitor struct {
	stopCh chan struct{}
	done   chan Lag
}

func startLagMonitor() *lagMonitor {
	l := &lagMonitor{stopCh: make(chan struct{}), done: make(chan Lag, 1)}
	go func() {
		const period = 10 * time.Millisecond
		var lags []time.Duration
		last := time.Now()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-l.stopCh:
				slices.Sort(lags)
				var out Lag
				if len(lags) > 0 {
					q := func(f float64) time.Duration { return lags[max(0, int(math.Ceil(f*float64(len(lags))))-1)] }
					out = Lag{P50: q(0.5), P99: q(0.99), Max: lags[len(lags)-1]}
				}
				l.done <- out
				return
			case <-t.C:
				now := time.Now()
				lags = append(lags, max(0, now.Sub(last)-period))
				last = now
			}
		}
	}()
	return l
}

func (l *lagMonitor) stop() Lag {
	close(l.stopCh)
	return <-l.done
}
