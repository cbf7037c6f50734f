package mesh

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/petrel-mesh/petrel/routing"
)

// Errors returned by Mesh methods.
var (
	// ErrClosed is returned by methods that need a running mesh after
	// Leave or Shutdown.
	ErrClosed = errors.New("mesh: closed")
	// ErrEncryptionDisabled is returned by the keyring methods of a mesh
	// that runs without gossip encryption (DevMode without SecretKeys).
	ErrEncryptionDisabled = errors.New("mesh: gossip encryption is disabled")
)

// delegateProtocolVersion is advertised as memberlist's delegate protocol
// version (min, max and current). It covers the metadata, state, message
// and ack payload encodings; memberlist refuses push/pull merges with
// nodes whose range does not overlap.
const delegateProtocolVersion = 1

// Mesh is this node's membership in the gossip mesh. It is safe for
// concurrent use. Create one with New, then Join.
type Mesh struct {
	// Lock order: memberlist calls the delegates while holding its own
	// node lock, and the delegates take mu. So the mesh never calls into
	// memberlist (UpdateNode, Join, Ping, ...) while holding mu.

	cfg     Config
	log     *slog.Logger
	src     StateSource
	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring // nil without encryption
	bcast   *memberlist.TransmitLimitedQueue
	coord   *routing.CoordinateClient
	addr    string        // advertised gossip address
	probe   time.Duration // memberlist ProbeInterval, the maintenance tick

	mu         sync.RWMutex
	local      *localState
	left       bool
	peers      map[string]*peerEntry
	subs       map[*subscription]struct{}
	subsClosed bool

	members atomic.Int64  // self plus alive and suspect peers
	dropped atomic.Uint64 // events dropped on full subscriber channels

	changeCh chan struct{} // NotifyChanged requests, capacity 1
	stopCh   chan struct{} // closed by Shutdown
	wg       sync.WaitGroup

	lifeMu sync.Mutex // serialises Leave and Shutdown
	closed atomic.Bool
}

// localState is what this node advertises: its metadata (decoded and
// encoded) and its catalog record. Replaced, never modified.
type localState struct {
	meta      nodeMeta
	metaBytes []byte
	record    *catalogRecord
}

// peerEntry is the peer table's view of one peer. Guarded by Mesh.mu.
type peerEntry struct {
	meta     nodeMeta
	addr     string
	state    State
	changed  time.Time
	record   *catalogRecord // latest accepted catalog, may lag meta
	recordAt time.Time
	pending  *catalogRecord // a catalog ahead of meta, promoted when meta catches up
	leaving  bool           // the peer sent a leave notice
	coord    *routing.Coordinate
	lastRTT  time.Duration
}

type subscription struct {
	ch chan Event
}

