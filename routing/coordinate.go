package routing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Coordinate is a Vivaldi network coordinate: a point in a Euclidean space
// plus a non-Euclidean height, an adjustment term and a confidence. All
// distances are in seconds, so the estimated round-trip time between two
// nodes is the Euclidean distance between their Vec plus both heights plus
// both adjustments.
//
// The zero value has no dimensions and is not compatible with anything; use
// NewCoordinate or a CoordinateClient to obtain one.
type Coordinate struct {
	// Vec is the Euclidean part of the coordinate, in seconds.
	Vec []float64 `json:"vec"`

	// Error is the node's estimate of its own relative prediction error
	// (dimensionless; 0 is perfect, VivaldiErrorMax is "no idea").
	Error float64 `json:"error"`

	// Adjustment is an offset, in seconds, learned from the residuals of
	// recent observations; it corrects for what the Euclidean model cannot
	// express. It may be negative.
	Adjustment float64 `json:"adjustment"`

	// Height models the access link from the node to the core of the
	// network, in seconds. It is never below the configured HeightMin.
	Height float64 `json:"height"`
}

const (
	// CoordinateVersion is the version byte of the binary encoding written by
	// MarshalBinary. Decoders reject any other version.
	CoordinateVersion = 1

	// MaxDimensionality is the largest Vec length the binary encoding (and a
	// CoordinateClient) accepts. Serf found no gain beyond about 8.
	MaxDimensionality = 16

	// MaxCoordinateComponent bounds, in absolute value, every float of a
	// decoded coordinate (seconds for Vec, Adjustment and Height; the
	// dimensionless Error). Real coordinates stay well below one second
	// because gravity pulls them towards the origin; 1e6 s keeps every
	// derived distance far inside time.Duration's range (about 9.2e9 s) and
	// rejects corruption early.
	MaxCoordinateComponent = 1e6

	// secondsToNanoseconds converts float seconds to nanoseconds.
	secondsToNanoseconds = 1.0e9

	// zeroThreshold decides whether two points are on top of each other.
	zeroThreshold = 1.0e-6

	// coordinateHeaderLen is the version byte plus the dimensionality byte.
	coordinateHeaderLen = 2
)

// ErrInvalidCoordinate is wrapped by every error about a malformed, out of
// range or incompatible coordinate.
var ErrInvalidCoordinate = errors.New("routing: invalid coordinate")

// NewCoordinate returns a coordinate at the origin with the configured
// dimensionality, the maximum error (no confidence yet), no adjustment and the
// minimum height. A nil cfg means DefaultCoordinateConfig().
func NewCoordinate(cfg *CoordinateConfig) *Coordinate {
	if cfg == nil {
		cfg = DefaultCoordinateConfig()
	}
	return &Coordinate{
		Vec:        make([]float64, cfg.Dimensionality),
		Error:      cfg.VivaldiErrorMax,
		Adjustment: 0,
		Height:     cfg.HeightMin,
	}
}

// Clone returns an independent deep copy of c. The clone of nil is nil.
func (c *Coordinate) Clone() *Coordinate {
	if c == nil {
		return nil
	}
	vec := make([]float64, len(c.Vec))
	copy(vec, c.Vec)
	return &Coordinate{
		Vec:        vec,
		Error:      c.Error,
		Adjustment: c.Adjustment,
		Height:     c.Height,
	}
}

// finite reports whether f is neither NaN nor an infinity.
func finite(f float64) bool {
	return !math.IsNaN(f) && !math.IsInf(f, 0)
}

// IsValid reports whether c is non-nil and every component is finite (no NaN,
// no infinity). It does not check ranges; UnmarshalBinary and
// CoordinateClient apply the stricter checks described on UnmarshalBinary.
func (c *Coordinate) IsValid() bool {
	if c == nil {
		return false
	}
	for _, v := range c.Vec {
		if !finite(v) {
			return false
		}
	}
	return finite(c.Error) && finite(c.Adjustment) && finite(c.Height)
}

// IsCompatibleWith reports whether c and other are both non-nil, have at
// least one dimension, and have the same dimensionality, so that distances
// between them are defined.
func (c *Coordinate) IsCompatibleWith(other *Coordinate) bool {
	return c != nil && other != nil && len(c.Vec) > 0 && len(c.Vec) == len(other.Vec)
}

