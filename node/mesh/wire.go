package mesh

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/petrel-mesh/petrel/routing"
)

// Wire formats other than metadata. Every one starts with a version byte,
// and every decoder is strict: unknown versions or types, truncation,
// trailing bytes and invalid fields are errors.
const (
	// MaxStateBytes caps the push/pull state a node sends and accepts.
	MaxStateBytes = 1 << 20
	// MaxBroadcastBytes caps a gossip (UDP) user message. A catalog whose
	// message would be larger travels only in push/pull state.
	MaxBroadcastBytes = 1024

	stateVersion = 1

	msgVersion     = 1
	msgTypeCatalog = 1
	msgTypeLeave   = 2

	ackVersion       = 1
	maxAckPayloadLen = 1024

	// recordMaxLen is the largest catalog record: id, generation and body.
	recordMaxLen = 1 + MaxNodeIDLen + 8 + catalogBodyMaxLen
	// stateHeaderLen is the version byte and the uint16 record count.
	stateHeaderLen = 3
)

// catalogRecord is one node's catalog as carried in state and messages.
// Records are immutable once built and are shared between the peer table,
// snapshots and outgoing state.
type catalogRecord struct {
	id      string
	catalog Catalog // Generation set
	digest  uint64  // Digest(catalog)
	body    []byte  // canonical body encoding, reused when relaying
}

// newCatalogRecord validates c and builds the record for node id.
func newCatalogRecord(id string, c Catalog) (*catalogRecord, error) {
	body, err := appendCatalogBody(nil, c)
	if err != nil {
		return nil, err
	}
	c = Catalog{Generation: c.Generation, Models: sortedModels(c.Models)}
	return &catalogRecord{id: id, catalog: c, digest: Digest(c), body: body}, nil
}

func (r *catalogRecord) encodedLen() int { return 1 + len(r.id) + 8 + len(r.body) }

func (r *catalogRecord) appendTo(b []byte) []byte {
	b = append(b, byte(len(r.id)))
	b = append(b, r.id...)
	b = binary.BigEndian.AppendUint64(b, r.catalog.Generation)
	return append(b, r.body...)
}

// readRecord strictly decodes one record from rd.
func readRecord(rd *reader) (*catalogRecord, error) {
	id := rd.str8()
	gen := rd.u64()
	if rd.err != nil {
		return nil, rd.err
	}
	if err := checkText(id, MaxNodeIDLen, true); err != nil {
		return nil, fmt.Errorf("node id: %w", err)
	}
	start := rd.b
	models, err := readCatalogBody(rd)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", id, err)
	}
	body := bytes.Clone(start[:len(start)-len(rd.b)])
	c := Catalog{Generation: gen, Models: models}
	return &catalogRecord{id: id, catalog: c, digest: Digest(c), body: body}, nil
}

// Push/pull state v1 layout:
//
//	version uint8 (1)
//	count   uint16
//	count records, node ids unique:
//	  id      uint8 length + bytes
//	  gen     uint64
//	  catalog body (see catalog.go)
//
// The sender's own record comes first; the rest are relayed catalogs of
// other nodes. The whole state is at most MaxStateBytes.