// New validates cfg, binds the gossip listeners and starts the node as a
// one-member mesh; Join connects it to others. src supplies the advertised
// catalog and load (nil: empty catalog, zero load); New fails if its
// initial catalog is invalid.
func New(cfg Config, src StateSource) (*Mesh, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if src == nil {
		src = SourceFuncs{}
	}
	coord, err := routing.NewCoordinateClient(routing.DefaultCoordinateConfig())
	if err != nil {
		return nil, fmt.Errorf("mesh: coordinate client: %w", err)
	}
	m := &Mesh{
		cfg:      cfg,
		log:      cfg.Logger.With(slog.String("node", cfg.NodeID)),
		src:      src,
		coord:    coord,
		peers:    make(map[string]*peerEntry),
		subs:     make(map[*subscription]struct{}),
		changeCh: make(chan struct{}, 1),
		stopCh:   make(chan struct{}),
	}
	m.members.Store(1)
	m.local, err = m.buildLocal(nil, src.Catalog(), src.Load(), false)
	if err != nil {
		return nil, err
	}

	mlc := baseMemberlistConfig(cfg.Profile)
	if cfg.Tune != nil {
		cfg.Tune(mlc)
	}
	mlc.Name = cfg.NodeID
	mlc.BindAddr = cfg.BindAddr
	mlc.BindPort = cfg.BindPort
	mlc.AdvertiseAddr = cfg.AdvertiseAddr
	mlc.AdvertisePort = cmp.Or(cfg.AdvertisePort, cfg.BindPort)
	mlc.SecretKey = nil
	mlc.Keyring = nil
	if len(cfg.SecretKeys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.SecretKeys, cfg.SecretKeys[0])
		if err != nil {
			return nil, fmt.Errorf("mesh: keyring: %w", err)
		}
		mlc.Keyring = kr
		mlc.GossipVerifyIncoming = true
		mlc.GossipVerifyOutgoing = true
		m.keyring = kr
	}
	d := &delegate{m: m}
	mlc.Delegate = d
	mlc.Events = d
	mlc.Ping = d
	mlc.Conflict, mlc.Merge, mlc.Alive = nil, nil, nil
	mlc.DelegateProtocolVersion = delegateProtocolVersion
	mlc.DelegateProtocolMin = delegateProtocolVersion
	mlc.DelegateProtocolMax = delegateProtocolVersion
	mlc.LogOutput = nil
	mlc.Logger = log.New(&logBridge{log: m.log, onSuspect: m.markSuspect}, "", 0)
	m.bcast = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(m.members.Load()) },
		RetransmitMult: mlc.RetransmitMult,
	}
	m.probe = max(mlc.ProbeInterval, 10*time.Millisecond)

	ml, err := memberlist.Create(mlc)
	if err != nil {
		return nil, fmt.Errorf("mesh: start memberlist: %w", err)
	}
	m.ml = ml
	m.addr = ml.LocalNode().Address()

	m.wg.Add(2)
	go m.updateLoop()
	go m.maintainLoop()
	m.log.Debug("mesh: started", "addr", m.addr, "profile", string(cfg.Profile), "encrypted", m.keyring != nil)
	return m, nil
}

// buildLocal returns the local state for catalog c, load l and the leaving
// flag, reusing prev's catalog record when the catalog is unchanged.
func (m *Mesh) buildLocal(prev *localState, c Catalog, l Load, leaving bool) (*localState, error) {
	var rec *catalogRecord
	if prev != nil && prev.record.catalog.Generation == c.Generation && prev.record.digest == Digest(c) {
		rec = prev.record
	} else {
		var err error
		if rec, err = newCatalogRecord(m.cfg.NodeID, c.Clone()); err != nil {
			return nil, err
		}
	}
	meta := nodeMeta{
		ID:         m.cfg.NodeID,
		Role:       m.cfg.Role,
		Region:     m.cfg.Region,
		Location:   m.cfg.Location,
		HTTPAddr:   m.cfg.HTTPAddr,
		QUICAddr:   m.cfg.QUICAddr,
		Load:       l,
		CatalogDig: rec.digest,
		CatalogGen: rec.catalog.Generation,
		Leaving:    leaving,
	}
	mb, err := encodeMeta(&meta, memberlist.MetaMaxSize)
	if err != nil {
		return nil, err
	}
	return &localState{meta: meta, metaBytes: mb, record: rec}, nil
}

// Addr returns the gossip address (host:port) this node advertises; other
// nodes Join through it.
func (m *Mesh) Addr() string { return m.addr }

// Join contacts the given gossip addresses (host:port), or Config.Seeds
// when none are given, and merges state with each. It returns how many
// were reached; it fails only if none was.
func (m *Mesh) Join(seeds []string) (int, error) {
	if len(seeds) == 0 {
		seeds = m.cfg.Seeds
	}
	if len(seeds) == 0 {
		return 0, errors.New("mesh: join: no seeds given or configured")
	}
	for _, s := range seeds {
		if err := checkHostPort(s, true); err != nil {
			return 0, fmt.Errorf("mesh: join: seed: %w", err)
		}
	}
	// Not under lifeMu: a join may take TCPTimeout per seed, and Shutdown
	// must not wait for it. memberlist fails a join on a closed transport.
	if m.closed.Load() {
		return 0, ErrClosed
	}
	n, err := m.ml.Join(seeds)
	if err != nil {
		return n, fmt.Errorf("mesh: join: %w", err)
	}
	return n, nil
}

