package mesh

import (
	"bytes"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate implements memberlist's Delegate, EventDelegate and
// PingDelegate for a Mesh. memberlist may call it from several goroutines
// and, for the event methods, while holding its node lock: it must not
// block and must not call back into memberlist.
type delegate struct{ m *Mesh }

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
	_ memberlist.PingDelegate  = (*delegate)(nil)
)

// NodeMeta returns the encoded local metadata. The encoding is at most
// metaMaxLen (263) bytes, far below memberlist.MetaMaxSize; should a
// smaller limit ever be passed, it returns nothing rather than let
// memberlist panic.
func (d *delegate) NodeMeta(limit int) []byte {
	d.m.mu.RLock()
	b := d.m.local.metaBytes
	d.m.mu.RUnlock()
	if len(b) > limit {
		d.m.log.Error("mesh: metadata exceeds the memberlist limit", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

// NotifyMsg handles a user message: a catalog announcement (new ones are
// re-broadcast) or a peer's leave notice. Invalid messages are logged and
// dropped.
func (d *delegate) NotifyMsg(b []byte) {
	msg, err := decodeMsg(b)
	if err != nil {
		d.m.log.Warn("mesh: dropping invalid gossip message", "bytes", len(b), "err", err)
		return
	}
	switch {
	case msg.record != nil:
		if d.m.offerRecord(msg.record) {
			d.m.bcast.QueueBroadcast(&catalogBroadcast{id: msg.record.id, msg: bytes.Clone(b)})
		}
	default:
		d.m.markLeaving(msg.leaving)
	}
}

// GetBroadcasts hands memberlist the queued catalog messages.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.bcast.GetBroadcasts(overhead, limit)
}

// LocalState returns the push/pull state: this node's catalog and the
// current catalogs it holds for other live nodes, up to MaxStateBytes.
func (d *delegate) LocalState(join bool) []byte {
	recs := d.m.localStateRecords()
	b, n := encodeState(recs, MaxStateBytes)
	if n < len(recs) {
		d.m.log.Debug("mesh: push/pull state full; some relayed catalogs left out", "sent", n, "held", len(recs))
	}
	return b
}

// MergeRemoteState merges a peer's push/pull state. Invalid state is
// logged and dropped as a whole.
func (d *delegate) MergeRemoteState(b []byte, join bool) {
	recs, err := decodeState(b)
	if err != nil {
		d.m.log.Warn("mesh: dropping invalid push/pull state", "bytes", len(b), "join", join, "err", err)
		return
	}
	for _, r := range recs {
		d.m.offerRecord(r)
	}
}

// decodePeerMeta decodes a node's metadata and checks that it names the
// node.
func decodePeerMeta(n *memberlist.Node) (*nodeMeta, error) {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		return nil, err
	}
	if meta.ID != n.Name {
		return nil, fmt.Errorf("mesh: metadata: id %q does not match node name %q", meta.ID, n.Name)
	}
	return meta, nil
}

// NotifyJoin adds a peer to the table, or revives a dead or left one.
func (d *delegate) NotifyJoin(n *memberlist.Node) { d.m.upsertPeer(n, EventJoin) }

// NotifyUpdate records a peer's new metadata.
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.m.upsertPeer(n, EventUpdate) }

// NotifyLeave marks a peer dead or left.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	m := d.m
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.peers[n.Name]
	if e == nil {
		return
	}
	// memberlist does not say whether a node left or failed (the Node it
	// passes always reads StateAlive), so the peer's leave notice or the
	// leaving flag in its last metadata decides.
	st := StateDead
	if e.leaving || e.meta.Leaving {
		st = StateLeft
	}
	e.pending = nil
	m.setStateLocked(n.Name, e, st, EventLeave)
}

// upsertPeer applies an alive node from memberlist to the table. A node
// whose metadata does not decode is kept out (and removed if it was in).
func (m *Mesh) upsertPeer(n *memberlist.Node, t EventType) {
	if n.Name == m.cfg.NodeID {
		return
	}
	meta, err := decodePeerMeta(n)
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.peers[n.Name]
	if err != nil {
		m.log.Warn("mesh: ignoring peer with invalid metadata", "peer", n.Name, "addr", n.Address(), "err", err)
		if e != nil {
			ev := *e
			delete(m.peers, n.Name)
			m.recountLocked()
			m.emitLocked(EventLeave, n.Name, &ev)
		}
		return
	}
	if e == nil {
		e = &peerEntry{}
		m.peers[n.Name] = e
		t = EventJoin
	} else if e.state == StateDead || e.state == StateLeft {
		t = EventJoin
		e.leaving = false // a new life
	}
	e.meta = *meta
	e.addr = n.Address()
	e.promotePending(time.Now())
	m.setStateLocked(n.Name, e, StateAlive, t)
}

// AckPayload returns this node's coordinate for the peer that pinged it.
func (d *delegate) AckPayload() []byte {
	b, err := encodeAck(d.m.coord.GetCoordinate())
	if err != nil {
		d.m.log.Debug("mesh: no coordinate for ack", "err", err)
		return nil
	}
	return b
}

// NotifyPingComplete records a direct probe's round trip and the peer's
// coordinate from its ack, and feeds both to the coordinate client. A
// reply also clears this node's suspicion of the peer. Invalid payloads
// are logged and dropped.
func (d *delegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	m := d.m
	if other == nil || other.Name == m.cfg.NodeID {
		return
	}
	m.mu.RLock()
	_, known := m.peers[other.Name]
	m.mu.RUnlock()
	if !known {
		return
	}
	coord, err := decodeAck(payload)
	if err != nil {
		if len(payload) == 0 {
			m.log.Debug("mesh: ping ack without a coordinate", "peer", other.Name)
		} else {
			m.log.Warn("mesh: dropping invalid ping ack payload", "peer", other.Name, "bytes", len(payload), "err", err)
		}
	} else if _, err := m.coord.Update(other.Name, coord, rtt); err != nil {
		m.log.Debug("mesh: coordinate update rejected", "peer", other.Name, "rtt", rtt, "err", err)
		coord = nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.peers[other.Name]
	if e == nil {
		return
	}
	e.lastRTT = rtt
	if coord != nil {
		e.coord = coord
	}
	if e.state == StateSuspect {
		m.setStateLocked(other.Name, e, StateAlive, EventUpdate)
	}
}