// encodeState encodes records in order, stopping before the first record
// that would take the state past limit bytes. It returns the encoding and
// the number of records included.
func encodeState(records []*catalogRecord, limit int) ([]byte, int) {
	size := stateHeaderLen
	n := 0
	for _, r := range records {
		if n == 0xFFFF || size+r.encodedLen() > limit {
			break
		}
		size += r.encodedLen()
		n++
	}
	b := make([]byte, 0, size)
	b = append(b, stateVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	for _, r := range records[:n] {
		b = r.appendTo(b)
	}
	return b, n
}

// decodeState strictly decodes push/pull state.
func decodeState(b []byte) ([]*catalogRecord, error) {
	if len(b) > MaxStateBytes {
		return nil, fmt.Errorf("mesh: state: %d bytes, at most %d allowed", len(b), MaxStateBytes)
	}
	rd := reader{b: b}
	v := rd.u8()
	n := int(rd.u16())
	if rd.err != nil {
		return nil, fmt.Errorf("mesh: state: %w", rd.err)
	}
	if v != stateVersion {
		return nil, fmt.Errorf("mesh: state: unsupported version %d", v)
	}
	seen := make(map[string]struct{}, min(n, 1024))
	records := make([]*catalogRecord, 0, min(n, 1024))
	for i := range n {
		r, err := readRecord(&rd)
		if err != nil {
			return nil, fmt.Errorf("mesh: state: record %d: %w", i, err)
		}
		if _, dup := seen[r.id]; dup {
			return nil, fmt.Errorf("mesh: state: record %d: duplicate node %s", i, r.id)
		}
		seen[r.id] = struct{}{}
		records = append(records, r)
	}
	if err := rd.done(); err != nil {
		return nil, fmt.Errorf("mesh: state: %w", err)
	}
	return records, nil
}

// User message v1 layout (at most MaxBroadcastBytes):
//
//	version uint8 (1)
//	type    uint8
//	type 1, catalog: one record, as in the push/pull state
//	type 2, leave:   node id, uint8 length + bytes
//
// A catalog message announces a node's current catalog at gossip speed when
// it is small enough; receivers that learn something new re-broadcast it.
// A leave message is sent by a leaving node straight to every peer (over
// TCP) so that they record its departure as "left", not as a failure.

// message is a decoded user message: exactly one of record and leaving is
// set.
type message struct {
	record  *catalogRecord
	leaving string
}

// encodeCatalogMsg returns the message for r, or nil if it would exceed
// MaxBroadcastBytes.
func encodeCatalogMsg(r *catalogRecord) []byte {
	if 2+r.encodedLen() > MaxBroadcastBytes {
		return nil
	}
	b := make([]byte, 0, 2+r.encodedLen())
	b = append(b, msgVersion, msgTypeCatalog)
	return r.appendTo(b)
}

// encodeLeaveMsg returns the leave message for node id.
func encodeLeaveMsg(id string) []byte {
	b := make([]byte, 0, 3+len(id))
	b = append(b, msgVersion, msgTypeLeave, byte(len(id)))
	return append(b, id...)
}

// encode returns the canonical encoding of msg.
func (msg *message) encode() []byte {
	if msg.record != nil {
		return encodeCatalogMsg(msg.record)
	}
	return encodeLeaveMsg(msg.leaving)
}

// decodeMsg strictly decodes a user message.
func decodeMsg(b []byte) (*message, error) {
	if len(b) > MaxBroadcastBytes {
		return nil, fmt.Errorf("mesh: message: %d bytes, at most %d allowed", len(b), MaxBroadcastBytes)
	}
	rd := reader{b: b}
	v, t := rd.u8(), rd.u8()
	if rd.err != nil {
		return nil, fmt.Errorf("mesh: message: %w", rd.err)
	}
	if v != msgVersion {
		return nil, fmt.Errorf("mesh: message: unsupported version %d", v)
	}
	msg := &message{}
	switch t {
	case msgTypeCatalog:
		r, err := readRecord(&rd)
		if err != nil {
			return nil, fmt.Errorf("mesh: message: %w", err)
		}
		msg.record = r
	case msgTypeLeave:
		id := rd.str8()
		if rd.err == nil {
			if err := checkText(id, MaxNodeIDLen, true); err != nil {
				return nil, fmt.Errorf("mesh: message: leave: node id: %w", err)
			}
		}
		msg.leaving = id
	default:
		return nil, fmt.Errorf("mesh: message: unknown type %d", t)
	}
	if err := rd.done(); err != nil {
		return nil, fmt.Errorf("mesh: message: %w", err)
	}
	return msg, nil
}

// Ping ack payload v1 layout: version uint8 (1), then the sender's
// routing.Coordinate in its MarshalBinary form.

// encodeAck returns the ack payload carrying c.
func encodeAck(c *routing.Coordinate) ([]byte, error) {
	if c == nil {
		return nil, errors.New("mesh: ack: no coordinate")
	}
	cb, err := c.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("mesh: ack: %w", err)
	}
	if 1+len(cb) > maxAckPayloadLen {
		return nil, fmt.Errorf("mesh: ack: coordinate encodes to %d bytes", len(cb))
	}
	return append([]byte{ackVersion}, cb...), nil
}

// decodeAck strictly decodes an ack payload into a valid coordinate.
func decodeAck(b []byte) (*routing.Coordinate, error) {
	switch {
	case len(b) == 0:
		return nil, errors.New("mesh: ack: empty payload")
	case len(b) > maxAckPayloadLen:
		return nil, fmt.Errorf("mesh: ack: %d bytes, at most %d allowed", len(b), maxAckPayloadLen)
	case b[0] != ackVersion:
		return nil, fmt.Errorf("mesh: ack: unsupported version %d", b[0])
	}
	c := new(routing.Coordinate)
	if err := c.UnmarshalBinary(b[1:]); err != nil {
		return nil, fmt.Errorf("mesh: ack: coordinate: %w", err)
	}
	if !c.IsValid() {
		return nil, errors.New("mesh: ack: coordinate is not valid")
	}
	return c, nil
}