// NotifyChanged tells the mesh that the StateSource's catalog or load
// changed. It never blocks: the update loop re-reads the source and, if
// the metadata changed, re-advertises it (memberlist UpdateNode) and
// broadcasts a small catalog. Calls are coalesced and rate-limited to one
// update per Config.UpdateInterval; the update after a burst reflects the
// source as read after the burst's last call.
func (m *Mesh) NotifyChanged() {
	select {
	case m.changeCh <- struct{}{}:
	default:
	}
}

func (m *Mesh) updateLoop() {
	defer m.wg.Done()
	var last time.Time
	for {
		select {
		case <-m.stopCh:
			return
		case <-m.changeCh:
		}
		if wait := time.Until(last.Add(m.cfg.UpdateInterval)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-m.stopCh:
				t.Stop()
				return
			case <-t.C:
			}
		}
		// This refresh reads the source after every request so far.
		select {
		case <-m.changeCh:
		default:
		}
		last = time.Now()
		m.refresh()
	}
}

// refresh re-reads the source and re-advertises if anything changed.
func (m *Mesh) refresh() {
	c, l := m.src.Catalog(), m.src.Load()
	m.mu.RLock()
	prev, left := m.local, m.left
	m.mu.RUnlock()
	if left {
		return
	}
	next, err := m.buildLocal(prev, c, l, false)
	if err != nil {
		m.log.Warn("mesh: StateSource returned an invalid catalog; still advertising the previous one", "err", err)
		next, err = m.buildLocal(prev, prev.record.catalog, l, false)
		if err != nil { // cannot happen: prev was valid
			m.log.Error("mesh: rebuilding metadata", "err", err)
			return
		}
	}
	if bytes.Equal(next.metaBytes, prev.metaBytes) {
		return
	}
	m.mu.Lock()
	if m.left { // Leave got here first and owns the metadata now
		m.mu.Unlock()
		return
	}
	m.local = next
	m.mu.Unlock()
	if next.record != prev.record {
		if msg := encodeCatalogMsg(next.record); msg != nil {
			m.bcast.QueueBroadcast(&catalogBroadcast{id: next.record.id, msg: msg})
		}
	}
	// UpdateNode queues the alive message at once; the timeout only bounds
	// how long we wait to see it sent.
	if err := m.ml.UpdateNode(m.cfg.UpdateInterval); err != nil {
		m.log.Debug("mesh: metadata update not yet sent", "err", err)
	}
}

