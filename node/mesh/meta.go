package mesh

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/petrel-mesh/petrel/routing"
)

// Bounds on the variable-length metadata fields. Config.Validate enforces
// them, so that the encoded metadata provably fits memberlist.MetaMaxSize
// (512 bytes; memberlist panics beyond it): the worst case is
// metaFixedLen + MaxNodeIDLen + MaxRegionLen + 2*MaxAddrLen = 263 bytes.
const (
	// MaxNodeIDLen is the maximum length of a node ID in bytes.
	MaxNodeIDLen = 64
	// MaxRegionLen is the maximum length of a region label in bytes.
	MaxRegionLen = 32
	// MaxAddrLen is the maximum length of an advertised host:port in bytes.
	MaxAddrLen = 64
)

// metaVersion is the current metadata encoding version (the first byte).
const metaVersion = 1

// Metadata v1 layout (integers big-endian):
//
//	version      uint8  (1)
//	role         uint8  (1 edge, 2 central)
//	flags        uint8  (bit 0: location known; bit 1: leaving; others 0)
//	id           uint8 length + bytes (1..MaxNodeIDLen)
//	region       uint8 length + bytes (0..MaxRegionLen)
//	http addr    uint8 length + bytes (0..MaxAddrLen)
//	quic addr    uint8 length + bytes (0..MaxAddrLen)
//	latitude     int32, degrees * 1e7 (0 unless flag bit 0)
//	longitude    int32, degrees * 1e7 (0 unless flag bit 0)
//	in flight    uint32
//	queue depth  uint32
//	catalog dig. uint64 (Digest of the catalog)
//	catalog gen. uint64
const (
	metaFixedLen = 3 + 4 + 4 + 4 + 4 + 4 + 8 + 8 // every byte but the strings' payload
	metaMaxLen   = metaFixedLen + MaxNodeIDLen + MaxRegionLen + 2*MaxAddrLen

	metaFlagLocation = 1 << 0
	metaFlagLeaving  = 1 << 1
	metaFlagsKnown   = metaFlagLocation | metaFlagLeaving

	roleCodeEdge    = 1
	roleCodeCentral = 2

	// geoScale is the fixed-point scale of latitude and longitude: 1e-7
	// degree, about 1 cm, and ±180e7 fits an int32.
	geoScale = 1e7
)

// Load is the node's instantaneous load as advertised in its metadata.
type Load struct {
	// InFlight is the number of requests being executed.
	InFlight uint32
	// QueueDepth is the number of requests waiting for a slot.
	QueueDepth uint32
}

// nodeMeta is the decoded form of a node's memberlist metadata.
type nodeMeta struct {
	ID         string
	Role       Role
	Region     string
	Location   routing.Location
	HTTPAddr   string
	QUICAddr   string
	Load       Load
	CatalogDig uint64
	CatalogGen uint64
	// Leaving is set by a node that is leaving gracefully, just before its
	// memberlist leave; peers record its departure as "left".
	Leaving bool
}

// errMetaTooLong can only happen if validation and encoding disagree; it
// exists so that encodeMeta never hands memberlist an oversized buffer.
var errMetaTooLong = errors.New("mesh: metadata exceeds memberlist.MetaMaxSize")

// encodeMeta validates m and returns its v1 encoding. It never returns more
// than limit bytes.
func encodeMeta(m *nodeMeta, limit int) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, metaFixedLen+len(m.ID)+len(m.Region)+len(m.HTTPAddr)+len(m.QUICAddr))
	b = append(b, metaVersion, roleCode(m.Role))
	var flags byte
	var lat, lon int32
	if locationKnown(m.Location) {
		lat = int32(math.Round(m.Location.Lat * geoScale))
		lon = int32(math.Round(m.Location.Lon * geoScale))
		// A position within 1e-7 degree of 0°N 0°E rounds to routing's
		// "unset" value and is advertised as unknown.
		if lat != 0 || lon != 0 {
			flags |= metaFlagLocation
		}
	}
	if m.Leaving {
		flags |= metaFlagLeaving
	}
	b = append(b, flags)
	for _, s := range []string{m.ID, m.Region, m.HTTPAddr, m.QUICAddr} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(lat))
	b = binary.BigEndian.AppendUint32(b, uint32(lon))
	b = binary.BigEndian.AppendUint32(b, m.Load.InFlight)
	b = binary.BigEndian.AppendUint32(b, m.Load.QueueDepth)
	b = binary.BigEndian.AppendUint64(b, m.CatalogDig)
	b = binary.BigEndian.AppendUint64(b, m.CatalogGen)
	if len(b) > limit {
		return nil, errMetaTooLong
	}
	return b, nil
}

