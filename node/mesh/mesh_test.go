package mesh

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/routing"
)

func TestJoinThroughOneSeed(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "join", 6)
	for _, n := range nodes {
		peers := n.Peers()
		if len(peers) != len(nodes)-1 {
			t.Fatalf("%s: %d peers, want %d", n.cfg.NodeID, len(peers), len(nodes)-1)
		}
		if !slices.IsSortedFunc(peers, func(a, b Peer) int { return cmpString(a.ID, b.ID) }) {
			t.Errorf("%s: Peers not sorted by ID", n.cfg.NodeID)
		}
		for _, p := range peers {
			if p.ID == n.cfg.NodeID {
				t.Errorf("%s lists itself", n.cfg.NodeID)
			}
			if p.Role != RoleEdge || p.Region != "test-1" || p.HTTPAddr != "127.0.0.1:8080" || p.QUICAddr != "127.0.0.1:8443" {
				t.Errorf("%s sees %s with metadata %+v", n.cfg.NodeID, p.ID, p)
			}
			if p.Location != (routing.Location{Lat: 52.52, Lon: 13.405}) {
				t.Errorf("%s sees %s at %v", n.cfg.NodeID, p.ID, p.Location)
			}
			want := smallCatalog(1, 2)
			if p.CatalogDigest != Digest(want) || p.CatalogGeneration != 1 {
				t.Errorf("%s sees %s with catalog %x/%d", n.cfg.NodeID, p.ID, p.CatalogDigest, p.CatalogGeneration)
			}
			other := nodes[slices.IndexFunc(nodes, func(x *node) bool { return x.cfg.NodeID == p.ID })]
			if p.Addr != other.Addr() {
				t.Errorf("%s sees %s at %s, want %s", n.cfg.NodeID, p.ID, p.Addr, other.Addr())
			}
		}
		if l := n.Local(); l.ID != n.cfg.NodeID || l.State != StateAlive || l.Addr != n.Addr() {
			t.Errorf("Local() = %+v", l)
		}
	}
	if _, ok := nodes[0].Peer("nobody"); ok {
		t.Error("Peer(nobody) found")
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// waitPeer waits until every observer sees peer id satisfy ok.
func waitPeer(t *testing.T, observers []*node, id string, timeout time.Duration, what string, ok func(Peer) bool) {
	t.Helper()
	waitFor(t, timeout, what, func() string {
		for _, o := range observers {
			p, found := o.Peer(id)
			if !found {
				return fmt.Sprintf("%s does not know %s", o.cfg.NodeID, id)
			}
			if !ok(p) {
				return fmt.Sprintf("%s sees %s as %v gen %d current %v", o.cfg.NodeID, id, p.State, p.CatalogGeneration, p.CatalogCurrent)
			}
		}
		return ""
	})
}

func TestCatalogPropagation(t *testing.T) {
	t.Parallel()
	t.Run("broadcast", func(t *testing.T) {
		t.Parallel()
		// Without periodic push/pull, only the gossip broadcast can carry
		// the new catalog. Gossip alone is probabilistic and nothing would
		// repair a miss, so retransmit generously.
		nodes := cluster(t, "catb", 5, func(c *Config) {
			c.Tune = func(mc *memberlistConfig) { fastTune(mc); mc.PushPullInterval = 0; mc.RetransmitMult = 8 }
		})
		next := smallCatalog(2, 3)
		if msg := encodeCatalogMsg(mustRecord(t, "catb-3", next)); msg == nil {
			t.Fatal("test catalog too large to broadcast")
		}
		checkCatalogSpreads(t, nodes, 3, next)
	})
	t.Run("push-pull", func(t *testing.T) {
		t.Parallel()
		nodes := cluster(t, "catp", 5)
		next := smallCatalog(7, 200) // far beyond MaxBroadcastBytes
		if msg := encodeCatalogMsg(mustRecord(t, "catp-2", next)); msg != nil {
			t.Fatal("test catalog small enough to broadcast")
		}
		checkCatalogSpreads(t, nodes, 2, next)
	})
}

func mustRecord(t *testing.T, id string, c Catalog) *catalogRecord {
	t.Helper()
	r, err := newCatalogRecord(id, c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func checkCatalogSpreads(t *testing.T, nodes []*node, idx int, next Catalog) {
	t.Helper()
	src := nodes[idx]
	id := src.cfg.NodeID
	src.src.set(next, Load{InFlight: 3, QueueDepth: 4})
	src.NotifyChanged()
	others := slices.Delete(slices.Clone(nodes), idx, idx+1)
	want := Digest(next)
	waitPeer(t, others, id, 10*time.Second, "new digest in metadata", func(p Peer) bool {
		return p.CatalogDigest == want && p.CatalogGeneration == next.Generation
	})
	waitPeer(t, others, id, 10*time.Second, "full catalog", func(p Peer) bool { return p.CatalogCurrent })
	sorted := sortedModels(next.Models)
	for _, o := range others {
		p, _ := o.Peer(id)
		if p.Load != (Load{InFlight: 3, QueueDepth: 4}) {
			t.Errorf("%s sees load %+v", o.cfg.NodeID, p.Load)
		}
		if p.Catalog.Generation != next.Generation || !slices.Equal(p.Catalog.Models, sorted) {
			t.Errorf("%s holds catalog gen %d with %d models, want gen %d with %d",
				o.cfg.NodeID, p.Catalog.Generation, len(p.Catalog.Models), next.Generation, len(sorted))
		}
	}
	if l := src.Local(); l.CatalogDigest != want || l.Load.InFlight != 3 {
		t.Errorf("Local() = %+v", l)
	}
}

func TestNotifyChangedCoalesces(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "rate", 2)
	a, b := nodes[0], nodes[1]
	interval := a.cfg.UpdateInterval
	before := a.src.readCount()
	start := time.Now()
	for i := range 200 {
		a.src.set(smallCatalog(1, 2), Load{InFlight: uint32(i)})
		a.NotifyChanged()
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	waitPeer(t, []*node{b}, "rate-0", 5*time.Second, "final load", func(p Peer) bool { return p.Load.InFlight == 199 })
	reads := a.src.readCount() - before
	// One refresh per interval at most, plus the one after the burst.
	if limit := int(elapsed/interval) + 2; reads > limit {
		t.Errorf("%d source reads for 200 NotifyChanged calls over %v; rate limit allows %d", reads, elapsed, limit)
	}
	if reads == 0 {
		t.Error("source never re-read")
	}
}

func TestFailureDetection(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "fail", 4)
	var subs []<-chan Event
	for _, n := range nodes[:3] {
		ch, cancel := n.Subscribe()
		t.Cleanup(cancel)
		subs = append(subs, ch)
	}
	victim := nodes[3]
	if err := victim.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitPeer(t, nodes[:3], victim.cfg.NodeID, 20*time.Second, "victim dead", func(p Peer) bool { return p.State == StateDead })

	// The node whose probe failed first suspected the victim before it
	// was declared dead; every survivor got a leave event saying dead.
	sawSuspect := false
	for i, ch := range subs {
		sawDead := false
		for len(ch) > 0 {
			ev := <-ch
			if ev.Peer.ID != victim.cfg.NodeID {
				continue
			}
			if ev.Type == EventUpdate && ev.Peer.State == StateSuspect {
				sawSuspect = true
			}
			if ev.Type == EventLeave {
				if ev.Peer.State != StateDead {
					t.Errorf("%s: leave event with state %v", nodes[i].cfg.NodeID, ev.Peer.State)
				}
				sawDead = true
			}
		}
		if !sawDead {
			t.Errorf("%s: no leave event for the victim", nodes[i].cfg.NodeID)
		}
	}
	if !sawSuspect {
		t.Error("no survivor reported the victim as suspect before it died")
	}
	if msg := checkAllMembers(nodes[:3]); msg != "" {
		t.Error(msg)
	}
}

func TestGracefulLeave(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "leave", 4)
	leaver := nodes[3]
	var subs []<-chan Event
	for _, n := range nodes[:3] {
		ch, cancel := n.Subscribe()
		t.Cleanup(cancel)
		subs = append(subs, ch)
	}
	if err := leaver.Leave(5 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if l := leaver.Local(); l.State != StateLeft {
		t.Errorf("Local().State = %v after Leave", l.State)
	}
	waitPeer(t, nodes[:3], leaver.cfg.NodeID, 10*time.Second, "leaver left", func(p Peer) bool { return p.State == StateLeft })
	// It must stay "left": a failure verdict must not overwrite it.
	time.Sleep(3 * fastProbe)
	for i, o := range nodes[:3] {
		if p, _ := o.Peer(leaver.cfg.NodeID); p.State != StateLeft || !p.Leaving {
			t.Errorf("%s sees the leaver as %v (leaving %v)", o.cfg.NodeID, p.State, p.Leaving)
		}
		// Every peer heard that it was leaving (and could stop routing to
		// it) before it went.
		var seq []string
		warned := -1
		for len(subs[i]) > 0 {
			if ev := <-subs[i]; ev.Peer.ID == leaver.cfg.NodeID {
				if warned < 0 && ev.Peer.Leaving && ev.Type == EventUpdate {
					warned = len(seq)
				}
				seq = append(seq, fmt.Sprintf("%v/%v/%v", ev.Type, ev.Peer.State, ev.Peer.Leaving))
			}
		}
		if warned < 0 || warned == len(seq)-1 || seq[len(seq)-1] != "leave/left/true" {
			t.Errorf("%s saw the leaver's events %v, want a leaving update, then leave/left", o.cfg.NodeID, seq)
		}
	}
	if err := leaver.Shutdown(); err != nil {
		t.Errorf("Shutdown after Leave: %v", err)
	}
	if err := leaver.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := leaver.Leave(time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Leave = %v, want ErrClosed", err)
	}
	if _, err := leaver.Join([]string{nodes[0].Addr()}); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after Leave = %v, want ErrClosed", err)
	}
}

// fastProbe is fastTune's probe interval.
const fastProbe = 200 * time.Millisecond

func TestCoordinates(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "coord", 3)
	// Loopback RTTs are tens of microseconds, so scheduling noise on a busy
	// machine can push a coordinate's error back above routing's
	// convergence threshold for a while. Each pair must reach a
	// coordinate-based estimate at some point, not all pairs at once.
	converged := map[string]bool{}
	waitFor(t, 30*time.Second, "converged coordinates", func() string {
		pending := ""
		for _, n := range nodes {
			if c := n.Coordinate(); !c.IsValid() {
				return n.cfg.NodeID + " has an invalid coordinate"
			}
			for _, p := range n.Peers() {
				pair := n.cfg.NodeID + "->" + p.ID
				if !p.Coordinate.IsValid() || p.LastPingRTT <= 0 {
					pending = pair + ": no coordinate yet"
					continue
				}
				if p.RTTSource == routing.RTTFromCoordinates {
					if p.RTT <= 0 || p.RTT >= routing.UnknownRTT {
						t.Errorf("%s: coordinate RTT %v", pair, p.RTT)
					}
					converged[pair] = true
				} else if !converged[pair] {
					pending = fmt.Sprintf("%s estimated from %v (errors %.2f and %.2f)", pair, p.RTTSource, n.Coordinate().Error, p.Coordinate.Error)
				}
			}
		}
		return pending
	})
	if len(converged) != 6 {
		t.Fatalf("%d pairs converged, want 6", len(converged))
	}
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	a := newNode(t, "sub-0")
	ch, cancel := a.Subscribe()
	b := newNode(t, "sub-1")
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	next := func(what string) Event {
		t.Helper()
		select {
		case ev := <-ch:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s event", what)
		}
		return Event{}
	}
	if ev := next("join"); ev.Type != EventJoin || ev.Peer.ID != "sub-1" || ev.Peer.State != StateAlive || ev.Time.IsZero() {
		t.Fatalf("first event = %v %+v", ev.Type, ev.Peer)
	}
	b.src.set(smallCatalog(1, 2), Load{QueueDepth: 9})
	b.NotifyChanged()
	for {
		ev := next("update")
		if ev.Type != EventUpdate {
			t.Fatalf("got %v, want update", ev.Type)
		}
		if ev.Peer.Load.QueueDepth == 9 {
			break
		}
	}
	cancel()
	cancel() // idempotent
	for range ch {
	}

	// A subscriber that never reads loses events but never blocks the mesh.
	tiny := newNode(t, "sub-2", withBuffer(1))
	tch, tcancel := tiny.Subscribe()
	defer tcancel()
	if _, err := tiny.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "dropped events", func() string {
		if tiny.DroppedEvents() == 0 {
			return "none dropped yet"
		}
		return ""
	})
	if len(tch) != 1 {
		t.Errorf("tiny subscriber holds %d events, want 1", len(tch))
	}

	// Shutdown closes subscriptions; a later Subscribe gets a closed channel.
	if err := tiny.Shutdown(); err != nil {
		t.Fatal(err)
	}
	<-tch // the buffered event
	if _, open := <-tch; open {
		t.Error("subscription still open after Shutdown")
	}
	late, _ := tiny.Subscribe()
	if _, open := <-late; open {
		t.Error("Subscribe after Shutdown returned an open channel")
	}
}