// Peers returns a snapshot of every known peer (not this node), alive or
// not, sorted by ID. Dead and left peers stay until Config.ReapTimeout.
func (m *Mesh) Peers() []Peer {
	self := m.coord.GetCoordinate()
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Peer, 0, len(m.peers))
	for id, e := range m.peers {
		out = append(out, m.peerLocked(id, e, self))
	}
	slices.SortFunc(out, func(a, b Peer) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Peer returns the snapshot of one peer.
func (m *Mesh) Peer(id string) (Peer, bool) {
	self := m.coord.GetCoordinate()
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.peers[id]
	if !ok {
		return Peer{}, false
	}
	return m.peerLocked(id, e, self), true
}

// peerLocked builds a snapshot. The caller holds mu (read).
func (m *Mesh) peerLocked(id string, e *peerEntry, self *routing.Coordinate) Peer {
	p := Peer{
		ID:                id,
		Role:              e.meta.Role,
		Region:            e.meta.Region,
		Location:          e.meta.Location,
		HTTPAddr:          e.meta.HTTPAddr,
		QUICAddr:          e.meta.QUICAddr,
		Load:              e.meta.Load,
		CatalogDigest:     e.meta.CatalogDig,
		CatalogGeneration: e.meta.CatalogGen,
		Leaving:           e.leaving || e.meta.Leaving,
		CatalogCurrent:    e.catalogCurrent(),
		Coordinate:        cloneCoordinate(e.coord),
		LastPingRTT:       e.lastRTT,
		State:             e.state,
		StateChanged:      e.changed,
		Addr:              e.addr,
	}
	if e.record != nil {
		p.Catalog = &e.record.catalog
	}
	p.RTT, p.RTTSource = routing.EstimateRTT(self, e.coord, m.cfg.Location, e.meta.Location)
	return p
}

// Local returns this node's own snapshot: what it advertises, its
// coordinate, and StateAlive (StateLeft after Leave).
func (m *Mesh) Local() Peer {
	self := m.coord.GetCoordinate()
	m.mu.RLock()
	defer m.mu.RUnlock()
	st := StateAlive
	if m.left {
		st = StateLeft
	}
	l := m.local
	return Peer{
		ID:                l.meta.ID,
		Role:              l.meta.Role,
		Region:            l.meta.Region,
		Location:          l.meta.Location,
		HTTPAddr:          l.meta.HTTPAddr,
		QUICAddr:          l.meta.QUICAddr,
		Load:              l.meta.Load,
		CatalogDigest:     l.meta.CatalogDig,
		CatalogGeneration: l.meta.CatalogGen,
		Leaving:           l.meta.Leaving,
		Catalog:           &l.record.catalog,
		CatalogCurrent:    true,
		Coordinate:        cloneCoordinate(self),
		State:             st,
		Addr:              m.addr,
	}
}

// Coordinate returns a copy of this node's network coordinate.
func (m *Mesh) Coordinate() *routing.Coordinate { return cloneCoordinate(m.coord.GetCoordinate()) }

// Subscribe returns a channel of peer events and a function that cancels
// the subscription and closes the channel. Delivery never blocks the mesh:
// when the channel (Config.EventBuffer) is full the event is dropped and
// counted (DroppedEvents), so a consumer that falls behind should
// resynchronise from Peers. Shutdown closes every subscription's channel.
// cancel may be called more than once.
func (m *Mesh) Subscribe() (<-chan Event, func()) {
	s := &subscription{ch: make(chan Event, m.cfg.EventBuffer)}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.subsClosed {
		close(s.ch)
		return s.ch, func() {}
	}
	m.subs[s] = struct{}{}
	return s.ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := m.subs[s]; ok {
			delete(m.subs, s)
			close(s.ch)
		}
	}
}

// DroppedEvents returns how many events were dropped because a
// subscriber's channel was full, over all subscribers.
func (m *Mesh) DroppedEvents() uint64 { return m.dropped.Load() }

// emitLocked delivers an event about e to every subscriber without
// blocking. The caller holds mu (write).
func (m *Mesh) emitLocked(t EventType, id string, e *peerEntry) {
	if len(m.subs) == 0 {
		return
	}
	ev := Event{Type: t, Peer: m.peerLocked(id, e, m.coord.GetCoordinate()), Time: time.Now()}
	for s := range m.subs {
		select {
		case s.ch <- ev:
		default:
			m.dropped.Add(1)
		}
	}
}

// Leave departs gracefully and shuts down. So that peers record the
// departure as StateLeft rather than a failure, and stop routing new work
// here (Peer.Leaving), it first re-advertises this node's metadata with
// the leaving flag, sends a leave notice straight to every live peer over
// TCP, and waits for the flagged metadata's gossip to finish its
// retransmissions; then it sends memberlist's leave and waits for that
// broadcast too. timeout bounds the whole call (zero or negative waits
// without limit, as memberlist does); a third of it at most goes to the
// notices. Peers that cannot be told are logged. If memberlist's leave
// broadcast times out the mesh still shuts down and the error says so.
// Leave returns ErrClosed if the mesh is already shut down.
func (m *Mesh) Leave(timeout time.Duration) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	start := time.Now()
	budget := func(frac float64) time.Duration {
		if timeout <= 0 {
			return 0
		}
		left := timeout - time.Since(start)
		return max(time.Duration(frac*float64(left)), time.Millisecond)
	}
	m.mu.Lock()
	m.left = true
	prev := m.local
	m.mu.Unlock()
	if next, err := m.buildLocal(prev, prev.record.catalog, prev.meta.Load, true); err != nil {
		m.log.Error("mesh: leave: building metadata", "err", err) // cannot happen: prev was valid
	} else {
		m.mu.Lock()
		m.local = next
		m.mu.Unlock()
	}
	m.sendLeaveNotices(budget(1.0 / 3))
	if err := m.ml.UpdateNode(budget(0.5)); err != nil {
		m.log.Warn("mesh: leave: leaving flag not fully gossiped", "err", err)
	}
	var lerr error
	if err := m.ml.Leave(budget(1)); err != nil {
		lerr = fmt.Errorf("mesh: leave: %w", err)
	}
	return errors.Join(lerr, m.shutdownLocked())
}