// DistanceTo returns the estimated round-trip time from c to other: the
// Euclidean distance plus both heights, plus both adjustments when that sum
// stays positive (as serf does, an adjustment never makes a distance
// negative). If the two coordinates are not compatible or not valid, the
// distance is undefined and DistanceTo returns UnknownRTT rather than
// panicking. The result saturates at the largest time.Duration.
func (c *Coordinate) DistanceTo(other *Coordinate) time.Duration {
	if !c.IsCompatibleWith(other) || !c.IsValid() || !other.IsValid() {
		return UnknownRTT
	}
	dist := c.rawDistanceTo(other)
	if adjusted := dist + c.Adjustment + other.Adjustment; adjusted > 0 {
		dist = adjusted
	}
	return secondsToDuration(dist)
}

// rawDistanceTo is the Vivaldi distance in seconds without adjustments. The
// caller has checked compatibility.
func (c *Coordinate) rawDistanceTo(other *Coordinate) float64 {
	return magnitude(diff(c.Vec, other.Vec)) + c.Height + other.Height
}

// secondsToDuration converts float seconds to a Duration, clamping negative
// and NaN values to zero and saturating at the largest Duration.
func secondsToDuration(s float64) time.Duration {
	ns := s * secondsToNanoseconds
	switch {
	case !(ns > 0): // also catches NaN
		return 0
	case ns >= math.MaxInt64:
		return time.Duration(math.MaxInt64)
	default:
		return time.Duration(ns)
	}
}

// applyForce returns a copy of c moved by force seconds away from other (a
// negative force pulls it closer), growing or shrinking the height in
// proportion, never below cfg.HeightMin. rng breaks the tie when the two
// points coincide. The caller has checked compatibility.
func (c *Coordinate) applyForce(cfg *CoordinateConfig, force float64, other *Coordinate, rng *rand.Rand) *Coordinate {
	ret := c.Clone()
	unit, mag := unitVectorAt(c.Vec, other.Vec, rng)
	ret.Vec = add(ret.Vec, mul(unit, force))
	if mag > zeroThreshold {
		ret.Height = (ret.Height+other.Height)*force/mag + ret.Height
		ret.Height = math.Max(ret.Height, cfg.HeightMin)
	}
	return ret
}

// add returns a+b; the lengths are equal.
func add(a, b []float64) []float64 {
	ret := make([]float64, len(a))
	for i := range ret {
		ret[i] = a[i] + b[i]
	}
	return ret
}

// diff returns a-b; the lengths are equal.
func diff(a, b []float64) []float64 {
	ret := make([]float64, len(a))
	for i := range ret {
		ret[i] = a[i] - b[i]
	}
	return ret
}

// mul returns v scaled by f.
func mul(v []float64, f float64) []float64 {
	ret := make([]float64, len(v))
	for i := range v {
		ret[i] = v[i] * f
	}
	return ret
}

// magnitude returns the Euclidean norm of v.
func magnitude(v []float64) float64 {
	sum := 0.0
	for _, x := range v {
		sum += x * x
	}
	return math.Sqrt(sum)
}

// unitVectorAt returns the unit vector pointing from b towards a (the way a
// point at a is pushed when repelled by b) and the distance between them. When
// they coincide it returns a random unit vector drawn from rng and a zero
// distance, so that nodes starting together at the origin spread out in
// different directions.
func unitVectorAt(a, b []float64, rng *rand.Rand) ([]float64, float64) {
	ret := diff(a, b)
	if mag := magnitude(ret); mag > zeroThreshold {
		return mul(ret, 1.0/mag), mag
	}
	for i := range ret {
		ret[i] = rng.Float64() - 0.5
	}
	if mag := magnitude(ret); mag > zeroThreshold {
		return mul(ret, 1.0/mag), 0
	}
	// Vanishingly rare: every draw was 0.5. Any fixed axis will do.
	ret = make([]float64, len(ret))
	ret[0] = 1.0
	return ret, 0
}

// validate applies the checks shared by the binary codec and
// CoordinateClient: 1..MaxDimensionality dimensions, every component finite
// and within MaxCoordinateComponent, Error and Height not negative.
func (c *Coordinate) validate() error {
	if c == nil {
		return fmt.Errorf("%w: nil", ErrInvalidCoordinate)
	}
	if n := len(c.Vec); n < 1 || n > MaxDimensionality {
		return fmt.Errorf("%w: dimensionality %d out of range 1..%d", ErrInvalidCoordinate, n, MaxDimensionality)
	}
	for i, v := range c.Vec {
		if err := checkComponent("vec", i, v); err != nil {
			return err
		}
	}
	if err := checkComponent("error", -1, c.Error); err != nil {
		return err
	}
	if err := checkComponent("adjustment", -1, c.Adjustment); err != nil {
		return err
	}
	if err := checkComponent("height", -1, c.Height); err != nil {
		return err
	}
	if c.Error < 0 {
		return fmt.Errorf("%w: negative error %g", ErrInvalidCoordinate, c.Error)
	}
	if c.Height < 0 {
		return fmt.Errorf("%w: negative height %g", ErrInvalidCoordinate, c.Height)
	}
	return nil
}