// decodeMeta strictly decodes metadata produced by encodeMeta: unknown
// versions, unknown roles or flags, truncation, trailing bytes, invalid
// UTF-8 and out-of-range fields are errors.
func decodeMeta(b []byte) (*nodeMeta, error) {
	r := reader{b: b}
	v := r.u8()
	if r.err != nil {
		return nil, errors.New("mesh: metadata: empty")
	}
	if v != metaVersion {
		return nil, fmt.Errorf("mesh: metadata: unsupported version %d", v)
	}
	m := &nodeMeta{}
	switch rc := r.u8(); rc {
	case roleCodeEdge:
		m.Role = RoleEdge
	case roleCodeCentral:
		m.Role = RoleCentral
	default:
		if r.err == nil {
			return nil, fmt.Errorf("mesh: metadata: unknown role code %d", rc)
		}
	}
	flags := r.u8()
	if flags&^metaFlagsKnown != 0 {
		return nil, fmt.Errorf("mesh: metadata: unknown flags %#x", flags)
	}
	m.ID = r.str8()
	m.Region = r.str8()
	m.HTTPAddr = r.str8()
	m.QUICAddr = r.str8()
	lat := int32(r.u32())
	lon := int32(r.u32())
	m.Load.InFlight = r.u32()
	m.Load.QueueDepth = r.u32()
	m.CatalogDig = r.u64()
	m.CatalogGen = r.u64()
	m.Leaving = flags&metaFlagLeaving != 0
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("mesh: metadata: %w", err)
	}
	if flags&metaFlagLocation != 0 {
		m.Location = routing.Location{Lat: float64(lat) / geoScale, Lon: float64(lon) / geoScale}
		if !locationKnown(m.Location) {
			// The one encoding of "unknown" is the cleared flag.
			return nil, errors.New("mesh: metadata: location flag set on the unknown location")
		}
	} else {
		if lat != 0 || lon != 0 {
			return nil, errors.New("mesh: metadata: coordinates present without the location flag")
		}
		m.Location = unknownLocation()
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// validate applies the Config rules to decoded or to-be-encoded metadata.
func (m *nodeMeta) validate() error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	add("id", checkText(m.ID, MaxNodeIDLen, true))
	if !m.Role.Valid() {
		add("role", fmt.Errorf("%q is not a role", m.Role))
	}
	add("region", checkText(m.Region, MaxRegionLen, false))
	add("location", checkLocation(m.Location))
	add("http address", checkHostPort(m.HTTPAddr, false))
	add("quic address", checkHostPort(m.QUICAddr, false))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mesh: metadata: %w", err)
	}
	return nil
}

func roleCode(r Role) byte {
	if r == RoleCentral {
		return roleCodeCentral
	}
	return roleCodeEdge
}

// checkLocation accepts the unknown location (the zero routing.Location)
// and any location routing considers valid: finite, latitude in [-90, 90],
// longitude in [-180, 180].
func checkLocation(l routing.Location) error {
	if !locationKnown(l) || l.Valid() {
		return nil
	}
	return fmt.Errorf("(%v, %v) is not a latitude in [-90, 90] and a longitude in [-180, 180]", l.Lat, l.Lon)
}

// locationKnown reports whether l is a position rather than routing's
// "unset" value, the zero Location.
func locationKnown(l routing.Location) bool { return l != (routing.Location{}) }

// unknownLocation returns routing's "unset" value.
func unknownLocation() routing.Location { return routing.Location{} }

// reader is a bounds-checked big-endian decoder. The first failure sticks
// in err and every later read returns zero values, so decoders read a
// whole record and check once.
type reader struct {
	b   []byte
	err error
}

var errTruncated = errors.New("truncated")

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errTruncated
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() byte {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// str8 reads a string with a one-byte length prefix. Content checks are
// left to the caller's validation.
func (r *reader) str8() string {
	n := int(r.u8())
	return string(r.take(n))
}

// done reports the sticky error, or an error if bytes remain.
func (r *reader) done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return nil
}