// leaveNoticeParallel bounds the leave notices in flight.
const leaveNoticeParallel = 16

// sendLeaveNotices sends the leave message to every live peer over TCP
// (memberlist SendReliable), leaveNoticeParallel at a time, and waits for
// all of them or until wait elapses (0: no limit). Failures are logged:
// a peer that was not told records a failure when the node goes.
func (m *Mesh) sendLeaveNotices(wait time.Duration) {
	msg := encodeLeaveMsg(m.cfg.NodeID)
	var targets []*memberlist.Node
	m.mu.RLock()
	for id, e := range m.peers {
		if e.state != StateAlive && e.state != StateSuspect {
			continue
		}
		host, port, err := net.SplitHostPort(e.addr)
		p, perr := strconv.ParseUint(port, 10, 16)
		ip := net.ParseIP(host)
		if err != nil || perr != nil || ip == nil {
			continue
		}
		targets = append(targets, &memberlist.Node{Name: id, Addr: ip, Port: uint16(p)})
	}
	m.mu.RUnlock()
	if len(targets) == 0 {
		return
	}
	type result struct {
		peer string
		err  error
	}
	results := make(chan result, len(targets))
	done := make(chan struct{})
	defer close(done)
	go func() {
		sem := make(chan struct{}, leaveNoticeParallel)
		for _, n := range targets {
			select {
			case sem <- struct{}{}:
			case <-done:
				return
			}
			go func() {
				defer func() { <-sem }()
				results <- result{n.Name, m.ml.SendReliable(n, msg)}
			}()
		}
	}()
	var timeoutCh <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeoutCh = t.C
	}
	for range targets {
		select {
		case r := <-results:
			if r.err != nil {
				m.log.Warn("mesh: leave: could not notify peer", "peer", r.peer, "err", r.err)
			}
		case <-timeoutCh:
			m.log.Warn("mesh: leave: notices still in flight at the deadline", "wait", wait)
			return
		}
	}
}

// Shutdown stops gossip at once, without a leave announcement: peers will
// detect this node as failed. It closes every subscription channel. It is
// idempotent and may follow Leave.
func (m *Mesh) Shutdown() error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	return m.shutdownLocked()
}

func (m *Mesh) shutdownLocked() error {
	if m.closed.Swap(true) {
		return nil
	}
	close(m.stopCh)
	err := m.ml.Shutdown()
	m.wg.Wait()
	m.mu.Lock()
	for s := range m.subs {
		close(s.ch)
	}
	clear(m.subs)
	m.subsClosed = true
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("mesh: shutdown: %w", err)
	}
	return nil
}

// InstallKey adds key (16, 24 or 32 bytes) to the keyring for decryption.
// It is a no-op if the key is installed. See the package documentation for
// the rotation procedure.
func (m *Mesh) InstallKey(key []byte) error {
	if m.keyring == nil {
		return ErrEncryptionDisabled
	}
	if err := memberlist.ValidateKey(key); err != nil {
		return fmt.Errorf("mesh: install key: %w", err)
	}
	if err := m.keyring.AddKey(bytes.Clone(key)); err != nil {
		return fmt.Errorf("mesh: install key: %w", err)
	}
	return nil
}