func TestSuspicionClearsWhenPeerAnswers(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "susp", 2)
	a := nodes[0]
	ch, cancel := a.Subscribe()
	defer cancel()
	// Feed the log bridge the line memberlist writes when a probe fails.
	bridge := &logBridge{log: a.log, onSuspect: a.markSuspect}
	fmt.Fprintf(bridge, "[INFO] memberlist: Suspect %s has failed, no acks received\n", "susp-1")
	if p, _ := a.Peer("susp-1"); p.State != StateSuspect {
		t.Fatalf("state after a failed probe = %v, want suspect", p.State)
	}
	// The peer is alive, so the next direct ping clears the suspicion.
	waitPeer(t, []*node{a}, "susp-1", 10*time.Second, "alive again", func(p Peer) bool { return p.State == StateAlive })
	var states []State
	for len(ch) > 0 {
		if ev := <-ch; ev.Peer.ID == "susp-1" && ev.Type == EventUpdate {
			states = append(states, ev.Peer.State)
		}
	}
	if i := slices.Index(states, StateSuspect); i < 0 || !slices.Contains(states[i:], StateAlive) {
		t.Errorf("update events carried states %v, want suspect then alive", states)
	}
	// An unknown name is ignored.
	fmt.Fprintf(bridge, "[INFO] memberlist: Suspect %s has failed, no acks received\n", "nobody")
	if _, ok := a.Peer("nobody"); ok {
		t.Error("suspicion of an unknown node created a peer")
	}
}

func TestReap(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "reap", 3, func(c *Config) { c.ReapTimeout = 300 * time.Millisecond })
	ch, cancel := nodes[0].Subscribe()
	defer cancel()
	if err := nodes[2].Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for ev := range ch {
		if ev.Peer.ID == "reap-2" && ev.Type == EventLeave {
			if ev.Peer.State != StateLeft {
				t.Fatalf("leave event with state %v", ev.Peer.State)
			}
			break
		}
	}
	waitFor(t, 10*time.Second, "reaped", func() string {
		for _, n := range nodes[:2] {
			if _, ok := n.Peer("reap-2"); ok {
				return n.cfg.NodeID + " still holds reap-2"
			}
		}
		return ""
	})
	if msg := checkAllMembers(nodes[:2]); msg != "" {
		t.Error(msg)
	}
}
