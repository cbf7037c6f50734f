package mesh

import (
	"time"

	"github.com/petrel-mesh/petrel/routing"
)

// State is a peer's membership state as this node sees it.
type State uint8

// Membership states.
const (
	// StateAlive: the peer answers probes (or nothing says otherwise).
	StateAlive State = iota + 1
	// StateSuspect: this node's own probes of the peer failed and
	// memberlist's suspicion timer runs. Best effort: see the package
	// documentation.
	StateSuspect
	// StateDead: the mesh declared the peer failed.
	StateDead
	// StateLeft: the peer left gracefully (Mesh.Leave).
	StateLeft
)

// String returns "alive", "suspect", "dead" or "left".
func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	default:
		return "unknown"
	}
}

// Peer is a snapshot of one mesh member. Peers returned by Mesh are copies
// except Catalog, which is shared and must not be modified.
type Peer struct {
	// ID is the node ID (and memberlist node name).
	ID string
	// Role, Region, Location, HTTPAddr and QUICAddr are as the peer
	// advertises them in its metadata.
	Role     Role
	Region   string
	Location routing.Location
	HTTPAddr string
	QUICAddr string
	// Load is the peer's advertised load at its last metadata update.
	Load Load
	// CatalogDigest and CatalogGeneration identify the peer's current
	// catalog, from its metadata.
	CatalogDigest     uint64
	CatalogGeneration uint64
	// Leaving reports that the peer announced a graceful leave: send it
	// no new work.
	Leaving bool
	// Catalog is the latest full catalog received for the peer (push/pull
	// state or broadcast), or nil if none has arrived yet. It may lag the
	// metadata: see CatalogCurrent. Shared: do not modify.
	Catalog *Catalog
	// CatalogCurrent reports whether Catalog is the one the metadata
	// names (same generation and digest).
	CatalogCurrent bool
	// Coordinate is the peer's network coordinate from its last ping ack,
	// or nil.
	Coordinate *routing.Coordinate
	// RTT is the estimated round-trip time to the peer and RTTSource how
	// it was estimated (routing.EstimateRTT: coordinates when both sides
	// have them, else geography).
	RTT       time.Duration
	RTTSource routing.RTTSource
	// LastPingRTT is the last directly measured probe round trip, or 0.
	LastPingRTT time.Duration
	// State is the membership state and StateChanged when it was entered.
	State        State
	StateChanged time.Time
	// Addr is the peer's gossip address (host:port).
	Addr string
}

// EventType says what changed about a peer.
type EventType uint8

// Event types.
const (
	// EventJoin: a peer appeared (or came back after being dead or left).
	EventJoin EventType = iota + 1
	// EventUpdate: a peer's metadata, catalog or suspicion changed.
	EventUpdate
	// EventLeave: a peer is gone: Peer.State is StateDead or StateLeft. It
	// is also sent, with the last good snapshot, when a peer starts to
	// advertise metadata this node cannot decode.
	EventLeave
)

// String returns "join", "update" or "leave".
func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventLeave:
		return "leave"
	default:
		return "unknown"
	}
}

// Event is a change of one peer, delivered by Subscribe.
type Event struct {
	Type EventType
	// Peer is the peer's snapshot just after the change.
	Peer Peer
	// Time is when this node observed the change.
	Time time.Time
}

// StateSource supplies the local node's advertised state. The mesh calls it
// from New and from the update loop after NotifyChanged, never while
// holding its own locks, so implementations may block briefly but must be
// safe for concurrent use.
type StateSource interface {
	// Catalog returns the current catalog. The mesh copies it.
	Catalog() Catalog
	// Load returns the current load.
	Load() Load
}

// SourceFuncs adapts two functions to a StateSource. A nil field reports
// the zero value.
type SourceFuncs struct {
	CatalogFunc func() Catalog
	LoadFunc    func() Load
}

// Catalog calls CatalogFunc.
func (s SourceFuncs) Catalog() Catalog {
	if s.CatalogFunc == nil {
		return Catalog{}
	}
	return s.CatalogFunc()
}

// Load calls LoadFunc.
func (s SourceFuncs) Load() Load {
	if s.LoadFunc == nil {
		return Load{}
	}
	return s.LoadFunc()
}