// UseKey makes an installed key the primary key, used to encrypt all
// outgoing gossip. Every peer must have installed it first.
func (m *Mesh) UseKey(key []byte) error {
	if m.keyring == nil {
		return ErrEncryptionDisabled
	}
	if err := m.keyring.UseKey(key); err != nil {
		return fmt.Errorf("mesh: use key: %w", err)
	}
	return nil
}

// RemoveKey removes a key from the keyring. Removing the primary key is an
// error; removing a key that is not installed is a no-op.
func (m *Mesh) RemoveKey(key []byte) error {
	if m.keyring == nil {
		return ErrEncryptionDisabled
	}
	if bytes.Equal(key, m.keyring.GetPrimaryKey()) {
		return errors.New("mesh: remove key: the primary key cannot be removed (UseKey another first)")
	}
	if err := m.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("mesh: remove key: %w", err)
	}
	return nil
}

// ListKeys returns copies of the installed keys, the primary key first,
// and the primary key on its own.
func (m *Mesh) ListKeys() (keys [][]byte, primary []byte, err error) {
	if m.keyring == nil {
		return nil, nil, ErrEncryptionDisabled
	}
	for _, k := range m.keyring.GetKeys() {
		keys = append(keys, bytes.Clone(k))
	}
	return keys, bytes.Clone(m.keyring.GetPrimaryKey()), nil
}

// maintainLoop runs every probe interval: it pings suspect peers directly
// (a reply clears the suspicion) and reaps dead and left peers after
// Config.ReapTimeout.
func (m *Mesh) maintainLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.probe)
	defer t.Stop()
	for {
		select {
		case <-m.stopCh:
			return
		case <-t.C:
		}
		m.pingSuspects()
		m.reap(time.Now())
	}
}

// pingSuspects sends one direct ping to each suspect peer.
func (m *Mesh) pingSuspects() {
	type target struct{ id, addr string }
	var targets []target
	m.mu.RLock()
	for id, e := range m.peers {
		if e.state == StateSuspect {
			targets = append(targets, target{id, e.addr})
		}
	}
	m.mu.RUnlock()
	for _, t := range targets {
		select {
		case <-m.stopCh:
			return
		default:
		}
		addr, err := net.ResolveUDPAddr("udp", t.addr)
		if err != nil {
			continue
		}
		rtt, err := m.ml.Ping(t.id, addr)
		if err != nil {
			continue
		}
		m.mu.Lock()
		if e := m.peers[t.id]; e != nil && e.state == StateSuspect {
			e.lastRTT = rtt
			m.setStateLocked(t.id, e, StateAlive, EventUpdate)
		}
		m.mu.Unlock()
	}
}

// reap forgets peers that have been dead or left for Config.ReapTimeout.
func (m *Mesh) reap(now time.Time) {
	var gone []string
	m.mu.Lock()
	for id, e := range m.peers {
		if (e.state == StateDead || e.state == StateLeft) && now.Sub(e.changed) >= m.cfg.ReapTimeout {
			delete(m.peers, id)
			gone = append(gone, id)
		}
	}
	m.mu.Unlock()
	for _, id := range gone {
		m.coord.ForgetNode(id)
		m.log.Debug("mesh: reaped peer", "peer", id)
	}
}

// markLeaving records a peer's leave notice, so that its departure is
// recorded as StateLeft.
func (m *Mesh) markLeaving(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.peers[id]
	if e == nil || e.leaving || (e.state != StateAlive && e.state != StateSuspect) {
		return
	}
	e.leaving = true
	m.emitLocked(EventUpdate, id, e)
}

// markSuspect is called by the log bridge when memberlist starts
// suspecting a peer after a failed probe.
func (m *Mesh) markSuspect(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.peers[id]; e != nil && e.state == StateAlive {
		m.setStateLocked(id, e, StateSuspect, EventUpdate)
	}
}

// setStateLocked changes e's state, keeps the member count and emits t.
// The caller holds mu (write).
func (m *Mesh) setStateLocked(id string, e *peerEntry, s State, t EventType) {
	if e.state != s {
		e.state = s
		e.changed = time.Now()
	}
	m.recountLocked()
	m.emitLocked(t, id, e)
}