// checkComponent rejects NaN, infinities and magnitudes beyond
// MaxCoordinateComponent. idx is the index within Vec, or -1 for the scalar
// fields; the name is only formatted on failure, keeping the common path
// free of allocations.
func checkComponent(name string, idx int, v float64) error {
	if finite(v) && math.Abs(v) <= MaxCoordinateComponent {
		return nil
	}
	if idx >= 0 {
		name = fmt.Sprintf("%s[%d]", name, idx)
	}
	switch {
	case math.IsNaN(v):
		return fmt.Errorf("%w: %s is NaN", ErrInvalidCoordinate, name)
	case math.IsInf(v, 0):
		return fmt.Errorf("%w: %s is infinite", ErrInvalidCoordinate, name)
	default:
		return fmt.Errorf("%w: %s %g exceeds ±%g", ErrInvalidCoordinate, name, v, float64(MaxCoordinateComponent))
	}
}

// encodedCoordinateLen is the exact length of the encoding of a coordinate
// with dims dimensions.
func encodedCoordinateLen(dims int) int {
	return coordinateHeaderLen + 8*(dims+3)
}

// MarshalBinary encodes c in the compact layout carried in memberlist ping
// payloads:
//
//	byte 0       version, CoordinateVersion (1)
//	byte 1       dimensionality n, 1..MaxDimensionality
//	8n bytes     Vec, each a little-endian IEEE 754 float64
//	8 bytes      Error
//	8 bytes      Adjustment
//	8 bytes      Height
//
// That is 2+8(n+3) bytes, 90 for the default 8 dimensions. MarshalBinary
// refuses a coordinate that UnmarshalBinary would reject, so every encoding
// it produces decodes back to an identical coordinate.
func (c *Coordinate) MarshalBinary() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	buf := make([]byte, coordinateHeaderLen, encodedCoordinateLen(len(c.Vec)))
	buf[0] = CoordinateVersion
	buf[1] = byte(len(c.Vec))
	for _, v := range c.Vec {
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
	}
	buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(c.Error))
	buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(c.Adjustment))
	buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(c.Height))
	return buf, nil
}

// UnmarshalBinary decodes the layout written by MarshalBinary into c. It
// rejects, with an error wrapping ErrInvalidCoordinate, an unknown version, a
// dimensionality outside 1..MaxDimensionality, a length other than exactly
// 2+8(n+3), any NaN or infinite component, any component whose magnitude
// exceeds MaxCoordinateComponent, and a negative Error or Height. On error c
// is left unchanged. The decoded Vec never aliases data.
func (c *Coordinate) UnmarshalBinary(data []byte) error {
	if c == nil {
		return fmt.Errorf("%w: UnmarshalBinary into nil *Coordinate", ErrInvalidCoordinate)
	}
	if len(data) < coordinateHeaderLen {
		return fmt.Errorf("%w: %d bytes, need at least %d", ErrInvalidCoordinate, len(data), coordinateHeaderLen)
	}
	if data[0] != CoordinateVersion {
		return fmt.Errorf("%w: unsupported version %d (want %d)", ErrInvalidCoordinate, data[0], CoordinateVersion)
	}
	dims := int(data[1])
	if dims < 1 || dims > MaxDimensionality {
		return fmt.Errorf("%w: dimensionality %d out of range 1..%d", ErrInvalidCoordinate, dims, MaxDimensionality)
	}
	if want := encodedCoordinateLen(dims); len(data) != want {
		return fmt.Errorf("%w: %d bytes for %d dimensions, want exactly %d", ErrInvalidCoordinate, len(data), dims, want)
	}
	p := data[coordinateHeaderLen:]
	next := func() float64 {
		v := math.Float64frombits(binary.LittleEndian.Uint64(p))
		p = p[8:]
		return v
	}
	dec := Coordinate{Vec: make([]float64, dims)}
	for i := range dec.Vec {
		dec.Vec[i] = next()
	}
	dec.Error = next()
	dec.Adjustment = next()
	dec.Height = next()
	if err := dec.validate(); err != nil {
		return err
	}
	*c = dec
	return nil
}
