package mesh

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/petrel-mesh/petrel/routing"
)

// memberlist's userMsg message type: a plaintext UDP packet starting with
// it goes straight to Delegate.NotifyMsg.
const memberlistUserMsg = 8

func TestGarbageOnGossipPort(t *testing.T) {
	t.Parallel()
	for _, encrypted := range []bool{true, false} {
		t.Run(fmt.Sprintf("encrypted=%v", encrypted), func(t *testing.T) {
			t.Parallel()
			opt := func(c *Config) {}
			prefix := "garbage-enc"
			if !encrypted {
				opt = func(c *Config) { c.SecretKeys, c.DevMode = nil, true }
				prefix = "garbage-dev"
			}
			nodes := cluster(t, prefix, 3, opt)
			target := nodes[0]
			rng := rand.New(rand.NewPCG(7, uint64(len(prefix))))
			junk := func(first byte, max int) []byte {
				b := make([]byte, 1+rng.IntN(max))
				for i := range b {
					b[i] = byte(rng.UintN(256))
				}
				b[0] = first
				return b
			}

			udp, err := net.Dial("udp", target.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer udp.Close()
			for i := range 600 {
				// Every possible leading (message type) byte, then random.
				if _, err := udp.Write(junk(byte(i), 1400)); err != nil {
					t.Fatal(err)
				}
			}
			// A user message with a garbage payload reaches the delegate
			// when gossip is not encrypted.
			if _, err := udp.Write([]byte{memberlistUserMsg, 0xff, 0xfe, 0xfd}); err != nil {
				t.Fatal(err)
			}
			// Streams: garbage then close, for every leading byte; one
			// connection that never speaks and one that stalls mid-message
			// stay open while the cluster works.
			for i := range 256 {
				c, err := net.Dial("tcp", target.Addr())
				if err != nil {
					t.Fatal(err)
				}
				_, _ = c.Write(junk(byte(i), 4096))
				_ = c.Close()
			}
			idle, err := net.Dial("tcp", target.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer idle.Close()
			stall, err := net.Dial("tcp", target.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer stall.Close()
			_, _ = stall.Write([]byte{6, 0x85}) // pushPull, start of a msgpack map

			// Still answering: a newcomer joins through the target, and no
			// member was suspected or lost along the way.
			late := newNode(t, prefix+"-late", opt)
			if _, err := late.Join([]string{target.Addr()}); err != nil {
				t.Fatalf("join through the target after garbage: %v", err)
			}
			all := append(nodes, late)
			waitFor(t, 10*time.Second, "membership after garbage", func() string { return checkAllAlive(all) })
			time.Sleep(5 * fastProbe)
			if msg := checkAllMembers(all); msg != "" {
				t.Fatal(msg)
			}
			if !encrypted {
				waitFor(t, 5*time.Second, "log of the dropped message", func() string {
					if target.logs.count("dropping invalid gossip message") == 0 {
						return "not logged"
					}
					return ""
				})
			}
		})
	}
}

// bareMesh returns a Mesh with a peer table but no network, for testing
// the delegate's decisions directly.
func bareMesh(t *testing.T) (*Mesh, *logSink) {
	t.Helper()
	coord, err := routing.NewCoordinateClient(routing.DefaultCoordinateConfig())
	if err != nil {
		t.Fatal(err)
	}
	sink := &logSink{min: -8}
	m := &Mesh{
		cfg:   Config{NodeID: "self", Role: RoleEdge},
		log:   slog.New(sink),
		coord: coord,
		peers: make(map[string]*peerEntry),
		subs:  make(map[*subscription]struct{}),
	}
	m.local, err = m.buildLocal(nil, smallCatalog(1, 1), Load{}, false)
	if err != nil {
		t.Fatal(err)
	}
	m.bcast = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return 2 }, RetransmitMult: 2}
	return m, sink
}

// addPeer puts a peer whose metadata names catalog c in m's table.
func addPeer(t *testing.T, m *Mesh, id string, c Catalog) {
	t.Helper()
	meta := &nodeMeta{ID: id, Role: RoleEdge, CatalogDig: Digest(c), CatalogGen: c.Generation}
	b, err := encodeMeta(meta, memberlist.MetaMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	(&delegate{m: m}).NotifyJoin(&memberlist.Node{Name: id, Addr: net.IPv4(127, 0, 0, 1), Port: 1, Meta: b})
	if _, ok := m.Peer(id); !ok {
		t.Fatalf("peer %s not added", id)
	}
}

func TestMergeRemoteStateGarbage(t *testing.T) {
	m, logs := bareMesh(t)
	d := &delegate{m: m}
	cat := smallCatalog(3, 2)
	addPeer(t, m, "peer", cat)

	valid, _ := encodeState([]*catalogRecord{mustRecord(t, "peer", cat)}, MaxStateBytes)
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := [][]byte{nil, {}, {stateVersion}, {9, 0, 0}, valid[:len(valid)-1], append(bytes.Clone(valid), 0)}
	for range 200 {
		b := make([]byte, rng.IntN(300))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		if len(b) > 0 && rng.IntN(2) == 0 {
			b[0] = stateVersion
		}
		garbage = append(garbage, b)
	}
	for _, g := range garbage {
		d.MergeRemoteState(g, false)
	}
	if p, _ := m.Peer("peer"); p.Catalog != nil {
		t.Fatal("garbage state installed a catalog")
	}
	if n := logs.count("dropping invalid push/pull state"); n != len(garbage) {
		t.Errorf("%d of %d invalid states logged", n, len(garbage))
	}

	// Valid but wrong: a catalog the metadata does not name, one for an
	// unknown node and one claiming to be ours are all ignored.
	wrong := cat.Clone()
	wrong.Models[0].Bytes++
	other, _ := encodeState([]*catalogRecord{
		mustRecord(t, "peer", wrong), mustRecord(t, "ghost", cat), mustRecord(t, "self", cat),
	}, MaxStateBytes)
	d.MergeRemoteState(other, true)
	if p, _ := m.Peer("peer"); p.Catalog != nil {
		t.Fatal("a catalog that does not match the metadata was accepted")
	}
	if _, ok := m.Peer("ghost"); ok {
		t.Fatal("state created a peer")
	}
	if m.Local().CatalogDigest != Digest(smallCatalog(1, 1)) {
		t.Fatal("state replaced the local catalog")
	}

	// The matching one is accepted.
	d.MergeRemoteState(valid, false)
	if p, _ := m.Peer("peer"); !p.CatalogCurrent || p.Catalog.Generation != 3 {
		t.Fatalf("valid state not accepted: %+v", p)
	}
}

func TestNotifyMsgGarbage(t *testing.T) {
	m, logs := bareMesh(t)
	d := &delegate{m: m}
	cat := smallCatalog(2, 1)
	addPeer(t, m, "peer", cat)
	msg := encodeCatalogMsg(mustRecord(t, "peer", cat))
	for _, g := range [][]byte{nil, {msgVersion}, {msgVersion, 2}, {7, msgTypeCatalog}, msg[:len(msg)-1], append(bytes.Clone(msg), 1)} {
		d.NotifyMsg(g)
	}
	if n := logs.count("dropping invalid gossip message"); n != 6 {
		t.Errorf("%d invalid messages logged, want 6", n)
	}
	if m.bcast.NumQueued() != 0 {
		t.Error("garbage was queued for relay")
	}
	d.NotifyMsg(msg)
	if p, _ := m.Peer("peer"); !p.CatalogCurrent {
		t.Fatal("valid message not accepted")
	}
	if m.bcast.NumQueued() != 1 {
		t.Errorf("%d relays queued, want 1", m.bcast.NumQueued())
	}
	d.NotifyMsg(msg) // already known: not relayed again
	if m.bcast.NumQueued() != 1 {
		t.Errorf("%d relays queued after a duplicate, want 1", m.bcast.NumQueued())
	}
}

func TestCatalogAheadOfMetadataIsHeld(t *testing.T) {
	m, _ := bareMesh(t)
	old, next := smallCatalog(1, 1), smallCatalog(2, 2)
	addPeer(t, m, "peer", old)
	// The catalog broadcast overtakes the metadata update.
	if !m.offerRecord(mustRecord(t, "peer", next)) {
		t.Fatal("newer catalog not taken as news")
	}
	if p, _ := m.Peer("peer"); p.Catalog != nil {
		t.Fatal("catalog accepted before the metadata named it")
	}
	addPeer(t, m, "peer", next) // the metadata catches up (NotifyJoin/Update path)
	if p, _ := m.Peer("peer"); !p.CatalogCurrent || p.Catalog.Generation != 2 {
		t.Fatalf("held catalog not promoted: %+v", p)
	}
	// An older generation never replaces a held one.
	if m.offerRecord(mustRecord(t, "peer", old)) {
		t.Error("an older catalog was taken as news")
	}
}

func TestNotifyPingCompleteGarbage(t *testing.T) {
	m, logs := bareMesh(t)
	d := &delegate{m: m}
	addPeer(t, m, "peer", smallCatalog(1, 1))
	other := &memberlist.Node{Name: "peer"}
	good := d.AckPayload()
	if len(good) == 0 {
		t.Fatal("no ack payload")
	}
	before := m.coord.GetCoordinate()
	for _, p := range [][]byte{{ackVersion}, {9, 1, 2}, good[:len(good)-1], append(bytes.Clone(good), 0)} {
		d.NotifyPingComplete(other, time.Millisecond, p)
	}
	if n := logs.count("dropping invalid ping ack payload"); n != 4 {
		t.Errorf("%d invalid payloads logged, want 4", n)
	}
	if p, _ := m.Peer("peer"); p.Coordinate != nil {
		t.Error("garbage payload stored a coordinate")
	}
	if after := m.coord.GetCoordinate(); !slicesEqual(after.Vec, before.Vec) {
		t.Error("garbage payload moved the local coordinate")
	}
	// Unknown nodes and ourselves are ignored; a valid ack is recorded.
	d.NotifyPingComplete(&memberlist.Node{Name: "ghost"}, time.Millisecond, good)
	d.NotifyPingComplete(&memberlist.Node{Name: "self"}, time.Millisecond, good)
	d.NotifyPingComplete(nil, time.Millisecond, good)
	if _, ok := m.Peer("ghost"); ok {
		t.Error("ping created a peer")
	}
	d.NotifyPingComplete(other, 2*time.Millisecond, good)
	if p, _ := m.Peer("peer"); !p.Coordinate.IsValid() || p.LastPingRTT != 2*time.Millisecond {
		t.Errorf("valid ack not recorded: %+v", p)
	}
	// An RTT the coordinate client refuses keeps the old coordinate.
	d.NotifyPingComplete(other, time.Hour, good)
	if p, _ := m.Peer("peer"); !p.Coordinate.IsValid() {
		t.Error("refused update dropped the coordinate")
	}
}

func slicesEqual(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// rawDelegate is a bare memberlist delegate with settable metadata, used
// to impersonate nodes that do not speak the mesh's formats.
type rawDelegate struct {
	mu   sync.Mutex
	meta []byte
}

func (r *rawDelegate) NodeMeta(int) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meta
}
func (r *rawDelegate) set(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.meta = b
}
func (*rawDelegate) NotifyMsg([]byte)                {}
func (*rawDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (*rawDelegate) LocalState(bool) []byte          { return nil }
func (*rawDelegate) MergeRemoteState([]byte, bool)   {}

// rawNode starts a plain memberlist node with the given key and metadata.
func rawNode(t *testing.T, name string, key []byte, meta []byte) (*memberlist.Memberlist, *rawDelegate) {
	t.Helper()
	c := memberlist.DefaultLocalConfig()
	fastTune(c)
	c.Name = name
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.AdvertisePort = 0
	kr, err := memberlist.NewKeyring(nil, key)
	if err != nil {
		t.Fatal(err)
	}
	c.Keyring = kr
	d := &rawDelegate{meta: meta}
	c.Delegate = d
	c.DelegateProtocolVersion, c.DelegateProtocolMin, c.DelegateProtocolMax = 1, 1, 1
	c.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	return ml, d
}

func TestPeerWithInvalidMetadataIsKeptOut(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "meta", 2)
	valid, err := encodeMeta(&nodeMeta{ID: "chameleon", Role: RoleEdge}, memberlist.MetaMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	mismatch, _ := encodeMeta(&nodeMeta{ID: "someone-else", Role: RoleEdge}, memberlist.MetaMaxSize)
	future := append([]byte{metaVersion + 1}, valid[1:]...)
	junk := map[string][]byte{"junk-version": future, "junk-id": mismatch, "junk-empty": nil}
	var raws []*memberlist.Memberlist
	for name, meta := range junk {
		ml, _ := rawNode(t, name, testKey(1), meta)
		if _, err := ml.Join([]string{nodes[0].Addr()}); err != nil {
			t.Fatalf("%s: join: %v", name, err)
		}
		raws = append(raws, ml)
	}
	chameleon, cd := rawNode(t, "chameleon", testKey(1), valid)
	if _, err := chameleon.Join([]string{nodes[1].Addr()}); err != nil {
		t.Fatal(err)
	}
	ch, cancel := nodes[0].Subscribe()
	defer cancel()
	waitPeer(t, nodes, "chameleon", 10*time.Second, "chameleon admitted", func(p Peer) bool { return p.State == StateAlive })

	// The junk nodes are members as far as memberlist is concerned (they
	// see the whole cluster) but never enter the peer tables.
	waitFor(t, 10*time.Second, "junk nodes see the cluster", func() string {
		for _, r := range raws {
			if n := r.NumMembers(); n != 6 {
				return fmt.Sprintf("%s sees %d members", r.LocalNode().Name, n)
			}
		}
		return ""
	})
	waitFor(t, 10*time.Second, "every node to log every junk node", func() string {
		for _, n := range nodes {
			for name := range junk {
				if n.logs.count("ignoring peer with invalid metadata", "peer="+name) == 0 {
					return n.cfg.NodeID + " has not logged " + name
				}
			}
		}
		return ""
	})
	for _, n := range nodes {
		for name := range junk {
			if _, ok := n.Peer(name); ok {
				t.Errorf("%s admitted %s", n.cfg.NodeID, name)
			}
		}
	}

	// A member that starts to advertise garbage is dropped with a leave
	// event.
	cd.set(future)
	if err := chameleon.UpdateNode(time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "chameleon dropped", func() string {
		for _, n := range nodes {
			if _, ok := n.Peer("chameleon"); ok {
				return n.cfg.NodeID + " still holds chameleon"
			}
		}
		return ""
	})
	sawLeave := false
	for len(ch) > 0 {
		if ev := <-ch; ev.Peer.ID == "chameleon" && ev.Type == EventLeave {
			sawLeave = true
		}
	}
	if !sawLeave {
		t.Error("no leave event for the dropped peer")
	}

	// The mesh itself is unharmed: a newcomer joins and everyone agrees.
	late := newNode(t, "meta-late")
	if _, err := late.Join([]string{nodes[0].Addr()}); err != nil {
		t.Fatal(err)
	}
	all := append(nodes, late)
	waitFor(t, 10*time.Second, "membership", func() string { return checkAllAlive(all) })
	for _, n := range all {
		if got := len(n.Peers()); got != 2 {
			t.Errorf("%s has %d peers, want 2", n.cfg.NodeID, got)
		}
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "key", 2)
	intruders := []*node{
		newNode(t, "key-wrong", withKeys(testKey(50))),
		newNode(t, "key-plain", func(c *Config) { c.SecretKeys, c.DevMode = nil, true }),
	}
	for _, x := range intruders {
		if n, err := x.Join([]string{nodes[0].Addr()}); err == nil {
			t.Errorf("%s joined %d nodes of an encrypted cluster", x.cfg.NodeID, n)
		}
	}
	time.Sleep(5 * fastProbe)
	for _, n := range nodes {
		for _, x := range intruders {
			if _, ok := n.Peer(x.cfg.NodeID); ok {
				t.Errorf("%s admitted %s", n.cfg.NodeID, x.cfg.NodeID)
			}
		}
	}
	for _, x := range intruders {
		if p := x.Peers(); len(p) != 0 {
			t.Errorf("%s sees %d peers", x.cfg.NodeID, len(p))
		}
	}
	if msg := checkAllMembers(nodes); msg != "" {
		t.Error(msg)
	}
}

func TestLeaveNoticeDecidesLeftOverDead(t *testing.T) {
	m, _ := bareMesh(t)
	d := &delegate{m: m}
	for _, id := range []string{"quitter", "crasher"} {
		addPeer(t, m, id, smallCatalog(1, 1))
	}
	d.NotifyMsg(encodeLeaveMsg("quitter"))
	d.NotifyMsg(encodeLeaveMsg("ghost")) // unknown: ignored
	if p, _ := m.Peer("quitter"); !p.Leaving || p.State != StateAlive {
		t.Fatalf("after the notice: %+v", p)
	}
	if _, ok := m.Peer("ghost"); ok {
		t.Fatal("a notice created a peer")
	}
	for _, id := range []string{"quitter", "crasher"} {
		d.NotifyLeave(&memberlist.Node{Name: id})
	}
	if p, _ := m.Peer("quitter"); p.State != StateLeft {
		t.Errorf("noticed peer went %v, want left", p.State)
	}
	if p, _ := m.Peer("crasher"); p.State != StateDead || p.Leaving {
		t.Errorf("silent peer went %v (leaving %v), want dead", p.State, p.Leaving)
	}
	// A notice after the verdict changes nothing; a rejoin starts afresh.
	d.NotifyMsg(encodeLeaveMsg("crasher"))
	if p, _ := m.Peer("crasher"); p.State != StateDead || p.Leaving {
		t.Errorf("late notice: %v (leaving %v)", p.State, p.Leaving)
	}
	addPeer(t, m, "quitter", smallCatalog(2, 1))
	if p, _ := m.Peer("quitter"); p.State != StateAlive || p.Leaving {
		t.Errorf("rejoined peer: %v (leaving %v)", p.State, p.Leaving)
	}
}