func (m *Mesh) recountLocked() {
	n := int64(1)
	for _, e := range m.peers {
		if e.state == StateAlive || e.state == StateSuspect {
			n++
		}
	}
	m.members.Store(n)
}

// catalogCurrent reports whether the accepted catalog is the one the
// metadata names.
func (e *peerEntry) catalogCurrent() bool {
	return e.record != nil && e.record.catalog.Generation == e.meta.CatalogGen && e.record.digest == e.meta.CatalogDig
}

// promotePending accepts the pending catalog if the metadata now
// names it, and drops it once the metadata has moved past it.
func (e *peerEntry) promotePending(now time.Time) bool {
	p := e.pending
	if p == nil {
		return false
	}
	if p.catalog.Generation == e.meta.CatalogGen && p.digest == e.meta.CatalogDig {
		e.record, e.recordAt, e.pending = p, now, nil
		return true
	}
	if p.catalog.Generation <= e.meta.CatalogGen {
		e.pending = nil
	}
	return false
}

// offerRecord considers a catalog received from the network. A catalog is
// accepted when it is the one the peer's metadata names (generation and
// digest); one with a newer generation than the metadata is held as
// pending until the metadata catches up. It reports whether the record
// was new to this node (and so worth relaying).
func (m *Mesh) offerRecord(r *catalogRecord) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.id == m.cfg.NodeID {
		return false
	}
	e := m.peers[r.id]
	if e == nil || e.state == StateDead || e.state == StateLeft {
		return false
	}
	gen := r.catalog.Generation
	if gen == e.meta.CatalogGen && r.digest == e.meta.CatalogDig {
		if e.catalogCurrent() {
			return false
		}
		e.record, e.recordAt, e.pending = r, time.Now(), nil
		m.emitLocked(EventUpdate, r.id, e)
		return true
	}
	if gen > e.meta.CatalogGen && (e.pending == nil || gen > e.pending.catalog.Generation) {
		e.pending = r
		return true
	}
	return false
}

// localStateRecords returns the records for LocalState: this node's own,
// then the current catalogs of live peers, most recently received first.
func (m *Mesh) localStateRecords() []*catalogRecord {
	m.mu.RLock()
	defer m.mu.RUnlock()
	type held struct {
		r  *catalogRecord
		at time.Time
	}
	others := make([]held, 0, len(m.peers))
	for _, e := range m.peers {
		if (e.state == StateAlive || e.state == StateSuspect) && e.catalogCurrent() {
			others = append(others, held{e.record, e.recordAt})
		}
	}
	slices.SortFunc(others, func(a, b held) int {
		return cmp.Or(b.at.Compare(a.at), cmp.Compare(a.r.id, b.r.id))
	})
	recs := make([]*catalogRecord, 0, 1+len(others))
	recs = append(recs, m.local.record)
	for _, h := range others {
		recs = append(recs, h.r)
	}
	return recs
}

// catalogBroadcast is a catalog message in the TransmitLimitedQueue. A
// newer message about the same node replaces an older one.
type catalogBroadcast struct {
	id  string
	msg []byte
}

var _ memberlist.NamedBroadcast = (*catalogBroadcast)(nil)

// Invalidates reports whether other is an older catalog of the same node.
func (b *catalogBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*catalogBroadcast)
	return ok && o.id == b.id
}

// Name keys the broadcast by node, so that the queue keeps one per node.
func (b *catalogBroadcast) Name() string { return "catalog/" + b.id }

// Message returns the encoded catalog message.
func (b *catalogBroadcast) Message() []byte { return b.msg }

// Finished is called when the message is retired; nothing waits for it.
func (b *catalogBroadcast) Finished() {}

func cloneCoordinate(c *routing.Coordinate) *routing.Coordinate {
	if c == nil {
		return nil
	}
	cp := *c
	cp.Vec = slices.Clone(c.Vec)
	return &cp
}
